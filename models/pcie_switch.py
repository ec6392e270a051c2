"""PCIe switch model: one upstream port, N downstream ports, reactive.

Like a real switch, it is a set of virtual PCI-to-PCI bridges: the upstream
port's bridge (device 0 on the bus above the switch) and one bridge per
downstream port (devices 0..N-1 on the upstream bridge's secondary bus, the
switch's internal bus). Each has a Type 1 configuration header; routing
reads only those registers, so windows and bus ranges are programmed by
configuration writes (what the host driver does) or set directly
(:meth:`PcieSwitch.set_bus_numbers`, :meth:`PcieSwitch.set_memory_window`,
:meth:`PcieSwitch.enable`).

Ports: 0 is upstream, 1..N downstream (downstream port ``i`` is device
``i - 1`` on the internal bus).

Routing
    * by address (memory, AtomicOp, Msg routed by address): a downstream port
      whose memory window (Memory Base/Limit) or prefetchable window
      (Prefetchable Base/Limit with the upper 32 bits) holds the address;
      otherwise upstream when the TLP came from below and the upstream
      bridge's own windows do not claim the address. Going down needs
      Memory Space Enable of the bridges passed; going up needs their Bus
      Master Enable.
    * by ID (configuration, completions, Msg routed by ID): a downstream
      port whose Secondary..Subordinate bus range holds the bus; a Type 1
      configuration request to a port's secondary bus becomes Type 0 there
      (device 0 only: a link has one device), one to the internal bus is for
      a downstream bridge, a Type 0 from above is for the upstream bridge.
    * implicit (messages): to the root complex goes up, broadcast from the
      root complex goes to every downstream port, local is consumed here.

Unroutable TLPs are answered as a switch does: a non-posted request gets an
Unsupported Request completion from the bridge that received it, a posted
one is dropped; both are counted (``counters``). Unexpected completions are
dropped and counted.

Timing: a TLP leaves the egress port ``latency_ns`` (plus that port's
``port_latency_ns`` entry) after it was received whole. PEX 8747 (PCIe Gen3,
48 lanes): "packet cut-thru with a maximum latency of 100ns (x16 to x16)"
(PLX PEX 8747 product brief); hence the default 100 ns. The model stores the
whole TLP before forwarding (the links deliver last bytes), so a TLP also
pays its serialisation time once more per hop than a cut-through switch.
"""

from collections import Counter

from .events import Send
from .pcie_txn import ConfigSpace
from .tlp import CplStatus, MsgRouting, OrderingClass, PcieId, Tlp, TlpType

__all__ = ["PcieSwitch", "SwitchPort", "bridge_config_space", "UPSTREAM"]

UPSTREAM = 0
#: PCI Express Capabilities register, Device/Port Type field.
PORT_TYPE_UPSTREAM, PORT_TYPE_DOWNSTREAM = 0x5, 0x6
CMD_MEMORY, CMD_BUS_MASTER = 0x2, 0x4


def bridge_config_space(vendor_id, device_id, port_type):
    """A Type 1 header with a PCI Express capability at 0x40."""
    cfg = ConfigSpace()
    cfg.set(0x00, 2, vendor_id)
    cfg.set(0x02, 2, device_id)
    cfg.set(0x04, 2, 0, wmask=CMD_MEMORY | CMD_BUS_MASTER)
    cfg.set(0x08, 4, 0x06040000 | 0x01)          # class: PCI-to-PCI bridge, rev 1
    cfg.set(0x0E, 1, 0x01)                       # header type 1
    cfg.set(0x18, 3, 0, wmask=0xFFFFFF)          # primary, secondary, subordinate bus
    cfg.set(0x20, 4, 0, wmask=0xFFF0FFF0)        # memory base / limit
    cfg.set(0x24, 4, 0x00010001, wmask=0xFFF0FFF0)   # prefetchable, 64-bit capable
    cfg.set(0x28, 4, 0, wmask=0xFFFFFFFF)        # prefetchable base upper 32
    cfg.set(0x2C, 4, 0, wmask=0xFFFFFFFF)        # prefetchable limit upper 32
    cfg.add_capability(0x40, 0x10, 0x3C)
    cfg.set(0x42, 2, 0x2 | port_type << 4)       # capability version 2, port type
    return cfg


