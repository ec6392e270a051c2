"""In-order scoreboard: every expected item arrives exactly once, bit exact,
in order.

Connect the stimulus side (an input monitor's ``ap``) to ``expected_export``
and the DUT's output monitor to ``actual_export``. A subclass that transforms
the stream overrides :meth:`Scoreboard.predict` (input item -> the expected
output items, e.g. through a reference model) and, if equality is not
byte-equality, :meth:`Scoreboard.compare_items`.

Mismatches are logged as they happen (with a hex diff of the first differing
bytes); ``check_phase`` fails the test if anything mismatched, anything is left
unmatched on either side, or nothing was compared at all.
"""

import collections

from cocotb.triggers import Event, SimTimeoutError, with_timeout
from pyuvm import uvm_analysis_export, uvm_component

__all__ = ["AnalysisImp", "Scoreboard", "hex_diff"]

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

    def _mismatch(self, index, exp, act, problem):
        self.mismatched += 1
        if self.mismatched > LOGGED_MISMATCHES:
            return
        hint = ""
        if self._expected and self.compare_items(self._expected[0], act) is None:
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
        if self.mismatched:
            problems.append(f"{self.mismatched} of {self.compared} compared items mismatched")
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
        self.logger.info(f"{self.compared} items compared, all matched")
