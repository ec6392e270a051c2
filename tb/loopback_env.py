"""pyuvm environment for :class:`tlpoe.tb.tops.Loopback`: the TLP path of
one bridge, its frames carried back to its own receiver by the testbench.

    tlp agent (active) --> [encapsulator] --> frame agent (passive, backpressure)
                                                   |  FrameChecker: bit-exact vs frame model
                                                   v
                                            FrameForwarder (+ malformed / control frames)
                                                   |
    tlp_out agent (passive) <-- [decapsulator] <---+  frame_in driver
           |
    Scoreboard: every TLP exactly once, bit exact, in order (predicted from the ingress)

Only :mod:`tlpoe.tb.bfm` touches signals; everything here is transactions.
"""

import collections
import random

import cocotb
from pyuvm import uvm_component, uvm_env

from ..models import wire
from ..models.frame import ETH_REASONS, DropReason, encode_frame
from ..models.tlp import payload_size_from_header
from .agents import StreamAgent
from .bfm import StreamDriver, StreamLayout, StreamMonitor
from .capture import loopback_capture
from .faults import control_frame, malformed_frame, model_verdict
from .items import StreamItem
from .scoreboard import AnalysisImp, Scoreboard, hex_diff
from .stimulus import expected_after_ingress

__all__ = ["AnalysisImp", "LoopbackEnv", "FrameChecker", "FrameForwarder", "TlpScoreboard", "read_counters"]

CHANNEL = 0x00A5


class TlpScoreboard(Scoreboard):
    """TLPs out of the decapsulator against TLPs into the encapsulator.

    ``latencies`` holds, per matched TLP, the cycles from its first beat
    accepted at the ingress to its last beat leaving the egress (both
    monitors count the same clock from the start of the test).
    ``first_cycle`` is the first ingress beat of the matched TLPs,
    ``first_out_cycle`` / ``last_cycle`` the egress cycle of the first and
    last; ``payload_after_first`` the data payload bytes of all matched TLPs
    but the first out (the steady-state goodput's numerator)."""

    def __init__(self, name, parent, mtu):
        super().__init__(name, parent)
        self.mtu = mtu
        self.latencies = []
        self.bytes_matched = 0
        self.payload_matched = 0       # data payload bytes of the matched TLPs
        self.payload_after_first = 0
        self.first_cycle = self.first_out_cycle = self.last_cycle = None

    def predict(self, item):
        tlp = expected_after_ingress(item.data, self.mtu)
        return [] if tlp is None else [StreamItem("expected", tlp, **item.meta)]

    def compare_items(self, expected, actual):
        problem = super().compare_items(expected, actual)
        if problem is None:
            payload = payload_size_from_header(actual.data[:4])
            self.bytes_matched += len(actual.data)
            self.payload_matched += payload
            start, end = expected.meta.get("first_cycle"), actual.meta.get("last_cycle")
            if start is not None and end is not None:
                self.latencies.append(end - start)
                if self.first_out_cycle is None:
                    self.first_cycle, self.first_out_cycle, self.last_cycle = start, end, end
                else:
                    self.payload_after_first += payload
                    self.first_cycle = min(start, self.first_cycle)
                    self.last_cycle = max(end, self.last_cycle)
        return problem


class FrameChecker(uvm_component):
    """Every frame the encapsulator sends equals the frame model's encoding of
    the next ``tlp_count`` TLPs it accepted, with ``seq`` = frame number, bit for
    bit; no frame exceeds the MTU; frames account for every TLP exactly once.
    ``groups`` records each frame's TLP count for boundary checks."""

    def __init__(self, name, parent, mtu):
        super().__init__(name, parent)
        self.mtu = mtu
        self.tlp_export = AnalysisImp("tlp_export", self, self.write_tlp)
        self.frame_export = AnalysisImp("frame_export", self, self.write_frame)
        self.pending = collections.deque()
        self.groups = []
        self.frame_lengths = []
        self.errors = []
        self.frame_cycles = []         # (first_cycle, last_cycle) of each frame

    def write_tlp(self, item):
        tlp = expected_after_ingress(item.data, self.mtu)
        if tlp is not None:
            self.pending.append((tlp, item.meta.get("last_cycle")))

    def write_frame(self, item):
        frame = item.data
        index = len(self.groups)
        count = wire.BRIDGE_HEADER["tlp_count"].get(frame, wire.ETH_LEN) if len(frame) >= 40 else 0
        if not 1 <= count <= len(self.pending):
            self._error(f"frame {index} claims {count} TLPs, {len(self.pending)} are pending")
            return
        tlps = [self.pending.popleft()[0] for _ in range(count)]
        expected = encode_frame(tlps, seq=index % (1 << 32), channel=CHANNEL)
        diff = hex_diff(expected, frame)
        if diff:
            self._error(f"frame {index} ({count} TLPs) differs from the frame model:\n{diff}")
        if len(frame) > wire.ETH_LEN + self.mtu:
            self._error(f"frame {index} is {len(frame)} bytes, over the MTU {self.mtu}")
        self.groups.append(count)
        self.frame_lengths.append(len(frame))
        self.frame_cycles.append((item.meta.get("first_cycle"), item.meta.get("last_cycle")))

    def _error(self, message):
        self.errors.append(message)
        if len(self.errors) <= 5:
            self.logger.error(message)

    def check_phase(self):
        problems = list(self.errors)
        if self.pending:
            problems.append(f"{len(self.pending)} accepted TLP(s) never left in a frame")
        if not self.groups:
            problems.append("no frame was checked")
        if problems:
            raise AssertionError("FrameChecker: " + "; ".join(problems[:5]))
        self.logger.info(f"{len(self.groups)} frames equal the frame model bit for bit")


