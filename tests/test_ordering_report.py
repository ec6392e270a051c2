"""``make ordering``: the report's arithmetic and checks, its CLI, and the
quick run on a simulator."""

import json

import pytest

from tlpoe.models.ordering import CELL_IDS
from tlpoe.sim import ordering
from tlpoe.sim.runner import simulators

CELLS = ("A2a", "B2a", "D2a", "D5b")


def record(tlps=1000, hits=1, model=None, rtl=None, differing=0):
    none = dict.fromkeys(CELLS, 0)
    rtl = rtl or none
    return {"tlps": tlps, "passes": 10, "cell_hits": dict.fromkeys(CELL_IDS, hits),
            "model_violations": model or none, "rtl_violations": sum(rtl.values()),
            "rtl_by_cell": rtl, "rtl_tlps_checked": tlps, "verdicts_differing": differing,
            "missing": 0, "unexpected": 0}


def verdicts(legal, illegal):
    summary = ordering.summarise(legal, illegal)
    return summary, {name: ok for name, ok, _ in ordering.checks(summary, legal, illegal)}


def cells(**counts):
    return {**dict.fromkeys(CELLS, 0), **counts}


def test_all_checks_pass_when_the_rtl_flags_exactly_the_illegal_passes():
    illegal = record(model=cells(D2a=5, B2a=2), rtl=cells(D2a=5, B2a=2))
    summary, ok = verdicts(record(), illegal)
    assert all(ok.values())
    assert summary["violations_injected"] == summary["violations_caught"] == 7
    assert summary["false_positives"] == 0 and summary["tlps_checked"] == 2000


def test_checks_fail_on_a_miss_a_false_positive_a_verdict_or_a_cell_not_hit():
    _, ok = verdicts(record(), record(model=cells(B2a=4), rtl=cells(B2a=3)))
    assert not ok["every injected illegal pass caught by the RTL checker"]
    _, ok = verdicts(record(rtl=cells(A2a=1)), record(model=cells(B2a=1), rtl=cells(B2a=1)))
    assert not ok["no false positive (legal and illegal runs)"]
    _, ok = verdicts(record(), record(model=cells(B2a=1), rtl=cells(B2a=1, D2a=1)))
    assert not ok["no false positive (legal and illegal runs)"]
    _, ok = verdicts(record(), record(model=cells(B2a=1), rtl=cells(B2a=1), differing=1))
    assert not ok["the RTL checker's verdict on each TLP is the model's"]
    _, ok = verdicts(record(hits=0), record(model=cells(B2a=1), rtl=cells(B2a=1)))
    assert not ok["every cell of the ordering table hit"]
    _, ok = verdicts(record(), record())          # an illegal run that injected nothing
    assert not ok["every injected illegal pass caught by the RTL checker"]


def test_checker_checks():
    good = {"tlps": 100, "passes": 50, "model_violations": 9, "rtl_by_cell": cells(A2a=9),
            "rtl_tlps_checked": 100, "verdicts_differing": 0, "false_positives": 0, "misses": 0}
    assert all(ok for _, ok, _ in ordering.checker_checks(good))
    for bad in ({"misses": 1}, {"false_positives": 1}, {"verdicts_differing": 2},
                {"rtl_tlps_checked": 99}, {"model_violations": 0}):
        assert not all(ok for _, ok, _ in ordering.checker_checks({**good, **bad})), bad


def test_cli_rejects_a_bad_argument(capsys):
    with pytest.raises(SystemExit) as exit_info:
        ordering.main(["--jobs", "0"])
    assert exit_info.value.code == 2 and "--jobs must be at least 1" in capsys.readouterr().err


@pytest.mark.sim
def test_quick_ordering_report(tmp_path):
    """``make ordering QUICK=1``: every cell hit, every injected illegal pass
    caught by the RTL checker, no false positive; JSON and Markdown written."""
    sim = "verilator" if "verilator" in simulators() else simulators()[0]
    assert ordering.main(["--quick", "--out", str(tmp_path), "--sim", sim, "--jobs", "1"]) == 0
    report = json.loads((tmp_path / "ordering.json").read_text())
    for key in ("cells_total", "cells_hit", "violations_injected", "violations_caught",
                "false_positives", "tlps_checked"):
        assert key in report
    assert report["cells_hit"] == report["cells_total"] == len(CELL_IDS)
    assert report["violations_caught"] == report["violations_injected"] > 0
    assert report["false_positives"] == 0
    assert report["checker"]["verdicts_differing"] == 0 and report["checker"]["tlps"] >= 3000
    assert "| D5b |" in (tmp_path / "ordering.md").read_text()
