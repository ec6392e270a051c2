"""``make fuzz``: the hostile-input bench (tb/fuzz.py, tb/fuzz_bridge.py,
tb/test_fuzz.py) at length.

Every point is a pure function of its parameters and seed, ``{"target",
"sim", "width", "seed", "frames"}`` and, for the Bridge, ``"mode"``
(:func:`run_point`): one cocotb run that feeds ``frames`` seeded hostile
frames, with good ones mixed in, and judges every frame. The points run in a
process pool and each writes one record (``points/<name>.json``), so a
cluster engine can run them unchanged.

Targets:

* ``decap``: the Decapsulator alone; per frame the frame model's drop reason
  or verdict, exactly one counter moved, TLPs delivered once, in order, bit
  exact, stalls bounded.
* ``bridge``: a Bridge whose link peer is the bench (the reference link
  endpoint, with byte-level and link-level lies between its frames), in
  go-back-N and selective repeat; per frame the same, plus the link
  counters and credit limits the models predict; every TLP each way
  delivered exactly once, in order; no frame from the bridge the peer drops;
  the link stays up.

Both at 64 bits (MTU 1500) and 512 bits (MTU 9000). The full run gives
each width (and link mode) :data:`FRAMES_FULL` hostile frames on Verilator,
split over seeds; ``--quick`` gives each target :data:`FRAMES_SHORT` over
its widths and modes.

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

__all__ = ["FRAMES_FULL", "FRAMES_SHORT", "MTU", "MODES", "points", "run_point", "main"]

#: Hostile frames per width (and link mode) in the full run, and per target
#: in the short form.
FRAMES_FULL = 100_000
FRAMES_SHORT = 10_000
#: The MTU each width is fuzzed at (both MTUs covered).
MTU = {64: 1500, 512: 9000}
MODES = ("gbn", "sr")
#: Frames per point of the full run: points of equal size for the pool.
FRAMES_PER_POINT = 25_000
#: The Bridge's parameters in the bench (the run-time inputs take the same).
BRIDGE = {"window": 16, "seq_bits": 12, "replay_timeout": 3000, "nak_timeout": 800}
#: TLPs each way per hostile frame in the Bridge bench.
TLPS_PER_FRAME = 0.3


def _variants(target):
    """(width, mode) pairs of a target."""
    return [(w, m) for w in MTU for m in (MODES if target == "bridge" else (None,))]


def points(quick=False, sim="verilator", targets=("decap", "bridge")):
    """The points of a run."""
    out = []
    for target in targets:
        variants = _variants(target)
        if quick:
            split = [(1, FRAMES_SHORT // len(variants))]
        else:
            per = -(-FRAMES_FULL // FRAMES_PER_POINT)
            split = [(1 + s, FRAMES_PER_POINT) for s in range(per)]
        for width, mode in variants:
            for seed, frames in split:
                point = {"target": target, "sim": sim, "width": width, "seed": seed,
                         "frames": frames}
                if mode:
                    point["mode"] = mode
                out.append(point)
    return out


def point_name(point):
    mode = f"-{point['mode']}" if point.get("mode") else ""
    return f"{point['target']}-{point['sim']}-w{point['width']}{mode}-s{point['seed']}"


def _check(point):
    if point["target"] not in ("decap", "bridge"):
        raise ValueError(f"target must be 'decap' or 'bridge', not {point['target']!r}")
    if point["width"] not in MTU:
        raise ValueError(f"width must be one of {sorted(MTU)}, not {point['width']!r}")
    if point["target"] == "bridge" and point.get("mode") not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {point.get('mode')!r}")


def run_point(point, out_dir):
    """Run one point; returns its record (also written to
    ``out_dir/points/<name>.json``). A failed point's record has its errors."""
    from ..rtl.bridge.bridge import Bridge
    from ..rtl.framing.decapsulator import Decapsulator
    from .runner import SimulationFailed, run_cocotb

    _check(point)
    width = point["width"]
    mtu, name = MTU[width], point_name(point)
    report = Path(out_dir) / "points" / f"{name}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.unlink(missing_ok=True)
    params = {"width": width, "mtu": mtu, "seed": point["seed"], "count": point["frames"],
              "report": str(report.resolve())}
    if point["target"] == "decap":
        design, top, key, case = (lambda: Decapsulator(width, mtu=mtu)), "decap", \
            f"fuzz-decap-w{width}", "decapsulator_fuzz"
    else:
        mode = point["mode"]
        design, top, key, case = (lambda: Bridge(width, mtu=mtu, mode=mode, **BRIDGE)), \
            "bridge", f"fuzz-bridge-w{width}-{mode}", "bridge_fuzz"
        params.update(BRIDGE, mode=mode, credit_refresh=BRIDGE["replay_timeout"],
                      tlps=max(1, round(point["frames"] * TLPS_PER_FRAME)))
    start = time.monotonic()
    failure = None
    try:
        run_cocotb(point["sim"], design, top, "tlpoe.tb.test_fuzz", build_key=key,
                   testcase=case, seed=point["seed"], params=params, run_name=name)
    except SimulationFailed as error:
        failure = str(error).splitlines()[0]
    record = json.loads(report.read_text()) if report.is_file() else {"errors": []}
    if failure and not record["errors"]:
        record["errors"] = [failure]
    record["frames_total"] = record.pop("frames", 0)
    # the bench's own count where it gives one (the Bridge bench does)
    hostile = record.pop("hostile_frames", point["frames"])
    record.update(point, mtu=mtu, hostile_frames=hostile,
                  wall_s=round(time.monotonic() - start, 1))
    report.write_text(json.dumps(record, indent=1))
    return record


