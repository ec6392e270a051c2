"""pyuvm tests of the TLP path (encapsulator -> frames -> decapsulator) on
:class:`tlpoe.tb.tops.Loopback`. One test class per stimulus; the pytest
entry points (tests/test_loopback_sim.py) pick the class and the parameters.

Every test checks, through :class:`~tlpoe.tb.loopback_env.LoopbackEnv`:
TLPs out == TLPs in (exactly once, bit exact, in order), every frame == the
frame model's encoding, and every DUT counter == what the stimulus and the
models predict (drops per reason, control frames, good frames, ingress errors).
"""

import json
from pathlib import Path

import cocotb
import pyuvm
from cocotb.triggers import SimTimeoutError, with_timeout
from pyuvm import ConfigDB, uvm_test

from tlpoe.models.frame import (DEFAULT_DST_MAC, DEFAULT_SRC_MAC, ETH_REASONS, DropReason,
                               aggregate)
from tlpoe.models import wire
from tlpoe.models.frame import body_capacity, largest_tlp
from tlpoe.models.tlp import tlp_size_from_header
from tlpoe.rtl.framing.framer import framer_latency
from tlpoe.tb import stimulus
from tlpoe.tb.bfm import reset, start_clock, wait_cycles
from tlpoe.tb.loopback_env import CHANNEL, AnalysisImp, LoopbackEnv, read_counters
from tlpoe.tb.params import tb_params
from tlpoe.tb.sequences import StreamSequence

P = tb_params(width=256, mtu=1500, seed=1, count=500, valid_gap=0.3, backpressure=0.3,
              frame_gap=0.1, frame_backpressure=0.2, inject_every=3, flush_timeout=64,
              min_beats_per_cycle=0.0, report="")


class LoopbackTest(uvm_test):
    """Base: drive ``self.tlps()`` through the bridge and check everything."""
    overrides = {}

    def build_phase(self):
        self.p = {**P, **self.overrides}
        ConfigDB().set(self, "env", "params", self.p)
        self.env = LoopbackEnv("env", self)

    def tlps(self):
        raise NotImplementedError

    async def stimulate(self, tlps):
        await StreamSequence("tlps", tlps).start(self.env.tx.sequencer)

    async def run_phase(self):
        self.raise_objection()
        dut = cocotb.top
        start_clock(dut.clk)
        dut.dst_mac.value = int.from_bytes(DEFAULT_DST_MAC, "big")
        dut.src_mac.value = int.from_bytes(DEFAULT_SRC_MAC, "big")
        dut.channel.value = CHANNEL
        dut.flush_timeout.value = self.p["flush_timeout"]
        await reset(dut.clk, dut.rst)
        cocotb.start_soon(self._heartbeat(dut))
        self.stimulus = self.tlps()
        await self.stimulate(self.stimulus)
        await self.env.scoreboard.wait_drained(timeout=50 + 3 * len(self.stimulus), unit="us")
        try:
            await with_timeout(self.env.frame_driver.wait_idle(), 20, "us")
        except SimTimeoutError:
            raise AssertionError(f"{self.env.frame_driver.pending_beats} frame beats never "
                                 "accepted by the decapsulator: frame_in is stuck") from None
        await wait_cycles(dut.clk, 64)
        self.counters = read_counters(dut)
        self.drop_objection()

    async def _heartbeat(self, dut):
        """Progress in the log, so a slow or stuck run says where it is."""
        while True:
            await wait_cycles(dut.clk, 20000)
            env = self.env
            self.logger.info(f"progress: {env.tx.monitor_bfm.packets_seen} TLPs in, "
                             f"{env.wire_out.monitor_bfm.packets_seen} frames, "
                             f"{env.rx.monitor_bfm.packets_seen} TLPs out")

    def expected_ingress_errors(self):
        oversize = length = 0
        for tlp in self.stimulus:
            size = tlp_size_from_header(tlp[:4])
            if size > largest_tlp(self.p["mtu"]):
                oversize += 1
            elif size != len(tlp):
                length += 1
        return oversize, length

    def check_phase(self):
        c, env = self.counters, self.env
        fwd = env.forwarder
        oversize, length = self.expected_ingress_errors()
        expected = {
            "drops": {r: fwd.injected[r] for r in DropReason},
            "control_frames": fwd.control,
            "good_frames": fwd.forwarded,
            "frames_sent": len(env.frame_checker.groups),
            "tlps_out": env.scoreboard.compared,
            "oversize_drops": oversize,
            "length_errors": length,
        }
        actual = {k: c[k] for k in expected}
        assert actual == expected, f"counters {actual} != expected {expected}"
        self.logger.info(f"counters as predicted: {actual}")


@pyuvm.test()
class RandomTlpTest(LoopbackTest):
    """Random TLPs of every type and size; malformed and control frames injected."""

    def tlps(self):
        return stimulus.random_tlps(self.p["seed"], self.p["count"], mtu=self.p["mtu"])

    def check_phase(self):
        super().check_phase()
        injected = self.env.forwarder.injected
        if self.p["inject_every"] and self.p["count"] >= 200:
            missing = [r.name for r in ETH_REASONS if not injected[r]]
            assert not missing, f"no frame injected for {missing}"


@pyuvm.test()
class SizeExtremesTest(LoopbackTest):
    """Smallest TLPs (12-byte MRd) between the largest one frame carries."""

    def tlps(self):
        return stimulus.size_extremes(self.p["mtu"])


