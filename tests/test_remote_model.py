"""The translation model with the real host driver: a host brings up a GPU
that sits in a shared chassis, through a :class:`LinkTranslator`, over the
events kernel. Models only (no RTL).

    Host --[TranslatingChannel: LinkTranslator]--> PcieSwitch --> GPU0, GPU1

The chassis was enumerated by its own manager (the switch's buses and
windows set, the GPUs' real BARs programmed by Type 0 writes); the pool
manager assigned GPU0 to the host. The host's driver
(:func:`~tlpoe.models.host.bring_up`) must then find exactly its one GPU,
size its BARs from the shadows, place them where the pool put the windows,
and use it (MMIO, DMA both ways, MSI-X), while the GPU's real BARs stay where
the chassis put them.
"""

import numpy as np
import pytest

from tlpoe.models.events import EventKernel, Fabric
from tlpoe.models.gpu import GPU_ID, GpuEndpoint, Reg
from tlpoe.models.host import (Host, MemRead, bring_up, dma_from_vram, dma_to_vram,
                               mmio_read_latency, walk)
from tlpoe.models.pcie_switch import PcieSwitch
from tlpoe.models.tlp import PcieId, Tlp
from tlpoe.models.translate import LinkTranslator, Reason
from tlpoe.sim.pool import Bar, Gpu, HostLink, ModelWriter, PoolManager

MIB = 1 << 20
BAR0_SIZE, VRAM_SIZE = 64 << 10, 16 * MIB
#: Where the chassis' manager put each GPU: (Bus/Device/Function, BAR0, VRAM BAR).
CHASSIS = [(0x0300, 0xC000_0000, 0x38_0000_0000), (0x0400, 0xC010_0000, 0x38_0100_0000)]
LINK = HostLink("hostA", 0, host_rid=0x0000, local_rid=0x0010,
                aperture=(0x9000_0000, 256 * MIB), aperture64=(0x50_0000_0000, 1 << 32),
                host_bus=5)
LATENCY_NS = 1000.0          # host to the device-side bridge, one way


class TranslatingChannel:
    """The host's link into the chassis, as a :class:`~tlpoe.models.events.Fabric`
    channel (end 0 the host, end 1 the chassis' PCIe switch): what the host
    sends goes through ``translator.from_host`` (to the chassis, and/or a
    completion the bridge makes, back to the host), what the chassis sends
    through ``translator.from_chassis``. Each way takes ``latency_ns``;
    denied TLPs are kept in ``denied`` as ``(direction, TLP, Reason)``."""

    def __init__(self, translator, latency_ns=LATENCY_NS):
        self.translator, self.latency_ns = translator, latency_ns
        self.denied = []
        self.fabric = self.ends = None

    def _deliver(self, end, tlp, t_ns):
        model, port = self.ends[end]
        self.fabric.kernel.schedule(t_ns, self.fabric.deliver, model, port, tlp, t_ns)

    def transmit(self, end, tlp, t_ns):
        t = t_ns + self.latency_ns
        if end == 0:
            out, reply, why = self.translator.from_host(tlp)
            if out is not None:
                self._deliver(1, out, t)
            if reply is not None:
                self._deliver(0, reply, t + self.latency_ns)
            direction = "to_device"
        else:
            out, why = self.translator.from_chassis(tlp)
            if out is not None:
                self._deliver(0, out, t)
            direction = "to_host"
        if why not in (Reason.FORWARDED, Reason.LOCAL):
            self.denied.append((direction, tlp, why))


def enumerate_chassis(switch, gpus):
    """The chassis manager's work: buses and windows of the switch, and the
    GPUs' real BARs, written by Type 0 configuration writes (so each GPU
    also captures its bus number)."""
    switch.set_bus_numbers(0, 1, 2, 1 + len(gpus) + 1)
    switch.enable(0)
    for port, (gpu, (bdf, bar0, vram)) in enumerate(zip(gpus, CHASSIS), start=1):
        bus = bdf >> 8
        switch.set_bus_numbers(port, 2, bus, bus)
        switch.set_memory_window(port, bar0 & ~(MIB - 1), (bar0 & ~(MIB - 1)) + MIB - 1)
        switch.set_memory_window(port, vram, vram + VRAM_SIZE - 1, prefetchable=True)
        switch.enable(port)
        for register, value in ((4, bar0), (5, vram & 0xFFFF_FFFF), (6, vram >> 32)):
            gpu.receive(Tlp.cfg_write(PcieId.from_int(bdf), register,
                                      value.to_bytes(4, "little")), 0.0)


def remote_slot():
    fabric = Fabric(EventKernel())
    host = Host(root_bus=LINK.host_bus, read_latency_ns=600.0)
    switch = PcieSwitch(2)
    gpus = [GpuEndpoint(name=f"gpu{i}", vram_size=VRAM_SIZE, bar0_size=BAR0_SIZE)
            for i in range(2)]
    enumerate_chassis(switch, gpus)
    for gpu in gpus:
        gpu.counters.clear()         # from here on: what the host caused
    writer = ModelWriter()
    pool = PoolManager([Gpu(f"gpu{i}", bdf, (Bar(0, bar0, BAR0_SIZE, bits64=False,
                                                 prefetchable=False),
                                             Bar(1, vram, VRAM_SIZE, bits64=True,
                                                 prefetchable=True)))
                        for i, (bdf, bar0, vram) in enumerate(CHASSIS)], [LINK], writer)
    assignment = pool.assign("gpu0", "hostA")
    translator = LinkTranslator(writer.table(LINK))
    channel = fabric.connect(host, 0, switch, 0, TranslatingChannel(translator))
    for port, gpu in enumerate(gpus, start=1):
        fabric.connect(switch, port, gpu, 0, _Wire())
    return fabric, host, switch, gpus, assignment, translator, channel


