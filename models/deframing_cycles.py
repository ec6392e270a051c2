"""The receive side of the link path in cycles, as the RTL builds it: the
twins of :class:`~tlpoe.rtl.framing.deframer.Deframer` (the receive checks)
and :class:`~tlpoe.rtl.framing.unpacker.TlpUnpacker` (checked frames into
TLPs), in the manner of :mod:`tlpoe.models.framing_cycles`: :meth:`step`
takes one cycle's inputs, returns what the RTL shows before the edge and
moves the registers across it (``tests/test_deframing_twin.py`` proves
them in amaranth.sim).

* :class:`CycleDeframer` is a twin at the Deframer's ports: the RTL is a
  fixed-latency pipeline whose stages no port shows, so the twin keeps the
  frame's bytes and judges it with :func:`tlpoe.models.frame.decode_frame`
  (the check order the RTL matches) when the last beat arrives, then delays
  the descriptor and the counters by the RTL's latency. The body words
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
"""

from collections import namedtuple

from . import wire
from .frame import FLAG_CREDITS_VALID, CREDIT_FIELDS, DropReason, FrameError, decode_frame
from .framing_cycles import WIDTHS, crc_latency

__all__ = ["RxDesc", "DeframerCycle", "CycleDeframer", "verdict_latency", "frame_words",
           "UnpackerCycle", "CycleUnpacker"]

#: The Deframer's verdict on one frame (the RTL's ``RxDesc``): ``good`` (a
#: DATA frame that passed every check), ``count`` (TLPs), ``words`` (stored),
#: ``area`` (DWs of its TLP area; 0 unless DATA), ``ok`` (passed every check)
#: and the header's ``frame_type``, ``flags``, ``seq`` and ``ack``.
RxDesc = namedtuple("RxDesc", "good count words area ok frame_type flags seq ack")
#: What the deframer shows in a cycle: ``word`` (a body word pushed, or
#: None), ``desc`` (an :class:`RxDesc` pushed, or None), ``credits`` (the
#: frame's six credit fields, by name, while ``credits_update``, else None)
#: and the counters (``drops`` a list by :class:`DropReason`).
DeframerCycle = namedtuple("DeframerCycle",
                           "word desc credits drops good_frames control_frames overflows")


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
    __slots__ = ("adm", "desc", "reason", "is_data", "credits")


class CycleDeframer:
    """The :class:`~tlpoe.rtl.framing.deframer.Deframer` at its ports.

    :meth:`step` inputs: ``beat`` (the frame beat on ``frame``, ``(data,
    keep, last)``, or None; ``frame.ready`` is always 1) and ``room``
    (``words.ready`` and ``desc.ready``: read at a frame's first beat).
    """

    def __init__(self, width, *, mtu=1500, ethertype=wire.ETHERTYPE):
        if width not in WIDTHS:
            raise ValueError(f"width must be one of {WIDTHS}, not {width!r}")
        if mtu not in wire.MTUS:
            raise ValueError(f"mtu must be one of {wire.MTUS}, not {mtu!r}")
        self.width, self.mtu, self.ethertype = width, mtu, ethertype
        self.max_words = frame_words(width, mtu)
        self.latency = verdict_latency(width)
        self.reset()

    def reset(self):
        self.drops = [0] * len(DropReason)
        self.good_frames = self.control_frames = self.overflows = 0
        self.j, self.admitted = 0, False
        self.bytes = bytearray()
        self.word = None                        # stage 1: the word pushed
        self.line = [None] * self.latency       # verdicts, stage 1 first

    def outputs(self):
        v = self.line[-1]
        desc = credits = None
        if v is not None and v.adm:
            desc = v.desc
            if v.desc.ok and v.desc.flags & FLAG_CREDITS_VALID:
                credits = v.credits
        return DeframerCycle(self.word, desc, credits, list(self.drops), self.good_frames,
                             self.control_frames, self.overflows)

    def _judge(self, frame, adm, words):
        """The verdict on ``frame`` (its bytes as the RTL counts them)."""
        v = _Verdict()
        v.adm, v.reason = adm, None
        head = bytes(frame[:wire.HEADER_LEN]).ljust(wire.HEADER_LEN, b"\0")
        fields = wire.BRIDGE_HEADER.unpack(head, wire.ETH_LEN)
        v.is_data = fields["frame_type"] == wire.FrameType.DATA
        v.credits = {name: fields[name] for name in CREDIT_FIELDS}
        count = area = 0
        try:
            decoded = decode_frame(frame, ethertype=self.ethertype, mtu=self.mtu)
            count = len(decoded.tlps)
            area = (decoded.payload_length >> 2) & 0xFFF if v.is_data else 0
            ok = True
        except FrameError as error:
            v.reason, ok = error.reason, False
        v.desc = RxDesc(int(ok and v.is_data), count, words, area, int(ok),
                        fields["frame_type"], fields["flags"], fields["seq"], fields["ack"])
        return v

    def step(self, *, beat=None, room=True):
        """One clock cycle; returns the :class:`DeframerCycle` shown before the edge."""
        shown = self.outputs()
        v = self.line[-1]
        if v is not None:
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
            if last:
                done = self._judge(bytes(self.bytes), admit, min(self.j + 1, self.max_words))
                self.j = 0
            else:
                self.j += 1
        self.line = [done] + self.line[:-1]
        return shown
