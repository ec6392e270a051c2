"""The disaggregated system's RTL under one top, for the end-to-end testbench.

    host i --tlp--> [host bridge h{i}] --frames--> network --> [device bridge d{i}]
                                                                     | tlp
                                                               [DeviceFabric] --pcie--> PCIe switch

:class:`DisaggregatedTop` holds, per host link *i*, the host-side bridge
``h{i}`` and the device-side bridge ``d{i}``, and one
:class:`~tlpoe.rtl.fabric.translate.DeviceFabric` joining the device-side bridges
to the GPU chassis' PCIe switch. Inside the top, each device-side bridge's
TLP side is wired to its link of the fabric; everything else is a port,
renamed with its owner's prefix (``h0_tlp_in``, ``d0_frame_out``,
``fabric_pcie_out``, ``fabric_win_we``, ...), for the testbench: the host
models drive ``h{i}_tlp_in`` and take ``h{i}_tlp_out``, the network models
carry frames between ``h{i}_frame_*`` and ``d{i}_frame_*``, and the PCIe
switch model sits on ``fabric_pcie_*``.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import connect

from ..compose import exposed_members, forward
from ..fabric.fabric_csr import FabricCsr
from ..fabric.translate import DeviceFabric
from .bridge import Bridge
from .bridge_csr import BridgeCsr

__all__ = ["DisaggregatedTop"]


class DisaggregatedTop(wiring.Component):
    """``hosts`` links, each two :class:`Bridge` s (``bridge_kw``), and the
    :class:`DeviceFabric` (``windows``, ``functions`` per link).

    ``fabric_csr``: the fabric's tables and IDs behind its CSRs
    (:class:`~tlpoe.rtl.fabric.fabric_csr.FabricCsr`, AXI4-Lite port ``fabric_csr``)
    instead of the ``fabric_tbl_link`` / ``fabric_win_*`` / ``fabric_fn_*`` /
    ``fabric_link{i}_*_rid`` ports; ``bridge_csr``: each bridge's run-time
    inputs behind its CSRs (:class:`~tlpoe.rtl.bridge.bridge_csr.BridgeCsr`, ports
    ``h{i}_csr`` and ``d{i}_csr``)."""

    def __init__(self, width=64, *, hosts=2, windows=4, functions=4, fabric_csr=False,
                 bridge_csr=False, **bridge_kw):
        self.width, self.hosts = width, hosts
        fabric = FabricCsr if fabric_csr else DeviceFabric
        bridge = BridgeCsr if bridge_csr else Bridge
        self.fabric = fabric(width, hosts=hosts, windows=windows, functions=functions)
        self.host_bridges = [bridge(width, **bridge_kw) for _ in range(hosts)]
        self.device_bridges = [bridge(width, **bridge_kw) for _ in range(hosts)]
        members = {}
        for prefix, component in self._parts():
            members.update(exposed_members(component, self._names(prefix, component)))
        for i in range(hosts):              # wired inside: device bridge <-> fabric link i
            for name in (f"d{i}_tlp_in", f"d{i}_tlp_out", f"fabric_net{i}_in",
                         f"fabric_net{i}_out"):
                del members[name]
        super().__init__(members)

    def _parts(self):
        yield "fabric", self.fabric
        for i in range(self.hosts):
            yield f"h{i}", self.host_bridges[i]
            yield f"d{i}", self.device_bridges[i]

    @staticmethod
    def _names(prefix, component):
        return {name: f"{prefix}_{name}" for name in component.signature.members}

    def elaborate(self, platform):
        m = Module()
        for prefix, component in self._parts():
            m.submodules[prefix] = component
        for i, bridge in enumerate(self.device_bridges):
            connect(m, bridge.tlp_out, getattr(self.fabric, f"net{i}_in"))
            connect(m, getattr(self.fabric, f"net{i}_out"), bridge.tlp_in)
        internal = {f"net{i}_{d}" for i in range(self.hosts) for d in ("in", "out")}
        forward(m, self, self.fabric, {name: f"fabric_{name}"
                                       for name in self.fabric.signature.members
                                       if name not in internal}, skip=internal)
        for i in range(self.hosts):
            forward(m, self, self.host_bridges[i], self._names(f"h{i}", self.host_bridges[i]))
            forward(m, self, self.device_bridges[i],
                    self._names(f"d{i}", self.device_bridges[i]), skip={"tlp_in", "tlp_out"})
        return m
