"""pyuvm test of the whole system: host models drive GPU models in another
chassis through the disaggregated RTL (two bridges per host link and the
device fabric) and the Ethernet model (tb/e2e_env.py).

One run (``E2eTest``), each phase chosen by a parameter:

1. **The chassis** is enumerated by its own manager (the host driver's
   ``bring_up`` on the chassis' PCIe switch, model only, before the run):
   the GPUs' real BARs and IDs.
2. **Assign**: the pool manager gives GPU i to host i, writing the fabric's
   tables through its CSRs (:class:`~tlpoe.sim.pool.CsrWriter` on the
   fabric's AXI4-Lite port, ``fabric_csr``).
3. **Attach and work**, both hosts at once: each host's driver maps its GPU
   (MSI-X vector by MMIO in BAR0), then host 0 measures MMIO read latency,
   DMA round trips (``dma_sizes``), SAXPY (``saxpy_n``, bit-exact to numpy)
   and GEMM (``gemm_n``, within :func:`~tlpoe.models.system.gemm_tolerance`),
   while host 1 runs its own SAXPY, or with ``congestion`` bulk DMA
   round trips the whole time, through the same chassis uplink and PCIe
   switch port.
4. **Attacks** (``attacks``): host 0 writes to and reads from addresses of
   GPU 1 (its real chassis addresses and host 1's view of them): the fabric
   must deny and count every one, and GPU 1's memory must be unchanged.
5. **Reassign** (``reassign``): both GPUs are released and swapped; each
   host maps its new GPU and runs SAXPY on it.

With ``incast_us``, step 3 is instead an incast: once both hosts have
their GPU, each copies ``incast_bytes`` from its memory into VRAM (the GPU
reads host memory: the completions cross from both host bridges into the
chassis' one uplink) back to back for ``incast_us``. The record's
``incast`` gives each host's bytes and goodput and its share of the sum,
the window in which both copy: the completion bytes that reach each GPU
in it (each host's goodput and share), the uplink's egress queue sampled
every ``queue_sample_ns`` in the window's second half (p50, p99, max);
the switch's drops and ECN marks, and the bridges' replays and
congestion-control counters.

With ``faults`` (``[[after_us, for_us], ...]``, bridges built with the link
state machine and the completion tracker), host 0's work in step 3 is
instead a run across its own cable's outages: ``after_us`` after the
previous step the cable between host 0's NIC and the switch goes out for
``for_us``, while a DMA round trip (``fault_bytes``, under the driver's
watchdog, ``watchdog_us``) is in flight. A flap the link rides out must
leave the copy intact; an outage long enough for containment must end in
the device reported gone (the bridges answer every request outstanding
with UR, which the host reads as all ones), never a hang, and the driver
recovers: polls the GPU until it answers, rescans, sets it up again
(:func:`~tlpoe.models.host.recover`). Then SAXPY, bit-exact.

Throughout, :class:`~tlpoe.tb.e2e_env.BoundaryChecker` judges every TLP
entering the chassis or reaching a host against the assignments, and the
models' own checks (the hosts' and GPUs' completion trackers) must stay
clean. ``report`` (a path) receives the run's record as JSON.

With ``twin``, each of the four bridges has its cycle twin
(:class:`~tlpoe.tb.bridge_twin.BridgeTwin`): the model of the whole Bridge,
compared with the RTL in every cycle, every frame and TLP beat and every
counter. The device bridges' TLP ports meet the fabric inside the design;
the bench's top (sim/e2e.py ``system``) shows them as outputs for this.
"""

import json

import cocotb
import numpy as np
import pyuvm
from cocotb.triggers import ReadOnly
from cocotb.utils import get_sim_time
from pyuvm import uvm_test

