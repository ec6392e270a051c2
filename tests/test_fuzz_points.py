"""sim/fuzz.py's points: what `make fuzz` and its short form run (no simulation)."""

import pytest

from tlpoe.sim import fuzz


def _frames(points, **match):
    return sum(p["frames"] for p in points if all(p.get(k) == v for k, v in match.items()))


def test_the_full_run_gives_every_width_and_mode_100000_hostile_frames():
    points = fuzz.points()
    for width in fuzz.MTU:
        assert _frames(points, target="decap", width=width) >= fuzz.FRAMES_FULL
        for mode in fuzz.MODES:
            assert _frames(points, target="bridge", width=width, mode=mode) >= fuzz.FRAMES_FULL
    names = [fuzz.point_name(p) for p in points]
    assert len(set(names)) == len(names)


def test_the_short_form_gives_each_target_10000():
    points = fuzz.points(quick=True)
    for target in ("decap", "bridge"):
        assert _frames(points, target=target) == fuzz.FRAMES_SHORT
    assert {p["mode"] for p in points if p["target"] == "bridge"} == set(fuzz.MODES)


def test_a_target_can_run_alone():
    assert {p["target"] for p in fuzz.points(targets=("bridge",))} == {"bridge"}


@pytest.mark.parametrize("point, message", [
    ({"target": "link", "sim": "verilator", "width": 64, "seed": 1, "frames": 1}, "target"),
    ({"target": "decap", "sim": "verilator", "width": 128, "seed": 1, "frames": 1}, "width"),
    ({"target": "bridge", "sim": "verilator", "width": 64, "seed": 1, "frames": 1}, "mode"),
])
def test_a_bad_point_names_what_is_wrong(point, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        fuzz.run_point(point, tmp_path)


@pytest.mark.parametrize("argv", [["--jobs", "0"], ["--target", "link"]])
def test_a_bad_argument_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        fuzz.main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err
