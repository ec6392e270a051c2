"""``make ber``: the sweep's points, the analytical engine, the acceptance
checks and the CLI; and the quick sweep itself on the simulators."""

import json

import pytest

from tlpoe.models.gbn import framing_efficiency
from tlpoe.sim import ber
from tlpoe.sim.runner import simulators


def test_full_sweep_covers_the_issue_range():
    names = [p["name"] for p in ber.points()]
    bers = sorted(p["ber"] for p in ber.points() if p["ber"])
    assert bers[0] == 1e-12 and bers[-1] == 1e-4
    assert any(p["burst"] for p in ber.points())
    assert {p["drop_rate"] for p in ber.points()} >= {0.0, 0.01}
    assert set(ber.QUICK_POINTS) <= set(names) and set(ber.ICARUS_POINTS) <= set(names)


def test_tasks_give_each_point_every_engine():
    tasks = ber.tasks(quick=False, sims=("verilator",))
    assert len(tasks) == 2 * len(ber.points())
    protected = [t for t in tasks if t["point"]["ber"] <= 1e-5 and t["point"]["drop_rate"] <= 0.01]
    assert all(t["tlps"] >= ber.FULL_TLPS for t in protected)
    quick = ber.tasks(quick=True, sims=("verilator", "icarus"))
    assert [t["engine"] for t in quick].count("rtl-icarus") == len(ber.ICARUS_POINTS)


def test_selective_repeat_engines_are_named_apart():
    both = ber.tasks(quick=True, sims=("verilator",), modes=("gbn", "sr"))
    sr = [t for t in both if t["mode"] == "sr"]
    assert {t["engine"] for t in sr} == {"rtl-verilator-sr", "model-sr"}
    assert {t["point"]["name"] for t in sr} == set(ber.QUICK_SR_POINTS)
    # with both simulators, the quick selective-repeat point runs on QUICK_SR_SIM only
    both = ber.tasks(quick=True, sims=("verilator", "icarus"), modes=("gbn", "sr"))
    assert {t["engine"] for t in both if t["mode"] == "sr"} == {
        f"rtl-{ber.QUICK_SR_SIM}-sr", "model-sr"}
    full = ber.tasks(quick=False, sims=("verilator",), modes=("gbn", "sr"))
    assert len(full) == 4 * len(ber.points())


def test_resume_reuses_written_records(tmp_path, monkeypatch):
    """With --resume a record already in points/ is read back, not run again."""
    task = ber.tasks(quick=True, sims=(), modes=("gbn",))[0]
    path = ber._record_path(task, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record(engine="model", point=task["point"]["name"],
                                      ber=task["point"]["ber"], wall_s=0.0, replays=0,
                                      latency_p50_ns=None, latency_p99_ns=None)))
    ran = []
    monkeypatch.setattr(ber, "tasks", lambda *a, **k: [task])
    monkeypatch.setattr(ber, "run_task", lambda *a, **k: ran.append(a))
    ber.main(["--quick", "--resume", "--out", str(tmp_path), "--sims", "verilator",
              "--modes", "gbn", "--jobs", "1"])
    assert not ran
    assert json.loads((tmp_path / "ber.json").read_text())["records"][0]["engine"] == "model"


def point(name):
    return next(p for p in ber.points() if p["name"] == name)


def test_analytical_engine():
    clean = ber.analytical_point(point("ber 1e-12"))
    assert clean["goodput_fraction"] == pytest.approx(framing_efficiency(256, 1500)[0], rel=1e-6)
    noisy = ber.analytical_point(point("ber 1e-05"))
    assert noisy["goodput_fraction"] < noisy["goodput_sr_fraction"] < clean["goodput_fraction"]
    assert noisy["latency_p99_ns"] > clean["latency_p99_ns"]
    # bursts cluster errors: fewer frames lost than independent errors at the same BER
    burst = ber.analytical_point(point("burst 1e-05/100b"))
    assert burst["frame_loss"] < noisy["frame_loss"]


def record(**kw):
    base = {"engine": "rtl-verilator", "point": "ber 1e-05", "ber": 1e-5, "drop_rate": 0.0,
            "burst": None, "tlps_sent": 10, "tlps_delivered": 10, "lost": 0, "duplicated": 0,
            "corrupted": 0, "link_down_events": 0, "overflows": 0, "wraps": 0,
            "goodput_fraction": 0.2,
            "analytical": ber.analytical_point(point("ber 1e-05"))}
    return {**base, **kw}


