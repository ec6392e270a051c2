"""The Translator (address / ID translation, access control) on Icarus and
Verilator, both directions against the translation model (tb/test_translate.py)."""

import pytest

from tlpoe.rtl.fabric.translate import DeviceFabric, Translator
from tlpoe.sim.runner import run_cocotb, simulators

MODULE = "tlpoe.tb.test_translate"
SEED = 20261126
pytestmark = [pytest.mark.sim]


@pytest.mark.parametrize("width", [64, 256])
@pytest.mark.parametrize("sim", simulators())
def test_translation_matches_the_model(sim, width):
    """500 random TLPs each way, every type, steered at the table: each
    direction's output is the model's, bit for bit and in order; every rule
    both passes and denies; the counters equal the model's reasons."""
    run_cocotb(sim, lambda: Translator(width, windows=2, functions=2), "translator", MODULE,
               build_key=f"translator-w{width}", testcase="TranslateRandomTest", seed=SEED,
               run_name=f"random-w{width}", params={"width": width, "count": 500})


@pytest.mark.parametrize("width", [64, 256])
@pytest.mark.parametrize("sim", simulators())
def test_fabric_matches_the_model(sim, width):
    """Two links with their own tables in a DeviceFabric: 300 random TLPs
    from each host and 600 from the chassis; each link's chassis-bound
    output is its table's translation in order, each host-bound TLP goes
    where the model routes it and is judged by that link's table, and what
    no link claims is counted, never delivered."""
    run_cocotb(sim, lambda: DeviceFabric(width, hosts=2, windows=2, functions=2), "fabric",
               MODULE, build_key=f"fabric-w{width}", testcase="FabricRandomTest", seed=SEED,
               run_name=f"fabric-w{width}", params={"width": width, "count": 300})