class _Wire:
    """A PCIe link inside the chassis: a fixed 100 ns."""

    def transmit(self, end, tlp, t_ns):
        model, port = self.ends[1 - end]
        self.fabric.kernel.schedule(t_ns + 100.0, self.fabric.deliver, model, port, tlp,
                                    t_ns + 100.0)


def run(fabric, host, driver):
    fabric.apply(host, host.start(driver, fabric.kernel.now))
    fabric.kernel.run_until(until=lambda: host.driver_done)
    assert host.driver_done, "the driver is stuck: a request never completed"
    fabric.kernel.run_until()
    return host.driver_result


@pytest.fixture(scope="module")
def brought_up():
    fabric, host, switch, gpus, assignment, translator, channel = remote_slot()
    tree, handles = run(fabric, host, bring_up(root_bus=LINK.host_bus, **LINK.resources()))
    return dict(fabric=fabric, host=host, gpus=gpus, assignment=assignment,
                translator=translator, channel=channel, tree=tree, handles=handles)


def test_the_host_finds_exactly_its_gpu_and_the_empty_slots_answer_ur(brought_up):
    tree, a, translator = brought_up["tree"], brought_up["assignment"], brought_up["translator"]
    found = list(walk(tree))
    assert [int(f.id) for f in found] == [a.host_bdf] == [0x0500]
    gpu0 = brought_up["gpus"][0]
    assert (found[0].vendor_id, found[0].device_id) == (gpu0.cfg.get(0, 2), gpu0.cfg.get(2, 2))
    # the 31 other device numbers of the host's bus: UR, none reached the chassis
    denied = brought_up["channel"].denied
    assert [why for _, _, why in denied] == [Reason.FUNCTION] * 31
    assert translator.counters["to_device_unsupported"] == 31
    assert translator.counters["to_device_denied"][Reason.FUNCTION] == 31
    assert sum(translator.counters["to_host_denied"]) == 0


def test_bars_are_sized_from_the_shadows_and_placed_where_the_windows_are(brought_up):
    f = next(walk(brought_up["tree"]))
    a, gpu = brought_up["assignment"], brought_up["handles"][0]
    assert [(b.offset, b.size, b.bits64, b.prefetchable) for b in f.bars] == [
        (0x10, BAR0_SIZE, False, False), (0x14, VRAM_SIZE, True, True)]
    assert (gpu.bar0, gpu.vram) == (a.bar_bases[0], a.bar_bases[1])
    assert (gpu.bar0, gpu.vram) == (0x9000_0000, 0x50_0000_0000)
    translator = brought_up["translator"]
    # BAR0 32-bit; BAR1 64-bit prefetchable (flags 0xC), its upper half in BAR2
    assert translator.bars(a.host_bdf) == (0x9000_0000, 0xC, 0x50, 0, 0, 0)
    # sizing and placing were all answered by the bridge
    assert translator.counters["to_device_local"] >= 2 * 6 + 3


def test_the_gpus_real_bars_in_the_chassis_are_unchanged(brought_up):
    for gpu, (bdf, bar0, vram) in zip(brought_up["gpus"], CHASSIS):
        assert (gpu.bar0_base(), gpu.vram_base()) == (bar0, vram)
        assert int(gpu.requester_id) == bdf
    gpu0, gpu1 = brought_up["gpus"]
    assert gpu0.memory_enabled and gpu0.bus_master       # the Command register passed
    assert gpu0.max_payload == 256 and gpu0.max_read_request == 512   # Device Control too
    assert not gpu1.memory_enabled                          # the other host's GPU: untouched
    assert not any(k.startswith("rx_Cfg") for k in gpu1.counters)


def test_mmio_and_dma_work_through_the_translator(brought_up):
    fabric, host, gpu = brought_up["fabric"], brought_up["host"], brought_up["handles"][0]
    rng = np.random.default_rng(7)
    size, src, dst = 16 << 10, 0x10_0000, 0x20_0000
    host.memory[src:src + size] = rng.integers(0, 256, size, dtype=np.uint8)

    def driver():
        ident = yield MemRead(gpu.bar0 + Reg.ID, 4)
        latencies = yield from mmio_read_latency(gpu, 4)
        yield from dma_to_vram(gpu, src, 0x1000, size)
        yield from dma_from_vram(gpu, 0x1000, dst, size)
        return ident, latencies

    ident, latencies = run(fabric, host, driver())
    assert int.from_bytes(ident, "little") == GPU_ID
    assert len(latencies) == 4 and min(latencies) > 2 * LATENCY_NS
    gpu0 = brought_up["gpus"][0]
    assert np.array_equal(gpu0.vram[0x1000:0x1000 + size], host.memory[src:src + size])
    assert np.array_equal(host.memory[dst:dst + size], host.memory[src:src + size])
    assert not gpu0.errors and not host.errors
    assert host.counters["interrupts"] == 2
    translator = brought_up["translator"]
    assert sum(translator.counters["to_host_denied"]) == 0
    assert translator.counters["to_device_denied"][1:] == [0, 31, 0, 0, 0]
