"""``make perf``: how fast the simulations and the models run.

Simulators. Each bench runs on Icarus and on Verilator, one after the
other, so they do not share the cores:

* ``loopback``: encapsulator and decapsulator at 256 bits, random TLPs;
* ``link``: two bridges at 64 bits through the PHY model, random TLPs;
* ``translator``: the Translator, both directions;
* ``e2e``: the whole system (``tb/test_e2e.py``: two host links, four
  bridges at 256 bits, the device fabric, and the host, PCIe switch, GPU and
  Ethernet models) running SAXPY on a remote GPU; its TLPs are those the
  fabric passed both ways.

For each run it measures the simulated cycles (the simulated time over the
clock period, as cocotb's ``results.xml`` reports it), the wall time of
the run (the build is timed on its own and is cached between runs), and
their ratio in cycles per second.

Models: the TLPs per second of the frame model (encode and decode), the
link simulation (:func:`tlpoe.models.linksim.run_point`), the ordering
model (:func:`tlpoe.models.ordering.check_order`), and the Ethernet switch.
Also the wall time of the local-slot system in quick mode.

Each measurement is a pure function of its parameters. The report is
``build/reports/perf/perf.json`` and ``perf.md``. ``--quick`` (used by
``make test``) is a short mode that checks the machinery; its numbers mean
little, since it shares the cores with the other tests, and it leaves out
the whole system on Icarus (:data:`QUICK_SKIP`: most of its minute is the
bring-up, and ``tests/test_e2e_sim.py`` runs that system on Icarus). Exits
1 if a run fails, 2 on a bad argument.
"""

import argparse
import json
import os
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

__all__ = ["BENCHES", "run_bench", "model_rates", "main"]

#: name -> (build key, top name, test module, testcase, clock ns, params, full count, quick count)
BENCHES = {
    "loopback": ("loopback-w256", "loopback", "tlpoe.tb.test_loopback", "RandomTlpTest", 10.0,
                 {"width": 256, "mtu": 1500}, 5000, 300),
    "link": ("pair-w64-s6-win8", "pair", "tlpoe.tb.test_link", "LinkRandomTest", 10.0,
             {"width": 64, "seq_bits": 6, "window": 8}, 1000, 100),
    "translator": ("translator-w64", "translator", "tlpoe.tb.test_translate",
                   "TranslateRandomTest", 10.0, {"width": 64}, 2000, 200),
    # the whole system (tb/test_e2e.py): two host links, four bridges, the
    # fabric, with the host, switch, GPU and network models; its count is
    # SAXPY's elements on host 0's remote GPU, its TLPs those the fabric passed
    "e2e": (None, "system", "tlpoe.tb.test_e2e", "E2eRun", None, {}, 16384, 512),
}


#: (bench, simulator) runs the short mode leaves out.
QUICK_SKIP = {("e2e", "icarus")}


def _design(name):
    if name == "e2e":
        from .e2e import system
        return system()
    if name == "loopback":
        from ..tb.tops import Loopback
        return Loopback(256, mtu=1500)
    if name == "link":
        from ..rtl.bridge.bridge import Bridge
        from ..tb.tops import Pair
        kw = dict(window=8, seq_bits=6, max_retries=6)
        return Pair(Bridge(64, **kw), Bridge(64, **kw))
    from ..rtl.fabric.translate import Translator
    return Translator(64, windows=2, functions=2)


def run_bench(name, sim, count, seed=1):
    """One bench on ``sim``: its record (cycles, wall seconds, cycles/s)."""
    from .runner import run_cocotb
    key, top, module, testcase, clock_ns, params, _, _ = BENCHES[name]
    params = {**params, "count": count, "seed": seed}
    report = None
    if name == "e2e":
        from . import e2e
        key, clock_ns = e2e.BUILD_KEY, e2e.CLOCK_NS
        report = Path("build") / "reports" / "perf" / f"e2e-{sim}-{count}.json"
        report.parent.mkdir(parents=True, exist_ok=True)
        params = dict(width=e2e.WIDTH, clock_ns=clock_ns, seed=seed, saxpy_n=count,
                      dma_sizes=[], mmio_probes=1, attacks=False, reassign=False,
                      peer_saxpy_n=0, report=str(report.resolve()))
    start = time.monotonic()
    results = run_cocotb(sim, lambda: _design(name), top, module, build_key=key,
                         testcase=testcase, seed=seed, run_name=f"perf-{name}-{count}",
                         params=params)
    total_s = time.monotonic() - start
    if report is not None:
        c = json.loads(report.read_text())["counters"]
        count = sum(c[f"link{i}_{d}_forwarded"] for i in range(2) for d in ("to_device", "to_host"))
    case = next(ElementTree.parse(results).getroot().iter("testcase"))
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    sim_ns = float(props["sim_time_duration"])
    run_s = float(case.get("time"))
    cycles = sim_ns / clock_ns
    return {"bench": name, "sim": sim, "tlps": count, "cycles": int(cycles),
            "run_s": round(run_s, 3), "total_s": round(total_s, 2),
            "cycles_per_s": round(cycles / run_s) if run_s else None,
            "tlps_per_s": round(count / run_s, 1) if run_s else None}


