"""The ordering checker in cycles: a thin wrapper that gives
:class:`~tlpoe.models.ordering.OrderMonitor`'s verdicts (the rules, not
restated here) the timing of the RTL's
:class:`~tlpoe.rtl.queues.order_check.OrderChecker`: its stream inputs
registered first (``INPUT_STAGES``; every delay below counts from the
registered beat, ``irq_clear`` is not staged), its taps (the first
three DWs of each TLP as its beats go by, a short TLP keeping the DWs
of the one before), the egress's stamps read on the first beat, the
request table's lookup on the beat with DW 2 and its writes three
cycles after a request's last beat, ``verdict`` four cycles after a
TLP's last beat and the counters, ``first_*`` and ``irq`` five,
``stamp_errors`` three; an arrival inside three cycles after its last
beat (a TLP leaving in the same cycle is compared without it) and its
``window_errors`` four (a position freed by a TLP leaving in the same
cycle still counts as taken: the RTL's ring clears it that late),
``write_collisions`` four after a request's.

:meth:`CycleOrderChecker.step` takes one cycle's inputs (the beats taken
on the three streams, the egress's stamps, ``irq_clear``) and returns
what the RTL shows before the edge. ``tests/test_order_twin.py`` proves
it against the RTL in amaranth.sim, every output every cycle.
"""

from collections import defaultdict, deque, namedtuple

from .ordering import CHECK_CELLS, OrderFields, OrderMonitor

__all__ = ["INPUT_STAGES", "LATENCY", "OrderCycle", "CycleOrderChecker", "order_window"]

#: Registers on the checker's stream inputs (its three taps and the
#: egress's stamps) before any of its logic: every timing below counts
#: from the registered beat, ``INPUT_STAGES`` cycles after the beat is
#: taken. The RTL's ``OrderChecker.INPUT_STAGES``.
INPUT_STAGES = 1
#: A TLP whose last beat is taken in cycle ``c`` is in the counters from
#: cycle ``c + LATENCY`` on (and in ``verdict`` in ``c + LATENCY - 1``): the
#: RTL's ``OrderChecker.latency``.
LATENCY = INPUT_STAGES + 5
#: Cycles from a stage's event (its registered beat) to its counter: a
#: stamp error (from the egress's last beat), a window error (from the
#: arrival's), a write collision (from the request's); and from a request's
#: last beat to its table entry being read.
STAMP_ERROR_DELAY, WINDOW_ERROR_DELAY, COLLISION_DELAY, TABLE_DELAY = 3, 4, 4, 3
#: From the registered last beat to the verdict (``- 1``) and the counters.
_JUDGE_DELAY = LATENCY - INPUT_STAGES

COUNTERS = ("violations", "tlps_checked", "window_errors", "stamp_errors",
            "write_collisions")

#: What the checker shows in a cycle (its output ports by name; ``by_cell``
#: a list in the order of :data:`~tlpoe.models.ordering.CHECK_CELLS`).
OrderCycle = namedtuple("OrderCycle", "verdict_valid verdict violations by_cell first_stamp "
                                      "first_tag first_cell first_valid irq tlps_checked "
                                      "window_errors stamp_errors write_collisions")


class _Tap:
    """The RTL's ``_tap``: DWs 0..2 of each TLP as its beats go by."""

    def __init__(self, width):
        self.lanes = width // 32
        self.first, self.index, self.held = True, 0, [0, 0, 0]
        self.arrival = None

    def lane(self, data, i):
        return data >> 32 * (i % self.lanes) & 0xFFFFFFFF

    def beat(self, data, last, arrival=None):
        """A beat taken: returns the TLP's header bytes (12) on its last beat, else None."""
        dws = []
        for i in range(3):
            if self.index == i // self.lanes:
                self.held[i] = self.lane(data, i)
            dws.append(self.held[i])
        if self.first:
            self.arrival = arrival
        self.first = bool(last)
        self.index = 0 if last else min(3, self.index + 1)
        return b"".join(dw.to_bytes(4, "little") for dw in dws) if last else None


