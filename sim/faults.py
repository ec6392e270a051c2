"""``make faults``: what a network does to a link, mid-traffic, both ways.

Each scenario runs two bridge RTL instances with the link state machine
and the completion tracker (:class:`tlpoe.tb.tops.Pair` of
``Bridge(link_state=True, tracker=True)``) in the pyuvm link testbench
(``tb/test_link.py``), joined by the NIC/PHY model, on Verilator. The
traffic is the ``transactions`` workload (``tb/transactions.py``): 300 TLPs
each way, memory writes and memory reads of up to 128 bytes, each side's
completer answering the peer's reads:

``flap 1us``, ``flap 100us``, ``flap 10ms``
    The cable out both ways 20 us into the run, for that long.
``switch reboot``
    Both ways out for 1 ms, every frame the switch held lost (the PHY model
    has no queue of its own: what is in flight is lost with the outage).
``peer reset``
    Bridge B alone reset 20 us into the run (``Pair(peer_reset=True)``).
``cable cut``
    Both ways out from 20 us on, for good.
``silent peer``
    B's frames stop reaching A from 20 us on (B's transmitter dead, the
    carrier up): A hears nothing.

Each point is a pure function of its scenario, simulator and seed
(:func:`run_task`), returning one JSON record written on its own
(``points/``); points run in a process pool, so a cluster engine can run
the same tasks. Per point: the time to detect (the fault's start to the
first ``link_down`` of either bridge), the time to recover (the fault's end
to both bridges UP again), TLPs lost, duplicated and corrupted (the
scoreboards, both directions; a completion the tracker dropped as late,
its read answered with UR, is counted apart), the reads answered with an
error (UR, by the requester's bridge) and the longest wait for one, the
reads left without an answer (hangs), and whether the link came back. The
summary goes to ``faults.json``, ``faults.md`` and ``timeline.png``.

Usage: ``python -m tlpoe.sim.faults [--quick] [--out DIR] [--jobs N]
[--sims verilator icarus] [--seed N]``; exits 1 when an acceptance check
fails (the report is still written), 2 on a bad argument.
"""

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

__all__ = ["SETUP", "SCENARIOS", "QUICK", "tasks", "run_task", "summarise", "acceptance",
           "write_report", "main"]

#: The link every point runs on: the two-bridge bench of
#: ``tests/test_link_sim.py`` with the link state machine (times in ns;
#: KEEPALIVEs every 5 us, down after 15 us of silence) and the completion
#: tracker: containment after 1,000 ticks of 1,024 cycles DOWN (10.24 ms,
#: above the longest flap ridden out, 10 ms), the completion timeout 2,000
#: ticks (20.5 ms), as docs/link-state.md orders the timers.
SETUP = {"width": 64, "seq_bits": 6, "window": 8, "clock_ns": 10.0, "rate_gbps": 10,
         "latency_ns": 1000.0, "count": 300,
         "bridge": {"max_retries": 6, "link_state": True, "keepalive": 500, "dead": 1500,
                    "tracker": True, "hold_time": 1000, "cpl_timeout": 2000}}
#: ns per tick of ``hold_time`` and ``cpl_timeout``.
TICK_NS = 1024 * SETUP["clock_ns"]

START_NS = 20_000.0
FOREVER_NS = 1e12

#: name -> (what the bench is given, the fault's start and end in ns; end
#: None: for good).
SCENARIOS = {
    "flap 1us": ({"phy": {"down": [(START_NS, START_NS + 1_000.0)]}}, START_NS,
                 START_NS + 1_000.0),
    "flap 100us": ({"phy": {"down": [(START_NS, START_NS + 100_000.0)]}}, START_NS,
                   START_NS + 100_000.0),
    "flap 10ms": ({"phy": {"down": [(START_NS, START_NS + 10_000_000.0)]}}, START_NS,
                  START_NS + 10_000_000.0),
    "switch reboot": ({"phy": {"down": [(START_NS, START_NS + 1_000_000.0)]}}, START_NS,
                      START_NS + 1_000_000.0),
    "peer reset": ({"peer_reset_us": START_NS / 1000}, START_NS, START_NS),
    "cable cut": ({"phy": {"down": [(START_NS, FOREVER_NS)]}, "expect_link_down": "ab"},
                  START_NS, None),
    "silent peer": ({"phy_b_to_a": {"down": [(START_NS, FOREVER_NS)]},
                     "expect_link_down": "ab"}, START_NS, None),
}
#: The short form ``make test`` runs.
QUICK = ("flap 1us", "peer reset")


def _pair(mode="gbn"):
    from ..rtl.bridge.bridge import Bridge
    from ..tb.tops import Pair
    kw = dict(window=SETUP["window"], seq_bits=SETUP["seq_bits"], mode=mode, **SETUP["bridge"])
    return Pair(Bridge(SETUP["width"], **kw), Bridge(SETUP["width"], **kw), peer_reset=True)