from tlpoe.models.events import EventKernel, Fabric
from tlpoe.models.gpu import CQ_OFFSET, Opcode
from tlpoe.models.host import (
    CfgRead, CfgWrite, DriverError, Host, MemRead, MemWrite, Now, Sleep, bring_up,
    mmio_read_latency, recover, run_command,
)
from tlpoe.models.system import (
    BUF_BASE, build_local_slot, dma_round_trip, gemm, gemm_resident, saxpy,
)
from tlpoe.models.tlp import PcieId
from tlpoe.models.translate import Reason
from tlpoe.rtl.csr.regmap import load
from tlpoe.sim.pool import Bar, CsrWriter, Gpu, HostLink, PoolManager
from tlpoe.tb.bfm import reset, start_clock, wait_cycles
from tlpoe.tb.csr_bus import AxilCsr
from tlpoe.tb.e2e_env import (
    BoundaryChecker, EthernetNetwork, ModelTime, RtlTlpPort, device_mac, host_mac,
    link_addresses, pcie_link,
)
from tlpoe.tb.bridge_ports import BridgePorts
from tlpoe.rtl.framing.transport import CHECKSUM_LAG
from tlpoe.tb.bridge_twin import BridgeTwin, bridge_model
from tlpoe.tb.link_env import configure_bridge
from tlpoe.tb.params import tb_params

P = tb_params(
    width=256, clock_ns=4.0, hosts=2, windows=4, functions=4, seed=1,
    # bridges (run-time inputs, in cycles)
    flush_timeout=16, replay_timeout=2000, nak_timeout=1000, ack_delay=32, credits=1,
    credit_delay=128, credit_refresh=2000,
    # network
    net={"rate_gbps": 100, "cable_ns": 250.0, "ber": 0.0, "switch_mode": "cut-through",
         "switch_latency_ns": 300.0, "switch_queue_bytes": 262144, "mac_fifo_bytes": 4096},
    # models (models/system.py DEFAULTS names)
    models={"vram_size": 16 << 20, "host_mem_size": 16 << 20},
    # workload
    mmio_probes=4, dma_sizes=[4096, 65536], saxpy_n=1024, gemm_n=0, gemm_resident_n=0,
    peer_saxpy_n=1024,
    congestion=False, congestion_bytes=65536, attacks=True, reassign=True,
    # incast: both hosts copy incast_bytes host -> VRAM back to back for
    # incast_us through the chassis uplink, its queue sampled every
    # queue_sample_ns (the module doc)
    incast_us=0, incast_bytes=65536, queue_sample_ns=100.0,
    # host 0's cable out mid-work (see the module doc); times in us
    faults=[], fault_bytes=65536, fault_lead_us=2.0, watchdog_us=300.0, recover_poll_us=20.0,
    recover_give_up_us=3000.0,
    timeout_us=2000, report="",
    # each bridge's cycle twin (tb/bridge_twin.py), built from ``bridge``: the
    # Bridges' parameters besides width (sim/e2e.py ``bridge_params``)
    twin=False, bridge={},
    # config fields set on every bridge after the others (DCQCN's registers)
    cfg={})

#: the resilient bridges' statistics in the record (when built with them)
RESILIENT_STATS = ("link_down_events", "link_up_events", "peer_restarts", "timeouts",
                   "link_down_completions", "restart_completions", "late_completions",
                   "posted_dropped", "np_contained", "cpl_dropped", "outstanding")
HOST_BUS = 1                 # the bus each host sees its remote GPUs on
HOST_RID = 0x0000            # every host's root complex (each on its own link)


def local_rid(i):
    """The ID host link ``i``'s requests carry in the chassis: bus 0,
    device 31, function ``i`` (a bus no chassis port claims, so completions
    go up to the fabric)."""
    return int(PcieId(0, 31, i))


def gpu_settings(p):
    return dict(max_payload=p["max_payload"], max_read_request=p["max_read_request"],
                rcb=p["gpu_rcb"], ten_bit_tags=p["ten_bit_tags"])


def attach(link, assignment, settings):
    """Driver: what a host does when a GPU is hot-added on its link: scan its
    bus with configuration requests (the bridge answers UR for the empty
    slots), size and place the GPU's BARs (the bridge answers from its
    virtual BARs; the host's aperture is the link's, so it places them where
    the pool's windows are), set up MPS/MRRS and MSI-X, and return the one
    GPU it found."""
    _, gpus = yield from bring_up(root_bus=link.host_bus, **settings, **link.resources())
    return found(link, assignment, gpus)


