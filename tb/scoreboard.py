"""In-order scoreboard: every expected item arrives exactly once, bit exact,
in order.

Connect the stimulus side (an input monitor's ``ap``) to ``expected_export``
and the DUT's output monitor to ``actual_export``. A subclass that transforms
the stream overrides :meth:`Scoreboard.predict` (input item -> the expected
output items, e.g. through a reference model) and, if equality is not
byte-equality, :meth:`Scoreboard.compare_items`.

With a ``pass_rule`` (``pass_rule(later, earlier)``: True where the later
item may overtake the earlier one) items may arrive out of order: each
actual item is matched with the first pending expected item equal to it,
and every pending expected item it overtook must be one it may pass, or it
is an illegal pass (counted with the mismatches). PCIe TLP ordering
(:func:`tlpoe.models.ordering.legal_pass`) is one such rule.

Mismatches are logged as they happen (with a hex diff of the first differing
bytes); ``check_phase`` fails the test if anything mismatched, anything is left
unmatched on either side, or nothing was compared at all.

Where one output merges several in-order sources whose interleaving the
model cannot predict (a Translator's ``net_out``: the chassis' TLPs and the
bridge's own completions), :class:`InterleavedScoreboard` checks that the
output is some interleaving of the sources, each whole, exact and in its
own order (:func:`match_interleaved`).
"""

import collections

from cocotb.triggers import Event, SimTimeoutError, with_timeout
from pyuvm import uvm_analysis_export, uvm_component

__all__ = ["AnalysisImp", "Scoreboard", "InterleavedScoreboard", "hex_diff", "tlp_pass_rule",
           "match_interleaved"]

#: Mismatches logged in full; later ones are only counted.
LOGGED_MISMATCHES = 5


def hex_diff(expected, actual, context=8, width=32):
    """Describe how two byte strings differ: lengths and, around the first
    differing byte, both sides in hex; None if they are equal."""
    if expected == actual:
        return None
    first = next((i for i, (e, a) in enumerate(zip(expected, actual)) if e != a),
                 min(len(expected), len(actual)))
    start = max(0, first - context)
    end = start + width
    lines = [f"expected {len(expected)} bytes, got {len(actual)}; "
             f"first difference at byte {first}",
             f"  expected[{start}:]: {expected[start:end].hex(' ')}",
             f"  actual  [{start}:]: {actual[start:end].hex(' ')}"]
    marker = 3 * (first - start)
    lines.append(" " * (len(f"  expected[{start}:]: ") + marker) + "^^")
    return "\n".join(lines)


def tlp_pass_rule(later, earlier):
    """PCIe ordering as a ``pass_rule``: whether TLP item ``later`` may pass
    ``earlier`` (:func:`tlpoe.models.ordering.legal_pass`)."""
    from ..models.ordering import legal_pass
    from ..models.tlp import Tlp
    return legal_pass(Tlp.unpack(_data(later)), Tlp.unpack(_data(earlier)))


class AnalysisImp(uvm_analysis_export):
    """An analysis export that calls ``write_fn(item)``."""

    def __init__(self, name, parent, write_fn):
        super().__init__(name, parent)
        self.write = write_fn


def _describe(item):
    return str(item) if hasattr(item, "data") else f"{len(item)} bytes"


def _data(item):
    return item.data if hasattr(item, "data") else bytes(item)


