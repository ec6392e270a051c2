"""pyuvm bench of the device fabric behind its CSRs (rtl/fabric_csr.py).

The pool manager (sim/pool.py) assigns and releases GPUs across two host
links, writing each table through :class:`~tlpoe.sim.pool.CsrWriter` on the
fabric's AXI4-Lite port (cocotbext-axi's ``AxiLiteMaster``) and, in step,
into a :class:`~tlpoe.sim.pool.ModelWriter`. Then random TLPs, steered at
the tables the pool wrote, go in from both hosts and from the chassis; each
is judged by the translation model (models/translate.py) on the model's
copy of the tables: what leaves each side must be the model's translation,
in order, bit for bit, and nothing denied may leave. At the end every
counter read through the CSRs must equal the fabric's counter ports and
the model's reasons.
"""

import cocotb
import pyuvm
from pyuvm import uvm_analysis_port, uvm_component, uvm_env, uvm_test

from tlpoe.models.tlp import Tlp
from tlpoe.models.translate import Reason, route, to_device, to_host
from tlpoe.rtl.csr.regmap import load
from tlpoe.sim.pool import Bar, CsrWriter, Gpu, HostLink, ModelWriter, PoolManager, TeeWriter
from tlpoe.tb.agents import StreamAgent
from tlpoe.tb.bfm import StreamDriver, StreamLayout, StreamMonitor, reset, start_clock, wait_cycles
from tlpoe.tb.csr_bus import AxilCsr
from tlpoe.tb.items import StreamItem
from tlpoe.tb.params import tb_params
from tlpoe.tb.scoreboard import AnalysisImp, Scoreboard
from tlpoe.tb.sequences import StreamSequence
from tlpoe.tb.stimulus import translation_traffic

P = tb_params(width=64, seed=1, count=200, valid_gap=0.2, backpressure=0.3, hosts=2,
              windows=3, functions=2)

#: Two host links; each table ends with one window below 4 GiB and one above.
LINKS = (
    HostLink("h0", 0, host_rid=0x0000, local_rid=0x0010, aperture=(0x8000_0000, 1 << 28),
             aperture64=(0x40_0000_0000, 1 << 32), host_bus=1, windows=3, functions=2),
    HostLink("h1", 1, host_rid=0x0008, local_rid=0x0011, aperture=(0x9000_0000, 1 << 28),
             aperture64=(0x50_0000_0000, 1 << 32), host_bus=2, windows=3, functions=2),
)
GPUS = (
    Gpu("g0", 0x0300, (Bar(0, 0xC000_0000, 1 << 24), Bar(2, 0x380_0000_0000, 1 << 28))),
    Gpu("g1", 0x0400, (Bar(0, 0xC100_0000, 1 << 24), Bar(2, 0x390_0000_0000, 1 << 28))),
    Gpu("g2", 0x0500, (Bar(0, 0xC200_0000, 1 << 20),)),
)


def run_pool(pool):
    """Assignments and a release: link 1 ends with a cleared window and
    function slot (g2's) before the entries in use."""
    pool.assign("g2", "h1")
    pool.assign("g0", "h0")
    pool.assign("g1", "h1")
    pool.release("g2")


class LinkScoreboard(Scoreboard):
    """The model's translation (``rule`` on link ``index``'s table in
    ``tables``, filled once the pool has written them) of each TLP in;
    tallies reasons."""

    def __init__(self, name, parent, rule, tables, index):
        super().__init__(name, parent)
        self.rule, self.tables, self.index = rule, tables, index
        self.reasons = [0] * len(Reason)

    def predict(self, item):
        translated, why = self.rule(self.tables[self.index], Tlp.unpack(item.data))
        self.reasons[why] += 1
        return [] if translated is None else [StreamItem("expected", translated.pack())]


class RoutedScoreboard(LinkScoreboard):
    """Link ``index``'s host-bound side: the TLPs the model routes to it."""

    def __init__(self, name, parent, tables, index):
        super().__init__(name, parent, to_host, tables, index)
        self.unrouted = 0

    def predict(self, item):
        where = route(self.tables, Tlp.unpack(item.data))
        self.unrouted += where is None
        return super().predict(item) if where == self.index else []


class Splitter(uvm_component):
    """Each TLP out of ``pcie_out`` to the scoreboard of the link it came from."""

    def __init__(self, name, parent, tables):
        super().__init__(name, parent)
        self.tables = tables

    def build_phase(self):
        self.export = AnalysisImp("export", self, self.write)
        self.aps = [uvm_analysis_port(f"ap{i}", self) for i in range(len(LINKS))]

    def write(self, item):
        requester = int(Tlp.unpack(item.data).requester_id)
        link = next(i for i, t in enumerate(self.tables)
                    if requester == t.local_rid or t.function_by_device(requester))
        self.aps[link].write(item)


