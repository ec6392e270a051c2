"""`make coverage` (sim/coverage.py): reading Verilator's coverage data and
cocotb-coverage databases, and one real coverage run merged into a report
that names every RTL block."""

import json

import pytest
import yaml

from tlpoe.sim import coverage
from tlpoe.sim.runner import run_cocotb, simulators


def test_points_are_charged_to_the_block_of_the_nearest_src_attribute(tmp_path):
    verilog = tmp_path / "top.v"
    verilog.write_text("module top;\n"
                       '  (* src = "%s/rtl/framing/framer.py:10" *)\n'
                       "  reg a;\n"
                       '  (* src = "/x/amaranth/lib/fifo.py:3" *)\n'
                       "  reg b;\nendmodule\n" % coverage.ROOT)
    dat = tmp_path / "coverage.dat"

    def point(line, page, count, name):
        key = f"\x01f\x02{verilog}\x01l\x02{line}\x01page\x02{page}/top\x01o\x02{name}"
        return f"C '{key}' {count}\n"

    dat.write_text("# SystemC::Coverage-3\n" + point(3, "v_line", 5, "a") +
                   point(3, "v_toggle", 0, "a:0->1") + point(3, "v_toggle", 2, "a:1->0") +
                   point(5, "v_branch", 0, "b"))
    blocks = coverage.collect_code([dat, dat])          # the same run twice: counts add
    assert blocks["framer"]["line"] == [1, 1] and blocks["framer"]["toggle"] == [2, 1]
    assert blocks["amaranth"]["line"] == [1, 0]
    rep = coverage.report(blocks, {}, 2)
    assert rep["blocks"]["framer"]["toggle_pct"] == 50.0
    assert "framer" in rep["holes"]["blocks_below_goals"]
    assert set(coverage.rtl_blocks()) <= set(rep["blocks"])
    assert not rep["blocks"]["bridge"]["simulated"]


def test_functional_databases_merge_bin_by_bin(tmp_path):
    for i, hits in enumerate(({"x": 1, "y": 0}, {"x": 0, "y": 0})):
        (tmp_path / f"{i}.yml").write_text(yaml.safe_dump({"cp": {"bins:_hits": hits,
                                                                   "coverage": 1, "size": 2}}))
    groups = coverage.collect_functional(sorted(tmp_path.glob("*.yml")))
    rep = coverage.report({}, groups, 2)
    assert rep["covergroups"]["cp"]["bins_total"] == 2
    assert rep["covergroups"]["cp"]["bins_hit"] == 1
    assert rep["holes"]["bins_not_hit"] == {"cp": ["y"]}


@pytest.mark.sim
@pytest.mark.skipif("verilator" not in simulators(), reason="coverage is Verilator's")
def test_a_coverage_run_reports_every_block(tmp_path):
    """One bench built with Verilator coverage, then the report: every RTL
    block named, the Translator's line coverage measured, holes listed."""
    from tlpoe.rtl.fabric.translate import Translator
    run_cocotb("verilator", lambda: Translator(64, windows=2, functions=2), "translator",
               "tlpoe.tb.test_translate", build_key="translator-w64-covtest",
               testcase="TranslateRandomTest", seed=1, run_name="covtest", coverage=True,
               params={"width": 64, "count": 150})
    assert coverage.main(["--no-run", "--out", str(tmp_path)]) == 0
    rep = json.loads((tmp_path / "coverage.json").read_text())
    assert set(coverage.rtl_blocks()) <= set(rep["blocks"])
    translate = rep["blocks"]["translate"]
    assert translate["simulated"] and translate["line_points"] > 100
    assert 50 < translate["line_pct"] <= 100 and translate["toggle_pct"] > 10
    assert (tmp_path / "index.html").read_text().count("<tr>") > len(coverage.rtl_blocks())
    assert "## Holes" in (tmp_path / "coverage.md").read_text()
