"""OrderChecker alone on Icarus and Verilator (tb/test_order_check.py): a
queue's random ingress and egress with legal and illegal passes, every
verdict the model's and the table's."""

import pytest

from tlpoe.rtl.queues.order_check import OrderChecker
from tlpoe.sim.runner import run_cocotb, simulators

pytestmark = [pytest.mark.sim]


@pytest.mark.parametrize("sim", simulators())
@pytest.mark.parametrize("width", [64, 512])
def test_verdicts_equal_the_model(sim, width):
    run_cocotb(sim, lambda: OrderChecker(width, window=64), "order_check",
               "tlpoe.tb.test_order_check", build_key=f"order-check-w{width}",
               seed=width, run_name="random",
               params={"width": width, "window": 64, "seed": width, "count": 1500})
