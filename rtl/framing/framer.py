"""Framer: the second half of the encapsulator."""

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ...models import transport as tp
from ...models import wire
from ...models.frame import FLAG_CREDITS_VALID
from ..streams import CreditLimit, FrameBeat, TxDesc, check_width, frame_stream
from ..tlp_header import CLASSES
from ..wirefmt import be_bytes, pack_bytes
from .crc import Crc32Pipelined, reverse_zero_bytes
from .transport import TOS_ECT0, ChecksumBases, UdpConfigLayout, geometry, udp_config_init

__all__ = ["Framer", "framer_latency"]


def framer_latency(width):
    """:attr:`Framer.latency` at ``width`` without building one: cycles from
    a body word's handshake to its beat on ``frame``."""
    return Crc32Pipelined.latency_at(width) + 2


def _geometry(width, length, area_at):
    """The shape of a frame with a TLP area of ``length`` bytes (a multiple
    of 4) starting at byte ``area_at``: its beats, and the DW of its last
    beat that holds the CRC (when that is DW 0, the TLP area filled the beat
    before and the last beat carries the CRC alone)."""
    Wb, D = width // 8, width // 32
    beats = (length + area_at + wire.CRC_LEN + Wb - 1) >> (Wb.bit_length() - 1)
    crc_dw = ((length >> 2) + area_at // 4)[:(D - 1).bit_length()]
    return beats, crc_dw


class _Entry(data.StructLayout):
    """A descriptor accepted: the frame's header bytes (Ethernet, the
    transport's and the bridge header, the configuration sampled at the
    handshake, the IPv4 checksum on ``udp``) and its geometry."""

    def __init__(self, width, seq_bits, area_at):
        D = width // 32
        beats_max = -(-(area_at + 0xFFFF + wire.CRC_LEN) // (width // 8))
        super().__init__({
            "header": 8 * area_at,
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

    Pipeline: a two-entry descriptor queue (``desc.ready`` is "not full"; three
    slots in a ring with the frame being sent, whose header is read in place),
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

    ``transport`` (:mod:`tlpoe.models.transport`): on ``udp`` the frame is
    Ethernet (EtherType IPv4), IPv4, UDP, then the bridge header at byte 42
    and the TLP area at 68, the CRC over bytes 42 onwards; the addresses,
    ports, TTL and DSCPs come from ``udp`` (:class:`UdpConfigLayout`), which
    acts :data:`~tlpoe.rtl.framing.transport.CHECKSUM_LAG` cycles after it
    changes (the IPv4 checksum's bases are worked out from it in a pipeline,
    :class:`~tlpoe.rtl.framing.transport.ChecksumBases`; a frame's length is
    added to its base and the sum folded in the cycle after its
    descriptor's handshake, into its slot). A DATA frame takes
    the DSCP of ``desc.tc`` (its first TLP's traffic class), other frames
    ``control_dscp``. ``ethertype`` is the ``eth`` transport's.
    """

    def __init__(self, width, *, ethertype=wire.ETHERTYPE, seq_bits=32, transport="eth",
                 udp_init=None):
        check_width(width)
        self.geo = geometry(transport)
        self.transport = self.geo.transport
        self.udp_init = udp_init
        if not 1 <= seq_bits <= 32:
            raise ValueError(f"seq_bits must be 1..32, not {seq_bits!r}")
        self.seq_bits = seq_bits
        if not 0x600 <= ethertype <= 0xFFFF:
            raise ValueError(f"ethertype must be an EtherType (0x0600..0xFFFF), not {ethertype!r}")
        self.width = width
        self.ethertype = ethertype
        self.crc = Crc32Pipelined(width, init=reverse_zero_bytes(0xFFFFFFFF, self.geo.bridge_at))
        #: Cycles of the CRC pipeline, and of the data's delay line beside it.
        self.crc_latency = self.crc.latency
        #: Cycles from a word's handshake to its beat on ``frame``.
        self.latency = framer_latency(width)
        #: Output FIFO beats: enough for the credit round trip at one beat per cycle.
        self.fifo_depth = self.crc_latency + 4
        transport_ports = {} if self.transport is tp.Transport.ETH else {
            "udp": In(UdpConfigLayout(), init=udp_config_init(udp_init))}
        super().__init__({
            **transport_ports,
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
        geo = self.geo
        head = self._descriptors(m)

        # --- sequencer: one beat per cycle from the head descriptor and the words ----
        body_first = geo.area_at // Wb              # beats before the first body word
        # The header is read where the descriptor's slot holds it (no copy at
        # a load, whose enable depends on the words' valid), word by word: the
        # slot and the word from registers.
        hb = -(-geo.area_at // Wb)                  # beats that carry header bytes
        cur = Signal(range(3))                      # the current frame's slot
        hk = Signal(range(hb + 1))                  # its header word next (hb: none)
        eth_bytes = Signal(geo.bridge_at)           # bytes of this beat outside the CRC
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
        header_words = Array(
            Array([*(slot.header[W * k:W * (k + 1)] for k in range(hb)), Const(0, W)])
            for slot in head.slots)
        beat_data = Signal(W)
        m.d.comb += beat_data.eq(header_words[cur][hk] | Mux(from_words, self.words.payload, 0))
        outside_crc = Signal(W)                     # the Ethernet header's bits in this beat
        m.d.comb += outside_crc.eq(Cat(eth_bytes[b].replicate(8)
                                       for b in range(min(geo.bridge_at, Wb))))
        crc_data = Signal(W)
        m.d.comb += crc_data.eq(beat_data & ~outside_crc)

        entry = head.entry
        with m.If(load):
            m.d.sync += [
                busy.eq(1), first.eq(1),
                cur.eq(head.slot), hk.eq(0),
                eth_bytes.eq((1 << geo.bridge_at) - 1),
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
                hk.eq(Mux(hk == hb, hb, hk + 1)),
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
        area_at = self.geo.area_at
        entry_layout = _Entry(W, self.seq_bits, area_at)
        new = Signal(entry_layout)
        is_data = desc.frame_type == wire.FrameType.DATA
        if self.transport is tp.Transport.UDP:
            m.submodules.checksum = bases = ChecksumBases(self.udp_init)
            m.d.comb += bases.config.eq(self.udp)
            cfg = bases.config_out
            eth = pack_bytes(wire.ETHERNET, dst_mac=self.dst_mac, src_mac=self.src_mac,
                             ethertype=tp.ETHERTYPE_IPV4)
            # the bytes after the UDP header: bridge header, TLP area, CRC
            after_udp = wire.BRIDGE_HEADER.length + wire.CRC_LEN
            ip = pack_bytes(tp.IPV4, version_ihl=0x45,
                            dscp=Mux(is_data, cfg.dscp[desc.tc], cfg.control_dscp),
                            ecn=TOS_ECT0,
                            total_length=desc.length + (tp.IPV4.length + tp.UDP.length +
                                                        after_udp),
                            flags_fragment=0x4000, ttl=cfg.ttl, protocol=tp.IPPROTO_UDP,
                            src_ip=cfg.src_ip, dst_ip=cfg.dst_ip)
            udp = pack_bytes(tp.UDP, src_port=cfg.src_port, dst_port=cfg.dst_port,
                             length=desc.length + (tp.UDP.length + after_udp))
            # The checksum, a cycle after the handshake: the class's base and L
            # registered, then added and folded once (a carry select: both sums
            # at once), complemented, into the slot's bytes 24-25. The slot's
            # frame starts at the earliest the cycle after next (head_valid,
            # then the load), so its first beat finds the checksum there.
            ck_base, ck_length = Signal(16), Signal(16)
            ck_valid, ck_slot = Signal(), Signal(range(3))
            m.d.sync += [ck_valid.eq(0)]
            ck_at = wire.ETH_LEN + tp.IPV4["checksum"].offset
            headers = Cat(eth, ip, udp, bridge)
        else:
            headers = Cat(pack_bytes(wire.ETHERNET, dst_mac=self.dst_mac, src_mac=self.src_mac,
                                     ethertype=self.ethertype), bridge)
        beats, crc_dw = _geometry(W, desc.length, area_at)
        m.d.comb += [
            new.header.eq(headers),
            new.has_body.eq(desc.length != 0),
            new.beats.eq(beats),
            new.crc_dw.eq(crc_dw),
            new.crc_onehot.eq(Cat(crc_dw == i for i in range(D))),
            new.keep_dws.eq(Cat(Const(1, 1), *(crc_dw >= i for i in range(1, D)))),
            new.is_data.eq(is_data),
            new.seq.eq(desc.seq),
        ]

        # Three slots in a ring: up to two descriptors waiting and the frame
        # being sent, read where it is (a slot is written only at a push,
        # never while its frame is sent: at most two wait beside it).
        slots = [Signal(entry_layout, name=f"slot{i}") for i in range(3)]
        wp, rp = Signal(range(3)), Signal(range(3))     # the next to write; the oldest waiting
        count = Signal(range(3))                        # descriptors waiting
        head = SimpleNamespace(slots=slots, slot=rp, entry=Array(slots)[rp],
                               valid=Signal(name="head_valid"), pop=Signal(name="head_pop"))
        m.d.comb += self.desc.ready.eq(count != 2)
        push = Signal()
        m.d.comb += [push.eq(self.desc.valid & self.desc.ready), head.valid.eq(count != 0)]
        m.d.sync += count.eq(count + push - head.pop)
        with m.If(push):
            m.d.sync += wp.eq(Mux(wp == 2, 0, wp + 1))
            for i, slot in enumerate(slots):
                with m.If(wp == i):
                    m.d.sync += slot.eq(new)
        with m.If(head.pop):
            m.d.sync += rp.eq(Mux(rp == 2, 0, rp + 1))
        if self.transport is tp.Transport.UDP:
            with m.If(push):
                m.d.sync += [ck_valid.eq(1), ck_slot.eq(wp), ck_length.eq(desc.length),
                             ck_base.eq(Mux(is_data, bases.bases[desc.tc], bases.control_base))]
            plain, plus_one = ck_base + ck_length, ck_base + ck_length + 1
            checksum = be_bytes(~Mux(plain[16], plus_one[:16], plain[:16]), 2)
            with m.If(ck_valid):
                for i, slot in enumerate(slots):
                    with m.If(ck_slot == i):
                        m.d.sync += slot.header[8 * ck_at:8 * (ck_at + 2)].eq(checksum)
        return head
