"""Framer: the second half of the encapsulator."""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ...models import wire
from ...models.frame import FLAG_CREDITS_VALID
from ..streams import CreditLimit, FrameBeat, TxDesc, check_width, frame_stream
from ..tlp_header import CLASSES
from ..wirefmt import pack_bytes
from .crc import Crc32Pipelined, reverse_zero_bytes

__all__ = ["Framer", "framer_latency"]


def framer_latency(width):
    """:attr:`Framer.latency` at ``width`` without building one: cycles from
    a body word's handshake to its beat on ``frame``."""
    return Crc32Pipelined.latency_at(width) + 2


def _geometry(width, length):
    """The shape of a frame with a TLP area of ``length`` bytes (a multiple
    of 4): its beats, and the DW of its last beat that holds the CRC (when
    that is DW 0, the TLP area filled the beat before and the last beat
    carries the CRC alone)."""
    Wb, D = width // 8, width // 32
    beats = (length + wire.HEADER_LEN + wire.CRC_LEN + Wb - 1) >> (Wb.bit_length() - 1)
    crc_dw = ((length >> 2) + wire.HEADER_LEN // 4)[:(D - 1).bit_length()]
    return beats, crc_dw


class _Entry(data.StructLayout):
    """A descriptor accepted and waiting: the frame's header bytes (Ethernet
    and bridge header, the configuration sampled at the handshake) and its
    geometry."""

    def __init__(self, width, seq_bits):
        D = width // 32
        beats_max = -(-(wire.HEADER_LEN + 0xFFFF + wire.CRC_LEN) // (width // 8))
        super().__init__({
            "header": 8 * wire.HEADER_LEN,
            "has_body": 1,
            "beats": range(beats_max + 1),
            "crc_dw": range(D),
            "crc_onehot": D,            # the last beat's CRC DW
            "keep_dws": D,              # the last beat's DWs up to the CRC's
            "is_data": 1,               # a DATA frame ...
            "seq": seq_bits,            # ... and its sequence number
        })


class Framer(wiring.Component):
    """Turns each frame descriptor and its body words into an Ethernet frame.

    Pops one :class:`TxDesc`, then (unless ``length`` is 0) that frame's body
    words (whose first ``HEADER_LEN`` bytes are zero), and sends the frame:
    Ethernet header, bridge header (the descriptor's type, flags, sequence
    number and ack, ``tlp_count`` and ``payload_length``), the TLP area, and
    the CRC-32 of bytes ``14 ..`` appended at the DW after the TLP area.
    The MAC addresses, channel and ``credits`` (the six credit fields, per
    class P, NP, CPL) are sampled at the descriptor's handshake; while
    ``credits_valid`` is set every frame carries them with ``flags`` bit 1
    (credit fields valid) set.

    Pipeline: a two-entry descriptor queue (``desc.ready`` is "not full"),
    a sequencer that issues one beat per cycle, the CRC
    (:class:`~tlpoe.rtl.framing.crc.Crc32Pipelined`, :attr:`crc_latency` cycles)
    beside a delay line of the same length, the CRC inserted into the last
    beat, and an output FIFO of :attr:`fifo_depth` beats.  The sequencer
    issues a beat only when the FIFO has room for it counting every beat in
    flight, so ``frame.ready`` reaches registers only; ``desc.ready`` and
    ``words.ready`` come from registers.

    Latency: :attr:`latency` cycles (``crc_latency + 2``: 7 at 64 bits, 10
    at 512) from a body word's handshake to its beat on ``frame``; a frame's
    first beat leaves ``latency + 2`` cycles after its descriptor's
    handshake when the Framer was idle (the old Framer: 2).  Throughput: one
    beat per cycle, frames back to back while descriptors are waiting.
    ``frames_sent`` counts frames whose last beat the MAC took.
    ``data_sent`` pulses in the cycle the MAC takes the last beat of a DATA
    frame, whose sequence number (its low ``seq_bits``) is ``data_sent_seq``:
    the point from which the peer may acknowledge it (the ReplayBuffer's
    check of ACKs and NAKs), later than the descriptor's handshake by the
    frames waiting in the Framer.
    """

    def __init__(self, width, *, ethertype=wire.ETHERTYPE, seq_bits=32):
        check_width(width)
        if not 1 <= seq_bits <= 32:
            raise ValueError(f"seq_bits must be 1..32, not {seq_bits!r}")
        self.seq_bits = seq_bits
        if not 0x600 <= ethertype <= 0xFFFF:
            raise ValueError(f"ethertype must be an EtherType (0x0600..0xFFFF), not {ethertype!r}")
        self.width = width
        self.ethertype = ethertype
        self.crc = Crc32Pipelined(width, init=reverse_zero_bytes(0xFFFFFFFF, wire.ETH_LEN))
        #: Cycles of the CRC pipeline, and of the data's delay line beside it.
        self.crc_latency = self.crc.latency
        #: Cycles from a word's handshake to its beat on ``frame``.
        self.latency = framer_latency(width)
        #: Output FIFO beats: enough for the credit round trip at one beat per cycle.
        self.fifo_depth = self.crc_latency + 4
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
            "data_sent": Out(1),
            "data_sent_seq": Out(seq_bits),
        })

    def elaborate(self, platform):
        m = Module()
        W, Wb, D = self.width, self.width // 8, self.width // 32
        head = self._descriptors(m)

        # --- sequencer: one beat per cycle from the head descriptor and the words ----
        body_first = wire.HEADER_LEN // Wb          # beats before the first body word
        header = Signal(8 * wire.HEADER_LEN)        # shifts one beat out per beat
        eth_bytes = Signal(wire.ETH_LEN)            # bytes of this beat outside the CRC
        pre_body = Signal(max(1, body_first))       # bit 0: this beat takes no body word
        busy, first, is_last, has_body = Signal(), Signal(), Signal(), Signal()
        left = Signal.like(head.entry.beats)        # beats left, this one included
        crc_dw = Signal.like(head.entry.crc_dw)
        crc_onehot, keep_dws = Signal(D), Signal(D)
        is_data, seq = Signal(), Signal(self.seq_bits)
        trailing = Signal()                         # the last beat carries the CRC alone
        credit = Signal(range(self.fifo_depth + 1), init=self.fifo_depth)

        from_words = Signal()
        m.d.comb += from_words.eq(has_body & ~pre_body[0] & ~(is_last & trailing))
        advance = Signal()
        m.d.comb += advance.eq(busy & (credit != 0) & (~from_words | self.words.valid))
        load = Signal()
        m.d.comb += [
            load.eq(head.valid & (~busy | (advance & is_last))),
            head.pop.eq(load),
            self.words.ready.eq(busy & (credit != 0) & from_words),
        ]
        beat_data = Signal(W)
        m.d.comb += beat_data.eq(header[:W] | Mux(from_words, self.words.payload, 0))
        outside_crc = Signal(W)                     # the Ethernet header's bits in this beat
        m.d.comb += outside_crc.eq(Cat(eth_bytes[b].replicate(8)
                                       for b in range(min(wire.ETH_LEN, Wb))))
        crc_data = Signal(W)
        m.d.comb += crc_data.eq(beat_data & ~outside_crc)

        entry = head.entry
        with m.If(load):
            m.d.sync += [
                busy.eq(1), first.eq(1),
                header.eq(entry.header),
                eth_bytes.eq((1 << wire.ETH_LEN) - 1),
                pre_body.eq((1 << body_first) - 1),
                left.eq(entry.beats),
                is_last.eq(entry.beats == 1),
                has_body.eq(entry.has_body),
                crc_dw.eq(entry.crc_dw), crc_onehot.eq(entry.crc_onehot),
                keep_dws.eq(entry.keep_dws), trailing.eq(entry.crc_dw == 0),
                is_data.eq(entry.is_data), seq.eq(entry.seq),
            ]
        with m.Elif(advance):
            m.d.sync += [
                first.eq(0),
                header.eq(header >> W),
                eth_bytes.eq(eth_bytes >> Wb),
                pre_body.eq(pre_body >> 1),
                left.eq(left - 1),
                is_last.eq(left == 2),
            ]
            with m.If(is_last):
                m.d.sync += busy.eq(0)

        # --- the CRC beside a delay line of the data -------------------------------
        m.submodules.crc = crc = self.crc
        m.d.comb += [
            crc.valid.eq(advance), crc.first.eq(first), crc.data.eq(crc_data),
            crc.dws.eq(Mux(is_last, crc_dw, D)),
        ]
        tagged = data.StructLayout({"beat": FrameBeat(W), "data_end": 1, "seq": self.seq_bits})
        line = data.StructLayout({"valid": 1, "out": tagged, "crc_at": D})
        stage = Signal(line)
        m.d.comb += [
            stage.valid.eq(advance),
            stage.out.beat.data.eq(beat_data),
            stage.out.beat.last.eq(is_last),
            stage.out.beat.keep.eq(Mux(is_last, Cat(k.replicate(4) for k in keep_dws),
                                       (1 << Wb) - 1)),
            stage.out.data_end.eq(is_last & is_data),
            stage.out.seq.eq(seq),
            stage.crc_at.eq(Mux(is_last, crc_onehot, 0)),
        ]
        for i in range(self.crc_latency):
            delayed = Signal(line, name=f"delay{i + 1}")
            m.d.sync += delayed.eq(stage)
            stage = delayed

        # --- the CRC into its DW, then the output FIFO -------------------------------
        m.submodules.out = out = fifo.SyncFIFOBuffered(width=tagged.size, depth=self.fifo_depth)
        fcs = Signal(32)
        m.d.comb += fcs.eq(~crc.crc)
        entry_in = Signal(tagged)
        entry_out = Signal(tagged)
        m.d.comb += [
            entry_in.eq(stage.out),
            entry_in.beat.data.eq(stage.out.beat.data |
                                  Cat(fcs & stage.crc_at[i].replicate(32) for i in range(D))),
            out.w_en.eq(stage.valid),
            out.w_data.eq(entry_in),
            entry_out.eq(out.r_data),
            self.frame.valid.eq(out.r_rdy),
            self.frame.payload.eq(entry_out.beat),
            out.r_en.eq(self.frame.ready),
        ]
        popped = Signal()
        m.d.comb += [
            popped.eq(self.frame.valid & self.frame.ready),
            self.data_sent.eq(popped & entry_out.data_end),
            self.data_sent_seq.eq(entry_out.seq),
        ]
        m.d.sync += credit.eq(credit - advance + popped)
        with m.If(popped & self.frame.payload.last):
            m.d.sync += self.frames_sent.eq(self.frames_sent + 1)
        return m

    def _descriptors(self, m):
        """The descriptor queue (two entries, so that ``desc.ready``, "not
        full", is a register and a descriptor can pass every cycle): each
        entry the frame's header bytes and geometry, worked out at the
        handshake."""
        W, D = self.width, self.width // 32
        desc = self.desc.payload
        bridge = pack_bytes(
            wire.BRIDGE_HEADER, version=wire.VERSION, frame_type=desc.frame_type,
            flags=desc.flags | Mux(self.credits_valid, FLAG_CREDITS_VALID, 0),
            channel=self.channel, seq=desc.seq, ack=desc.ack,
            tlp_count=desc.count, payload_length=desc.length,
            **{f"credit_{name}_{part}": getattr(self.credits[k], part)
               for k, name in enumerate(CLASSES) for part in ("hdr", "data")})
        eth = pack_bytes(wire.ETHERNET, dst_mac=self.dst_mac, src_mac=self.src_mac,
                         ethertype=self.ethertype)
        new = Signal(_Entry(W, self.seq_bits))
        beats, crc_dw = _geometry(W, desc.length)
        m.d.comb += [
            new.header.eq(Cat(eth, bridge)),
            new.has_body.eq(desc.length != 0),
            new.beats.eq(beats),
            new.crc_dw.eq(crc_dw),
            new.crc_onehot.eq(Cat(crc_dw == i for i in range(D))),
            new.keep_dws.eq(Cat(Const(1, 1), *(crc_dw >= i for i in range(1, D)))),
            new.is_data.eq(desc.frame_type == wire.FrameType.DATA),
            new.seq.eq(desc.seq),
        ]

        head = SimpleNamespace(entry=Signal(_Entry(W, self.seq_bits), name="head"), valid=Signal(name="head_valid"),
                               pop=Signal(name="head_pop"))
        spare = Signal(_Entry(W, self.seq_bits))                   # the second entry, behind the head
        count = Signal(range(3))
        m.d.comb += self.desc.ready.eq(count != 2)
        push = Signal()
        m.d.comb += [push.eq(self.desc.valid & self.desc.ready), head.valid.eq(count != 0)]
        m.d.sync += count.eq(count + push - head.pop)
        # The head is the older entry; a push goes to the head when it is free
        # (empty, or popped with no spare behind it), else to the spare.
        with m.If(head.pop):
            with m.If(count == 2):
                m.d.sync += head.entry.eq(spare)
            with m.Elif(push):
                m.d.sync += head.entry.eq(new)
            with m.If(push & (count == 2)):
                m.d.sync += spare.eq(new)
        with m.Elif(push):
            with m.If(count == 0):
                m.d.sync += head.entry.eq(new)
            with m.Else():
                m.d.sync += spare.eq(new)
        return head
