"""The link state machine's cycle twin (``models/link_state_cycles.py``)
against the RTL (``rtl/link/link_state.py``) in amaranth.sim, every
output in every cycle, under random KEEPALIVEs (peers old and new, every
state, naming us or not), good frames, silences, retry limits, frames and
KEEPALIVEs sent, and resets."""

import random

import pytest
from amaranth.hdl import Module, ResetInserter, Signal

from tlpoe.models.link_state_cycles import CycleLinkState, dead_in_use
from tlpoe.models.wire import KEEPALIVE_FIELDS as KA
from tlpoe.rtl.link.link_state import LinkStateMachine

from tlpoe.tb.twin_sim import assert_same, simulate

KEEPALIVE, DEAD, SEED_INCARNATION = 5, 13, 0x5A5A0000


def as_bytes(fields):
    return int.from_bytes(KA.pack(**fields), "little")


def run_twin(seed, cycles, break_model=None, vary_config=False):
    rng = random.Random(seed)
    dut = LinkStateMachine(keepalive=KEEPALIVE, dead=DEAD, incarnation=SEED_INCARNATION)
    rst = Signal()
    top = Module()
    top.submodules.dut = ResetInserter(rst)(dut)
    model = CycleLinkState(keepalive=KEEPALIVE, dead=DEAD, incarnation=SEED_INCARNATION)
    if break_model:
        break_model(model)
    peers = [0x1000, 0x2000, 0x3000]
    names = ("state", "up", "keepalive_due", "rewind", "restart", "adopt", "adopt_base",
             "peer_incarnation", "peer_known", "own_incarnation", "link_up_events",
             "link_down_events", "peer_restarts", "keepalives_sent", "keepalives_received")

    async def bench(ctx):
        quiet = 0
        for cycle in range(cycles):
            if quiet:
                quiet -= 1
            elif rng.random() < 0.01:
                quiet = rng.randrange(5, 40)        # a silence: the dead timer runs out
            ka = None
            if not quiet and rng.random() < 0.3:
                if rng.random() < 0.02:
                    peers[0] = rng.choice(peers[1:]) if rng.random() < 0.5 else \
                        rng.randrange(1 << 32)      # the peer restarts
                mine = model.mine if rng.random() < 0.7 else rng.randrange(1 << 32)
                ka = {"incarnation": peers[0] if rng.random() < 0.9 else rng.choice(peers),
                      "peer_incarnation": mine, "peer_known": int(rng.random() < 0.8),
                      "state": rng.choice((0, 0, 1, 2, 2, 3)), "base": rng.randrange(1 << 32)}
            # a KEEPALIVE restarts the silence timer with or without rx_good
            good = (ka is not None and rng.random() < 0.9) or (not quiet and rng.random() < 0.3)
            kw = dict(rx_good=good, keepalive=ka, retry_limit=rng.random() < 0.01,
                      frame_sent=rng.random() < 0.2, keepalive_sent=rng.random() < 0.05)
            if vary_config and rng.random() < 0.004:     # the registers rewritten
                model.keepalive = rng.choice((0, 1, 4, KEEPALIVE))
                model.dead = rng.choice((0, 1, model.keepalive, model.keepalive + 1, DEAD))
                ctx.set(dut.keepalive, model.keepalive)
                ctx.set(dut.dead, model.dead)
                if rng.random() < 0.5:      # ours, acting a cycle later
                    model.incarnation = rng.randrange(1 << 32)
                    ctx.set(dut.incarnation, model.incarnation)
            reset = rng.random() < 0.003
            ctx.set(rst, reset)
            ctx.set(dut.rx_good, kw["rx_good"])
            ctx.set(dut.rx_keepalive, ka is not None)
            fields = {k: v for k, v in (ka or {}).items() if k != "base"}
            ctx.set(dut.rx_fields, as_bytes(fields) if ka else 0)
            ctx.set(dut.rx_base, ka["base"] if ka else 0)
            for name in ("retry_limit", "frame_sent", "keepalive_sent"):
                ctx.set(getattr(dut, name), kw[name])
            got = {name: ctx.get(getattr(dut, name)) for name in names}
            got["tx_fields"] = ctx.get(dut.tx_fields)
            shown = model.step(**kw)
            want = shown._asdict()
            want["tx_fields"] = as_bytes(want["tx_fields"])
            want = {k: int(v) for k, v in want.items()}
            assert_same(got, want, f"seed {seed}, cycle {cycle}")
            if reset:
                model.reset()
            await ctx.tick()

    simulate(top, bench)


@pytest.mark.parametrize("seed", range(4))
def test_the_twin_follows_the_rtl(seed):
    run_twin(seed, 4000)


@pytest.mark.parametrize("seed", range(2))
def test_the_twin_follows_the_rtl_when_keepalive_and_dead_are_rewritten(seed):
    """Every register value, out of range ones too: ``dead`` at or below
    ``keepalive`` (0 among them) is taken as 3 x ``keepalive``; a new
    ``incarnation`` acts a cycle later."""
    run_twin(seed, 6000, vary_config=True)


