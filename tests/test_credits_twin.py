"""The credit loop's cycle twins (``models/credits_cycles.py``) against the
RTL blocks of ``rtl/queues/credits.py`` in amaranth.sim, every output in
every cycle: CreditReturn under random TLPs of every class taken at random
(limits and freed credits), PeerCredits under advertisements ahead,
behind and beyond half a counter (limits, ``invalid``), CreditAdvertiser
under freed credits, frames sent and its run-time ``delay`` and
``refresh`` changed (``request``, ``advertised``, ``frames``)."""

import random

import numpy as np
import pytest

from tlpoe.models.credits_cycles import (CycleCreditAdvertiser, CycleCreditReturn,
                                         CyclePeerCredits, queue_credits)
from tlpoe.models.tlp import random_tlp
from tlpoe.rtl.queues import credits as rtl_credits
from tlpoe.rtl.queues.credits import CreditAdvertiser, CreditReturn, PeerCredits

from tlpoe.tb.twin_sim import assert_same, simulate
from test_queues_twin import beats_of

BUFFERS = ((32, 256), (16, 16), (12, 100))


def set_limits(ctx, port, limits):
    for k, (hdr, data) in enumerate(limits):
        ctx.set(port[k].hdr, hdr)
        ctx.set(port[k].data, data)


def get_limits(ctx, port):
    return [(ctx.get(port[k].hdr), ctx.get(port[k].data)) for k in range(3)]


# --- CreditReturn ------------------------------------------------------------------


def run_return_twin(width, seed, cycles, break_model=None, rebases=False):
    """The egress frees credits; with ``rebases``, the ingress is counted
    too (its own TLPs) and ``rebase`` pulses now and then."""
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    dut = CreditReturn(width, buffers=BUFFERS)
    model = CycleCreditReturn(BUFFERS)
    if break_model:
        break_model(model)
    beats, ins = [], []
    model.rebased = 0

    async def bench(ctx):
        rate = 1.0
        for cycle in range(cycles):
            if cycle % 200 == 0:
                rate = rng.choice((1.0, 0.5, 0.1))
            if not beats:
                beats.extend(beats_of(random_tlp(np_rng, max_payload=rng.choice((16, 512)))
                                      .pack(), width))
            valid = rng.random() < rate
            beat = beats[0]
            ctx.set(dut.valid, valid)
            ctx.set(dut.beat, dict(zip(("data", "keep", "last"), beat)))
            extra = {}
            if rebases:
                if not ins:
                    ins.extend(beats_of(random_tlp(np_rng, max_payload=rng.choice((16, 512)))
                                        .pack(), width))
                extra = dict(in_valid=rng.random() < rate, in_beat=ins[0],
                             rebase=rng.random() < 0.01)
                ctx.set(dut.in_valid, extra["in_valid"])
                ctx.set(dut.in_beat, dict(zip(("data", "keep", "last"), ins[0])))
                ctx.set(dut.rebase, extra["rebase"])
                model.rebased += extra["rebase"] and any(any(t) for t in model.taken)
            got = dict(limit=get_limits(ctx, dut.limit), freed=get_limits(ctx, dut.freed))
            want = model.step(valid=valid, beat=beat, **extra)._asdict()
            assert_same(got, want, f"width {width}, seed {seed}, cycle {cycle}")
            if valid:
                beats.pop(0)
            if extra.get("in_valid"):
                ins.pop(0)
            await ctx.tick()

    simulate(dut, bench)
    return model


@pytest.mark.parametrize("width", [64, 256])
def test_credit_return_twin_agrees_with_the_rtl_in_every_cycle(width):
    model = run_return_twin(width, width, 3000)
    assert all(h > 10 for h, _ in model.freed)


@pytest.mark.parametrize("width", [64, 256])
def test_credit_return_rebases_on_the_credits_taken(width):
    """``rebase`` (the peer restarted) takes the credits taken into the
    queues since the last one from the limit, every cycle equal."""
    model = run_return_twin(width, width + 1, 3000, rebases=True)
    assert model.rebased >= 10


def test_the_bench_catches_a_credit_return_a_cycle_early():
    """A twin that frees a TLP's credits on the edge after its first beat
    (skipping the RTL's register) is seen."""
    def early(model):
        step = model.step

        def hasty(**inputs):
            shown = step(**inputs)
            if model.out.seen:              # apply the freed credits at once
                k, c = model.out.cls, model.out.credits
                for reg in (model.freed, model.limit):
                    reg[k] = ((reg[k][0] + 1) & 0xFF, (reg[k][1] + c) & 0xFFFF)
                model.out.seen = False
            return shown
        model.step = hasty
    with pytest.raises(AssertionError, match="RTL .* model"):
        run_return_twin(64, 1, 500, break_model=early)


# --- PeerCredits -------------------------------------------------------------------


