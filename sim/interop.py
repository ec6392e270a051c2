"""``make interop``: a peer's PCIe models through two bridges.

cocotbext-pcie's RootComplex and a MemoryEndpoint (models written
elsewhere) talk through two bridges (RTL: :class:`~tlpoe.rtl.bridge.bridge.Bridge`
at its default parameters, 256 bits, 250 MHz) and the NIC/PHY model, and
the same operation sequence runs with the two joined straight as the
reference (``tb/test_interop.py``, ``tb/interop_sequence.py``):
enumeration, BAR sizing, MMIO writes and reads of every size at several
alignments on a 32-bit and a 64-bit BAR, IO, DMA both ways with MPS 128
and 256, MRRS 512 and the RC's completions split on every RCB, every MSI
vector, and DMA writes each followed by an MSI. Every operation's result
through the bridges must equal the direct run's and its own self-check.

The long form (the default) runs every MMIO size 1..512 at four
alignments and across 4 KiB; ``--quick`` the short form of ``make test``.
Writes ``build/reports/interop/``: ``interop.json`` (the checks, the
counts: operations, bytes, TLPs through the bridges, split completions,
simulated and wall time; and the run's record) and ``interop.md``. Exits 1
when a check fails, 2 on a bad argument.
"""

import argparse
import json
import sys
import time
from pathlib import Path

__all__ = ["WIDTH", "BRIDGE", "CLOCK_NS", "PHY", "SEED", "BUILD_KEY", "pair", "run_interop",
           "figures", "checks", "markdown", "main"]

#: The bridges: the Bridge's defaults (256 bits, window 16, 8 KiB receive
#: queues per class), clocked at 250 MHz as in the end-to-end bench.
WIDTH = 256
BRIDGE = {}
CLOCK_NS = 4.0
#: The network between them: 100 GbE, 250 ns (20 m of fibre plus PCS/FEC).
PHY = {"rate_gbps": 100, "latency_ns": 250.0}
SEED = 20261207
BUILD_KEY = f"pair-w{WIDTH}-default"


def pair():
    """Two bridges at their default parameters under a Pair."""
    from ..rtl.bridge.bridge import Bridge
    from ..tb.tops import Pair
    return Pair(Bridge(WIDTH, **BRIDGE), Bridge(WIDTH, **BRIDGE))


def run_interop(sim, form, report_dir, name=None, **params):
    """One run of the bench (``form`` "short" or "long"); returns its record
    (read from the report it writes). Raises
    :class:`~tlpoe.sim.runner.SimulationFailed` when the run fails: the
    record is still in ``report_dir``."""
    from .runner import run_cocotb
    name = name or f"interop-{form}"
    report = Path(report_dir).resolve() / f"{name}-{sim}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.unlink(missing_ok=True)
    start = time.monotonic()
    run_cocotb(sim, pair, "pair", "tlpoe.tb.test_interop", build_key=BUILD_KEY,
               testcase="InteropRun", seed=SEED, run_name=name,
               params={"width": WIDTH, "bridge": BRIDGE, "clock_ns": CLOCK_NS, "phy": PHY,
                       "form": form, "report": str(report), **params})
    record = json.loads(report.read_text())
    record["wall_s"] = round(time.monotonic() - start, 1)
    return record


def figures(record):
    """The report's counts from a run's record."""
    bridged, direct = record["bridged"], record.get("direct", {})
    tlps = bridged["tlps"]
    return {
        "operations": bridged["operations"],
        "operations_by_kind": bridged["by_op"],
        "bytes_moved": bridged["bytes"],
        "tlps_host_to_device": tlps["a_in"]["tlps"],
        "tlps_device_to_host": tlps["b_in"]["tlps"],
        "tlp_bytes_through_bridges": tlps["a_in"]["bytes"] + tlps["b_in"]["bytes"],
        "tlps_by_type_host_to_device": tlps["a_in"]["by_type"],
        "tlps_by_type_device_to_host": tlps["b_in"]["by_type"],
        "split_completions_to_device": tlps["b_out"]["split_completions"],
        "split_completions_to_host": tlps["a_out"]["split_completions"],
        "completions_with_data": tlps["a_out"]["completions_with_data"]
                                 + tlps["b_out"]["completions_with_data"],
        "frames": {side: s["frames_sent"] for side, s in bridged["bridge_stats"].items()},
        "differences": len(record.get("differences", [])),
        "failures": bridged["failures"],
        "mmio_read_ns_mean": {"direct": direct.get("mmio_read_ns_mean"),
                              "bridged": bridged["mmio_read_ns_mean"]},
        "simulated_us": {"direct": round(direct.get("sim_ns", 0) / 1000, 1),
                         "bridged": round(bridged["sim_ns"] / 1000, 1)},
        "cycles": bridged["cycles"],
        "wall_s": {"direct": direct.get("wall_s"), "bridged": bridged["wall_s"],
                   "run": record.get("wall_s")},
    }