class CycleOrderChecker:
    """The :class:`~tlpoe.rtl.queues.order_check.OrderChecker` of one
    queue, in cycles: ``width``, ``window``, ``stamp_bits``, ``tag_bits``
    as the RTL's. :meth:`step` inputs: ``in_beat``, ``out_beat``,
    ``req_beat`` (a beat taken, ``(data, keep, last)``, or None),
    ``out_stamps`` (``(out_posted, out_cpls)`` beside the egress),
    ``irq_clear``."""

    def __init__(self, width, *, window=64, stamp_bits=16, tag_bits=10):
        self.width, self.window, self.stamp_bits, self.tag_bits = width, window, stamp_bits, \
            tag_bits
        self.tag_beat = 2 // (width // 32)
        self.reset()

    def reset(self):
        """``rst``: every register to its reset value. The table of
        requests is block RAM, which ``rst`` does not clear: it keeps what
        it held, the write of the cycle before the reset's edge and the
        write made at that edge (its enable is a register ``rst`` has not
        yet cleared). A completion after the reset may so find a request
        from before it, as it would in the RTL."""
        table = {}
        if hasattr(self, "monitor"):
            for cycle in (self.cycle, self.cycle + 1):
                for tlp in self.requests.get(cycle, ()):
                    self.monitor.request(tlp)
            table = self.monitor.writes
        self.monitor = OrderMonitor(self.window, self.tag_bits)
        self.monitor.writes = table
        self.taps = [_Tap(self.width) for _ in range(3)]      # in, out, req
        # the stream inputs on their way through the input registers
        self.staged = deque([(None, None, (0, 0), None)] * INPUT_STAGES)
        self.cycle = 0
        self.looked = None                  # the table entry the last lookup read
        self.requests = defaultdict(list)   # cycle -> requests written before it
        self.due = defaultdict(list)        # cycle -> (counter, increment) from then on
        self.verdicts = {}                  # cycle -> verdict bits shown then
        self.bad = {}                       # cycle -> the violation (cells, stamp, tag)
        self.cleared = {}                   # kind -> position freed by the last egress, cycle
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.by_cell = [0] * len(CHECK_CELLS)
        self.first = None
        self.irq = False

    def outputs(self):
        verdict = self.verdicts.get(self.cycle)
        cell, stamp, tag = self.first if self.first is not None else (0, 0, 0)
        return OrderCycle(verdict is not None, verdict or 0, self.counters["violations"],
                          list(self.by_cell), stamp, tag, cell, self.first is not None,
                          self.irq, self.counters["tlps_checked"],
                          self.counters["window_errors"], self.counters["stamp_errors"],
                          self.counters["write_collisions"])

    def _later(self, delay, name, amount=1):
        if amount:
            self.due[self.cycle + delay].append((name, amount))

    def step(self, *, in_beat=None, out_beat=None, out_stamps=(0, 0), req_beat=None,
             irq_clear=False):
        """One clock cycle; returns the :class:`OrderCycle` shown before the edge."""
        shown, mon, now = self.outputs(), self.monitor, self.cycle
        self.staged.append((in_beat, out_beat, tuple(out_stamps), req_beat))
        in_beat, out_beat, out_stamps, req_beat = self.staged.popleft()
        for tlp in self.requests.pop(now, ()):      # the table as this cycle reads it
            before = mon.write_collisions
            mon.request(tlp)
            self._later(COLLISION_DELAY - TABLE_DELAY, "write_collisions",
                        mon.write_collisions - before)
        tap_in, tap_out, tap_req = self.taps
        if req_beat is not None:
            header = tap_req.beat(req_beat[0], req_beat[2])
            if header is not None:
                self.requests[now + TABLE_DELAY].append(header)
        if out_beat is not None:
            if tap_out.index == self.tag_beat:
                dw0 = out_beat[0] & 0xFFFFFFFF if self.tag_beat == 0 else tap_out.held[0]
                dw2 = tap_out.lane(out_beat[0], 2)
                head = dw0.to_bytes(4, "little") + bytes(4) + dw2.to_bytes(4, "little")
                self.looked = mon.writes.get(OrderFields.of(head).tag % (1 << mon.tag_bits))
            header = tap_out.beat(out_beat[0], out_beat[2], tuple(out_stamps))
            if header is not None:
                self._leave(OrderFields.of(header), tap_out.arrival)
        # an arrival is inside from three cycles after its last beat, after a
        # TLP leaving in the same cycle was compared
        if in_beat is not None:
            header = tap_in.beat(in_beat[0], in_beat[2])
            if header is not None:
                self._arrive(OrderFields.of(header))
        # the edge
        self.cycle = now + 1
        for name, amount in self.due.pop(self.cycle, ()):
            self.counters[name] = (self.counters[name] + amount) & 0xFFFFFFFF
        violation = self.bad.pop(now, None)
        if violation is not None:
            cells, stamp, tag = violation
            for cell in cells:
                self.by_cell[CHECK_CELLS.index(cell)] += 1
            if self.first is None:
                self.first = (CHECK_CELLS.index(cells[0]), stamp, tag)
        self.irq = violation is not None or (self.irq and not irq_clear)
        self.verdicts.pop(now, None)
        return shown

    def _arrive(self, f):
        mon = self.monitor
        before = mon.window_errors
        pos = mon.counts[f.cls] % self.window
        mon.enter(f)
        hit = mon.window_errors - before
        # the RTL's ring still holds a position freed by a TLP leaving in this cycle
        if f.cls != 1 and not hit and self.cleared.get(f.cls) == (pos, self.cycle):
            hit = 1
        self._later(WINDOW_ERROR_DELAY, "window_errors", hit)

    def _unwrap(self, stamp, kind):
        count = self.monitor.counts[kind]
        return count - ((count - stamp) % (1 << self.stamp_bits))

    def _leave(self, f, stamps):
        mon = self.monitor
        sp, sc = stamps
        full = (self._unwrap(sp, 0), self._unwrap(sc, 2))
        looked = self.looked
        completes = looked is not None and looked[1] and looked[0] == f.requester
        before = mon.stamp_errors
        if f.cls != 1:
            own = full[0 if f.cls == 0 else 1] % self.window
            if own in mon.at[f.cls]:
                self.cleared[f.cls] = (own, self.cycle)
        cells = mon.leave(full, f, completes)
        if mon.stamp_errors != before:
            self._later(STAMP_ERROR_DELAY, "stamp_errors")
            return
        self.verdicts[self.cycle + _JUDGE_DELAY - 1] = sum(1 << CHECK_CELLS.index(c)
                                                           for c in cells)
        self._later(_JUDGE_DELAY, "tlps_checked")
        if cells:
            self._later(_JUDGE_DELAY, "violations")
            self.bad[self.cycle + _JUDGE_DELAY - 1] = (cells, sp, f.tag)


def order_window(tlps):
    """The checker's positions (per ring) for class queues of ``tlps`` per
    class: a power of two above the most of one class inside at once
    (``tlps`` queued, and a few on their way in and out). One definition:
    ``rtl/bridge/paths.py`` imports it."""
    return 1 << (tlps + 4).bit_length()
