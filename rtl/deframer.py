"""Deframer: the receive checks of the decapsulator."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..models import wire
from ..models.frame import DropReason
from .classq import CLASSES, CreditLimit
from .crc import Crc32Update, reverse_zero_bytes
from .streams import check_width, frame_stream
from .wirefmt import unpack_field

__all__ = ["frame_words", "RxDesc", "Deframer"]


def frame_words(width, mtu):
    """Beats of ``width`` bits that the longest frame at ``mtu`` occupies."""
    return -(-(wire.ETH_LEN + mtu) // (width // 8))


class RxDesc(data.StructLayout):
    """Verdict on one received frame, pushed after its last beat."""

    def __init__(self, max_words):
        super().__init__({
            "good": 1,            # a DATA frame whose TLPs are to be delivered
            "count": 16,
            "words": range(max_words + 1),   # words of the frame stored in the FIFO
            "ok": 1,              # passed every check (any frame type)
            "frame_type": 4,
            "flags": 8,
            "seq": 32,
            "ack": 32,
        })


class Deframer(wiring.Component):
    """Checks every received frame in one pass, in the order of
    :data:`tlpoe.models.frame.CHECK_ORDER`, while storing its words.

    Each beat of ``frame`` goes to ``words`` (up to the largest frame the MTU
    allows; the rest of an oversize frame is not stored); after the last beat
    one :class:`RxDesc` goes to ``desc``, ``good`` only for a DATA frame that
    passed every check.  A dropped frame increments ``drops[reason]`` for the
    first failing check; a well-formed ACK/NAK/CREDIT/KEEPALIVE frame
    increments ``control_frames``.  A bad frame costs the same cycles as a
    good one: nothing stalls behind it.  ``frame`` is backpressured only when
    ``words`` or ``desc`` are full.

    ``credits`` holds the bridge header's six credit fields (per class P,
    NP, CPL) while a frame's last beat is taken; ``credits_update`` pulses
    then if the frame passed every check and its ``flags`` say the credit
    fields are valid (any frame type: retransmissions and duplicates too).
    """

    def __init__(self, width, *, mtu=1500, ethertype=wire.ETHERTYPE):
        check_width(width)
        if mtu not in wire.MTUS:
            raise ValueError(f"mtu must be one of {wire.MTUS}, not {mtu!r}")
        if not 0x600 <= ethertype <= 0xFFFF:
            raise ValueError(f"ethertype must be an EtherType (0x0600..0xFFFF), not {ethertype!r}")
        self.width = width
        self.mtu = mtu
        self.ethertype = ethertype
        self.max_words = frame_words(width, mtu)
        super().__init__({
            "frame": In(frame_stream(width)),
            "words": Out(stream.Signature(width)),
            "desc": Out(stream.Signature(RxDesc(self.max_words))),
            "drops": Out(data.ArrayLayout(32, len(DropReason))),
            "good_frames": Out(32),
            "control_frames": Out(32),
            "credits": Out(data.ArrayLayout(CreditLimit(), 3)),
            "credits_update": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        W, Wb, D = self.width, self.width // 8, self.width // 32
        shift = Wb.bit_length() - 1
        beat = self.frame.payload
        m.submodules.crc = crc = Crc32Update(W)

        j_max = 2 ** 16 // Wb
        j = Signal(range(j_max + 1))            # word index in the frame (saturates)
        received = Signal(17)                   # bytes before this beat (saturates)
        hdr_words = -(-wire.HEADER_LEN // Wb)
        hdr_reg = Signal(8 * hdr_words * Wb)
        crc_reg = Signal(32)
        rx_crc_reg = Signal(32)
        next_prefix = Signal(17, init=wire.HEADER_LEN)
        chain_bad = Signal()
        chain_count = Signal(16)

        # The 40 header bytes as known after this beat (unseen bytes read as 0).
        hdr = Signal(8 * wire.HEADER_LEN)
        parts = []
        for k in range(hdr_words):
            word_bits = min(W, 8 * wire.HEADER_LEN - k * W)
            parts.append(Mux(j == k, beat.data[:word_bits], hdr_reg[k * W:k * W + word_bits]))
        m.d.comb += hdr.eq(Cat(*parts))

        def field(name):
            return unpack_field(wire.BRIDGE_HEADER, name, hdr, base=wire.ETH_LEN)

        length = field("payload_length")
        data_end = Signal(17)
        m.d.comb += data_end.eq(wire.HEADER_LEN + length)
        n_beat = Signal(range(Wb + 1))
        m.d.comb += n_beat.eq(sum(beat.keep[i] for i in range(Wb)))
        total = Signal(18)
        m.d.comb += total.eq(received + n_beat)
        word_start = Signal(18)
        m.d.comb += word_start.eq(j << shift)

        # CRC over bytes 14 .. data_end-1, whole DWs.
        crc_dws = Signal(range(D + 1))
        with m.If(word_start + Wb <= data_end):
            m.d.comb += crc_dws.eq(D)
        with m.Elif(word_start < data_end):
            m.d.comb += crc_dws.eq((data_end - word_start) >> 2)
        masked = Signal(W)
        with m.Switch(j):
            for k in range(-(-wire.ETH_LEN // Wb)):
                with m.Case(k):
                    keep_from = max(0, wire.ETH_LEN - k * Wb)
                    m.d.comb += masked.eq(beat.data & ~Const((1 << (8 * keep_from)) - 1, W))
            with m.Default():
                m.d.comb += masked.eq(beat.data)
        m.d.comb += [
            crc.crc_in.eq(Mux(j == 0, reverse_zero_bytes(0xFFFFFFFF, wire.ETH_LEN), crc_reg)),
            crc.data.eq(masked),
            crc.dws.eq(crc_dws),
        ]
        dw_at = [beat.data[32 * i:32 * (i + 1)] for i in range(D)]

        def lane(offset):
            return _select(m, dw_at, offset[2:shift])

        rx_crc = Signal(32)
        crc_here = Signal()
        m.d.comb += crc_here.eq((data_end >> shift) == j)
        m.d.comb += rx_crc.eq(Mux(crc_here, lane(data_end), rx_crc_reg))

        # Prefix walk: up to one prefix per 16 bytes of the word.
        off = next_prefix
        bad = chain_bad
        count = chain_count
        for _ in range(max(1, Wb // 16)):
            here = Signal()
            m.d.comb += here.eq(((off >> shift) == j) & (off < data_end) & ~bad)
            dw = lane(off)
            tlp_length = Cat(dw[8:16], dw[0:8])
            step_end = Signal(18)
            m.d.comb += step_end.eq(off + wire.PREFIX_LEN + tlp_length)
            wrong = Signal()
            m.d.comb += wrong.eq((tlp_length[:2] != 0) | (tlp_length < wire.MIN_TLP) |
                                 (step_end > data_end))
            off_n, bad_n, count_n = Signal(18), Signal(), Signal(16)
            m.d.comb += [
                off_n.eq(Mux(here & ~wrong, step_end, off)),
                bad_n.eq(bad | (here & wrong)),
                count_n.eq(Mux(here & ~wrong, count + 1, count)),
            ]
            off, bad, count = off_n, bad_n, count_n

        # Verdict at the last beat, first failing check wins.
        is_data = field("frame_type") == wire.FrameType.DATA
        checks = [
            (DropReason.TRUNCATED, total < wire.HEADER_LEN + wire.CRC_LEN),
            (DropReason.ETHERTYPE, unpack_field(wire.ETHERNET, "ethertype", hdr) != self.ethertype),
            (DropReason.VERSION, (field("version") != wire.VERSION) |
                                 (field("frame_type") >= len(wire.FrameType))),
            (DropReason.TRUNCATED, total < data_end + wire.CRC_LEN),
            (DropReason.PREFIX_OVERRUN, length[:2] != 0),
            (DropReason.CRC, rx_crc != ~crc.crc_out),
            (DropReason.PREFIX_OVERRUN, bad | (off != data_end)),
            (DropReason.COUNT_MISMATCH, (count != field("tlp_count")) | (~is_data & (count != 0))),
            (DropReason.EMPTY_DATA, is_data & (count == 0)),
            (DropReason.OVERSIZE, total > wire.ETH_LEN + self.mtu),
        ]
        failed = Signal()
        reason = Signal(range(len(DropReason)))
        for why, cond in reversed(checks):
            with m.If(cond):
                m.d.comb += [failed.eq(1), reason.eq(why)]

        store = Signal()
        m.d.comb += store.eq(j < self.max_words)
        m.d.comb += [
            self.words.payload.eq(beat.data),
            self.words.valid.eq(self.frame.valid & store & (~beat.last | self.desc.ready)),
            self.desc.valid.eq(self.frame.valid & beat.last & (~store | self.words.ready)),
            self.desc.payload.good.eq(~failed & is_data),
            self.desc.payload.count.eq(count),
            self.desc.payload.words.eq(Mux(store, j + 1, self.max_words)),
            self.desc.payload.ok.eq(~failed),
            self.desc.payload.frame_type.eq(field("frame_type")),
            self.desc.payload.flags.eq(field("flags")),
            self.desc.payload.seq.eq(field("seq")),
            self.desc.payload.ack.eq(field("ack")),
            self.frame.ready.eq((~store | self.words.ready) & (~beat.last | self.desc.ready)),
            self.credits_update.eq(self.frame.valid & self.frame.ready & beat.last & ~failed &
                                   field("flags")[1]),         # FLAG_CREDITS_VALID
        ]
        for k, name in enumerate(CLASSES):
            m.d.comb += [self.credits[k].hdr.eq(field(f"credit_{name}_hdr")),
                         self.credits[k].data.eq(field(f"credit_{name}_data"))]

        with m.If(self.frame.valid & self.frame.ready):
            with m.If(beat.last):
                m.d.sync += [j.eq(0), received.eq(0), next_prefix.eq(wire.HEADER_LEN),
                             chain_bad.eq(0), chain_count.eq(0)]
                with m.If(failed):
                    with m.Switch(reason):
                        for why in DropReason:
                            with m.Case(why):
                                m.d.sync += self.drops[why].eq(self.drops[why] + 1)
                with m.Elif(is_data):
                    m.d.sync += self.good_frames.eq(self.good_frames + 1)
                with m.Else():
                    m.d.sync += self.control_frames.eq(self.control_frames + 1)
            with m.Else():
                m.d.sync += [
                    j.eq(Mux(j == j_max, j, j + 1)),
                    received.eq(Mux(total > 0xFFFF, 0x1FFFF, total)),
                    hdr_reg.eq(hdr),
                    crc_reg.eq(crc.crc_out),
                    rx_crc_reg.eq(rx_crc),
                    next_prefix.eq(off),
                    chain_bad.eq(bad),
                    chain_count.eq(count),
                ]
        return m


def _select(m, items, index):
    """``items[index]`` as a mux (``index`` a value)."""
    out = Signal(len(items[0]))
    with m.Switch(index):
        for i, item in enumerate(items):
            with m.Case(i):
                m.d.comb += out.eq(item)
    return out
