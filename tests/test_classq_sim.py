"""ClassQueues (P/NP/Cpl queues, ordering-aware arbiter, credits) with the
OrderChecker on its egress, on Icarus and Verilator, both judged by the
ordering model (tb/test_classq.py)."""

import pytest

from tlpoe.tb.tops import CheckedQueues
from tlpoe.sim.runner import run_cocotb, simulators

MODULE = "tlpoe.tb.test_classq"
SEED = 20261125
pytestmark = [pytest.mark.sim]
SIMS = simulators()


def run(sim, name, illegal=False, **params):
    return run_cocotb(sim, lambda: CheckedQueues(64, depth=64, tlps=16, reorder_illegally=illegal),
                      "checkedq", MODULE, build_key="checkedq-w64" + ("-illegal" if illegal else ""),
                      testcase="ClassqRandomTest", seed=SEED, run_name=name,
                      params={"coverage_file": "coverage.yml", **params})


@pytest.mark.parametrize("sim", SIMS)
def test_random_traffic_only_legal_passes(sim):
    """2,000 random TLPs of every type, random backpressure and a credit-limited
    peer: every TLP once, only legal passes (and some), no buffer overrun."""
    run(sim, "random", count=2000, min_passes=50)


@pytest.mark.parametrize("sim", SIMS)
def test_posted_flows_while_np_starved_for_10000_cycles(sim):
    """NP credits withheld for 10,000 cycles: posted writes keep flowing past
    the blocked reads, the reads resume when credits return."""
    run(sim, "np-starved", workload="np_blocked", count=2500, valid_gap=0.0, backpressure=0.0,
        drain_every=4, np_block_start=0, np_block_cycles=10_000, min_passes=2000)


@pytest.mark.parametrize("sim", SIMS)
def test_illegal_arbiter_is_caught(sim):
    """The test-only arbiter lets reads and completions pass posted writes: the
    ordering model must find B2a/D2a violations, and the RTL checker flag
    exactly those TLPs."""
    run(sim, "illegal", illegal=True, count=1000, expect_violations=True)