class Scoreboard(uvm_component):
    """Exactly once, bit exact, in order (see module doc).

    Counters: ``compared``, ``mismatched``; ``pending_expected`` /
    ``pending_actual`` are items still waiting for their partner.
    """

    def __init__(self, name, parent):
        super().__init__(name, parent)
        self.expected_export = AnalysisImp("expected_export", self, self.write_expected)
        self.actual_export = AnalysisImp("actual_export", self, self.write_actual)
        self._expected = collections.deque()
        self._actual = collections.deque()
        self.compared = 0
        self.mismatched = 0
        self.errors = []        # failures other than mismatches (e.g. drain timeouts)
        #: True where losing the tail is the expected outcome (a link declared
        #: down): what did arrive must still match, in order and exactly once.
        self.allow_pending = False
        #: None: strictly in order; else pass_rule(later_item, earlier_item)
        self.pass_rule = None
        self.passes = 0            # expected items overtaken, legally
        self.illegal_passes = 0
        self.illegal_items = 0     # actual items that made at least one illegal pass
        #: True where illegal passes are the point (a test-only reordering
        #: arbiter): they must occur, and do not fail the test by themselves
        self.expect_illegal = False
        #: None, or ``may_lose(expected_item)``: True for an item the DUT
        #: may lose (a peer bridge's restart drops what it held). Such an
        #: item overtaken where it may not be, or never arriving, is
        #: counted in ``lost`` instead of failing the test; what does
        #: arrive must still match, exactly once, in a legal order. Only
        #: with a ``pass_rule``.
        self.may_lose = None
        self.lost_items = []    # those, in the order they were given up
        self._drained = Event()
        self._drained.set()

    # hooks for subclasses
    def predict(self, item):
        """The output items expected for input ``item``; default: itself."""
        return [item]

    def compare_items(self, expected, actual):
        """None if ``actual`` matches ``expected``, else a description."""
        return hex_diff(_data(expected), _data(actual))

    # analysis inputs
    def write_expected(self, item):
        self._expected.extend(self.predict(item))
        if self._expected:
            self._drained.clear()
        self._match()

    def write_actual(self, item):
        self._actual.append(item)
        self._match()

    @property
    def pending_expected(self):
        return len(self._expected)

    @property
    def pending_actual(self):
        return len(self._actual)

    def _match(self):
        if self.pass_rule is not None:
            self._match_reordered()
            return
        expected, actual = self._expected, self._actual
        while expected and actual:
            exp, act = expected.popleft(), actual.popleft()
            index = self.compared
            self.compared += 1
            problem = self.compare_items(exp, act)
            if problem is not None:
                self._mismatch(index, exp, act, problem)
        if not expected:
            self._drained.set()

    def _match_reordered(self):
        expected, unmatched = self._expected, collections.deque()
        while self._actual:
            act = self._actual.popleft()
            data = _data(act)
            at = next((i for i, exp in enumerate(expected) if _data(exp) == data), None)
            if at is None:              # equal to no expected item: corrupted or extra
                unmatched.append(act)
                continue
            exp = expected[at]
            del expected[at]
            index = self.compared
            self.compared += 1
            illegal = False
            overtaken = list(expected)[:at]
            if self.may_lose is not None:       # the losable ones it may not pass: lost
                lost = [not self.pass_rule(act, e) and self.may_lose(e) for e in overtaken]
                if any(lost):
                    self.lost_items += [e for e, gone in zip(overtaken, lost) if gone]
                    rest = list(expected)[at:]
                    expected.clear()
                    expected.extend(e for e, gone in zip(overtaken, lost) if not gone)
                    expected.extend(rest)
                    overtaken = [e for e, gone in zip(overtaken, lost) if not gone]
            for earlier in overtaken:
                if self.pass_rule(act, earlier):
                    self.passes += 1
                else:
                    illegal = True
                    self.illegal_passes += 1
                    self._mismatch(index, earlier, act, "illegal pass: the actual item "
                                   "overtook this earlier expected one")
            self.illegal_items += illegal
            self.compare_items(exp, act)        # equal bytes: for the subclass's tallies
        self._actual = unmatched
        if self.settled():
            self._drained.set()

    @property
    def lost(self):
        """Expected items given up as lost (``may_lose``)."""
        return len(self.lost_items)

    def settled(self):
        """No expected item is pending but ones the DUT may lose."""
        if self.may_lose is None:
            return not self._expected
        return all(self.may_lose(e) for e in self._expected)

    def recheck(self):
        """After ``may_lose`` changed: whether the pending items now settle."""
        if self.settled():
            self._drained.set()

    def _mismatch(self, index, exp, act, problem):
        self.mismatched += 1
        if self.mismatched > LOGGED_MISMATCHES:
            return
        hint = ""
        if self.pass_rule is None and self._expected and \
                _data(self._expected[0]) == _data(act):
            hint = "\n  (actual equals the NEXT expected item: one was dropped?)"
        self.logger.error(f"mismatch at item {index}:\n  expected {_describe(exp)}\n"
                          f"  actual   {_describe(act)}\n{problem}{hint}")

    async def wait_drained(self, timeout=None, unit="ns"):
        """Return once no expected item is pending. With ``timeout`` a late
        output is recorded as a failure (reported by ``check_phase``) rather
        than hanging the test."""
        if timeout is None:
            await self._drained.wait()
            return
        try:
            await with_timeout(self._drained.wait(), timeout, unit)
        except SimTimeoutError:
            self.errors.append(f"timeout after {timeout} {unit}: {len(self._expected)} "
                               f"expected item(s) never arrived")

    def check_phase(self):
        problems = [] if self.allow_pending else list(self.errors)
        if self.expect_illegal:
            if not self.illegal_passes:
                problems.append("no illegal pass seen, though one was expected")
            self.mismatched -= self.illegal_passes
        if self.mismatched:
            problems.append(f"{self.mismatched} of {self.compared} compared items mismatched"
                            + (f" ({self.illegal_passes} illegal passes)"
                               if self.illegal_passes else ""))
        if self.may_lose is not None:
            self.lost_items += [e for e in self._expected if self.may_lose(e)]
            self._expected = collections.deque(e for e in self._expected
                                               if not self.may_lose(e))
        if self._expected and not self.allow_pending:
            problems.append(f"{len(self._expected)} expected item(s) never arrived; first: "
                            f"{_describe(self._expected[0])}")
        if self._actual:
            problems.append(f"{len(self._actual)} unexpected extra item(s); first: "
                            f"{_describe(self._actual[0])}")
        if not self.compared:
            problems.append("no item was compared")
        if problems:
            raise AssertionError(f"{self.get_full_name()}: " + "; ".join(problems))
        self.logger.info(f"{self.compared} items compared, all matched"
                         + (f"; {self.lost} lost where they may be" if self.may_lose else ""))