class CsrFabricEnv(uvm_env):
    def __init__(self, name, parent, tables, hosts):
        super().__init__(name, parent)
        self.tables, self.hosts = tables, hosts

    def build_phase(self):
        dut = cocotb.top
        layout = StreamLayout.tlp(P["width"])

        def agent(name, drive):
            kw = dict(driver_bfm=StreamDriver(dut, name, dut.clk, layout,
                                              valid_gap=P["valid_gap"])) if drive else {}
            monitor = StreamMonitor(dut, name, dut.clk, layout, **(
                {} if drive else dict(drive_ready=True, backpressure=P["backpressure"])))
            return StreamAgent(name, self, monitor_bfm=monitor, **kw)

        n = self.hosts
        self.net_in = [agent(f"net{i}_in", True) for i in range(n)]
        self.net_out = [agent(f"net{i}_out", False) for i in range(n)]
        self.pcie_in = agent("pcie_in", True)
        self.pcie_out = agent("pcie_out", False)
        self.splitter = Splitter("splitter", self, self.tables)
        self.to_device = [LinkScoreboard(f"sb_to_device{i}", self, to_device, self.tables, i)
                          for i in range(n)]
        self.to_host = [RoutedScoreboard(f"sb_to_host{i}", self, self.tables, i)
                        for i in range(n)]

    def connect_phase(self):
        self.pcie_out.ap.connect(self.splitter.export)
        for i in range(self.hosts):
            self.net_in[i].ap.connect(self.to_device[i].expected_export)
            self.splitter.aps[i].connect(self.to_device[i].actual_export)
            self.pcie_in.ap.connect(self.to_host[i].expected_export)
            self.net_out[i].ap.connect(self.to_host[i].actual_export)


@pyuvm.test()
class PoolThroughCsrTest(uvm_test):
    """The pool programs the fabric through its CSRs; traffic judged by the
    model on the pool's tables; counters through the CSRs = ports = model."""

    def build_phase(self):
        self.regmap = load("fabric", HOSTS=P["hosts"], WINDOWS=P["windows"],
                           FUNCTIONS=P["functions"])
        self.tables = []                    # the pool's, once written (run_phase)
        self.env = CsrFabricEnv("env", self, self.tables, len(LINKS))

    async def run_phase(self):
        self.raise_objection()
        dut = cocotb.top
        start_clock(dut.clk)
        self.csr = AxilCsr(dut, "csr", dut.clk, dut.rst)
        await reset(dut.clk, dut.rst)
        info = self.regmap["INFO"]
        assert info.decode(await self.csr.read(info.address)) == {
            "hosts": P["hosts"], "windows": P["windows"], "functions": P["functions"]}
        model = ModelWriter()
        run_pool(PoolManager(GPUS, LINKS, TeeWriter(model, CsrWriter(self.csr, self.regmap))))
        await self.csr.flush()
        self.tables.extend(model.table(link) for link in LINKS)
        self.logger.info(f"pool: {self.csr.writes} register writes; tables {self.tables}")
        sends = [cocotb.start_soon(StreamSequence(f"net{i}", [
            t.pack() for t in translation_traffic(P["seed"] * 4 + i, P["count"], "to_device",
                                                  table)]).start(self.env.net_in[i].sequencer))
            for i, table in enumerate(self.tables)]
        chassis = [t.pack() for pair in zip(*(
            translation_traffic(P["seed"] * 4 + 2 + i, P["count"], "to_host", table)
            for i, table in enumerate(self.tables))) for t in pair]
        sends.append(cocotb.start_soon(
            StreamSequence("pcie", chassis).start(self.env.pcie_in.sequencer)))
        for send in sends:
            await send
        for sb in self.env.to_device + self.env.to_host:
            await sb.wait_drained(timeout=10_000, unit="us")
        await wait_cycles(dut.clk, 20)
        self.through_csr, self.on_ports = {}, {}
        for port in ("routed", "unrouted"):
            reg, _ = self.regmap.port_field(port)
            self.through_csr[port] = await self.csr.read_register(reg)
            self.on_ports[port] = int(getattr(dut, port).value)
        for i in range(len(self.tables)):
            for side in ("to_device", "to_host"):
                reg, _ = self.regmap.port_field(f"link_{side}_forwarded", i)
                self.through_csr[i, side, 0] = await self.csr.read_register(reg)
                self.on_ports[i, side, 0] = int(getattr(dut, f"link{i}_{side}_forwarded").value)
                packed = int(getattr(dut, f"link{i}_{side}_denied").value)
                for r in list(Reason)[1:]:
                    reg, _ = self.regmap.port_field(f"link_{side}_denied", i, r)
                    self.through_csr[i, side, r] = await self.csr.read_register(reg)
                    self.on_ports[i, side, r] = (packed >> 32 * r) & 0xFFFF_FFFF
        self.drop_objection()

    def check_phase(self):
        assert self.through_csr == self.on_ports, (self.through_csr, self.on_ports)
        unrouted = self.env.to_host[0].unrouted
        self.logger.info(f"unrouted: CSR {self.through_csr['unrouted']}, model {unrouted}")
        assert unrouted and self.through_csr["unrouted"] == unrouted
        for i in range(len(self.tables)):
            for side, sb in (("to_device", self.env.to_device[i]),
                             ("to_host", self.env.to_host[i])):
                got = [self.through_csr[i, side, r] for r in Reason]
                self.logger.info(f"link {i} {side}: CSR {got}, model {sb.reasons}")
                assert got[0] == sb.reasons[Reason.FORWARDED], (i, side)
                assert got[1:] == sb.reasons[1:], (i, side, got, sb.reasons)
                assert sb.reasons[Reason.FORWARDED], (i, side, "nothing forwarded")
