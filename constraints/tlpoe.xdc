# tlpoe bridge (Vivado): the one clock, `clk`, at 250 MHz (4.0 ns). Every
# path is synchronous to it; the bridge has no other clock. For a 100 GbE
# MAC at 322.27 MHz use -period 3.103 and the 512-bit bridge.
create_clock -name clk -period 4.000 [get_ports clk]
