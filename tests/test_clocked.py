"""The clocked BridgeModel on the event kernel (``models/clocked.py``) gives
the same outputs, cycle by cycle, as the model stepped in a plain loop."""

import random

from tlpoe.models.bridge import BridgeModel
from tlpoe.models.clocked import ClockedModel
from tlpoe.models.events import EventKernel

from test_bridge_model import BridgePeer, bridge_config


def record(seed, cycles, on_kernel):
    rng = random.Random(seed)
    model = BridgeModel(bridge_config(rng, "gbn"), queue_tlps=4, queue_depth=320)
    peer = BridgePeer(rng, model)
    shown = []

    def inputs(cycle):
        step = peer.next(cycle)
        shown.append(step)
        return step

    def outputs(cycle, out):
        peer.after(shown[-1], out)
        shown[-1] = (cycle, shown[-1], out)

    if on_kernel:
        kernel = EventKernel()
        ClockedModel(kernel, model, period_ns=4.0, cycles=cycles, inputs=inputs,
                     outputs=outputs)
        kernel.run_until()
        assert kernel.last_ns == 4.0 * (cycles - 1)
    else:
        for cycle in range(cycles):
            outputs(cycle, model.step(**inputs(cycle)))
    return shown


def test_the_bridge_on_the_event_kernel_is_the_bridge_stepped_in_a_loop():
    loop, kernel = record(3, 1500, False), record(3, 1500, True)
    assert len(kernel) == 1500 and kernel == loop
    assert any(out.frame_out is not None for _, _, out in loop)
