"""The link state machine (docs/link-state.md): DOWN, INIT, UP after BFD's
(RFC 5880, 6.2), the KEEPALIVE handshake with incarnations, the keepalive
and dead timers. Its cycle twin is
:class:`tlpoe.models.link_state_cycles.CycleLinkState`; the protocol it
implements is :class:`tlpoe.models.link.LinkEndpoint`'s with
``keepalive_ns`` set.
"""

from amaranth.hdl import Module, Mux, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...models import wire
from ...models.link_state_cycles import TIMER_BITS
from ...models.frame import CREDIT_FIELDS
from ..tlp_header import CLASSES
from ..wirefmt import pack_bytes, unpack_field

__all__ = ["LinkStateMachine", "keepalive_from_credits", "credits_from_keepalive"]

KA = wire.KEEPALIVE_FIELDS
DOWN, INIT, UP = (int(s) for s in (wire.LinkState.DOWN, wire.LinkState.INIT,
                                   wire.LinkState.UP))


def keepalive_from_credits(credits):
    """A KEEPALIVE's link-state fields (a byte vector of
    :data:`~tlpoe.models.wire.KEEPALIVE_FIELDS`) from the credit fields the
    Deframer read out of its header (``credits``, per class P, NP, CPL:
    ``hdr``, ``data``): the same bytes, ``KEEPALIVE_OFFSET`` on."""
    header = pack_bytes(wire.BRIDGE_HEADER, **{
        f"credit_{name}_{part}": getattr(credits[k], part)
        for k, name in enumerate(CLASSES) for part in ("hdr", "data")})
    return header[8 * wire.KEEPALIVE_OFFSET:8 * (wire.KEEPALIVE_OFFSET + KA.length)]


def credits_from_keepalive(fields):
    """The credit-field values (a dict ``credit_{class}_{hdr|data}``, as
    the Framer's ``credits`` takes them) whose bytes are the KEEPALIVE
    ``fields`` (a byte vector): the inverse of :func:`keepalive_from_credits`."""
    return {name: unpack_field(wire.BRIDGE_HEADER, name, fields, base=-wire.KEEPALIVE_OFFSET)
            for name in CREDIT_FIELDS}


