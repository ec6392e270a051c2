"""TLP unpacker: the second half of the decapsulator."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..models import wire
from .deframer import RxDesc
from .streams import check_width, tlp_stream

__all__ = ["TlpUnpacker"]


class TlpUnpacker(wiring.Component):
    """Takes checked frames apart into TLPs.

    Pops one :class:`~tlpoe.rtl.deframer.RxDesc`, then that frame's ``words``:
    a good frame's TLPs leave on ``tlp`` in order, each realigned to lane 0;
    every other word of the frame (headers, CRC, padding, and all of a dropped
    frame) is consumed and discarded.  It trusts the descriptor: the
    :class:`~tlpoe.rtl.deframer.Deframer` has walked the prefixes already.

    Throughput: one TLP beat per cycle (the prefix costs no cycle); a dropped
    frame costs one cycle per stored word.
    """

    def __init__(self, width, *, max_words):
        check_width(width)
        self.width = width
        self.max_words = max_words
        super().__init__({
            "desc": In(stream.Signature(RxDesc(max_words))),
            "words": In(stream.Signature(width)),
            "tlp": Out(tlp_stream(width)),
            "tlp_stamp": Out(wire.TLP_PREFIX["order_stamp"].width),
            "tlps_out": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        W, D = self.width, self.width // 32

        busy = Signal()
        good = Signal()
        words_left = Signal(range(self.max_words + 1))
        tlps_left = Signal(16)
        skip = Signal(range(wire.HEADER_LEN // 4 + 1))   # header DWs still to drop
        buf = Signal(2 * W)                  # frame DWs, buf DW 0 next
        cnt = Signal(range(2 * D + 1))       # DWs held in buf
        in_tlp = Signal()
        rem = Signal(11 + 1)                 # DWs of the current TLP still to send

        parsing = Signal()
        m.d.comb += parsing.eq(busy & good & (tlps_left != 0))

        # The beat on offer: after the prefix on a TLP's first beat.
        prefix = buf[:32]
        tlp_dws = Cat(prefix[8:16], prefix[0:8])[2:]        # tlp_length / 4
        m.d.comb += self.tlp_stamp.eq(Cat(prefix[24:32], prefix[16:24]))   # order_stamp
        rem_now = Signal.like(rem)
        m.d.comb += rem_now.eq(Mux(in_tlp, rem, tlp_dws))
        n_out = Signal(range(D + 1))
        m.d.comb += n_out.eq(Mux(rem_now < D, rem_now, D))
        offset = Signal(range(2))
        m.d.comb += offset.eq(~in_tlp)
        window = Mux(in_tlp, buf[:W], buf[32:32 + W])
        lanes = [Mux(n_out > i, window[32 * i:32 * (i + 1)], 0) for i in range(D)]
        m.d.comb += [
            self.tlp.valid.eq(parsing & (skip == 0) & (cnt >= offset + n_out) & (cnt != 0)),
            self.tlp.payload.data.eq(Cat(*lanes)),
            self.tlp.payload.keep.eq((Const(1, D + 1) << n_out) - 1),
            self.tlp.payload.last.eq(rem_now <= D),
        ]
        sent = Signal()
        m.d.comb += sent.eq(self.tlp.valid & self.tlp.ready)

        # up to all 2·D DWs held: the words after a frame's last TLP go in one step
        consumed = Signal(range(2 * D + 1))
        with m.If(sent):
            m.d.comb += consumed.eq(offset + n_out)
        with m.Elif(busy & (skip != 0)):
            m.d.comb += consumed.eq(Mux(cnt < skip, cnt, skip))
        with m.Elif(busy & ~parsing):
            m.d.comb += consumed.eq(cnt)                     # CRC, padding, dropped frame
        cnt_after = Signal.like(cnt)
        m.d.comb += cnt_after.eq(cnt - consumed)
        refill = Signal()
        m.d.comb += refill.eq(busy & (words_left != 0) & (cnt_after <= D))
        m.d.comb += self.words.ready.eq(refill)
        loaded = Signal()
        m.d.comb += loaded.eq(refill & self.words.valid)
        buf_after = (buf >> Cat(Const(0, 5), consumed))[:2 * W]
        incoming = (self.words.payload << Cat(Const(0, 5), cnt_after))[:2 * W]
        m.d.sync += [
            buf.eq(Mux(loaded, buf_after | incoming, buf_after)),
            cnt.eq(Mux(loaded, cnt_after + D, cnt_after)),
        ]
        with m.If(loaded):
            m.d.sync += words_left.eq(words_left - 1)
        with m.If(busy & (skip != 0)):
            m.d.sync += skip.eq(skip - consumed)

        with m.If(sent):
            m.d.sync += [rem.eq(rem_now - n_out), in_tlp.eq(~self.tlp.payload.last)]
            with m.If(self.tlp.payload.last):
                m.d.sync += [tlps_left.eq(tlps_left - 1), self.tlps_out.eq(self.tlps_out + 1)]

        done = Signal()
        m.d.comb += done.eq(busy & ~parsing & (words_left == 0) & (cnt_after == 0))
        m.d.comb += self.desc.ready.eq(~busy | done)
        with m.If(done):
            m.d.sync += busy.eq(0)
        with m.If(self.desc.valid & self.desc.ready):
            m.d.sync += [
                busy.eq(1),
                good.eq(self.desc.payload.good),
                tlps_left.eq(Mux(self.desc.payload.good, self.desc.payload.count, 0)),
                words_left.eq(self.desc.payload.words),
                skip.eq(Mux(self.desc.payload.good, wire.HEADER_LEN // 4, 0)),
                in_tlp.eq(0),
            ]
        return m
