"""Functional coverage of the link's replay causes and events (cocotb-coverage).

One cover point, :data:`COVER_POINT`, with one bin per :data:`EVENTS` entry,
hit once per occurrence, both bridges together. :class:`LinkCoverage` samples
it from counter deltas: it reads a bridge's counters whenever the bridge
sends a frame, and once more at the end of the run, never per cycle. The
counters are the RTL's; where the bench runs the bridges' cycle twins
(tb/bridge_twin.py) each of them equals the model's in every cycle, so the
bins are the model's events as well.
"""

from cocotb_coverage.coverage import CoverPoint, coverage_db
from pyuvm import uvm_component

from .bridge_ports import BridgePorts
from .scoreboard import AnalysisImp

__all__ = ["COVER_POINT", "EVENTS", "COUNTER_EVENTS", "LinkCoverage"]

COVER_POINT = "tlpoe.link.event"

#: The bins: event name -> what hits it.
EVENTS = {
    "nak_replay": "a sender rewinds on a NAK (replays_nak advances)",
    "timeout_replay": "a replay timer expires (replays_timeout advances)",
    "nak_repeated": "a NAK timer sends a gap's NAK again (naks_repeated advances)",
    "duplicate": "a receiver discards a DATA frame behind the expected one (duplicates "
                 "advances)",
    "out_of_order": "a receiver discards or holds a DATA frame ahead of the expected one "
                    "(out_of_order or, in selective repeat, out_of_order_buffered advances)",
    "seq_wrap": "a receiver's expected sequence number passes 0 again (frames_accepted "
                "passes a multiple of the sequence modulus)",
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
    "duplicates": "duplicate",
    "out_of_order": "out_of_order",
    "out_of_order_buffered": "out_of_order",   # selective repeat's (0 in go-back-N)
}


@CoverPoint(COVER_POINT, bins=list(EVENTS))
def _cover(event):
    """One occurrence of ``event``."""


class LinkCoverage(uvm_component):
    """Samples :data:`COVER_POINT`.

    * ``frame_exports[side]``: the frames bridge ``side`` sends; each one
      reads that bridge's :data:`COUNTER_EVENTS` counters,
      ``frames_accepted`` and ``window_full_cycles``, and samples what
      advanced since the last read.
    * :meth:`settle`: the counters at the end of the run, sampled the same way
      (a counter missing there, ``out_of_order_buffered`` in go-back-N, is 0).

    ``modulus``: the sequence numbers' (``2**seq_bits``). ``report_phase``
    logs the bins and, when ``path`` is not empty, writes the coverage
    database there as YAML (``export_to_yaml``; a relative path is relative
    to the simulator's run directory).
    """

    def __init__(self, name, parent, dut, modulus, path):
        super().__init__(name, parent)
        self.dut = dut
        self.modulus = modulus
        self.path = path
        self.frame_exports = {
            side: AnalysisImp(f"frame_export_{side}", self,
                              lambda item, side=side: self.sample_counters(side, self.read(side)))
            for side in ("a", "b")}
        names = [*COUNTER_EVENTS, "frames_accepted", "window_full_cycles"]
        self.last = {side: dict.fromkeys(names, 0) for side in ("a", "b")}
        self.ports = {side: BridgePorts(dut, side) for side in ("a", "b")}

    def read(self, side):
        stats = self.ports[side].stats()
        return {name: stats[name] for name in self.last[side]}

    def sample_counters(self, side, counters):
        """Sample what advanced in bridge ``side``'s ``counters`` since the last call."""
        last = self.last[side]
        for name, event in COUNTER_EVENTS.items():
            for _ in range(counters.get(name, 0) - last[name]):
                _cover(event)
        for _ in range(counters["frames_accepted"] // self.modulus
                       - last["frames_accepted"] // self.modulus):
            _cover("seq_wrap")
        if counters["window_full_cycles"] != last["window_full_cycles"]:
            _cover("window_full")
        self.last[side] = {name: counters.get(name, 0) for name in last}

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
