"""The hostile-input bench (tb/test_fuzz.py) in its short form, on Icarus and
Verilator: seeded hostile frames into the Decapsulator at 64 bits (MTU 1500)
and 512 bits (MTU 9000). ``make fuzz`` (sim/fuzz.py) runs the long form."""

import json

import pytest

from tlpoe.sim.fuzz import FRAMES_SHORT, run_point
from tlpoe.sim.runner import simulators

pytestmark = [pytest.mark.sim]

#: Hostile frames per run: 10,000 on Verilator over the two widths, fewer on
#: the slower Icarus.
SHORT = {"verilator": FRAMES_SHORT // 2, "icarus": 1000}


@pytest.mark.parametrize("sim", simulators())
@pytest.mark.parametrize("width", [64, 512])
def test_decapsulator_hostile_frames(sim, width, tmp_path):
    record = run_point({"target": "decap", "sim": sim, "width": width, "seed": 1,
                        "frames": SHORT[sim]}, tmp_path)
    assert record["errors"] == [] and record["hostile_frames"] >= SHORT[sim]
    verdicts = record["verdicts"]
    # the stream reaches every drop reason and good frames of both kinds
    for reason in ("TRUNCATED", "ETHERTYPE", "VERSION", "CRC", "PREFIX_OVERRUN",
                   "COUNT_MISMATCH", "EMPTY_DATA", "OVERSIZE"):
        assert verdicts.get(f"drop {reason}", 0) > 0, reason
    assert verdicts.get("data", 0) > 0
    assert record["max_stall"] <= record["stall_bound"]
    json.dumps(record)