def _rate(n, fn):
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    return {"items": n, "seconds": round(elapsed, 3), "per_s": round(n / elapsed, 1)}


def model_rates(quick=False):
    """TLPs (or frames) per second of the models, each on its own workload."""
    from ..models.ethswitch import EthernetSwitch
    from ..models.frame import decode_frame, encode_frame
    from ..models.linksim import run_point
    from ..models.ordering import check_order
    from ..models.system import run_local_slot
    from ..tb import stimulus
    n = 2000 if quick else 50_000
    tlps = stimulus.random_tlps(1, n, max_payload=256)
    groups = [tlps[i:i + 4] for i in range(0, len(tlps), 4)]
    frames = [encode_frame(g) for g in groups]
    ordering = stimulus.ordering_traffic(1, n)
    rates = {
        "frame_encode_tlps": _rate(n, lambda: [encode_frame(g) for g in groups]),
        "frame_decode_tlps": _rate(n, lambda: [decode_frame(f) for f in frames]),
        "linksim_tlps": _rate(n, lambda: run_point({"tlps": n, "tlp_payload": 256}, 1)),
        "ordering_check_tlps": _rate(n, lambda: check_order(ordering, ordering)),
    }

    def switch():
        sw = EthernetSwitch(4, 100)
        t = 0.0
        for i, f in enumerate(frames):
            src = (i % 3) + 1
            sw.receive(src, bytes(6) + bytes([2, 0, 0, 0, 0, src]) + f[12:], t)
            t += 200.0
    rates["ethswitch_frames"] = _rate(len(frames), switch)
    start = time.perf_counter()
    run_local_slot(seed=1, quick=True)
    rates["local_slot_quick_s"] = round(time.perf_counter() - start, 2)
    return rates


def markdown(report):
    lines = ["# Simulation and model speed" + (" (quick mode)" if report["quick"] else ""), "",
             "## Simulators (run time, build excluded)", "",
             "| Bench | Simulator | TLPs | Cycles | Run s | Cycles/s | TLPs/s |",
             "|---|---|---|---|---|---|---|"]
    for r in report["benches"]:
        lines.append(f"| {r['bench']} | {r['sim']} | {r['tlps']} | {r['cycles']:,} | "
                     f"{r['run_s']} | {r['cycles_per_s']:,} | {r['tlps_per_s']} |")
    lines += ["", "## Models", "", "| Measure | Items | Seconds | Per second |", "|---|---|---|---|"]
    for name, r in report["models"].items():
        if isinstance(r, dict):
            lines.append(f"| {name} | {r['items']:,} | {r['seconds']} | {r['per_s']:,} |")
        else:
            lines.append(f"| {name} | | {r} | |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tlpoe.sim.perf",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short mode `make test` runs")
    parser.add_argument("--out", default="build/reports/perf", help="report folder")
    parser.add_argument("--sims", default=os.environ.get("TLPOE_SIMS", "icarus verilator"),
                        help="simulators, space separated")
    args = parser.parse_args(argv)
    sims = args.sims.split()
    bad = [s for s in sims if s not in ("icarus", "verilator")]
    if bad or not sims:
        parser.error(f"--sims must name icarus and/or verilator, not {args.sims!r}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    benches = []
    for name, spec in BENCHES.items():
        count = spec[7] if args.quick else spec[6]
        for sim in sims:
            if args.quick and (name, sim) in QUICK_SKIP:
                continue
            print(f"perf: {name} on {sim}, {count} {'SAXPY elements' if name == 'e2e' else 'TLPs'}"
                  " ...", flush=True)
            benches.append(run_bench(name, sim, count))
            print(f"perf: {name} on {sim}: {benches[-1]['cycles_per_s']:,} cycles/s", flush=True)
    print("perf: models ...", flush=True)
    report = {"quick": args.quick, "benches": benches, "models": model_rates(args.quick)}
    (out / "perf.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "perf.md").write_text(markdown(report))
    print(f"perf: report {out / 'perf.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
