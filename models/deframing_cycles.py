"""The receive side of the link path in cycles, as the RTL builds it: the
twins of :class:`~tlpoe.rtl.framing.deframer.Deframer` (the receive checks)
and :class:`~tlpoe.rtl.framing.unpacker.TlpUnpacker` (checked frames into
TLPs), in the manner of :mod:`tlpoe.models.framing_cycles`: :meth:`step`
takes one cycle's inputs, returns what the RTL shows before the edge and
moves the registers across it (``tests/test_deframing_twin.py`` proves
them in amaranth.sim).

* :class:`CycleDeframer` is a twin at the Deframer's ports: the RTL is a
  fixed-latency pipeline whose stages no port shows, so the twin keeps the
  frame's bytes and judges it with :func:`tlpoe.models.transport.receive`
  (:func:`tlpoe.models.frame.decode_frame` on ``eth``: the check order the
  RTL matches) three cycles after the last beat (when the RTL compares the
  ``udp`` addresses), then delays the descriptor and the counters by the
  RTL's latency. The body words
  leave a cycle after their beats, as the RTL's do. Of a dropped frame's
  descriptor only ``ok = good = 0`` and ``words`` are modelled: no block
  reads the rest (the unpacker delivers nothing of it, the link receiver
  looks at ``ok`` first), and the RTL's is what its pipeline registers
  held (a frame cut short before its header ends carries the header
  fields of the frame before).
* :class:`CycleUnpacker` is cycle-exact inside too: its two halves (the load
  of a word into the packing of its TLP-area DWs; the walk of the circular
  buffer of DWs that decides and reads each TLP beat) decide when each beat
  leaves.
* :class:`CycleReorderBuffer` (selective repeat) is cycle-exact too; it is
  proven inside the receive path (``tests/test_bridge_twin.py``), where the
  link receiver gives it the verdicts its contract needs (a slot reused
  only after its frame was released).
"""

from collections import namedtuple

from . import transport as tp
from . import wire
from .frame import CREDIT_FIELDS, DropReason, FrameError, carries_credits, keepalive_fields
from .framing_cycles import WIDTHS, crc_latency

__all__ = ["RxDesc", "DeframerCycle", "CycleDeframer", "verdict_latency", "frame_words",
           "UnpackerCycle", "CycleUnpacker", "ReorderDesc", "ReorderCycle",
           "CycleReorderBuffer"]

#: The Deframer's verdict on one frame (the RTL's ``RxDesc``): ``good`` (a
#: DATA frame that passed every check), ``count`` (TLPs), ``words`` (stored),
#: ``area`` (DWs of its TLP area; 0 unless DATA), ``ok`` (passed every check)
#: and the header's ``frame_type``, ``flags``, ``seq`` and ``ack``.
RxDesc = namedtuple("RxDesc", "good count words area ok frame_type flags seq ack")
#: What the deframer shows in a cycle: ``word`` (a body word pushed, or
#: None), ``desc`` (an :class:`RxDesc` pushed, or None), ``credits`` (the
#: frame's six credit fields, by name, while ``credits_update``, else None),
#: the counters (``drops`` a list by :class:`DropReason`) and ``keepalive``
#: (a KEEPALIVE's link-state fields, a dict, with ``desc`` when it passed
#: every check, else None) and ``ce`` (with ``desc``: it passed every check
#: and arrived marked ECN-CE; ``udp`` only).
DeframerCycle = namedtuple("DeframerCycle",
                           "word desc credits drops good_frames control_frames overflows "
                           "keepalive ce")