@pytest.mark.parametrize("keepalive, dead, used", [
    (5, 13, 13), (5, 6, 6), (5, 5, 15), (5, 0, 15), (0, 0, 3), (1, 1, 3),
    ((1 << 24) - 1, 0, (1 << 24) - 1), (6_000_000, 2, (1 << 24) - 1),
])
def test_a_dead_time_not_above_the_keepalive_is_clamped(keepalive, dead, used):
    """``dead`` 0 (an unwritten register) would take UP down at once and
    flap the link for ever: the machine uses 3 x ``keepalive`` instead. In
    the RTL: UP, then silence; down after exactly ``used`` cycles."""
    assert dead_in_use(keepalive, dead) == used
    if used > 100:
        return
    dut = LinkStateMachine(keepalive=2, dead=7)
    ka = {"incarnation": 0x77, "peer_incarnation": 1, "peer_known": 1, "state": 1}

    async def bench(ctx):
        ctx.set(dut.keepalive, keepalive)
        ctx.set(dut.dead, dead)
        await ctx.tick()                    # the incarnation: 1 after reset
        assert ctx.get(dut.own_incarnation) == 1
        ctx.set(dut.rx_keepalive, 1)
        ctx.set(dut.rx_good, 1)
        ctx.set(dut.rx_fields, as_bytes(ka))
        await ctx.tick()
        ctx.set(dut.rx_keepalive, 0)
        ctx.set(dut.rx_good, 0)
        assert not ctx.get(dut.up)
        await ctx.tick()                    # the KEEPALIVE, registered, acted
        assert ctx.get(dut.up)
        quiet = 1                           # silent since the KEEPALIVE's cycle
        while ctx.get(dut.up):
            await ctx.tick()
            quiet += 1
            assert quiet <= used + 1, "still UP"
        assert quiet == used + 1, (quiet, used)

    simulate(dut, bench)


def test_the_twin_comes_up_and_goes_down_in_these_runs():
    # the random runs reach every transition the machine has (INIT goes DOWN
    # never: unlike BFD's, the dead time runs only while UP; UP goes to
    # INIT when a restarted peer says DOWN)
    model_events = []

    def watch(model):
        step = model.step

        def traced(**kw):
            before = model.state
            shown = step(**kw)
            model_events.append((before, model.state))
            return shown
        model.step = traced
    run_twin(0, 4000, break_model=watch)
    moves = {e for e in model_events if e[0] != e[1]}
    assert moves == {(0, 1), (0, 2), (1, 2), (2, 0), (2, 1)}, moves


@pytest.mark.parametrize("name, mutate", [
    ("the dead time one cycle longer", lambda m: setattr(m, "dead", m.dead + 1)),
    ("no KEEPALIVE at once after reset", lambda m: setattr(m, "since_ka", 0)),
    ("another incarnation", lambda m: setattr(m, "incarnation", m.incarnation ^ 1)),
])
def test_a_twin_apart_from_the_rtl_fails(name, mutate):
    with pytest.raises(AssertionError):
        run_twin(1, 2000, break_model=mutate)


@pytest.mark.parametrize("kw, name", [
    ({"keepalive": 0}, "keepalive"), ({"dead": 1 << 24}, "dead"),
    ({"keepalive": 10, "dead": 10}, "dead"), ({"incarnation": -1}, "incarnation"),
])
def test_bad_parameter_raises_naming_it(kw, name):
    with pytest.raises(ValueError, match=name):
        LinkStateMachine(**kw)


def test_the_incarnation_moves_once_per_reset_however_long_rst_is_held():
    """The count of resets in the incarnation is reset-less: a reset held
    for several cycles must move it once (it moved every cycle of a long
    reset until a two-bridge bench's twin saw a KEEPALIVE's incarnation 5
    where the model said 1)."""
    from amaranth.hdl import ClockDomain, Elaboratable
    from amaranth.sim import Simulator

    class Top(Elaboratable):
        def __init__(self):
            self.dut = LinkStateMachine(keepalive=10, dead=30, incarnation=0x100)
            self.cd = ClockDomain("sync")

        def elaborate(self, platform):
            m = Module()
            m.domains.sync = self.cd
            m.submodules.dut = self.dut
            return m

    top = Top()
    seen = []

    async def bench(ctx):
        for held in (1, 6, 3):
            ctx.set(top.cd.rst, 1)
            await ctx.delay(held * 1e-8)        # `held` clock edges in reset
            ctx.set(top.cd.rst, 0)
            await ctx.tick().repeat(4)
            seen.append(ctx.get(top.dut.own_incarnation))

    sim = Simulator(top)
    sim.add_clock(1e-8, domain="sync")
    sim.add_testbench(bench)
    sim.run()
    assert seen == [0x100 ^ 1, 0x100 ^ 2, 0x100 ^ 3]     # one per rst, however long
