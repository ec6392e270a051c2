"""The local slot: host <-> PCIe link <-> PCIe switch <-> two GPUs.

:func:`run_local_slot` is a pure function of ``(params, seed)`` that builds
the system (:func:`build_local_slot`), runs one driver generator that brings
the GPUs up and measures, and returns a JSON-ready record:

* ``mmio_read_latency_ns``: 4-byte reads of a BAR0 register, one at a time;
* ``dma``: for each size, the GPU's DMA reading host memory (``read``,
  host -> VRAM) and writing it (``write``, VRAM -> host); ``ns`` runs from the
  driver's first MMIO write of the command to the MSI-X arriving at the host,
  ``engine_ns`` (reads only) from the GPU starting the command to its last
  completion (posted writes are handed to the link at once: the MSI-X
  follows the last one, so ``ns`` is the measure for writes);
* ``saxpy`` and ``gemm``: end to end (inputs copied in by DMA, the kernel,
  the result copied back), with the result checked against numpy.

This is the baseline that the disaggregated path (bridges and a network in
place of the host <-> switch link) is compared against. Every number the
models use is a parameter (``DEFAULTS``); docs/models-device.md gives their
sources.
"""

from collections import namedtuple

import numpy as np

from .events import EventKernel, Fabric, PcieLink
from .gpu import GpuEndpoint, Opcode
from .host import (
    Host, Now, bring_up, dma_from_vram, dma_to_vram, mmio_read_latency, run_command, walk,
)
from .pcie_switch import PcieSwitch

__all__ = ["DEFAULTS", "LocalSlot", "build_local_slot", "run_local_slot", "run_driver",
           "dma_sizes", "GEMM_RTOL", "gemm_tolerance", "dma_round_trip", "saxpy", "gemm", "gemm_resident",
           "BUF_BASE"]

DEFAULTS = dict(
    # links: PCIe Gen3 x16 (8 GT/s, 128b/130b), as a Tesla V100 PCIe card uses
    link_gts=8.0, link_lanes=16, link_latency_ns=20.0,
    # switch: PLX PEX 8747 product brief, cut-through "maximum latency of 100ns"
    switch_latency_ns=100.0,
    # host root complex
    host_read_latency_ns=600.0, host_rcb=64, host_cpl_max=256, cpl_jitter_ns=0.0,
    host_mem_size=64 << 20,
    # what the driver programs into the GPUs
    max_payload=256, max_read_request=512, gpu_rcb=64, ten_bit_tags=False,
    # GPUs
    vram_size=64 << 20, bar0_64bit=False, gpu_cfg_ns=100.0, gpu_mmio_read_ns=300.0,
    gpu_vram_read_ns=500.0, gpu_command_ns=1000.0, gpu_kernel_launch_ns=2000.0,
    gpu_fp32_gflops=14000.0, gpu_vram_gbps=900.0, max_outstanding=None,
    # workloads
    dma_min=4 << 10, dma_max=16 << 20, quick_dma_max=256 << 10,
    saxpy_n=1 << 20, quick_saxpy_n=1 << 14, gemm_n=256, mmio_probes=8,
)

#: Host buffers start at 1 MiB (below, the switch's reset windows might claim).
BUF_BASE = 1 << 20

LocalSlot = namedtuple("LocalSlot", "fabric host switch gpus links params")


def dma_sizes(p, quick=False):
    """4 KiB, 16 KiB, ... up to ``dma_max`` (``quick_dma_max`` when quick)."""
    top = p["quick_dma_max"] if quick else p["dma_max"]
    sizes, size = [], p["dma_min"]
    while size <= top:
        sizes.append(size)
        size *= 4
    return sizes


