"""``make e2e``: a GPU on a local slot against the same GPU across the bridge.

Two systems run the same host driver (:mod:`tlpoe.models.host`) on the same
GPU model:

* **local**: host -> PCIe Gen3 x16 -> PCIe switch -> GPU, all models
  (:func:`tlpoe.models.system.build_local_slot`);
* **disaggregated**: host -> PCIe -> host bridge (RTL) -> 100 GbE NIC ->
  Ethernet switch -> chassis NIC -> device bridge (RTL) -> device fabric
  (RTL: translation and access control) -> PCIe -> the chassis' PCIe switch
  -> GPU: the end-to-end bench (``tb/test_e2e.py``) on Verilator. Its
  latencies are the RTL's cycles at the configured clock plus the models'
  link, network and device times.

The workloads: MMIO read latency (4-byte BAR0 reads, one at a time), DMA
read (host -> VRAM, the GPU reads host memory) and write (VRAM -> host)
from 4 KiB to 16 MiB, SAXPY and GEMM end to end (copies in, kernel, copy
out). Each disaggregated point is its own simulation, a pure function of
its parameters and seed, run in a process pool (``--jobs``). DMA sizes
above the largest simulated one are **extrapolated** from the two largest
simulated sizes (a fixed cost plus size over the steady bandwidth) and
marked ``simulated: false``.

The incast (``--incast``, on by default, off with ``--quick``): both hosts
copy into their GPUs at once through the chassis' one uplink, the bridges
on ``udp`` with ``ecn``, once with the switch marking ECN-CE and once
without; the report gives each run's goodput and the hosts' shares, the
uplink queue's p50/p99/max, the switch's drops, the frames resent and the
marks and CNPs, and checks the issue's acceptance (:func:`incast_verdict`;
a failed check makes the exit status 1).

Outputs in ``build/reports/e2e/``: ``e2e.json`` (``rows``: for each
workload ``workload``, ``local_ns``, ``disaggregated_ns``,
``overhead_fraction``, ``simulated``, ``under_dxpu_10pct``, ``why``; plus
the runs' records and the parameters; ``incast``: its runs and verdict),
``e2e.md``, ``overhead.png`` and
``dma_bandwidth.png``. ``--quick`` (in ``make test``) runs one small
point. Exits 1 when a run fails, 2 on a bad argument.
"""

import argparse
import functools
import json
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

__all__ = ["WIDTH", "FULL_WIDTH", "BRIDGE", "RESILIENT", "BUILD_KEY", "CLOCK_NS", "NET", "bridge_params",
           "build_key", "system", "run_system", "clock_period_ns",
           "local_point", "disaggregated_point", "rows", "main", "DXPU_OVERHEAD"]

#: The tests' width (256 bits at 250 MHz: 64 Gb/s, below the 100 GbE line)
#: and the full report's (512 bits: the 100 GbE configuration).
WIDTH, FULL_WIDTH = 256, 512
CLOCK_NS = 4.0                     # 250 MHz
#: The bridges of the end-to-end system: 12-bit sequences and a window of 32
#: frames (48 KiB at MTU 1500), and receive queues of 64 KiB and 127 TLPs
#: per class: both above the bandwidth-delay product of a 100 GbE round
#: trip of about 2.5 us (31 KiB), so neither the window nor the credits
#: hold a bulk transfer back. (The Bridge's default, 8 KiB per class, caps
#: it near 3 GB/s at this round trip.) And resilient (:data:`RESILIENT`).
QUEUE_BYTES = 64 << 10
#: The resilient bridges (docs/link-state.md): the link state machine (its
#: default KEEPALIVE every 10 us, down after 30 us of silence at 250 MHz)
#: and the completion tracker, here containing after 25 ticks of 1024
#: cycles DOWN (102 us) and timing a completion out after 250 (1.02 ms).
RESILIENT = dict(link_state=True, tracker=True, hold_time=25, cpl_timeout=250)


