"""The cycle model of the class queues (``models/queues_cycles.py``)
against the RTL's ClassQueues (``"oldest"``, as the Bridge builds them) in
amaranth.sim: random TLPs of every type (posted, non-posted, completions,
some with Relaxed Ordering), credit limits that grow in bursts or stall,
``credits_enable``, ``ro_enable`` and ``class_enable`` changing in phases,
an egress that takes beats at random; the same inputs to the model every
cycle, and in every cycle every output and counter compared."""

import random

import numpy as np
import pytest

from tlpoe.models.framing_cycles import WIDTHS
from tlpoe.models.queues_cycles import CycleClassQueues
from tlpoe.models.tlp import random_tlp
from tlpoe.rtl.queues.classq import ClassQueues

from tlpoe.tb.twin_sim import assert_same, simulate


def beats_of(tlp, width):
    """A TLP's bytes as stream beats ``(data, keep, last)``."""
    wb = width // 8
    out = []
    for i in range(0, len(tlp), wb):
        chunk = tlp[i:i + wb]
        out.append((int.from_bytes(chunk, "little"), (1 << len(chunk) // 4) - 1,
                    int(i + wb >= len(tlp))))
    return out


class QueueStimulus:
    """TLPs in (with gaps), the egress ready, the peer's limits and the
    configuration, in phases; from the past only (the model's counters
    before the step are the RTL's)."""

    def __init__(self, rng, width, model, restarts=False):
        self.rng, self.width, self.model = rng, width, model
        self.restarts = restarts        # the peer restarts now and then: its limits 0
        self.restarted = 0              # ... with something consumed
        self.np_rng = np.random.default_rng(rng.getrandbits(32))
        self.beats = []
        self.limit = [[0, 0] for _ in range(3)]
        self.phase = dict(rate=0.9, ready=0.9, credits=True, ro=True, enable=0b111, grow=0.3)

    def next(self, cycle):
        rng = self.rng
        if cycle % 250 == 0:
            self.phase = dict(rate=rng.choice((1.0, 0.5, 0.1)), ready=rng.choice((1.0, 0.7, 0.1)),
                              credits=rng.random() < 0.7, ro=rng.random() < 0.7,
                              enable=rng.choice((0b111, 0b111, 0b101, 0b011, 0b110)),
                              grow=rng.choice((0.5, 0.1, 0.0)))
        for k in range(3):          # the peer frees credits now and then
            if rng.random() < self.phase["grow"] * 0.2:
                h, d = self.model.consumed[k]
                self.limit[k] = [(h + rng.randint(0, 6)) & 0xFF, (d + rng.randint(0, 80)) & 0xFFFF]
        if not self.beats:
            tlp = random_tlp(self.np_rng, max_payload=rng.choice((16, 64, 128))).pack()
            self.beats = beats_of(tlp, self.width)
        beat = self.beats[0] if rng.random() < self.phase["rate"] else None
        inputs = dict(beat=beat, out_ready=rng.random() < self.phase["ready"],
                      credit_limit=[tuple(x) for x in self.limit],
                      credits_enable=self.phase["credits"], ro_enable=self.phase["ro"],
                      class_enable=self.phase["enable"])
        if self.restarts:
            inputs["credits_restart"] = restart = rng.random() < 0.01
            if restart:             # PeerCredits' limits go to 0 a cycle later
                self.limit = [[0, 0] for _ in range(3)]
                self.restarted += any(any(c) for c in self.model.consumed)
        return inputs

    def after(self, inputs, step):
        if inputs["beat"] is not None and step.tlp_in_ready:
            self.beats.pop(0)


def drive(ctx, dut, inputs):
    beat = inputs["beat"]
    ctx.set(dut.tlp_in.valid, beat is not None)
    if beat is not None:
        ctx.set(dut.tlp_in.payload, dict(zip(("data", "keep", "last"), beat)))
    ctx.set(dut.tlp_out.ready, inputs["out_ready"])
    for k, (hdr, data) in enumerate(inputs["credit_limit"]):
        ctx.set(dut.credit_limit[k].hdr, hdr)
        ctx.set(dut.credit_limit[k].data, data)
    ctx.set(dut.credits_enable, inputs["credits_enable"])
    ctx.set(dut.ro_enable, inputs["ro_enable"])
    ctx.set(dut.class_enable, inputs["class_enable"])
    ctx.set(dut.credits_restart, inputs.get("credits_restart", False))


def observe(ctx, dut):
    out = None
    if ctx.get(dut.tlp_out.valid):
        p = ctx.get(dut.tlp_out.payload)
        out = (p.data, p.keep, p.last, p.stamp, ctx.get(dut.out_posted), ctx.get(dut.out_cpls))
    consumed = [(ctx.get(dut.credits_consumed[k].hdr), ctx.get(dut.credits_consumed[k].data))
                for k in range(3)]
    return dict(tlp_in_ready=ctx.get(dut.tlp_in.ready), tlp_out=out,
                np_room=ctx.get(dut.np_room), credits_consumed=consumed,
                credit_stall_cycles=[ctx.get(dut.credit_stall_cycles[k]) for k in range(3)],
                tlps_sent=[ctx.get(dut.tlps_sent[k]) for k in range(3)])


def predict(model, inputs):
    step = model.step(**inputs)
    out = None if step.tlp_out is None else (*step.tlp_out, step.out_posted, step.out_cpls)
    return dict(tlp_in_ready=int(step.tlp_in_ready), tlp_out=out, np_room=int(step.np_room),
                credits_consumed=step.credits_consumed,
                credit_stall_cycles=step.credit_stall_cycles, tlps_sent=step.tlps_sent), step


def run_queues_twin(width, seed, cycles, *, depth=None, tlps=None, break_model=None,
                    reorder_illegally=False, restarts=False):
    rng = random.Random(seed)
    depth = depth or 2 * -(-(16 + 128 + 4) * 8 // width) + rng.randint(0, 8)
    tlps = tlps or rng.choice((2, 4, 16))
    max_credits = rng.choice((9, 256))
    dut = ClassQueues(width, depth=depth, tlps=tlps, policy="oldest", max_credits=max_credits,
                      reorder_illegally=reorder_illegally)
    model = CycleClassQueues(width, depth=depth, tlps=tlps, max_credits=max_credits,
                             reorder_illegally=reorder_illegally)
    if break_model:
        break_model(model)
    stim = QueueStimulus(rng, width, model, restarts)

    async def bench(ctx):
        for cycle in range(cycles):
            inputs = stim.next(cycle)
            drive(ctx, dut, inputs)
            got = observe(ctx, dut)
            want, step = predict(model, inputs)
            assert_same(got, want, f"width {width}, depth {depth}, tlps {tlps}, seed {seed}, "
                                   f"cycle {cycle}")
            stim.after(inputs, step)
            await ctx.tick()

    simulate(dut, bench)
    model.restarted = stim.restarted
    return model


@pytest.mark.parametrize("width", WIDTHS)
def test_class_queues_twin_agrees_with_the_rtl_in_every_cycle(width):
    sent, stalls = [0, 0, 0], [0, 0, 0]
    for seed in range(3):
        model = run_queues_twin(width, seed, 2000)
        sent = [a + b for a, b in zip(sent, model.tlps_sent)]
        stalls = [a + b for a, b in zip(stalls, model.stall)]
    assert all(n > 10 for n in sent) and any(stalls)


@pytest.mark.parametrize("width", [64, 256])
def test_class_queues_twin_agrees_when_the_peer_restarts(width):
    """``credits_restart`` (docs/link-state.md): nothing consumed, no credit
    until the peer's limits come (here 0 a cycle later, as PeerCredits'),
    every cycle equal, and TLPs still flow once limits grow again."""
    restarted = sent = 0
    for seed in range(3):
        model = run_queues_twin(width, 20 + seed, 2000, restarts=True)
        restarted += model.restarted
        sent += sum(model.tlps_sent)
    assert restarted >= 3 and sent > 30


def test_class_queues_twin_agrees_when_reordering_illegally():
    run_queues_twin(128, 9, 2000, reorder_illegally=True)


def test_the_bench_catches_queues_that_let_requests_pass_posted_writes():
    """The comparison is not vacuous: a twin whose non-posted requests and
    completions ignore the posted TLPs before them (B2a, D2a broken) leaves
    them out earlier than the RTL does."""
    def illegal(model):
        model.reorder_illegally = True
    with pytest.raises(AssertionError, match="RTL .* model"):
        for seed in range(3):
            run_queues_twin(64, seed, 2000, break_model=illegal)