def found(link, assignment, gpus):
    """The one GPU a scan of ``link`` found, checked against ``assignment``."""
    if [int(g.id) for g in gpus] != [assignment.host_bdf]:
        raise AssertionError(f"host on {link.name} found GPUs {[str(g.id) for g in gpus]}, "
                             f"expected {PcieId.from_int(assignment.host_bdf)}")
    gpu = gpus[0]
    if (gpu.bar0, gpu.vram) != (assignment.bar_bases[0], assignment.bar_bases[1]):
        raise AssertionError(f"host placed the BARs at {gpu.bar0:#x}, {gpu.vram:#x}; the "
                             f"pool's windows are at {assignment.bar_bases}")
    return gpu


def watched_round_trip(gpu, mem, rng, size, watchdog_ns):
    """Driver: ``size`` random bytes host -> VRAM -> another host buffer by
    the GPU's DMA, each command under a watchdog of ``watchdog_ns``;
    whether the bytes came back intact (raises :class:`DriverError`, or
    :class:`~tlpoe.models.host.DeviceGone`, when a command fails or the
    device reads all ones)."""
    src, dst = BUF_BASE, BUF_BASE + size
    mem[src:src + size] = rng.integers(0, 256, size, dtype=np.uint8)
    mem[dst:dst + size] = 0
    yield from run_command(gpu, Opcode.COPY_H2D, timeout_ns=watchdog_ns, host=src, a=0,
                           size=size)
    yield from run_command(gpu, Opcode.COPY_D2H, timeout_ns=watchdog_ns, host=dst, a=0,
                           size=size)
    return bool(np.array_equal(mem[src:src + size], mem[dst:dst + size]))


