"""Helpers of the twin proofs (``tests/test_*_twin.py``,
``tests/test_bridge_model.py``): an RTL block and its cycle twin run side
by side in amaranth.sim, compared cycle by cycle."""

from amaranth.sim import Simulator

__all__ = ["simulate", "assert_same"]


def simulate(dut, bench, period=1e-8):
    """Runs the async testbench ``bench(ctx)`` on ``dut`` with a clock."""
    sim = Simulator(dut)
    sim.add_clock(period)
    sim.add_testbench(bench)
    sim.run()


def assert_same(got, want, where):
    """Every key of ``want`` (the model's) equal in ``got`` (the RTL's)."""
    for key in want:
        assert got[key] == want[key], f"{where}: {key}: RTL {got[key]} model {want[key]}"