def _sum(records, key):
    """Sum of the dicts ``record[key]`` over ``records``."""
    total = {}
    for r in records:
        for k, v in r.get(key, {}).items():
            if isinstance(v, int):
                total[k] = total.get(k, 0) + v
    return total


def _markdown(records):
    lines = ["# Hostile-input bench (`make fuzz`)", "",
             "| Point | Frames | Hostile | TLPs out of the RTL | TLPs to the peer | "
             "Max stall (bound) | Errors | Wall s |",
             "|---|---:|---:|---:|---:|---|---:|---:|"]
    for r in records:
        peer = f"{r['tlps_to_peer']:,}" if "tlps_to_peer" in r else "-"
        lines.append(f"| {point_name(r)} | {r.get('frames_total', 0):,} | {r['hostile_frames']:,} | "
                     f"{r.get('tlps_delivered', 0):,} | {peer} | {r.get('max_stall', '-')} "
                     f"({r.get('stall_bound', '-')}) | {len(r['errors'])} | {r['wall_s']} |")
    verdicts = _sum(records, "verdicts")
    lines += ["", "Verdicts of the frame model over every point (each matched by the RTL's "
              "counters frame by frame):", "", "| Verdict | Frames |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" for k, v in sorted(verdicts.items())]
    bridge = [r for r in records if r["target"] == "bridge"]
    if bridge:
        lies = _sum(bridge, "lies")
        counters = _sum(bridge, "counters")
        lines += ["", "Bridge points: link-level lies sent (CRC-valid) and what the bridge "
                  "counted, over every Bridge point:", "", "| Lie | Frames |", "|---|---:|"]
        lines += [f"| {k} | {v:,} |" for k, v in sorted(lies.items())]
        lines += ["", "| Bridge counter | Total |", "|---|---:|"]
        lines += [f"| `{k}` | {counters[k]:,} |" for k in (
            "frames_accepted", "duplicates", "out_of_order", "out_of_order_buffered",
            "acks_invalid", "naks_invalid", "credits_invalid", "replays_nak",
            "replays_timeout", "frames_retransmitted", "link_down") if k in counters]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tlpoe.sim.fuzz",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short form")
    parser.add_argument("--sim", default="verilator", choices=("verilator", "icarus"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--target", action="append", choices=("decap", "bridge"),
                        help="a target to run (repeatable; default: both)")
    parser.add_argument("--out", default="build/reports/fuzz")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, not {args.jobs}")
    out = Path(args.out)
    todo = points(args.quick, args.sim, tuple(args.target or ("decap", "bridge")))
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
