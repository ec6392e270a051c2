"""The credit loop's blocks (rtl/queues/credits.py) in amaranth.sim: CreditReturn's
advertised limits are the buffer sizes plus the credits of every TLP that
left, per class; CreditAdvertiser asks for a frame of its own cycle by cycle
as its model twin (``models/ordering.py``) does. PeerCredits is tested in a
Bridge (tests/test_credit_limits.py)."""

import gc

import pytest
from amaranth.sim import Simulator

import random

from tlpoe.models.credits_cycles import CycleCreditAdvertiser as AdvertiserModel
from tlpoe.models.tlp import OrderingClass, Tlp
from tlpoe.rtl.queues.credits import CreditAdvertiser, CreditReturn, queue_credits
from tlpoe.tb.bfm import StreamLayout, to_beats
from tlpoe.tb.stimulus import ordering_traffic, random_tlps

CLASSES = (OrderingClass.POSTED, OrderingClass.NON_POSTED, OrderingClass.COMPLETION)
BUFFERS = ((32, 256), (16, 16), (32, 256))


def credits(tlp):
    return (tlp.length + 3) // 4 if tlp.type.has_data else 0


@pytest.mark.parametrize("width", [64, 256])
def test_limits_follow_the_credits_freed(width):
    raw = random_tlps(3, 300, max_payload=512) + ordering_traffic(3, 300)
    dut = CreditReturn(width, buffers=BUFFERS)
    layout = StreamLayout.tlp(width)
    expected = [[0, 0] for _ in CLASSES]
    seen = []

    async def bench(ctx):
        for i, packed in enumerate(raw):
            tlp = Tlp.unpack(packed)
            for beat in to_beats(packed, layout):
                ctx.set(dut.valid, 1)
                ctx.set(dut.beat.as_value(), layout.pack(beat))
                await ctx.tick()
            if i % 3 == 0:                       # idle cycles change nothing
                ctx.set(dut.valid, 0)
                await ctx.tick().repeat(2)
            k = CLASSES.index(tlp.ordering_class)
            expected[k][0] += 1
            expected[k][1] += credits(tlp)
            seen.append([(ctx.get(dut.limit[c].hdr), ctx.get(dut.limit[c].data))
                         for c in range(3)])
        ctx.set(dut.valid, 0)               # the last TLP's credits: two edges after its beat
        await ctx.tick()
        await ctx.tick()
        seen.append([(ctx.get(dut.limit[c].hdr), ctx.get(dut.limit[c].data))
                     for c in range(3)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    final = [((h + BUFFERS[k][0]) % 256, (d + BUFFERS[k][1]) % 65536)
             for k, (h, d) in enumerate(expected)]
    assert seen[-1] == final
    assert all(n for n, _ in expected)           # every class passed through


@pytest.mark.parametrize("delay, refresh", [(8, 40), (30, 0), (1, 5)])
def test_the_advertiser_asks_as_its_model_does(delay, refresh):
    """Random credits freed (small steps that wait for the delay, large ones
    past an eighth), frames sent at random (some of them ACKs due anyway),
    quiet stretches (for the refresh):
    ``request``, ``advertised`` and the credit-frame count agree with the
    model every cycle, and every cause of a request occurred."""
    rng = random.Random(delay * 100 + refresh)
    dut = CreditAdvertiser(buffers=BUFFERS, delay=delay, refresh=refresh)
    model = AdvertiserModel(BUFFERS, delay=delay, refresh=refresh)
    limit = [[0, 0] for _ in BUFFERS]
    causes = set()

    async def bench(ctx):
        for cycle in range(4000):
            quiet = cycle % 500 >= 400                  # nothing freed, nothing sent
            if not quiet and rng.random() < 0.05:       # a TLP's credits freed
                k = rng.randrange(3)
                big = rng.random() < 0.2
                limit[k][0] = (limit[k][0] + (BUFFERS[k][0] // 4 if big else 1)) % 256
                limit[k][1] = (limit[k][1] + rng.randrange(0, 40 if big else 3)) % 65536
            sent = cycle % 500 == 400 or (not quiet and rng.random() < 0.03)
            ack_due = rng.random() < 0.3
            for k, (h, d) in enumerate(limit):
                ctx.set(dut.limit[k].hdr, h)
                ctx.set(dut.limit[k].data, d)
            ctx.set(dut.sent, sent)
            ctx.set(dut.ack_due, ack_due)
            assert ctx.get(dut.request) == model.request, f"cycle {cycle}"
            if model.wants(limit):               # the cause of next cycle's request
                causes.add("eighth" if any(
                    uh >= max(1, hb // 8) or ud >= max(1, db // 8)
                    for (uh, ud), (hb, db) in zip(model._unsent(limit), BUFFERS))
                    else "delay" if [tuple(x) for x in limit] != model.advertised
                    else "refresh")
            model.step(limit, sent, ack_due)
            await ctx.tick()
            got = [(ctx.get(dut.advertised[k].hdr), ctx.get(dut.advertised[k].data))
                   for k in range(3)]
            assert got == model.advertised, f"cycle {cycle}"
            assert ctx.get(dut.frames) == model.frames

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert model.frames > 0
    assert causes >= ({"eighth", "delay"} | ({"refresh"} if refresh else set())), causes


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("buffers, message", [
    (((128, 16), (16, 16), (16, 16)), "buffers\\[0\\] header credits"),
    (((16, 16), (16, 40000), (16, 16)), "buffers\\[1\\] data credits"),
    (((16, 16),), "3 classes"),
])
def test_bad_buffers_name_themselves(buffers, message):
    with pytest.raises(ValueError, match=message):
        CreditReturn(64, buffers=buffers)
    gc.collect()


@pytest.mark.parametrize("width", [64, 256, 512])
def test_queue_credits_never_promise_more_than_the_beats_hold(width):
    """The worst case for a queue of ``depth`` beats: ``hdr`` TLPs that
    together use the promised data credits, each split so that it wastes
    the most beats (20 header bytes, payload a multiple of 16 bytes)."""
    wb = width // 8
    for depth, tlps in ((256, 4), (1024, 32), (128, 127)):
        hdr, data = queue_credits(width, depth, tlps)
        assert hdr == min(tlps, 127)
        if data == 0:
            continue
        # two extreme ways to spread `data` credits over `hdr` TLPs:
        # all of them in one TLP, or evenly over all
        for spread in ([data] + [0] * (hdr - 1), [data // hdr] * hdr):
            beats = sum(-(-(20 + 16 * c) // wb) for c in spread)
            assert beats <= depth, (width, depth, tlps, spread)
