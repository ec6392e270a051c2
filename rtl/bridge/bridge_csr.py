"""One bridge with its configuration and counters behind CSRs (``rtl/csr/bridge.rdl``)."""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, connect, flipped

from ..compose import forward
from ..csr import AxiLiteSignature, CsrBlock, load
from .bridge import Bridge
from .registers import MACS, RDL_PARAMETERS, bind

__all__ = ["BridgeCsr", "bridge_regmap"]


def bridge_regmap(bridge):
    """``bridge.rdl`` compiled with ``bridge``'s parameters as reset values."""
    return load("bridge", **{f"{name.upper()}_INIT": bridge.parameters[name]
                             for name in RDL_PARAMETERS})


class BridgeCsr(wiring.Component):
    """A :class:`~tlpoe.rtl.bridge.bridge.Bridge` (``width`` and ``bridge_kw`` as
    its) whose ``cfg`` and MAC addresses come from the register block of
    ``bridge.rdl`` on the AXI4-Lite port ``csr``, reset to the bridge's
    parameters, and whose ``stats`` are readable there. The bridge's
    streams, ``stats`` and interrupts are ports here by the same names."""

    #: The bridge's inputs the registers drive.
    BEHIND = ("cfg",) + tuple(f.name for f in MACS)

    def __init__(self, width=256, **bridge_kw):
        self.bridge = Bridge(width, **bridge_kw)
        self.regs = CsrBlock(bridge_regmap(self.bridge))
        members = {name: member for name, member in self.bridge.signature.members.items()
                   if name not in self.BEHIND}
        super().__init__({"csr": In(AxiLiteSignature(self.regs.regmap.addr_width)), **members})

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = self.bridge
        m.submodules.regs = regs = self.regs
        connect(m, flipped(self.csr), regs.bus)
        bind(m, regs, bridge)
        forward(m, self, bridge, skip=self.BEHIND)
        return m