def bridge_params(width=WIDTH):
    return dict(window=32, seq_bits=12, queue_tlps=127, queue_depth=QUEUE_BYTES // (width // 8),
                **RESILIENT)


def build_key(width=WIDTH, extra=None):
    """The Verilog build's name: the width, and ``extra`` (Bridge
    parameters beyond :func:`bridge_params`) spelled out."""
    tail = "".join(f"-{k}" + ("" if v is True else f"{v}")
                   for k, v in sorted((extra or {}).items()))
    return f"system-w{width}-win32-q64k-csr-resilient{tail}"


BRIDGE = bridge_params()
BUILD_KEY = build_key()
#: The network: 100 GbE, 250 ns per hop (20 m of fibre, about 100 ns, plus
#: PCS/FEC), a cut-through switch with 300 ns forwarding latency.
NET = {"rate_gbps": 100, "cable_ns": 250.0, "ber": 0.0, "switch_mode": "cut-through",
       "switch_latency_ns": 300.0, "switch_queue_bytes": 262144, "mac_fifo_bytes": 4096}
SEED = 20261126
#: DxPU (B. He et al., "DxPU: Large Scale Disaggregated GPU Pools in the
#: Datacenter", ACM TACO, doi:10.1145/3617995; arXiv:2310.04648) reports an
#: overhead under 10% against native GPU servers "in most of user scenarios"
#: (AI workloads).
DXPU_OVERHEAD = 0.10

SIZES = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20]
#: name -> bench parameters of one disaggregated point (full mode)
POINTS = {
    "latency": dict(mmio_probes=8, dma_sizes=[4 << 10, 16 << 10, 64 << 10]),
    "dma256k": dict(mmio_probes=1, dma_sizes=[256 << 10]),
    "dma1m": dict(mmio_probes=1, dma_sizes=[1 << 20]),
    "saxpy": dict(mmio_probes=1, dma_sizes=[], saxpy_n=1 << 16),
    "gemm": dict(mmio_probes=1, dma_sizes=[], gemm_n=256),
    # the compute-bound case: a GEMM on operands resident in VRAM
    "gemm_resident": dict(mmio_probes=1, dma_sizes=[], gemm_resident_n=1024),
}
#: The incast (issue 20): both hosts copy into their GPUs at once, their
#: host bridges' completions meeting in the chassis' one uplink. On 25 GbE:
#: at 256 bits and 250 MHz the chassis' one PCIe port of the fabric carries
#: 64 Gb/s, less than a 100 GbE uplink, so on 100 GbE the fabric, not the
#: switch, would be the bottleneck (measured: 27.6 Gb/s a host, the
#: switch's queue never past 16 KB); on 25 GbE two hosts' 25 Gb/s meet in
#: one 25 Gb/s uplink, 2:1. A shallow switch buffer (24 KiB on the uplink:
#: less than the two hosts' traffic queues there without ECN) and, with
#: ECN, step marking at 6 KiB; the bridges on ``udp`` with ``ecn``,
#: DCQCN's timers scaled to a round trip of a few microseconds and a run of
#: a few hundred (a CNP at most every 4 us, alpha and the increase timer
#: every 2 us, g 1/256, additive increase 0.5% and hyper increase 1.5% of
#: the line; the byte counter out of play), as a sweep of the fluid model
#: (``models/dcqcn.py``, two senders into one line, the CNP 2.5 us late)
#: found them: the line full, the queue's p99 near the threshold. With the
#: paper's timers (55 us) the loop would not settle in such a run.
INCAST_NET = {**NET, "rate_gbps": 25}
INCAST_QUEUE_BYTES = 24 << 10
INCAST_ECN_BYTES = 6 << 10
INCAST_CFG = dict(cnp_interval=1000, alpha_timer=500, increase_timer=500,
                  byte_counter=10_000_000, g_shift=8, fast_recovery=5, ai_rate=330,
                  hai_rate=1000, min_rate=1024)
