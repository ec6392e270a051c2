"""The bridge in cycles, composed as the RTL composes it (issue 18 item 1):
the cycle twins of :mod:`tlpoe.models.framing_cycles`,
:mod:`tlpoe.models.deframing_cycles` and :mod:`tlpoe.models.link_cycles`
joined port to port as ``rtl/bridge/paths.py`` joins the blocks.

* :class:`CycleDecapsulator`: the
  :class:`~tlpoe.rtl.framing.decapsulator.Decapsulator`: the deframer, the
  body and descriptor FIFOs and their room register, the verdict stage (a
  :class:`~tlpoe.models.link_cycles.CycleReceiver`'s verdict, or none), the
  register slice before the unpacker, the unpacker.
* :class:`LinkPath`: the bridge's link path both ways, as the
  :class:`~tlpoe.rtl.bridge.bridge.Bridge` builds it between its class
  queues: TLPs in → packer → replay buffer (the endpoint's sender, with
  the frame bodies it stores) → framer → frames out; frames in →
  decapsulator with the endpoint's receiver as its verdict stage → TLPs
  out; the receiver's feedback to the sender, the framer's ``data_sent``
  to the sender; go-back-N, or selective repeat with the reorder buffer
  before the unpacker.
* :class:`BridgeModel`: the whole :class:`~tlpoe.rtl.bridge.bridge.Bridge`:
  the link path between the class queues of both directions
  (:class:`~tlpoe.models.queues_cycles.CycleClassQueues`) and their
  register slices (transmit: ``tlp_in`` → queues, which make the order
  stamps → slice → packer; receive: unpacker → slice → queues with
  ``class_enable`` ``(1, np_accept, 1)`` and credits off → ``tlp_out``);
  the credit loop (:mod:`tlpoe.models.credits_cycles`: the credit return
  at the receive egress, the peer's limits from each good frame for the
  transmit queues, the advertiser's ``send_credit``); both ordering
  checkers (:mod:`tlpoe.models.order_cycles`), each fed the opposite
  path's egress for its request table; the ``cfg`` inputs and every
  ``stats`` field of :mod:`~tlpoe.rtl.bridge.registers`.

:meth:`LinkPath.step` and :meth:`BridgeModel.step` are one clock cycle:
the inputs of the RTL's ports, and what they show before the edge;
``tests/test_bridge_twin.py`` proves the link path against the RTL's
blocks and ``tests/test_bridge_model.py`` the whole model against the
RTL's Bridge in amaranth.sim, every output and counter in every cycle.
The sizing of the Bridge's queues and credits is :func:`bridge_sizes`,
which the RTL imports.
"""

from collections import deque, namedtuple
from types import SimpleNamespace

from . import wire
from .deframing_cycles import (CycleDeframer, CycleReorderBuffer, CycleUnpacker, ReorderDesc,
                               frame_words, verdict_latency)
from .framing_cycles import (CycleFramer, CyclePacker, FramerConfig, SkidBuffer,
                             SyncFifoBuffered)
from .credits_cycles import (CycleCreditAdvertiser, CycleCreditReturn, CyclePeerCredits,
                             queue_credits)
from .cpl_gate_cycles import CycleCompletionGate, CycleRequestTap
from .cpl_tracker_cycles import COUNTERS as TRACKER_COUNTERS
from .cpl_tracker_cycles import CycleCplTracker, header_tlp, ur_completion
from .dcqcn import DcqcnParams
from .dcqcn_cycles import CnpCycles, RateLimiterCycles, wire_bytes_of
from .frame import keepalive_credits
from .link_cycles import CycleConfig, CycleEndpoint, RxFrame
from .link_state_cycles import CycleLinkState
from .order_cycles import CycleOrderChecker, order_window
from .queues_cycles import CycleClassQueues
from .transport import UdpConfig

__all__ = ["decap_depths", "DecapCycle", "CycleDecapsulator", "BridgeConfig", "BridgeCycle",
           "LinkPath", "bridge_sizes", "tx_max_credits", "BridgeSizes", "BridgeOutputs", "BridgeModel"]

#: Bytes a frame occupies on an Ethernet line besides its own (without FCS):
#: FCS, preamble and start delimiter, inter-frame gap (the Decapsulator's
#: ``WIRE_OVERHEAD``).
WIRE_OVERHEAD = 4 + 8 + 12


