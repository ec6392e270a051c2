"""The end-to-end environment: host models and a GPU chassis (models) around
the disaggregated RTL (:class:`tlpoe.rtl.bridge.system.DisaggregatedTop`), joined
by the Ethernet model.

    host i --PCIe--> h{i}_tlp_in [host bridge h{i}] h{i}_frame_out --Phy--> switch port i
    switch port i --Phy--> h{i}_frame_in [host bridge h{i}] h{i}_tlp_out --PCIe--> host i
    d{i}_frame_out --chassis NIC Phy--> switch port H   (H = hosts: the chassis uplink,
    switch port H --Phy--> d{i}_frame_in                  shared by every device bridge)
    [device bridge d{i}] -- DeviceFabric -- fabric_pcie_out --PCIe--> PCIe switch --> GPUs

Models never own the clock (the reactive contract of
:mod:`tlpoe.models.events`): one :class:`~tlpoe.models.events.EventKernel`
holds the hosts, the chassis' PCIe switch and GPUs and the PCIe links, and
:class:`ModelTime` runs it up to the simulation time at every clock edge.
Where a model's PCIe link meets the RTL, the link's far end is an
:class:`RtlTlpPort`: a TLP the model sends is driven into the RTL stream
when its last byte arrives over the link, and a TLP the RTL puts out goes
over the link to the model. So every latency is the RTL's cycles at the
configured clock plus the models' link, network and device times.

:class:`EthernetNetwork` carries the frames: each sender's NIC is a
:class:`~tlpoe.models.phy.Phy` into its switch port (its transmit FIFO holds
the bridge's ``frame_out`` while more than ``mac_fifo_bytes`` wait for the
line), the :class:`~tlpoe.models.ethswitch.EthernetSwitch` forwards (static
MAC entries: no flooding), and each egress port's Phy hands the frame to
the receiving bridge at its arrival time. The device bridges share the
chassis' one uplink, so one host's traffic congests the other's.

The pool manager writes the device fabric's tables through its CSRs
(:class:`~tlpoe.sim.pool.CsrWriter`, AXI4-Lite; ``tb/test_e2e.py``).
:class:`BoundaryChecker` judges every TLP that enters the chassis or reaches
a host against the pool's assignments at that moment.
"""

import collections
import heapq

import cocotb
from cocotb.triggers import RisingEdge
from cocotb.utils import get_sim_time

from ..models.ethswitch import EthernetSwitch
from ..models.events import PcieLink
from ..models.phy import Phy
from ..models.tlp import CplStatus, PcieId, Tlp
from .bfm import StreamDriver, StreamLayout, StreamMonitor

__all__ = ["ModelTime", "RtlTlpPort", "EthernetNetwork", "BoundaryChecker",
           "host_mac", "device_mac"]


def host_mac(i):
    """The MAC address of host ``i``'s bridge (locally administered)."""
    return bytes([0x02, 0x74, 0x6C, 0x70, 0x00, i])


def device_mac(i):
    """The MAC address of the chassis' device bridge for host link ``i``."""
    return bytes([0x02, 0x74, 0x6C, 0x70, 0x01, i])


def link_addresses(i, side):
    """The ``udp`` transport's configuration of host link ``i``'s bridge on
    ``side`` (``"host"`` or ``"device"``): its IPv4 address (hosts
    10.0.1.i, the chassis' device bridges 10.0.2.i), the peer's, and a UDP
    source port of the link's own (ECMP entropy). Harmless on ``eth``."""
    host, device = 0x0A00_0100 + i, 0x0A00_0200 + i
    ours, peer = (host, device) if side == "host" else (device, host)
    return dict(src_ip=ours, dst_ip=peer, src_port=0xC000 + 2 * i + (side == "device"))


class ModelTime:
    """Runs ``kernel`` up to the simulation time at every rising edge of
    ``clock``, after the ``hooks`` (callables of the time in ns)."""

    def __init__(self, kernel, clock, hooks=()):
        self.kernel, self.clock = kernel, clock
        self.hooks = list(hooks)
        self._task = cocotb.start_soon(self._run())

    @staticmethod
    def now():
        return get_sim_time("ns")

    async def _run(self):
        edge, kernel, hooks = RisingEdge(self.clock), self.kernel, self.hooks
        while True:
            await edge
            now = get_sim_time("ns")
            for hook in hooks:
                hook(now)
            if kernel.next_ns <= now:
                kernel.run_until(now)


