"""One bridge with its configuration and counters behind CSRs (``rtl/csr/bridge.rdl``)."""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from ..compose import exposed_members, forward
from ..csr import AxiLiteSignature, CsrBlock, bind, driven, load
from .bridge import Bridge

__all__ = ["BridgeCsr", "bridge_regmap"]

#: RDL parameters (reset values) taken from the Bridge's inputs' initial values.
INIT_PARAMETERS = ("flush_timeout", "replay_timeout", "nak_timeout", "ack_delay",
                   "credit_delay", "credit_refresh")


def bridge_regmap(bridge):
    """``bridge.rdl`` compiled with ``bridge``'s parameters as reset values."""
    members = bridge.signature.members
    return load("bridge", **{f"{name.upper()}_INIT": members[name].init
                             for name in INIT_PARAMETERS})


class BridgeCsr(wiring.Component):
    """A :class:`~tlpoe.rtl.bridge.bridge.Bridge` (``width`` and ``bridge_kw`` as
    its) whose run-time inputs (MACs, channel, timeouts, delays, the
    ``CONTROL`` switches, ``order_irq_clear``) come from the register block
    of ``bridge.rdl`` on the AXI4-Lite port ``csr``, reset to the bridge's
    parameters; every counter and status output is readable there. The
    bridge's streams and outputs are ports here by the same names."""

    def __init__(self, width=256, **bridge_kw):
        self.bridge = Bridge(width, **bridge_kw)
        self.regs = CsrBlock(bridge_regmap(self.bridge))
        self.behind = driven(self.regs, self.bridge)
        members = {name: member for name, member in exposed_members(self.bridge).items()
                   if name not in self.behind}
        super().__init__({"csr": In(AxiLiteSignature(self.regs.regmap.addr_width)), **members})

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = self.bridge
        m.submodules.regs = regs = self.regs
        wiring.connect(m, wiring.flipped(self.csr), regs.bus)
        bind(m, regs, bridge)
        forward(m, self, bridge, skip=self.behind)
        return m
