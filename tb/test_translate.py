"""pyuvm bench of the Translator (rtl/fabric/translate.py): both directions at once,
against the translation model (models/translate.py, ``LinkTranslator``).

The table (``tb.stimulus.TRANSLATION_TABLE``, BAR shadows included) is
written through the Translator's table ports, then random TLPs of every
type, steered at the table (its windows, its functions' BAR registers,
functions not assigned), go in on ``net_in`` (from the host) and
``dev_in`` (from the chassis) with random gaps, and out under random
backpressure. A predictor runs the model on every TLP in, in the order the
DUT takes them:

* ``dev_out`` must carry exactly the model's translations of what came in
  on ``net_in``, in order and bit for bit;
* ``net_out`` merges two streams whose interleaving depends on timing (the
  chassis' TLPs, translated, and the completions the bridge makes itself:
  BAR answers and Unsupported Requests), so its scoreboard checks that it
  is an interleaving of the model's two streams, each whole, bit for bit
  and in its own order (``InterleavedScoreboard``).

At the end every counter must equal the model's, and every rule must have
been met.
"""

import cocotb
import pyuvm
from pyuvm import ConfigDB, uvm_env, uvm_test

from tlpoe.models.translate import AccessTable, Function, Reason, VirtualBar
from tlpoe.rtl.fabric.translate import TABLE_WRITE_ENABLES, table_writes
from tlpoe.tb.bfm import StreamLayout, reset, start_clock, wait_cycles
from tlpoe.tb.fabric_env import (FabricEnv, LinkPredictor, check_counters, make_agent,
                                 read_counters)
from tlpoe.tb.params import tb_params
from tlpoe.tb.scoreboard import InterleavedScoreboard, Scoreboard
from tlpoe.tb.sequences import StreamSequence
from tlpoe.tb.stimulus import TRANSLATION_TABLE, translation_traffic

P = tb_params(width=64, seed=1, count=500, valid_gap=0.2, backpressure=0.3)

#: direction -> (input port, output port)
PATHS = {"to_device": ("net_in", "dev_out"), "to_host": ("dev_in", "net_out")}


def check_every_rule_met(counters):
    denied = counters["to_device_denied"]
    assert all(denied[r] for r in (Reason.ADDRESS, Reason.FUNCTION, Reason.REQUESTER,
                                   Reason.TYPE)), f"a to_device rule never met: {counters}"
    denied = counters["to_host_denied"]
    assert all(denied[r] for r in (Reason.FUNCTION, Reason.REQUESTER, Reason.TYPE)), \
        f"a to_host rule never met: {counters}"
    assert all(counters[k] for k in ("to_device_forwarded", "to_device_local",
                                     "to_device_unsupported", "to_host_forwarded")), counters


class TranslateEnv(uvm_env):
    def build_phase(self):
        dut = cocotb.top
        layout = StreamLayout.tlp(P["width"])
        self.inputs = {name: make_agent(self, dut, layout, f"{name}_in", source, True, P)
                       for name, (source, _) in PATHS.items()}
        self.outputs = {name: make_agent(self, dut, layout, f"{name}_out", sink, False, P)
                        for name, (_, sink) in PATHS.items()}
        self.predictor = LinkPredictor("predictor", self)
        self.sb_dev_out = Scoreboard("sb_dev_out", self)
        self.sb_net_out = InterleavedScoreboard("sb_net_out", self, sources=2)

    def connect_phase(self):
        self.inputs["to_device"].ap.connect(self.predictor.host_export)
        self.inputs["to_host"].ap.connect(self.predictor.chassis_export)
        self.predictor.dev_out_ap.connect(self.sb_dev_out.expected_export)
        self.outputs["to_device"].ap.connect(self.sb_dev_out.actual_export)
        self.predictor.to_host_ap.connect(self.sb_net_out.expected_exports[0])
        self.predictor.reply_ap.connect(self.sb_net_out.expected_exports[1])
        self.outputs["to_host"].ap.connect(self.sb_net_out.actual_export)


async def write_table(dut, table, prefix=""):
    """Every window and function (BAR shadows included) of ``table``
    through the table ports (``table_writes``; ``host_rid`` and
    ``local_rid`` named with ``prefix``)."""
    for cycle in table_writes(table):
        for port, value in cycle.items():
            name = prefix + port if port in ("host_rid", "local_rid") else port
            getattr(dut, name).value = value
        await wait_cycles(dut.clk, 1)
    for name in TABLE_WRITE_ENABLES:
        getattr(dut, name).value = 0


def clear_enables(dut):
    for name in TABLE_WRITE_ENABLES:
        getattr(dut, name).value = 0


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
        clear_enables(dut)
        await reset(dut.clk, dut.rst)
        await write_table(dut, TRANSLATION_TABLE)
        sends = []
        for k, name in enumerate(PATHS):
            tlps = [t.pack() for t in translation_traffic(P["seed"] * 2 + k, P["count"], name)]
            sends.append(cocotb.start_soon(
                StreamSequence(f"tlps_{name}", tlps).start(self.env.inputs[name].sequencer)))
        for send in sends:
            await send
        for sb in (self.env.sb_dev_out, self.env.sb_net_out):
            await sb.wait_drained(timeout=10_000, unit="us")
        await wait_cycles(dut.clk, 20)
        self.counters = read_counters(dut)
        self.drop_objection()

    def check_phase(self):
        model = self.env.predictor.model.counters
        check_counters(self.logger, "translator", self.counters, model)
        check_every_rule_met(model)


# --- the chassis side of two links ------------------------------------------------------

#: Link 1's table: the same windows, its own local_rid and function.
TABLE_B = AccessTable(host_rid=0x0000, local_rid=0x0011, windows=TRANSLATION_TABLE.windows,
                      functions=(Function.with_bars(0x0100, 0x0500, [
                          VirtualBar(0, 1 << 20, 0x8000_0000)]),))
TABLES = (TRANSLATION_TABLE, TABLE_B)


@pyuvm.test()
class FabricRandomTest(uvm_test):
    """Two links' tables in a DeviceFabric; random TLPs from both hosts and
    from the chassis, each judged by the model (translation, local
    completions and routing)."""

    def build_phase(self):
        self.env = FabricEnv("env", self, P, TABLES)

    async def run_phase(self):
        self.raise_objection()
        dut = cocotb.top
        clear_enables(dut)
        dut.tbl_link.value = 0
        start_clock(dut.clk)
        await reset(dut.clk, dut.rst)
        for i, table in enumerate(TABLES):
            dut.tbl_link.value = i
            await write_table(dut, table, prefix=f"link{i}_")
        await self.env.run_traffic(P["seed"], P["count"])
        await wait_cycles(dut.clk, 20)
        self.unrouted = int(dut.unrouted.value)
        self.counters = [read_counters(dut, prefix=f"link{i}_") for i in range(len(TABLES))]
        self.drop_objection()

    def check_phase(self):
        unrouted = self.env.router.unrouted
        self.logger.info(f"unrouted: RTL {self.unrouted}, model {unrouted}")
        assert unrouted and self.unrouted == unrouted
        for i, predictor in enumerate(self.env.predictors):
            check_counters(self.logger, f"link {i}", self.counters[i], predictor.model.counters)
