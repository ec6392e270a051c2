"""`make perf` (sim/perf.py) in its short mode: every bench on every
simulator and every model measured, and a bad argument refused."""

import json

import pytest

from tlpoe.sim import perf
from tlpoe.sim.runner import simulators


@pytest.mark.sim
def test_quick_perf_measures_every_bench_and_model(tmp_path):
    sims = simulators()
    assert perf.main(["--quick", "--out", str(tmp_path), "--sims", " ".join(sims)]) == 0
    report = json.loads((tmp_path / "perf.json").read_text())
    runs = {(r["bench"], r["sim"]): r for r in report["benches"]}
    assert set(runs) == {(b, s) for b in perf.BENCHES for s in sims} - perf.QUICK_SKIP
    for r in runs.values():
        assert r["cycles"] > 100 and r["run_s"] > 0 and r["cycles_per_s"] > 0, r
        assert r["cycles_per_s"] == round(r["cycles"] / r["run_s"]) or \
            abs(r["cycles_per_s"] - r["cycles"] / r["run_s"]) <= 1
    for name in ("frame_encode_tlps", "frame_decode_tlps", "linksim_tlps",
                 "ordering_check_tlps", "ethswitch_frames"):
        assert report["models"][name]["per_s"] > 0, name
    md = (tmp_path / "perf.md").read_text()
    assert all(b in md for b in perf.BENCHES)


def test_bad_simulator_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        perf.main(["--sims", "modelsim"])
    assert exit_.value.code == 2
    assert "--sims" in capsys.readouterr().err
