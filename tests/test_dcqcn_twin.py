"""DCQCN's RTL (``rtl/link/dcqcn.py``) against its cycle twins
(``models/dcqcn_cycles.py``) in amaranth.sim, every output in every
cycle: the rate limiter under random CNPs, frames sent, registers
rewritten and resets, with timers short enough that every event kind
meets every other in the engine; the CNP generator under random marked
frames and echoes sent. And the twin against the algorithm
(``models/dcqcn.py``): with events apart, each CNP and increase moves the
rates as the reaction point does."""

import random
from dataclasses import replace

import pytest
from amaranth.hdl import Module, ResetInserter, Signal

from tlpoe.models.dcqcn import FULL, DcqcnParams, ReactionPoint
from tlpoe.models.dcqcn_cycles import CnpCycles, RateLimiterCycles, wire_bytes_of
from tlpoe.rtl.link.dcqcn import CnpGenerator, RateLimiter

from tlpoe.tb.twin_sim import assert_same, simulate

SHORT = DcqcnParams(g_shift=3, alpha_timer=40, increase_timer=29, byte_counter=4000,
                    fast_recovery=2, ai_rate=300, hai_rate=1200, min_rate=FULL >> 8,
                    cnp_interval=50)
LINE = 32 << 8              # 32 bytes a cycle: a 256-bit datapath
PARAM_PORTS = ("g_shift", "alpha_timer", "increase_timer", "byte_counter", "fast_recovery",
               "ai_rate", "hai_rate", "min_rate")
RATE_OUTS = ("rate_ok", "rc", "rt", "alpha", "cnps_received", "throttled_cycles")