def build_local_slot(params=None, seed=1, *, host_link=None):
    """The models and links of the local slot, joined in a fresh Fabric;
    ``host_link``: the channel between the host and the switch instead of a
    PCIe link (a :class:`~tlpoe.models.bridged_link.BridgedLink`: the GPUs
    across the network)."""
    p = dict(DEFAULTS, **(params or {}))
    unknown = set(p) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown parameters: {sorted(unknown)}")
    fabric = Fabric(EventKernel())
    host = Host(mem_size=p["host_mem_size"], read_latency_ns=p["host_read_latency_ns"],
                cpl_jitter_ns=p["cpl_jitter_ns"], seed=seed, rcb=p["host_rcb"],
                cpl_max=p["host_cpl_max"])
    switch = PcieSwitch(2, latency_ns=p["switch_latency_ns"])
    gpus = [GpuEndpoint(name=f"gpu{i}", vram_size=p["vram_size"], bar0_64bit=p["bar0_64bit"],
                        cfg_ns=p["gpu_cfg_ns"], mmio_read_ns=p["gpu_mmio_read_ns"],
                        vram_read_ns=p["gpu_vram_read_ns"], command_ns=p["gpu_command_ns"],
                        kernel_launch_ns=p["gpu_kernel_launch_ns"],
                        fp32_gflops=p["gpu_fp32_gflops"], vram_gbps=p["gpu_vram_gbps"],
                        max_outstanding=p["max_outstanding"])
            for i in range(2)]

    def link(name):
        return PcieLink(p["link_gts"], p["link_lanes"], p["link_latency_ns"], name=name)

    links = [fabric.connect(host, 0, switch, 0, host_link or link("host-switch"))]
    for i, gpu in enumerate(gpus):
        links.append(fabric.connect(switch, i + 1, gpu, 0, link(f"switch-gpu{i}")))
    return LocalSlot(fabric, host, switch, gpus, links, p)


def run_driver(slot, driver, t_ns=None, *, drain=True):
    """Run ``driver`` on the slot's host until it returns, then (``drain``)
    until nothing is in flight (posted writes it left behind have landed);
    the driver's return value."""
    fabric, host = slot.fabric, slot.host
    t = fabric.kernel.now if t_ns is None else t_ns
    fabric.apply(host, host.start(driver, t))
    fabric.kernel.run_until(until=lambda: host.driver_done)
    if not host.driver_done:
        raise RuntimeError("the driver is stuck: no more events and it has not returned")
    if drain:
        fabric.kernel.run_until()
    return host.driver_result


def _gpu_settings(p):
    return dict(max_payload=p["max_payload"], max_read_request=p["max_read_request"],
                rcb=p["gpu_rcb"], ten_bit_tags=p["ten_bit_tags"])


#: fp32 unit roundoff.
EPS32 = 2.0 ** -24
GEMM_RTOL = 0.0


def gemm_tolerance(a, b):
    """The absolute tolerance of an fp32 GEMM against another fp32 GEMM in any
    summation order: each is within k*u*(|A||B|) of the exact product
    (Higham, Accuracy and Stability of Numerical Algorithms, 3.5), so they are
    within 2*k*u*max(|A||B|) of each other."""
    k = a.shape[1]
    return 2 * k * EPS32 * float(np.max(np.abs(a).astype(np.float64) @ np.abs(b)))


def _benchmark(slot, p, rng, quick):
    mem = slot.host.memory
    tree, gpus = yield from bring_up(**_gpu_settings(p))
    t_up = yield Now()
    gpu = gpus[0]
    record = dict(bring_up_ns=t_up, gpus=[
        dict(id=str(f.id), vendor_id=f.vendor_id, device_id=f.device_id,
             class_code=f.class_code, bar_sizes=[b.size for b in f.bars])
        for f in walk(tree) if f.class_code >> 16 == 0x03])
    lat = yield from mmio_read_latency(gpu, p["mmio_probes"])
    record["mmio_read_latency_ns"] = dict(mean=float(np.mean(lat)), min=min(lat), max=max(lat))

    record["dma"] = []
    for size in dma_sizes(p, quick):
        record["dma"] += yield from dma_round_trip(gpu, mem, rng, size, slot.gpus[0])

    n = p["quick_saxpy_n"] if quick else p["saxpy_n"]
    record["saxpy"] = yield from saxpy(gpu, mem, rng, n)
    record["gemm"] = yield from gemm(gpu, mem, rng, p["gemm_n"])
    return record


def dma_round_trip(gpu, mem, rng, size, model=None):
    """Driver: ``size`` random bytes host -> VRAM by the GPU's DMA (``read``)
    and back to another host buffer (``write``); raises if the copy differs.
    Returns one record per direction (``engine_ns`` from the GPU ``model``'s
    command log, when given, for reads)."""
    src, dst = BUF_BASE, BUF_BASE + size
    mem[src:src + size] = rng.integers(0, 256, size, dtype=np.uint8)
    mem[dst:dst + size] = 0
    records = []
    for direction, run in (("read", lambda: dma_to_vram(gpu, src, 0, size)),
                           ("write", lambda: dma_from_vram(gpu, 0, dst, size))):
        t0, t1 = yield from run()
        engine = None
        if model is not None and direction == "read":
            _, start, end = model.command_log[-1]
            engine = end - start
        records.append(dict(direction=direction, bytes=size, ns=t1 - t0,
                            gbytes_per_s=size / (t1 - t0), engine_ns=engine))
    if not np.array_equal(mem[src:src + size], mem[dst:dst + size]):
        raise AssertionError(f"DMA round trip of {size} bytes corrupted the data")
    return records


