"""``make ordering``: the ordering rules on the RTL, reported cell by cell.

Two runs of the ordering bench (``tb/test_classq.py``: per-class queues
with the RTL ordering checker on their egress, a credit-limited peer, the
ordering model as judge), each a pure function of its parameters and seed,
in a process pool:

``legal``
    the real arbiter over random writes, reads and split completions with
    RO and IDO (``ordering`` workload): every cell of the table must be
    hit, nothing flagged by the model or by the RTL checker;
``illegal``
    the test-only arbiter that lets reads and completions pass posted
    writes: every illegal pass the model finds must be flagged by the RTL
    checker, and nothing else (IDO in the traffic);

and two runs across two bridges and the network (``tb/test_link.py``:
bridge A sends through the NIC/PHY model to bridge B, whose small receive
queues make the credits bind; a scoreboard that allows exactly PCIe's
passes; both bridges' ordering checkers; the wire-level credit monitor):

``bridge-legal``
    the ``ordering`` workload through the real queues: no illegal pass,
    nothing flagged by either bridge's checkers, no TLP sent beyond B's credits;
``bridge-illegal``
    A's test-only arbiter: the checkers (A's transmit queues', B's receive
    queues') flag exactly the TLPs the scoreboard sees make an illegal pass;

and the RTL checker alone (``tb/test_order_check.py``, ``checker``):
100,000 TLPs of a queue's random ingress and egress with legal and illegal
passes (RO, IDO, split completions, I/O and Configuration Write
completions, two requesters), each TLP's verdict equal to the model
checker's and the table's: no false positive, no miss.

Writes ``build/reports/ordering/``: ``ordering.json`` (``cells_total``,
``cells_hit``, ``violations_injected``, ``violations_caught``,
``false_positives``, ``tlps_checked`` and both runs' records) and
``ordering.md`` (the table with hit counts). ``--quick`` (run by ``make
test``) is the short mode. Exits 1 when a check fails, 2 on a bad argument.
"""

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ..models.ordering import CELL_IDS, table_markdown

__all__ = ["RUNS", "BRIDGE_RUNS", "BRIDGE", "CHECKER", "CHECKER_RUN", "bridge_pair", "run",
           "run_bridges", "run_checker", "summarise", "main"]

#: name -> (illegal arbiter, TLPs in full mode, TLPs in quick mode)
RUNS = {"legal": (False, 100_000, 4_000), "illegal": (True, 20_000, 2_000)}
#: The checker alone: (TLPs in full mode, in quick mode), at CHECKER's width and window
CHECKER_RUN = (100_000, 3_000)
CHECKER = {"width": 256, "window": 64}
BRIDGE_RUNS = {"bridge-legal": (False, 20_000, 600), "bridge-illegal": (True, 5_000, 400)}

#: The two-bridge setup: 64 bits, window 8, 6-bit sequence numbers; B's
#: receive queues hold 4 TLPs (4 header credits) and 256 beats per class.
BRIDGE = {"width": 64, "window": 8, "seq_bits": 6, "max_retries": 6,
          "queue_depth": 256, "queue_tlps": 4, "phy": {"rate_gbps": 10, "latency_ns": 1000.0}}


def bridge_pair(illegal=False):
    """Bridges A (the sender; ``illegal``: the test-only arbiter) and B under a Pair."""
    from ..rtl.bridge.bridge import Bridge
    from ..tb.tops import Pair
    kw = {k: BRIDGE[k] for k in ("window", "seq_bits", "max_retries", "queue_depth",
                                 "queue_tlps")}
    return Pair(Bridge(BRIDGE["width"], reorder_illegally=illegal, **kw),
                Bridge(BRIDGE["width"], **kw))


def bridge_build_key(illegal=False):
    return f"pair-w{BRIDGE['width']}-small-queues" + ("-illegal" if illegal else "")


def run_bridges(name, count, seed, sim, out_dir):
    """One two-bridge run; returns the link testbench's record."""
    from .runner import run_cocotb
    illegal = BRIDGE_RUNS[name][0]
    report = Path(out_dir).resolve() / f"{name}-{sim}-s{seed}.json"
    start = time.monotonic()
    run_cocotb(sim, lambda: bridge_pair(illegal), "pair", "tlpoe.tb.test_link",
               build_key=bridge_build_key(illegal), testcase="LinkRandomTest", seed=seed,
               run_name=f"ordering-{name}-s{seed}",
               params={"width": BRIDGE["width"], "seq_bits": BRIDGE["seq_bits"],
                       "window": BRIDGE["window"], "phy": BRIDGE["phy"], "seed": seed,
                       "count": count, "workload": "ordering", "valid_gap": 0.0,
                       "backpressure": 0.3, "ido": 0.1,
                       "expect_order_violations": illegal, "drain_us": 20 * count + 2000,
                       "coverage_file": "coverage.yml",
                       "report": str(report)})
    record = json.loads(report.read_text())
    record.update(run=name, sim=sim, seed=seed, wall_s=round(time.monotonic() - start, 1))
    return record


