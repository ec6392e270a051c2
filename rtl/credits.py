"""Credit return: the receiving side of end-to-end flow control.

The receiver gives each class (posted, non-posted, completion) a buffer of
``hdr`` headers and ``data`` data credits (16-byte units) and advertises
cumulative limits: the buffer size plus every credit freed so far, modulo
``2**8`` (headers) and ``2**16`` (data), the widths of the bridge header's
credit fields. The sender (:class:`~tlpoe.rtl.classq.ClassQueues`) sends a
TLP only while its class's limit covers it, so the buffers never overrun.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .classq import DATA_BITS, HDR_BITS, CreditLimit, tlp_class
from .streams import TlpBeat, check_width

__all__ = ["CreditReturn", "queue_credits"]

#: Most header bytes a TLP brings besides its payload: a 4-DW header and a digest.
TLP_OVERHEAD_BYTES = 20


def queue_credits(width, depth, tlps):
    """The ``(hdr, data)`` credits a receive queue of ``depth`` beats and
    ``tlps`` descriptors can promise: ``tlps`` headers (at most 127) and as
    many 16-byte data credits as the beats left over hold in the worst case.
    A TLP of ``c`` data credits takes at most ``(20 + 16c) / Wb + 1`` beats
    of ``Wb`` bytes, so ``hdr`` TLPs with ``data`` credits in all fit when
    ``(20 hdr + 16 data) / Wb + hdr <= depth``."""
    wb = width // 8
    hdr = min(tlps, 2 ** (HDR_BITS - 1) - 1)
    credits = (wb * (depth - hdr) - TLP_OVERHEAD_BYTES * hdr) // 16
    return hdr, max(0, min(credits, 2 ** (DATA_BITS - 1) - 1))


class CreditReturn(wiring.Component):
    """Watches the receiver's TLP egress (``valid``: a beat taken; ``beat``)
    and frees each TLP's credits, one header and its data credits, two edges
    after the edge that takes its first beat (the beat's class and size are
    registered first). ``limit`` is the cumulative limit to advertise per
    class; ``freed`` the credits freed so far (cumulative, same widths).

    ``buffers`` gives, per class, ``(hdr, data)``: the receive buffer in
    headers (1..127) and 16-byte data credits (1..32767); the modular credit
    rule allows at most half of each counter's range outstanding.
    """

    def __init__(self, width, *, buffers=((32, 256), (16, 16), (32, 256))):
        check_width(width)
        if len(buffers) != 3:
            raise ValueError(f"buffers must give (hdr, data) for 3 classes, not {buffers!r}")
        for k, (hdr, credits) in enumerate(buffers):
            if not 1 <= hdr < 2 ** (HDR_BITS - 1):
                raise ValueError(f"buffers[{k}] header credits must be 1..127, not {hdr!r}")
            if not 1 <= credits < 2 ** (DATA_BITS - 1):
                raise ValueError(f"buffers[{k}] data credits must be 1..32767, not {credits!r}")
        self.width, self.buffers = width, tuple(tuple(b) for b in buffers)
        super().__init__({
            "valid": In(1),
            "beat": In(TlpBeat(width)),
            "limit": Out(data.ArrayLayout(CreditLimit(), 3)),
            "freed": Out(data.ArrayLayout(CreditLimit(), 3)),
        })

    def elaborate(self, platform):
        m = Module()
        first = Signal(init=1)
        with m.If(self.valid):
            m.d.sync += first.eq(self.beat.last)
        dw0 = self.beat.data[:32]
        length = dw0[24:32] | (dw0[16:18] << 8)
        dws = Mux(length == 0, 1024, length)
        credits = Signal(9)
        m.d.comb += credits.eq(Mux(dw0[6], (dws + 3) >> 2, 0))     # Fmt[1]: with data
        cls = Signal(2)
        m.d.comb += cls.eq(tlp_class(dw0))
        # The TLP's class and credits are registered before the counters
        # add them: the receive queue's FIFO read is not on the adders' path.
        seen = Signal()
        seen_cls = Signal(2)
        seen_credits = Signal(9)
        m.d.sync += [seen.eq(self.valid & first), seen_cls.eq(cls), seen_credits.eq(credits)]
        for k, (hdr, credit_size) in enumerate(self.buffers):
            freed = self.freed[k]
            with m.If(seen & (seen_cls == k)):
                m.d.sync += [freed.hdr.eq(freed.hdr + 1),
                             freed.data.eq(freed.data + seen_credits)]
            m.d.comb += [self.limit[k].hdr.eq(freed.hdr + hdr),
                         self.limit[k].data.eq(freed.data + credit_size)]
        return m