class RtlTlpPort:
    """The RTL end of a model's PCIe link: the TLP stream ports ``{prefix}_in``
    (driven) and ``{prefix}_out`` (taken, always ready). Connect it as end 1
    of ``link`` (a :class:`~tlpoe.models.events.PcieLink` in the fabric);
    ``taps`` (callables of ``(tlp, t_ns)``) see every TLP the RTL puts out,
    ``in_taps`` every TLP driven in."""

    def __init__(self, dut, clock, width, in_port, out_port, name):
        layout = StreamLayout.tlp(width)
        self.name = name
        self.link = None
        self.driver = StreamDriver(dut, in_port, clock, layout, name=f"{name}_in")
        self.monitor = StreamMonitor(dut, out_port, clock, layout, drive_ready=True,
                                     callback=self._out, name=f"{name}_out")
        self.taps, self.in_taps = [], []
        self.tlps_in = self.tlps_out = 0

    def receive(self, tlp, t_ns, port=0):          # the model side sent a TLP to the RTL
        for tap in self.in_taps:
            tap(tlp, t_ns)
        self.driver.send_nowait(tlp.pack())
        self.tlps_in += 1
        return []

    def _out(self, packet):
        tlp = Tlp.unpack(packet.data)
        now = get_sim_time("ns")
        self.tlps_out += 1
        for tap in self.taps:
            tap(tlp, now)
        self.link.transmit(1, tlp, now)


def pcie_link(p, name):
    """A PCIe link with the parameters ``link_gts``, ``link_lanes``, ``link_latency_ns``."""
    return PcieLink(p["link_gts"], p["link_lanes"], p["link_latency_ns"], name=name)


class EthernetNetwork:
    """The frames' path between the bridges (see the module doc). ``net``:
    ``rate_gbps``, ``cable_ns`` (each Phy's latency: cable, PCS and FEC),
    ``ber`` (every Phy, both directions), ``switch_mode``,
    ``switch_latency_ns``, ``switch_queue_bytes``, ``mac_fifo_bytes``,
    ``ecn_threshold_bytes`` (optional: the switch marks CE on a frame that
    finds more queued before it); ``seed`` seeds each Phy's errors.
    :meth:`sample` records the chassis uplink's egress queue (bytes) while
    ``sampling``."""

    def __init__(self, dut, clock, width, hosts, net, seed):
        self.hosts = hosts
        rate = net["rate_gbps"]
        uplink = hosts                                   # the chassis' switch port
        self.uplink = uplink
        self.switch = EthernetSwitch(hosts + 1, rate, mode=net["switch_mode"],
                                     latency_ns=net["switch_latency_ns"],
                                     queue_bytes=net["switch_queue_bytes"],
                                     ecn_threshold_bytes=net.get("ecn_threshold_bytes"))
        self.sampling, self.samples = False, []
        for i in range(hosts):
            self.switch.add_static(host_mac(i), i)
            self.switch.add_static(device_mac(i), uplink)

        def phy(k):
            return Phy(rate_gbps=rate, latency_ns=net["cable_ns"], ber=net["ber"],
                       seed=seed * 16 + k)   # k < 16: hosts <= 7
        self.ingress = [phy(k) for k in range(hosts + 1)]        # NIC -> switch port k
        self.egress = [phy(8 + k) for k in range(hosts + 1)]      # switch port k -> NIC
        self.fifo_ns = net["mac_fifo_bytes"] * 8 / rate
        frame = StreamLayout.frame(width)
        self.to_port = {}                                 # (switch port, dst MAC) -> driver
        self.monitors = []
        for i in range(hosts):
            for prefix, port, mac in ((f"h{i}", i, host_mac(i)), (f"d{i}", uplink, device_mac(i))):
                self.to_port[port, mac] = StreamDriver(dut, f"{prefix}_frame_in", clock, frame)
                nic = self.ingress[port]
                self.monitors.append(StreamMonitor(
                    dut, f"{prefix}_frame_out", clock, frame, drive_ready=True,
                    ready_fn=lambda nic=nic: nic.free_ns - get_sim_time("ns") < self.fifo_ns,
                    callback=lambda packet, port=port: self._sent(port, packet.data)))
        self._arrivals = []          # (t at the switch, order, in port, frame)
        self._handover = []          # (t at the receiving NIC, order, driver, frame)
        self._order = 0
        self.counters = collections.Counter()
        self.taps = []               # callables (t_ns, direction, frame, fate)

    def cut(self, port, start_ns, end_ns):
        """The cable between switch port ``port`` and its NIC out in
        ``[start_ns, end_ns)``, both ways (each Phy's ``down``): every frame
        on the wire then is lost (``phy_counters["link_down"]``)."""
        for phy in (self.ingress[port], self.egress[port]):
            phy.add_down(start_ns, end_ns)

    def _push(self, heap, t, *rest):
        heapq.heappush(heap, (t, self._order, *rest))
        self._order += 1

    def _sent(self, port, frame):
        now = get_sim_time("ns")
        d = self.ingress[port].transmit(frame, now)
        self.counters["frames_sent"] += 1
        if d.frame is None:
            self.counters[f"lost_{d.fate.value}"] += 1
            return
        self._push(self._arrivals, d.start_ns + self.ingress[port].latency_ns, port, d.frame)

    def tick(self, now):
        """Move every frame due by ``now`` (a :class:`ModelTime` hook)."""
        arrivals, handover = self._arrivals, self._handover
        while arrivals and arrivals[0][0] <= now:
            t, _, port, frame = heapq.heappop(arrivals)
            for d in self.switch.receive(port, frame, t):
                if d.lost:
                    self.counters[f"switch_{d.fate.value}"] += 1
                    continue
                out = self.egress[d.out_port].transmit(d.data, d.start_ns)
                if out.frame is None:
                    self.counters[f"lost_{out.fate.value}"] += 1
                    continue
                driver = self.to_port.get((d.out_port, bytes(out.frame[:6])))
                if driver is None:
                    self.counters["no_receiver"] += 1
                    continue
                self._push(handover, out.arrival_ns, driver, out.frame)
        while handover and handover[0][0] <= now:
            _, _, driver, frame = heapq.heappop(handover)
            driver.send_nowait(frame)
            self.counters["frames_delivered"] += 1

    def sample(self, now):
        """The uplink's egress queue now (bytes), kept while ``sampling``."""
        if self.sampling:
            self.samples.append(self.switch.occupancy(self.uplink, now))

    @property
    def phy_counters(self):
        total = collections.Counter()
        for phy in self.ingress + self.egress:
            total.update({k: v for k, v in phy.counters.as_dict().items() if v})
        return dict(total)