INCAST_US, QUICK_INCAST_US = 400, 120
#: Each copy: large enough that a host's copies run near its share of the
#: line (at 12.5 Gb/s the command's fixed costs are a sixth of a 64 KiB
#: copy), small enough that a copy under congestion collapse (no ECN:
#: go-back-N resending whole windows into a full buffer) still ends.
INCAST_BYTES = 64 << 10
#: --quick: one run (one bring-up, the costliest part of a short run) with
#: every measurement the report's rows need
QUICK_POINTS = {
    "latency": dict(mmio_probes=4, dma_sizes=[4 << 10, 16 << 10], saxpy_n=1024),
}


def system(width=WIDTH, extra=None):
    """The disaggregated RTL of the end-to-end bench: two host links, the
    fabric's tables behind its CSRs; the device bridges' TLP ports, which
    meet the fabric inside, also shown as outputs ``d{i}_tlp_in`` and
    ``d{i}_tlp_out`` (:class:`~tlpoe.tb.tops.Tapped`) for their cycle twins.
    ``extra``: more Bridge parameters (or others)."""
    from ..rtl.bridge.system import DisaggregatedTop
    from ..tb.tops import Tapped
    top = DisaggregatedTop(width, hosts=2, fabric_csr=True,
                           **bridge_params(width), **(extra or {}))
    return Tapped(top, {f"d{i}_{port}": (lambda t, i=i, port=port:
                                         getattr(t.device_bridges[i], port))
                        for i in range(2) for port in ("tlp_in", "tlp_out")})


def run_system(sim, name, params, report_dir, width=WIDTH, clock_ns=CLOCK_NS, extra=None):
    """One end-to-end run (``tb/test_e2e.py``) named ``name``, the bridges
    clocked every ``clock_ns`` and built with ``extra`` parameters besides
    :func:`bridge_params`; returns its record.
    ``TWIN=1`` in the environment runs each bridge's cycle twin
    (``params["twin"]``)."""
    from .runner import run_cocotb
    report = Path(report_dir) / f"{name}.json"
    if os.environ.get("TWIN", "0") not in ("", "0"):
        params = {**params, "twin": True}
    run_cocotb(sim, functools.partial(system, width, extra), "system", "tlpoe.tb.test_e2e",
               build_key=build_key(width, extra), testcase="E2eRun", seed=SEED,
               run_name=f"{name}-w{width}" if width != WIDTH else name,
               params={"width": width, "clock_ns": clock_ns, "report": str(report),
                       "bridge": {**bridge_params(width), **(extra or {})}, **params})
    return json.loads(report.read_text())


def _point_params(point):
    return {**dict(net=NET, attacks=False, reassign=False, peer_saxpy_n=0, saxpy_n=0, gemm_n=0,
                   gemm_resident_n=0,
                   models={"vram_size": 32 << 20, "host_mem_size": 32 << 20}), **point}


def disaggregated_point(name, point, sim="verilator", width=WIDTH, clock_ns=CLOCK_NS,
                        transport="eth"):
    """Host 0's measurements of one point on the RTL (host 1 idle), the
    bridges on ``transport``."""
    extra = None if transport == "eth" else {"transport": transport}
    with tempfile.TemporaryDirectory() as tmp:
        record = run_system(sim, f"e2e-{name}", _point_params(point), tmp, width, clock_ns,
                            extra)
    return dict(name=name, point=point, host0=record["host0"], end_ns=record["end_ns"],
                counters=record["counters"])


def line_bytes(clock_ns, net=NET):
    """The line's bytes per bridge cycle, in 1/256 (the rate limiter's
    ``line_bytes``): 100 GbE at 250 MHz is 50 bytes, 12,800."""
    return round(net["rate_gbps"] * clock_ns / 8 * 256)


#: The incast's Bridge parameters besides :func:`bridge_params` (the line's
#: bytes per cycle are a register: ``line_bytes`` in the run's ``cfg``).
INCAST_EXTRA = {"transport": "udp", "ecn": True}