class SwitchPort:
    """One port and its virtual bridge."""

    def __init__(self, index, cfg, latency_ns):
        self.index = index
        self.cfg = cfg
        self.latency_ns = latency_ns
        self.captured_bus = None             # from Type 0 writes (upstream bridge)

    @property
    def command(self):
        return self.cfg.get(0x04, 2)

    @property
    def memory_enabled(self):
        return bool(self.command & CMD_MEMORY)

    @property
    def bus_master(self):
        return bool(self.command & CMD_BUS_MASTER)

    @property
    def primary(self):
        return self.cfg.get(0x18, 1)

    @property
    def secondary(self):
        return self.cfg.get(0x19, 1)

    @property
    def subordinate(self):
        return self.cfg.get(0x1A, 1)

    def bus_in_range(self, bus):
        return 0 < self.secondary <= bus <= self.subordinate

    def windows(self):
        """[(base, limit)] of the memory and prefetchable windows (non-empty only)."""
        cfg = self.cfg
        out = []
        base = (cfg.get(0x20, 2) & 0xFFF0) << 16
        limit = (cfg.get(0x22, 2) & 0xFFF0) << 16 | 0xFFFFF
        if limit > base:
            out.append((base, limit))
        pbase = (cfg.get(0x24, 2) & 0xFFF0) << 16 | cfg.get(0x28, 4) << 32
        plimit = (cfg.get(0x26, 2) & 0xFFF0) << 16 | 0xFFFFF | cfg.get(0x2C, 4) << 32
        if plimit > pbase:
            out.append((pbase, plimit))
        return out

    def claims(self, address):
        return any(base <= address <= limit for base, limit in self.windows())


