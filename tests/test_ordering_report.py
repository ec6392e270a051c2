"""``make ordering``: the report's arithmetic and checks, its CLI, and the
quick run on a simulator."""

import json

import pytest

from tlpoe.models.ordering import CELL_IDS
from tlpoe.sim import ordering
from tlpoe.sim.runner import simulators

CELLS = ("A2a", "B2a", "D2a", "D5b")


def record(tlps=1000, hits=1, model=None, model_no_ido=None, rtl=0):
    none = dict.fromkeys(CELLS, 0)
    return {"tlps": tlps, "passes": 10, "cell_hits": dict.fromkeys(CELL_IDS, hits),
            "model_violations": model or none, "model_violations_without_ido": model_no_ido or model or none,
            "rtl_violations": rtl, "rtl_by_cell": none, "rtl_tlps_checked": tlps,
            "missing": 0, "unexpected": 0}


def verdicts(legal, illegal):
    summary = ordering.summarise(legal, illegal)
    return summary, {name: ok for name, ok, _ in ordering.checks(summary, legal, illegal)}


def test_all_checks_pass_when_the_rtl_catches_every_illegal_pass():
    illegal = record(model={**dict.fromkeys(CELLS, 0), "D2a": 5},
                     model_no_ido={**dict.fromkeys(CELLS, 0), "D2a": 7}, rtl=7)
    summary, ok = verdicts(record(), illegal)
    assert all(ok.values())
    assert summary["violations_injected"] == summary["violations_caught"] == 5
    assert summary["flagged_ido_passes"] == 2 and summary["tlps_checked"] == 2000


def test_checks_fail_on_a_miss_a_false_positive_or_a_cell_not_hit():
    illegal = record(model={**dict.fromkeys(CELLS, 0), "B2a": 4}, rtl=3)
    _, ok = verdicts(record(), illegal)
    assert not ok["every injected illegal pass caught by the RTL checker"]
    _, ok = verdicts(record(rtl=1), record(model={**dict.fromkeys(CELLS, 0), "B2a": 1}, rtl=1))
    assert not ok["no false positive over the legal run"]
    _, ok = verdicts(record(hits=0), record(model={**dict.fromkeys(CELLS, 0), "B2a": 1}, rtl=1))
    assert not ok["every cell of the ordering table hit"]
    _, ok = verdicts(record(), record())          # an illegal run that injected nothing
    assert not ok["every injected illegal pass caught by the RTL checker"]


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
    assert "| D5b |" in (tmp_path / "ordering.md").read_text()