def incast_point(ecn, sim="verilator", width=WIDTH, clock_ns=CLOCK_NS, incast_us=INCAST_US,
                 report_dir=None, incast_bytes=INCAST_BYTES):
    """One incast run (``ecn``: the switch marks; else the same bridges, no
    marks: DCQCN never acts); returns the run's ``incast`` record with
    ``ecn`` and the bandwidth-delay product (bytes) of the network."""
    net = {**INCAST_NET, "switch_queue_bytes": INCAST_QUEUE_BYTES,
           "ecn_threshold_bytes": INCAST_ECN_BYTES if ecn else None}
    params = _point_params(dict(mmio_probes=1, dma_sizes=[], incast_us=incast_us, net=net,
                                cfg={**INCAST_CFG, "line_bytes": line_bytes(clock_ns, net)},
                                incast_bytes=incast_bytes))
    # 10-bit tags: the GPUs keep enough reads outstanding for a round trip
    # across the network (with 32, each host's copies ran at 28 Gb/s)
    params["models"] = {**params["models"], "ten_bit_tags": True}
    name = f"e2e-incast-{'ecn' if ecn else 'no-ecn'}"
    with tempfile.TemporaryDirectory() as tmp:
        record = run_system(sim, name, params, report_dir or tmp, width, clock_ns,
                            INCAST_EXTRA)
    bdp = net["rate_gbps"] * net_round_trip_ns(net) / 8
    return dict(record["incast"], ecn=ecn, bdp_bytes=round(bdp),
                threshold_bytes=INCAST_ECN_BYTES if ecn else None,
                queue_bytes=INCAST_QUEUE_BYTES, end_ns=record["end_ns"])


def incast_verdict(runs):
    """The incast's acceptance (issue 20) from its two runs
    (:func:`incast_point`'s records): with ECN no switch drop, the p99
    queue below the marking threshold plus one bandwidth-delay product, the
    hosts' shares within 10% of each other; without ECN the drops and
    replays that it prevents. Returns ``{check: (passed, what)}``."""
    out = {}
    by = {r["ecn"]: r for r in runs}
    if True in by:
        r = by[True]
        shares = [h["share"] for h in r["hosts"].values()]
        limit = r["threshold_bytes"] + r["bdp_bytes"]
        out["ecn: no switch drop"] = (r["switch_drops"] == 0, f"{r['switch_drops']} dropped")
        out["ecn: p99 queue below threshold + BDP"] = (
            r["queue_p99_bytes"] < limit, f"p99 {r['queue_p99_bytes']:,.0f} B, limit {limit:,} B")
        spread = max(shares) - min(shares)
        out["ecn: shares within 10%"] = (spread <= 0.10 * max(shares),
                                         "shares " + ", ".join(f"{x:.3f}" for x in shares))
        out["ecn: marks echoed and acted on"] = (
            r["cnps_received"] > 0 and r["throttled_cycles"] > 0,
            f"{r['cnps_sent']} CNPs sent, {r['cnps_received']} received")
    if False in by:
        r = by[False]
        out["no ecn: drops and replays"] = (
            r["switch_drops"] > 0 and r["frames_retransmitted"] > 0,
            f"{r['switch_drops']} dropped, {r['frames_retransmitted']} retransmitted")
    return out


