"""The device fabric with its tables behind CSRs (``rtl/csr/fabric.rdl``)."""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from ..compose import exposed_members, forward
from ..csr import AxiLiteSignature, CsrBlock, bind, driven, load
from .translate import DeviceFabric

__all__ = ["FabricCsr"]


class FabricCsr(wiring.Component):
    """A :class:`~tlpoe.rtl.fabric.translate.DeviceFabric` (same parameters) whose
    table ports (``tbl_link``, ``win_*``, ``fn_*``) and per-link IDs
    (``link{i}_host_rid``, ``link{i}_local_rid``) are driven by the
    register block of ``fabric.rdl`` on the AXI4-Lite port ``csr``; its
    counters are readable there too. Every other port of the fabric is a
    port here, by the same name (the counters stay visible to a testbench).

    A commit (``win.COMMIT``, ``fn.COMMIT``) whose ``TBL_LINK`` or slot
    ``index`` the fabric does not have writes nothing (the fabric's own
    ports are narrower: the value would alias another link's table).
    """

    def __init__(self, width, *, hosts=2, windows=4, functions=4):
        self.fabric = DeviceFabric(width, hosts=hosts, windows=windows, functions=functions)
        self.hosts, self.windows, self.functions = hosts, windows, functions
        self.regs = CsrBlock(load("fabric", HOSTS=hosts, WINDOWS=windows, FUNCTIONS=functions))
        self.behind = driven(self.regs, self.fabric)
        members = {name: member for name, member in exposed_members(self.fabric).items()
                   if name not in self.behind}
        super().__init__({"csr": In(AxiLiteSignature(self.regs.regmap.addr_width)), **members})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fabric = fabric = self.fabric
        m.submodules.regs = regs = self.regs
        wiring.connect(m, wiring.flipped(self.csr), regs.bus)
        link_ok = regs.tbl_link < self.hosts
        sizes = {"win": self.windows, "fn": self.functions}
        guards = {}
        for port in regs.regmap.ports.values():
            if port.kind == "strobe":
                table = port.name.partition("_")[0]
                guard = link_ok
                if table in sizes:
                    guard = guard & (getattr(regs, f"{table}_index") < sizes[table])
                guards[port.name] = guard
        bind(m, regs, fabric, guards=guards)
        forward(m, self, fabric, skip=self.behind | {"csr"})
        return m
