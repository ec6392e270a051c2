"""``make coverage``: code coverage (Verilator line and toggle) per RTL block
and functional coverage (cocotb-coverage) per cover point, merged over the
testbenches, in ``build/reports/coverage/``.

Steps:

1. Unless ``--no-run``, the simulation tests run on Verilator with
   ``RTL_COVERAGE=1``. Each run's build adds Verilator's
   ``--coverage-line --coverage-toggle``, and each run writes
   ``coverage.dat``. ``--quick`` runs the ``-k`` subset ``QUICK_TESTS``.
2. Every ``coverage.dat`` under ``build/sim/verilator/*+cov/runs/`` is read
   and merged. A point is covered when its count is above 0.
   * **Block.** Each point is charged to the RTL block (``rtl/<layer>/<block>.py``)
     whose Python line the Verilog carries in the nearest ``src`` attribute
     at or above the point. Points in Amaranth's library (FIFOs, memories)
     go to ``amaranth``.
   * **Line coverage** counts Verilator's line and branch points.
   * **Toggle coverage** counts toggle points (each bit, both directions).
   * A block instantiated in several benches counts every instance.
3. Every ``coverage.yml`` of those runs (the cocotb-coverage databases the
   benches export) is merged per cover point, with bins summed.

Outputs:

* ``coverage.json``:
  * ``blocks``: for each ``rtl/`` block, ``line_pct``, ``toggle_pct``,
    the point counts, and ``simulated``;
  * ``covergroups``: ``bins_total``, ``bins_hit``, the bins;
  * ``holes``: bins never hit, blocks never simulated, and the uncovered
    lines of each block.
* ``coverage.md``: the same as tables.
* ``index.html``: the tables.
* ``annotated/``: Verilator's annotated sources.

Exits 2 on a bad argument, and 1 if the test run failed or found nothing.
"""

import argparse
import collections
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RTL = ROOT / "rtl"
SIM_BUILD = ROOT / "build" / "sim" / "verilator"
#: The quick mode's tests (pytest -k): one bench per family, small.
QUICK_TESTS = "translation_matches or test_clean_link or random_traffic_only"
#: Coverage goals (docs/coverage.md); below them a block is listed as a hole.
GOALS = {"line_pct": 90.0, "toggle_pct": 70.0}

__all__ = ["collect_code", "collect_functional", "report", "main"]

_SRC = re.compile(r'src = "([^"]+):(\d+)"')


#: The RTL's layers (``rtl/<layer>/<block>.py``); the modules at the top of
#: ``rtl/`` (streams, the TLP header view, composition helpers) are blocks too.
LAYERS = ("framing", "link", "queues", "fabric", "bridge")


def _block_files():
    return [p for p in [*RTL.glob("*.py"), *(f for layer in LAYERS
                                             for f in (RTL / layer).glob("*.py"))]
            if p.stem != "__init__"]


def rtl_blocks():
    """Every RTL block: the names of the ``rtl/`` modules (in ``rtl/`` and
    its layers) but ``__init__``."""
    return sorted(p.stem for p in _block_files())


def _points(path):
    """(fields dict, count) for each point of a Verilator ``coverage.dat``."""
    for line in Path(path).read_text(errors="replace").splitlines():
        if not line.startswith("C '"):
            continue
        key, _, count = line[3:].rpartition("' ")
        fields = dict(part.split("\x02", 1) for part in key.split("\x01") if "\x02" in part)
        yield key, fields, int(count)


class _SourceMap:
    """Verilog line -> the Python file of the nearest ``src`` attribute at or above it."""

    def __init__(self):
        self._files = {}

    def block(self, verilog, line):
        owners = self._files.get(verilog)
        if owners is None:
            owners, current = [None], None
            try:
                text = Path(verilog).read_text(errors="replace").splitlines()
            except OSError:
                text = []
            for source in text:
                found = _SRC.findall(source)
                if found:
                    current = found[-1][0]
                owners.append(current)
            self._files[verilog] = owners
        source = owners[line] if 0 < line < len(owners) else None
        if source is None:
            return "unknown"
        path = Path(source)
        if path.parent.resolve() in {RTL.resolve(), *((RTL / l).resolve() for l in LAYERS)}:
            return path.stem
        return "amaranth" if "amaranth" in path.parts else "other"


