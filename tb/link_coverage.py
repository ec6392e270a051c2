"""Functional coverage of the link's replay causes and events (cocotb-coverage).

One cover point, :data:`COVER_POINT`, with one bin per :data:`EVENTS` entry,
hit once per occurrence, both bridges together. :class:`LinkCoverage` samples
it from the receiver oracles' observations and from counter deltas: it reads
a bridge's counters whenever the bridge sends a frame, and once more at the
end of the run, never per cycle.
"""

from cocotb_coverage.coverage import CoverPoint, coverage_db
from pyuvm import uvm_component

from .bridge_ports import BridgePorts
from .link_oracle import Verdict
from .scoreboard import AnalysisImp

__all__ = ["COVER_POINT", "EVENTS", "COUNTER_EVENTS", "LinkCoverage"]

COVER_POINT = "tlpoe.link.event"

#: The bins: event name -> what hits it.
EVENTS = {
    "nak_replay": "a sender rewinds on a NAK (replays_nak advances)",
    "timeout_replay": "a replay timer expires (replays_timeout advances)",
    "nak_repeated": "a NAK timer sends a gap's NAK again (naks_repeated advances)",
    "duplicate": "the model receiver discards a DATA frame behind the expected one",
    "out_of_order": "the model receiver discards a DATA frame ahead of the expected one",
    "seq_wrap": "the model receiver's expected sequence number passes 0 again",
    "window_full": "a replay buffer holds the packer off (window_full_cycles advanced "
                   "since the previous sample: once per sample, not per cycle)",
    "link_down": "a bridge declares the link down (link_down_events advances)",
}

#: Counter -> the event each unit of its advance is.
COUNTER_EVENTS = {
    "replays_nak": "nak_replay",
    "replays_timeout": "timeout_replay",
    "naks_repeated": "nak_repeated",
    "link_down_events": "link_down",
}


@CoverPoint(COVER_POINT, bins=list(EVENTS))
def _cover(event):
    """One occurrence of ``event``."""


class LinkCoverage(uvm_component):
    """Samples :data:`COVER_POINT`.

    * ``observation_export``: the receiver oracles' observations: duplicate,
      out of order, and a sequence wrap (an accepted frame that brings the
      model receiver's expected sequence number back to 0).
    * ``frame_exports[side]``: the frames bridge ``side`` sends; each one
      reads that bridge's :data:`COUNTER_EVENTS` counters and
      ``window_full_cycles`` and samples what advanced since the last read.
    * :meth:`settle`: the counters at the end of the run, sampled the same way.

    ``report_phase`` logs the bins and, when ``path`` is not empty, writes
    the coverage database there as YAML (``export_to_yaml``; a relative
    path is relative to the simulator's run directory).
    """

    def __init__(self, name, parent, dut, modulus, path):
        super().__init__(name, parent)
        self.dut = dut
        self.modulus = modulus
        self.path = path
        self.observation_export = AnalysisImp("observation_export", self, self.observe)
        self.frame_exports = {
            side: AnalysisImp(f"frame_export_{side}", self,
                              lambda item, side=side: self.sample_counters(side, self.read(side)))
            for side in ("a", "b")}
        self.last = {side: dict.fromkeys([*COUNTER_EVENTS, "window_full_cycles"], 0)
                     for side in ("a", "b")}
        self.ports = {side: BridgePorts(dut, side) for side in ("a", "b")}

    def observe(self, obs):
        if obs.verdict is Verdict.DUPLICATE:
            _cover("duplicate")
        elif obs.verdict in (Verdict.OUT_OF_ORDER, Verdict.BUFFERED):
            _cover("out_of_order")
        elif obs.verdict is Verdict.ACCEPTED and obs.accepted % self.modulus < obs.in_order:
            _cover("seq_wrap")          # expected passed 0 (by 1 + frames released)

    def read(self, side):
        stats = self.ports[side].stats()
        return {name: stats[name] for name in self.last[side]}

    def sample_counters(self, side, counters):
        """Sample what advanced in bridge ``side``'s ``counters`` since the last call."""
        last = self.last[side]
        for name, event in COUNTER_EVENTS.items():
            for _ in range(counters[name] - last[name]):
                _cover(event)
        if counters["window_full_cycles"] != last["window_full_cycles"]:
            _cover("window_full")
        self.last[side] = {name: counters[name] for name in last}

    def settle(self, counters):
        """Sample both bridges' final ``counters`` ({side: counters})."""
        for side in self.last:
            self.sample_counters(side, counters[side])

    def report_phase(self):
        point = coverage_db[COVER_POINT]
        self.logger.info(f"{COVER_POINT}: {point.coverage} of {point.size} bins hit: " + ", ".join(
            f"{event}={hits}" for event, hits in point.detailed_coverage.items()))
        if self.path:
            coverage_db.export_to_yaml(self.path)
            self.logger.info(f"coverage written to {self.path}")
