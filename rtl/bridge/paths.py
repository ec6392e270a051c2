"""The bridge's two directions as mirrored components: the transmit path
(TLPs in, frames out) and the receive path (frames in, TLPs out), joined by
two named signatures: :class:`~tlpoe.rtl.link.link_common.LinkFeedback` (the
receiver's acks, NAKs and requests, to its own sender) and
:class:`~tlpoe.rtl.queues.credits.CreditLoop` (our credit limits, and the peer's as
its frames advertise them).

=====================  ==========================  ==========================
stage                  transmit                    receive
=====================  ==========================  ==========================
TLP side               ``tlp_in``                  ``tlp_out``
class queues           ``tx_queues`` (the peer's   ``rx_queues`` (the receive
                       credits, stamps made)       buffers)
beside the queues      ``peer_credits``,           ``credit_return``,
                       ``advertiser``, ``checker`` ``checker``
frames                 ``encap`` (packer, framer)  ``decap`` (deframer,
                                                   unpacker)
link layer             ``replay`` (in ``encap``,   ``link_rx`` (in ``decap``,
                       its store)                  its verdict stage;
                                                   selective repeat: a
                                                   reorder buffer too)
Ethernet side          ``frame_out``               ``frame_in``
=====================  ==========================  ==========================

Each path's :class:`OrderChecker` judges its own class queues, ingress
against egress; the requests each path's queues hand on
(:class:`EgressTap`, ``egress_tap``) are the other checker's
``opposite`` (the requests its completions answer, D2b).
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from ...models.bridge import tx_max_credits
from ...models.cpl_tracker_cycles import COUNTERS as TRACKER_COUNTERS
from ...models.frame import DropReason
from ...models.order_cycles import order_window
from ...models.wire import FrameType, LinkState
from ..framing.decapsulator import Decapsulator
from ..framing.deframer import frame_words
from ..framing.encapsulator import Encapsulator
from ..link.dcqcn import CnpGenerator, RateLimiter
from ..link.link_common import LinkFeedback, LinkStatePort
from ..link.link_rx import LinkReceiver
from ..link.link_state import LinkStateMachine, credits_from_keepalive, keepalive_from_credits
from ..link.reorder import ReorderBuffer
from ..link.replay import ReplayBuffer
from ..queues.classq import ClassQueues
from ..queues.cpl_gate import CompletionGate, RequestTap
from ..queues.cpl_tracker import CplTracker
from ..queues.credits import CreditAdvertiser, CreditLoop, CreditReturn, Limits, PeerCredits
from ..queues.order_check import OrderChecker
from ..streams import SkidBuffer, TlpBeat, connect_tlp, frame_stream, tlp_stream
from ..tlp_header import CLASSES
from ...models.dcqcn_cycles import wire_bytes_of
from .registers import DCQCN_CONFIG, DCQCN_FIELDS, UDP_FIELDS

__all__ = ["TransmitPath", "ReceivePath", "EgressTap", "TrackerPort", "TX_COUNTERS",
           "RX_COUNTERS", "SR_COUNTERS", "TAP_COUNTERS", "TRACKER_COUNTERS", "ORDER_OUTPUTS",
           "order_ports", "order_window", "HOLD_TICK"]

#: The ReplayBuffer's counters, each ``Out(32)`` on the transmit path.
TX_COUNTERS = ("replays_nak", "replays_timeout", "frames_retransmitted",
               "acks_sent", "naks_sent", "window_full_cycles", "acks_invalid", "naks_invalid",
               "replays_link", "frames_dropped")
#: The link state machine's counters (0 without it; ``link_down_events``
#: then counts the replay buffer's retry limits).
LINK_COUNTERS = ("link_down_events", "link_up_events", "peer_restarts", "keepalives_sent",
                 "keepalives_received")
#: The LinkReceiver's counters, each ``Out(32)`` on the receive path.
RX_COUNTERS = ("frames_accepted", "duplicates", "out_of_order", "naks_repeated")
#: The receive path's counters of selective repeat only (``mode="sr"``).
SR_COUNTERS = ("out_of_order_buffered",)
#: The request tap's counters (containment), on the transmit path with ``tracker``.
TAP_COUNTERS = ("posted_dropped", "np_contained", "cpl_dropped")
#: Cycles per tick of ``hold_time`` (the tracker's tick too).
HOLD_TICK = 1024
#: The ordering checker's outputs a path exposes (each prefixed, :func:`order_ports`).
ORDER_OUTPUTS = ("violations", "by_cell", "first_stamp", "first_tag", "first_cell",
                 "first_valid", "irq", "tlps_checked", "window_errors", "stamp_errors",
                 "write_collisions")


def order_ports(prefix):
    """The checker's ports on a path: (checker name, path name); the
    ``irq_clear`` of both paths is ``order_irq_clear``."""
    return {"irq_clear": "order_irq_clear",
            **{name: f"{prefix}{name}" for name in ORDER_OUTPUTS}}


class EgressTap(wiring.Signature):
    """The beats a path's class queues hand on (out of the path), which
    the opposite path's checker reads for the requests its completions
    answer."""

    def __init__(self, width):
        super().__init__({"valid": Out(1), "beat": Out(TlpBeat(width))})


class TrackerPort(wiring.Signature):
    """From the transmit path to the completion tracker on the receive path:
    each non-posted request's header as the :class:`RequestTap` offers it
    (``req_valid``, ``req_header``; ``req_ready`` back), and ``hold`` (the
    link has been down for ``hold_time``: containment)."""

    def __init__(self):
        super().__init__({"req_valid": Out(1), "req_header": Out(128), "req_ready": In(1),
                          "hold": Out(1)})


class CongestionPort(wiring.Signature):
    """From the receive path to the transmit path's CNP generator: ``ce``,
    a frame that passed every check arrived marked ECN-CE (one cycle)."""

    def __init__(self):
        super().__init__({"ce": Out(1)})


#: The transmit path's congestion-control outputs (with ``ecn``): the
#: register field and the block's port.
DCQCN_OUTPUTS = (("rate_current", "rc"), ("rate_target", "rt"), ("rate_alpha", "alpha"),
                 ("cnps_received", "cnps_received"), ("throttled_cycles", "throttled_cycles"),
                 ("ce_frames", "ce_frames"), ("cnps_sent", "cnps_sent"))


def _checker(width, queues, prefix):
    """An :class:`OrderChecker` for ``queues`` and its ports on the path."""
    checker = OrderChecker(width, window=order_window(queues.tlps),
                           stamp_bits=queues.stamp_bits)
    names = order_ports(prefix)
    ports = {names[name]: member for name, member in checker.signature.members.items()
             if name in names}
    return checker, names, ports


def _watch(m, checker, names, path, queues, width):
    """Wire ``checker`` to ``queues`` (their ingress and egress, the
    opposite path's requests) and its outputs to ``path``'s ports."""
    size = TlpBeat(width).size
    tin, tout = queues.tlp_in, queues.tlp_out
    taken = tout.valid & tout.ready
    m.d.comb += [
        checker.in_valid.eq(tin.valid & tin.ready),
        checker.in_beat.eq(tin.payload.as_value()[:size]),
        checker.out_valid.eq(taken),
        checker.out_beat.eq(tout.payload.as_value()[:size]),
        checker.out_posted.eq(queues.out_posted),
        checker.out_cpls.eq(queues.out_cpls),
        checker.req_valid.eq(path.opposite.valid),
        checker.req_beat.eq(path.opposite.beat),
        path.egress_tap.valid.eq(taken),
        path.egress_tap.beat.eq(tout.payload.as_value()[:size]),
        checker.irq_clear.eq(path.order_irq_clear),
    ]
    for name, port in names.items():
        if name != "irq_clear":
            m.d.comb += getattr(path, port).eq(getattr(checker, name))


def _udp_members(block):
    """The configuration ports of the ``udp`` transport (one per field of
    :data:`~tlpoe.rtl.bridge.registers.UDP_CONFIG`) when ``block`` (the
    encapsulator or decapsulator) takes them, else none."""
    if "udp" not in block.signature.members:
        return {}
    layout = block.signature.members["udp"].shape
    init = block.signature.members["udp"].init
    return {name: In(layout[name].shape, init=init[name]) for name in UDP_FIELDS}


def _udp_config(path, block):
    """``block.udp`` driven from ``path``'s ``udp`` configuration ports."""
    if "udp" not in block.signature.members:
        return []
    return [block.udp[name].eq(getattr(path, name)) for name in UDP_FIELDS]


class TransmitPath(wiring.Component):
    """``tlp_in`` → :class:`ClassQueues` (P / NP / Cpl, ``"oldest"`` policy,
    the peer's credits; each TLP's order stamp into the stream) → a
    :class:`SkidBuffer` (a register slice, so that the packer's ``ready``
    does not reach the queues' grant) → :class:`Encapsulator` (its :class:`TlpPacker` writes the stamps into the
    prefixes; its store is the :class:`ReplayBuffer`, which keeps each frame
    until acknowledged; then its :class:`Framer`) → ``frame_out``; beside
    them :class:`PeerCredits` (the peer's limits, from ``credits``) and
    :class:`CreditAdvertiser` (when our limits need a frame of their own).
    Without the replay buffer the same Encapsulator is the link-less
    transmit path, as the Decapsulator without its verdict stage is the
    link-less receive path.

    ``feedback`` (in): the local receiver's :class:`LinkFeedback`;
    ``credits`` (in): the :class:`CreditLoop`; ``link`` (in): the
    :class:`LinkStatePort` of the receive path. The parameters are the
    :class:`~tlpoe.rtl.bridge.bridge.Bridge`'s; ``buffers`` are the receive
    buffers' ``(hdr, data)`` credits per class, which set when an
    advertisement is due.

    With ``link_state`` (docs/link-state.md) a :class:`LinkStateMachine`
    (``link_state``) keeps the link's state from the receive path's verdicts
    and the replay buffer's retry limit, and drives the replay buffer
    (``up``, ``rewind``, ``drop``, KEEPALIVEs, whose link-state fields go to
    the Framer in the place of the credits, not marked valid) and, through
    ``link``, the receiver. Without it ``link_down`` is a latch: set by the
    replay buffer's retry limit, until reset.
    """

    def __init__(self, width, *, mtu, window, seq_bits, max_retries, replay_timeout,
                 flush_timeout, ethertype, mode, queue_depth, queue_tlps, buffers,
                 credit_delay, credit_refresh, reorder_illegally=False, link_state=False,
                 keepalive=2500, dead=7500, tracker=False, hold_time=2441, transport="eth",
                 ecn=False, line_bytes=None):
        self.queues = ClassQueues(width, depth=queue_depth, tlps=queue_tlps, policy="oldest",
                                  max_credits=tx_max_credits(mtu),
                                  reorder_illegally=reorder_illegally)
        self.replay = ReplayBuffer(width, mtu=mtu, window=window, seq_bits=seq_bits,
                                   max_retries=max_retries, replay_timeout=replay_timeout,
                                   mode=mode, transport=transport)
        self.encap = Encapsulator(width, mtu=mtu, flush_timeout=flush_timeout,
                                  ethertype=ethertype, link=self.replay, stamped=True,
                                  transport=transport)
        self.packer, self.framer = self.encap.packer, self.encap.framer
        self.peer_credits = PeerCredits()
        self.advertiser = CreditAdvertiser(buffers=buffers, delay=credit_delay,
                                           refresh=credit_refresh)
        self.checker, self._order_names, order = _checker(width, self.queues, "tx_order_")
        self.link_state = LinkStateMachine(keepalive=keepalive, dead=dead) if link_state \
            else None
        if tracker and (type(hold_time) is not int or not 0 <= hold_time < 2 ** 16):
            raise ValueError(f"hold_time must be 0..2**16-1 ticks, not {hold_time!r}")
        self.tap = RequestTap(width) if tracker else None
        self.area_at = self.replay.area_at
        if ecn:
            line_bytes = width // 8 << 8 if line_bytes is None else line_bytes
            self.rate = RateLimiter(line_bytes=line_bytes, enable=True)
            self.cnp_gen = CnpGenerator(enable=True)
            inits = {**{f.name: f.init for f in DCQCN_CONFIG}, "ecn_enable": 1,
                     "line_bytes": line_bytes}
            congestion = {
                **{f.name: In(f.shape, init=inits[f.name]) for f in DCQCN_CONFIG},
                **{name: Out(self.rate.signature.members[port].shape
                             if port in self.rate.signature.members
                             else self.cnp_gen.signature.members[port].shape)
                   for name, port in DCQCN_OUTPUTS},
            }
        else:
            self.rate = self.cnp_gen = None
            congestion = {}
        tracking = {} if not tracker else {
            "requests": Out(TrackerPort()),
            "hold_time": In(16, init=hold_time),
            "containment": Out(1),
            **{name: Out(32) for name in TAP_COUNTERS},
        }
        super().__init__({
            "tlp_in": In(tlp_stream(width)),
            "frame_out": Out(frame_stream(width)),
            "feedback": In(LinkFeedback(seq_bits)),
            "credits": In(CreditLoop()),
            "link": In(LinkStatePort(seq_bits)),
            "congestion": In(CongestionPort()),
            "egress_tap": Out(EgressTap(width)),
            "opposite": In(EgressTap(width)),
            # configuration
            "dst_mac": In(48),
            "src_mac": In(48),
            "channel": In(16),
            "flush_timeout": In(16, init=flush_timeout),
            "replay_timeout": In(24, init=replay_timeout),
            "ro_enable": In(1, init=1),
            "credits_enable": In(1, init=1),
            "credit_delay": In(16, init=credit_delay),
            "credit_refresh": In(24, init=credit_refresh),
            "keepalive": In(24, init=keepalive),
            "dead": In(24, init=dead),
            "incarnation": In(32),
            **_udp_members(self.encap),
            # status and counters
            "link_down": Out(1),
            "link_status": Out(2),
            **{name: Out(32) for name in LINK_COUNTERS},
            "frames_sent": Out(32),
            "oversize_drops": Out(32),
            "length_errors": Out(32),
            **{name: Out(32) for name in TX_COUNTERS},
            "np_room": Out(1),
            "credit_limit": Out(Limits()),
            "credits_consumed": Out(Limits()),
            "credits_advertised": Out(Limits()),
            "credit_stall_cycles": Out(data.ArrayLayout(32, 3)),
            "credit_frames": Out(32),
            "credits_invalid": Out(32),
            "tlps_sent": Out(data.ArrayLayout(32, 3)),
            **order,
            **tracking,
            **congestion,
        })

    def elaborate(self, platform):
        m = Module()
        queues, encap, replay, framer = self.queues, self.encap, self.replay, self.framer
        peer, advertiser = self.peer_credits, self.advertiser
        m.submodules.tx_queues = queues
        for name in ("encap", "peer_credits", "advertiser", "checker"):
            m.submodules[name] = getattr(self, name)
        _watch(m, self.checker, self._order_names, self, queues, self.queues.width)

        # the encapsulator (packer, the replay buffer as its store, framer);
        # the replay buffer's and the framer's link ports are wired here
        if self.tap is None:
            connect(m, flipped(self.tlp_in), queues.tlp_in)
        else:
            self._tap(m, queues)
        # a register slice: the packer's `ready` would otherwise reach the
        # queues' grant (and the FIFO pops it makes)
        m.submodules.tx_slice = tx_slice = SkidBuffer(queues.tlp_out.payload.shape())
        connect(m, queues.tlp_out, tx_slice.i)
        connect(m, tx_slice.o, encap.tlp)
        connect(m, encap.frame, flipped(self.frame_out))
        connect(m, flipped(self.feedback), replay.feedback)
        m.d.comb += [
            # the class queues: ordering, the peer's credits (the stamps ride to
            # the packer's prefixes in the stream)
            queues.ro_enable.eq(self.ro_enable),
            queues.credits_enable.eq(self.credits_enable),
            queues.credit_limit.eq(peer.limit),
            # the credit loop: the peer's limits from its frames; ours into
            # every frame sent, and into a frame of our own when asked
            peer.update.eq(self.credits.peer_update),
            peer.received.eq(self.credits.peer_limit),
            peer.consumed.eq(queues.credits_consumed),
            peer.enable.eq(self.credits_enable),
            advertiser.limit.eq(self.credits.limit),
            advertiser.ack_due.eq(self.feedback.send_ack),
            advertiser.delay.eq(self.credit_delay),
            advertiser.refresh.eq(self.credit_refresh),
            replay.send_credit.eq(advertiser.request),
            # the MAC took a DATA frame's last beat: ACKs may name it now
            replay.data_sent.eq(framer.data_sent),
            replay.data_sent_seq.eq(framer.data_sent_seq),
            # configuration
            encap.dst_mac.eq(self.dst_mac),
            encap.src_mac.eq(self.src_mac),
            encap.channel.eq(self.channel),
            encap.flush_timeout.eq(self.flush_timeout),
            *_udp_config(self, encap),
            replay.replay_timeout.eq(self.replay_timeout),
            # status
            self.frames_sent.eq(encap.frames_sent),
            self.oversize_drops.eq(encap.oversize_drops),
            self.length_errors.eq(encap.length_errors),
            self.np_room.eq(queues.np_room),
            self.credit_limit.eq(peer.limit),
            self.credits_invalid.eq(peer.invalid),
            self.credits_consumed.eq(queues.credits_consumed),
            self.credits_advertised.eq(advertiser.advertised),
            self.credit_frames.eq(advertiser.frames),
            self.credit_stall_cycles.eq(queues.credit_stall_cycles),
            self.tlps_sent.eq(queues.tlps_sent),
            *(getattr(self, name).eq(getattr(replay, name)) for name in TX_COUNTERS),
        ]
        self._link(m, replay, framer, advertiser, queues, peer)
        if self.rate is not None:
            self._congestion(m, replay, framer)
        return m

    def _congestion(self, m, replay, framer):
        """DCQCN (docs/transports.md): the CNP generator echoes the CE marks
        the receive path saw on the next frame taken; the rate limiter takes
        the peer's echoes and each DATA frame taken (its wire bytes), and
        gates the replay buffer's DATA commits."""
        rate, cnp = self.rate, self.cnp_gen
        m.submodules.rate_limiter = rate
        m.submodules.cnp_generator = cnp
        desc = framer.desc
        m.d.comb += [
            cnp.ce.eq(self.congestion.ce),
            cnp.echo_sent.eq(replay.echo_sent),
            cnp.enable.eq(self.ecn_enable),
            cnp.cnp_interval.eq(self.cnp_interval),
            replay.echo.eq(cnp.echo),
            rate.cnp.eq(self.feedback.echo_in),
            rate.sent.eq(desc.valid & desc.ready & (desc.payload.frame_type == FrameType.DATA)),
            rate.sent_bytes.eq(desc.payload.length + wire_bytes_of(self.area_at, 0)),
            rate.enable.eq(self.ecn_enable),
            *(getattr(rate, name).eq(getattr(self, name))
              for name in DCQCN_FIELDS if name not in ("ecn_enable", "cnp_interval")),
            replay.rate_ok.eq(rate.rate_ok),
        ]
        for name, port in DCQCN_OUTPUTS:
            block = rate if port in rate.signature.members else cnp
            m.d.comb += getattr(self, name).eq(getattr(block, port))

    def _tap(self, m, queues):
        """``tlp_in`` → a register slice → :class:`RequestTap` → the class
        queues: every non-posted request shown to the completion tracker
        (``requests``) as it enters the bridge, so that a request held
        anywhere inside (the queues, the packer, the replay buffer) is
        answered when the link fails. Containment: once the link has been
        down for ``hold_time`` ticks, ``hold`` (a register) and every TLP
        that arrives dropped whole at the tap (a request still tracked, and
        answered with UR): ``tlp_in`` never stops, and what the peer never
        receives never uses its credits. What the bridge held already waits
        for the link (delivered if it comes back). The slice keeps the
        tracker's ``req_ready`` off ``tlp_in.ready``."""
        m.submodules.request_tap = tap = self.tap
        m.submodules.in_slice = in_slice = SkidBuffer(self.tlp_in.payload.shape())
        connect(m, flipped(self.tlp_in), in_slice.i)
        connect(m, in_slice.o, tap.i)
        connect(m, tap.o, queues.tlp_in)
        req = self.requests
        # the hold timer: ticks of HOLD_TICK cycles counted while the link is down
        div = Signal(range(HOLD_TICK))
        down_ticks = Signal(16)
        hold = Signal()
        with m.If(self.link_down):
            m.d.sync += [div.eq(div + 1), hold.eq(down_ticks >= self.hold_time)]
            with m.If((div == HOLD_TICK - 1) & (down_ticks != 0xFFFF)):
                m.d.sync += down_ticks.eq(down_ticks + 1)
        with m.Else():
            m.d.sync += [div.eq(0), down_ticks.eq(0), hold.eq(0)]
        m.d.comb += [
            req.req_valid.eq(tap.req_valid), req.req_header.eq(tap.req_header),
            tap.req_ready.eq(req.req_ready), req.hold.eq(hold),
            tap.contain.eq(hold), self.containment.eq(hold),
            *(getattr(self, name).eq(getattr(tap, name)) for name in TAP_COUNTERS),
        ]

    def _link(self, m, replay, framer, advertiser, queues, peer):
        """The link state (or, without its machine, the latch) and the
        Framer's credit fields: our limits, marked valid, in every frame but
        a KEEPALIVE, which carries its link-state fields there."""
        sm, link = self.link_state, self.link
        keepalive = framer.desc.payload.frame_type == FrameType.KEEPALIVE
        m.d.comb += [
            framer.credits.eq(self.credits.limit),
            framer.credits_valid.eq(1),
            advertiser.sent.eq(framer.desc.valid & framer.desc.ready),
        ]
        if sm is None:
            # the link is down from the last replay expiry until reset
            m.d.comb += [replay.up.eq(~self.link_down),
                         self.link_status.eq(Mux(self.link_down, LinkState.DOWN, LinkState.UP)),
                         self.link_down_events.eq(replay.link_down_events)]
            with m.If(replay.retry_limit):
                m.d.sync += self.link_down.eq(1)
            return
        m.submodules.link_state = sm
        fields = credits_from_keepalive(sm.tx_fields)
        with m.If(keepalive):
            m.d.comb += [
                *(getattr(framer.credits[k], part).eq(fields[f"credit_{name}_{part}"])
                  for k, name in enumerate(CLASSES) for part in ("hdr", "data")),
                framer.credits_valid.eq(0),
                advertiser.sent.eq(0),
            ]
        m.d.comb += [
            sm.rx_good.eq(link.good), sm.rx_keepalive.eq(link.keepalive),
            sm.rx_fields.eq(link.fields), sm.rx_base.eq(link.base),
            sm.retry_limit.eq(replay.retry_limit), sm.frame_sent.eq(replay.frame_sent),
            sm.keepalive_sent.eq(replay.keepalive_sent),
            sm.keepalive.eq(self.keepalive), sm.dead.eq(self.dead),
            sm.incarnation.eq(self.incarnation),
            replay.up.eq(sm.up), replay.rewind.eq(sm.rewind), replay.drop.eq(sm.restart),
            replay.keepalive_due.eq(sm.keepalive_due),
            # the peer restarted: it counts its credits from 0 again
            queues.credits_restart.eq(sm.restart), peer.restart.eq(sm.restart),
            link.up.eq(sm.up), link.adopt.eq(sm.adopt), link.adopt_base.eq(sm.adopt_base),
            link.restart.eq(sm.restart),
            self.link_down.eq(~sm.up), self.link_status.eq(sm.state),
            *(getattr(self, name).eq(getattr(sm, name)) for name in LINK_COUNTERS),
        ]


class ReceivePath(wiring.Component):
    """``frame_in`` (always ready: a MAC cannot wait; a frame whose first
    beat finds no room is dropped whole and counted in ``overflows``) →
    :class:`Decapsulator` (checks, drops by reason) with a
    :class:`LinkReceiver` on its verdicts (sequence check, duplicate
    discard, ACK/NAK requests; in selective repeat a :class:`ReorderBuffer`
    before its unpacker) → a :class:`SkidBuffer` (a register slice, so that
    no path runs from the queues' FIFO levels into the unpacker) →
    :class:`ClassQueues` (the receive buffers; the sender's stamps carried) → ``tlp_out``, watched by an
    :class:`OrderChecker` (ports ``order_*``) and a :class:`CreditReturn`.

    ``feedback`` (out): the :class:`LinkFeedback` to the local sender;
    ``credits`` (out): the :class:`CreditLoop`; ``link`` (out): the
    :class:`LinkStatePort` (every checked frame to the link state machine;
    ``up`` and ``adopt`` to the receiver). ``queue_depth`` and
    ``queue_tlps`` size each receive queue; ``buffers`` are the credits
    they promise.
    """

    def __init__(self, width, *, mtu, window, seq_bits, ack_every, ack_delay, nak_timeout,
                 ethertype, mode, queue_depth, queue_tlps, buffers, tracker=False, tag_bits=10,
                 cpl_timeout=4883, completer_id=0, transport="eth"):
        self.mode, self.width = mode, width
        max_words = frame_words(width, mtu)
        self.link_rx = LinkReceiver(max_words=max_words, seq_bits=seq_bits,
                                    ack_every=ack_every, ack_delay=ack_delay,
                                    nak_timeout=nak_timeout, mode=mode, window=window)
        reorder = ReorderBuffer(width, max_words=max_words, window=window) if mode == "sr" \
            else None
        self.decap = Decapsulator(width, mtu=mtu, ethertype=ethertype, verdict=self.link_rx,
                                  reorder=reorder, hold=False, transport=transport)
        self.queues = ClassQueues(width, depth=queue_depth, tlps=queue_tlps, policy="oldest")
        self.credit_return = CreditReturn(width, buffers=buffers)
        self.checker, self._order_names, order = _checker(width, self.queues, "order_")
        self.counters = RX_COUNTERS + (SR_COUNTERS if mode == "sr" else ())
        if tracker:
            self.tracker = CplTracker(tag_bits=tag_bits, completer_id=completer_id,
                                      timeout=cpl_timeout)
            self.gate = CompletionGate(width)
            tracking = {
                "requests": In(TrackerPort()),
                "cpl_timeout": In(16, init=cpl_timeout),
                "completer_id": In(16, init=completer_id),
                **{name: Out(32) for name in TRACKER_COUNTERS},
                "outstanding": Out(32),
            }
        else:
            self.tracker = self.gate = None
            tracking = {}
        super().__init__({
            "frame_in": In(frame_stream(width)),
            "tlp_out": Out(tlp_stream(width)),
            "feedback": Out(LinkFeedback(seq_bits)),
            "credits": Out(CreditLoop()),
            "link": Out(LinkStatePort(seq_bits)),
            "congestion": Out(CongestionPort()),
            "egress_tap": Out(EgressTap(width)),
            "opposite": In(EgressTap(width)),
            # configuration
            "nak_timeout": In(24, init=nak_timeout),
            "ack_delay": In(16, init=ack_delay),
            "np_accept": In(1, init=1),
            "ro_enable": In(1, init=1),
            **_udp_members(self.decap),
            # status and counters
            "drops": Out(data.ArrayLayout(32, len(DropReason))),
            "good_frames": Out(32),
            "control_frames": Out(32),
            "overflows": Out(32),
            "tlps_out": Out(32),
            **{name: Out(32) for name in self.counters},
            **order,
            **tracking,
        })

    def elaborate(self, platform):
        m = Module()
        decap, queues, link_rx = self.decap, self.queues, self.link_rx
        credit_return, checker = self.credit_return, self.checker
        m.submodules.decap = decap
        m.submodules.rx_queues = queues
        m.submodules.credit_return = credit_return
        m.submodules.checker = checker

        connect(m, flipped(self.frame_in), decap.frame)
        m.d.comb += _udp_config(self, decap)
        # a register slice both ways: the queues' FIFO levels (their `ready`)
        # do not reach the unpacker's buffer
        m.submodules.rx_slice = rx_slice = SkidBuffer(decap.tlp.payload.shape())
        connect(m, decap.tlp, rx_slice.i)
        connect_tlp(m, rx_slice.o, queues.tlp_in)         # the sender's stamps stop here
        if self.tracker is None:
            connect_tlp(m, queues.tlp_out, self.tlp_out)
        else:
            self._track(m, queues.tlp_out)
        _watch(m, checker, self._order_names, self, queues, queues.width)
        connect(m, link_rx.feedback, flipped(self.feedback))     # the receiver's state and requests
        # credits are freed as TLPs leave the queues (a late completion the
        # gate drops frees them too)
        out_taken = queues.tlp_out.valid & queues.tlp_out.ready
        size = TlpBeat(self.width).size
        m.d.comb += [
            # the receive queues: NP waits for np_accept
            queues.ro_enable.eq(self.ro_enable),
            queues.class_enable.eq(Cat(1, self.np_accept, 1)),
            # the credits freed at the egress; those taken in at the ingress,
            # which a rebase (the link up after a peer restart) takes off
            credit_return.valid.eq(out_taken),
            credit_return.beat.eq(queues.tlp_out.payload.as_value()[:size]),
            credit_return.in_valid.eq(queues.tlp_in.valid & queues.tlp_in.ready),
            credit_return.in_beat.eq(queues.tlp_in.payload),
            credit_return.rebase.eq(self.link.adopt),
            # the credit loop: ours to advertise, the peer's from each good frame
            self.credits.limit.eq(credit_return.limit),
            self.credits.peer_update.eq(decap.credits_update),
            self.credits.peer_limit.eq(decap.credits),
            self.congestion.ce.eq(decap.ce),
            link_rx.up.eq(self.link.up),
            link_rx.adopt.eq(self.link.adopt),
            link_rx.adopt_base.eq(self.link.adopt_base),
            # configuration
            link_rx.nak_timeout.eq(self.nak_timeout),
            link_rx.ack_delay.eq(self.ack_delay),
            # status
            self.drops.eq(decap.drops),
            self.good_frames.eq(decap.good_frames),
            self.control_frames.eq(decap.control_frames),
            self.overflows.eq(decap.overflows),
            self.tlps_out.eq(decap.tlps_out),
            *(getattr(self, name).eq(getattr(link_rx, name)) for name in self.counters),
        ]
        # the link state: every checked frame, a KEEPALIVE's fields read from
        # the bytes the credit fields use; registered (the Deframer's checks
        # reached the state machine's registers in one cycle otherwise: the
        # 64-bit Bridge with the state machine at 89.93 MHz)
        m.d.sync += [
            self.link.good.eq(decap.checked),
            self.link.keepalive.eq(decap.checked & (decap.checked_type == FrameType.KEEPALIVE)),
            self.link.fields.eq(keepalive_from_credits(decap.credits)),
            self.link.base.eq(decap.checked_seq),
        ]
        return m

    def _track(self, m, source):
        """``source`` (the queues' egress) → a register slice →
        :class:`CompletionGate` (each TLP held for the tracker's verdict: a
        late completion dropped) → ``tlp_out``, with the tracker's UR
        completions (3-DW headers, no data) merged in between TLPs, before
        the gate's. The slice keeps ``tlp_out``'s and the tracker's
        ``ready`` off the queues' arbitration."""
        tracker, gate, req, out = self.tracker, self.gate, self.requests, self.tlp_out
        m.submodules.tracker = tracker
        m.submodules.gate = gate
        m.submodules.out_slice = out_slice = SkidBuffer(TlpBeat(self.width))
        connect_tlp(m, source, out_slice.i)
        connect(m, out_slice.o, gate.i)
        m.d.comb += [
            tracker.req_valid.eq(req.req_valid), tracker.req_header.eq(req.req_header),
            req.req_ready.eq(tracker.req_ready),
            tracker.cpl_valid.eq(gate.cpl_valid), tracker.cpl_header.eq(gate.cpl_header),
            gate.cpl_ready.eq(tracker.cpl_ready),
            gate.verdict_valid.eq(tracker.verdict_valid),
            gate.verdict_deliver.eq(tracker.verdict_deliver),
            tracker.hold.eq(req.hold), tracker.restart.eq(self.link.restart),
            tracker.timeout.eq(self.cpl_timeout), tracker.completer_id.eq(self.completer_id),
            *(getattr(self, name).eq(getattr(tracker, name)) for name in TRACKER_COUNTERS),
            self.outstanding.eq(tracker.outstanding),
        ]
        # the merge: a UR completion (one beat; two at 64 bits) between TLPs
        W = self.width
        beats = 2 if W == 64 else 1
        second = Signal()               # (64 bits) the UR's second beat is due
        busy = Signal()                 # a TLP of the gate under way
        err = Signal()
        m.d.comb += err.eq(second | (~busy & tracker.err_valid))
        ur = Signal(TlpBeat(W))
        header = tracker.err_header
        if beats == 1:
            m.d.comb += [ur.data.eq(header), ur.keep.eq(0b111), ur.last.eq(1)]
        else:
            m.d.comb += [ur.data.eq(Mux(second, header[64:], header[:64])),
                         ur.keep.eq(Mux(second, 0b01, 0b11)), ur.last.eq(second)]
        m.d.comb += [
            out.valid.eq(err | gate.o.valid),
            out.payload.eq(Mux(err, ur, gate.o.payload)),
            gate.o.ready.eq(out.ready & ~err),
            tracker.err_ready.eq(out.ready & err & ur.last),
        ]
        with m.If(out.valid & out.ready):
            with m.If(err):
                if beats == 2:
                    m.d.sync += second.eq(~second)
            with m.Else():
                m.d.sync += busy.eq(~gate.o.payload.last)
