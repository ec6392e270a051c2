"""``make faults``: the scenarios, the figures taken from a run's timeline,
the acceptance checks and the CLI; and the short form itself on Verilator."""

import json

import pytest

from tlpoe.sim import faults
from tlpoe.sim.runner import simulators

CLOCK = faults.SETUP["clock_ns"]


def test_the_scenarios_are_the_issues():
    assert set(faults.SCENARIOS) == {"flap 1us", "flap 100us", "flap 10ms", "peer reset",
                                     "switch reboot", "cable cut", "silent peer"}
    for name, (_, start, end) in faults.SCENARIOS.items():
        if name.startswith("flap"):
            length = {"1us": 1e3, "100us": 1e5, "10ms": 1e7}[name.split()[1]]
            assert end - start == length
    assert set(faults.QUICK) <= set(faults.SCENARIOS)
    assert [t["scenario"] for t in faults.tasks(quick=True)] == list(faults.QUICK)


def raw(timeline_ns, *, lost=0, duplicated=0, corrupted=0, up=True, answered=0, errors=0,
        hangs=0):
    """A bench record with the link events at these times (ns)."""
    reads = {"reads": 100, "completed": 100 - errors, "errors": errors, "forgotten": 0,
             "hangs": hangs, "error_latency_max_cycles": 1000 if errors else None,
             "problems": []}
    return {"clock_ns": CLOCK, "transactions": {"a": reads, "b": dict(reads, errors=0)},
            "answered_lost_both": {"ab": 0, "ba": answered}, "tracker": {},
            "timeline": [(round(t / CLOCK), side, what) for t, side, what in timeline_ns],
            "tlps_sent_both": {"a": 300, "b": 300},
            "lost_both": {"ab": lost, "ba": 0}, "duplicated_both": {"ab": duplicated, "ba": 0},
            "corrupted_both": {"ab": corrupted, "ba": 0},
            "link_up_at_end": {"a": up, "b": up}, "frames_dropped": {"a": 0, "b": 0},
            "peer_restarts": {"a": 0, "b": 0}}


def test_detect_and_recover_come_from_the_link_events():
    start = faults.SCENARIOS["flap 100us"][1]
    end = faults.SCENARIOS["flap 100us"][2]
    # both UP early on; A DOWN 15 us into the cut, B 17 us; A UP 4 us after
    # the cable is back, B 6 us after
    events = [(2_000, "a", "up"), (2_100, "b", "up"),
              (start + 15_000, "a", "down"), (start + 17_000, "b", "down"),
              (end + 4_000, "a", "up"), (end + 6_000, "b", "up")]
    got = faults.summarise("flap 100us", raw(events))
    assert got["detect_ns"] == pytest.approx(15_000)
    assert got["recover_ns"] == pytest.approx(6_000)
    assert got["lost"] == 0 and got["link_up_at_end"]
    # a flap the link rode out: no DOWN, nothing to recover from
    quiet = faults.summarise("flap 1us", raw(events[:2]))
    assert quiet["detect_ns"] is None and quiet["recover_ns"] == 0.0
    # a cut: detected, never recovered
    cut = faults.summarise("cable cut", raw(events[:4], up=False, lost=40))
    assert cut["detect_ns"] == pytest.approx(15_000) and cut["recover_ns"] is None
    # a peer reset: the completions of reads answered with UR are not lost
    reset = faults.summarise("peer reset", raw(events, lost=12, answered=5, errors=7))
    assert reset["lost"] == 7 and reset["late_completions_dropped"] == 5
    assert reset["requests_completed_with_error"] == 7 and reset["host_hangs"] == 0
    assert reset["error_wait_max_ns"] == pytest.approx(1000 * CLOCK)


def record(scenario, **figures):
    _, start, end = faults.SCENARIOS[scenario]
    base = {"scenario": scenario, "sim": "verilator", "mode": "gbn", "seed": 1,
            "fault_start_ns": start, "fault_end_ns": end, "detect_ns": 15_000.0,
            "recover_ns": 6_000.0, "lost": 0, "duplicated": 0, "corrupted": 0,
            "link_up_at_end": end is not None, "timeline_ns": [], "reads": 100,
            "requests_completed_with_error": 0, "error_wait_max_ns": None, "host_hangs": 0,
            "transaction_problems": [], "late_completions_dropped": 0}
    return {**base, **figures}


@pytest.mark.parametrize("bad, check", [
    (record("flap 100us", lost=1), "zero TLPs lost"),
    (record("flap 100us", link_up_at_end=False), "zero TLPs lost"),
    (record("flap 100us", detect_ns=60_000.0), "detected within"),
    (record("flap 100us", recover_ns=60_000.0), "recovered within"),
    (record("peer reset", duplicated=1, lost=30), "nothing duplicated"),
    (record("cable cut", link_up_at_end=True), "the link reported down"),
    (record("silent peer", detect_ns=None), "detected"),
    (record("cable cut", host_hangs=3), "none left waiting"),
    (record("peer reset", transaction_problems=["a: tag 3 answered twice"]), "answered once"),
    (record("flap 100us", requests_completed_with_error=2), "no UR"),
    (record("cable cut", requests_completed_with_error=5, error_wait_max_ns=1e9),
     "within the completion timeout"),
])
def test_acceptance_fails_where_the_issue_says(bad, check):
    good = [record(n) for n in ("flap 100us", "peer reset", "cable cut")]
    assert all(ok for _, ok, _ in faults.acceptance(good))
    failed = [c for c, ok, _ in faults.acceptance([bad]) if not ok]
    assert any(check in c for c in failed), failed


def test_a_bad_argument_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        faults.main(["--jobs", "0"])
    assert e.value.code == 2 and "--jobs must be at least 1" in capsys.readouterr().err


@pytest.mark.sim
@pytest.mark.skipif("verilator" not in simulators(), reason="needs Verilator")
def test_quick_faults(tmp_path):
    """The short form: a 1 us flap (ridden out: nothing lost) and a peer
    reset (detected, the link back, nothing twice or corrupted), with the
    report's three files."""
    assert faults.main(["--quick", "--out", str(tmp_path), "--jobs", "2"]) == 0
    report = json.loads((tmp_path / "faults.json").read_text())
    by = {r["scenario"]: r for r in report["records"]}
    assert set(by) == set(faults.QUICK)
    assert by["flap 1us"]["lost"] == 0 and by["flap 1us"]["link_up_at_end"]
    reset = by["peer reset"]
    assert reset["detect_ns"] is not None and reset["recover_ns"] is not None
    assert reset["link_up_at_end"] and not reset["duplicated"] and not reset["corrupted"]
    # the reads the reset lost were answered with UR, none left waiting
    assert reset["requests_completed_with_error"] and not reset["host_hangs"]
    assert by["flap 1us"]["reads"] and not by["flap 1us"]["requests_completed_with_error"]
    assert (tmp_path / "faults.md").read_text().startswith("# Faults (quick)")
    assert (tmp_path / "timeline.png").stat().st_size > 1000
