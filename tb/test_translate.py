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
from pyuvm import ConfigDB, uvm_analysis_port, uvm_component, uvm_env, uvm_test

from tlpoe.models.tlp import Tlp
from tlpoe.models.translate import AccessTable, Function, Reason, route, to_device, to_host
from tlpoe.rtl.translate import Translator
from tlpoe.tb.agents import StreamAgent
from tlpoe.tb.bfm import StreamDriver, StreamLayout, StreamMonitor, reset, start_clock, wait_cycles
from tlpoe.tb.items import StreamItem
from tlpoe.tb.params import tb_params
from tlpoe.tb.scoreboard import AnalysisImp, Scoreboard
from tlpoe.tb.sequences import StreamSequence
from tlpoe.tb.stimulus import TRANSLATION_TABLE, translation_traffic

P = tb_params(width=64, seed=1, count=500, valid_gap=0.2, backpressure=0.3)

#: direction -> (input port, output port, the model's rule)
PATHS = {"to_device": ("net_in", "dev_out", to_device),
         "to_host": ("dev_in", "net_out", to_host)}


class TranslationScoreboard(Scoreboard):
    """Expects the model's translation of each TLP in (nothing for a denied
    one) and tallies the model's reasons."""

    def __init__(self, name, parent, rule, table=TRANSLATION_TABLE):
        super().__init__(name, parent)
        self.rule, self.table = rule, table
        self.reasons = [0] * len(Reason)

    def predict(self, item):
        translated, why = self.rule(self.table, Tlp.unpack(item.data))
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


async def write_table(dut, table, prefix=""):
    """Every window and function of ``table`` through the table ports
    (``Translator.table_writes``; ``host_rid`` and ``local_rid`` named with
    ``prefix``)."""
    for cycle in Translator.table_writes(table):
        for port, value in cycle.items():
            name = prefix + port if port in ("host_rid", "local_rid") else port
            getattr(dut, name).value = value
        await wait_cycles(dut.clk, 1)
    dut.win_we.value = dut.fn_we.value = 0


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


# --- the chassis side of two links ------------------------------------------------------

#: Link 1's table: the same windows, its own local_rid and function.
TABLE_B = AccessTable(host_rid=0x0000, local_rid=0x0011, windows=TRANSLATION_TABLE.windows,
                      functions=(Function(host_id=0x0100, device_id=0x0500),))
TABLES = (TRANSLATION_TABLE, TABLE_B)


def source_link(tlp):
    """Which link's host sent a chassis-bound TLP: its Requester ID is the
    link's ``local_rid`` (translated requests) or one of its functions
    (completions of a device's reads, passed unchanged)."""
    requester = int(tlp.requester_id)
    return next(i for i, t in enumerate(TABLES)
                if requester == t.local_rid or t.function_by_device(requester))


class Splitter(uvm_component):
    """Hands each TLP out of ``pcie_out`` to the scoreboard of the link it came from."""

    def build_phase(self):
        self.export = AnalysisImp("export", self, self.write)
        self.aps = [uvm_analysis_port(f"ap{i}", self) for i in range(len(TABLES))]

    def write(self, item):
        self.aps[source_link(Tlp.unpack(item.data))].write(item)


class RoutingScoreboard(TranslationScoreboard):
    """Link ``index``'s host-bound scoreboard: only the TLPs the model
    routes to it, judged by its table; counts what no link claims."""

    def __init__(self, name, parent, index):
        super().__init__(name, parent, to_host)
        self.index, self.unrouted = index, 0

    def predict(self, item):
        tlp = Tlp.unpack(item.data)
        where = route(TABLES, tlp)
        self.unrouted += where is None
        if where != self.index:
            return []
        translated, why = to_host(TABLES[self.index], tlp)
        self.reasons[why] += 1
        return [] if translated is None else [StreamItem("expected", translated.pack())]