def checks(record, f):
    """The report's checks: (name, passed, detail)."""
    ops = f["operations_by_kind"]
    return [
        ("every operation's result through the bridges equals the direct run's",
         "direct" in record and f["differences"] == 0,
         f"{f['operations']:,} operations compared, {f['differences']} differ"),
        ("every operation's self-check passes (direct and bridged)",
         f["failures"] == 0 and record.get("direct", {}).get("failures", 1) == 0,
         f"{f['failures']} failed through the bridges"),
        ("every TLP crosses the bridges once, bit for bit; no drop, replay or ordering flag",
         not record.get("problems"),
         "; ".join(record.get("problems", [])[:3])
         or f"{f['tlps_host_to_device'] + f['tlps_device_to_host']:,} TLPs"),
        ("completions split at MPS and on the RCB crossed the bridges",
         f["split_completions_to_device"] > 0 and f["split_completions_to_host"] > 0,
         f"{f['split_completions_to_device']:,} to the device, "
         f"{f['split_completions_to_host']:,} to the host"),
        ("every MSI vector and every DMA-write-then-MSI ordering check ran",
         ops.get("msi", 0) > 0 and ops.get("dma_then_msi", 0) > 0,
         f"{ops.get('msi', 0)} burst(s) of every vector, {ops.get('dma_then_msi', 0)} "
         f"ordering checks"),
    ]


def markdown(f, results, record, sim, quick):
    lines = ["# PCIe interoperability: cocotbext-pcie through two bridges"
             + (" (quick mode)" if quick else ""), "",
             f"{sim}; bridges {WIDTH} bits at {1000 / CLOCK_NS:.0f} MHz, default parameters; "
             f"network {PHY['rate_gbps']} GbE, {PHY['latency_ns']:.0f} ns. Form: "
             f"{record['form']}.", "",
             "| Check | Result | Detail |", "|---|---|---|"]
    lines += [f"| {name} | {'pass' if ok else '**FAIL**'} | {detail} |"
              for name, ok, detail in results]
    lines += ["", "| Figure | Value |", "|---|---:|",
              f"| operations (each compared with the direct run) | {f['operations']:,} |",
              f"| bytes written and read | {f['bytes_moved']:,} |",
              f"| TLPs host to device / device to host | {f['tlps_host_to_device']:,} / "
              f"{f['tlps_device_to_host']:,} |",
              f"| TLP bytes through the bridges | {f['tlp_bytes_through_bridges']:,} |",
              f"| completions with data | {f['completions_with_data']:,} |",
              f"| split completions to the device / to the host | "
              f"{f['split_completions_to_device']:,} / {f['split_completions_to_host']:,} |",
              f"| frames sent by A / B | {f['frames']['a']:,} / {f['frames']['b']:,} |",
              f"| mean 4-byte MMIO read, one at a time, direct / bridged (ns) | "
              f"{f['mmio_read_ns_mean']['direct']} / {f['mmio_read_ns_mean']['bridged']} |",
              f"| simulated, direct / bridged (us) | {f['simulated_us']['direct']} / "
              f"{f['simulated_us']['bridged']} |",
              f"| bridge cycles | {f['cycles']:,} |",
              f"| wall time, direct / bridged / whole run with build (s) | "
              f"{f['wall_s']['direct']} / {f['wall_s']['bridged']} / {f['wall_s']['run']} |",
              "", "## Operations", "", "| Kind | Count |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" for k, v in sorted(f["operations_by_kind"].items())]
    lines += ["", "## TLPs by type", "", "| Type | Host to device | Device to host |",
              "|---|---:|---:|"]
    down, up = f["tlps_by_type_host_to_device"], f["tlps_by_type_device_to_host"]
    lines += [f"| {t} | {down.get(t, 0):,} | {up.get(t, 0):,} |" for t in sorted({*down, *up})]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tlpoe.sim.interop",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short form `make test` runs")
    parser.add_argument("--out", default="build/reports/interop", help="report folder")
    parser.add_argument("--sim", default="verilator", choices=("verilator", "icarus"))
    parser.add_argument("--timeout-ms", type=float, default=None,
                        help="simulated time allowed for the run (default 200, long form 2000)")
    args = parser.parse_args(argv)
    if args.timeout_ms is not None and args.timeout_ms <= 0:
        parser.error(f"--timeout-ms must be positive, not {args.timeout_ms:g}")
    form = "short" if args.quick else "long"
    timeout_ms = args.timeout_ms or (200 if args.quick else 2000)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"interop: the {form} form on {args.sim}, writing {out}/", flush=True)
    from .runner import SimulationFailed
    start = time.monotonic()
    try:
        record = run_interop(args.sim, form, out, timeout_ms=timeout_ms)
        failed = None
    except SimulationFailed as e:
        failed = str(e)
        report = out / f"interop-{form}-{args.sim}.json"
        if not report.is_file() or "bridged" not in json.loads(report.read_text()):
            print(f"interop: the run failed before its record was written:\n{failed}",
                  file=sys.stderr)
            return 1
        record = json.loads(report.read_text())
        record["wall_s"] = round(time.monotonic() - start, 1)
    f = figures(record)
    results = checks(record, f)
    (out / "interop.json").write_text(json.dumps(
        {**f, "sim": args.sim, "form": form, "quick": args.quick,
         "checks": [{"check": c, "passed": ok, "detail": d} for c, ok, d in results],
         "run_failed": failed, "record": record}, indent=1, default=str) + "\n")
    (out / "interop.md").write_text(markdown(f, results, record, args.sim, args.quick))
    for name, ok, detail in results:
        print(f"{'pass' if ok else 'FAIL'}: {name}: {detail}")
    print(f"report: {out / 'interop.md'}")
    return 0 if failed is None and all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