def decap_depths(width, mtu, window=None):
    """The Decapsulator's body and descriptor FIFO depths and its
    ``in_flight`` (``window``: the reorder buffer's, or None). One
    definition: ``rtl/framing/decapsulator.py`` sizes its FIFOs by it.

    Admission reads levels registered one cycle earlier, and the frame
    before may still have words (2) and descriptors (one per frame whose
    verdict is pending) on their way; one entry more because a
    SyncFIFOBuffered's write side is full with its output register empty.
    The body holds the frame arriving and the one before it, whose words
    leave only once its verdict is out (up to the verdict latency and the
    unpacker's start, 8, after the next frame starts); while the largest
    frame is delivered, the smallest keep coming behind it, one per
    MIN_FRAME + 24 bytes on a line no faster than a beat per cycle, each a
    descriptor and its words. In selective repeat a release of kept frames
    (up to a window, a cycle per word and one per frame) holds the FIFOs'
    outputs while frames keep arriving: room for those and a descriptor
    for each smallest frame in that time."""
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
#: stage judges), ``credits`` (while ``credits_update``), the counters and
#: ``keepalive`` (a KEEPALIVE's link-state fields with its ``desc``, else None)
#: and ``ce`` (the frame of ``desc`` passed and arrived marked ECN-CE).
DecapCycle = namedtuple("DecapCycle", "frame_ready tlp desc credits drops good_frames "
                                      "control_frames overflows tlps_out keepalive ce")


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

    def __init__(self, width, *, mtu=1500, ethertype=wire.ETHERTYPE, hold=True, window=None,
                 transport="eth", udp_init=None):
        self.width, self.mtu, self.hold = width, mtu, hold
        self.depth, self.desc_depth, self.in_flight = decap_depths(width, mtu, window)
        self.deframer = CycleDeframer(width, mtu=mtu, ethertype=ethertype, transport=transport,
                                      udp_init=udp_init)
        words = self.deframer.max_words
        self.unpacker = CycleUnpacker(width, max_words=words, area_at=self.deframer.area_at)
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
                          d.drops, d.good_frames, d.control_frames, d.overflows, u.tlps_out,
                          d.keepalive, d.ce)

    def step(self, *, beat=None, tlp_ready=False, verdict=None, udp=None):
        """One clock cycle; returns the :class:`DecapCycle` shown before the edge.
        ``udp``: the ``udp`` transport's configuration now (None: unchanged)."""
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
        self.deframer.step(beat=taken, room=self.room, udp=udp)
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