class LinkStateMachine(wiring.Component):
    """One bridge's link state.

    Inputs, each for one cycle: ``rx_good`` (a frame passed the receive
    checks), ``rx_keepalive`` (... and it is a KEEPALIVE, its fields in
    ``rx_fields``, the :data:`~tlpoe.models.wire.KEEPALIVE_FIELDS` bytes in
    lane order, and its ``seq`` in ``rx_base``), ``retry_limit`` (the
    replay timer expired ``max_retries`` times without progress),
    ``frame_sent`` (a frame of any type went to the framer) and
    ``keepalive_sent`` (... a KEEPALIVE). A KEEPALIVE restarts the
    silence timer even without ``rx_good``. Configuration, in cycles:
    ``keepalive`` (the KEEPALIVE interval; 0 is taken as 1) and ``dead``
    (silence that takes UP down; one not above ``keepalive`` is taken as
    3 x ``keepalive``, a cycle after it is set); ``incarnation`` is XORed into the
    bridge's own count of resets (a register ``rst`` does not clear, one
    more after every reset); the result is registered, so a new
    ``incarnation`` acts a cycle after it is set.

    Outputs: ``state`` and ``up``; ``keepalive_due`` (a KEEPALIVE is to be
    sent: while not UP every ``keepalive`` cycles, while UP once nothing
    was sent for ``keepalive`` cycles; and from every change of state, and
    from a KEEPALIVE saying INIT heard while UP, until one is sent, so that
    the peer learns our state however busy the link is), with
    ``tx_fields``, the KEEPALIVE's fields as bytes; one-cycle pulses
    ``rewind`` (the link came UP: resend every frame not acknowledged),
    ``restart`` (the peer restarted: drop the stored frames, start the
    credits again) and ``adopt`` with ``adopt_base`` (the receiver's next
    expected sequence number, on the UP after a restart or after reset);
    counters ``link_up_events``, ``link_down_events``, ``peer_restarts``,
    ``keepalives_sent``, ``keepalives_received``; the ``peer_incarnation``
    held (valid with ``peer_known``) and ``incarnation``.

    Timing: a KEEPALIVE is registered with its fields and acts in the
    cycle after its pulse (whether it names our incarnation is decided
    in the cycle of the pulse): it moves the state, the pulses and the
    counters at the edge that ends that cycle, so they show two cycles
    after the pulse; it restarts the silence timer in the cycle of the
    pulse. ``rewind``, ``restart`` and ``adopt`` are registered (one
    cycle). A KEEPALIVE acting in the same cycle as ``retry_limit`` or
    the dead time is handled first, and the timers then act on the
    state it left.
    """

    def __init__(self, *, keepalive=2500, dead=7500, incarnation=0):
        for name, value in (("keepalive", keepalive), ("dead", dead)):
            if not isinstance(value, int) or not 1 <= value < 2 ** TIMER_BITS:
                raise ValueError(f"{name} must be 1..2**{TIMER_BITS}-1 cycles, not {value!r}")
        if dead <= keepalive:
            raise ValueError(f"dead ({dead}) must exceed keepalive ({keepalive}) cycles")
        if not isinstance(incarnation, int) or not 0 <= incarnation < 2 ** 32:
            raise ValueError(f"incarnation must be a 32-bit number, not {incarnation!r}")
        self._dead = dead
        super().__init__({
            "rx_good": In(1), "rx_keepalive": In(1), "rx_fields": In(8 * KA.length),
            "rx_base": In(32), "retry_limit": In(1), "frame_sent": In(1),
            "keepalive_sent": In(1),
            "keepalive": In(TIMER_BITS, init=keepalive), "dead": In(TIMER_BITS, init=dead),
            "incarnation": In(32, init=incarnation),
            "state": Out(2), "up": Out(1), "keepalive_due": Out(1),
            "tx_fields": Out(8 * KA.length),
            "rewind": Out(1), "restart": Out(1), "adopt": Out(1), "adopt_base": Out(32),
            "peer_incarnation": Out(32), "peer_known": Out(1), "own_incarnation": Out(32),
            "link_up_events": Out(32), "link_down_events": Out(32), "peer_restarts": Out(32),
            "keepalives_sent": Out(32), "keepalives_received": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        state = Signal(2, init=DOWN)
        # the resets seen: `rst` does not clear it; one more after each reset
        resets = Signal(32, init=0, reset_less=True)
        # once per reset however long `rst` is held (the count is reset-less:
        # it would move in every cycle of a long reset)
        fresh = Signal(init=1)
        counted = Signal(32)
        m.d.comb += counted.eq(resets)
        with m.If(fresh & ~ResetSignal("sync")):
            m.d.comb += counted.eq(resets + 1)
            m.d.sync += fresh.eq(0)
        m.d.sync += resets.eq(counted)
        # our incarnation, registered (off the paths through the KEEPALIVE
        # compare): from the count of resets it always equals the count's
        # own, `incarnation` acts a cycle after it is written
        mine = Signal(32, init=self.incarnation.init, reset_less=True)
        m.d.sync += mine.eq(counted ^ self.incarnation)
        m.d.comb += [self.own_incarnation.eq(mine),
                     self.state.eq(state), self.up.eq(state == UP)]

        peer, known, adopt_pending = self.peer_incarnation, self.peer_known, Signal()
        # a KEEPALIVE is registered with its two compares before it acts
        # (off the paths from its fields to the state): `names_us` against
        # our incarnation as it arrives, `same` against the peer's
        # incarnation as it will be held when it acts (the one a KEEPALIVE
        # acting now takes, forwarded)
        ka, theirs, says = Signal(), Signal(32), Signal(2)
        names_us, same, base = Signal(), Signal(), Signal(32)
        arriving = unpack_field(KA, "incarnation", self.rx_fields)
        new_peer = ka & (~known | ~same)
        restart = ka & known & ~same
        m.d.sync += [
            ka.eq(self.rx_keepalive), theirs.eq(arriving), base.eq(self.rx_base),
            says.eq(unpack_field(KA, "state", self.rx_fields)),
            names_us.eq(unpack_field(KA, "peer_known", self.rx_fields) &
                        (unpack_field(KA, "peer_incarnation", self.rx_fields) == mine)),
            same.eq(Mux(new_peer, arriving == theirs, arriving == peer)),
        ]
        # the state the KEEPALIVE finds: a restart takes UP down first
        found = Signal(2)
        m.d.comb += found.eq(Mux(restart & (state == UP), DOWN, state))
        go_up, go_down, to_init = Signal(), Signal(), Signal()
        m.d.comb += [
            go_up.eq(ka & (found != UP) & ((says == INIT) | (says == UP)) & names_us),
            to_init.eq(ka & (found != UP) & ~go_up & ((says == DOWN) | (found == DOWN))),
        ]

        # --- the timers -------------------------------------------------------------
        top = 2 ** TIMER_BITS - 1
        heard = Signal(TIMER_BITS)       # cycles since a good frame
        with m.If(self.rx_good | self.rx_keepalive):
            m.d.sync += heard.eq(0)
        with m.Elif(heard != top):
            m.d.sync += heard.eq(heard + 1)

        def since(pulse, init):
            """Cycles since the framer's ``pulse``, which is registered
            first (off the framer's handshake): ``(was, count)``, the
            cycles being 0 while ``was`` (the cycle after the pulse), else
            ``count``."""
            was, count = Signal(), Signal(TIMER_BITS, init=init)
            m.d.sync += was.eq(pulse)
            with m.If(was):
                m.d.sync += count.eq(1)
            with m.Elif(count != top):
                m.d.sync += count.eq(count + 1)
            return was, count
        frame_was, sent = since(self.frame_sent, 0)                 # a frame went out
        ka_was, since_ka = since(self.keepalive_sent, top)  # ... a KEEPALIVE: one due at once
        # the dead time in use (models.link_state_cycles.dead_in_use): a
        # `dead` not above `keepalive` is taken as 3 x keepalive (at least 3,
        # at most the timers' maximum); registered, from the configuration,
        # less one: `heard` is compared with it a cycle early and the result
        # registered (no frame in that cycle), so UP goes down when `heard`
        # reaches the dead time, as if compared in the cycle
        triple = Signal(TIMER_BITS + 2)
        dead_less = Signal(TIMER_BITS, init=self._dead - 1)
        m.d.comb += triple.eq(Mux(self.keepalive == 0, 1, self.keepalive) * 3)
        m.d.sync += dead_less.eq(Mux(self.dead > self.keepalive, self.dead,
                                     Mux(triple > top, top, triple)) - 1)
        expired = Signal()
        m.d.sync += expired.eq(~(self.rx_good | self.rx_keepalive) & (heard >= dead_less))
        silent = (state == UP) & ~ka & expired
        m.d.comb += go_down.eq(Mux(ka, (found == UP) & (says == DOWN) | restart & (state == UP),
                                   (state == UP) & (self.retry_limit | silent)))
        # a KEEPALIVE owed to the peer: our state changed, or it is still
        # INIT while we are UP (ours may have been lost); DATA does not
        # cancel it, only a KEEPALIVE sent (a change in the cycle of the
        # KEEPALIVE's pulse is owed still). From registers: `owed` is
        # `owed_was` (its value a cycle ago) updated by that cycle's change
        # and pulse, both registered
        answer = ka & (found == UP) & (says == INIT)
        owed, owed_was, change_was = Signal(), Signal(), Signal()
        m.d.comb += owed.eq(change_was | ~ka_was & owed_was)
        m.d.sync += [owed_was.eq(owed), change_was.eq(go_up | go_down | to_init | answer)]
        zero_due = self.keepalive == 0          # a timer at 0 is due only then
        m.d.comb += self.keepalive_due.eq(owed | Mux(
            state == UP, Mux(frame_was, zero_due, sent >= self.keepalive),
            Mux(ka_was, zero_due, since_ka >= self.keepalive)))

        # --- the state, the pulses, the counters ------------------------------------------
        m.d.sync += [self.rewind.eq(go_up), self.restart.eq(restart),
                     self.adopt.eq(go_up & (adopt_pending | new_peer))]
        with m.If(go_up):
            m.d.sync += [state.eq(UP), self.adopt_base.eq(base),
                         self.link_up_events.eq(self.link_up_events + 1), adopt_pending.eq(0)]
        with m.Elif(go_down | to_init):
            m.d.sync += state.eq(Mux(to_init, INIT, DOWN))
            with m.If(new_peer):
                m.d.sync += adopt_pending.eq(1)
        with m.Elif(new_peer):
            m.d.sync += adopt_pending.eq(1)
        with m.If(go_down):
            m.d.sync += self.link_down_events.eq(self.link_down_events + 1)
        with m.If(new_peer):
            m.d.sync += [peer.eq(theirs), known.eq(1)]
        with m.If(restart):
            m.d.sync += self.peer_restarts.eq(self.peer_restarts + 1)
        with m.If(ka):
            m.d.sync += self.keepalives_received.eq(self.keepalives_received + 1)
        with m.If(ka_was):
            m.d.sync += self.keepalives_sent.eq(self.keepalives_sent + 1)

        m.d.comb += self.tx_fields.eq(pack_bytes(KA, incarnation=mine,
                                                 peer_incarnation=Mux(known, peer, 0),
                                                 peer_known=known, state=state))
        return m