class FrameForwarder(uvm_component):
    """Carries each frame from ``frame_out`` to ``frame_in``, in order. Before a
    frame it may inject a malformed frame (reasons in turn, each built from the
    frame and confirmed by the frame model) or a control frame, so that every
    injected frame is followed by a good one. Counts what it expects the
    receiver to count."""

    def __init__(self, name, parent, driver, mtu, inject_every, seed):
        super().__init__(name, parent)
        self.driver = driver
        self.mtu = mtu
        self.inject_every = inject_every
        self.rng = random.Random(f"{seed}:faults")
        self.frame_export = AnalysisImp("frame_export", self, self.write)
        self.forwarded = 0
        self.injected = collections.Counter()
        self.control = 0
        self._reasons = list(ETH_REASONS)       # the Loopback's transport is eth

    def write(self, item):
        if self.inject_every and self.forwarded % self.inject_every == self.inject_every - 1:
            self._inject(item.data)
        self.driver.send_nowait(item.data)
        self.forwarded += 1

    def _inject(self, good):
        turn = sum(self.injected.values()) + self.control
        if turn % (len(self._reasons) + 1) == len(self._reasons):
            self.driver.send_nowait(control_frame(self.rng, seq=turn))
            self.control += 1
            return
        reason = self._reasons[turn % (len(self._reasons) + 1)]
        frame = malformed_frame(reason, good, self.rng, mtu=self.mtu)
        assert model_verdict(frame, self.mtu) is reason
        self.driver.send_nowait(frame)
        self.injected[reason] += 1


def read_counters(dut):
    """The DUT's counters as a dict (``drops`` as {DropReason: count})."""
    drops = int(dut.drops.value)
    return {
        "drops": {r: (drops >> (32 * r)) & 0xFFFFFFFF for r in DropReason},
        **{name: int(getattr(dut, name).value) for name in (
            "frames_sent", "oversize_drops", "length_errors", "good_frames",
            "control_frames", "tlps_out")},
    }


class LoopbackEnv(uvm_env):
    """Agents, checker, forwarder and scoreboard around the Loopback DUT.

    Configuration (ConfigDB, key under this env): ``params`` dict with
    ``width``, ``mtu``, ``valid_gap``, ``backpressure``, ``frame_gap``,
    ``frame_backpressure``, ``inject_every`` (0: no injection), ``seed``.
    """

    def build_phase(self):
        p = self.cdb_get("params")
        dut = cocotb.top
        tlp, frame = StreamLayout.tlp(p["width"]), StreamLayout.frame(p["width"])
        self.tx = StreamAgent(
            "tx", self,
            driver_bfm=StreamDriver(dut, "tlp_in", dut.clk, tlp, valid_gap=p["valid_gap"]),
            monitor_bfm=StreamMonitor(dut, "tlp_in", dut.clk, tlp))
        self.wire_out = StreamAgent(
            "wire_out", self,
            monitor_bfm=StreamMonitor(dut, "frame_out", dut.clk, frame, drive_ready=True,
                                      backpressure=p["frame_backpressure"]))
        self.frame_driver = StreamDriver(dut, "frame_in", dut.clk, frame, valid_gap=p["frame_gap"])
        self.rx = StreamAgent(
            "rx", self,
            monitor_bfm=StreamMonitor(dut, "tlp_out", dut.clk, tlp, drive_ready=True,
                                      backpressure=p["backpressure"]))
        self.frame_checker = FrameChecker("frame_checker", self, p["mtu"])
        self.forwarder = FrameForwarder("forwarder", self, self.frame_driver, p["mtu"],
                                        p["inject_every"], p["seed"])
        self.scoreboard = TlpScoreboard("scoreboard", self, p["mtu"])
        self.pcap = loopback_capture(self, frame)  # PCAP=1: tb/capture.py

    def connect_phase(self):
        self.tx.ap.connect(self.scoreboard.expected_export)
        self.tx.ap.connect(self.frame_checker.tlp_export)
        self.wire_out.ap.connect(self.frame_checker.frame_export)
        self.wire_out.ap.connect(self.forwarder.frame_export)
        self.rx.ap.connect(self.scoreboard.actual_export)
