"""Two bridges and the network between them as one channel of the event
models (:class:`~tlpoe.models.events.Fabric`), for what the host and the GPU
see when the network fails (docs/link-state.md, "Completion timeout and
containment"): the reference of the RTL's behaviour at the level of TLPs,
not of cycles (the cycle twin is :class:`~tlpoe.models.bridge.BridgeModel`).

:class:`BridgedLink` joins a host-side port (end 0) and a chassis-side port
(end 1). Each end's bridge tracks the non-posted requests it carries with a
:class:`~tlpoe.models.cpl_tracker.CompletionTracker` and drops the late
completions. The network carries each TLP in ``latency_ns`` (one way,
both bridges included) while it is up; ``outages`` are the intervals
``(start_ns, end_ns)`` it carries nothing. During an outage:

* each bridge detects it ``dead_ns`` after it began (its link goes DOWN) and
  comes UP again ``up_ns`` after it ended;
* TLPs sent before containment wait (the replay buffer and the transmit
  queues) and are delivered, in order, once the link is UP: a flap shorter
  than ``dead_ns + hold_ns`` loses nothing;
* once the link has been DOWN for ``hold_ns`` (containment), the tracker
  completes every request outstanding with UR, and every TLP still waiting
  to be sent or sent from then on until UP is contained: a non-posted
  request answered at once with UR, a posted one or a completion dropped
  and counted. (The RTL drops at the transmit queues' egress; what its
  replay buffer already held is resent when UP, so a request there may
  still reach the device and its completion come back late, dropped: here
  everything not delivered is contained, a bound on the RTL's losses.)

Requests get UR also after ``timeout_ns`` with no completion (the
tracker's completion timeout). Counters: ``contained`` (by class),
``delivered``, ``late_dropped``, and each tracker's.
"""

from collections import Counter, deque

from .cpl_tracker import CompletionTracker
from .tlp import OrderingClass

__all__ = ["BridgedLink"]


class BridgedLink:
    """See the module docstring. ``completer_ids``: the two bridges' PCIe
    IDs (the Completer ID of their UR completions)."""

    def __init__(self, *, latency_ns=3000.0, outages=(), dead_ns=15_000.0, up_ns=10_000.0,
                 hold_ns=1_000_000.0, timeout_ns=2_000_000.0, completer_ids=(0x00F0, 0x00F1),
                 name="bridged"):
        for label, value in (("latency_ns", latency_ns), ("dead_ns", dead_ns), ("up_ns", up_ns),
                             ("hold_ns", hold_ns)):
            if value < 0:
                raise ValueError(f"{name}: {label}={value} is negative")
        for start, end in outages:
            if not 0 <= start < end:
                raise ValueError(f"{name}: outages: ({start}, {end}) is not an interval")
        self.name, self.latency_ns = name, latency_ns
        self.outages = sorted(outages)
        self.dead_ns, self.up_ns, self.hold_ns = dead_ns, up_ns, hold_ns
        self.trackers = [CompletionTracker(completer_id=cid, timeout_ns=timeout_ns,
                                           hold_ns=hold_ns) for cid in completer_ids]
        self.waiting = [deque(), deque()]       # per direction: TLPs not yet carried
        self.counters = Counter()
        self.fabric = self.ends = None
        self._scheduled = set()

    # --- the link's state --------------------------------------------------------------
    def _outage(self, t_ns):
        """The outage whose DOWN..UP span covers ``t_ns`` (start, end), or None."""
        for start, end in self.outages:
            if start + self.dead_ns <= t_ns < end + self.up_ns or start <= t_ns < end:
                return start, end
        return None

    def _contained(self, t_ns):
        out = self._outage(t_ns)
        return out is not None and t_ns >= out[0] + self.dead_ns + self.hold_ns and \
            t_ns < out[1] + self.up_ns

    # --- the channel interface ------------------------------------------------------------
    def transmit(self, end, tlp, t_ns):
        """``end``'s side hands ``tlp`` to its bridge at ``t_ns``."""
        kernel = self.fabric.kernel
        self._watch(t_ns)
        if not tlp.type.is_completion:
            self.trackers[end].request(tlp, t_ns)       # (non-posted ones only)
        if self._contained(t_ns):
            self._contain(end, tlp, t_ns)
            return
        outage = self._outage(t_ns)
        if outage is None:
            kernel.schedule(t_ns + self.latency_ns, self._arrive, end, tlp)
            return
        self.waiting[end].append(tlp)

    def _arrive(self, end, tlp, t_ns=None):
        """``tlp`` reaches the far bridge (from ``end``): its tracker judges
        a completion; then the far port has it."""
        t_ns = self.fabric.kernel.now if t_ns is None else t_ns
        far = 1 - end
        if tlp.type.is_completion and not self.trackers[far].completion(tlp, t_ns):
            self.counters["late_dropped"] += 1
            return
        self.counters["delivered"] += 1
        model, port = self.ends[far]
        self.fabric.deliver(model, port, tlp, t_ns)

    def _contain(self, end, tlp, t_ns):
        cls = tlp.ordering_class
        self.counters[f"contained_{cls.name.lower()}"] += 1
        if cls is OrderingClass.NON_POSTED:
            self._answer(end, t_ns)

    def _answer(self, end, t_ns):
        """The UR completions ``end``'s tracker owes now, back to ``end``."""
        model, port = self.ends[end]
        for cpl in self.trackers[end].expire(t_ns):
            self.counters["ur_completions"] += 1
            self.fabric.deliver(model, port, cpl, t_ns)

    # --- time: containment, UP again, completion timeouts --------------------------------
    def _watch(self, t_ns):
        """Schedule (once) the events of every outage and a timeout check."""
        kernel = self.fabric.kernel
        for start, end in self.outages:
            down, contain, up = start + self.dead_ns, start + self.dead_ns + self.hold_ns, \
                end + self.up_ns
            for when, what in ((down, self._down), (contain, self._containment), (up, self._up)):
                key = (when, what.__name__)
                if key not in self._scheduled and when >= t_ns and \
                        (what is not self._containment or contain < up):
                    self._scheduled.add(key)
                    kernel.schedule(when, what, when)
        tick = self.trackers[0].timeout_ns / 4
        key = ("timeouts", int(t_ns // tick))
        if key not in self._scheduled:
            self._scheduled.add(key)
            kernel.schedule((int(t_ns // tick) + 1) * tick, self._timeouts, None)

    def _down(self, t_ns):
        for tracker in self.trackers:
            tracker.link_down(t_ns)

    def _containment(self, t_ns):
        for end in (0, 1):
            held, self.waiting[end] = self.waiting[end], deque()
            for tlp in held:
                if tlp.ordering_class is not OrderingClass.NON_POSTED:
                    self.counters[f"contained_{tlp.ordering_class.name.lower()}"] += 1
            self._answer(end, t_ns)

    def _up(self, t_ns):
        kernel = self.fabric.kernel
        for end in (0, 1):
            self.trackers[end].link_up(t_ns)
            held, self.waiting[end] = self.waiting[end], deque()
            for tlp in held:
                kernel.schedule(t_ns + self.latency_ns, self._arrive, end, tlp)

    def _timeouts(self, _):
        t_ns = self.fabric.kernel.now
        for end in (0, 1):
            self._answer(end, t_ns)
        if any(t.outstanding for t in self.trackers):
            self._watch(t_ns)
