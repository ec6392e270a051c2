"""pyuvm bench of the device fabric behind its CSRs (rtl/fabric/fabric_csr.py).

The pool manager (sim/pool.py) assigns and releases GPUs across two host
links, writing each table through :class:`~tlpoe.sim.pool.CsrWriter` on the
fabric's AXI4-Lite port (cocotbext-axi's ``AxiLiteMaster``) and, in step,
into a :class:`~tlpoe.sim.pool.ModelWriter`. Then random TLPs, steered at
the tables the pool wrote, go in from both hosts and from the chassis; each
is judged by the translation model (models/translate.py,
``LinkTranslator``, in tb/fabric_env.py's ``FabricEnv``) on the model's
copy of the tables: what enters the chassis must be the model's
translation, in order, bit for bit; what reaches each host an interleaving
of the chassis' translated TLPs and the completions the bridge makes
itself (virtual BARs, Unsupported Request); nothing denied may leave. At the end every
counter read through the CSRs must equal the fabric's counter ports and
the model's reasons.
"""

import cocotb
import pyuvm
from pyuvm import uvm_test

from tlpoe.models.translate import LinkTranslator, Reason
from tlpoe.rtl.csr.regmap import load
from tlpoe.sim.pool import Bar, CsrWriter, Gpu, HostLink, ModelWriter, PoolManager, TeeWriter
from tlpoe.tb.bfm import reset, start_clock, wait_cycles
from tlpoe.tb.csr_bus import AxilCsr
from tlpoe.tb.fabric_env import FabricEnv, check_counters, read_counters
from tlpoe.tb.params import tb_params

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


@pyuvm.test()
class PoolThroughCsrTest(uvm_test):
    """The pool programs the fabric through its CSRs; traffic judged by the
    model on the pool's tables; counters through the CSRs = ports = model."""

    def build_phase(self):
        self.regmap = load("fabric", HOSTS=P["hosts"], WINDOWS=P["windows"],
                           FUNCTIONS=P["functions"])
        self.tables = []                    # the pool's, once written (run_phase)
        self.env = FabricEnv("env", self, P, self.tables, links=len(LINKS))

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
        for predictor, table in zip(self.env.predictors, self.tables):
            predictor.model = LinkTranslator(table)
        self.logger.info(f"pool: {self.csr.writes} register writes; tables {self.tables}")
        await self.env.run_traffic(P["seed"], P["count"])
        await wait_cycles(dut.clk, 20)
        self.through_csr, self.on_ports = {}, {}
        for port in ("routed", "unrouted"):
            reg, _ = self.regmap.port_field(port)
            self.through_csr[port] = await self.csr.read_register(reg)
            self.on_ports[port] = int(getattr(dut, port).value)
        for i in range(len(self.tables)):
            for name, value in read_counters(dut, prefix=f"link{i}_").items():
                if isinstance(value, list):         # denied, by Reason
                    for r in list(Reason)[1:]:
                        reg, _ = self.regmap.port_field(f"link_{name}", i, r)
                        self.through_csr[i, name, r] = await self.csr.read_register(reg)
                        self.on_ports[i, name, r] = value[r]
                else:
                    reg, _ = self.regmap.port_field(f"link_{name}", i)
                    self.through_csr[i, name] = await self.csr.read_register(reg)
                    self.on_ports[i, name] = value
        self.drop_objection()

    def check_phase(self):
        assert self.through_csr == self.on_ports, (self.through_csr, self.on_ports)
        unrouted = self.env.router.unrouted
        self.logger.info(f"unrouted: CSR {self.through_csr['unrouted']}, model {unrouted}")
        assert unrouted and self.through_csr["unrouted"] == unrouted
        for i, predictor in enumerate(self.env.predictors):
            model = predictor.model.counters
            got = {name: ([0] + [self.through_csr[i, name, r] for r in list(Reason)[1:]]
                          if isinstance(value, list) else self.through_csr[i, name])
                   for name, value in model.items()}
            check_counters(self.logger, f"link {i} through the CSRs", got, model)
            assert model["to_device_forwarded"] and model["to_host_forwarded"], (i, model)