def run_peer_twin(seed, cycles, break_model=None, restarts=False):
    rng = random.Random(seed)
    dut = PeerCredits()
    model = CyclePeerCredits()
    if break_model:
        break_model(model)
    consumed = [[0, 0] for _ in range(3)]
    kinds = set()

    def advert(cur, used, bits):
        half, mask = 1 << (bits - 1), (1 << bits) - 1
        kind = rng.choice(("ahead", "ahead", "behind", "beyond", "random", "edge"))
        kinds.add(kind)
        return kind, {"ahead": (cur + rng.randint(0, 20)) & mask,
                      "behind": (cur - rng.randint(1, 30)) & mask,
                      "beyond": (used + half + rng.randint(1, 50)) & mask,
                      "random": rng.getrandbits(bits),
                      "edge": (used + half + rng.randint(-1, 1)) & mask}[kind]

    async def bench(ctx):
        enable = True
        for cycle in range(cycles):
            if cycle % 300 == 0:
                enable = rng.random() < 0.7
            for k in range(3):          # the sender spends
                if rng.random() < 0.3:
                    consumed[k][0] = (consumed[k][0] + 1) & 0xFF
                    consumed[k][1] = (consumed[k][1] + rng.randint(0, 20)) & 0xFFFF
            update = rng.random() < 0.3
            received = [tuple(advert(model.limit[k][i], consumed[k][i], bits)[1]
                              for i, bits in enumerate((8, 16))) for k in range(3)]
            extra = {}
            if restarts:            # the peer restarts: the sender's consumed 0 too
                extra["restart"] = rng.random() < 0.02
                ctx.set(dut.restart, extra["restart"])
                if extra["restart"]:
                    consumed[:] = [[0, 0] for _ in range(3)]
                    kinds.add("restart")
            ctx.set(dut.update, update)
            ctx.set(dut.enable, enable)
            set_limits(ctx, dut.received, received)
            set_limits(ctx, dut.consumed, consumed)
            got = dict(limit=get_limits(ctx, dut.limit), invalid=ctx.get(dut.invalid))
            limit, invalid = model.step(update=update, received=received, consumed=consumed,
                                        enable=enable, **extra)
            assert_same(got, dict(limit=limit, invalid=invalid), f"seed {seed}, cycle {cycle}")
            await ctx.tick()

    simulate(dut, bench)
    return model


def test_peer_credits_twin_agrees_with_the_rtl_in_every_cycle():
    invalid = 0
    for seed in range(3):
        invalid += run_peer_twin(seed, 2000).invalid
    assert invalid > 20


def test_peer_credits_restart_forget_the_limits():
    """``restart``: every limit 0 and an update on its way dropped, every
    cycle equal, and limits are taken again after it."""
    model = run_peer_twin(7, 3000, restarts=True)
    assert any(any(x) for x in model.limit)


def test_the_bench_catches_peer_credits_that_take_limits_beyond_half():
    """A twin that never refuses a limit too far past ``consumed`` (no
    ``invalid``) is seen."""
    def lax(model):
        step = model.step
        model.step = lambda **inputs: step(**{**inputs, "enable": False})
    with pytest.raises(AssertionError, match="RTL .* model"):
        run_peer_twin(0, 2000, break_model=lax)


# --- CreditAdvertiser --------------------------------------------------------------


def run_advertiser_twin(seed, cycles, break_model=None):
    rng = random.Random(seed)
    delay, refresh = rng.choice((8, 40, 256)), rng.choice((0, 60, 500))
    dut = CreditAdvertiser(buffers=BUFFERS, delay=delay, refresh=refresh)
    model = CycleCreditAdvertiser(BUFFERS, delay=delay, refresh=refresh)
    if break_model:
        break_model(model)
    limit = [list(b) for b in BUFFERS]

    async def bench(ctx):
        for cycle in range(cycles):
            if cycle % 700 == 350:          # the run-time inputs change
                model.delay = rng.choice((1, 8, 40))
                model.refresh = rng.choice((0, 30, 200))
            quiet = cycle % 500 >= 400
            if not quiet and rng.random() < 0.05:
                k = rng.randrange(3)
                big = rng.random() < 0.2
                limit[k][0] = (limit[k][0] + (BUFFERS[k][0] // 4 if big else 1)) & 0xFF
                limit[k][1] = (limit[k][1] + rng.randrange(0, 40 if big else 3)) & 0xFFFF
            sent = not quiet and rng.random() < 0.03
            ack_due = rng.random() < 0.3
            set_limits(ctx, dut.limit, limit)
            ctx.set(dut.sent, sent)
            ctx.set(dut.ack_due, ack_due)
            ctx.set(dut.delay, model.delay)
            ctx.set(dut.refresh, model.refresh)
            got = dict(request=ctx.get(dut.request), advertised=get_limits(ctx, dut.advertised),
                       frames=ctx.get(dut.frames))
            request, advertised, frames = model.step(limit, sent, ack_due)
            assert_same(got, dict(request=int(request), advertised=advertised, frames=frames),
                        f"seed {seed}, cycle {cycle}")
            await ctx.tick()

    simulate(dut, bench)
    return model


def test_credit_advertiser_twin_agrees_with_the_rtl_in_every_cycle():
    frames = sum(run_advertiser_twin(seed, 3000).frames for seed in range(3))
    assert frames > 20


def test_the_bench_catches_an_advertiser_that_waits_for_a_quarter():
    """A twin that asks for a frame when a quarter of a buffer is freed
    (not an eighth, the RTL's threshold) is seen."""
    def slow(model):
        model.buffers = tuple((2 * hdr, 2 * data) for hdr, data in model.buffers)
    with pytest.raises(AssertionError, match="RTL .* model"):
        for seed in range(3):
            run_advertiser_twin(seed, 3000, break_model=slow)


def test_the_rtl_sizes_credits_by_the_model():
    """One definition: the RTL's sizing is the model's function."""
    assert rtl_credits.queue_credits is queue_credits
