"""One bridge: the TLP path of both directions with the reliable link layer."""

from amaranth.hdl import Cat, Const, Module, Shape, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from ...models import wire
from ...models.bridge import bridge_sizes
from ..compose import exposed_members
from ..link.link_common import check_mode
from ..framing.transport import check_transport
from ..streams import check_width
from .paths import ReceivePath, TransmitPath
from .registers import CONFIG, MACS, STATS, config_init, config_layout, stats_layout

__all__ = ["Bridge", "STREAMS", "INTERRUPTS"]

#: The ports that join the two paths inside the bridge.
JOINS = ("feedback", "credits", "link", "congestion", "egress_tap", "opposite", "requests")
#: The bridge's streams and its interrupt outputs (levels), ports of their own.
STREAMS = ("tlp_in", "frame_out", "frame_in", "tlp_out")
INTERRUPTS = ("link_down", "order_irq", "containment")


class Bridge(wiring.Component):
    """The bridge's TLP path with a reliable link (see ``docs/``), go-back-N
    or selective repeat: a :class:`~tlpoe.rtl.bridge.paths.TransmitPath` (``tx``:
    ``tlp_in`` → class queues → packer → replay buffer → framer →
    ``frame_out``) and a :class:`~tlpoe.rtl.bridge.paths.ReceivePath` (``rx``:
    ``frame_in`` → decapsulator with the link receiver → class queues →
    ``tlp_out``, watched by the ordering checker and the credit return),
    joined by the receiver's :class:`~tlpoe.rtl.link.link_common.LinkFeedback`
    and the :class:`~tlpoe.rtl.queues.credits.CreditLoop`. ``frame_in`` is always
    ready: a MAC cannot wait; a frame whose first beat finds no room for a
    whole frame is dropped and counted in ``overflows``, and the link layer
    recovers it like a lost one. Every frame sent carries the receive
    side's cumulative ack and credit limits (``docs/ordering.md``).

    ``mode`` (elaboration time): ``"gbn"`` (go-back-N: a NAK or the replay
    timer resends every unacknowledged frame from the one named; frames after
    a gap are discarded) or ``"sr"`` (selective repeat: only the frame named
    is resent; frames after a gap wait in a :class:`ReorderBuffer` of
    ``window`` frames between the Decapsulator's FIFOs and its unpacker, and
    the ``out_of_order_buffered`` counter counts them).

    Parameters: those of the blocks (``width``, ``mtu``, ``window``,
    ``seq_bits``, ``max_retries``, ``replay_timeout``, ``nak_timeout``,
    ``ack_every``, ``ack_delay``, ``flush_timeout``, ``ethertype``), and
    ``queue_depth`` (beats) and ``queue_tlps`` (1..127) of each receive
    queue, which set the credits advertised; ``tx_queue_depth``;
    ``credit_delay`` and ``credit_refresh`` (cycles); ``reorder_illegally``
    (tests only: the transmit arbiter makes illegal passes); ``link_state``
    (docs/link-state.md: the DOWN/INIT/UP state machine with KEEPALIVEs,
    flaps ridden out, peer restarts; without it the link goes down for good
    at the replay limit), its ``keepalive`` and ``dead`` times (cycles;
    ``dead`` 3 × ``keepalive`` unless given); ``tracker`` (docs/link-state.md,
    "Completion timeout and containment": a
    :class:`~tlpoe.rtl.queues.cpl_tracker.CplTracker` of ``2**tag_bits``
    entries tracks the non-posted requests sent and completes them with UR
    (``completer_id``) after ``cpl_timeout`` ticks, when the link has been
    down for ``hold_time`` ticks (then the TLPs to send are dropped too:
    containment) or when the peer restarts; a completion matching no
    request is dropped; ticks of 1024 cycles); ``transport`` (``"eth"``, or
    ``"udp"``: IPv4 and UDP headers before the bridge header, addresses,
    ports, TTL and DSCPs from the ``cfg`` fields of
    :data:`~tlpoe.rtl.bridge.registers.UDP_CONFIG`; docs/wire-format.md);
    ``ecn`` (``udp`` only; docs/transports.md, "Congestion control"):
    DCQCN, a :class:`~tlpoe.rtl.link.dcqcn.CnpGenerator` echoing the CE
    marks of frames received to the peer and a
    :class:`~tlpoe.rtl.link.dcqcn.RateLimiter` pacing our DATA frames by
    the peer's echoes, with ``line_bytes`` (the line's bytes per cycle in
    1/256; default the datapath's) and the registers of
    :data:`~tlpoe.rtl.bridge.registers.DCQCN_CONFIG`.

    Ports: the four streams; ``dst_mac`` and ``src_mac``; ``cfg`` (in:
    the run-time settings, reset to the parameters) and ``stats`` (out:
    every counter and status value), whose fields
    :mod:`~tlpoe.rtl.bridge.registers` describes (``docs/csr.md`` lists
    them); and the interrupts ``link_down``, ``order_irq`` and
    ``containment`` (levels; the last 0 without ``tracker``).

    ``nak_timeout`` (cycles; 0: off) is the receiver's NAK timer: the NAK
    for a gap still open that long after it was sent goes out again.  It
    must exceed the time a NAK's replay takes to arrive (a round trip plus
    about four full frame times, ``linksim.default_nak_timeout_ns``), or
    NAKs are repeated for replays still on their way; and it is useful only
    well below ``replay_timeout``, which recovers otherwise.  The default,
    1024 cycles (a quarter of the default ``replay_timeout``; 4.1 us at
    250 MHz), covers round trips up to about 3.6 us at 100 Gb/s and MTU 1500.
    """

    def __init__(self, width=256, *, mtu=1500, window=16, seq_bits=12, max_retries=8,
                 replay_timeout=4096, nak_timeout=1024, ack_every=8, ack_delay=256,
                 flush_timeout=64, ethertype=wire.ETHERTYPE, mode="gbn", queue_depth=None,
                 queue_tlps=32, tx_queue_depth=None, credit_delay=256, credit_refresh=None,
                 reorder_illegally=False, link_state=False, keepalive=2500, dead=None,
                 tracker=False, tag_bits=10, cpl_timeout=4883, hold_time=2441,
                 completer_id=0, transport="eth", ecn=False, line_bytes=None):
        check_mode(mode)
        check_width(width)
        self.transport = check_transport(transport)
        if not isinstance(ecn, bool):
            raise ValueError(f"ecn must be True or False, not {ecn!r}")
        if ecn and self.transport == "eth":
            raise ValueError("ecn needs a routed transport (transport='udp'): ECN marks ride "
                             "in the IPv4 header")
        if line_bytes is None:
            line_bytes = width // 8 << 8
        if type(line_bytes) is not int or not 1 <= line_bytes < 1 << 16:
            raise ValueError(f"line_bytes must be 1..65535 (1/256 bytes a cycle), "
                             f"not {line_bytes!r}")
        self.ecn = ecn
        if dead is None:
            dead = 3 * keepalive            # BFD's detection multiplier (RFC 5880, 6.8.1)
        self.width, self.mode, self.link_state, self.tracker = width, mode, link_state, tracker
        sizes = bridge_sizes(width, mtu=mtu, queue_depth=queue_depth, queue_tlps=queue_tlps,
                             tx_queue_depth=tx_queue_depth, replay_timeout=replay_timeout,
                             credit_refresh=credit_refresh)
        queue_depth, tx_queue_depth = sizes.queue_depth, sizes.tx_queue_depth
        credit_refresh, self.buffers = sizes.credit_refresh, sizes.buffers
        link = dict(mtu=mtu, window=window, seq_bits=seq_bits, ethertype=ethertype, mode=mode,
                    buffers=self.buffers, transport=self.transport)
        self.tx = TransmitPath(width, **link, max_retries=max_retries,
                               replay_timeout=replay_timeout, flush_timeout=flush_timeout,
                               queue_depth=tx_queue_depth, queue_tlps=sizes.tx_tlps,
                               credit_delay=credit_delay, credit_refresh=credit_refresh,
                               reorder_illegally=reorder_illegally, link_state=link_state,
                               keepalive=keepalive, dead=dead, tracker=tracker,
                               hold_time=hold_time, ecn=ecn, line_bytes=line_bytes)
        self.rx = ReceivePath(width, **link, ack_every=ack_every, ack_delay=ack_delay,
                              nak_timeout=nak_timeout, queue_depth=queue_depth,
                              queue_tlps=queue_tlps, tracker=tracker, tag_bits=tag_bits,
                              cpl_timeout=cpl_timeout, completer_id=completer_id)
        self.parameters = dict(flush_timeout=flush_timeout, replay_timeout=replay_timeout,
                               nak_timeout=nak_timeout, ack_delay=ack_delay,
                               credit_delay=credit_delay, credit_refresh=credit_refresh,
                               keepalive=keepalive, dead=dead, cpl_timeout=cpl_timeout,
                               hold_time=hold_time, completer_id=completer_id,
                               ecn=int(ecn), line_bytes=line_bytes)
        self._check_described()
        members = {name: member for path in (self.tx, self.rx)
                   for name, member in exposed_members(path).items() if name in STREAMS}
        members.update({
            **{f.name: In(f.shape) for f in MACS},
            "cfg": In(config_layout(), init=config_init(self.parameters)),
            "stats": Out(stats_layout()),
            **{name: Out(1) for name in INTERRUPTS},
        })
        super().__init__(members)

    def _check_described(self):
        """Every port of the two paths is a stream, a join, or a field of
        :mod:`.registers` (an input no field drives would float)."""
        described = {f.name for f in CONFIG + MACS + STATS}
        for path in (self.tx, self.rx):
            for name in exposed_members(path):
                if name not in described and name not in STREAMS + JOINS:
                    raise AssertionError(f"{type(path).__name__}.{name} is not in "
                                         "rtl/bridge/registers.py")

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx = tx = self.tx
        m.submodules.rx = rx = self.rx
        connect(m, rx.feedback, tx.feedback)
        connect(m, rx.credits, tx.credits)
        connect(m, rx.link, tx.link)
        connect(m, rx.congestion, tx.congestion)
        connect(m, tx.egress_tap, rx.opposite)      # each checker sees the other way's requests
        connect(m, rx.egress_tap, tx.opposite)
        if self.tracker:
            connect(m, tx.requests, rx.requests)    # the requests sent, to the tracker
        connect(m, flipped(self.tlp_in), tx.tlp_in)
        connect(m, tx.frame_out, flipped(self.frame_out))
        connect(m, flipped(self.frame_in), rx.frame_in)
        connect(m, rx.tlp_out, flipped(self.tlp_out))
        paths = (tx, rx)
        for f in MACS:
            m.d.comb += getattr(tx, f.name).eq(getattr(self, f.name))
        for f in CONFIG:            # ro_enable drives both paths
            for path in paths:
                if f.name in path.signature.members:
                    m.d.comb += getattr(path, f.name).eq(self.cfg[f.name])
        # `stats` as one concatenation in the layout's order (one assignment
        # per field would make one process of the whole vector, which an
        # event-driven simulator runs again on every counter's change)
        parts = []
        for f in STATS:             # out_of_order_buffered: selective repeat only
            size = Shape.cast(f.shape).width
            source = next((p for p in paths if f.name in p.signature.members), None)
            driven = self.mode in f.modes and (f.needs is None or getattr(self, f.needs))
            if source is None and driven:
                raise AssertionError(f"no path drives stats.{f.name}")
            value = Const(0, size) if source is None else Value.cast(getattr(source, f.name))
            if len(value) != size:
                raise AssertionError(f"stats.{f.name}: {len(value)} bits, the layout's {size}")
            parts.append(value)
        m.d.comb += self.stats.eq(Cat(*parts))
        m.d.comb += [self.link_down.eq(tx.link_down),
                     self.order_irq.eq(rx.order_irq | tx.tx_order_irq)]
        if self.tracker:
            m.d.comb += self.containment.eq(tx.containment)
        return m
