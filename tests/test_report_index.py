"""`make report` (sim/report.py): the index links what each report wrote,
shows its plots, and says what failed or is missing."""

import pytest

from tlpoe.sim import report


def test_index_links_reports_plots_and_says_what_is_missing(tmp_path):
    (tmp_path / "ber").mkdir()
    (tmp_path / "ber" / "ber.md").write_text("# BER\n| point | goodput |\n")
    (tmp_path / "ber" / "ber.json").write_text("{}")
    (tmp_path / "ber" / "goodput.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "ordering").mkdir()
    (tmp_path / "ordering" / "ordering.md").write_text("# Ordering <13/13>\n")
    assert report.main(["--index-only", "--out", str(tmp_path)]) == 0
    page = (tmp_path / "index.html").read_text()
    assert "href='ber/ber.md'" in page and "href='ber/ber.json'" in page
    assert "<img src='ber/goodput.png'" in page
    assert "# Ordering &lt;13/13&gt;" in page           # the summary, escaped
    assert page.count("no report yet") == len(report.STEPS) - 2   # all but ber and ordering
    for name in report.STEPS:
        assert f"make {name}" in page


def test_a_failed_step_is_shown_and_fails_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "run_step", lambda name, quick: (0 if name == "ber" else 3, 1.5))
    assert report.main(["--only", "ber", "--only", "perf", "--out", str(tmp_path)]) == 1
    page = (tmp_path / "index.html").read_text()
    assert "ran in 1.5 s" in page and "FAILED</strong> (exit 3)" in page


def test_an_unknown_report_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        report.main(["--only", "lint"])
    assert exit_.value.code == 2 and "unknown report" in capsys.readouterr().err