def run_rate_twin(seed, cycles, break_model=None):
    rng = random.Random(seed)
    dut = RateLimiter(SHORT, line_bytes=LINE, burst=1538, enable=True)
    rst = Signal()
    top = Module()
    top.submodules.dut = ResetInserter(rst)(dut)
    model = RateLimiterCycles(SHORT, line_bytes=LINE, burst=1538, enable=True)
    if break_model:
        break_model(model)
    seen = {"cuts": 0, "throttled": 0, "hyper": 0, "floor": 0}

    async def bench(ctx):
        busy = 0
        cnp_rate = 0.02
        for cycle in range(cycles):
            if rng.random() < 0.002:            # congestion comes and goes
                cnp_rate = rng.choice((0.0, 0.002, 0.02, 0.1))
            cnp = rng.random() < cnp_rate
            sent = None
            if busy:
                busy -= 1
            elif model.rate_ok() and rng.random() < 0.7:
                length = rng.randrange(32, 1450, 4)
                sent = wire_bytes_of(68, length)
                busy = length // 32                 # the frame's beats
            if rng.random() < 0.002:                # the registers rewritten
                params = replace(SHORT, **{
                    "g_shift": rng.randrange(1, 11), "alpha_timer": rng.randrange(1, 80),
                    "increase_timer": rng.randrange(1, 80),
                    "byte_counter": rng.randrange(1500, 9000),
                    "fast_recovery": rng.randrange(1, 6), "ai_rate": rng.randrange(0, 2000),
                    "hai_rate": rng.randrange(0, 9000),
                    "min_rate": rng.randrange(1, FULL >> 4)})
                model.params = params
                for name in PARAM_PORTS:
                    ctx.set(getattr(dut, name), getattr(params, name))
                model.line_bytes = rng.choice((LINE, LINE // 3, 9930))
                model.burst = rng.choice((1538, 600, 9000))
                model.enable = rng.random() < 0.9
                ctx.set(dut.line_bytes, model.line_bytes)
                ctx.set(dut.burst, model.burst)
                ctx.set(dut.enable, model.enable)
            reset = rng.random() < 0.0005
            ctx.set(rst, reset)
            ctx.set(dut.cnp, cnp)
            ctx.set(dut.sent, sent is not None)
            ctx.set(dut.sent_bytes, sent or 0)
            got = {name: ctx.get(getattr(dut, name)) for name in RATE_OUTS}
            want = model.step(cnp=cnp, sent_bytes=sent)._asdict()
            del want["tokens"]
            assert_same(got, want, f"seed {seed} cycle {cycle}")
            seen["cuts"] += want["rc"] < want["rt"]
            seen["throttled"] += not want["rate_ok"]
            seen["hyper"] += min(model.timer_stage, model.byte_stage) > model.params.fast_recovery
            seen["floor"] += want["rc"] == model.params.min_rate
            if reset:
                model.reset()
            await ctx.tick()

    simulate(top, bench)
    return seen


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rate_limiter_matches_its_twin(seed):
    seen = run_rate_twin(seed, 12_000)
    # the run reached every regime: cut, throttled, hyper increase, the floor
    assert all(seen.values()), seen


def test_a_twin_serving_increases_before_cnps_fails():
    import tlpoe.models.dcqcn_cycles as dc

    def swap(model):
        dc.OPS = ("timer", "alpha", "cnp", "byte")
    try:
        with pytest.raises(AssertionError, match="cycle"):
            run_rate_twin(1, 4_000, break_model=swap)
    finally:
        dc.OPS = ("cnp", "alpha", "timer", "byte")


def test_a_twin_earning_this_cycles_rate_fails():
    class Early(RateLimiterCycles):
        def step(self, **kw):
            self.earn = self.rc * self.line_bytes >> 16
            return super().step(**kw)

    def swap(model):
        model.__class__ = Early
    with pytest.raises(AssertionError, match="cycle"):
        run_rate_twin(2, 4_000, break_model=swap)


def test_the_twin_moves_the_rates_as_the_reaction_point_does():
    """CNPs and sends far apart: after each, the twin's rates and alpha
    are the algorithm's (a few cycles later)."""
    p = DcqcnParams(alpha_timer=10**6, increase_timer=10**6, byte_counter=20_000,
                    fast_recovery=1, ai_rate=500, hai_rate=2000)
    twin = RateLimiterCycles(p, line_bytes=LINE, enable=True)
    rp = ReactionPoint(p)
    rng = random.Random(7)
    lowest = FULL
    for _ in range(200):
        if rng.random() < 0.3:
            twin.step(cnp=True)
            rp.cnp()
        else:
            n = rng.randrange(1000, 9000)
            twin.step(sent_bytes=n)
            rp.sent(n)
        for _ in range(8):             # the event's cycle, then the engine's five
            twin.step()
        assert (twin.rc, twin.rt, twin.alpha) == (rp.rc, rp.rt, rp.alpha)
        lowest = min(lowest, rp.rc)
    assert rp.cnps > 30 and lowest < FULL // 8 and rp.byte_stage + rp.cnps > 40


def test_cnp_generator_matches_its_twin():
    rng = random.Random(5)
    dut = CnpGenerator(cnp_interval=20, enable=True)
    rst = Signal()
    top = Module()
    top.submodules.dut = ResetInserter(rst)(dut)
    model = CnpCycles(cnp_interval=20, enable=True)
    echoes = []

    async def bench(ctx):
        for cycle in range(8_000):
            ce = rng.random() < 0.1
            echo_sent = model.echo and rng.random() < 0.3
            if rng.random() < 0.003:
                model.cnp_interval = rng.choice((0, 1, 5, 20, 300))
                model.enable = rng.random() < 0.9
                ctx.set(dut.cnp_interval, model.cnp_interval)
                ctx.set(dut.enable, model.enable)
            reset = rng.random() < 0.0005
            for name, value in (("ce", ce), ("echo_sent", echo_sent)):
                ctx.set(getattr(dut, name), value)
            ctx.set(rst, reset)
            got = {name: ctx.get(getattr(dut, name)) for name in ("echo", "ce_frames",
                                                                   "cnps_sent")}
            want = model.step(ce=ce, echo_sent=echo_sent)._asdict()
            assert_same(got, want, f"cycle {cycle}")
            echoes.append(want["echo"])
            if reset:
                model.reset()
            await ctx.tick()

    simulate(top, bench)
    assert 0.05 < sum(echoes) / len(echoes) < 0.9


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("kw", [dict(line_bytes=0), dict(burst=1 << 16), dict(params=3)])
def test_a_bad_parameter_is_named(kw):
    name = next(iter(kw))
    with pytest.raises(ValueError, match=name):
        RateLimiter(**kw)
    with pytest.raises(ValueError, match="cnp_interval"):
        CnpGenerator(cnp_interval=-1)