def _slug(name):
    return name.replace(" ", "-")


def tasks(quick=False, sims=("verilator",), seed=1, mode="gbn"):
    """Every point to run: ``{"scenario", "sim", "seed", "mode"}``."""
    names = QUICK if quick else tuple(SCENARIOS)
    return [{"scenario": n, "sim": sim, "seed": seed, "mode": mode} for n in names for sim in sims]


def _record_path(task, out_dir):
    return (Path(out_dir) / "points" /
            f"{_slug(task['scenario'])}-{task['sim']}-{task['mode']}-s{task['seed']}.json")


def _bench(task, out_dir):
    """The testbench's record of ``task`` (``LinkTest.record``)."""
    from .runner import run_cocotb
    given, start, end = SCENARIOS[task["scenario"]]
    slug = f"{_slug(task['scenario'])}-{task['mode']}-s{task['seed']}"
    report = Path(out_dir).resolve() / "runs" / f"{slug}-{task['sim']}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    s = SETUP
    # long enough for the fault, the recovery and the rest of the traffic;
    # for a fault for good, for the containment and its answers
    hold_us = s["bridge"]["hold_time"] * TICK_NS / 1000
    drain_us = 3_000 + ((end if end is not None else start + 1000 * hold_us) or 0) / 1000
    params = {"width": s["width"], "seq_bits": s["seq_bits"], "window": s["window"],
              "mode": task["mode"], "bridge": s["bridge"], "count": s["count"],
              "bidirectional": True, "seed": task["seed"], "clock_ns": s["clock_ns"],
              "drain_us": drain_us, "timeline": True, "twin": False, "report": str(report),
              "workload": "transactions",
              **given,
              "phy": {"rate_gbps": s["rate_gbps"], "latency_ns": s["latency_ns"],
                      **given.get("phy", {})}}
    key = f"pair-w{s['width']}-s{s['seq_bits']}-win{s['window']}-faults" + \
        ("-sr" if task["mode"] == "sr" else "")
    run_cocotb(task["sim"], lambda: _pair(task["mode"]), "pair", "tlpoe.tb.test_link",
               build_key=key, testcase="LinkRandomTest", seed=20261125,
               run_name=f"faults-{slug}", params=params)
    return json.loads(report.read_text())


def summarise(scenario, raw):
    """The point's figures from the bench's record ``raw``: detect and
    recover times (ns; None where there is nothing to measure), TLPs lost,
    duplicated and corrupted over both directions."""
    _, start, end = SCENARIOS[scenario]
    clock = raw["clock_ns"]
    events = [(cycle * clock, side, what) for cycle, side, what in raw["timeline"]]
    down = [t for t, _, what in events if what == "down" and t >= start]
    detect = down[0] - start if down else None
    recover = None
    if end is not None:
        if not down:
            recover = 0.0           # the link never went down
        else:
            # the first moment after the first DOWN both are UP again
            state = {"a": "down", "b": "down"}
            for t, side, what in events:
                state[side] = what
                if t > down[0] and all(v == "up" for v in state.values()):
                    recover = max(0.0, t - end)
                    break
    reads = raw["transactions"].values()
    answered = sum(raw["answered_lost_both"].values())
    latencies = [r["error_latency_max_cycles"] for r in reads
                 if r["error_latency_max_cycles"] is not None]
    return {"detect_ns": detect, "recover_ns": recover,
            "tlps_sent": sum(raw["tlps_sent_both"].values()),
            "lost": sum(raw["lost_both"].values()) - answered,
            "late_completions_dropped": answered,
            "reads": sum(r["reads"] for r in reads),
            "requests_completed_with_error": sum(r["errors"] for r in reads),
            "error_wait_max_ns": max(latencies) * clock if latencies else None,
            "reads_forgotten": sum(r["forgotten"] for r in reads),
            "host_hangs": sum(r["hangs"] for r in reads),
            "transaction_problems": [p for r in reads for p in r["problems"]],
            "tracker": raw["tracker"],
            "duplicated": sum(raw["duplicated_both"].values()),
            "corrupted": sum(raw["corrupted_both"].values()),
            "link_up_at_end": all(raw["link_up_at_end"].values()),
            "peer_restarts": raw["peer_restarts"], "frames_dropped": raw["frames_dropped"],
            "timeline_ns": events}