def _incast_markdown(runs, verdict):
    lines = ["", "## Incast: both hosts into the chassis uplink", "",
             f"Both hosts copy {INCAST_BYTES >> 10} KiB buffers into their GPUs back to back; "
             f"their host bridges' completions share the chassis' one {INCAST_NET['rate_gbps']} "
             "GbE uplink (2:1). Goodput: the completion bytes that reach each GPU while both "
             "copy; the queue: sampled every 100 ns in that window's second half. "
             f"The switch's uplink queue holds {INCAST_QUEUE_BYTES >> 10} KiB; with ECN it marks "
             f"CE above {INCAST_ECN_BYTES >> 10} KiB and the bridges run DCQCN "
             "(docs/transports.md).", "",
             "| ECN | goodput Gb/s | host shares | queue p50 B | queue p99 B | queue max B | "
             "switch drops | frames resent | replays | CE marks | CNPs |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(runs, key=lambda r: not r["ecn"]):
        shares = ", ".join(f"{h['share']:.3f}" for h in r["hosts"].values())
        lines.append(f"| {'on' if r['ecn'] else 'off'} | {r['goodput_gbps']:.1f} | {shares} | "
                     f"{r['queue_p50_bytes']:,.0f} | {r['queue_p99_bytes']:,.0f} | "
                     f"{r['queue_max_bytes']:,} | {r['switch_drops']} | "
                     f"{r['frames_retransmitted']} | {r['replays']} | "
                     f"{r['uplink'].get('ecn_marked', 0)} | {r['cnps_sent']} |")
    lines += ["", "| check | | measured |", "|---|---|---|"]
    lines += [f"| {k} | {'pass' if ok else 'FAIL'} | {what} |"
              for k, (ok, what) in verdict.items()]
    return "\n".join(lines) + "\n"


def local_point(sizes, saxpy_n, gemm_n, probes, seed=1, gemm_resident_n=0):
    """The same measurements on the local slot (models only)."""
    from ..models.host import Now, bring_up, mmio_read_latency
    from ..models.system import (
        _gpu_settings, build_local_slot, dma_round_trip, gemm, gemm_resident, run_driver, saxpy,
    )
    slot = build_local_slot({"vram_size": 64 << 20, "host_mem_size": 64 << 20}, seed)
    rng = np.random.default_rng(seed)

    def driver():
        _, gpus = yield from bring_up(**_gpu_settings(slot.params))
        gpu, mem = gpus[0], slot.host.memory
        yield Now()
        lat = yield from mmio_read_latency(gpu, probes)
        out = dict(mmio_read_latency_ns=dict(mean=float(np.mean(lat)), min=min(lat),
                                             max=max(lat)), dma=[])
        for size in sizes:
            out["dma"] += yield from dma_round_trip(gpu, mem, rng, size, slot.gpus[0])
        if saxpy_n:
            out["saxpy"] = yield from saxpy(gpu, mem, rng, saxpy_n)
        if gemm_n:
            out["gemm"] = yield from gemm(gpu, mem, rng, gemm_n)
        if gemm_resident_n:
            out["gemm_resident"] = yield from gemm_resident(gpu, gemm_resident_n)
        return out
    return run_driver(slot, driver())


def _dma_ns(record):
    return {(d["direction"], d["bytes"]): d["ns"] for d in record.get("dma", [])}


def _extrapolate(dma, direction, size):
    """ns for ``size`` from the two largest simulated sizes of ``direction``."""
    known = sorted((s, ns) for (d, s), ns in dma.items() if d == direction)
    (s1, t1), (s2, t2) = known[-2:]
    per_byte = (t2 - t1) / (s2 - s1)
    return t2 + per_byte * (size - s2)


def _why(workload, local_ns, remote_ns, net_rtt_ns, width, clock_ns=CLOCK_NS):
    extra = remote_ns - local_ns
    if workload.startswith("mmio"):
        return (f"a read waits one round trip: +{extra:.0f} ns, of which about "
                f"{net_rtt_ns:.0f} ns is the network (cables, PCS/FEC, switch) and the rest "
                f"the two bridges, serialisation and the second PCIe hop")
    if workload.startswith("gemm_resident"):
        return (f"compute-bound: the operands stay in VRAM, so only the command, the "
                f"doorbell and the MSI-X cross the network (+{extra:.0f} ns) while the "
                f"kernel runs as locally: DxPU's AI workloads are of this kind")
    if workload.startswith("dma"):
        if extra / local_ns > DXPU_OVERHEAD and remote_ns < 20_000:
            return (f"small transfer: the DMA's fixed cost (doorbell, the reads' round trips, "
                    f"MSI-X) grows by the network round trips (+{extra:.0f} ns)")
        if extra / local_ns > DXPU_OVERHEAD:
            datapath = width / 8 / clock_ns
            line = NET["rate_gbps"] / 8
            if datapath < line:
                bound = (f"the bridges' {width}-bit datapath at {1000 / clock_ns:.0f} MHz "
                         f"({datapath:.0f} GB/s of TLP beats, less after partial beats)")
            else:
                bound = (f"the {NET['rate_gbps']} GbE line ({line:.1f} GB/s, less Ethernet "
                         f"and bridge framing)")
            return (f"bandwidth-bound: {bound} carries less than PCIe Gen3 x16 "
                    f"(15.75 GB/s)")
        return "the transfer time hides the round trips"
    return ("end to end: copies in and out are most of the time, so it follows the DMA "
            "overhead at these sizes; the kernel itself runs on the GPU as locally")


def rows(local, remote, simulated_max, net_rtt_ns, width=WIDTH, clock_ns=CLOCK_NS):
    """The comparison rows (see the module doc)."""
    out = []

    def add(workload, local_ns, remote_ns, simulated):
        overhead = remote_ns / local_ns - 1
        out.append(dict(workload=workload, local_ns=round(local_ns, 1),
                        disaggregated_ns=round(remote_ns, 1),
                        overhead_fraction=round(overhead, 4), simulated=simulated,
                        under_dxpu_10pct=overhead < DXPU_OVERHEAD,
                        why=_why(workload, local_ns, remote_ns, net_rtt_ns, width, clock_ns)))
    add("mmio_read_4B", local["mmio_read_latency_ns"]["mean"],
        remote["mmio_read_latency_ns"]["mean"], True)
    ldma, rdma = _dma_ns(local), _dma_ns(remote)
    for size in sorted({s for _, s in ldma}):
        for direction in ("read", "write"):
            simulated = (direction, size) in rdma
            if not simulated and size <= simulated_max:
                continue
            ns = rdma[direction, size] if simulated else _extrapolate(rdma, direction, size)
            add(f"dma_{direction}_{_size_name(size)}", ldma[direction, size], ns, simulated)
    for kernel in ("saxpy", "gemm", "gemm_resident"):
        if kernel in remote and kernel in local:
            add(f"{kernel}_{remote[kernel]['n']}", local[kernel]["ns"], remote[kernel]["ns"],
                True)
    return out


def _size_name(size):
    return f"{size >> 20}MiB" if size >= 1 << 20 else f"{size >> 10}KiB"


def _merge(records):
    """One host-0 record from the points' records."""
    merged = dict(dma=[])
    for r in records:
        h = r["host0"]
        if r["name"] == "latency":
            merged["mmio_read_latency_ns"] = h["mmio_read_latency_ns"]
        merged["dma"] += h["dma"]
        for kernel in ("saxpy", "gemm", "gemm_resident"):
            if kernel in h:
                merged[kernel] = h[kernel]
    return merged


def net_round_trip_ns(net=NET):
    """Both ways through the network with no queueing: two hops each way,
    the switch, and a 64-byte frame's serialisation per hop."""
    hop = net["cable_ns"] + (64 + 20) * 8 / net["rate_gbps"]
    return 2 * (2 * hop + net["switch_latency_ns"])


def _plots(out, table, local, remote):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = [r["workload"] for r in table]
    values = [100 * r["overhead_fraction"] for r in table]
    colors = ["tab:green" if r["under_dxpu_10pct"] else "tab:red" for r in table]
    bars = ax.bar(range(len(names)), values, color=colors)
    for bar, r in zip(bars, table):
        if not r["simulated"]:
            bar.set_hatch("//")
    ax.axhline(100 * DXPU_OVERHEAD, color="k", ls="--", lw=1, label="DxPU: 10%")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("overhead vs local slot (%)")
    ax.set_yscale("symlog", linthresh=10)
    ax.set_title("Disaggregated vs local (hatched: extrapolated)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "overhead.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, rec, style in (("local", local, "-"), ("disaggregated", remote, "--")):
        for direction, marker in (("read", "o"), ("write", "s")):
            pts = sorted((d["bytes"], d["bytes"] / d["ns"]) for d in rec["dma"]
                         if d["direction"] == direction)
            if pts:
                ax.plot(*zip(*pts), style, marker=marker, label=f"{label} {direction}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("DMA size (bytes)")
    ax.set_ylabel("GB/s (simulated sizes)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "dma_bandwidth.png", dpi=120)
    plt.close(fig)


def _markdown(table, meta):
    lines = ["# End to end: local slot vs disaggregated", "",
             f"Disaggregated: bridges at {meta['width']} bits, {1000 / meta['clock_ns']:.0f} MHz, "
             f"frames on the `{meta.get('transport', 'eth')}` transport; "
             f"{meta['net']['rate_gbps']} GbE, {meta['net']['cable_ns']:.0f} ns per hop, "
             f"{meta['net']['switch_mode']} switch ({meta['net']['switch_latency_ns']:.0f} ns). "
             f"Local: PCIe Gen3 x16 through the same PCIe switch model. Simulated up to "
             f"{_size_name(meta['simulated_max'])} of DMA; larger sizes are extrapolated "
             f"(simulated: no).", "",
             "| workload | local ns | disaggregated ns | overhead | simulated | under DxPU's 10% | why |",
             "|---|---:|---:|---:|---|---|---|"]
    for r in table:
        lines.append(f"| {r['workload']} | {r['local_ns']:,.0f} | {r['disaggregated_ns']:,.0f} | "
                     f"{100 * r['overhead_fraction']:.1f}% | {'yes' if r['simulated'] else 'no (extrapolated)'} | "
                     f"{'yes' if r['under_dxpu_10pct'] else 'no'} | {r['why']} |")
    lines += ["", "DxPU measured AI training and inference, where kernels run long on data "
              "resident in GPU memory. Our copies-included workloads are small and "
              "transfer-bound, so they show the network's round trips and the line rate; "
              "the resident GEMM shows the compute-bound case."]
    under = [r["workload"] for r in table if r["under_dxpu_10pct"]]
    over = [r["workload"] for r in table if not r["under_dxpu_10pct"]]
    lines += ["", f"Under 10%: {', '.join(under) or 'none'}.", "",
              f"Over 10%: {', '.join(over) or 'none'}.", "",
              "![overhead](overhead.png)", "", "![DMA bandwidth](dma_bandwidth.png)", ""]
    return "\n".join(lines)


def clock_period_ns(mhz):
    """The bridges' clock period for ``mhz``, to the simulators' precision
    (1 ps): 127.88 MHz is 7.82 ns, as a simulator can run it."""
    return round(1000 / mhz, 3)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tlpoe.sim.e2e", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short mode `make test` runs")
    parser.add_argument("--out", default="build/reports/e2e", help="report folder")
    parser.add_argument("--transport", default="eth", choices=("eth", "udp"),
                        help="what carries the bridges' frames (models/transport.py)")
    parser.add_argument("--incast", action=argparse.BooleanOptionalAction, default=None,
                        help="the incast runs, with and without ECN (default: on, off with "
                             "--quick)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="simulations at once (default 2)")
    parser.add_argument("--sim", default="verilator", choices=("verilator", "icarus"),
                        help="simulator of the disaggregated runs")
    parser.add_argument("--width", type=int, default=None,
                        help=f"the bridges' datapath width (default {FULL_WIDTH}, "
                             f"{WIDTH} with --quick)")
    parser.add_argument("--clock-mhz", type=float, default=1000 / CLOCK_NS,
                        help=f"the bridges' clock (default {1000 / CLOCK_NS:.0f} MHz, the class "
                             "make depth finds every block in at 512 bits; ECP5's figure "
                             "from make synth, for example, to see an FPGA of that class)")
    args = parser.parse_args(argv)
    if not 1 <= args.clock_mhz <= 1000:
        parser.error(f"--clock-mhz must be between 1 and 1000, not {args.clock_mhz:g}")
    clock_ns = clock_period_ns(args.clock_mhz)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, not {args.jobs}")
    width = args.width or (WIDTH if args.quick else FULL_WIDTH)
    if width not in (64, 128, 256, 512):
        parser.error(f"--width must be 64, 128, 256 or 512, not {width}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    points = QUICK_POINTS if args.quick else POINTS
    sim_sizes = sorted({s for p in points.values() for s in p["dma_sizes"]})
    sizes = sim_sizes if args.quick else SIZES
    saxpy_n = next(p["saxpy_n"] for p in points.values() if "saxpy_n" in p)
    gemm_n = next((p["gemm_n"] for p in points.values() if "gemm_n" in p), 0)
    resident_n = next((p["gemm_resident_n"] for p in points.values()
                       if "gemm_resident_n" in p), 0)
    probes = points["latency"]["mmio_probes"]
    print(f"e2e: local slot (model), DMA up to {_size_name(max(sizes))} ...", flush=True)
    local = local_point(sizes, saxpy_n, gemm_n, probes, gemm_resident_n=resident_n)
    print(f"e2e: {len(points)} disaggregated runs on {args.sim} at {width} bits "
          f"({args.jobs} at once) ...",
          flush=True)
    incast = (not args.quick) if args.incast is None else args.incast
    records, incasts, failed = [], [], []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {name: pool.submit(functools.partial(disaggregated_point, sim=args.sim,
                                                       width=width, clock_ns=clock_ns,
                                                       transport=args.transport),
                                     name, point) for name, point in points.items()}
        if incast:
            for ecn in (True, False):
                futures[f"incast-{'ecn' if ecn else 'no-ecn'}"] = pool.submit(
                    incast_point, ecn, args.sim, WIDTH, clock_ns,
                    QUICK_INCAST_US if args.quick else INCAST_US)
        for name, future in futures.items():
            try:
                result = future.result()
                (incasts if name.startswith("incast") else records).append(result)
                print(f"e2e: {name} done (simulated {result['end_ns'] / 1000:.0f} us)",
                      flush=True)
            except Exception as err:           # a failed run is reported, the rest go on
                failed.append(name)
                print(f"e2e: {name} FAILED: {str(err)[:2000]}", flush=True)
    if not records:
        print("e2e: every run failed", file=sys.stderr)
        return 1
    if "latency" in failed:
        print("e2e: the latency run failed: no MMIO latency to compare", file=sys.stderr)
        return 1
    remote = _merge(records)
    table = rows(local, remote, max(sim_sizes), net_round_trip_ns(), width, clock_ns)
    meta = dict(width=width, clock_ns=clock_ns, transport=args.transport,
                bridge=bridge_params(width), net=NET, seed=SEED,
                quick=args.quick, simulated_max=max(sim_sizes), sim=args.sim,
                dxpu_overhead=DXPU_OVERHEAD, net_round_trip_ns=net_round_trip_ns())
    verdict = incast_verdict(incasts) if incasts else {}
    (out / "e2e.json").write_text(json.dumps(dict(
        meta=meta, rows=table, local=local, disaggregated=remote, runs=records,
        incast=dict(runs=incasts, verdict={k: dict(passed=ok, measured=what)
                                          for k, (ok, what) in verdict.items()}),
        failed=failed), indent=1, default=str))
    md = _markdown(table, meta)
    if incasts:
        md += _incast_markdown(incasts, verdict)
    (out / "e2e.md").write_text(md)
    _plots(out, table, local, remote)
    print(f"e2e: report {out / 'e2e.md'}")
    bad = [k for k, (ok, _) in verdict.items() if not ok]
    if bad:
        print(f"e2e: incast checks failed: {bad}", file=sys.stderr)
    return 1 if failed or bad else 0


if __name__ == "__main__":
    sys.exit(main())
