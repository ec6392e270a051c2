"""pyuvm bench of the Translator (rtl/translate.py): both directions at once,
each against the translation model (models/translate.py).

The table (``tb.stimulus.TRANSLATION_TABLE``) is written through the
Translator's table ports, then random TLPs of every type, steered at the
table, go in on ``net_in`` (to the device) and ``dev_in`` (to the host)
with random gaps, and out under random backpressure. A scoreboard per
direction expects exactly the model's translations, in order and bit for
bit; at the end the forwarded and denied counters must equal the model's
reasons, and every reason must have occurred.
"""

import cocotb
import pyuvm
from pyuvm import ConfigDB, uvm_env, uvm_test

from tlpoe.models.tlp import Tlp
from tlpoe.models.translate import Reason, to_device, to_host
from tlpoe.tb.agents import StreamAgent
from tlpoe.tb.bfm import StreamDriver, StreamLayout, StreamMonitor, reset, start_clock, wait_cycles
from tlpoe.tb.items import StreamItem
from tlpoe.tb.params import tb_params
from tlpoe.tb.scoreboard import Scoreboard
from tlpoe.tb.sequences import StreamSequence
from tlpoe.tb.stimulus import TRANSLATION_TABLE, translation_traffic

P = tb_params(width=64, seed=1, count=500, valid_gap=0.2, backpressure=0.3)

#: direction -> (input port, output port, the model's rule)
PATHS = {"to_device": ("net_in", "dev_out", to_device),
         "to_host": ("dev_in", "net_out", to_host)}


class TranslationScoreboard(Scoreboard):
    """Expects the model's translation of each TLP in (nothing for a denied
    one) and tallies the model's reasons."""

    def __init__(self, name, parent, rule):
        super().__init__(name, parent)
        self.rule = rule
        self.reasons = [0] * len(Reason)

    def predict(self, item):
        translated, why = self.rule(TRANSLATION_TABLE, Tlp.unpack(item.data))
        self.reasons[why] += 1
        return [] if translated is None else [StreamItem("expected", translated.pack())]


class TranslateEnv(uvm_env):
    def build_phase(self):
        dut = cocotb.top
        layout = StreamLayout.tlp(P["width"])
        self.inputs, self.outputs, self.scoreboards = {}, {}, {}
        for name, (source, sink, rule) in PATHS.items():
            self.inputs[name] = StreamAgent(
                f"{name}_in", self,
                driver_bfm=StreamDriver(dut, source, dut.clk, layout, valid_gap=P["valid_gap"]),
                monitor_bfm=StreamMonitor(dut, source, dut.clk, layout))
            self.outputs[name] = StreamAgent(
                f"{name}_out", self,
                monitor_bfm=StreamMonitor(dut, sink, dut.clk, layout, drive_ready=True,
                                          backpressure=P["backpressure"]))
            self.scoreboards[name] = TranslationScoreboard(f"sb_{name}", self, rule)

    def connect_phase(self):
        for name, sb in self.scoreboards.items():
            self.inputs[name].ap.connect(sb.expected_export)
            self.outputs[name].ap.connect(sb.actual_export)


async def write_table(dut, table):
    """Every window and function of ``table`` through the table ports."""
    dut.host_rid.value, dut.local_rid.value = table.host_rid, table.local_rid
    for i, w in enumerate(table.windows):
        dut.win_index.value, dut.win_valid.value = i, 1
        dut.win_host_base.value, dut.win_device_base.value = w.host_base, w.device_base
        dut.win_size_log2.value = w.size.bit_length() - 1
        dut.win_we.value = 1
        await wait_cycles(dut.clk, 1)
    dut.win_we.value = 0
    for i, f in enumerate(table.functions):
        dut.fn_index.value, dut.fn_valid.value = i, 1
        dut.fn_host_id.value, dut.fn_device_id.value = f.host_id, f.device_id
        dut.fn_we.value = 1
        await wait_cycles(dut.clk, 1)
    dut.fn_we.value = 0


@pyuvm.test()
class TranslateRandomTest(uvm_test):
    """Random TLPs both ways through the Translator, judged by the model."""

    def build_phase(self):
        ConfigDB().set(self, "env", "params", P)
        self.env = TranslateEnv("env", self)

    async def run_phase(self):
        self.raise_objection()
        dut = cocotb.top
        start_clock(dut.clk)
        dut.win_we.value = dut.fn_we.value = 0
        await reset(dut.clk, dut.rst)
        await write_table(dut, TRANSLATION_TABLE)
        sends = []
        for k, name in enumerate(PATHS):
            tlps = [t.pack() for t in translation_traffic(P["seed"] * 2 + k, P["count"], name)]
            sends.append(cocotb.start_soon(
                StreamSequence(f"tlps_{name}", tlps).start(self.env.inputs[name].sequencer)))
        for send in sends:
            await send
        for sb in self.env.scoreboards.values():
            await sb.wait_drained(timeout=10_000, unit="us")
        await wait_cycles(dut.clk, 20)
        self.counters = {
            name: (int(getattr(dut, f"{name}_forwarded").value),
                   int(getattr(dut, f"{name}_denied").value))
            for name in PATHS}
        self.drop_objection()

    def check_phase(self):
        for name, sb in self.env.scoreboards.items():
            forwarded, packed = self.counters[name]
            denied = [(packed >> (32 * r)) & 0xFFFFFFFF for r in Reason]
            self.logger.info(f"{name}: forwarded {forwarded}, denied {denied[1:]}, "
                             f"model {sb.reasons}")
            assert forwarded == sb.reasons[Reason.FORWARDED], (name, forwarded, sb.reasons)
            assert denied[1:] == sb.reasons[1:], (name, denied, sb.reasons)
            possible = set(Reason) - ({Reason.ADDRESS} if name == "to_host" else set())
            assert all(sb.reasons[r] for r in possible), f"{name}: a rule never met: {sb.reasons}"