def collect_code(dat_files):
    """Per block: line and toggle points (total, covered) and the uncovered
    Python lines; the points of all ``dat_files`` merged (counts summed)."""
    merged = collections.Counter()
    fields_of = {}
    for path in dat_files:
        for key, fields, count in _points(path):
            merged[key] += count
            fields_of[key] = fields
    sources = _SourceMap()
    blocks = collections.defaultdict(lambda: {"line": [0, 0], "toggle": [0, 0],
                                              "uncovered": set()})
    for key, count in merged.items():
        f = fields_of[key]
        page = f.get("page", "")
        kind = "toggle" if page.startswith("v_toggle") else "line"
        block = sources.block(f.get("f", ""), int(f.get("l", 0)))
        b = blocks[block]
        b[kind][0] += 1
        b[kind][1] += count > 0
        if kind == "line" and not count:
            b["uncovered"].add(f"{Path(f.get('f', '')).name}:{f.get('l')}")
    return blocks


def collect_functional(yml_files):
    """Per cover point: its bins with hits summed over ``yml_files``."""
    groups = {}
    for path in yml_files:
        db = yaml.safe_load(Path(path).read_text()) or {}
        for name, point in db.items():
            bins = point.get("bins:_hits") if isinstance(point, dict) else None
            if bins is None:
                continue
            merged = groups.setdefault(name, collections.Counter())
            for bin_name, hits in bins.items():
                merged[str(bin_name)] += int(hits)
    return groups


def _pct(total_covered):
    total, covered = total_covered
    return round(100.0 * covered / total, 1) if total else None


def report(code, functional, runs):
    """The report's JSON-ready dict."""
    blocks = {}
    for name in rtl_blocks() + sorted(set(code) - set(rtl_blocks())):
        b = code.get(name)
        blocks[name] = {
            "simulated": b is not None,
            "line_pct": _pct(b["line"]) if b else None,
            "toggle_pct": _pct(b["toggle"]) if b else None,
            "line_points": b["line"][0] if b else 0,
            "toggle_points": b["toggle"][0] if b else 0,
        }
    groups = {name: {"bins_total": len(bins), "bins_hit": sum(1 for h in bins.values() if h),
                     "bins": dict(bins)} for name, bins in sorted(functional.items())}
    holes = {
        "bins_not_hit": {name: sorted(b for b, h in bins.items() if not h)
                         for name, bins in functional.items() if not all(bins.values())},
        "blocks_not_simulated": [n for n, b in blocks.items()
                                 if not b["simulated"] and n in rtl_blocks()],
        "blocks_below_goals": [n for n, b in blocks.items() if b["simulated"] and (
            (b["line_pct"] or 0) < GOALS["line_pct"] or (b["toggle_pct"] or 0) < GOALS["toggle_pct"])],
        "uncovered_lines": {n: sorted(code[n]["uncovered"])[:200] for n in code
                            if code[n]["uncovered"]},
    }
    return {"goals": GOALS, "runs": runs, "blocks": blocks, "covergroups": groups,
            "holes": holes}


def markdown(rep):
    fmt = lambda v: "–" if v is None else f"{v:.1f}"
    lines = ["# Coverage", "", f"{rep['runs']} Verilator runs merged. Goals: line "
             f"{GOALS['line_pct']:.0f}%, toggle {GOALS['toggle_pct']:.0f}% "
             "(docs/coverage.md).", "", "## Code coverage per RTL block", "",
             "| Block | Line % | Toggle % | Line points | Toggle points |", "|---|---|---|---|---|"]
    for name, b in rep["blocks"].items():
        lines.append(f"| `{name}` | {fmt(b['line_pct'])} | {fmt(b['toggle_pct'])} | "
                     f"{b['line_points']} | {b['toggle_points']} |"
                     if b["simulated"] else f"| `{name}` | not simulated | | | |")
    lines += ["", "## Functional coverage", "", "| Cover point | Bins hit | Bins |",
              "|---|---|---|"]
    for name, g in rep["covergroups"].items():
        lines.append(f"| `{name}` | {g['bins_hit']} | {g['bins_total']} |")
    h = rep["holes"]
    lines += ["", "## Holes", ""]
    lines += [f"* bins never hit in `{n}`: {', '.join(b)}" for n, b in h["bins_not_hit"].items()]
    lines += [f"* not simulated with coverage: `{n}`" for n in h["blocks_not_simulated"]]
    lines += [f"* below the goals: `{n}`" for n in h["blocks_below_goals"]]
    lines += [f"* `{n}`: {len(u)} uncovered line points (first: {', '.join(u[:5])})"
              for n, u in h["uncovered_lines"].items()]
    return "\n".join(lines) + "\n"