def run(name, count, seed, sim, out_dir):
    """One bench run; returns its record (see ``OrderJudge.write_report``)."""
    from ..tb.tops import CheckedQueues
    from .runner import run_cocotb
    illegal = RUNS[name][0]
    report = Path(out_dir).resolve() / f"{name}-{sim}-s{seed}.json"
    start = time.monotonic()
    run_cocotb(sim, lambda: CheckedQueues(256, depth=64, tlps=16, reorder_illegally=illegal),
               "checkedq", "tlpoe.tb.test_classq",
               build_key="checkedq-w256" + ("-illegal" if illegal else ""),
               testcase="ClassqRandomTest", seed=seed, run_name=f"ordering-{name}-s{seed}",
               params={"width": 256, "seed": seed, "count": count, "workload": "ordering",
                       "drain_every": 2, "valid_gap": 0.05, "backpressure": 0.2,
                       "expect_violations": illegal, "min_passes": 1, "drain_us": 100_000,
                       "coverage_file": "coverage.yml",
                       "report": str(report)})
    record = json.loads(report.read_text())
    record.update(run=name, sim=sim, seed=seed, wall_s=round(time.monotonic() - start, 1))
    return record


def run_checker(count, seed, sim, out_dir):
    """The OrderChecker alone (``tb/test_order_check.py``) on ``count`` TLPs
    of :func:`~tlpoe.tb.stimulus.ordering_trace`; returns its record."""
    from ..rtl.queues.order_check import OrderChecker
    from .runner import run_cocotb
    report = Path(out_dir).resolve() / f"checker-{sim}-s{seed}.json"
    start = time.monotonic()
    run_cocotb(sim, lambda: OrderChecker(CHECKER["width"], window=CHECKER["window"]),
               "order_check", "tlpoe.tb.test_order_check",
               build_key=f"order-check-w{CHECKER['width']}", seed=seed,
               run_name=f"ordering-checker-s{seed}",
               params={**CHECKER, "seed": seed, "count": count, "report": str(report)})
    record = json.loads(report.read_text())
    record.update(run="checker", sim=sim, seed=seed, wall_s=round(time.monotonic() - start, 1))
    return record


def checker_checks(r):
    """The checker-alone run's checks."""
    return [
        ("the RTL checker alone: every verdict the model's and the table's",
         r["verdicts_differing"] == 0 and r["rtl_tlps_checked"] == r["tlps"],
         f"{r['tlps']:,} TLPs, {r['passes']:,} passes, {r['model_violations']:,} illegal "
         f"({r['rtl_by_cell']}); {r['verdicts_differing']} verdicts differ"),
        ("the RTL checker alone: no false positive, no miss",
         r["false_positives"] == 0 and r["misses"] == 0 and r["model_violations"] > 0,
         f"{r['false_positives']} false positives, {r['misses']} misses"),
    ]


def summarise(legal, illegal):
    """The report's figures from the two runs' records."""
    hits = legal["cell_hits"]
    injected = sum(illegal["model_violations"].values())
    return {
        "cells_total": len(CELL_IDS),
        "cells_hit": sum(1 for c in CELL_IDS if hits[c]),
        "cell_hits": hits,
        "violations_injected": injected,
        "violations_caught": sum(min(n, illegal["rtl_by_cell"][c])
                                 for c, n in illegal["model_violations"].items()),
        "false_positives": legal["rtl_violations"] + sum(legal["model_violations"].values())
        + sum(max(0, illegal["rtl_by_cell"][c] - n)
              for c, n in illegal["model_violations"].items()),
        "verdicts_differing": legal["verdicts_differing"] + illegal["verdicts_differing"],
        "tlps_checked": legal["rtl_tlps_checked"] + illegal["rtl_tlps_checked"],
        "passes_legal": legal["passes"],
    }


def bridge_checks(legal, illegal):
    """The two-bridge runs' checks (records of ``tb/test_link.py``)."""
    delivered = all(r["lost"] == r["duplicated"] == 0 for r in (legal, illegal))
    return [
        ("across two bridges: no illegal pass and nothing flagged (legal run)",
         legal["illegal_passes"] == 0 and legal["order_violations"] == 0,
         f"{legal['legal_passes']:,} legal passes over {legal['tlps_delivered']:,} TLPs, "
         f"{legal['order_violations']} flagged"),
        ("across two bridges: the checkers (A's transmit, B's receive) flag exactly the TLPs "
         "that passed illegally",
         illegal["illegal_tlps"] > 0 and illegal["order_violations"] == illegal["illegal_tlps"],
         f"{illegal['order_violations']}/{illegal['illegal_tlps']} TLPs "
         f"({illegal['illegal_passes']} illegal passes)"),
        ("across two bridges: the receiver never overruns (no TLP beyond B's credits)",
         legal["credit_overruns"] == 0 and illegal["credit_overruns"] == 0,
         f"credit stalls at A (cycles): {legal['credit_stall_cycles']}"),
        ("across two bridges: every TLP delivered once", delivered, ""),
    ]