def saxpy(gpu, mem, rng, n):
    """Driver: y' = alpha*x + y on ``n`` random fp32 by DMA in, the kernel,
    DMA out; ``bit_exact`` against numpy."""
    x = rng.standard_normal(n, dtype=np.float32)
    y = rng.standard_normal(n, dtype=np.float32)
    alpha = np.float32(rng.standard_normal())
    hx, hy = BUF_BASE, BUF_BASE + 4 * n
    mem[hx:hx + 4 * n] = x.view(np.uint8)
    mem[hy:hy + 4 * n] = y.view(np.uint8)
    mem[hy + 4 * n:hy + 8 * n] = 0
    t0 = yield Now()
    yield from dma_to_vram(gpu, hx, 0, 4 * n)
    yield from dma_to_vram(gpu, hy, 4 * n, 4 * n)
    yield from run_command(gpu, Opcode.SAXPY, a=0, b=4 * n, size=n, alpha=float(alpha))
    yield from dma_from_vram(gpu, 4 * n, hy + 4 * n, 4 * n)
    t1 = yield Now()
    result = mem[hy + 4 * n:hy + 8 * n].view(np.float32)
    expected = alpha * x + y
    return dict(n=n, ns=t1 - t0, bit_exact=bool(np.array_equal(result.view(np.uint32),
                                                               expected.view(np.uint32))))


def gemm(gpu, mem, rng, n):
    """Driver: C = A @ B of random ``n`` x ``n`` fp32, in and out by DMA;
    ``within_tolerance`` of numpy's by :func:`gemm_tolerance`."""
    a = rng.uniform(-1, 1, (n, n)).astype(np.float32)
    b = rng.uniform(-1, 1, (n, n)).astype(np.float32)
    size = 4 * n * n
    ha, hb, hc = BUF_BASE, BUF_BASE + size, BUF_BASE + 2 * size
    mem[ha:ha + size] = a.view(np.uint8).ravel()
    mem[hb:hb + size] = b.view(np.uint8).ravel()
    mem[hc:hc + size] = 0
    t0 = yield Now()
    yield from dma_to_vram(gpu, ha, 0, size)
    yield from dma_to_vram(gpu, hb, size, size)
    yield from run_command(gpu, Opcode.GEMM, a=0, b=size, c=2 * size, size=n, n=n, k=n)
    yield from dma_from_vram(gpu, 2 * size, hc, size)
    t1 = yield Now()
    c = mem[hc:hc + size].view(np.float32).reshape(n, n)
    ref = a @ b
    atol = gemm_tolerance(a, b)
    return dict(n=n, ns=t1 - t0, max_abs_error=float(np.max(np.abs(c - ref))), atol=atol,
                within_tolerance=bool(np.allclose(c, ref, rtol=GEMM_RTOL, atol=atol)))


def gemm_resident(gpu, n):
    """Driver: one ``n`` x ``n`` x ``n`` GEMM on operands already in VRAM
    (as a model's weights and activations stay there between kernels):
    the command, the kernel, the MSI-X. Returns ``n`` and ``ns``."""
    size = 4 * n * n
    base = gpu.vram_size - 3 * size       # the top of VRAM, clear of the copies' buffers
    if base < 0:
        raise ValueError(f"a {n}x{n} GEMM needs {3 * size} bytes of VRAM, the GPU has "
                         f"{gpu.vram_size}")
    t0, t1 = yield from run_command(gpu, Opcode.GEMM, a=base, b=base + size, c=base + 2 * size,
                                    size=n, n=n, k=n)
    return dict(n=n, ns=t1 - t0)


def run_local_slot(params=None, seed=1, *, quick=False):
    """Build the local slot, run the benchmark driver, return the record."""
    slot = build_local_slot(params, seed)
    p = slot.params
    rng = np.random.default_rng(seed)
    results = run_driver(slot, _benchmark(slot, p, rng, quick))
    return dict(
        system="local_slot", seed=seed, quick=quick, params=p, **results,
        events=slot.fabric.kernel.events_run, end_ns=slot.fabric.kernel.now,
        switch_counters=dict(slot.switch.counters),
        link_tlps={link.name: list(link.tlps) for link in slot.links},
    )


if __name__ == "__main__":      # pragma: no cover
    import json
    import sys
    print(json.dumps(run_local_slot(quick="--quick" in sys.argv), indent=1))
