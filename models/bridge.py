"""The bridge in cycles, composed as the RTL composes it (issue 18 item 1):
the cycle twins of :mod:`tlpoe.models.framing_cycles`,
:mod:`tlpoe.models.deframing_cycles` and :mod:`tlpoe.models.link_cycles`
joined port to port as ``rtl/bridge/paths.py`` joins the blocks.

* :class:`CycleDecapsulator`: the
  :class:`~tlpoe.rtl.framing.decapsulator.Decapsulator`: the deframer, the
  body and descriptor FIFOs and their room register, the verdict stage (a
  :class:`~tlpoe.models.link_cycles.CycleReceiver`'s verdict, or none), the
  register slice before the unpacker, the unpacker.
* :class:`BridgeModel`: the bridge's link path both ways, as the
  :class:`~tlpoe.rtl.bridge.bridge.Bridge` builds it between its class
  queues: TLPs in → packer → replay buffer (the endpoint's sender, with
  the frame bodies it stores) → framer → frames out; frames in →
  decapsulator with the endpoint's receiver as its verdict stage → TLPs
  out; the receiver's feedback to the sender, the framer's ``data_sent``
  to the sender. Go-back-N only (selective repeat needs the twin of the
  ReorderBuffer). Not modelled yet: the class queues of both paths and the
  register slices around them, the order stamps they make, the credit
  loop (the credits every frame carries and ``send_credit`` are inputs),
  the ordering checkers: ``tlp_in`` is the packer's input and ``tlp_out``
  the unpacker's output.

:meth:`BridgeModel.step` is one clock cycle: the inputs of the RTL's ports,
and what they show before the edge; ``tests/test_bridge_twin.py`` proves
it against the RTL in amaranth.sim, every output and counter in every cycle.
"""

from collections import deque, namedtuple

from . import wire
from .deframing_cycles import CycleDeframer, CycleUnpacker, frame_words, verdict_latency
from .framing_cycles import (CycleFramer, CyclePacker, FramerConfig, SkidBuffer,
                             SyncFifoBuffered)
from .link_cycles import CycleConfig, CycleEndpoint, RxFrame

__all__ = ["decap_depths", "DecapCycle", "CycleDecapsulator", "BridgeConfig", "BridgeCycle",
           "BridgeModel"]

#: Bytes a frame occupies on an Ethernet line besides its own (without FCS):
#: FCS, preamble and start delimiter, inter-frame gap (the Decapsulator's
#: ``WIRE_OVERHEAD``).
WIRE_OVERHEAD = 4 + 8 + 12


def decap_depths(width, mtu, window=None):
    """The Decapsulator's body and descriptor FIFO depths and its
    ``in_flight`` (its sizing, restated: see ``rtl/framing/decapsulator.py``;
    ``window``: the reorder buffer's, or None)."""
    words, latency = frame_words(width, mtu), verdict_latency(width)
    in_flight = latency + 2
    depth = 2 * words + 2 + 3 + latency + 8
    slot_bits = (wire.MIN_FRAME + WIRE_OVERHEAD) * 8
    burst = -(-(words + latency + 8) * width // slot_bits) + 1
    depth += burst * -(-wire.MIN_FRAME * 8 // width)
    desc_depth = max(16, burst) + in_flight + 1
    if window is not None:
        release = (window + 1) * (words + 1)
        depth += release
        desc_depth += release // max(1, wire.MIN_FRAME * 8 // width)
    return depth, desc_depth, in_flight


#: What the decapsulator shows in a cycle: ``frame_ready``, ``tlp`` (the
#: beat offered, ``(data, keep, last, stamp)``, or None), ``desc`` (the
#: deframer's verdict this cycle, an ``RxDesc``, or None: what a verdict
#: stage judges), ``credits`` (while ``credits_update``) and the counters.
DecapCycle = namedtuple("DecapCycle", "frame_ready tlp desc credits drops good_frames "
                                      "control_frames overflows tlps_out")


class CycleDecapsulator:
    """The :class:`~tlpoe.rtl.framing.decapsulator.Decapsulator` without a
    reorder stage. :meth:`step` inputs: ``beat`` (the frame beat offered,
    ``(data, keep, last)``, or None), ``tlp_ready``, and ``verdict``: a
    function from the deframer's descriptor (when there is one) to the
    descriptor the FIFO stores (the link receiver's ``good``), default the
    descriptor itself. ``hold`` as the RTL's: hold ``frame`` between frames
    while there is no room (default), or take every beat (a MAC's side)."""

    def __init__(self, width, *, mtu=1500, ethertype=wire.ETHERTYPE, hold=True):
        self.width, self.mtu, self.hold = width, mtu, hold
        self.depth, self.desc_depth, self.in_flight = decap_depths(width, mtu)
        self.deframer = CycleDeframer(width, mtu=mtu, ethertype=ethertype)
        self.unpacker = CycleUnpacker(width, max_words=self.deframer.max_words)
        self.reset()

    def reset(self):
        self.deframer.reset()
        self.unpacker.reset()
        self.body = SyncFifoBuffered(self.depth)
        self.descs = SyncFifoBuffered(self.desc_depth)
        self.slice = SkidBuffer()
        self.room = True
        self.in_frame = False

    def outputs(self):
        d, u = self.deframer.outputs(), self.unpacker.outputs()
        return DecapCycle(not self.hold or self.in_frame or self.room, u.tlp, d.desc, d.credits,
                          d.drops, d.good_frames, d.control_frames, d.overflows, u.tlps_out)

    def step(self, *, beat=None, tlp_ready=False, verdict=None):
        """One clock cycle; returns the :class:`DecapCycle` shown before the edge."""
        shown = self.outputs()
        d, u = self.deframer.outputs(), self.unpacker.outputs()
        taken = beat if shown.frame_ready else None
        if self.hold and beat is not None and shown.frame_ready:
            self.in_frame = not beat[2]
        stored = d.desc if d.desc is None or verdict is None else verdict(d.desc)
        words = self.deframer.max_words
        room = (self.body.level <= self.depth - 1 - 2 - words and
                self.descs.level <= self.desc_depth - 1 - self.in_flight)
        self.unpacker.step(desc=self.descs.r_data if self.descs.r_rdy else None,
                           word=self.slice.o_payload if self.slice.o_valid else None,
                           tlp_ready=tlp_ready)
        i_ready = self.slice.i_ready
        self.slice.clock(self.body.r_rdy, self.body.r_data, u.words_ready)
        self.body.clock(d.word is not None, d.word, i_ready)
        self.descs.clock(stored is not None, stored, u.desc_ready)
        self.deframer.step(beat=taken, room=self.room)
        self.room = room
        return shown
