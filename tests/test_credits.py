"""CreditReturn (rtl/credits.py) in amaranth.sim: the advertised limits are
the buffer sizes plus the credits of every TLP that left, per class."""

import gc

import pytest
from amaranth.sim import Simulator

from tlpoe.models.tlp import OrderingClass, Tlp
from tlpoe.rtl.credits import CreditReturn, queue_credits
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
