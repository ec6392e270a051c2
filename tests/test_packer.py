"""The TlpPacker (rtl/framing/packer.py) in amaranth.sim, against the frame model
(models/frame.py): frames as ``aggregate`` groups them, each descriptor
after its frame's words, and the hazards of its pipeline: TLPs back to
back, backpressure in the middle of a frame, a frame closing while the next
TLP waits, ingress length errors."""

import random

import pytest
from amaranth.sim import Simulator

from tlpoe.models import wire
from tlpoe.models.frame import _tlp_area, aggregate
from tlpoe.models.tlp import Tlp
from tlpoe.rtl.framing.packer import TlpPacker
from tlpoe.tb.bfm import StreamLayout, to_beats


def bits(value):
    return value.as_value() if hasattr(value, "as_value") else value


def mwr(nbytes, tag=0):
    return Tlp.mem_write(0x1000_0000 + 64 * tag, bytes((tag + i) % 251 for i in range(nbytes)),
                         requester_id=0x0100, tag=tag % 256).pack()


def run(width, streams, *, gap=0.0, ready=lambda rng: True, seed=1, cycles=None,
        flush_timeout=64, max_tlps=None):
    """``streams`` (byte strings, each a TLP as the stream carries it) into
    the packer; returns ([(desc count, desc length, TLP area bytes)], the
    cycle of each beat in, counters). Checks the output stream rules: a
    payload stays put while valid and not taken, and each descriptor comes
    after its frame's last word."""
    dut = TlpPacker(width, flush_timeout=flush_timeout, max_tlps=max_tlps)
    layout = StreamLayout.tlp(width)
    wb = width // 8
    rng = random.Random(seed)
    frames, taken_at, counters = [], [], {}
    beats = [b for s in streams for b in to_beats(s, layout)]
    cycles = cycles or 4 * len(beats) + 20 * len(streams) + 4 * flush_timeout + 200

    async def bench(ctx):
        words, offered = [], {}
        for cycle in range(cycles):
            on = bool(beats) and rng.random() >= gap
            ctx.set(dut.tlp.valid, on)
            if on:
                ctx.set(dut.tlp.payload.as_value(), layout.pack(beats[0]))
            r = ready(rng)
            ctx.set(dut.words.ready, r)
            ctx.set(dut.desc.ready, r)
            await ctx.delay(1e-9)
            for name in ("words", "desc"):
                port = getattr(dut, name)
                if name in offered:     # the stream rule: held until taken
                    assert ctx.get(port.valid), (cycle, name)
                    assert ctx.get(bits(port.payload)) == offered[name], (cycle, name)
                    del offered[name]
                if ctx.get(port.valid) and not ctx.get(port.ready):
                    offered[name] = ctx.get(bits(port.payload))
            if on and ctx.get(dut.tlp.ready):
                beats.pop(0)
                taken_at.append(cycle)
            if ctx.get(dut.words.valid) and ctx.get(dut.words.ready):
                words.append(ctx.get(dut.words.payload))
            if ctx.get(dut.desc.valid) and ctx.get(dut.desc.ready):
                count, length = ctx.get(dut.desc.payload.count), ctx.get(dut.desc.payload.length)
                body = b"".join(w.to_bytes(wb, "little") for w in words)
                skip = wire.HEADER_LEN // wb * wb
                # all the frame's words came before its descriptor, and no more
                assert len(words) == -(-(wire.HEADER_LEN + length) // wb) - skip // wb, cycle
                area = body[wire.HEADER_LEN - skip:wire.HEADER_LEN - skip + length]
                assert body[:wire.HEADER_LEN - skip] == bytes(wire.HEADER_LEN - skip)
                assert body[wire.HEADER_LEN - skip + length:] == bytes(
                    len(body) - (wire.HEADER_LEN - skip + length))      # zero padded
                frames.append((count, length, area))
                words = []
            await ctx.tick()
        counters.update(oversize=ctx.get(dut.oversize_drops), length=ctx.get(dut.length_errors))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return frames, taken_at, counters


def expect(tlps, max_tlps=None):
    return [(len(g), len(_tlp_area(g)), _tlp_area(g)) for g in aggregate(tlps, max_tlps=max_tlps)]


@pytest.mark.parametrize("width", [64, 128, 256, 512])
def test_frames_are_the_models_under_gaps_and_backpressure(width):
    """Random TLP sizes, random valid gaps, random backpressure on the
    outputs: the frames are ``aggregate``'s groups, their prefixes and TLPs
    byte for byte, each descriptor after its frame's words."""
    rng = random.Random(width)
    tlps = [mwr(4 * rng.choice([0, 1, 2, 8, 16, 31, 64, 128, 200]), tag=i) for i in range(120)]
    frames, _, _ = run(width, tlps, gap=0.3, ready=lambda r: r.random() < 0.6,
                       flush_timeout=5000)
    assert frames == expect(tlps)


@pytest.mark.parametrize("width", [64, 512])
def test_tlps_back_to_back_go_in_one_beat_per_cycle(width):
    """No gaps, outputs always ready: the packer takes a beat every cycle
    but for one stall per overflow of its packing register and one per
    frame closed."""
    tlps = [mwr(32, tag=i) for i in range(100)]
    frames, taken_at, _ = run(width, tlps, flush_timeout=5000)
    assert frames == expect(tlps)
    span = taken_at[-1] - taken_at[0] + 1
    d = width // 32
    beats, dws = len(taken_at), sum(len(t) // 4 + 1 for t in tlps)
    assert span <= beats + dws // (2 * d) + 2 * len(frames) + 4


@pytest.mark.parametrize("width", [64, 256])
def test_backpressure_in_the_middle_of_a_frame_holds_then_loses_nothing(width):
    """words/desc not ready for 30 cycles at a time: the input stops once
    the queues fill, then resumes; every frame is whole."""
    tlps = [mwr(4 * (i % 40), tag=i) for i in range(60)]
    state = {"n": 0}

    def ready(_):
        state["n"] += 1
        return (state["n"] // 30) % 2 == 1
    frames, _, _ = run(width, tlps, ready=ready, flush_timeout=5000)
    assert frames == expect(tlps)


def test_max_tlps_and_the_flush_timer_close_frames():
    tlps = [mwr(16, tag=i) for i in range(9)]
    frames, _, _ = run(256, tlps, max_tlps=4, flush_timeout=5000)
    assert frames == expect(tlps, max_tlps=4)
    # a lone TLP goes after flush_timeout cycles
    frames, taken_at, _ = run(256, tlps[:1], flush_timeout=20, cycles=60)
    assert frames == expect(tlps[:1])


@pytest.mark.parametrize("width", [64, 512])
def test_oversize_and_length_errors_never_corrupt_a_frame(width):
    """A TLP too large for the MTU is dropped; one whose stream is shorter
    than its Length is zero padded, one longer is cut; the prefixes still
    describe the bytes."""
    big = mwr(1600, tag=1)
    good = [mwr(64, tag=i) for i in range(4)]
    short = mwr(64, tag=7)[:-8]                 # two DWs missing
    long_ = mwr(16, tag=8) + bytes(range(12))   # three DWs extra
    frames, _, counters = run(width, [good[0], big, good[1], short, good[2], long_, good[3]],
                              flush_timeout=5000)
    fixed_short = short + bytes(8)
    fixed_long = long_[:-12]
    assert frames == expect([good[0], good[1], fixed_short, good[2], fixed_long, good[3]])
    assert counters == {"oversize": 1, "length": 2}


@pytest.mark.parametrize("width", [64, 512])
def test_a_word_full_with_a_tlps_first_beat_leaves_seven_cycles_after_it(width):
    """The documented latency, outputs always ready (six before the
    register slice after the output queue)."""
    dut = TlpPacker(width, flush_timeout=5000)
    layout = StreamLayout.tlp(width)
    beats = to_beats(mwr(256), layout)
    seen = {}

    async def bench(ctx):
        ctx.set(dut.words.ready, 1)
        for cycle in range(40):
            ctx.set(dut.tlp.valid, bool(beats))
            if beats:
                ctx.set(dut.tlp.payload.as_value(), layout.pack(beats[0]))
            await ctx.delay(1e-9)
            if beats and ctx.get(dut.tlp.ready):
                beats.pop(0)
                seen.setdefault("in", cycle)
            if ctx.get(dut.words.valid):
                seen.setdefault("out", cycle)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["out"] - seen["in"] == 7
