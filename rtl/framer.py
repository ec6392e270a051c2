"""Framer: the second half of the encapsulator."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..models import wire
from ..models.frame import FLAG_CREDITS_VALID
from .classq import CLASSES, CreditLimit
from .crc import Crc32Update, reverse_zero_bytes
from .streams import check_width, frame_stream
from .wirefmt import pack_bytes

__all__ = ["TxDesc", "Framer"]


class TxDesc(data.StructLayout):
    """One frame to send: the bridge-header fields the framer does not derive.
    ``length`` 0 (ACK, NAK, ...) means a header-only frame with no body words."""

    def __init__(self):
        super().__init__({"frame_type": 4, "flags": 8, "seq": 32, "ack": 32,
                          "count": 16, "length": 16})


class Framer(wiring.Component):
    """Turns each frame descriptor and its body words into an Ethernet frame.

    Pops one :class:`TxDesc`, then (unless ``length`` is 0) that frame's body
    words (whose first ``HEADER_LEN`` bytes are zero), and sends the frame:
    Ethernet header, bridge header (the descriptor's type, flags, sequence
    number and ack, ``tlp_count`` and ``payload_length``), the TLP area, and
    the CRC-32 of bytes ``14 ..`` appended at the DW after the TLP area.

    Latency: one cycle from a word to the output register. Throughput: one
    beat per cycle, frames back to back. The MAC addresses, channel and
    ``credits`` (the six credit fields, per class P, NP, CPL) are sampled
    when a frame starts; while ``credits_valid`` is set every frame carries
    them with ``flags`` bit 1 (credit fields valid) set.
    """

    def __init__(self, width, *, ethertype=wire.ETHERTYPE):
        check_width(width)
        if not 0x600 <= ethertype <= 0xFFFF:
            raise ValueError(f"ethertype must be an EtherType (0x0600..0xFFFF), not {ethertype!r}")
        self.width = width
        self.ethertype = ethertype
        super().__init__({
            "desc": In(stream.Signature(TxDesc())),
            "words": In(stream.Signature(width)),
            "frame": Out(frame_stream(width)),
            "dst_mac": In(48),
            "src_mac": In(48),
            "channel": In(16),
            "credits": In(data.ArrayLayout(CreditLimit(), 3)),
            "credits_valid": In(1),
            "frames_sent": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        W, Wb, D = self.width, self.width // 8, self.width // 32
        hdr_words = -(-wire.HEADER_LEN // Wb)       # words holding header bytes
        body_first = wire.HEADER_LEN // Wb          # first word that comes from the FIFO
        max_words = -(-(wire.ETH_LEN + max(wire.MTUS)) // Wb) + 1
        m.submodules.crc = crc = Crc32Update(W)

        busy = Signal()
        j = Signal(range(max_words + 1))            # word index within the frame
        last_data = Signal.like(j)                  # word holding the last TLP-area byte
        dws_last = Signal(range(D + 1))             # TLP-area DWs in that word (1..D)
        last_word = Signal.like(j)
        last_bytes = Signal(range(Wb + 1))
        header = Signal(8 * hdr_words * Wb)
        crc_reg = Signal(32)
        has_body = Signal()

        # Frame geometry from a descriptor.
        desc = self.desc.payload
        data_end = Signal(17)                       # bytes up to the end of the TLP area
        m.d.comb += data_end.eq(wire.HEADER_LEN + desc.length)
        frame_len = Signal(17)
        m.d.comb += frame_len.eq(data_end + wire.CRC_LEN)
        shift = Wb.bit_length() - 1

        # The word being produced this cycle.
        from_fifo = Signal()
        m.d.comb += from_fifo.eq(has_body & ((j >= body_first) if body_first else 1) &
                                 (j <= last_data))
        word = Signal(W)
        with m.Switch(j):
            for k in range(hdr_words):
                with m.Case(k):
                    m.d.comb += word.eq(header[k * W:(k + 1) * W] |
                                        Mux(from_fifo, self.words.payload, 0))
            with m.Default():
                m.d.comb += word.eq(Mux(from_fifo, self.words.payload, 0))
        crc_in = Signal(W)                          # bytes before 14 are not covered
        zero_words = -(-wire.ETH_LEN // Wb)
        with m.Switch(j):
            for k in range(zero_words):
                with m.Case(k):
                    keep_from = max(0, wire.ETH_LEN - k * Wb)
                    m.d.comb += crc_in.eq(word & ~Const((1 << (8 * keep_from)) - 1, W))
            with m.Default():
                m.d.comb += crc_in.eq(word)
        m.d.comb += [
            crc.crc_in.eq(crc_reg),
            crc.data.eq(crc_in),
            crc.dws.eq(Mux(j < last_data, D, Mux(j == last_data, dws_last, 0))),
        ]
        fcs = Signal(32)
        m.d.comb += fcs.eq(~crc.crc_out)
        out_data = Signal(W)
        with m.If(j == last_data):
            # The CRC shares the word when the TLP area leaves a DW free.
            m.d.comb += out_data.eq(word | Mux(dws_last < D, fcs << Cat(Const(0, 5), dws_last), 0))
        with m.Elif(j > last_data):
            m.d.comb += out_data.eq(~crc_reg)
        with m.Else():
            m.d.comb += out_data.eq(word)

        out_free = Signal()
        m.d.comb += out_free.eq(~self.frame.valid | self.frame.ready)
        advance = Signal()
        m.d.comb += advance.eq(busy & out_free & (~from_fifo | self.words.valid))
        is_last = Signal()
        m.d.comb += is_last.eq(j == last_word)
        m.d.comb += [
            self.words.ready.eq(advance & from_fifo),
            self.desc.ready.eq(~busy | (advance & is_last)),
        ]

        with m.If(advance):
            m.d.sync += [
                self.frame.valid.eq(1),
                self.frame.payload.data.eq(out_data),
                self.frame.payload.last.eq(is_last),
                self.frame.payload.keep.eq(Mux(is_last, (Const(1, Wb + 1) << last_bytes) - 1,
                                               (1 << Wb) - 1)),
                crc_reg.eq(crc.crc_out),
                j.eq(j + 1),
            ]
            with m.If(is_last):
                m.d.sync += [busy.eq(0), self.frames_sent.eq(self.frames_sent + 1)]
        with m.Elif(self.frame.ready):
            m.d.sync += self.frame.valid.eq(0)

        with m.If(self.desc.valid & self.desc.ready):
            last_data_now = (data_end - 1) >> shift
            dws_now = (data_end - (last_data_now << shift)) >> 2
            bridge = pack_bytes(
                wire.BRIDGE_HEADER, version=wire.VERSION, frame_type=desc.frame_type,
                flags=desc.flags | Mux(self.credits_valid, FLAG_CREDITS_VALID, 0),
                channel=self.channel, seq=desc.seq, ack=desc.ack,
                tlp_count=desc.count, payload_length=desc.length,
                **{f"credit_{name}_{part}": getattr(self.credits[k], part)
                   for k, name in enumerate(CLASSES) for part in ("hdr", "data")})
            eth = pack_bytes(wire.ETHERNET, dst_mac=self.dst_mac, src_mac=self.src_mac,
                             ethertype=self.ethertype)
            m.d.sync += [
                busy.eq(1),
                j.eq(0),
                last_data.eq(last_data_now),
                dws_last.eq(dws_now),
                last_word.eq((frame_len - 1) >> shift),
                last_bytes.eq(frame_len - (((frame_len - 1) >> shift) << shift)),
                header.eq(Cat(eth, bridge)),
                crc_reg.eq(reverse_zero_bytes(0xFFFFFFFF, wire.ETH_LEN)),
                has_body.eq(desc.length != 0),
            ]
        return m
