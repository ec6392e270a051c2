"""Deframer: the receive checks of the decapsulator, pipelined."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...models import transport as tp
from ...models import wire
from ...models.frame import DropReason
from ..streams import CreditLimit, RxDesc, check_width, frame_stream
from ..tlp_header import CLASSES
from ..wirefmt import be_field, unpack_field
from .crc import Crc32Pipelined, reverse_zero_bytes
from .transport import UdpConfigLayout, geometry, udp_config_init

__all__ = ["frame_words", "Deframer", "verdict_latency"]


def frame_words(width, mtu):
    """Beats of ``width`` bits that the longest frame at ``mtu`` occupies."""
    return -(-(wire.ETH_LEN + mtu) // (width // 8))


def _walk_doublings(width):
    """Pointer-doubling stages of the prefix walk: a prefix and the smallest
    TLP take 16 bytes, so a beat holds up to ``width/128`` prefixes."""
    return (max(1, width // 128) - 1).bit_length()


#: Stage (cycles after a beat is taken) at which the prefix walk's per-beat
#: results, the counted prefixes and their checks are registered.
_WALK_STAGE = 6
_WALK_DONE = _WALK_STAGE + 3


def verdict_latency(width):
    """Clock edges from the edge that takes a frame's last beat to the edge
    that pushes its descriptor and moves its counters (:class:`Deframer`)."""
    crc_done = 3 + Crc32Pipelined.latency_at(width)       # the CRC compare, registered
    return max(_WALK_DONE, crc_done) + 1


class Deframer(wiring.Component):
    """Checks every received frame, in the order of
    :data:`tlpoe.models.frame.CHECK_ORDER`, while storing its words; a
    pipeline that takes a beat every cycle and never backpressures
    (``frame.ready`` is always 1).

    Admission: a frame is taken in when, at its first beat, ``words.ready``
    and ``desc.ready`` are both high.  Here ``ready`` is a promise of room
    for a whole frame: the Deframer then pushes the frame's words (up to the
    largest frame the MTU allows; the rest of an oversize frame is not
    stored), one cycle after each beat, and its :class:`RxDesc`,
    :attr:`latency` cycles after its last beat, without looking at ``ready``
    again (the :class:`~tlpoe.rtl.framing.decapsulator.Decapsulator` drives them
    from its FIFOs' levels).  A frame that finds either low is not stored,
    gets no descriptor and counts in ``overflows``, not in ``drops``: a MAC
    cannot wait.

    Verdict: ``desc.good`` only for a DATA frame that passed every check.
    A dropped frame increments ``drops[reason]`` for the first failing
    check; a well-formed ACK/NAK/CREDIT/KEEPALIVE frame increments
    ``control_frames``; a good DATA frame ``good_frames``.  Latency: the
    descriptor is valid, and the counters move at the end of, the cycle
    :attr:`latency` (:func:`verdict_latency`: 10 at 64 and 128 bits, 11 at
    256, 12 at 512) edges after the edge that took the last beat; the next
    frame may start the very next cycle, so up to :attr:`latency` frames
    are being checked at once.  A bad frame costs the same cycles as a good
    one.

    ``credits`` holds the bridge header's six credit fields (per class P,
    NP, CPL) while ``credits_update`` pulses, in the descriptor's cycle, if
    the frame passed every check and its ``flags`` say the credit fields are
    valid (any frame type but KEEPALIVE: retransmissions and duplicates
    too); a KEEPALIVE's link-state fields are read from the same ``credits``
    (:data:`~tlpoe.models.wire.KEEPALIVE_FIELDS`, whatever its flags).

    ``transport`` ``udp`` (:mod:`tlpoe.models.transport`): the EtherType
    checked is IPv4's, then the IPv4 and UDP headers
    (:data:`~tlpoe.models.transport.UDP_CHECK_ORDER`: IP_HEADER, its
    checksum summed over stages 3 to 6; NOT_OURS against ``udp``'s
    ``src_ip`` (ours), ``dst_ip`` (the peer's) and ``dst_port``, as they are
    three cycles after the frame's last beat); the bridge header at byte
    42, the TLP area at 68, the CRC over bytes 42 onwards. ``ce`` pulses
    with the descriptor of a frame that passed every check and arrived
    marked ECN-CE (a congested switch on the way: the CNP generator's
    input).
    """

    def __init__(self, width, *, mtu=1500, ethertype=wire.ETHERTYPE, transport="eth",
                 udp_init=None):
        check_width(width)
        self.geo = geometry(transport)
        self.transport = self.geo.transport
        if mtu not in wire.MTUS:
            raise ValueError(f"mtu must be one of {wire.MTUS}, not {mtu!r}")
        if not 0x600 <= ethertype <= 0xFFFF:
            raise ValueError(f"ethertype must be an EtherType (0x0600..0xFFFF), not {ethertype!r}")
        self.width = width
        self.mtu = mtu
        self.ethertype = ethertype
        self.max_words = frame_words(width, mtu)
        #: Edges from the one taking a frame's last beat to the one pushing its verdict.
        self.latency = verdict_latency(width)
        super().__init__({
            **({} if self.transport is tp.Transport.ETH else {
                "udp": In(UdpConfigLayout(), init=udp_config_init(udp_init))}),
            "frame": In(frame_stream(width)),
            "words": Out(stream.Signature(width)),
            "desc": Out(stream.Signature(RxDesc(self.max_words))),
            "drops": Out(data.ArrayLayout(32, len(DropReason))),
            "good_frames": Out(32),
            "control_frames": Out(32),
            "overflows": Out(32),
            "credits": Out(data.ArrayLayout(CreditLimit(), 3)),
            "credits_update": Out(1),
            "ce": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        W, Wb, D = self.width, self.width // 8, self.width // 32
        shift = Wb.bit_length() - 1
        beat = self.frame.payload
        j_max = 2 ** 17 // Wb                   # beat index saturates past any length check
        stage = {}                              # (name, stage) -> value

        def reg(name, value, at, *, reset_less=True):
            """``value`` (of stage ``at - 1``) registered as stage ``at``."""
            sig = Signal(len(value), name=f"{name}_s{at}", reset_less=reset_less)
            m.d.sync += sig.eq(value)
            stage[name, at] = sig
            return sig

        def at(name, to):
            """Value ``name`` at stage ``to``: delayed from its last stage."""
            have = max(s for n, s in stage if n == name and s <= to)
            value = stage[name, have]
            for s in range(have + 1, to + 1):
                value = reg(name, value, s, reset_less=name not in ("v",))
            return value

        # ---- Stage 1: the beat, its index, the admission.
        jin = Signal(range(j_max + 1))
        admitted = Signal()
        first_in = Signal()
        room = Signal()
        m.d.comb += [
            self.frame.ready.eq(1),
            first_in.eq(jin == 0),
            room.eq(self.words.ready & self.desc.ready),
        ]
        admit = Mux(first_in, room, admitted)
        with m.If(self.frame.valid):
            m.d.sync += jin.eq(Mux(beat.last, 0, Mux(jin == j_max, jin, jin + 1)))
            with m.If(first_in):
                m.d.sync += admitted.eq(room)
        reg("v", self.frame.valid, 1, reset_less=False)
        reg("data", beat.data, 1)
        reg("keep", beat.keep, 1)
        reg("last", beat.last, 1)
        reg("j", jin, 1)
        reg("first", first_in, 1)
        reg("adm", admit, 1)
        fits = jin < self.max_words
        reg("store", admit & fits, 1)
        reg("nwords", Mux(fits, jin + 1, self.max_words), 1)
        m.d.comb += [
            self.words.valid.eq(stage["v", 1] & stage["store", 1]),
            self.words.payload.eq(stage["data", 1]),
        ]

        # ---- Stage 2: the header words and the TLP area's end, as captured.
        bridge_at, area_at = self.geo.bridge_at, self.geo.area_at
        hdr_words = -(-area_at // Wb)
        hdr_reg = Signal(8 * hdr_words * Wb, reset_less=True)
        for k in range(hdr_words):
            with m.If(stage["v", 1] & (stage["j", 1] == k)):
                m.d.sync += hdr_reg[k * W:(k + 1) * W].eq(stage["data", 1])
        length_at = (bridge_at + wire.BRIDGE_HEADER["payload_length"].offset) // Wb
        # 40 + L (68 + L on udp), valid from beat `length_at` on; before it, the
        # frame before's or 40: at least 40 either way, which is all the beats
        # before need to know
        data_end = Signal(17, init=area_at)
        with m.If(stage["v", 1] & (stage["j", 1] == length_at)):
            length = unpack_field(wire.BRIDGE_HEADER, "payload_length", stage["data", 1],
                                  base=bridge_at - length_at * Wb)
            m.d.sync += data_end.eq(area_at + length)
        for name in ("v", "data", "keep", "last", "j", "first"):
            at(name, 2)
        d2, j2 = stage["data", 2], stage["j", 2]
        end_beat, end_lane = data_end[shift:], data_end[2:shift]

        def field(name):
            return unpack_field(wire.BRIDGE_HEADER, name, hdr_reg, base=bridge_at)

        # The CRC over bytes 14 (42 on udp) .. data_end-1, whole DWs; the bytes
        # before read as zero.
        m.submodules.crc = crc = Crc32Pipelined(W, init=reverse_zero_bytes(0xFFFFFFFF,
                                                                           bridge_at))
        masked = Signal(W)
        m.d.comb += masked.eq(d2)
        for k in range(-(-bridge_at // Wb)):
            keep_from = max(0, bridge_at - k * Wb)
            with m.If(j2 == k):
                m.d.comb += masked.eq(d2 & ~Const((1 << (8 * keep_from)) - 1, W))
        m.d.comb += [
            crc.valid.eq(stage["v", 2]),
            crc.first.eq(stage["first", 2]),
            crc.data.eq(masked),
            crc.dws.eq(Mux(j2 < end_beat, D, Mux(j2 == end_beat, end_lane, 0))),
        ]
        crc_at = 2 + crc.latency                # the register after the beat, at this stage
        stage["crc", crc_at] = crc.crc

        # The received CRC: the DW at data_end, in the beat that holds it.
        dw_at = Array(d2[32 * i:32 * (i + 1)] for i in range(D))
        reg("rx_crc", dw_at[end_lane], 3)
        reg("crc_here", j2 == end_beat, 3)

        # The bytes of the last beat (keep is contiguous from lane 0).
        keep = stage["keep", 2]
        n_beat = Const(0, shift + 1)
        for i in range(Wb):             # the one lane where the ones end gives the count
            edge = keep[i] & ~keep[i + 1] if i + 1 < Wb else keep[i]
            n_beat = n_beat | Mux(edge, i + 1, 0)
        reg("n", n_beat, 3)

        # The header fields, as the frame's last beat leaves stage 2.
        reg("end", data_end, 3)
        for name in ("frame_type", "flags", "seq", "ack", "tlp_count", "version"):
            reg(name, field(name), 3)
        reg("ethertype", unpack_field(wire.ETHERNET, "ethertype", hdr_reg), 3)
        if self.transport is tp.Transport.UDP:
            self._udp_checks(m, hdr_reg, reg, at, stage)
        for name in CLASSES:
            reg(f"credit_{name}_hdr", field(f"credit_{name}_hdr"), 3)
            reg(f"credit_{name}_data", field(f"credit_{name}_data"), 3)

        # Prefix walk, per lane: where a prefix here would lead.
        for p in range(D):
            dw = d2[32 * p:32 * (p + 1)]
            tlp_length = Cat(dw[8:16], dw[0:8])
            step = Signal(17, name=f"step{p}")
            m.d.comb += step.eq(4 * p + wire.PREFIX_LEN + tlp_length)
            reg(f"next{p}", Cat(Const(0, shift), j2) + step, 3)
            reg(f"in_beat{p}", step < Wb, 3)
            reg(f"tlp_ok{p}", (tlp_length[:2] == 0) & (tlp_length >= wire.MIN_TLP), 3)
        for name in ("v", "last", "j", "first"):
            at(name, 3)

        # ---- Stage 3: per-lane step records; the frame's received CRC; header checks.
        j3, end3 = stage["j", 3], stage["end", 3]
        end3_beat = end3[shift:]
        before, same = Signal(), Signal()
        m.d.comb += [before.eq(j3 < end3_beat), same.eq(j3 == end3_beat)]
        steps = []
        for p in range(D):
            nxt = stage[f"next{p}", 3]
            active = before | (same & (4 * p < end3[:shift]))
            wrong = ~stage[f"tlp_ok{p}", 3] | (nxt > end3)
            steps.append({
                "cont": active & ~wrong & stage[f"in_beat{p}", 3],
                "lane": nxt[2:shift],
                "off": Mux(active, nxt, Cat(Const(4 * p, shift), j3)),
                "cnt": active & ~wrong,
                "bad": active & wrong,
            })
        records = [{k: reg(f"g{p}_{k}", v, 4) for k, v in rec.items()} for p, rec in enumerate(steps)]

        rx_hold = Signal(32, reset_less=True)
        with m.If(stage["v", 3] & stage["crc_here", 3]):
            m.d.sync += rx_hold.eq(stage["rx_crc", 3])
        reg("rx_frame", Mux(stage["crc_here", 3], stage["rx_crc", 3], rx_hold), 4)
        reg("total", Cat(Const(0, shift), j3) + stage["n", 3], 4)
        ftype = stage["frame_type", 3]
        reg("is_data", ftype == wire.FrameType.DATA, 4)
        ethertype = tp.ETHERTYPE_IPV4 if self.transport is tp.Transport.UDP else self.ethertype
        reg("bad_ethertype", stage["ethertype", 3] != ethertype, 4)
        reg("bad_version", (stage["version", 3] != wire.VERSION) | (ftype >= len(wire.FrameType)),
            4)
        reg("misaligned", end3[:2] != 0, 4)

        # ---- Stages 4..6: pointer doubling, each lane's record walked to the beat's end.
        for s in range(4, _WALK_STAGE):
            if s - 4 < _walk_doublings(W):
                table = {k: Array(r[k] for r in records) for k in records[0]}
                new = []
                for p, r in enumerate(records):
                    q = r["lane"]
                    new.append({
                        "cont": Mux(r["cont"], table["cont"][q], 0),
                        "lane": Mux(r["cont"], table["lane"][q], r["lane"]),
                        "off": Mux(r["cont"], table["off"][q], r["off"]),
                        "cnt": Mux(r["cont"], r["cnt"] + table["cnt"][q], r["cnt"]),
                        "bad": Mux(r["cont"], table["bad"][q], r["bad"]),
                    })
            else:
                new = records
            records = [{k: reg(f"g{p}_{k}", v, s + 1) for k, v in rec.items()}
                       for p, rec in enumerate(new)]
        total4, end4 = stage["total", 4], at("end", 4)
        reg("short", total4 < area_at + wire.CRC_LEN, 5)
        reg("cut", total4 < end4 + wire.CRC_LEN, 5)
        reg("oversize", total4 > wire.ETH_LEN + self.mtu, 5)

        # ---- Stage 6, the walk's loop: the next prefix's offset from beat to beat.
        S = _WALK_STAGE
        v6, j6, first6 = at("v", S), at("j", S), at("first", S)
        woff = Signal(19, reset_less=True)
        wbad = Signal(reset_less=True)
        add = Signal(range(D + 1))
        table = {k: Array(r[k] for r in records) for k in records[0]}
        if area_at < Wb:                      # the TLP area starts in the first beat
            first_lane = area_at // 4
            first_step = (records[first_lane]["off"], records[first_lane]["bad"],
                          records[first_lane]["cnt"])
        else:
            first_step = (Const(area_at, 19), Const(0, 1), Const(0, 1))
        enter = ~wbad & (woff[shift:] == j6)
        lane = woff[2:shift]
        with m.If(v6):
            with m.If(first6):
                m.d.sync += [woff.eq(first_step[0]), wbad.eq(first_step[1]),
                             add.eq(first_step[2])]
            with m.Elif(enter):
                m.d.sync += [woff.eq(table["off"][lane]), wbad.eq(table["bad"][lane]),
                             add.eq(table["cnt"][lane])]
            with m.Else():
                m.d.sync += add.eq(0)
        stage["off", S + 1], stage["walk_bad", S + 1], stage["add", S + 1] = woff, wbad, add
        count = Signal(16, reset_less=True)
        v7, first7 = at("v", S + 1), at("first", S + 1)
        with m.If(v7):
            m.d.sync += count.eq(Mux(first7, 0, count) + add)
        stage["count", S + 2] = count
        at("off", S + 2)
        at("walk_bad", S + 2)
        count8, off8, end8 = count, stage["off", S + 2], at("end", S + 2)
        is_data8 = at("is_data", S + 2)
        reg("walk_failed", stage["walk_bad", S + 2] | (off8 != end8), _WALK_DONE)
        reg("count_mismatch", (count8 != at("tlp_count", S + 2)) | (~is_data8 & (count8 != 0)),
            _WALK_DONE)
        reg("empty", is_data8 & (count8 == 0), _WALK_DONE)
        reg("count", count8, _WALK_DONE)

        # ---- The CRC compare.
        rx_at = at("rx_frame", crc_at)
        reg("bad_crc", rx_at != ~stage["crc", crc_at], crc_at + 1)

        # ---- Verdict: the first failing check, then the descriptor and counters.
        V = self.latency - 1                    # every check registered by this stage
        checks = [
            (DropReason.TRUNCATED, at("short", V)),
            (DropReason.ETHERTYPE, at("bad_ethertype", V)),
            *([] if self.transport is tp.Transport.ETH else [
                (DropReason.IP_HEADER, at("bad_ip", V)),
                (DropReason.NOT_OURS, at("not_ours", V))]),
            (DropReason.VERSION, at("bad_version", V)),
            (DropReason.TRUNCATED, at("cut", V)),
            (DropReason.PREFIX_OVERRUN, at("misaligned", V)),
            (DropReason.CRC, at("bad_crc", V)),
            (DropReason.PREFIX_OVERRUN, at("walk_failed", V)),
            (DropReason.COUNT_MISMATCH, at("count_mismatch", V)),
            (DropReason.EMPTY_DATA, at("empty", V)),
            (DropReason.OVERSIZE, at("oversize", V)),
        ]
        failed = Signal()
        reason = Signal(range(len(DropReason)))
        for why, cond in reversed(checks):
            with m.If(cond):
                m.d.comb += [failed.eq(1), reason.eq(why)]
        E = V + 1
        v, last, adm = at("v", E), at("last", E), at("adm", E)
        failed_e = reg("failed", failed, E)
        reason_e = reg("reason", reason, E)
        is_data = at("is_data", E)
        flags = at("flags", E)
        done = Signal()
        m.d.comb += done.eq(v & last)
        m.d.comb += [
            self.desc.valid.eq(done & adm),
            self.desc.payload.good.eq(~failed_e & is_data),
            self.desc.payload.count.eq(at("count", E)),
            self.desc.payload.words.eq(at("nwords", E)),
            self.desc.payload.area.eq(Mux(is_data, (at("end", E) - area_at)[2:14], 0)),
            self.desc.payload.ok.eq(~failed_e),
            self.desc.payload.frame_type.eq(at("frame_type", E)),
            self.desc.payload.flags.eq(flags),
            self.desc.payload.seq.eq(at("seq", E)),
            self.desc.payload.ack.eq(at("ack", E)),
            # FLAG_CREDITS_VALID, in any frame but a KEEPALIVE (whose bytes
            # there are its link-state fields: a peer's flags cannot make
            # them limits)
            self.credits_update.eq(done & adm & ~failed_e & flags[1] &
                                   (at("frame_type", E) != wire.FrameType.KEEPALIVE)),
        ]
        if self.transport is tp.Transport.UDP:
            # ECN: a frame that passed every check arrived marked CE
            m.d.comb += self.ce.eq(done & adm & ~failed_e & at("ip_ce", E))
        for k, name in enumerate(CLASSES):
            m.d.comb += [self.credits[k].hdr.eq(at(f"credit_{name}_hdr", E)),
                         self.credits[k].data.eq(at(f"credit_{name}_data", E))]
        with m.If(done):
            with m.If(~adm):
                m.d.sync += self.overflows.eq(self.overflows + 1)
            with m.Elif(failed_e):
                with m.Switch(reason_e):
                    for why in DropReason:
                        with m.Case(why):
                            m.d.sync += self.drops[why].eq(self.drops[why] + 1)
            with m.Elif(is_data):
                m.d.sync += self.good_frames.eq(self.good_frames + 1)
            with m.Else():
                m.d.sync += self.control_frames.eq(self.control_frames + 1)
        return m

    def _udp_checks(self, m, hdr_reg, reg, at, stage):
        """The IPv4 and UDP checks, from the header bytes as the frame's last
        beat leaves stage 2: ``bad_ip`` and ``not_ours`` registered by stage
        7; the header checksum's ten words summed by a tree of one adder per
        stage (a valid header sums to a non-zero multiple of 0xFFFF)."""
        ip_at, udp_at = wire.ETH_LEN, wire.ETH_LEN + tp.IPV4.length

        def ip(name):
            return unpack_field(tp.IPV4, name, hdr_reg, base=ip_at)

        def udp(name):
            return unpack_field(tp.UDP, name, hdr_reg, base=udp_at)

        for name in ("version_ihl", "protocol", "flags_fragment", "total_length", "src_ip",
                     "dst_ip"):
            reg(f"ip_{name}", ip(name), 3)
        reg("udp_length", udp("length"), 3)
        reg("ip_ce", ip("ecn") == tp.CE, 3)
        reg("udp_port", udp("dst_port"), 3)
        words = [be_field(hdr_reg, ip_at + 2 * k, 2) for k in range(tp.IPV4.length // 2)]
        pairs = [reg(f"ck_a{k}", words[2 * k] + words[2 * k + 1], 3) for k in range(5)]
        quads = [reg("ck_b0", pairs[0] + pairs[1], 4), reg("ck_b1", pairs[2] + pairs[3], 4),
                 reg("ck_b2", pairs[4], 4)]
        half = [reg("ck_c0", quads[0] + quads[1], 5), reg("ck_c1", quads[2], 5)]
        total = reg("ck_sum", half[0] + half[1], 6)
        reg("ck_bad", ~Cat(total == k * 0xFFFF for k in range(1, 11)).any(), 7)

        # the lengths: 20 + 8 + 26 + L + 4 = end - 10 (end = 68 + L)
        end3, cfg = stage["end", 3], self.udp
        after_udp = wire.BRIDGE_HEADER.length + wire.CRC_LEN
        reg("ip_fields_bad",
            (stage["ip_version_ihl", 3] != 0x45) | (stage["ip_protocol", 3] != tp.IPPROTO_UDP) |
            (stage["ip_flags_fragment", 3][:14] != 0) |
            (stage["ip_total_length", 3] != end3 - (self.geo.area_at - tp.IPV4.length -
                                                    tp.UDP.length - after_udp)) |
            (stage["udp_length", 3] + tp.IPV4.length != stage["ip_total_length", 3]), 4)
        reg("not_ours", (stage["ip_dst_ip", 3] != cfg.src_ip) |
            (stage["ip_src_ip", 3] != cfg.dst_ip) | (stage["udp_port", 3] != cfg.dst_port), 4)
        reg("bad_ip", at("ip_fields_bad", 7) | stage["ck_bad", 7], 8)