def test_acceptance_fails_on_a_lost_tlp_and_on_low_goodput():
    ok = ber.acceptance([record()], quick=True)
    assert all(passed for _, passed, _ in ok)
    lost = ber.acceptance([record(lost=1, tlps_delivered=9)], quick=True)
    assert not lost[0][1] and "lost 1" in lost[0][2]
    clean = record(point="ber 1e-12", ber=1e-12, goodput_fraction=0.80,
                   analytical=ber.analytical_point(point("ber 1e-12")))
    slow = ber.acceptance([clean], quick=True)
    assert [passed for _, passed, _ in slow] == [True, True, False]
    overflowed = ber.acceptance([record(overflows=2)], quick=True)
    assert not overflowed[1][1] and "ber 1e-05 (rtl-verilator): 2" in overflowed[1][2]
    full = ber.acceptance([record(tlps_sent=5_000, tlps_delivered=5_000)], quick=False)
    assert {name: passed for name, passed, _ in full} == {
        "zero lost, duplicated, corrupted up to BER 1e-5, under bursts, up to 1% drop": True,
        "zero overflows: the receive path never fell behind the MAC": True,
        f"at least {ber.FULL_TLPS:,} TLPs per point on Verilator (go-back-N, the default mode)":
            False,
        "at least two sequence wrap-arounds in one run": False}


@pytest.mark.parametrize("argv, message", [
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--tlps", "3"], "--tlps must be at least 10"),
    (["--sims", "questa"], "invalid choice: 'questa'"),
    (["--modes", "arq"], "invalid choice: 'arq'"),
])
def test_cli_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ber.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_transport_runs_its_own_engines_and_framing_limit():
    """``--transports udp``: its points on engines of their own (``-udp``),
    in --quick its goodput at 1e-12 and no loss at 1e-5 in go-back-N on
    Verilator; the framing limit is the transport's (28 bytes a frame
    more: below eth's) and the model runs the transport (its frames decode
    only as udp). The udp RTL at 64 bits under bit errors and drops runs
    in tests/test_transport_sim.py; this sweep's udp points, a 512-bit pair
    of their own to build, in ``make ber QUICK=1``."""
    quick = ber.tasks(True, ("verilator", "icarus"), None, 1, ("gbn", "sr"), ("eth", "udp"))
    udp = [t for t in quick if t["transport"] == "udp"]
    assert {(t["engine"], t["point"]["name"]) for t in udp} == {
        (e, p) for e in ("rtl-verilator-udp", "model-udp") for p in ber.QUICK_TRANSPORT_POINTS}
    eth_limit, udp_limit = ber.framing("eth")[0], ber.framing("udp")[0]
    assert udp_limit < eth_limit and ber.framing("udp")[2] - ber.framing("eth")[2] == 28
    point = ber.points(True)[0]
    record = ber.model_point(point, 1, 300, "gbn", "udp")
    assert record["lost"] == 0 and record["goodput_fraction"] == pytest.approx(udp_limit, rel=2e-3)
    assert ber.analytical_point(point, "udp")["framing_limit"] == udp_limit


@pytest.mark.sim
def test_quick_sweep(tmp_path):
    """``make ber QUICK=1`` in go-back-N: every quick point on the RTL
    (Verilator, and one short point on Icarus), the model and the
    analytical engine; zero TLPs lost, duplicated or corrupted; goodput at
    BER 1e-12 within 2% of the framing limit; the JSON, Markdown and plots
    written.

    Selective repeat's quick point (``make ber QUICK=1`` runs it) is left
    out here: its 512-bit Pair is a design of its own, 45 s to elaborate
    and 30 s to build and run on Icarus, a third of this test. Selective
    repeat under bit errors, drops and lost ACKs runs in
    ``tests/test_link_sim.py`` (64 bits, both simulators, the cycle twins
    beside it) and at 512 bits under hostile frames and lost frames in
    ``tests/test_fuzz_sim.py``."""
    sims = simulators()
    assert ber.main(["--quick", "--out", str(tmp_path), "--jobs", "1", "--sims", *sims,
                     "--modes", "gbn"]) == 0
    report = json.loads((tmp_path / "ber.json").read_text())
    records = report["records"]
    engines = {(r["point"], r["engine"]) for r in records}
    for name in ber.QUICK_POINTS:
        assert (name, "model") in engines
        if "verilator" in sims:
            assert (name, "rtl-verilator") in engines
    if "icarus" in sims:
        assert ("ber 1e-05", "rtl-icarus") in engines
    for r in records:
        assert set(ber.FIELDS) <= set(r)
        assert r["tlps_delivered"] == r["tlps_sent"] > 0
        assert r["lost"] == r["duplicated"] == r["corrupted"] == r["link_down_events"] == 0
    noisy = [r for r in records if r["point"] == "ber 1e-05"]
    assert all(r["replays"] > 0 for r in noisy)
    assert all(a["passed"] for a in report["acceptance"])
    assert len(list((tmp_path / "points").glob("*.json"))) == len(records)
    assert "| ber 1e-12 |" in (tmp_path / "ber.md").read_text()
    for png in ("goodput.png", "latency_p99.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