class LinkPath:
    """The bridge's link path both ways, in cycles, between the class
    queues: ``tlp_in`` is the packer's input (with the stamp the transmit
    queues made) and ``tlp_out`` the unpacker's output; the credits every
    frame carries (``framer``) and ``send_credit`` are inputs, the peer's
    credits an output. After :meth:`step`, ``sent`` (the framer took a
    descriptor) and ``send_ack`` (the receiver's feedback asked for an
    ACK) are that cycle's values, for the credit advertiser. Run-time inputs, settable between
    cycles: ``flush_timeout``, ``replay_timeout``, ``nak_timeout``,
    ``ack_delay`` and ``framer`` (a :class:`FramerConfig`: MAC addresses,
    channel, and the credits every frame carries). ``state``: the link
    state machine (a :class:`~tlpoe.models.link_state_cycles.CycleLinkState`),
    or None: the link goes down for good at the replay limit (a latch).
    ``congestion``: DCQCN's blocks (``ecn``), a
    :class:`~tlpoe.models.dcqcn_cycles.RateLimiterCycles` and a
    :class:`~tlpoe.models.dcqcn_cycles.CnpCycles`, or None."""

    def __init__(self, config=None, state=None, congestion=None):
        self.config = config = config if config is not None else BridgeConfig()
        self.state = state
        self.rate, self.cnp = congestion if congestion is not None else (None, None)
        link = config.link
        self.width = link.width
        transport = link.transport
        self.packer = CyclePacker(link.width, mtu=config.mtu, flush_timeout=config.flush_timeout,
                                  transport=transport)
        self.endpoint = CycleEndpoint(link)
        self.framer = CycleFramer(link.width, ethertype=config.ethertype, seq_bits=link.seq_bits,
                                  transport=transport)
        self.decap = CycleDecapsulator(link.width, mtu=config.mtu, ethertype=config.ethertype,
                                       hold=False,
                                       window=link.window if link.mode == "sr" else None,
                                       transport=transport)
        self.framer_config = FramerConfig(credits_valid=True)
        #: the ``udp`` transport's configuration (a :class:`~tlpoe.models.transport.UdpConfig`)
        self.udp = None
        self.sent = self.send_ack = False
        self._heard = (False, None)
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
        for block in (self.state, self.rate, self.cnp):
            if block is not None:
                block.reset()
        self._heard = (False, None)     # the frame checked a cycle before, registered
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
        if self.state is not None:
            return not self.state.outputs().up
        return self.endpoint.link_down

    def counters(self):
        """Every counter, by its RTL name, and ``link_status``."""
        p, f, d = self.packer, self.framer, self.decap
        out = {"oversize_drops": p.oversize_drops, "length_errors": p.length_errors,
               "frames_sent": f.frames_sent, **self.endpoint.counters(),
               "drops": list(d.deframer.drops), "good_frames": d.deframer.good_frames,
               "control_frames": d.deframer.control_frames,
               "overflows": d.deframer.overflows, "tlps_out": d.unpacker.tlps_out}
        if self.state is None:      # UP until the replay buffer gives up
            out["link_status"] = int(wire.LinkState.DOWN if self.endpoint.link_down
                                     else wire.LinkState.UP)
            out.update(dict.fromkeys(("link_up_events", "peer_restarts", "keepalives_sent",
                                      "keepalives_received"), 0))
        else:
            out["link_status"] = self.state.state
            out.update(self.state.counts)
        if self.rate is not None:
            r, c = self.rate, self.cnp
            out.update(rate_current=r.rc, rate_target=r.rt, rate_alpha=r.alpha,
                       cnps_received=r.cnps_received, throttled_cycles=r.throttled_cycles,
                       ce_frames=c.ce_frames, cnps_sent=c.cnps_sent)
        return out

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
        state = None if self.state is None else self.state.outputs()
        link_state = {} if state is None else dict(
            up=state.up, rewind=state.rewind, drop=state.restart,
            keepalive_due=state.keepalive_due, adopt=state.adopt,
            adopt_base=state.adopt_base & ((1 << self.config.link.seq_bits) - 1))
        congestion = {} if self.rate is None else dict(echo=self.cnp.echo,
                                                       rate_ok=self.rate.rate_ok())
        cycle = self.endpoint.step(
            received=received, desc=packer.desc, words_valid=packer.word is not None,
            tx_ready=framer.desc_ready, tx_words_ready=framer.words_ready,
            data_sent=data_sent, send_credit=send_credit, **link_state, **congestion)
        if self.rate is not None:
            # the rate limiter: the peer's echoes, each DATA frame taken
            sent = None
            if cycle.taken and cycle.tx.frame_type == wire.FrameType.DATA:
                sent = wire_bytes_of(self.framer.area_at, cycle.tx.length) & 0x3FFF
            self.rate.step(cnp=cycle.feedback.echo_in, sent_bytes=sent)
            self.cnp.step(ce=decap.ce, echo_sent=cycle.echo_sent)
        keepalive = cycle.tx is not None and cycle.tx.frame_type == wire.FrameType.KEEPALIVE
        # a KEEPALIVE carries its link-state fields in the credit bytes, not
        # marked valid, and is no credit advertisement
        self.sent, self.send_ack = cycle.taken and not keepalive, bool(cycle.feedback.send_ack)
        framer_config = self.framer_config
        if keepalive:
            credits = keepalive_credits(**state.tx_fields)
            framer_config = framer_config._replace(
                credits=[(credits[f"credit_{k}_hdr"], credits[f"credit_{k}_data"])
                         for k in ("p", "np", "cpl")], credits_valid=False)
        if self.state is not None:
            ka = None if decap.keepalive is None else dict(decap.keepalive, base=decap.desc.seq)
            # (the receive path registers what it tells the state machine)
            (good, heard), self._heard = self._heard, (
                decap.desc is not None and bool(decap.desc.ok), ka)
            self.state.step(rx_good=good, keepalive=heard,
                            retry_limit=self.endpoint.sender.retry_limit,
                            frame_sent=cycle.taken, keepalive_sent=cycle.taken and keepalive)
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
                         config=framer_config)
        self.packer.step(beat=tlp_in, words_ready=store, desc_ready=store)
        verdict, sr = cycle.verdict, self.config.link.mode == "sr"

        def judged(desc):
            frame = desc._replace(good=verdict.good)
            return ReorderDesc(frame, verdict.store, verdict.release) if sr else frame
        self.decap.step(beat=frame_in, tlp_ready=tlp_out_ready, verdict=judged, udp=self.udp)
        return BridgeCycle(packer.tlp_ready, framer.frame, decap.tlp, decap.credits, down,
                           unacked, counters)


# --- the whole bridge ------------------------------------------------------------


