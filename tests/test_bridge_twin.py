"""The compositions of ``models/bridge.py`` against the RTL in amaranth.sim,
every output and counter in every cycle:

* :class:`CycleDecapsulator` against the Decapsulator (both ``hold``
  modes): frames good, control and hostile, back to back or with gaps,
  ``tlp.ready`` in phases that fill its FIFOs (``hold``: ``frame.ready``
  drops between frames; a MAC's side: frames dropped and counted in
  ``overflows``);
* :class:`BridgeModel` against ``LinkCore`` (below): the Bridge's link
  path both ways as ``rtl/bridge/paths.py`` wires it, without the class
  queues and the credit loop.
"""

import random

import pytest
from amaranth.sim import Simulator

from tlpoe.models.bridge import CycleDecapsulator
from tlpoe.models.framing_cycles import WIDTHS
from tlpoe.rtl.framing.decapsulator import Decapsulator
from tlpoe.rtl.tlp_header import CLASSES
from tlpoe.tb.bfm import frame_to_beats

from test_deframing_twin import random_frame


def simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def assert_same(got, want, where):
    for key in want:
        assert got[key] == want[key], f"{where}: {key}: RTL {got[key]} model {want[key]}"


# --- the Decapsulator -------------------------------------------------------------


class FrameSource:
    """Frames as beats with gaps between and inside them, and the TLP
    side's ready, in phases (a slow TLP side fills the FIFOs)."""

    def __init__(self, rng, width):
        self.rng, self.width = rng, width
        self.beats, self.gap, self.ready = [], 0.0, 1.0

    def next(self, cycle):
        rng = self.rng
        if cycle % 300 == 0:
            self.gap, self.ready = rng.choice(((0.0, 1.0), (0.0, 0.05), (0.3, 0.5),
                                               (0.02, 0.9), (0.0, 0.0)))
        if not self.beats:
            self.beats = [(b.data, b.keep, b.last)
                          for b in frame_to_beats(random_frame(rng), self.width)]
        beat = self.beats[0] if rng.random() >= self.gap else None
        return dict(beat=beat, tlp_ready=rng.random() < self.ready)

    def after(self, inputs, frame_ready):
        if inputs["beat"] is not None and frame_ready:
            self.beats.pop(0)


def decap_drive(ctx, dut, inputs):
    beat = inputs["beat"]
    ctx.set(dut.frame.valid, beat is not None)
    if beat is not None:
        ctx.set(dut.frame.payload, dict(zip(("data", "keep", "last"), beat)))
    ctx.set(dut.tlp.ready, inputs["tlp_ready"])


def decap_observe(ctx, dut):
    tlp = credits = None
    if ctx.get(dut.tlp.valid):
        p = ctx.get(dut.tlp.payload)
        tlp = (p.data, p.keep, p.last, p.stamp)
    if ctx.get(dut.credits_update):
        credits = {f"credit_{name}_{part}": getattr(ctx.get(dut.credits[k]), part)
                   for k, name in enumerate(CLASSES) for part in ("hdr", "data")}
    return dict(frame_ready=ctx.get(dut.frame.ready), tlp=tlp, credits=credits,
                drops=list(ctx.get(dut.drops)), good_frames=ctx.get(dut.good_frames),
                control_frames=ctx.get(dut.control_frames), overflows=ctx.get(dut.overflows),
                tlps_out=ctx.get(dut.tlps_out))


def decap_predict(model, inputs):
    step = model.step(**inputs)
    want = step._asdict()
    del want["desc"]
    want["frame_ready"] = int(step.frame_ready)
    return want, step


def run_decap_twin(width, seed, cycles, *, hold, break_model=None):
    rng = random.Random(seed)
    dut = Decapsulator(width, hold=hold)
    model = CycleDecapsulator(width, hold=hold)
    if break_model:
        break_model(model)
    source = FrameSource(rng, width)

    async def bench(ctx):
        for cycle in range(cycles):
            inputs = source.next(cycle)
            decap_drive(ctx, dut, inputs)
            got = decap_observe(ctx, dut)
            want, step = decap_predict(model, inputs)
            assert_same(got, want, f"width {width}, hold {hold}, seed {seed}, cycle {cycle}")
            source.after(inputs, step.frame_ready)
            await ctx.tick()

    simulate(dut, bench)
    return model


@pytest.mark.parametrize("hold", [True, False])
@pytest.mark.parametrize("width", WIDTHS)
def test_decapsulator_twin_agrees_with_the_rtl_in_every_cycle(width, hold):
    model = run_decap_twin(width, 1, 3000, hold=hold)
    d = model.deframer
    assert model.unpacker.tlps_out > 20 and sum(d.drops) > 5
    assert bool(d.overflows) == (not hold)