class FabricEnv(uvm_env):
    def build_phase(self):
        dut = cocotb.top
        layout = StreamLayout.tlp(P["width"])

        def agent(name, port, drive):
            kw = dict(driver_bfm=StreamDriver(dut, port, dut.clk, layout,
                                              valid_gap=P["valid_gap"])) if drive else {}
            monitor = StreamMonitor(dut, port, dut.clk, layout, **(
                {} if drive else dict(drive_ready=True, backpressure=P["backpressure"])))
            return StreamAgent(name, self, monitor_bfm=monitor, **kw)

        self.net_in = [agent(f"net{i}_in", f"net{i}_in", True) for i in range(len(TABLES))]
        self.net_out = [agent(f"net{i}_out", f"net{i}_out", False) for i in range(len(TABLES))]
        self.pcie_in = agent("pcie_in", "pcie_in", True)
        self.pcie_out = agent("pcie_out", "pcie_out", False)
        self.splitter = Splitter("splitter", self)
        self.to_device = [TranslationScoreboard(f"sb_to_device{i}", self, to_device)
                          for i in range(len(TABLES))]
        for sb, table in zip(self.to_device, TABLES):
            sb.table = table            # each link judged by its own table
        self.to_host = [RoutingScoreboard(f"sb_to_host{i}", self, i) for i in range(len(TABLES))]

    def connect_phase(self):
        self.pcie_out.ap.connect(self.splitter.export)
        for i in range(len(TABLES)):
            self.net_in[i].ap.connect(self.to_device[i].expected_export)
            self.splitter.aps[i].connect(self.to_device[i].actual_export)
            self.pcie_in.ap.connect(self.to_host[i].expected_export)
            self.net_out[i].ap.connect(self.to_host[i].actual_export)


@pyuvm.test()
class FabricRandomTest(uvm_test):
    """Two links' tables in a DeviceFabric; random TLPs from both hosts and
    from the chassis, each judged by the model (translation and routing)."""

    def build_phase(self):
        self.env = FabricEnv("env", self)

    async def run_phase(self):
        self.raise_objection()
        dut = cocotb.top
        dut.win_we.value = dut.fn_we.value = dut.tbl_link.value = 0
        start_clock(dut.clk)
        await reset(dut.clk, dut.rst)
        for i, table in enumerate(TABLES):
            dut.tbl_link.value = i
            await write_table(dut, table, prefix=f"link{i}_")
        sends = [cocotb.start_soon(StreamSequence(f"net{i}", [
            t.pack() for t in translation_traffic(P["seed"] * 4 + i, P["count"], "to_device",
                                                  table)]).start(self.env.net_in[i].sequencer))
            for i, table in enumerate(TABLES)]
        chassis = [t.pack() for pair in zip(*(
            translation_traffic(P["seed"] * 4 + 2 + i, P["count"], "to_host", table)
            for i, table in enumerate(TABLES))) for t in pair]
        sends.append(cocotb.start_soon(
            StreamSequence("pcie", chassis).start(self.env.pcie_in.sequencer)))
        for send in sends:
            await send
        for sb in self.env.to_device + self.env.to_host:
            await sb.wait_drained(timeout=10_000, unit="us")
        await wait_cycles(dut.clk, 20)
        self.counters = {"unrouted": int(dut.unrouted.value)}
        for i in range(len(TABLES)):
            for name in ("to_device", "to_host"):
                self.counters[(i, name)] = (int(getattr(dut, f"link{i}_{name}_forwarded").value),
                                            int(getattr(dut, f"link{i}_{name}_denied").value))
        self.drop_objection()

    def check_phase(self):
        unrouted = self.env.to_host[0].unrouted
        self.logger.info(f"unrouted: RTL {self.counters['unrouted']}, model {unrouted}")
        assert unrouted and self.counters["unrouted"] == unrouted
        for i in range(len(TABLES)):
            for name, sb in (("to_device", self.env.to_device[i]),
                             ("to_host", self.env.to_host[i])):
                forwarded, packed = self.counters[(i, name)]
                denied = [(packed >> (32 * r)) & 0xFFFFFFFF for r in Reason]
                self.logger.info(f"link {i} {name}: forwarded {forwarded}, denied "
                                 f"{denied[1:]}, model {sb.reasons}")
                assert forwarded == sb.reasons[Reason.FORWARDED], (i, name)
                assert denied[1:] == sb.reasons[1:], (i, name, denied, sb.reasons)