def checks(summary, legal, illegal):
    return [
        ("every cell of the ordering table hit",
         summary["cells_hit"] == summary["cells_total"],
         f"{summary['cells_hit']}/{summary['cells_total']}"),
        ("every injected illegal pass caught by the RTL checker",
         summary["violations_injected"] > 0
         and summary["violations_caught"] == summary["violations_injected"],
         f"{summary['violations_caught']}/{summary['violations_injected']}"),
        ("no false positive (legal and illegal runs)", summary["false_positives"] == 0,
         f"{summary['false_positives']} over {legal['tlps'] + illegal['tlps']:,} TLPs"),
        ("the RTL checker's verdict on each TLP is the model's",
         summary["verdicts_differing"] == 0, f"{summary['verdicts_differing']} differ"),
        ("every TLP delivered once", not (legal["missing"] or legal["unexpected"]
                                          or illegal["missing"] or illegal["unexpected"]), ""),
    ]


def markdown(summary, results, quick):
    lines = ["# Ordering: per-class queues and the RTL checker" + (" (quick mode)" if quick else ""),
             "", "| Check | Result | Detail |", "|---|---|---|"]
    lines += [f"| {name} | {'pass' if ok else '**FAIL**'} | {detail} |"
              for name, ok, detail in results]
    lines += ["", f"TLPs checked: {summary['tlps_checked']:,}; legal passes made by the queues: "
              f"{summary['passes_legal']:,}.", "",
              "## The table, with the pairs of TLPs met in each cell (legal run)", "",
              table_markdown(summary["cell_hits"]), ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tlpoe.sim.ordering",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short mode `make test` runs")
    parser.add_argument("--out", default="build/reports/ordering", help="report folder")
    parser.add_argument("--sim", default="verilator", choices=("verilator", "icarus"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, not {args.jobs}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"ordering: {len(RUNS) + len(BRIDGE_RUNS) + 1} runs on {args.sim}, writing {out_dir}/",
          flush=True)
    records = {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {name: pool.submit(run, name, quick if args.quick else full, args.seed,
                                     args.sim, out_dir)
                   for name, (_, full, quick) in RUNS.items()}
        futures.update({name: pool.submit(run_bridges, name, quick if args.quick else full,
                                          args.seed, args.sim, out_dir)
                        for name, (_, full, quick) in BRIDGE_RUNS.items()})
        futures["checker"] = pool.submit(run_checker, CHECKER_RUN[bool(args.quick)], args.seed,
                                         args.sim, out_dir)
        for name, future in futures.items():
            r = records[name] = future.result()
            if name in RUNS or name == "checker":
                print(f"{name}: {r['tlps']:,} TLPs, {r['passes']:,} passes, "
                      f"RTL flagged {r['rtl_violations']} ({r['wall_s']} s)", flush=True)
            else:
                print(f"{name}: {r['tlps_delivered']:,} TLPs through two bridges, "
                      f"{r['legal_passes']:,} legal and {r['illegal_passes']} illegal passes, "
                      f"the checkers flagged {r['order_violations']} ({r['wall_s']} s)", flush=True)
    summary = summarise(records["legal"], records["illegal"])
    summary["bridge_tlps_checked"] = sum(records[n]["tlps_delivered"] for n in BRIDGE_RUNS)
    summary["tlps_checked"] += summary["bridge_tlps_checked"] + records["checker"]["tlps"]
    summary["checker"] = {k: records["checker"][k] for k in (
        "tlps", "passes", "model_violations", "rtl_violations", "false_positives", "misses",
        "verdicts_differing")}
    results = checks(summary, records["legal"], records["illegal"]) + bridge_checks(
        records["bridge-legal"], records["bridge-illegal"]) + checker_checks(records["checker"])
    (out_dir / "ordering.json").write_text(json.dumps(
        {**summary, "quick": args.quick, "runs": records,
         "checks": [{"check": c, "passed": ok, "detail": d} for c, ok, d in results]},
        indent=2) + "\n")
    (out_dir / "ordering.md").write_text(markdown(summary, results, args.quick))
    for name, ok, detail in results:
        print(f"{'pass' if ok else 'FAIL'}: {name}: {detail}")
    print(f"report: {out_dir / 'ordering.md'}")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