class E2eTest(uvm_test):
    """The end-to-end run (see the module doc)."""

    def build_phase(self):
        self.p = P
        self.record = dict(params=P)

    # ---------------------------------------------------------------- the system
    def build_system(self, dut):
        p = P
        chassis = build_local_slot(p["models"], seed=p["seed"])
        self.mp = mp = chassis.params
        from tlpoe.models.system import run_driver
        _, handles = run_driver(chassis, bring_up(**gpu_settings(mp)))
        self.templates = handles
        self.gpu_models = chassis.gpus
        self.fabric = fabric = Fabric(EventKernel())
        self.links = []
        switch = self.chassis_switch = chassis.switch
        chassis_port = RtlTlpPort(dut, dut.clk, p["width"], "fabric_pcie_in", "fabric_pcie_out",
                                  "chassis")
        self.chassis_port = chassis_port
        chassis_port.link = fabric.connect(switch, 0, chassis_port, 0, pcie_link(mp, "chassis"))
        for i, gpu in enumerate(chassis.gpus):
            fabric.connect(switch, i + 1, gpu, 0, pcie_link(mp, f"switch-gpu{i}"))
        self.hosts, self.host_ports = [], []
        for i in range(p["hosts"]):
            host = Host(mem_size=mp["host_mem_size"], requester_id=HOST_RID, root_bus=HOST_BUS,
                        read_latency_ns=mp["host_read_latency_ns"], seed=p["seed"] + i,
                        rcb=mp["host_rcb"], cpl_max=mp["host_cpl_max"], name=f"host{i}")
            port = RtlTlpPort(dut, dut.clk, p["width"], f"h{i}_tlp_in", f"h{i}_tlp_out", f"h{i}")
            port.link = fabric.connect(host, 0, port, 0, pcie_link(mp, f"host{i}"))
            self.hosts.append(host)
            self.host_ports.append(port)
        self.network = EthernetNetwork(dut, dut.clk, p["width"], p["hosts"], p["net"], p["seed"])
        hooks = [self.network.tick]
        if p["incast_us"]:
            every = max(1, round(p["queue_sample_ns"] / p["clock_ns"]))
            edges = [0]

            def sample(now):
                edges[0] += 1
                if edges[0] % every == 0:
                    self.network.sample(now)
            hooks.append(sample)
        self.time = ModelTime(fabric.kernel, dut.clk, hooks=hooks)
        # the pool: each GPU with its real BARs, each host link with its aperture
        self.pool_gpus = [Gpu(f"gpu{i}", int(h.id), (Bar(0, h.bar0, h.bar0_size),
                                                       Bar(1, h.vram, h.vram_size)))
                          for i, h in enumerate(handles)]
        self.pool_links = [HostLink(f"host{i}", i, HOST_RID, local_rid(i),
                                    aperture=(0xC000_0000, 0x1000_0000),
                                    aperture64=(0x40_0000_0000, 0x10_0000_0000),
                                    host_bus=HOST_BUS) for i in range(p["hosts"])]
        # the pool writes the fabric's tables through its CSRs (AXI4-Lite)
        self.csr = AxilCsr(dut, "fabric_csr", dut.clk, dut.rst)
        self.regmap = load("fabric", HOSTS=p["hosts"], WINDOWS=p["windows"],
                           FUNCTIONS=p["functions"])
        chassis_port.taps.append(lambda tlp, t: self.boundary.into_chassis(tlp, t))
        # the incast's goodput: completion bytes into the chassis per GPU
        # (each host's copies) while both hosts copy
        self.window_bytes = [0] * p["hosts"]
        gpu_index = {int(h.id): i for i, h in enumerate(self.templates)}

        def count(tlp, t):
            if self.network.sampling and tlp.type.is_completion:
                i = gpu_index.get(int(tlp.requester_id))
                if i is not None:
                    self.window_bytes[i] += len(tlp.data or b"")
        chassis_port.taps.append(count)
        for i, port in enumerate(self.host_ports):
            port.taps.append(lambda tlp, t, i=i: self.boundary.into_host(i, tlp, t))

    def start_pool(self):
        """The pool manager (after reset: its first writes are the links' IDs)."""
        self.pool = PoolManager(self.pool_gpus, self.pool_links,
                                CsrWriter(self.csr, self.regmap))
        self.boundary = BoundaryChecker(self.pool, {lk.index: lk for lk in self.pool_links})

    async def run_drivers(self, drivers):
        """Start ``{host index: driver}`` now; return their results once all
        have returned (fails after ``timeout_us`` of simulated time)."""
        now = get_sim_time("ns")
        for i, driver in drivers.items():
            self.fabric.apply(self.hosts[i], self.hosts[i].start(driver, now))
        deadline = now + P["timeout_us"] * 1000
        polls = 0
        while not all(self.hosts[i].driver_done for i in drivers):
            await wait_cycles(cocotb.top.clk, 64)
            polls += 1
            if polls % 500 == 0:
                self.logger.info(f"hosts {[i for i in drivers if not self.hosts[i].driver_done]} "
                                 f"running: TLPs in/out " + ", ".join(
                                     f"{p.name} {p.tlps_in}/{p.tlps_out}"
                                     for p in self.host_ports + [self.chassis_port])
                                 + f"; network {dict(self.network.counters)}")
                if polls == 500:
                    self.logger.info(f"counters {self.read_counters(cocotb.top)}; waiting "
                                     f"{[self.hosts[i]._waiting for i in drivers]}; gpu "
                                     f"{[dict(g.counters) for g in self.gpu_models]} "
                                     f"{[g.errors for g in self.gpu_models]}; switch "
                                     f"{dict(self.chassis_switch.counters)}")
            if get_sim_time("ns") > deadline:
                stuck = [i for i in drivers if not self.hosts[i].driver_done]
                raise AssertionError(f"host(s) {stuck} did not finish within "
                                     f"{P['timeout_us']} us (waiting for "
                                     f"{[self.hosts[i]._waiting for i in stuck]})")
        return {i: self.hosts[i].driver_result for i in drivers}

    async def assign(self, pairs):
        for gpu, link in pairs:
            self.pool.assign(gpu, link)
        await self.csr.flush()
        return {gpu: self.pool.assignments[gpu] for gpu, _ in pairs}

    # ---------------------------------------------------------------- the drivers
    def main_work(self, i, assignment):
        p, mem = P, self.hosts[0].memory
        rng = np.random.default_rng(p["seed"] * 31 + i)
        gpu = yield from attach(self.pool_links[i], assignment, gpu_settings(self.mp))
        out = {}
        lat = yield from mmio_read_latency(gpu, p["mmio_probes"])
        out["mmio_read_latency_ns"] = dict(mean=float(np.mean(lat)), min=min(lat), max=max(lat))
        out["dma"] = []
        for size in p["dma_sizes"]:
            out["dma"] += yield from dma_round_trip(gpu, mem, rng, size, self.gpu_models[0])
        if p["saxpy_n"]:
            out["saxpy"] = yield from saxpy(gpu, mem, rng, p["saxpy_n"])
        if p["gemm_n"]:
            out["gemm"] = yield from gemm(gpu, mem, rng, p["gemm_n"])
        if p["gemm_resident_n"]:
            out["gemm_resident"] = yield from gemm_resident(gpu, p["gemm_resident_n"])
        return out

    def fault_work(self, i, assignment):
        """Host ``i`` across its cable's outages (``faults``; the module doc)."""
        p, mem = P, self.hosts[i].memory
        link, settings = self.pool_links[i], gpu_settings(self.mp)
        rng = np.random.default_rng(p["seed"] * 31 + i)
        gpu = yield from attach(link, assignment, settings)
        out = {"faults": []}
        for after_us, for_us in p["faults"]:
            yield Sleep(after_us * 1000.0)
            now = yield Now()
            cut = now + p["fault_lead_us"] * 1000.0
            self.network.cut(i, cut, cut + for_us * 1000.0)
            event = dict(after_us=after_us, for_us=for_us, cut_ns=cut)
            try:
                event["copy_intact"] = yield from watched_round_trip(
                    gpu, mem, rng, p["fault_bytes"], p["watchdog_us"] * 1000.0)
                event["outcome"] = "rode through"
            except DriverError as failed:
                event.update(outcome=type(failed).__name__, failed_ns=(yield Now()),
                             why=str(failed))
                _, gpus, back = yield from recover(
                    gpu, poll_ns=p["recover_poll_us"] * 1000.0,
                    give_up_ns=p["recover_give_up_us"] * 1000.0, root_bus=link.host_bus,
                    **settings, **link.resources())
                gpu = found(link, assignment, gpus)
                event["back_ns"] = back
            event["end_ns"] = yield Now()
            out["faults"].append(event)
        out["saxpy"] = yield from saxpy(gpu, mem, rng, p["saxpy_n"])
        return out

    def incast_work(self, i, assignment, flag):
        """Host ``i`` in the incast: copies into VRAM for ``incast_us``, from
        the moment both hosts have their GPU."""
        p, mem = P, self.hosts[i].memory
        gpu = yield from attach(self.pool_links[i], assignment, gpu_settings(self.mp))
        flag["ready"] += 1
        while flag["ready"] < p["hosts"]:
            yield Sleep(200.0)
        size = p["incast_bytes"]
        mem[BUF_BASE:BUF_BASE + size] = np.random.default_rng(p["seed"] + i).integers(
            0, 256, size, dtype=np.uint8)
        t0 = yield Now()
        if not self.network.sampling:       # the window: both copying
            self.network.sampling, self.window = True, [t0, None]
        copies = 0
        while (yield Now()) < t0 + p["incast_us"] * 1000.0:
            yield from run_command(gpu, Opcode.COPY_H2D, host=BUF_BASE, a=0, size=size)
            copies += 1
        t1 = yield Now()
        flag["done"] += 1
        if flag["done"] == 1:
            self.network.sampling, self.window[1] = False, t1
        return dict(copies=copies, bytes=copies * size, start_ns=t0, end_ns=t1,
                    gbps=copies * size * 8 / (t1 - t0))

    def peer_work(self, i, assignment, flag):
        """Host ``i``: SAXPY, or bulk DMA round trips until ``flag["stop"]``."""
        mem = self.hosts[i].memory
        rng = np.random.default_rng(P["seed"] * 31 + i)
        gpu = yield from attach(self.pool_links[i], assignment, gpu_settings(self.mp))
        out = dict(round_trips=0)
        if P["congestion"]:
            t0 = yield Now()
            while not flag["stop"]:
                yield from dma_round_trip(gpu, mem, rng, P["congestion_bytes"])
                out["round_trips"] += 1
            out["bytes"] = 2 * P["congestion_bytes"] * out["round_trips"]
            out["gbytes_per_s"] = out["bytes"] / ((yield Now()) - t0)
        if P["peer_saxpy_n"]:
            out["saxpy"] = yield from saxpy(gpu, mem, rng, P["peer_saxpy_n"])
        return out

    def attacks(self, own, victim, victim_view):
        """Driver (host 0): writes and reads at GPU 1's real chassis
        addresses and at host 1's view of them, none of which host 0's
        windows cover, and configuration reads and writes of the slots on
        its bus that hold no GPU of its own (where GPU 1 sits on host 1's).
        Returns (requests made, reads answered other than by UR)."""
        made, answered = 0, []
        for base in (victim.bar0, victim.vram, victim_view.bar_bases[0],
                     victim_view.bar_bases[1]):
            if own.bar_bases[0] <= base < own.bar_bases[0] + self.templates[0].bar0_size or \
               own.bar_bases[1] <= base < own.bar_bases[1] + self.templates[0].vram_size:
                continue            # the same host address is this host's own GPU: not an attack
            target = base + (0x100 if base in (victim.vram, victim_view.bar_bases[1])
                             else CQ_OFFSET)
            yield MemWrite(target, b"\xde\xad\xbe\xef" * 16)
            data = yield MemRead(target, 16)
            if bytes(data) != b"\xff" * 16:      # UR: the host reads all ones
                answered.append(f"MRd {target:#x}: {bytes(data).hex()}")
            made += 2
        bus = self.pool_links[0].host_bus
        for device in (victim_view.host_bdf >> 3 & 0x1F, 1, 31):
            if PcieId(bus, device, 0) == PcieId.from_int(own.host_bdf):
                continue
            fid = PcieId(bus, device, 0)
            ids = yield CfgRead(fid, 0x00)
            if ids is not None:
                answered.append(f"CfgRd {fid}: {ids:#x}")
            yield CfgWrite(fid, 0x10, 0xFFFF_FFFF)
            made += 2
        return made, answered

    # ---------------------------------------------------------------- the run
    async def run_phase(self):
        self.raise_objection()
        dut = cocotb.top
        p = P
        start_clock(dut.clk, p["clock_ns"])
        self.build_system(dut)
        for i in range(p["hosts"]):
            configure_bridge(dut, f"h{i}", device_mac(i), host_mac(i), p,
                             **link_addresses(i, "host"), **p["cfg"])
            configure_bridge(dut, f"d{i}", host_mac(i), device_mac(i), p,
                             **link_addresses(i, "device"), **p["cfg"])
        self.twins = [BridgeTwin(dut, side, bridge_model(p["width"], **p["bridge"]),
                                 name=f"twin_{side}")
                      for i in range(p["hosts"]) for side in (f"h{i}", f"d{i}")
                      ] if p["twin"] else []      # created before the reset
        # on udp the configuration's pipeline has no reset: a reset as long fills it
        udp = p["bridge"].get("transport", "eth") != "eth"
        await reset(dut.clk, dut.rst, cycles=CHECKSUM_LAG + 2 if udp else 4)
        self.start_pool()
        t0 = get_sim_time("ns")
        first = await self.assign([("gpu0", "host0"), ("gpu1", "host1")])
        self.record["assign_ns"] = get_sim_time("ns") - t0

        flag = {"stop": False, "ready": 0, "done": 0}

        def main():
            work = self.fault_work if p["faults"] else self.main_work
            out = yield from work(0, first["gpu0"])
            flag["stop"] = True
            return out
        if p["incast_us"]:
            results = await self.run_drivers({i: self.incast_work(i, first[f"gpu{i}"], flag)
                                              for i in range(p["hosts"])})
        else:
            results = await self.run_drivers({0: main(),
                                              1: self.peer_work(1, first["gpu1"], flag)})
        self.record["host0"], self.record["host1"] = results[0], results[1]

        if p["attacks"]:
            await self.attack_phase(first)
        if p["reassign"]:
            await self.reassign_phase()
        await wait_cycles(dut.clk, 50)
        await ReadOnly()
        self.record["counters"] = self.read_counters(dut)
        self.record["network"] = dict(self.network.counters)
        self.record["phy"] = self.network.phy_counters
        self.record["switch"] = self.network.switch.counters.as_dict()
        if p["incast_us"]:
            self.record["incast"] = self.incast_record(results)
        self.record["end_ns"] = get_sim_time("ns")
        self.record["boundary_checked"] = dict(self.boundary.checked)
        self.record["twins"] = {t.name: dict(cycles=t.cycles, seconds=round(t.seconds, 1))
                                for t in self.twins}
        self.drop_objection()

    def incast_record(self, results):
        """The incast's figures (see the module doc)."""
        c, net = self.record["counters"], self.network
        # the queue in the window's second half: the loop's steady state
        # (the first RTTs, before any mark can act, are the same either way)
        samples = np.array(net.samples[len(net.samples) // 2:] or [0])
        span = self.window[1] - self.window[0]
        for i, r in results.items():
            r["window_bytes"] = self.window_bytes[i]
            r["window_gbps"] = self.window_bytes[i] * 8 / span
        total = sum(r["window_gbps"] for r in results.values())
        port = net.switch.ports[net.uplink].as_dict()
        sides = [f"{k}{i}" for i in range(P["hosts"]) for k in ("h", "d")]
        return dict(
            hosts={f"host{i}": dict(r, share=r["window_gbps"] / total if total else 0.0)
                   for i, r in results.items()},
            goodput_gbps=total, window_ns=[self.window[0], self.window[1]],
            queue_p50_bytes=float(np.percentile(samples, 50)),
            queue_p99_bytes=float(np.percentile(samples, 99)),
            queue_max_bytes=int(samples.max()), queue_samples=len(net.samples),
            switch_drops=self.record["switch"]["dropped"],
            uplink=port,
            replays=sum(c.get(f"{s}_{k}", 0) for s in sides
                        for k in ("replays_nak", "replays_timeout")),
            frames_retransmitted=sum(c.get(f"{s}_frames_retransmitted", 0) for s in sides),
            **{k: sum(c.get(f"{s}_{k}", 0) for s in sides)
               for k in ("ce_frames", "cnps_sent", "cnps_received", "throttled_cycles")})

    async def attack_phase(self, first):
        gpu1 = self.gpu_models[1]
        before = gpu1.vram.copy(), bytes(gpu1.regs)
        denied_before = self.denied(0)
        made, answered = (await self.run_drivers({0: self.attacks(
            first["gpu0"], self.templates[1], first["gpu1"])}))[0]
        await wait_cycles(cocotb.top.clk, 2000)     # let the writes get wherever they would
        self.record["attacks"] = dict(
            made=made, denied=self.denied(0) - denied_before, answered=answered,
            gpu1_vram_unchanged=bool(np.array_equal(before[0], gpu1.vram)),
            gpu1_regs_unchanged=before[1] == bytes(gpu1.regs))

    async def reassign_phase(self):
        for gpu in ("gpu0", "gpu1"):
            self.pool.release(gpu)
        swapped = await self.assign([("gpu1", "host0"), ("gpu0", "host1")])

        def work(i, assignment, template):
            gpu = yield from attach(self.pool_links[i], assignment, gpu_settings(self.mp))
            rng = np.random.default_rng(P["seed"] * 77 + i)
            return (yield from saxpy(gpu, self.hosts[i].memory, rng, P["peer_saxpy_n"] or 256))
        results = await self.run_drivers({0: work(0, swapped["gpu1"], self.templates[1]),
                                          1: work(1, swapped["gpu0"], self.templates[0])})
        self.record["reassigned"] = {f"host{i}": r for i, r in results.items()}

    def denied(self, link):
        dut = cocotb.top
        value = int(getattr(dut, f"fabric_link{link}_to_device_denied").value)
        return sum((value >> (32 * r)) & 0xFFFFFFFF for r in Reason
                   if r not in (Reason.FORWARDED, Reason.LOCAL))

    def read_counters(self, dut):
        out = {"unrouted": int(dut.fabric_unrouted.value), "routed": int(dut.fabric_routed.value)}
        for i in range(P["hosts"]):
            for name in ("to_device_forwarded", "to_host_forwarded", "to_device_local",
                         "to_device_unsupported"):
                out[f"link{i}_{name}"] = int(getattr(dut, f"fabric_link{i}_{name}").value)
            for name in ("to_device_denied", "to_host_denied"):
                value = int(getattr(dut, f"fabric_link{i}_{name}").value)
                out[f"link{i}_{name}"] = {r.name: (value >> (32 * r)) & 0xFFFFFFFF
                                          for r in Reason
                                          if r not in (Reason.FORWARDED, Reason.LOCAL)}
            for side in (f"h{i}", f"d{i}"):
                stats = BridgePorts(dut, side).stats()
                for name in ("frames_sent", "replays_nak", "replays_timeout",
                             "frames_retransmitted", "tlps_out", "order_violations",
                             "tx_order_violations", "ce_frames", "cnps_sent",
                             "cnps_received", "throttled_cycles", "rate_current",
                             *RESILIENT_STATS):
                    if name in stats:
                        out[f"{side}_{name}"] = stats[name]
        return out

    # ---------------------------------------------------------------- checks
    def check_phase(self):
        r = self.record
        for twin in self.twins:
            self.logger.info(twin.summary())
            twin.check()
        assert not self.boundary.violations, \
            f"{len(self.boundary.violations)} TLP(s) crossed an access-table boundary; first: " \
            f"{self.boundary.violations[0]}"
        for model in self.hosts + self.gpu_models:
            # host 0's GPU across its cable's outages: its reads answered UR
            errors = [e for e in model.errors if not (
                P["faults"] and model is self.gpu_models[0] and "UR" in str(e))]
            assert not errors, f"{model.name}: {errors[:3]}"
        host0 = r["host0"]
        if "saxpy" in host0:
            assert host0["saxpy"]["bit_exact"], "host 0's SAXPY differs from numpy"
        if "gemm" in host0:
            g = host0["gemm"]
            assert g["within_tolerance"], f"GEMM error {g['max_abs_error']} > {g['atol']}"
        if "saxpy" in r["host1"]:
            assert r["host1"]["saxpy"]["bit_exact"], "host 1's SAXPY differs from numpy"
        if P["congestion"]:
            assert r["host1"]["round_trips"] > 0, "host 1 made no congestion traffic"
        if P["attacks"]:
            a = r["attacks"]
            assert a["made"] > 0 and a["denied"] == a["made"] and not a["answered"], a
            assert a["gpu1_vram_unchanged"] and a["gpu1_regs_unchanged"], a
        if P["reassign"]:
            for name, result in r["reassigned"].items():
                assert result["bit_exact"], f"{name}'s SAXPY on its new GPU differs"
        c = r["counters"]
        for i in range(P["hosts"]):
            for side in (f"h{i}", f"d{i}"):     # both checkers of each bridge
                assert c[f"{side}_order_violations"] == c[f"{side}_tx_order_violations"] == 0, c
        if P["net"]["ber"] == 0:            # no frame lost but to the cable's outages
            fine = ("frames", "bits", "delivered", "bytes") + \
                (("link_down",) if P["faults"] else ())
            assert not any(v for k, v in r["phy"].items() if k not in fine), r["phy"]

    def report_phase(self):
        self.logger.info(json.dumps({k: v for k, v in self.record.items() if k != "params"},
                                    default=str)[:4000])
        if P["report"]:
            with open(P["report"], "w") as f:
                json.dump(self.record, f, indent=1, default=str)


@pyuvm.test()
class E2eRun(E2eTest):
    """The end-to-end run, as the parameters choose."""
