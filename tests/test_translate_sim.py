"""The Translator (address / ID translation, access control) on Icarus and
Verilator, both directions against the translation model (tb/test_translate.py)."""

import pytest

from tlpoe.rtl.translate import Translator
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