class BridgeSizes(namedtuple("BridgeSizes", "queue_depth queue_tlps tx_queue_depth tx_tlps "
                                            "buffers max_credits credit_refresh")):
    """The sizes a Bridge derives from its parameters (:func:`bridge_sizes`):
    each receive queue's ``queue_depth`` (beats) and ``queue_tlps``; the
    transmit queues' ``tx_queue_depth`` and ``tx_tlps``; the ``buffers``
    each receive queue promises, ``(hdr, data)`` per class; the transmit
    queues' ``max_credits`` (data credits of the largest TLP, for the
    credit check a cycle ahead); ``credit_refresh`` (cycles)."""
    __slots__ = ()


def bridge_sizes(width, *, mtu=1500, queue_depth=None, queue_tlps=32, tx_queue_depth=None,
                 replay_timeout=4096, credit_refresh=None):
    """The Bridge's sizing (one definition: ``rtl/bridge/bridge.py`` calls
    it), each parameter checked with an error that names it."""
    if not isinstance(queue_tlps, int) or not 2 <= queue_tlps <= 127:
        raise ValueError(f"queue_tlps must be 2..127 (8-bit header credits), "
                         f"not {queue_tlps!r}")
    if queue_depth is None:
        # 8 KiB per class, or two of the largest TLPs at the MTU, plus headers
        queue_bytes = max(8192, 2 * wire.max_tlp_bytes(mtu))
        queue_depth = -(-queue_bytes * 8 // width) + queue_tlps
    if not isinstance(queue_depth, int) or queue_depth < 2:
        raise ValueError(f"queue_depth must be at least 2 beats, not {queue_depth!r}")
    largest = (wire.max_tlp_bytes(mtu) - 16) // 16      # data credits of the largest TLP
    buffers = (queue_credits(width, queue_depth, queue_tlps),) * 3
    for name, (hdr, credits) in zip(("P", "NP", "CPL"), buffers):
        if credits < largest:
            raise ValueError(
                f"queue_depth={queue_depth} beats with queue_tlps={queue_tlps} leaves "
                f"{credits} data credits per class, fewer than the {largest} of the "
                f"largest TLP at MTU {mtu}: raise queue_depth")
    if credit_refresh is None:
        credit_refresh = replay_timeout
    largest_beats = -(-(wire.max_tlp_bytes(mtu)) * 8 // width)
    if tx_queue_depth is None:
        tx_queue_depth = 2 * largest_beats      # a TLP waiting for credits, one behind
    if not isinstance(tx_queue_depth, int) or tx_queue_depth < largest_beats:
        raise ValueError(f"tx_queue_depth must hold the largest TLP ({largest_beats} "
                         f"beats), not {tx_queue_depth!r}")
    return BridgeSizes(queue_depth, queue_tlps, tx_queue_depth, min(queue_tlps, 16), buffers,
                       tx_max_credits(mtu), credit_refresh)


def tx_max_credits(mtu):
    """The transmit queues' ``max_credits``: the data credits of the
    largest TLP a frame of ``mtu`` carries, at most 256."""
    return min(256, -(-wire.max_tlp_bytes(mtu) // 16))


#: What the whole bridge shows in a cycle: ``tlp_in_ready``, ``frame_out``
#: (a :class:`~tlpoe.models.framing_cycles.FrameBeat`, or None),
#: ``tlp_out`` (``(data, keep, last)``, or None), ``link_down``,
#: ``order_irq`` and ``stats`` (every field of
#: :data:`~tlpoe.rtl.bridge.registers.STATS` by name, as
#: :func:`~tlpoe.rtl.bridge.registers.decode_stats` reads the port).
BridgeOutputs = namedtuple("BridgeOutputs", "tlp_in_ready frame_out tlp_out link_down order_irq "
                                            "stats")

#: The run-time configuration (the ``cfg`` port's fields and the MAC
#: addresses) that :attr:`BridgeModel.cfg` holds, with their resets
#: (a string: the Bridge parameter of that name).
#: The ``cfg`` fields of the ``udp`` transport (``rtl/bridge/registers.py`` UDP_CONFIG).
UDP_NAMES = ("src_ip", "dst_ip", "src_port", "dst_port", "ttl", "control_dscp", "dscp")
#: The ``cfg`` fields of the rate limiter's DCQCN parameters (``DCQCN_CONFIG``).
DCQCN_PARAMS = ("g_shift", "alpha_timer", "increase_timer", "byte_counter", "fast_recovery",
                "ai_rate", "hai_rate", "min_rate")
#: The congestion-control stats (0 without ``ecn``).
DCQCN_STATS = ("rate_current", "rate_target", "rate_alpha", "ce_frames", "cnps_sent",
               "cnps_received", "throttled_cycles")
CONFIG_RESET = dict(channel=0, flush_timeout="flush_timeout", replay_timeout="replay_timeout",
                    nak_timeout="nak_timeout", ack_delay="ack_delay",
                    credit_delay="credit_delay", credit_refresh="credit_refresh",
                    np_accept=1, ro_enable=1, credits_enable=1,
                    keepalive="keepalive", dead="dead", incarnation=0,
                    cpl_timeout="cpl_timeout", hold_time="hold_time",
                    completer_id="completer_id", dst_mac=0, src_mac=0,
                    **{name: getattr(UdpConfig(), name) for name in UDP_NAMES[:-1]},
                    dscp=list(UdpConfig().dscp),
                    ecn_enable="ecn", cnp_interval=DcqcnParams().cnp_interval,
                    **{name: getattr(DcqcnParams(), name) for name in DCQCN_PARAMS},
                    line_bytes="line_bytes", burst=1538)
#: Cycles per tick of ``hold_time`` (the RTL's ``HOLD_TICK``).
HOLD_TICK = 1024
_TAP_COUNTERS = ("posted_dropped", "np_contained", "cpl_dropped")
_ORDER_STATUS = ("irq", "first_valid", "first_cell", "first_tag", "first_stamp")
_ORDER_COUNTERS = ("violations", "tlps_checked", "stamp_errors", "window_errors",
                   "write_collisions", "by_cell")


def _beat(tlp):
    return None if tlp is None else tuple(tlp[:3])


class BridgeModel:
    """The whole :class:`~tlpoe.rtl.bridge.bridge.Bridge` in cycles (see
    the module's docstring). ``config``: a :class:`BridgeConfig` (the link
    endpoint's parameters and ``width``, ``mtu``, ``flush_timeout``,
    ``ethertype``); the other parameters the Bridge's. :attr:`cfg`: the
    run-time inputs by name (the ``cfg`` port's fields, ``dst_mac``,
    ``src_mac``), settable between cycles; ``order_irq_clear`` (a strobe)
    is an input of :meth:`step`."""

    def __init__(self, config=None, *, queue_depth=None, queue_tlps=32, tx_queue_depth=None,
                 credit_delay=256, credit_refresh=None, reorder_illegally=False,
                 link_state=False, keepalive=2500, dead=None, tracker=False, tag_bits=10,
                 cpl_timeout=4883, hold_time=2441, completer_id=0, ecn=False, line_bytes=None):
        self.config = config = config if config is not None else BridgeConfig()
        link = config.link
        self.width, self.mode = link.width, link.mode
        self.sizes = sizes = bridge_sizes(
            link.width, mtu=config.mtu, queue_depth=queue_depth, queue_tlps=queue_tlps,
            tx_queue_depth=tx_queue_depth, replay_timeout=link.replay_timeout,
            credit_refresh=credit_refresh)
        self.parameters = dict(flush_timeout=config.flush_timeout,
                               replay_timeout=link.replay_timeout, nak_timeout=link.nak_timeout,
                               ack_delay=link.ack_delay, credit_delay=credit_delay,
                               credit_refresh=sizes.credit_refresh, keepalive=keepalive,
                               dead=3 * keepalive if dead is None else dead,
                               cpl_timeout=cpl_timeout, hold_time=hold_time,
                               completer_id=completer_id, ecn=int(ecn),
                               line_bytes=link.width // 8 << 8 if line_bytes is None
                               else line_bytes)
        dead = self.parameters["dead"]
        congestion = None
        if ecn:
            congestion = (RateLimiterCycles(line_bytes=self.parameters["line_bytes"]),
                          CnpCycles())
        self.link = LinkPath(config, CycleLinkState(keepalive=keepalive, dead=dead)
                             if link_state else None, congestion)
        self.tx_queues = CycleClassQueues(link.width, depth=sizes.tx_queue_depth,
                                          tlps=sizes.tx_tlps, max_credits=sizes.max_credits,
                                          reorder_illegally=reorder_illegally)
        self.rx_queues = CycleClassQueues(link.width, depth=sizes.queue_depth,
                                          tlps=sizes.queue_tlps)
        self.tx_checker = CycleOrderChecker(link.width, window=order_window(sizes.tx_tlps))
        self.rx_checker = CycleOrderChecker(link.width, window=order_window(sizes.queue_tlps))
        self.credit_return = CycleCreditReturn(sizes.buffers)
        self.peer = CyclePeerCredits()
        self.advertiser = CycleCreditAdvertiser(sizes.buffers, delay=credit_delay,
                                                refresh=sizes.credit_refresh)
        if tracker:
            self.tracker = CycleCplTracker(tag_bits=tag_bits, timeout=cpl_timeout)
            self.tap, self.gate = CycleRequestTap(link.width), CycleCompletionGate(link.width)
        else:
            self.tracker = self.tap = self.gate = None
        self.cfg = {name: self.parameters[v] if isinstance(v, str) else v
                    for name, v in CONFIG_RESET.items()}
        self.reset()

    def reset_cycle(self):
        """One cycle with ``rst`` high: :meth:`reset`, and the registers
        without a reset (the ``udp`` configuration's pipeline) clocked."""
        self.reset()
        if self.config.link.transport != "eth":
            self.link.framer.clock_udp(self._udp_config())

    def _udp_config(self):
        """The ``udp`` configuration in ``cfg`` as a
        :class:`~tlpoe.models.transport.UdpConfig` (made again only when it
        changes)."""
        key = tuple(tuple(v) if isinstance(v, list) else v
                    for v in (self.cfg[name] for name in UDP_NAMES))
        if key != getattr(self, "_udp_key", None):
            self._udp_key, self._udp = key, UdpConfig(**dict(zip(UDP_NAMES, key)))
        return self._udp

    def reset(self):
        """``rst``: every register and counter back to its initial value
        (``cfg`` is an input: it keeps its values)."""
        for block in (self.link, self.tx_queues, self.rx_queues, self.tx_checker,
                      self.rx_checker, self.credit_return, self.peer, self.advertiser):
            block.reset()
        self.tx_slice, self.rx_slice = SkidBuffer(), SkidBuffer()
        if self.tracker is not None:
            for block in (self.tracker, self.tap, self.gate):
                block.reset()
            self.in_slice, self.out_slice = SkidBuffer(), SkidBuffer()
            # the hold timer; the merge of the UR completions
            self.div = self.down_ticks = 0
            self.hold = self.second = self.busy = False

    @property
    def blocks(self):
        tracking = () if self.tracker is None else (self.tracker, self.tap, self.gate)
        return (self.link, self.tx_queues, self.rx_queues, self.tx_checker, self.rx_checker,
                self.credit_return, self.peer, self.advertiser) + tracking

    def _stats(self, link, tx_q, tx_order, rx_order):
        c = link.counters
        stats = {"link_down": int(link.link_down), "np_room": int(tx_q.np_room)}
        for prefix, order in (("order_", rx_order), ("tx_order_", tx_order)):
            for name in _ORDER_STATUS + _ORDER_COUNTERS:
                value = getattr(order, name)
                stats[prefix + name] = int(value) if isinstance(value, bool) else value
        for name, value in c.items():
            stats[name] = value
        for name in ("out_of_order_buffered", "containment", "outstanding") + \
                TRACKER_COUNTERS + _TAP_COUNTERS + DCQCN_STATS:
            stats.setdefault(name, 0)       # 0 in sr only / without the tracker
        stats.update(credit_frames=self.advertiser.frames, credits_invalid=self.peer.invalid,
                     credit_stall_cycles=list(tx_q.credit_stall_cycles),
                     tlps_sent=list(tx_q.tlps_sent), credit_limit=list(self.peer.limit),
                     credits_consumed=list(tx_q.credits_consumed),
                     credits_advertised=list(self.advertiser.advertised))
        return stats

    def step(self, *, tlp_in=None, frame_out_ready=False, frame_in=None, tlp_out_ready=False,
             order_irq_clear=False):
        """One clock cycle. Inputs: ``tlp_in`` (the TLP beat offered,
        ``(data, keep, last)``, or None), ``frame_out_ready``, ``frame_in``
        (the MAC's beat, ``(data, keep, last)``, or None: always taken),
        ``tlp_out_ready``, ``order_irq_clear``. Returns the
        :class:`BridgeOutputs` shown before the edge."""
        cfg, link, tracking = self.cfg, self.link, self.tracker is not None
        tx_slice, rx_slice = self.tx_slice, self.rx_slice
        # registers other blocks read this cycle
        limit = list(self.credit_return.limit)
        send_credit = self.advertiser.request
        peer_limit = list(self.peer.limit)
        tx_o = tx_slice.o_payload if tx_slice.o_valid else None
        rx_o = rx_slice.o_payload if rx_slice.o_valid else None
        tx_i_ready, rx_i_ready = tx_slice.i_ready, rx_slice.i_ready
        # with the tracker: tlp_in → a slice → the tap → the transmit queues;
        # the receive queues → a slice → the gate (the tracker's ports first:
        # what the tap and the gate offer depends on no ready of the tracker's)
        if tracking:
            tap_in = self.in_slice.o_payload if self.in_slice.o_valid else None
            seen, asked, offer = self._offers(tap_in)
            to_queues = tap_in if self.tap.outputs(
                i_beat=tap_in, o_ready=self.tx_queues.outputs().tlp_in_ready,
                req_ready=seen.req_ready, contain=self.hold).o_valid else None
        else:
            to_queues = tlp_in
        rq_ready = self.out_slice.i_ready if tracking else tlp_out_ready
        # the link state's pulses this cycle (a peer restart: the credits)
        shown = None if link.state is None else link.state.outputs()
        restart = shown is not None and shown.restart
        # the link path, its run-time inputs from cfg and the credit return
        udp = self._udp_config() if self.config.link.transport != "eth" else None
        link.framer_config = FramerConfig(cfg["dst_mac"], cfg["src_mac"], cfg["channel"], limit,
                                          True, udp)
        link.udp = udp
        for name in ("flush_timeout", "replay_timeout", "nak_timeout", "ack_delay"):
            setattr(link, name, cfg[name])
        if link.state is not None:
            for name in ("keepalive", "dead", "incarnation"):
                setattr(link.state, name, cfg[name])
        if link.rate is not None:
            self._dcqcn_config(link.rate, link.cnp)
        ln = link.step(tlp_in=tx_o, frame_out_ready=frame_out_ready, frame_in=frame_in,
                       tlp_out_ready=rx_i_ready, send_credit=send_credit)
        # the class queues both ways
        tq = self.tx_queues.step(beat=to_queues, out_ready=tx_i_ready, credit_limit=peer_limit,
                                 credits_enable=bool(cfg["credits_enable"]),
                                 ro_enable=bool(cfg["ro_enable"]), credits_restart=restart)
        rq = self.rx_queues.step(beat=_beat(rx_o), out_ready=rq_ready,
                                 ro_enable=bool(cfg["ro_enable"]),
                                 class_enable=0b101 | (cfg["np_accept"] & 1) << 1)
        tx_in = to_queues if to_queues is not None and tq.tlp_in_ready else None
        tx_out = _beat(tq.tlp_out) if tq.tlp_out is not None and tx_i_ready else None
        rx_in = _beat(rx_o) if rx_o is not None and rq.tlp_in_ready else None
        rx_out = _beat(rq.tlp_out) if rq.tlp_out is not None and rq_ready else None
        # the order checkers: each its own queues, the requests of the other way's egress
        to = self.tx_checker.step(in_beat=tx_in, out_beat=tx_out,
                                  out_stamps=(tq.out_posted, tq.out_cpls), req_beat=rx_out,
                                  irq_clear=order_irq_clear)
        ro = self.rx_checker.step(in_beat=rx_in, out_beat=rx_out,
                                  out_stamps=(rq.out_posted, rq.out_cpls), req_beat=tx_out,
                                  irq_clear=order_irq_clear)
        stats = self._stats(ln, tq, to, ro)
        if tracking:
            tlp_out, tlp_in_ready = self._track(stats, seen, asked, offer, tlp_in, tap_in,
                                                tq.tlp_in_ready, rq, ln, tlp_out_ready,
                                                restart)
        else:
            tlp_out, tlp_in_ready = _beat(rq.tlp_out), tq.tlp_in_ready
        # the slices and the credit loop
        tx_slice.clock(tq.tlp_out is not None, tq.tlp_out, ln.tlp_in_ready)
        rx_slice.clock(ln.tlp_out is not None, ln.tlp_out, rq.tlp_in_ready)
        self.credit_return.step(valid=rx_out is not None, beat=rx_out or (0, 0, 0),
                                in_valid=rx_in is not None, in_beat=rx_in or (0, 0, 0),
                                rebase=shown is not None and shown.adopt)
        credits = ln.peer_credits
        received = limit if credits is None else [
            (credits[f"credit_{k}_hdr"], credits[f"credit_{k}_data"]) for k in ("p", "np", "cpl")]
        self.peer.step(update=credits is not None, received=received,
                       consumed=tq.credits_consumed, enable=bool(cfg["credits_enable"]),
                       restart=restart)
        self.advertiser.delay, self.advertiser.refresh = cfg["credit_delay"], cfg["credit_refresh"]
        self.advertiser.step(limit, link.sent, link.send_ack)
        return BridgeOutputs(int(tlp_in_ready), ln.frame_out, tlp_out,
                             int(ln.link_down), int(to.irq or ro.irq), stats)

    def _dcqcn_config(self, rate, cnp):
        """The rate limiter's and the CNP generator's registers from ``cfg``
        (the parameters as a plain namespace: the RTL takes any value a
        register holds, which DcqcnParams would refuse)."""
        cfg = self.cfg
        key = tuple(cfg[name] for name in DCQCN_PARAMS)
        if key != getattr(self, "_dcqcn_key", None):
            self._dcqcn_key = key
            rate.params = SimpleNamespace(**dict(zip(DCQCN_PARAMS, key)))
        rate.enable = cnp.enable = bool(cfg["ecn_enable"])
        rate.line_bytes, rate.burst = cfg["line_bytes"], cfg["burst"]
        cnp.cnp_interval = cfg["cnp_interval"]

    def _offers(self, tap_in):
        """What the tracker's two ports are offered this cycle, and what the
        tracker shows with them: (shown, the tap's, the gate's)."""
        gate_i = self.out_slice.o_payload if self.out_slice.o_valid else None
        asked = self.tap.outputs(i_beat=tap_in, o_ready=self.tx_queues.outputs().tlp_in_ready,
                                 contain=self.hold)
        offer, _ = self.gate.outputs(gate_i)
        self.tracker.timeout = self.cfg["cpl_timeout"]
        return self.tracker.outputs(asked.req_valid, offer.cpl_valid), asked, offer

    def _track(self, stats, seen, asked, offer, tlp_in, tap_in, queues_ready, rq, ln,
               tlp_out_ready, restart):
        """The completion tracker's cycle (``rtl/bridge/paths.py``
        ``TransmitPath._tap``, ``ReceivePath._track``): the request tap
        between ``tlp_in``'s slice and the transmit queues, the gate after
        the receive queues' slice, the UR completions merged into
        ``tlp_out``, the hold timer. Fills ``stats``; returns (the ``tlp_out``
        beat shown, ``tlp_in.ready``)."""
        cfg, tracker, tap, gate = self.cfg, self.tracker, self.tap, self.gate
        in_slice, out_slice = self.in_slice, self.out_slice
        gate_i = out_slice.o_payload if out_slice.o_valid else None
        hold = self.hold
        req = header_tlp(asked.req_header) if asked.req_valid else None
        cpl = header_tlp(offer.cpl_header) if offer.cpl_valid else None
        # the merge: a UR completion between the gate's TLPs
        gate_o = gate.outputs(gate_i)[0]
        err = self.second or (not self.busy and seen.err_valid)
        if err:
            header = int.from_bytes(ur_completion(seen.err, cfg["completer_id"]), "little")
            if self.width == 64:
                beat = (header >> 64, 0b01, True) if self.second else \
                    (header & (1 << 64) - 1, 0b11, False)
            else:
                beat = (header, 0b111, True)
            tlp_out = beat
        else:
            tlp_out = gate_o.o_beat if gate_o.o_valid else None
        err_ready = tlp_out_ready and err and tlp_out[2]
        tracker.step(req=req, cpl=cpl, err_ready=err_ready, hold=hold, restart=restart)
        gated = gate.step(i_beat=gate_i, cpl_ready=seen.cpl_ready,
                          verdict=seen.verdict_deliver if seen.verdict_valid else None,
                          o_ready=tlp_out_ready and not err)
        tapped = tap.step(i_beat=tap_in, o_ready=queues_ready, req_ready=seen.req_ready,
                          contain=hold)
        if tlp_out is not None and tlp_out_ready:
            if err:
                self.second = self.width == 64 and not self.second
            else:
                self.busy = not tlp_out[2]
        # the slices
        tlp_in_ready = in_slice.i_ready
        in_slice.clock(tlp_in is not None, None if tlp_in is None else tuple(tlp_in[:3]),
                       tapped.i_ready)
        out_slice.clock(rq.tlp_out is not None, _beat(rq.tlp_out), gated.i_ready)
        # the hold timer
        if ln.link_down:
            self.hold = self.down_ticks >= cfg["hold_time"]
            if self.div == HOLD_TICK - 1 and self.down_ticks != 0xFFFF:
                self.down_ticks += 1
            self.div = (self.div + 1) % HOLD_TICK
        else:
            self.div = self.down_ticks = 0
            self.hold = False
        stats.update({name: getattr(seen, name) for name in TRACKER_COUNTERS},
                     outstanding=seen.outstanding, containment=int(hold),
                     **{name: getattr(tapped, name) for name in _TAP_COUNTERS})
        return tlp_out, tlp_in_ready