def html_page(rep, md):
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{b['line_pct'] if b['simulated'] else 'not simulated'}"
        f"</td><td>{b['toggle_pct'] if b['simulated'] else ''}</td></tr>"
        for n, b in rep["blocks"].items())
    groups = "".join(f"<tr><td>{html.escape(n)}</td><td>{g['bins_hit']}/{g['bins_total']}</td></tr>"
                     for n, g in rep["covergroups"].items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>tlpoe coverage</title>"
            f"</head><body><h1>tlpoe coverage</h1><p>{rep['runs']} runs merged; "
            f"<a href='annotated/'>annotated sources</a>; <a href='coverage.json'>JSON</a></p>"
            f"<h2>Code coverage per RTL block</h2><table border=1><tr><th>Block</th>"
            f"<th>Line %</th><th>Toggle %</th></tr>{rows}</table><h2>Functional coverage</h2>"
            f"<table border=1><tr><th>Cover point</th><th>Bins hit</th></tr>{groups}</table>"
            f"<h2>Holes</h2><pre>{html.escape(md.split('## Holes', 1)[1])}</pre></body></html>\n")


def _run_tests(quick, jobs):
    env = {**os.environ, "RTL_COVERAGE": "1", "TLPOE_SIMS": "verilator"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", str(jobs), "-m", "sim", "tests"]
    if quick:
        cmd += ["-k", QUICK_TESTS]
    print("coverage: " + " ".join(cmd[2:]), flush=True)
    return subprocess.call(cmd, cwd=ROOT, env=env)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tlpoe.sim.coverage",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few small benches only")
    parser.add_argument("--no-run", action="store_true", help="merge what earlier runs wrote")
    parser.add_argument("--out", default="build/reports/coverage", help="report folder")
    parser.add_argument("--jobs", default="auto", help="pytest-xdist workers")
    args = parser.parse_args(argv)
    if args.jobs != "auto" and not (args.jobs.isdigit() and int(args.jobs) >= 1):
        parser.error(f"--jobs must be a positive number or auto, not {args.jobs!r}")
    if not args.no_run:
        for stale in SIM_BUILD.glob("*+cov/runs/*/coverage.*"):
            stale.unlink()                  # this run's data only, not earlier selections
    if not args.no_run and _run_tests(args.quick, args.jobs) != 0:
        print("coverage: the tests failed", file=sys.stderr)
        return 1
    runs = sorted(SIM_BUILD.glob("*+cov/runs/*"))
    dats = [r / "coverage.dat" for r in runs if (r / "coverage.dat").is_file()]
    ymls = [r / "coverage.yml" for r in runs if (r / "coverage.yml").is_file()]
    if not dats:
        print("coverage: no coverage.dat found (run without --no-run first)", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rep = report(collect_code(dats), collect_functional(ymls), len(dats))
    md = markdown(rep)
    (out / "coverage.json").write_text(json.dumps(rep, indent=2) + "\n")
    (out / "coverage.md").write_text(md)
    (out / "index.html").write_text(html_page(rep, md))
    tool = shutil.which("verilator_coverage")
    if tool:
        merged = out / "merged.dat"
        subprocess.call([tool, "--write", str(merged), *map(str, dats)],
                        stdout=subprocess.DEVNULL)
        subprocess.call([tool, "--annotate", str(out / "annotated"), str(merged)],
                        stdout=subprocess.DEVNULL)
    print(f"coverage: {len(dats)} runs; report: {out / 'coverage.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
