"""``make fuzz``: the hostile-input bench (tb/fuzz.py, tb/test_fuzz.py) at length.

Every point is a pure function of its parameters and seed, ``{"target",
"sim", "width", "seed", "frames"}`` (:func:`run_point`): one cocotb run that
feeds ``frames`` seeded hostile frames, with good ones mixed in, into the
receive path and judges every frame against the frame model (drop reason or
verdict, exactly one counter moved, TLPs delivered once, in order, bit exact,
stalls bounded). The points run in a process pool and each writes one record
(``points/<name>.json``), so a cluster engine can run them unchanged.

Targets: ``decap``, the Decapsulator, at 64 bits (MTU 1500) and 512 bits
(MTU 9000). The full run gives each width :data:`FRAMES_FULL` hostile frames
on Verilator, split over seeds; ``--quick`` gives :data:`FRAMES_SHORT` over
both widths.

Writes ``build/reports/fuzz/``: ``fuzz.json`` (every record and the totals)
and ``fuzz.md``. Exits 1 when a point fails, 2 on a bad argument.
"""

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

__all__ = ["FRAMES_FULL", "FRAMES_SHORT", "MTU", "points", "run_point", "main"]

#: Hostile frames per width in the full run, and in all in the short form.
FRAMES_FULL = 100_000
FRAMES_SHORT = 10_000
#: The MTU each width is fuzzed at (both MTUs covered).
MTU = {64: 1500, 512: 9000}
#: Frames per point of the full run: points of equal size for the pool.
FRAMES_PER_POINT = 25_000


def points(quick=False, sim="verilator"):
    """The points of a run."""
    if quick:
        return [{"target": "decap", "sim": sim, "width": w, "seed": 1,
                 "frames": FRAMES_SHORT // len(MTU)} for w in MTU]
    per_width = -(-FRAMES_FULL // FRAMES_PER_POINT)
    return [{"target": "decap", "sim": sim, "width": w, "seed": 1 + s,
             "frames": FRAMES_PER_POINT} for w in MTU for s in range(per_width)]


def point_name(point):
    return f"{point['target']}-{point['sim']}-w{point['width']}-s{point['seed']}"


def run_point(point, out_dir):
    """Run one point; returns its record (also written to
    ``out_dir/points/<name>.json``). A failed point's record has its errors."""
    from ..rtl.decapsulator import Decapsulator
    from .runner import SimulationFailed, run_cocotb

    if point["target"] != "decap":
        raise ValueError(f"target must be 'decap', not {point['target']!r}")
    width = point["width"]
    if width not in MTU:
        raise ValueError(f"width must be one of {sorted(MTU)}, not {width!r}")
    mtu, name = MTU[width], point_name(point)
    report = Path(out_dir) / "points" / f"{name}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.unlink(missing_ok=True)
    start = time.monotonic()
    failure = None
    try:
        run_cocotb(point["sim"], lambda: Decapsulator(width, mtu=mtu), "decap",
                   "tlpoe.tb.test_fuzz", build_key=f"fuzz-decap-w{width}",
                   testcase="decapsulator_fuzz", seed=point["seed"],
                   params={"width": width, "mtu": mtu, "seed": point["seed"],
                           "count": point["frames"], "report": str(report.resolve())},
                   run_name=name)
    except SimulationFailed as error:
        failure = str(error).splitlines()[0]
    record = json.loads(report.read_text()) if report.is_file() else {"errors": []}
    if failure and not record["errors"]:
        record["errors"] = [failure]
    record["frames_total"] = record.pop("frames", 0)
    record.update(point, mtu=mtu, hostile_frames=point["frames"],
                  wall_s=round(time.monotonic() - start, 1))
    report.write_text(json.dumps(record, indent=1))
    return record


def _markdown(records):
    lines = ["# Hostile-input bench (`make fuzz`)", "",
             "| Point | Frames | Hostile | TLPs delivered | Max stall (bound) | Errors | Wall s |",
             "|---|---:|---:|---:|---|---:|---:|"]
    for r in records:
        lines.append(f"| {point_name(r)} | {r.get('frames_total', 0):,} | {r['hostile_frames']:,} | "
                     f"{r.get('tlps_delivered', 0):,} | {r.get('max_stall', '-')} "
                     f"({r.get('stall_bound', '-')}) | {len(r['errors'])} | {r['wall_s']} |")
    verdicts = {}
    for r in records:
        for k, v in r.get("verdicts", {}).items():
            verdicts[k] = verdicts.get(k, 0) + v
    lines += ["", "Verdicts of the frame model over every point (each matched by the RTL's "
              "counters frame by frame):", "", "| Verdict | Frames |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" for k, v in sorted(verdicts.items())]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tlpoe.sim.fuzz",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short form")
    parser.add_argument("--sim", default="verilator", choices=("verilator", "icarus"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default="build/reports/fuzz")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, not {args.jobs}")
    out = Path(args.out)
    todo = points(args.quick, args.sim)
    records = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_point, p, out): p for p in todo}
        for future in as_completed(futures):
            record = future.result()
            records.append(record)
            status = "ok" if not record["errors"] else f"FAILED: {record['errors'][0]}"
            print(f"[{len(records)}/{len(todo)}] {point_name(record)}: "
                  f"{record['hostile_frames']:,} hostile frames, {record['wall_s']} s, {status}",
                  flush=True)
    records.sort(key=point_name)
    failed = [r for r in records if r["errors"]]
    (out / "fuzz.json").write_text(json.dumps({"records": records, "failed": len(failed)},
                                              indent=1))
    (out / "fuzz.md").write_text(_markdown(records))
    print(f"{out / 'fuzz.md'}: {len(records)} points, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
