"""A test-only DUT that proves the simulation infrastructure: Amaranth's own
``SyncFIFOBuffered`` between two TLP streams. Not product RTL."""

from amaranth import Module, Shape, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from tlpoe.rtl.streams import tlp_stream

__all__ = ["StreamFifo"]


class StreamFifo(wiring.Component):
    """TLP stream ``i`` -> FIFO of ``depth`` beats -> TLP stream ``o``.

    ``corrupt_beat`` (test of the testbench): if not None, data bit 0 of the
    output beat with that index (counting accepted beats from 0) is flipped.
    """

    def __init__(self, width=64, depth=8, corrupt_beat=None):
        self.width, self.depth, self.corrupt_beat = width, depth, corrupt_beat
        super().__init__({"i": In(tlp_stream(width)), "o": Out(tlp_stream(width))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = buf = fifo.SyncFIFOBuffered(
            width=Shape.cast(self.i.payload.shape()).width, depth=self.depth)
        m.d.comb += [
            buf.w_data.eq(self.i.payload), buf.w_en.eq(self.i.valid), self.i.ready.eq(buf.w_rdy),
            self.o.payload.eq(buf.r_data), self.o.valid.eq(buf.r_rdy), buf.r_en.eq(self.o.ready),
        ]
        if self.corrupt_beat is not None:
            taken = Signal(32)
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += taken.eq(taken + 1)
            with m.If(taken == self.corrupt_beat):
                m.d.comb += self.o.payload.data[0].eq(~buf.r_data[0])
        return m
