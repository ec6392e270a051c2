"""pyuvm testbench for :class:`tlpoe.tb.stream_fifo.StreamFifo`: random byte
strings in as TLP beats (random valid gaps), out under random backpressure,
compared in order by the scoreboard. Proves the BFMs, agents and scoreboard.

Parameters (``TLPOE_TB_PARAMS``): see ``P`` below.
"""

import cocotb
import pyuvm
from pyuvm import ConfigDB, uvm_env, uvm_test

from tlpoe.tb.agents import StreamAgent
from tlpoe.tb.bfm import (StreamDriver, StreamLayout, StreamMonitor, StreamProtocolError,
                          reset, seeded_rng, start_clock, wait_cycles)
from tlpoe.tb.params import tb_params
from tlpoe.tb.scoreboard import Scoreboard
from tlpoe.tb.sequences import StreamSequence, random_payloads

P = tb_params(width=64, count=300, min_len=4, max_len=256, valid_gap=0.3,
              backpressure=0.3, drain_timeout_us=200)


class FifoEnv(uvm_env):
    """Active agent on the FIFO's input, passive sink agent on its output."""

    def build_phase(self):
        dut = cocotb.top
        layout = StreamLayout.tlp(P["width"])
        valid_gap = self.cdb_get("valid_gap")
        backpressure = self.cdb_get("backpressure")
        self.tx = StreamAgent(
            "tx", self,
            driver_bfm=StreamDriver(dut, "i", dut.clk, layout, valid_gap=valid_gap),
            monitor_bfm=StreamMonitor(dut, "i", dut.clk, layout))
        self.rx = StreamAgent(
            "rx", self,
            monitor_bfm=StreamMonitor(dut, "o", dut.clk, layout, drive_ready=True,
                                      backpressure=backpressure))
        self.scoreboard = Scoreboard("scoreboard", self)

    def connect_phase(self):
        self.tx.ap.connect(self.scoreboard.expected_export)
        self.rx.ap.connect(self.scoreboard.actual_export)


class FifoTestBase(uvm_test):
    valid_gap = P["valid_gap"]
    backpressure = P["backpressure"]

    def build_phase(self):
        ConfigDB().set(self, "env", "valid_gap", self.valid_gap)
        ConfigDB().set(self, "env", "backpressure", self.backpressure)
        self.env = FifoEnv("env", self)

    async def run_phase(self):
        self.raise_objection()
        dut = cocotb.top
        start_clock(dut.clk)
        await reset(dut.clk, dut.rst)
        payloads = random_payloads(seeded_rng("payloads"), P["count"], P["min_len"],
                                   P["max_len"])
        self.start_cycle = self.env.rx.monitor_bfm.cycles
        await StreamSequence("seq", payloads).start(self.env.tx.sequencer)
        await self.env.scoreboard.wait_drained(timeout=P["drain_timeout_us"], unit="us")
        self.cycles = self.env.rx.monitor_bfm.cycles - self.start_cycle
        self.drop_objection()

    def report_phase(self):
        rx = self.env.rx.monitor_bfm
        self.logger.info(f"{rx.packets_seen} packets, {rx.beats_seen} beats in "
                         f"{self.cycles} cycles ({rx.stall_cycles} stalled)")


@pyuvm.test()
class StreamFifoRandomTest(FifoTestBase):
    """Random valid gaps and random backpressure."""


@pyuvm.test()
class StreamFifoBackToBackTest(FifoTestBase):
    """No gaps, no backpressure: the BFMs must reach one beat per cycle."""
    valid_gap = 0.0
    backpressure = 0.0

    def check_phase(self):
        beats = self.env.rx.monitor_bfm.beats_seen
        # FIFO latency plus a few cycles of slack, but no idle cycle per packet.
        assert self.cycles <= beats + 8, f"{beats} beats took {self.cycles} cycles"


@cocotb.test(expect_error=StreamProtocolError)
async def partial_beat_before_last_is_an_error(dut):
    """A beat with partial keep that is not last must fail the test."""
    layout = StreamLayout.tlp(P["width"])
    start_clock(dut.clk)
    driver = StreamDriver(dut, "i", dut.clk, layout)
    StreamMonitor(dut, "o", dut.clk, layout, drive_ready=True)
    await reset(dut.clk, dut.rst)
    await driver.send([{"data": 1, "keep": 0b01, "last": 0},
                       {"data": 2, "keep": 0b11, "last": 1}])
    await wait_cycles(dut.clk, 20)