@pyuvm.test()
class MtuBoundaryTest(LoopbackTest):
    """TLP area filled exactly to the MTU, and one DW over: with no gaps and a
    long flush timeout the frame boundaries equal the model's greedy split."""
    overrides = {"valid_gap": 0.0, "frame_backpressure": 0.0, "flush_timeout": 4000,
                 "inject_every": 0}

    def tlps(self):
        return stimulus.mtu_boundary(self.p["mtu"], self.p["seed"])

    def check_phase(self):
        super().check_phase()
        want = [len(g) for g in aggregate(self.stimulus, mtu=self.p["mtu"])]
        assert self.env.frame_checker.groups == want, (
            f"frame boundaries {self.env.frame_checker.groups} != model {want}")
        full = wire.HEADER_LEN + body_capacity(self.p["mtu"]) // 4 * 4 + wire.CRC_LEN
        assert full in self.env.frame_checker.frame_lengths, (
            f"no frame filled to the MTU ({full} bytes): {self.env.frame_checker.frame_lengths}")


@pyuvm.test()
class CaptureReplayTest(LoopbackTest):
    """Every TLP of every shared NetTLP capture."""

    def tlps(self):
        return stimulus.capture_tlps()


@pyuvm.test()
class IngressErrorTest(LoopbackTest):
    """Oversize TLPs are dropped and counted; TLPs whose stream length
    disagrees with their Length are cut or padded and counted."""

    def tlps(self):
        return stimulus.ingress_errors(self.p["mtu"], self.p["seed"])


@pyuvm.test()
class FlushTimeoutTest(LoopbackTest):
    """Sparse TLPs: each frame is flushed by the timeout with one TLP, and
    leaves within ``flush_timeout`` cycles plus the pipeline latency."""
    overrides = {"valid_gap": 0.0, "frame_backpressure": 0.0, "inject_every": 0}

    def tlps(self):
        return stimulus.random_tlps(self.p["seed"], 40, mtu=self.p["mtu"], max_payload=64)

    async def stimulate(self, tlps):
        gap = 3 * self.p["flush_timeout"]
        for tlp in tlps:
            await StreamSequence("one", [tlp]).start(self.env.tx.sequencer)
            await wait_cycles(cocotb.top.clk, gap)

    def check_phase(self):
        super().check_phase()
        groups = self.env.frame_checker.groups
        assert groups == [1] * len(self.stimulus), f"frames held {groups}, expected one TLP each"
        beats = -(-(40 + 4 + 4 + 64 + 16) // (self.p["width"] // 8))
        slack = 2 * beats + 8 + framer_latency(self.p["width"]) + 2     # the Framer's CRC pipeline
        for (tlp_end, _), (frame_start, _) in zip(
                [(t, None) for t in self.tlp_end_cycles], self.env.frame_checker.frame_cycles):
            latency = frame_start - tlp_end
            assert 0 < latency <= self.p["flush_timeout"] + slack, (
                f"frame left {latency} cycles after its TLP (flush_timeout "
                f"{self.p['flush_timeout']}, slack {slack})")

    async def run_phase(self):
        self.tlp_end_cycles = []
        self.env.tx.ap.connect(_cycle_recorder(self.tlp_end_cycles))
        await super().run_phase()


def _cycle_recorder(into):
    """An analysis export appending each item's last cycle to ``into``."""
    return AnalysisImp("tlp_end_cycles", None, lambda item: into.append(item.meta["last_cycle"]))


@pyuvm.test()
class ThroughputTest(LoopbackTest):
    """256-byte memory writes back to back, output always ready: measures
    ingress beats per cycle (and egress frame beats per cycle)."""
    overrides = {"valid_gap": 0.0, "backpressure": 0.0, "frame_gap": 0.0,
                 "frame_backpressure": 0.0, "inject_every": 0}

    def tlps(self):
        return stimulus.mwr_stream(self.p["count"], 256)

    async def stimulate(self, tlps):
        self.first_cycle = None
        tx = self.env.tx.monitor_bfm
        wire_out = self.env.wire_out.monitor_bfm
        start_beats, start_frame_beats = tx.beats_seen, wire_out.beats_seen
        start = tx.cycles
        await super().stimulate(tlps)
        self.in_beats = tx.beats_seen - start_beats
        self.in_cycles = tx.cycles - start
        await self.env.scoreboard.wait_drained(timeout=50 + 3 * len(tlps), unit="us")
        self.out_beats = wire_out.beats_seen - start_frame_beats

    def check_phase(self):
        super().check_phase()
        rate = self.in_beats / self.in_cycles
        frames = len(self.env.frame_checker.groups)
        result = {"width": self.p["width"], "mtu": self.p["mtu"], "tlps": len(self.stimulus),
                  "tlp_bytes": 16 + 256, "ingress_beats": self.in_beats,
                  "cycles": self.in_cycles, "ingress_beats_per_cycle": round(rate, 4),
                  "frames": frames, "egress_beats": self.out_beats,
                  "egress_beats_per_cycle": round(self.out_beats / self.in_cycles, 4)}
        self.logger.info(f"throughput: {result}")
        if self.p["report"]:
            Path(self.p["report"]).write_text(json.dumps(result, indent=2) + "\n")
        assert rate >= self.p["min_beats_per_cycle"], (
            f"{rate:.4f} ingress beats per cycle, below {self.p['min_beats_per_cycle']}")