class PcieSwitch:
    """A PCIe switch: port 0 upstream, ports 1..``n_downstream`` downstream.

    ``receive(tlp, t_ns, port)`` returns the :class:`~tlpoe.models.events.Send`
    list: forwarded TLPs and the switch's own completions (configuration
    accesses to its bridges, UR for unroutable non-posted requests)."""

    def __init__(self, n_downstream=2, *, latency_ns=100.0, port_latency_ns=None,
                 vendor_id=0x10B5, device_id=0x8747, name="switch"):
        if n_downstream < 1 or n_downstream > 32:
            raise ValueError(f"n_downstream={n_downstream} must be 1..32")
        if latency_ns < 0:
            raise ValueError(f"latency_ns={latency_ns} is negative")
        extra = dict(port_latency_ns or {})
        self.name = name
        self.latency_ns = latency_ns
        self.ports = [SwitchPort(0, bridge_config_space(vendor_id, device_id,
                                                        PORT_TYPE_UPSTREAM),
                                 latency_ns + extra.get(0, 0.0))]
        for i in range(1, n_downstream + 1):
            self.ports.append(SwitchPort(i, bridge_config_space(vendor_id, device_id,
                                                                PORT_TYPE_DOWNSTREAM),
                                         latency_ns + extra.get(i, 0.0)))
        self.counters = Counter()

    # -- direct programming (what configuration writes would do)

    def set_bus_numbers(self, port, primary, secondary, subordinate):
        self.ports[port].cfg.set(0x18, 3, primary | secondary << 8 | subordinate << 16)

    def set_memory_window(self, port, base, limit, *, prefetchable=False):
        """A window of 1 MiB granularity: ``base`` aligned, ``limit`` the last byte."""
        if base & 0xFFFFF or (limit + 1) & 0xFFFFF or limit < base:
            raise ValueError(f"window 0x{base:x}..0x{limit:x} is not 1 MiB aligned")
        cfg = self.ports[port].cfg
        if prefetchable:
            cfg.set(0x24, 2, (base >> 16 & 0xFFF0) | 1)
            cfg.set(0x26, 2, (limit >> 16 & 0xFFF0) | 1)
            cfg.set(0x28, 4, base >> 32)
            cfg.set(0x2C, 4, limit >> 32)
        else:
            if limit >> 32:
                raise ValueError("the non-prefetchable window is 32-bit")
            cfg.set(0x20, 2, base >> 16 & 0xFFF0)
            cfg.set(0x22, 2, limit >> 16 & 0xFFF0)

    def enable(self, port, *, memory=True, bus_master=True):
        self.ports[port].cfg.set(0x04, 2, (CMD_MEMORY if memory else 0)
                                 | (CMD_BUS_MASTER if bus_master else 0))

    # -- identity

    def port_id(self, port):
        """The Requester/Completer ID of a port's bridge."""
        if port == UPSTREAM:
            up = self.ports[0]
            bus = up.captured_bus if up.captured_bus is not None else up.primary
            return PcieId(bus, 0, 0)
        return PcieId(self.ports[0].secondary, port - 1, 0)

    @property
    def downstream(self):
        return self.ports[1:]

    # -- the reactive interface

    def receive(self, tlp, t_ns, port):
        self.counters[f"rx_port{port}"] += 1
        t = tlp.type
        if t.is_config:
            return self._route_config(tlp, t_ns, port)
        if t.is_completion:
            return self._route_completion(tlp, t_ns, port)
        if t.is_message:
            return self._route_message(tlp, t_ns, port)
        return self._route_address(tlp, t_ns, port)

    def _forward(self, tlp, t_ns, egress):
        self.counters[f"tx_port{egress}"] += 1
        return [Send(t_ns + self.ports[egress].latency_ns, egress, tlp)]

    def _unroutable(self, tlp, t_ns, port, cause):
        self.counters[f"unroutable_{cause}"] += 1
        if tlp.ordering_class is OrderingClass.NON_POSTED:
            self.counters["ur_completions"] += 1
            cpl = Tlp.completion_for(tlp, completer_id=self.port_id(port), status=CplStatus.UR)
            return self._forward(cpl, t_ns, port)
        self.counters["posted_dropped"] += 1
        return []

    # -- configuration

    def _route_config(self, tlp, t_ns, port):
        if port != UPSTREAM:
            return self._unroutable(tlp, t_ns, port, "config_from_below")
        up = self.ports[0]
        dest = tlp.dest_id
        if tlp.type in (TlpType.CfgRd0, TlpType.CfgWr0):
            if dest.device or dest.function:
                return self._unroutable(tlp, t_ns, port, "config_no_device")
            if tlp.type is TlpType.CfgWr0:
                up.captured_bus = dest.bus
            return self._config_access(up, tlp, t_ns, port)
        bus = dest.bus
        if bus == up.secondary and up.secondary:
            if dest.function or not 0 <= dest.device < len(self.downstream):
                return self._unroutable(tlp, t_ns, port, "config_no_device")
            return self._config_access(self.ports[dest.device + 1], tlp, t_ns, port)
        for p in self.downstream:
            if p.bus_in_range(bus):
                if bus == p.secondary:
                    if dest.device:
                        return self._unroutable(tlp, t_ns, port, "config_no_device")
                    tlp = _type0(tlp)
                return self._forward(tlp, t_ns, p.index)
        return self._unroutable(tlp, t_ns, port, "config_bus")

    def _config_access(self, target, tlp, t_ns, port):
        self.counters["config_local"] += 1
        completer = self.port_id(target.index)
        if tlp.type.has_data:
            target.cfg.write_dw(tlp.register, int.from_bytes(tlp.data[:4], "little"),
                                tlp.first_be)
            cpl = Tlp.completion_for(tlp, completer_id=completer)
        else:
            data = target.cfg.read_dw(tlp.register).to_bytes(4, "little")
            cpl = Tlp.completion_for(tlp, completer_id=completer, data=data)
        return self._forward(cpl, t_ns, port)

    # -- completions and ID-routed messages

    def _port_for_bus(self, bus):
        for p in self.downstream:
            if p.bus_in_range(bus):
                return p.index
        return None

    def _route_by_id(self, tlp, t_ns, port, bus, kind):
        egress = self._port_for_bus(bus)
        if egress is None:
            if port == UPSTREAM:
                self.counters[f"unexpected_{kind}"] += 1
                return []
            egress = UPSTREAM
        if egress == port:
            self.counters[f"unexpected_{kind}"] += 1
            return []
        return self._forward(tlp, t_ns, egress)

    def _route_completion(self, tlp, t_ns, port):
        return self._route_by_id(tlp, t_ns, port, tlp.requester_id.bus, "completion")

    def _route_message(self, tlp, t_ns, port):
        r = tlp.routing
        if r in (MsgRouting.TO_ROOT_COMPLEX, MsgRouting.GATHERED_TO_ROOT_COMPLEX):
            if port == UPSTREAM:
                return self._unroutable(tlp, t_ns, port, "message_to_root_from_above")
            return self._forward(tlp, t_ns, UPSTREAM)
        if r is MsgRouting.BROADCAST_FROM_ROOT_COMPLEX:
            if port != UPSTREAM:
                return self._unroutable(tlp, t_ns, port, "broadcast_from_below")
            out = []
            for p in self.downstream:
                out += self._forward(tlp, t_ns, p.index)
            return out
        if r is MsgRouting.LOCAL:
            self.counters["messages_local"] += 1
            return []
        if r is MsgRouting.BY_ID:
            return self._route_by_id(tlp, t_ns, port, tlp.address >> 56 & 0xFF, "message")
        return self._route_address(tlp, t_ns, port)

    # -- address routing

    def _route_address(self, tlp, t_ns, port):
        address = tlp.address
        up = self.ports[0]
        for p in self.downstream:
            if p.index != port and p.claims(address):
                if port == UPSTREAM and not (up.memory_enabled and p.memory_enabled):
                    return self._unroutable(tlp, t_ns, port, "memory_disabled")
                if port != UPSTREAM and not (self.ports[port].bus_master
                                             and p.memory_enabled):
                    return self._unroutable(tlp, t_ns, port, "bus_master_disabled")
                return self._forward(tlp, t_ns, p.index)
        if port == UPSTREAM:
            return self._unroutable(tlp, t_ns, port, "address")
        if self.ports[port].claims(address) or up.claims(address):
            return self._unroutable(tlp, t_ns, port, "address")
        if not (self.ports[port].bus_master and up.bus_master):
            return self._unroutable(tlp, t_ns, port, "bus_master_disabled")
        return self._forward(tlp, t_ns, UPSTREAM)


def _type0(tlp):
    """The Type 0 request a Type 1 request becomes on its target bus."""
    kind = TlpType.CfgWr0 if tlp.type is TlpType.CfgWr1 else TlpType.CfgRd0
    return Tlp(kind, data=tlp.data, requester_id=tlp.requester_id, tag=tlp.tag,
               first_be=tlp.first_be, dest_id=tlp.dest_id, register=tlp.register,
               attr=tlp.attr, tc=tlp.tc)
