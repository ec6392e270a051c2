# tlpoe bridge: the one clock, `clk`, at 250 MHz (4.0 ns). Every path is
# synchronous to it; the bridge has no other clock and no I/O timing of its
# own (its ports face a PCIe core and a MAC on the same clock).
create_clock -name clk -period 4.000 [get_ports clk]
