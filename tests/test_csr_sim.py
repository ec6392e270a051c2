"""The device fabric programmed by the pool manager through its CSRs
(FabricCsr, AXI4-Lite) on Icarus and Verilator, judged by the translation
model (tb/test_csr.py)."""

import pytest

from tlpoe.rtl.fabric.fabric_csr import FabricCsr
from tlpoe.sim.runner import run_cocotb, simulators

MODULE = "tlpoe.tb.test_csr"
SEED = 20261127
pytestmark = [pytest.mark.sim]


@pytest.mark.parametrize("sim", simulators())
def test_pool_programs_the_fabric_through_csrs(sim):
    """The pool assigns and releases GPUs through CsrWriter on the AXI4-Lite
    port; 200 random TLPs from each host and 400 from the chassis are each
    translated, routed or denied as the model says on the pool's tables;
    every counter read through the CSRs equals its port and the model."""
    run_cocotb(sim, lambda: FabricCsr(64, hosts=2, windows=3, functions=2), "fabric_csr",
               MODULE, build_key="fabric-csr-w64", testcase="PoolThroughCsrTest", seed=SEED,
               run_name="pool-csr-w64", params={"width": 64, "count": 200})