def run_task(task, out_dir):
    """Run one point; returns its record (a pure function of the task)."""
    began = time.monotonic()
    raw = _bench(task, out_dir)
    _, start, end = SCENARIOS[task["scenario"]]
    record = {**task, "fault_start_ns": start, "fault_end_ns": end,
              **summarise(task["scenario"], raw), "wall_s": round(time.monotonic() - began, 1)}
    path = _record_path(task, out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def acceptance(records):
    """(check, passed, detail) for the whole run. The bound on detection is
    docs/link-state.md's: ``dead`` after the last good frame, plus a frame
    time; recovery within a KEEPALIVE interval and two flights."""
    s, checks = SETUP, []
    dead_ns = s["bridge"]["dead"] * s["clock_ns"]
    keepalive_ns = s["bridge"]["keepalive"] * s["clock_ns"]
    detect_bound = dead_ns + 2 * s["latency_ns"] + 2_000.0
    recover_bound = keepalive_ns + 4 * s["latency_ns"] + 2_000.0
    timeout_ns = s["bridge"]["cpl_timeout"] * TICK_NS
    for r in records:
        name = f"{r['scenario']} ({r['sim']}, {r['mode']})"
        survivable = r["fault_end_ns"] is not None
        checks.append((f"{name}: every read answered once (data or UR), none left waiting",
                       not r["host_hangs"] and not r["transaction_problems"],
                       f"{r['reads']} reads, {r['requests_completed_with_error']} answered UR, "
                       f"{r['host_hangs']} hangs, problems {r['transaction_problems'][:3]}"))
        if r["error_wait_max_ns"] is not None:
            checks.append((f"{name}: each UR within the completion timeout "
                           f"({timeout_ns / 1000:,.0f} us)", r["error_wait_max_ns"] <= timeout_ns,
                           f"longest wait {r['error_wait_max_ns'] / 1000:,.1f} us"))
        if r["scenario"] == "peer reset":
            checks.append((f"{name}: nothing duplicated or corrupted, the link back",
                           not r["duplicated"] and not r["corrupted"] and r["link_up_at_end"],
                           f"lost {r['lost']} (what the peer held), duplicated "
                           f"{r['duplicated']}, corrupted {r['corrupted']}"))
        elif survivable:
            checks.append((f"{name}: zero TLPs lost, duplicated or corrupted, no UR, the link "
                           "back", not (r["lost"] or r["duplicated"] or r["corrupted"]
                                        or r["requests_completed_with_error"])
                           and r["link_up_at_end"],
                           f"lost {r['lost']}, duplicated {r['duplicated']}, corrupted "
                           f"{r['corrupted']}, UR {r['requests_completed_with_error']}, up at "
                           f"the end {r['link_up_at_end']}"))
        else:
            checks.append((f"{name}: the link reported down, nothing duplicated or corrupted",
                           not r["link_up_at_end"] and not r["duplicated"] and not r["corrupted"],
                           f"lost {r['lost']} (after the cut), up at the end "
                           f"{r['link_up_at_end']}"))
        if r["detect_ns"] is not None:
            checks.append((f"{name}: detected within {detect_bound / 1000:g} us",
                           r["detect_ns"] <= detect_bound, f"{r['detect_ns'] / 1000:.1f} us"))
        elif r["scenario"] != "flap 1us":
            checks.append((f"{name}: detected", False, "no link_down seen"))
        if survivable and r["recover_ns"] is not None and r["scenario"] != "peer reset":
            checks.append((f"{name}: recovered within {recover_bound / 1000:g} us",
                           r["recover_ns"] <= recover_bound, f"{r['recover_ns'] / 1000:.1f} us"))
    return checks


def _us(value):
    return "–" if value is None else f"{value / 1000:,.1f}"


def markdown(records, checks, quick):
    s = SETUP
    lines = [f"# Faults{' (quick)' if quick else ''}", "",
             f"Two bridges ({s['width']} bits at {1000 / s['clock_ns']:g} MHz, window "
             f"{s['window']}, link state: KEEPALIVE every {s['bridge']['keepalive']} cycles, "
             f"dead after {s['bridge']['dead']}; completion tracker: containment after "
             f"{s['bridge']['hold_time'] * TICK_NS / 1e6:g} ms DOWN, completion timeout "
             f"{s['bridge']['cpl_timeout'] * TICK_NS / 1e6:g} ms), {s['rate_gbps']} Gb/s, "
             f"{s['latency_ns'] / 1000:g} us one way, {s['count']} TLPs each way (writes and "
             f"reads, each side answering the other's reads); the fault starts "
             f"{START_NS / 1000:g} us in. Times in us.", "",
             "| scenario | sim | mode | detect | recover | lost | duplicated | corrupted | "
             "up at end | reads | answered UR | longest wait for a UR | completions not "
             "needed | hangs |",
             "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in records:
        lines.append(f"| {r['scenario']} | {r['sim']} | {r['mode']} | {_us(r['detect_ns'])} | "
                     f"{_us(r['recover_ns'])} | {r['lost']} | {r['duplicated']} | "
                     f"{r['corrupted']} | {'yes' if r['link_up_at_end'] else 'no'} | "
                     f"{r['reads']} | {r['requests_completed_with_error']} | "
                     f"{_us(r['error_wait_max_ns'])} | {r['late_completions_dropped']} | "
                     f"{r['host_hangs']} |")
    lines += ["", "Lost: TLPs that never arrived, besides the completions no longer needed "
              "(of reads already answered with UR, or forgotten with a reset requester: "
              "dropped as late by the requester's bridge, or lost with the peer; counted "
              "apart). "
              "After a peer reset they are what the peer held (its own reads from before its "
              "reset are forgotten with it: not hangs); after a cut, what could not be sent "
              "(posted ones counted in `posted_dropped` once contained).", "",
              "## Acceptance", ""]
    lines += [f"- {'pass' if ok else 'FAIL'}: {c}: {d}" for c, ok, d in checks]
    return "\n".join(lines) + "\n"


def plot(records, out_dir):
    """timeline.png: each point's link state over time, A and B."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 0.6 + 0.5 * len(records)))
    for row, r in enumerate(records):
        for k, side in enumerate(("a", "b")):
            y = row + 0.2 * k
            t, up = 0.0, False          # DOWN from reset until the first handshake
            for when, s, what in r["timeline_ns"]:
                if s != side:
                    continue
                ax.plot([t / 1000, when / 1000], [y, y], color="tab:green" if up else "tab:red",
                        lw=3)
                t, up = when, what == "up"
            last = max([t, r["fault_end_ns"] or 0] + [w for w, _, _ in r["timeline_ns"]])
            ax.plot([t / 1000, 1.5 * last / 1000 + 10], [y, y],
                    color="tab:green" if up else "tab:red", lw=3)
        ax.axvline(r["fault_start_ns"] / 1000, color="grey", lw=0.5)
    ax.set_yticks([i + 0.1 for i in range(len(records))])
    ax.set_yticklabels([f"{r['scenario']} ({r['sim']})" for r in records])
    ax.set_xscale("symlog", linthresh=100)
    ax.set_xlim(left=0)
    ax.set_xlabel("time (us; green UP, red DOWN; upper line B, lower A)")
    fig.tight_layout()
    fig.savefig(Path(out_dir) / "timeline.png", dpi=100)
    plt.close(fig)


def write_report(records, out_dir, quick):
    """faults.json, faults.md, timeline.png; returns the acceptance checks."""
    out_dir = Path(out_dir)
    order = {name: i for i, name in enumerate(SCENARIOS)}
    records = sorted(records, key=lambda r: (order[r["scenario"]], r["sim"], r["mode"]))
    checks = acceptance(records)
    (out_dir / "faults.json").write_text(json.dumps({
        "setup": SETUP, "quick": quick, "records": records,
        "acceptance": [{"check": c, "passed": ok, "detail": d} for c, ok, d in checks],
    }, indent=2) + "\n")
    (out_dir / "faults.md").write_text(markdown(records, checks, quick))
    plot(records, out_dir)
    return checks


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tlpoe.sim.faults",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short form `make test` runs")
    parser.add_argument("--out", default="build/reports/faults", help="report folder")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel points")
    parser.add_argument("--sims", nargs="+", choices=("verilator", "icarus"),
                        default=["verilator"], help="RTL simulators (default: verilator)")
    parser.add_argument("--modes", nargs="+", choices=("gbn", "sr"), default=["gbn"],
                        help="link modes (default: gbn)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, not {args.jobs}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [t for mode in args.modes for t in tasks(args.quick, args.sims, args.seed, mode)]
    print(f"faults: {len(todo)} points on {args.jobs} worker(s), writing {out_dir}/", flush=True)
    records, failed = [], []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_task, task, out_dir): task for task in todo}
        for done, future in enumerate(as_completed(futures), 1):
            task = futures[future]
            label = f"{task['scenario']} on {task['sim']} ({task['mode']})"
            try:
                r = future.result()
            except Exception as e:      # a failed run is reported, the rest go on
                failed.append(f"{label}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
                print(f"[{done}/{len(todo)}] {label}: FAILED ({failed[-1]})", flush=True)
                continue
            records.append(r)
            print(f"[{done}/{len(todo)}] {label}: detect {_us(r['detect_ns'])} us, recover "
                  f"{_us(r['recover_ns'])} us, lost {r['lost']}, dup {r['duplicated']}, "
                  f"corrupt {r['corrupted']} ({r['wall_s']:.0f} s)", flush=True)
    checks = write_report(records, out_dir, args.quick)
    for name, ok, detail in checks:
        print(f"{'pass' if ok else 'FAIL'}: {name}: {detail}")
    for line in failed:
        print(f"FAIL: run failed: {line}")
    print(f"report: {out_dir / 'faults.md'}")
    return 0 if all(ok for _, ok, _ in checks) and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