class BoundaryChecker:
    """Judges every TLP crossing an access-table boundary against the pool's
    assignments at that moment (``pool``: a
    :class:`~tlpoe.sim.pool.PoolManager`; ``links``: its links by index).

    * Into the chassis (``fabric_pcie_out``): a request must carry a link's
      ``local_rid``, and address a BAR (memory) or be a configuration
      request of a GPU assigned to that link. Completions (of the GPUs' DMA
      reads) carry no link; the GPU model checks each against its own
      outstanding reads.
    * Into host ``i`` (``h{i}_tlp_out``): a request must come from a GPU
      assigned to host ``i`` (its host Bus/Device/Function), and a
      completion from one, except the bridge's own Unsupported Request
      completions of denied requests (Completer ID the link's ``host_rid``,
      no data), which carry nothing from the chassis.

    ``violations`` lists every breach; a test asserts it is empty."""

    def __init__(self, pool, links):
        self.pool, self.links = pool, links
        self.violations = []
        self.checked = collections.Counter()

    def _assigned(self, link_index):
        return [a for a in self.pool.assignments.values() if a.link.index == link_index]

    def into_chassis(self, tlp, t_ns):
        t = tlp.type
        self.checked["into_chassis"] += 1
        if t.is_completion:
            return
        link = next((k for k, lk in self.links.items()
                     if lk.local_rid == int(tlp.requester_id)), None)
        if link is None:
            self.violations.append(f"{t_ns} ns: {t.name} into the chassis from requester "
                                   f"{tlp.requester_id}, no link's")
            return
        mine = self._assigned(link)
        if t.is_config:
            ok = any(a.gpu.device_id == int(tlp.dest_id) for a in mine)
        elif t.is_memory:
            end = tlp.address + 4 * tlp.length
            ok = any(b.device_base <= tlp.address and end <= b.device_base + b.size
                     for a in mine for b in a.gpu.bars)
        else:
            ok = False
        if not ok:
            self.violations.append(f"{t_ns} ns: {t.name} from link {link} reached the chassis "
                                   f"outside its assignments: {tlp}")

    def into_host(self, index, tlp, t_ns):
        self.checked[f"into_host{index}"] += 1
        if (tlp.type.is_completion and tlp.status == CplStatus.UR and not tlp.data
                and int(tlp.completer_id) == self.links[index].host_rid):
            self.checked[f"local_ur_host{index}"] += 1
            return                  # the bridge's own answer to a denied request
        mine = {a.host_bdf for a in self._assigned(index)}
        source = tlp.completer_id if tlp.type.is_completion else tlp.requester_id
        if int(source) not in mine:
            self.violations.append(f"{t_ns} ns: {tlp.type.name} from {source} reached host "
                                   f"{index}, which is assigned {sorted(map(PcieId.from_int, mine))}")
