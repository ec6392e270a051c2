"""The bridge's rule for the peer's credit limits (``rtl/queues/credits.py``
``PeerCredits``, in a Bridge), in amaranth.sim against the model's
:func:`tlpoe.models.ordering.take_credit_limit`: a limit only moves forward,
and never to more than half a counter past the credits consumed (those
frames are counted in ``credits_invalid``)."""

import random

import pytest
from amaranth.sim import Simulator

from tlpoe.models.frame import FLAG_CREDITS_VALID, FrameType, encode_frame
from tlpoe.models.ordering import take_credit_limit
from tlpoe.rtl.framing.deframer import verdict_latency
from tlpoe.rtl.bridge.bridge import Bridge
from tlpoe.rtl.streams import DATA_BITS, HDR_BITS
from tlpoe.rtl.tlp_header import CLASSES
from tlpoe.tb.bfm import put_frame


@pytest.mark.parametrize("limit, advertised, consumed, bits, expected", [
    (10, 20, 0, 8, (20, False)),        # ahead, within half of consumed: taken
    (20, 10, 0, 8, (20, False)),        # behind: a late frame, ignored silently
    (10, 128, 0, 8, (128, False)),      # exactly half past consumed: allowed
    (10, 129, 0, 8, (10, True)),        # more than half past consumed: invalid
    (200, 100, 90, 8, (200, False)),    # behind the limit wins over the other test
    (250, 5, 240, 8, (5, False)),       # across the wrap
    (2, 0x8001, 0, 16, (2, True)),
])
def test_the_rule(limit, advertised, consumed, bits, expected):
    assert take_credit_limit(limit, advertised, consumed, bits) == expected


def test_without_enforcement_only_the_first_test_holds():
    assert take_credit_limit(10, 129, 0, 8, enforce=False) == (129, False)


def _fields(limits):
    return {f"credit_{cls}_{part}": limits[k][p]
            for k, cls in enumerate(CLASSES) for p, part in enumerate(("hdr", "data"))}


@pytest.mark.parametrize("enabled", [1, 0])
def test_the_rtl_applies_the_models_rule(enabled):
    """Sixty ACK frames with credit fields near each boundary of the rule
    into a Bridge (nothing sent, so nothing consumed): after each one the
    six limits and ``credits_invalid`` are the model's."""
    width = 64
    dut = Bridge(width)
    rng = random.Random(f"credits:{enabled}")
    bits = (HDR_BITS, DATA_BITS)
    limits = [[0, 0] for _ in CLASSES]
    frames, expected = [], []
    invalid = 0
    for _ in range(60):
        new = [[(limits[k][p] + rng.choice((1, 5, -3, (1 << (bits[p] - 1)) - limits[k][p],
                                            (1 << (bits[p] - 1)) + 1 - limits[k][p],
                                            rng.randrange(1 << bits[p]))))
                % (1 << bits[p]) for p in range(2)] for k in range(3)]
        bad = False
        for k in range(3):
            for p in range(2):
                limits[k][p], b = take_credit_limit(limits[k][p], new[k][p], 0, bits[p],
                                                    bool(enabled))
                bad |= b
        invalid += bad
        frames.append(encode_frame([], frame_type=FrameType.ACK, flags=FLAG_CREDITS_VALID,
                                   credits=_fields(new)))
        expected.append(([row[:] for row in limits], invalid))

    async def bench(ctx):
        ctx.set(dut.cfg.credits_enable, enabled)
        ctx.set(dut.frame_out.ready, 1)
        ctx.set(dut.tlp_out.ready, 1)
        for frame, (want, want_invalid) in zip(frames, expected):
            await put_frame(ctx, dut.frame_in, frame, width)
            await ctx.tick().repeat(verdict_latency(width) + 2)     # the Deframer's checks
            got = [[ctx.get(dut.stats.credit_limit[k].hdr), ctx.get(dut.stats.credit_limit[k].data)]
                   for k in range(3)]
            assert got == want
            assert ctx.get(dut.stats.credits_invalid) == want_invalid
        assert expected[-1][1] > 0 if enabled else expected[-1][1] == 0

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
