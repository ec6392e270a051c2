"""The logic-depth budgets (``sim/depth.py`` ``BUDGETS``): the checked blocks
through Yosys ``synth_xilinx`` for UltraScale+, their longest
register-to-register path no deeper than its budget. Structural and
deterministic (the same Yosys, the same Verilog): no timing is measured."""

import pytest

from tlpoe.sim.depth import BUDGETS, CHECKED, run_point


@pytest.mark.parametrize("block, width", CHECKED)
def test_the_longest_path_stays_within_its_budget(block, width, tmp_path):
    record = run_point({"block": block, "width": width}, tmp_path)
    assert "error" not in record, record.get("error")
    budget = BUDGETS[block, width]
    assert record["lut_levels"] <= budget, (
        f"{block} at {width} bits: {record['lut_levels']} LUT levels, budget {budget}; "
        f"the path runs from {record['start']} to {record['end']} through "
        f"{' '.join(record['cells'])}")