def frame_words(width, mtu):
    """Beats of ``width`` bits that the longest frame at ``mtu`` occupies."""
    return -(-(wire.ETH_LEN + mtu) // (width // 8))


def verdict_latency(width):
    """Edges from the one taking a frame's last beat to the one pushing its
    descriptor (the RTL's ``verdict_latency``)."""
    return max(9, 3 + crc_latency(width)) + 1


def _keep_bytes(keep, n):
    """The byte count the RTL reads from a last beat's ``keep`` (``n`` bits):
    the OR of ``i + 1`` over every lane ``i`` where the ones end."""
    count = 0
    for i in range(n):
        if keep >> i & 1 and not (i + 1 < n and keep >> (i + 1) & 1):
            count |= i + 1
    return count


class _Verdict:
    __slots__ = ("adm", "desc", "reason", "is_data", "credits", "ce")


class CycleDeframer:
    """The :class:`~tlpoe.rtl.framing.deframer.Deframer` at its ports.

    :meth:`step` inputs: ``beat`` (the frame beat on ``frame``, ``(data,
    keep, last)``, or None; ``frame.ready`` is always 1) and ``room``
    (``words.ready`` and ``desc.ready``: read at a frame's first beat).
    """

    def __init__(self, width, *, mtu=1500, ethertype=wire.ETHERTYPE, transport="eth",
                 udp_init=None):
        if width not in WIDTHS:
            raise ValueError(f"width must be one of {WIDTHS}, not {width!r}")
        if mtu not in wire.MTUS:
            raise ValueError(f"mtu must be one of {wire.MTUS}, not {mtu!r}")
        self.width, self.mtu, self.ethertype = width, mtu, ethertype
        self.transport = tp.Transport(transport)
        self.bridge_at, self.area_at = tp.header_bytes(transport), tp.area_offset(transport)
        #: the ``udp`` configuration (ours): the step's ``udp`` argument when given
        self.udp = tp.UdpConfig() if udp_init is None else udp_init
        self.max_words = frame_words(width, mtu)
        self.latency = verdict_latency(width)
        self.reset()

    def reset(self):
        self.drops = [0] * len(DropReason)
        self.good_frames = self.control_frames = self.overflows = 0
        self.ce_frames = 0                      # (not an RTL counter: the benches')
        self.j, self.admitted = 0, False
        self.bytes = bytearray()
        self.word = None                        # stage 1: the word pushed
        self.line = [None] * self.latency       # verdicts, stage 1 first

    def outputs(self):
        v = self.line[-1]
        desc = credits = keepalive = None
        ce = False
        if v is not None and v.adm:
            ce = v.ce
            desc = v.desc
            if v.desc.ok and carries_credits(v.desc.frame_type, v.desc.flags):
                credits = v.credits
            if v.desc.ok and v.desc.frame_type == wire.FrameType.KEEPALIVE:
                keepalive = keepalive_fields(v.credits)
        return DeframerCycle(self.word, desc, credits, list(self.drops), self.good_frames,
                             self.control_frames, self.overflows, keepalive, ce)

    def _judge(self, frame, adm, words):
        """The verdict on ``frame`` (its bytes as the RTL counts them), with
        the ``udp`` configuration as it is now."""
        v = _Verdict()
        v.adm, v.reason = adm, None
        head = bytes(frame[:self.area_at]).ljust(self.area_at, b"\0")
        fields = wire.BRIDGE_HEADER.unpack(head, self.bridge_at)
        v.is_data = fields["frame_type"] == wire.FrameType.DATA
        v.credits = {name: fields[name] for name in CREDIT_FIELDS}
        count = area = 0
        try:
            decoded = tp.receive(frame, self.transport, self.udp, ethertype=self.ethertype,
                                 mtu=self.mtu)
            count = len(decoded.tlps)
            area = (decoded.payload_length >> 2) & 0xFFF if v.is_data else 0
            ok = True
        except FrameError as error:
            v.reason, ok = error.reason, False
        v.ce = ok and self.transport is tp.Transport.UDP and \
            tp.IPV4["ecn"].get(frame, wire.ETH_LEN) == tp.CE
        v.desc = RxDesc(int(ok and v.is_data), count, words, area, int(ok),
                        fields["frame_type"], fields["flags"], fields["seq"], fields["ack"])
        return v

    def step(self, *, beat=None, room=True, udp=None):
        """One clock cycle; returns the :class:`DeframerCycle` shown before the edge.
        ``udp``: the ``udp`` transport's configuration input this cycle (None:
        unchanged), which judges the frame whose last beat came three cycles
        before (the RTL compares the addresses and port at its stage 3)."""
        if udp is not None:
            self.udp = udp
        if self.line[2] is not None and not isinstance(self.line[2], _Verdict):
            self.line[2] = self._judge(*self.line[2])
        shown = self.outputs()
        v = self.line[-1]
        if v is not None:
            self.ce_frames += bool(v.adm and v.ce)
            if not v.adm:
                self.overflows += 1
            elif v.reason is not None:
                self.drops[v.reason] += 1
            elif v.is_data:
                self.good_frames += 1
            else:
                self.control_frames += 1
        done = None
        self.word = None
        if beat is not None:
            data, keep, last = beat
            wb = self.width // 8
            first = self.j == 0
            admit = room if first else self.admitted
            if first:
                self.admitted, self.bytes = room, bytearray()
            if admit and self.j < self.max_words:
                self.word = data
            raw = data.to_bytes(wb, "little")
            self.bytes += raw[:_keep_bytes(keep, wb)] if last else raw
            if last:            # judged three cycles on
                done = (bytes(self.bytes), admit, min(self.j + 1, self.max_words))
                self.j = 0
            else:
                self.j += 1
        self.line = [done] + self.line[:-1]
        return shown


# --- the TlpUnpacker -------------------------------------------------------------------


class _Flags(namedtuple("_Flags", "single n2 last2 take rest need")):
    """What a DW says of its TLP were it a prefix (the RTL's ``flags``)."""
    __slots__ = ()


_NO_FLAGS = _Flags(0, 0, 0, 0, 0, 0)

#: What the unpacker shows in a cycle: ``desc_ready``, ``words_ready``,
#: ``tlp`` (the beat offered, ``(data, keep, last, stamp)``, or None) and
#: ``tlps_out``.
UnpackerCycle = namedtuple("UnpackerCycle", "desc_ready words_ready tlp tlps_out")


class CycleUnpacker:
    """The :class:`~tlpoe.rtl.framing.unpacker.TlpUnpacker` at ``width``
    bits: the load half (the word register with each lane's flags, the
    header skip, the packing of the TLP-area DWs into ``l1``) and the walk
    half (the circular buffer of ``4·D`` DWs with their flags and ends, the
    lagging counts, the decision and the read stage).

    :meth:`step` inputs: ``desc`` (the :class:`RxDesc` offered, or None),
    ``word`` (the word offered, an int, or None) and ``tlp_ready``.
    """

    def __init__(self, width, *, max_words, area_at=wire.HEADER_LEN):
        if width not in WIDTHS:
            raise ValueError(f"width must be one of {WIDTHS}, not {width!r}")
        self.width, self.max_words = width, max_words
        D = width // 32
        self.D, self.E = D, 4 * D
        self.P = self.E.bit_length() - 1
        self.low = (D - 1).bit_length()
        self.HDR = area_at // 4
        self.reset()

    def _header_left(self, lo):
        nxt = min(lo, self.D)
        self.skip, self.avail = nxt, self.D - nxt
        self.avail_mask = [nxt + i < self.D for i in range(self.D)]

    def reset(self):
        D, E = self.D, self.E
        self.tlps_out = 0
        # load
        self.words_left, self.last_word = 0, False
        self.lo_left, self.area_left = 0, 0
        self._header_left(self.HDR)
        self.l0_valid, self.l0_data = False, 0
        self.l0_flags, self.l0_ends = [_NO_FLAGS] * D, [0] * D
        self.l1_valid, self.l1_data, self.l1_n, self.l1_seal = False, [0] * D, 0, False
        self.l1_flags, self.l1_ends = [_NO_FLAGS] * D, [0] * D
        # walk
        self.ent, self.efl, self.enx = [0] * E, [_NO_FLAGS] * E, [0] * E
        self.wp = self.rp = self.used = 0
        self.held = self.held_sealed = self.gone = 0
        self.need = D + 1
        self.in_tlp, self.rem, self.n_cur, self.last_cur = False, 0, 0, False
        self.r_valid, self.r_first, self.r_last = False, False, False
        self.r_take = self.r_pfx = self.r_base = 0

    def _flags(self, dw):
        D = self.D
        dws = (((dw & 0xFF) << 8) | (dw >> 8 & 0xFF)) >> 2
        return _Flags(int(dws <= D), D if dws >= 2 * D else dws % D, int(dws <= 2 * D),
                      dws + 1 if dws < D else D + 1, (dws - D) & 0x7FF,
                      dws + D + 2 if dws <= D else 2 * D + 1)

    def _tlp_beat(self):
        """The read stage's beat, read from the entries now."""
        if not self.r_valid:
            return None
        D, E = self.D, self.E
        keep = sum(1 << i for i in range(D)
                   if (self.r_take > i + 1 if self.r_first else self.r_take > i))
        data = sum(self.ent[(self.r_base + i) % E] << 32 * i for i in range(D) if keep >> i & 1)
        prefix = self.ent[self.r_pfx]
        stamp = (prefix >> 24 & 0xFF) | (prefix >> 16 & 0xFF) << 8
        return (data, keep, int(self.r_last), stamp)

    def _load_ready(self):
        loading = self.words_left != 0
        room = self.l1_valid and self.used <= 3 * self.D
        take = self.l0_valid and loading and (not self.l1_valid or room)
        return loading, room, take

    def outputs(self):
        loading, room, take = self._load_ready()
        return UnpackerCycle(not loading or (take and self.last_word),
                             not self.l0_valid or take, self._tlp_beat(), self.tlps_out)

    def step(self, *, desc=None, word=None, tlp_ready=False):
        """One clock cycle; returns the :class:`UnpackerCycle` shown before the edge."""
        shown = self.outputs()
        D, E, P = self.D, self.E, self.P
        pmask = (1 << P) - 1
        loading, room, take = self._load_ready()

        # load: the TLP area's DWs of the word in l0, packed low
        fits = self.area_left <= self.avail
        keep_here = self.area_left if fits else self.avail
        skip, avail = self.skip, self.avail
        kept = [self.avail_mask[i] and self.area_left > i for i in range(D)]
        lanes = [(self.l0_data >> 32 * (i + skip) & 0xFFFFFFFF) if i + skip < D and kept[i]
                 else 0 for i in range(D)]
        flags = [self.l0_flags[i + skip] if i + skip < D and kept[i] else _NO_FLAGS
                 for i in range(D)]
        ends = [(self.l0_ends[i + skip] - skip) & pmask if i + skip < D else 0
                for i in range(D)]

        # walk: decide the next beat
        head = self.efl[self.rp]
        last = self.last_cur if self.in_tlp else head.single
        whole = self.held >= self.need or self.held_sealed > self.gone
        decided = whole and (not self.r_valid or tlp_ready)
        amount = self.n_cur if self.in_tlp else head.take
        base = (self.rp + (0 if self.in_tlp else 1)) & pmask
        leaving = self.r_take if self.r_valid and tlp_ready else 0
        if self.r_valid and tlp_ready and self.r_last:
            self.tlps_out = (self.tlps_out + 1) & 0xFFFFFFFF

        # walk: the counts (from registers), then the read stage
        landed = self.l1_n if room else 0
        held_next = self.held - self.gone + landed
        if room and self.l1_seal:
            sealed = held_next
        else:
            sealed = self.held_sealed - self.gone if self.held_sealed > self.gone else 0
        if decided:
            need = (self.n_cur + (D + 1 if self.last_cur else D)) if self.in_tlp else head.need
        else:
            need = D if self.in_tlp else D + 1
        in_tlp, rem, n_cur, last_cur = self.in_tlp, self.rem, self.n_cur, self.last_cur
        if decided:
            in_tlp = not last
            if self.in_tlp:
                rem = (self.rem - D) & 0xFFF
                n_cur = D if self.rem >= 2 * D else self.rem % D
                last_cur = self.rem <= 2 * D
            else:
                rem, n_cur, last_cur = head.rest, head.n2, bool(head.last2)
            self.r_valid, self.r_first, self.r_last = True, not self.in_tlp, bool(last)
            self.r_take, self.r_pfx, self.r_base = amount, self.rp, base
            self.rp = (self.rp + self.n_cur) & pmask if self.in_tlp else self.enx[self.rp]
        elif tlp_ready:
            self.r_valid = False
        self.gone = amount if decided else 0
        self.held, self.held_sealed, self.need = held_next, sealed, need
        self.in_tlp, self.rem, self.n_cur, self.last_cur = in_tlp, rem, n_cur, last_cur
        self.used += landed - leaving

        # walk: l1 lands at wp
        if room:
            for i in range(D):
                at = (self.wp + i) % E
                self.ent[at], self.efl[at] = self.l1_data[i], self.l1_flags[i]
                self.enx[at] = (self.wp + self.l1_ends[i]) & pmask
            self.wp = (self.wp + self.l1_n) & pmask

        # load: l1 and the counts of the frame's words
        if take:
            self.words_left -= 1
            self.last_word = self.words_left == 1
            self.lo_left -= skip
            self._header_left(self.lo_left)
            self.area_left = 0 if fits else self.area_left - avail
            self.l1_valid = keep_here != 0
            self.l1_data, self.l1_flags, self.l1_ends = lanes, flags, ends
            self.l1_n, self.l1_seal = keep_here, keep_here != 0 and fits
        elif room:
            self.l1_valid = False
        if desc is not None and shown.desc_ready:
            self.words_left, self.last_word = desc.words, desc.words == 1
            self.lo_left = self.HDR
            self._header_left(self.HDR)
            self.area_left = desc.area if desc.good else 0
        # the word register
        if word is not None and shown.words_ready:
            self.l0_valid, self.l0_data = True, word
            self.l0_flags = [self._flags(word >> 32 * i & 0xFFFFFFFF) for i in range(D)]
            self.l0_ends = [(f.take + i) & pmask for i, f in enumerate(self.l0_flags)]
        elif take:
            self.l0_valid = False
        return shown


# --- the ReorderBuffer (selective repeat) ------------------------------------------------


#: A verdict for the reorder buffer (the RTL's ``ReorderDesc``): ``frame``
#: (an :class:`RxDesc`, ``good`` when it is delivered now), ``store`` (keep
#: it in slot ``seq mod window``) and ``release`` (deliver that many kept
#: frames after it).
ReorderDesc = namedtuple("ReorderDesc", "frame store release")
#: What the reorder buffer shows in a cycle: ``desc_ready``, ``words_ready``,
#: ``out_desc`` (an :class:`RxDesc`, or None) and ``out_word`` (or None).
ReorderCycle = namedtuple("ReorderCycle", "desc_ready words_ready out_desc out_word")

_NEXT, _STORE, _PASS, _RELEASE, _READ = range(5)


class CycleReorderBuffer:
    """The :class:`~tlpoe.rtl.link.reorder.ReorderBuffer`: one frame at a
    time, stored in its slot, or passed on and followed by the kept frames
    it releases, read back word by word. Its outputs depend on its inputs
    in the same cycle (as the RTL's do): :meth:`outputs` takes them.

    Inputs: ``desc`` (a :class:`ReorderDesc`, or None), ``word`` (or None),
    ``out_desc_ready``, ``out_words_ready``."""

    def __init__(self, width, *, max_words, window):
        if window < 2 or window & (window - 1):
            raise ValueError(f"window must be a power of two of at least 2, not {window!r}")
        self.width, self.max_words, self.window = width, max_words, window
        self.slot_words = 1 << (max_words - 1).bit_length()
        self.reset()

    def reset(self):
        self.state, self.slot, self.word, self.words_left, self.release = _NEXT, 0, 0, 0, 0
        self.out_valid, self.read_data = False, 0
        self.kept = {}                  # slot -> (count, words, area)
        self.body = {}                  # (slot, word) -> data

    def outputs(self, *, desc=None, word=None, out_desc_ready=False, out_words_ready=False):
        s = self.state
        keep = desc is not None and desc.store
        desc_ready = s == _NEXT and (keep or out_desc_ready)
        out_desc = None
        if s == _RELEASE:
            count, words, area = self.kept.get(self.slot, (0, 0, 0))
            out_desc = RxDesc(1, count, words, area, 0, 0, 0, 0, 0)
        elif s == _NEXT and desc is not None and not desc.store:
            out_desc = desc.frame
        words_ready = s == _STORE or (s == _PASS and out_words_ready)
        if s == _PASS:
            out_word = word
        else:
            out_word = self.read_data if s == _READ and self.out_valid else None
        return ReorderCycle(desc_ready, words_ready, out_desc, out_word)

    def step(self, *, desc=None, word=None, out_desc_ready=False, out_words_ready=False):
        """One clock cycle; returns the :class:`ReorderCycle` shown before the edge."""
        shown = self.outputs(desc=desc, word=word, out_desc_ready=out_desc_ready,
                             out_words_ready=out_words_ready)
        s, mask = self.state, self.window - 1
        fetch = s == _READ and self.words_left != 0 and (not self.out_valid or out_words_ready)
        if desc is not None and shown.desc_ready:
            slot = desc.frame.seq & mask
            if desc.store:
                self.kept[slot] = (desc.frame.count, desc.frame.words, desc.frame.area)
            self.slot, self.word, self.words_left = slot, 0, desc.frame.words
            self.release, self.state = desc.release, _STORE if desc.store else _PASS
        if word is not None and shown.words_ready:
            if s == _STORE:
                self.body[self.slot, self.word % self.slot_words] = word
            last = self.words_left == 1
            self.word, self.words_left = self.word + 1, self.words_left - 1
            if last and s == _STORE:
                self.state = _NEXT
            elif last:
                self.slot = (self.slot + 1) & mask
                self.state = _RELEASE if self.release else _NEXT
        if s == _RELEASE and out_desc_ready:
            self.word, self.words_left = 0, self.kept.get(self.slot, (0, 0, 0))[1]
            self.release, self.state = self.release - 1, _READ
        if fetch:
            self.read_data = self.body.get((self.slot, self.word % self.slot_words), 0)
            self.word, self.words_left, self.out_valid = self.word + 1, self.words_left - 1, True
        elif s == _READ and out_words_ready:
            self.out_valid = False
            if self.words_left == 0:
                self.slot = (self.slot + 1) & mask
                self.state = _RELEASE if self.release else _NEXT
        return shown
