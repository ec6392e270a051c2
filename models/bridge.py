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
  to the sender; go-back-N, or selective repeat with the reorder buffer
  before the unpacker. Not composed yet: the class queues of both paths
  (their twin, :class:`~tlpoe.models.queues_cycles.CycleClassQueues`, is
  proven on its own) and the register slices around them, the order
  stamps they make (here an input with each TLP), the credit loop (the
  credits every frame carries and ``send_credit`` are inputs; the peer's
  credits an output), the ordering checkers: ``tlp_in`` is the packer's
  input and ``tlp_out`` the unpacker's output.

:meth:`BridgeModel.step` is one clock cycle: the inputs of the RTL's ports,
and what they show before the edge; ``tests/test_bridge_twin.py`` proves
it against the RTL in amaranth.sim, every output and counter in every cycle.
"""

from collections import deque, namedtuple

from . import wire
from .deframing_cycles import (CycleDeframer, CycleReorderBuffer, CycleUnpacker, ReorderDesc,
                               frame_words, verdict_latency)
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
    """The :class:`~tlpoe.rtl.framing.decapsulator.Decapsulator`.
    :meth:`step` inputs: ``beat`` (the frame beat offered, ``(data, keep,
    last)``, or None), ``tlp_ready``, and ``verdict``: a function from the
    deframer's descriptor (when there is one) to the entry the descriptor
    FIFO stores (the link receiver's verdict: an ``RxDesc`` with its
    ``good``, or with ``window`` a
    :class:`~tlpoe.models.deframing_cycles.ReorderDesc`), default the
    descriptor itself. ``hold`` as the RTL's: hold ``frame`` between frames
    while there is no room (default), or take every beat (a MAC's side).
    ``window``: a reorder buffer of that many frames between the FIFOs and
    the unpacker (selective repeat)."""

    def __init__(self, width, *, mtu=1500, ethertype=wire.ETHERTYPE, hold=True, window=None):
        self.width, self.mtu, self.hold = width, mtu, hold
        self.depth, self.desc_depth, self.in_flight = decap_depths(width, mtu, window)
        self.deframer = CycleDeframer(width, mtu=mtu, ethertype=ethertype)
        words = self.deframer.max_words
        self.unpacker = CycleUnpacker(width, max_words=words)
        self.reorder = None if window is None else \
            CycleReorderBuffer(width, max_words=words, window=window)
        self.reset()

    def reset(self):
        self.deframer.reset()
        self.unpacker.reset()
        if self.reorder is not None:
            self.reorder.reset()
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
        # what the FIFOs feed: the unpacker, or the reorder buffer before it
        fifo_desc = self.descs.r_data if self.descs.r_rdy else None
        fifo_word = self.slice.o_payload if self.slice.o_valid else None
        if self.reorder is None:
            sink = u
            self.unpacker.step(desc=fifo_desc, word=fifo_word, tlp_ready=tlp_ready)
        else:
            inputs = dict(desc=fifo_desc, word=fifo_word, out_desc_ready=u.desc_ready,
                          out_words_ready=u.words_ready)
            sink = self.reorder.step(**inputs)
            self.unpacker.step(desc=sink.out_desc, word=sink.out_word, tlp_ready=tlp_ready)
        i_ready = self.slice.i_ready
        self.slice.clock(self.body.r_rdy, self.body.r_data, sink.words_ready)
        self.body.clock(d.word is not None, d.word, i_ready)
        self.descs.clock(stored is not None, stored, sink.desc_ready)
        self.deframer.step(beat=taken, room=self.room)
        self.room = room
        return shown


class BridgeConfig(namedtuple("BridgeConfig", "link mtu flush_timeout ethertype")):
    """The bridge's parameters: ``link`` (a :class:`CycleConfig`: the link
    endpoint's, and the datapath ``width``), ``mtu``, ``flush_timeout``
    (cycles; the reset value of the run-time input) and ``ethertype``."""
    __slots__ = ()

    def __new__(cls, link=None, mtu=1500, flush_timeout=64, ethertype=wire.ETHERTYPE):
        return super().__new__(cls, link if link is not None else CycleConfig(), mtu,
                               flush_timeout, ethertype)


#: What the bridge shows in a cycle: ``tlp_in_ready``, ``frame_out`` (the
#: beat offered, a :class:`~tlpoe.models.framing_cycles.FrameBeat`, or
#: None), ``tlp_out`` (``(data, keep, last, stamp)``, or None),
#: ``peer_credits`` (the credit fields of a frame received, while its
#: update pulses, else None), ``link_down``, ``unacked`` and ``counters``
#: (every counter by its RTL name; ``drops`` a list by reason).
BridgeCycle = namedtuple("BridgeCycle", "tlp_in_ready frame_out tlp_out peer_credits link_down "
                                        "unacked counters")


class BridgeModel:
    """The bridge's link path both ways, in cycles (see the module's
    docstring for what it leaves out). Run-time inputs, settable between
    cycles: ``flush_timeout``, ``replay_timeout``, ``nak_timeout``,
    ``ack_delay`` and ``framer`` (a :class:`FramerConfig`: MAC addresses,
    channel, and the credits every frame carries)."""

    def __init__(self, config=None):
        self.config = config = config if config is not None else BridgeConfig()
        link = config.link
        self.width = link.width
        self.packer = CyclePacker(link.width, mtu=config.mtu, flush_timeout=config.flush_timeout)
        self.endpoint = CycleEndpoint(link)
        self.framer = CycleFramer(link.width, ethertype=config.ethertype, seq_bits=link.seq_bits)
        self.decap = CycleDecapsulator(link.width, mtu=config.mtu, ethertype=config.ethertype,
                                       hold=False,
                                       window=link.window if link.mode == "sr" else None)
        self.framer_config = FramerConfig(credits_valid=True)
        self._clear_bodies()

    def _clear_bodies(self):
        self.bodies = {}            # replay buffer slot -> its frame's body words
        self.pending = []           # words stored for the tail's slot, its desc to come
        self.reader = deque()       # the words of the frame the body reader fetches
        self.tx_word = 0            # the word on tx_words

    def reset(self):
        """``rst``: every register and counter back to its initial value."""
        for block in (self.packer, self.endpoint, self.framer, self.decap):
            block.reset()
        self._clear_bodies()

    flush_timeout = property(lambda self: self.packer.flush_timeout,
                             lambda self, v: setattr(self.packer, "flush_timeout", v))
    replay_timeout = property(lambda self: self.endpoint.replay_timeout,
                              lambda self, v: setattr(self.endpoint, "replay_timeout", v))
    nak_timeout = property(lambda self: self.endpoint.nak_timeout,
                           lambda self, v: setattr(self.endpoint, "nak_timeout", v))
    ack_delay = property(lambda self: self.endpoint.ack_delay,
                         lambda self, v: setattr(self.endpoint, "ack_delay", v))

    @property
    def link_down(self):
        return self.endpoint.link_down

    def counters(self):
        """Every counter, by its RTL name."""
        p, f, d = self.packer, self.framer, self.decap
        return {"oversize_drops": p.oversize_drops, "length_errors": p.length_errors,
                "frames_sent": f.frames_sent, **self.endpoint.counters(),
                "drops": list(d.deframer.drops), "good_frames": d.deframer.good_frames,
                "control_frames": d.deframer.control_frames,
                "overflows": d.deframer.overflows, "tlps_out": d.unpacker.tlps_out}

    def step(self, *, tlp_in=None, frame_out_ready=False, frame_in=None, tlp_out_ready=False,
             send_credit=False):
        """One clock cycle. Inputs: ``tlp_in`` (the TLP beat offered,
        ``(data, keep, last, stamp)``, or None), ``frame_out_ready`` (the
        MAC takes a beat), ``frame_in`` (the MAC's beat, ``(data, keep,
        last)``, or None: always taken), ``tlp_out_ready``, ``send_credit``
        (the credit loop asks for a frame). Returns the :class:`BridgeCycle`
        shown before the edge."""
        sender = self.endpoint.sender
        counters, unacked, down = self.counters(), sender.unacked, self.link_down
        framer, packer = self.framer.outputs(), self.packer.outputs()
        decap = self.decap.outputs()
        received = None
        if decap.desc is not None:
            d = decap.desc
            received = RxFrame(d.ok, d.good, d.frame_type, d.flags, d.seq, d.ack)
        # the replay buffer's body store and reader, beside the endpoint's
        store = sender.store_ready()
        tail_slot = sender.tail & (self.config.link.window - 1)
        word_shown = self.tx_word if sender.out_valid else None
        fetch = sender.words_left and (not sender.out_valid or framer.words_ready)
        data_sent = framer.data_sent_seq if frame_out_ready else None
        cycle = self.endpoint.step(
            received=received, desc=packer.desc, words_valid=packer.word is not None,
            tx_ready=framer.desc_ready, tx_words_ready=framer.words_ready,
            data_sent=data_sent, send_credit=send_credit)
        if fetch:
            self.tx_word = self.reader.popleft()
        if cycle.taken and cycle.tx.frame_type == wire.FrameType.DATA:
            self.reader = deque(self.bodies[cycle.tx.seq & (self.config.link.window - 1)])
        if store and packer.word is not None:
            self.pending.append(packer.word)
        if store and packer.desc is not None:
            self.bodies[tail_slot], self.pending = self.pending, []
        offered = cycle.tx._asdict() if cycle.tx is not None else None
        self.framer.step(desc=offered, word=word_shown, frame_ready=frame_out_ready,
                         config=self.framer_config)
        self.packer.step(beat=tlp_in, words_ready=store, desc_ready=store)
        verdict, sr = cycle.verdict, self.config.link.mode == "sr"

        def judged(desc):
            frame = desc._replace(good=verdict.good)
            return ReorderDesc(frame, verdict.store, verdict.release) if sr else frame
        self.decap.step(beat=frame_in, tlp_ready=tlp_out_ready, verdict=judged)
        return BridgeCycle(packer.tlp_ready, framer.frame, decap.tlp, decap.credits, down,
                           unacked, counters)
