"""The link state machine in cycles: the twin of
:class:`tlpoe.rtl.link.link_state.LinkStateMachine`, the protocol of
:class:`tlpoe.models.link.LinkEndpoint` (``keepalive_ns`` set) with the
RTL's timing. :meth:`CycleLinkState.step` takes one cycle's inputs and
returns what the RTL shows before the edge; ``tests/test_link_state_twin.py``
proves it against the RTL, every output every cycle.

Per cycle, in this order: the KEEPALIVE received in the cycle before
(``keepalive``, a dict of :data:`~tlpoe.models.wire.KEEPALIVE_FIELDS`
with its ``base``; registered, whether it names our incarnation decided
as it arrived) is handled first: a new peer incarnation is taken (a restart when one was held:
``restart`` and, from UP, down), then BFD's transitions on the state it
found (UP and the peer says DOWN: down; not UP and the peer says INIT or
UP naming our incarnation: up; else DOWN, or the peer says DOWN: INIT).
Without a KEEPALIVE, UP goes down on ``retry_limit`` or after ``dead``
cycles without a good frame (:func:`dead_in_use`: a ``dead`` not above
``keepalive`` is taken as 3 x ``keepalive``). The timers count cycles
since a good frame (or a KEEPALIVE arriving), since a frame was sent, since a KEEPALIVE was sent (due at once after
reset). A KEEPALIVE is owed, due until one is sent, from every change of
state and from a KEEPALIVE saying INIT heard while UP.
"""

from collections import namedtuple

from .wire import LinkState

__all__ = ["TIMER_BITS", "CycleLinkState", "LinkStateCycle", "dead_in_use"]

#: Width of the timers and of ``keepalive`` and ``dead`` (cycles).
TIMER_BITS = 24
_MAX = (1 << TIMER_BITS) - 1
DOWN, INIT, UP = int(LinkState.DOWN), int(LinkState.INIT), int(LinkState.UP)

LinkStateCycle = namedtuple("LinkStateCycle", "state up keepalive_due tx_fields rewind restart "
                                              "adopt adopt_base peer_incarnation peer_known "
                                              "own_incarnation link_up_events link_down_events "
                                              "peer_restarts keepalives_sent "
                                              "keepalives_received")


def dead_in_use(keepalive, dead):
    """The dead time the link state machine uses for the ``keepalive`` and
    ``dead`` configured (cycles): ``dead`` if it exceeds ``keepalive``,
    else 3 x ``keepalive`` (at least 3, at most the timers' maximum), so
    that a zero or too short ``dead`` cannot take the link down between two
    KEEPALIVEs. Registered in the RTL: a new value acts one cycle later."""
    if dead > keepalive:
        return dead
    return min(3 * max(keepalive, 1), _MAX)


class CycleLinkState:
    """``keepalive``, ``dead`` (cycles) and ``incarnation`` as the RTL's
    configuration; :meth:`reset` is the RTL's ``rst`` (the count of
    resets, and so the incarnation, goes on)."""

    def __init__(self, *, keepalive=2500, dead=7500, incarnation=0):
        self.keepalive, self.dead, self.incarnation = keepalive, dead, incarnation
        self.dead_init = dead
        self.resets = 0
        self.reset()

    def reset(self):
        # the reset edge clocks the reset-less incarnation too, from the
        # count of resets before it moves
        self.mine = (self.resets ^ self.incarnation) & 0xFFFFFFFF
        self.fresh = True
        self.state = DOWN
        self.peer, self.known, self.adopt_pending = 0, False, False
        self.heard = self.sent = 0
        self.dead_used = self.dead_init
        self.expired = False            # heard reaches dead_used (registered)
        self.since_ka = _MAX
        self.owed = False
        self.pending = None             # the KEEPALIVE registered, to act next cycle
        self.ka_was = False             # a KEEPALIVE sent in the cycle before
        self.pulses = (False, False, False)     # rewind, restart, adopt
        self.adopt_base = 0
        self.counts = dict.fromkeys(("link_up_events", "link_down_events", "peer_restarts",
                                     "keepalives_sent", "keepalives_received"), 0)

    def outputs(self):
        due = self.owed or (self.sent if self.state == UP else self.since_ka) >= self.keepalive
        fields = {"incarnation": self.mine, "peer_incarnation": self.peer if self.known else 0,
                  "peer_known": int(self.known), "state": self.state}
        return LinkStateCycle(self.state, self.state == UP, due, fields, *self.pulses,
                              self.adopt_base, self.peer, self.known, self.mine,
                              **self.counts)

    def step(self, *, rx_good=False, keepalive=None, retry_limit=False, frame_sent=False,
             keepalive_sent=False):
        """One cycle; ``keepalive``: the fields of a KEEPALIVE received (with
        ``base``), or None. Returns the :class:`LinkStateCycle` shown before the edge."""
        shown = self.outputs()
        state, counts = self.state, self.counts
        arrived, keepalive = keepalive, self.pending
        ka = keepalive is not None
        new_peer = restart = go_up = go_down = to_init = answer = False
        if ka:
            theirs = keepalive["incarnation"]
            new_peer = not self.known or theirs != self.peer
            restart = self.known and theirs != self.peer
            found = DOWN if restart and state == UP else state
            says = keepalive["state"]
            names_us = keepalive["names_us"]
            go_up = found != UP and says in (INIT, UP) and names_us
            to_init = found != UP and not go_up and (says == DOWN or found == DOWN)
            go_down = (found == UP and says == DOWN) or (restart and state == UP)
            answer = found == UP and says == INIT
        else:
            silent = state == UP and self.expired
            go_down = state == UP and (retry_limit or silent)
        # the edge
        self.pulses = (go_up, restart, go_up and (self.adopt_pending or new_peer))
        # compared a cycle early with the dead time in use then, less one
        self.expired = not (rx_good or arrived is not None) and \
            self.heard >= self.dead_used - 1
        self.heard = 0 if rx_good or arrived is not None else min(self.heard + 1, _MAX)
        # the KEEPALIVE that arrived, registered: whether it names us is
        # decided against our incarnation now
        self.pending = None if arrived is None else dict(
            arrived, names_us=bool(arrived["peer_known"]) and
            arrived["peer_incarnation"] == self.mine)
        self.sent = 0 if frame_sent else min(self.sent + 1, _MAX)
        self.since_ka = 0 if keepalive_sent else min(self.since_ka + 1, _MAX)
        self.dead_used = dead_in_use(self.keepalive, self.dead)
        if go_up:
            self.state, self.adopt_base, self.adopt_pending = UP, keepalive["base"], False
            counts["link_up_events"] += 1
        elif go_down or to_init:
            self.state = INIT if to_init else DOWN
            self.adopt_pending = self.adopt_pending or new_peer
        elif new_peer:
            self.adopt_pending = True
        if go_down:
            counts["link_down_events"] += 1
        if go_up or go_down or to_init or answer:
            self.owed = True
        elif keepalive_sent:
            self.owed = False
        if new_peer:
            self.peer, self.known = keepalive["incarnation"], True
        if restart:
            counts["peer_restarts"] += 1
        if ka:
            counts["keepalives_received"] += 1
        if self.ka_was:             # counted from the pulse registered
            counts["keepalives_sent"] += 1
        self.ka_was = keepalive_sent
        for name in counts:
            counts[name] &= 0xFFFFFFFF
        if self.fresh:
            self.resets, self.fresh = (self.resets + 1) & 0xFFFFFFFF, False
        self.mine = (self.resets ^ self.incarnation) & 0xFFFFFFFF
        return shown