def match_interleaved(sources, actual):
    """None if ``actual`` (byte strings) is an interleaving of ``sources``
    (lists of byte strings), each consumed whole and in its own order;
    else a sentence saying where it fails. Equal items in several sources
    are followed both ways, so the answer never depends on a guess."""
    states = {(0,) * len(sources)}
    for k, item in enumerate(actual):
        following = set()
        for state in states:
            for i, source in enumerate(sources):
                if state[i] < len(source) and source[state[i]] == item:
                    following.add(state[:i] + (state[i] + 1,) + state[i + 1:])
        if not following:
            state = min(states)
            heads = "; ".join(
                f"source {i} item {state[i]}: "
                + (source[state[i]].hex(" ")[:48] if state[i] < len(source) else "(none left)")
                for i, source in enumerate(sources))
            return (f"actual item {k} ({item.hex(' ')[:48]}...) is the next item of no source "
                    f"(next expected: {heads})")
        states = following
    done = tuple(len(source) for source in sources)
    if done not in states:
        state = max(states)
        missing = [f"source {i}: {len(s) - state[i]} of {len(s)}" for i, s in enumerate(sources)
                   if state[i] < len(s)]
        return "expected items never arrived: " + ", ".join(missing)
    return None


class InterleavedScoreboard(uvm_component):
    """One output that merges ``sources`` in-order streams: connect each
    source's predictions to ``expected_exports[i]`` (items whose ``data`` is
    the expected bytes; a subclass may override :meth:`predict`, input item
    -> ``[(source index, expected item)]``, and connect inputs to
    ``input_export`` instead) and the output monitor to ``actual_export``.
    ``check_phase`` runs :func:`match_interleaved` over everything seen."""

    def __init__(self, name, parent, sources=2):
        super().__init__(name, parent)
        self.expected = [[] for _ in range(sources)]
        self.actual = []
        self.expected_exports = [AnalysisImp(f"expected_export{i}", self,
                                             lambda item, i=i: self._expect(i, item))
                                 for i in range(sources)]
        self.input_export = AnalysisImp("input_export", self, self.write_input)
        self.actual_export = AnalysisImp("actual_export", self, self.write_actual)
        self.errors = []
        self._drained = Event()
        self._drained.set()

    def predict(self, item):
        """``[(source index, expected item)]`` for an input item."""
        return []

    def write_input(self, item):
        for source, expected in self.predict(item):
            self._expect(source, expected)

    def _expect(self, source, item):
        self.expected[source].append(_data(item))
        self._update()

    def write_actual(self, item):
        self.actual.append(_data(item))
        self._update()

    @property
    def pending(self):
        return sum(map(len, self.expected)) - len(self.actual)

    def _update(self):
        if self.pending > 0:
            self._drained.clear()
        else:
            self._drained.set()

    async def wait_drained(self, timeout=None, unit="ns"):
        """Return once as many items came out as are expected (or ``timeout``,
        recorded as a failure)."""
        try:
            if timeout is None:
                await self._drained.wait()
            else:
                await with_timeout(self._drained.wait(), timeout, unit)
        except SimTimeoutError:
            self.errors.append(f"timeout after {timeout} {unit}: {self.pending} expected "
                               f"item(s) never arrived")

    def check_phase(self):
        problems = list(self.errors)
        problem = match_interleaved(self.expected, self.actual)
        if problem:
            problems.append(problem)
        if not self.actual:
            problems.append("no item was compared")
        if problems:
            raise AssertionError(f"{self.get_full_name()}: " + "; ".join(problems))
        self.logger.info(f"{len(self.actual)} items compared, an interleaving of "
                         f"{[len(e) for e in self.expected]} in order")
