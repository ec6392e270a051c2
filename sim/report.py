"""``make report``: run every report and write ``build/reports/index.html``.

The reports, each its own target, run one after the other with a progress
line before and after each:

* ``ber``: the BER and drop sweep (`make ber`);
* ``faults``: link flaps, a peer reset, a cut, mid-traffic (`make faults`);
* ``ordering``: the ordering rules (`make ordering`);
* ``coverage``: code and functional coverage (`make coverage`);
* ``perf``: simulation and model speed (`make perf`);
* ``e2e``: the local slot against the disaggregated path (`make e2e`);
* ``interop``: a peer's PCIe models through two bridges (`make interop`);
* ``fuzz``: the hostile-input bench (`make fuzz`);
* ``synth``: synthesis, utilisation and Fmax on ECP5 and iCE40 (`make synth`);
* ``depth``: the logic depth of every block for UltraScale+ (`make depth`).

The index links each report's Markdown, JSON and HTML files, shows its
plots, and says which reports are missing or failed. ``--quick`` runs each
report in its short mode. ``--only NAME`` (repeatable) runs a subset.
``--index-only`` writes the index from what is already there.

Exits 1 if a report failed, 2 on a bad argument.
"""

import argparse
import html
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "build" / "reports"

#: name -> (module, what it is)
STEPS = {
    "ber": ("tlpoe.sim.ber", "Reliable link under bit errors, bursts and drops"),
    "faults": ("tlpoe.sim.faults", "Link faults mid-traffic: flaps, a peer reset, a cut"),
    "ordering": ("tlpoe.sim.ordering", "PCIe ordering rules, cell by cell"),
    "coverage": ("tlpoe.sim.coverage", "Code and functional coverage"),
    "perf": ("tlpoe.sim.perf", "Simulation and model speed"),
    "e2e": ("tlpoe.sim.e2e", "End to end: local slot vs disaggregated"),
    "interop": ("tlpoe.sim.interop", "Interoperability: cocotbext-pcie's models through two bridges"),
    "fuzz": ("tlpoe.sim.fuzz", "Hostile input: lying frames into the Decapsulator and a Bridge"),
    "synth": ("tlpoe.sim.synth", "Synthesis: utilisation, Fmax and throughput on FPGAs"),
    "depth": ("tlpoe.sim.depth", "Logic depth of every block (synth_xilinx, UltraScale+)"),
}

__all__ = ["STEPS", "run_step", "write_index", "main"]


def run_step(name, quick):
    """Run one report as its own process; returns (exit code, seconds)."""
    module = STEPS[name][0]
    cmd = [sys.executable, "-m", module] + (["--quick"] if quick else [])
    start = time.monotonic()
    code = subprocess.call(cmd, cwd=ROOT)
    return code, round(time.monotonic() - start, 1)


def write_index(reports_dir, status):
    """``reports_dir/index.html`` linking every report folder's files;
    ``status``: {name: {"exit": code, "seconds": s}} of this run."""
    sections = []
    for name, (_, title) in STEPS.items():
        folder = reports_dir / name
        files = sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
        state = status.get(name)
        if state is None:
            note = "not run now" + ("" if files else "; no report yet")
        elif state["exit"] == 0:
            note = f"ran in {state['seconds']} s"
        else:
            note = f"<strong>FAILED</strong> (exit {state['exit']}) after {state['seconds']} s"
        links = " · ".join(f"<a href='{name}/{p.name}'>{html.escape(p.name)}</a>"
                           for p in files if p.suffix in (".md", ".json", ".html"))
        if (folder / "index.html").is_file():
            links += f" · <a href='{name}/index.html'>browse</a>"
        plots = "".join(f"<figure><img src='{name}/{p.name}' width='640'>"
                        f"<figcaption>{html.escape(p.name)}</figcaption></figure>"
                        for p in files if p.suffix == ".png")
        summary = ""
        md = folder / f"{name}.md"
        if md.is_file():
            summary = f"<details><summary>{name}.md</summary><pre>" \
                      f"{html.escape(md.read_text())}</pre></details>"
        sections.append(f"<section><h2>{html.escape(title)} (<code>make {name}</code>)</h2>"
                        f"<p>{note}. {links}</p>{plots}{summary}</section>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>tlpoe reports</title>"
            "</head><body><h1>tlpoe reports</h1>" + "".join(sections) + "</body></html>\n")
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / "index.html").write_text(page)
    (reports_dir / "index.json").write_text(json.dumps(status, indent=2) + "\n")
    return reports_dir / "index.html"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tlpoe.sim.report",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="each report in its short mode")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help=f"run only this report (one of {', '.join(STEPS)}); repeatable")
    parser.add_argument("--index-only", action="store_true",
                        help="write the index from the reports already there")
    parser.add_argument("--out", default=str(REPORTS),
                        help="the reports folder to index (the reports themselves always "
                             "write to build/reports/)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.only if n not in STEPS]
    if unknown:
        parser.error(f"--only: unknown report {unknown}; known: {', '.join(STEPS)}")
    status = {}
    if not args.index_only:
        names = args.only or list(STEPS)
        for k, name in enumerate(names, 1):
            print(f"report [{k}/{len(names)}] {name}: {STEPS[name][1]} ...", flush=True)
            code, seconds = run_step(name, args.quick)
            status[name] = {"exit": code, "seconds": seconds}
            print(f"report [{k}/{len(names)}] {name}: "
                  f"{'done' if code == 0 else f'FAILED (exit {code})'} in {seconds} s", flush=True)
    index = write_index(Path(args.out), status)
    print(f"report: {index}")
    return 0 if all(s["exit"] == 0 for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
