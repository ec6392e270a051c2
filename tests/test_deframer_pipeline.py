"""amaranth.sim tests of the pipelined Deframer and of the Decapsulator
around it (issue 17, item 3): a beat taken every cycle, frames back to back
down to one 64-byte frame per 512-bit beat, each verdict ``latency`` cycles
after its last beat, and a frame that finds no room dropped and counted."""

import random

import pytest
from amaranth.sim import Simulator

from tlpoe.models.frame import DropReason, FrameError, decode_frame, encode_frame
from tlpoe.models.wire import FrameType
from tlpoe.rtl.framing.decapsulator import Decapsulator
from tlpoe.rtl.framing.deframer import Deframer
from tlpoe.tb.bfm import frame_to_beats
from tlpoe.tb.hostile import good_frame, hostile_frame


def mwr4(tag):
    """The smallest MWr: a 3-DW header and 4 bytes of data (16 bytes)."""
    return bytes([0x40, 0, 0, 1, 0, 0, tag, 0x0F, 0xFE, 0xED, 0, 0, tag, tag, tag, tag])


def min_frame(seq):
    """One 4-byte MWr in a frame: 64 bytes, one 512-bit beat."""
    return encode_frame([mwr4(seq & 0xFF)], seq=seq)


def bad_crc(frame):
    return frame[:-1] + bytes([frame[-1] ^ 0x01])


def verdict(frame, mtu=1500):
    """(DropReason or None, good, count) the frame model gives."""
    try:
        decoded = decode_frame(frame, mtu=mtu)
    except FrameError as error:
        return error.reason, 0, None
    good = decoded.frame_type is FrameType.DATA
    return None, int(good), len(decoded.tlps)


def drive_every_cycle(ctx, port, frames, width, beats_seen):
    """Coroutine: every beat of ``frames`` on ``port`` back to back, ``valid``
    high every cycle; asserts ``ready`` on each; records the cycle each
    frame's last beat is taken."""
    async def run():
        cycle = 0
        for frame in frames:
            for beat in frame_to_beats(frame, width):
                ctx.set(port.payload, {"data": beat.data, "keep": beat.keep,
                                       "last": beat.last})
                ctx.set(port.valid, 1)
                assert ctx.get(port.ready), f"frame.ready low at cycle {cycle}"
                await ctx.tick()
                cycle += 1
                if beat.last:
                    beats_seen.append(cycle)
        ctx.set(port.valid, 0)
    return run()


def run_deframer(width, frames, *, extra=40):
    """Feed ``frames`` back to back into a Deframer whose outputs have room;
    returns (descs with the cycle each was valid, counters, last-beat cycles,
    the Deframer)."""
    dut = Deframer(width)
    descs, lasts, counters = [], [], {}

    async def driver(ctx):
        await drive_every_cycle(ctx, dut.frame, frames, width, lasts)

    async def monitor(ctx):
        ctx.set(dut.words.ready, 1)
        ctx.set(dut.desc.ready, 1)
        cycles = sum(len(frame_to_beats(f, width)) for f in frames) + dut.latency + extra
        for cycle in range(cycles):
            if ctx.get(dut.desc.valid):
                descs.append((cycle, ctx.get(dut.desc.payload)))
            await ctx.tick()
        counters["drops"] = list(ctx.get(dut.drops))
        for name in ("good_frames", "control_frames", "overflows"):
            counters[name] = ctx.get(getattr(dut, name))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver, background=True)
    sim.add_testbench(monitor)
    sim.run()
    return descs, counters, lasts, dut


@pytest.mark.parametrize("width", [64, 512])
def test_minimum_frames_back_to_back(width):
    """One-MWr frames with no gap: ``frame.ready`` high every cycle, every
    frame good, each descriptor exactly ``latency`` cycles after its last beat."""
    frames = [min_frame(seq) for seq in range(24)]
    descs, counters, lasts, dut = run_deframer(width, frames)
    assert counters["good_frames"] == len(frames)
    assert counters["drops"] == [0] * len(DropReason) and counters["overflows"] == 0
    assert [d["seq"] for _, d in descs] == list(range(len(frames)))
    assert all(d["good"] and d["ok"] and d["count"] == 1 for _, d in descs)
    words = len(frame_to_beats(frames[0], width))
    assert all(d["words"] == words for _, d in descs)
    # the descriptor is valid in the cycle `latency` edges after the last beat's edge
    assert [c for c, _ in descs] == [last - 1 + dut.latency for last in lasts]


@pytest.mark.parametrize("width", [64, 512])
def test_bad_crc_then_good_back_to_back(width):
    """A frame with a bad CRC and the good one right after it: one CRC drop,
    one good frame, each with its own verdict."""
    good = [min_frame(1), encode_frame([mwr4(2), mwr4(3)], seq=2)]
    frames = [bad_crc(good[0]), good[1], bad_crc(good[1]), good[0]]
    descs, counters, _, _ = run_deframer(width, frames)
    assert counters["drops"][DropReason.CRC] == 2
    assert sum(counters["drops"]) == 2 and counters["good_frames"] == 2
    assert [(d["ok"], d["good"], d["seq"]) for _, d in descs] == \
        [(0, 0, 1), (1, 1, 2), (0, 0, 2), (1, 1, 1)]


@pytest.mark.parametrize("width", [64, 128, 256, 512])
def test_hostile_frames_back_to_back_match_the_model(width):
    """Seeded hostile and good frames, no gap between them: each descriptor's
    verdict, TLP count and word count are the frame model's, and each drop
    reason counter moved by the model's count."""
    rng = random.Random(f"pipeline:{width}")
    frames = []
    while len(frames) < 120:
        good = good_frame(rng, seq=rng.randrange(1 << 32), max_tlps=4)
        frames.append(good if rng.random() < 0.3 else hostile_frame(rng, good, mtu=1500).data)
    descs, counters, _, dut = run_deframer(width, frames)
    assert len(descs) == len(frames)
    want_drops = [0] * len(DropReason)
    for i, (frame, (_, desc)) in enumerate(zip(frames, descs)):
        reason, good, count = verdict(frame)
        words = min(len(frame_to_beats(frame, width)), dut.max_words)
        assert (desc["ok"], desc["good"], desc["words"]) == (int(reason is None), good, words), \
            (i, reason, len(frame))
        if good:
            assert desc["count"] == count, i
        if reason is not None:
            want_drops[reason] += 1
    assert counters["drops"] == want_drops


def run_decap(width, frames, *, hold=True, tlp_ready_after=0, cycles=3000):
    """Frames back to back into a Decapsulator (``tlp.ready`` low for the first
    ``tlp_ready_after`` cycles); returns (TLPs delivered, counters, cycles
    ``frame.ready`` was low while a beat waited)."""
    dut = Decapsulator(width, hold=hold)
    out, counters, waited = [], {}, [0]

    async def driver(ctx):
        for frame in frames:
            for beat in frame_to_beats(frame, width):
                ctx.set(dut.frame.payload, {"data": beat.data, "keep": beat.keep,
                                            "last": beat.last})
                ctx.set(dut.frame.valid, 1)
                while not ctx.get(dut.frame.ready):
                    waited[0] += 1
                    await ctx.tick()
                await ctx.tick()
        ctx.set(dut.frame.valid, 0)

    async def monitor(ctx):
        beats = []
        for cycle in range(cycles):
            ctx.set(dut.tlp.ready, cycle >= tlp_ready_after)
            taken = ctx.get(dut.tlp.valid) and cycle >= tlp_ready_after
            if taken:
                beat = ctx.get(dut.tlp.payload)
                beats.append(int(beat["data"]).to_bytes(width // 8, "little")
                             [:4 * bin(beat["keep"]).count("1")])
                if beat["last"]:
                    out.append(b"".join(beats))
                    beats = []
            await ctx.tick()
        for name in ("good_frames", "overflows", "tlps_out"):
            counters[name] = ctx.get(getattr(dut, name))
        counters["drops"] = sum(ctx.get(dut.drops))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver, background=True)
    sim.add_testbench(monitor)
    sim.run()
    return out, counters, waited[0]


@pytest.mark.parametrize("width", [64, 512])
def test_decapsulator_takes_minimum_frames_every_cycle(width):
    """Eight minimum frames and a bad-CRC one among them, back to back, into
    the Decapsulator: never held (its FIFOs have room), every good frame's
    TLP delivered once, in order."""
    frames = [min_frame(seq) for seq in range(8)]
    frames.insert(3, bad_crc(min_frame(99)))
    out, counters, waited = run_decap(width, frames, cycles=400)
    assert waited == 0
    assert out == [mwr4(seq) for seq in range(8)]
    assert counters["good_frames"] == 8 and counters["drops"] == 1


@pytest.mark.parametrize("width", [64, 512])
def test_mac_mode_drops_and_counts_overflows(width):
    """``hold=False``: with ``tlp`` held, the FIFOs fill, ``frame.ready``
    stays high, the frames that find no room are dropped whole and counted in
    ``overflows``, and every admitted frame's TLPs come out intact."""
    frames = [encode_frame([bytes([seq]) * 256, mwr4(seq)], seq=seq) for seq in range(40)]
    out, counters, waited = run_decap(width, frames, hold=False, tlp_ready_after=1500,
                                      cycles=5000)
    assert waited == 0
    assert counters["overflows"] > 0
    assert counters["good_frames"] + counters["overflows"] == len(frames)
    delivered = [out[i:i + 2] for i in range(0, len(out), 2)]
    assert len(delivered) == counters["good_frames"]
    seqs = [pair[1][-1] for pair in delivered]
    assert seqs == sorted(seqs)
    assert all(pair == [bytes([s]) * 256, mwr4(s)] for s, pair in zip(seqs, delivered))


@pytest.mark.parametrize("width", [64, 512])
def test_hold_mode_holds_between_frames_without_loss(width):
    """``hold=True`` (default) with ``tlp`` held: ``frame.ready`` falls
    between frames and nothing is lost."""
    frames = [encode_frame([bytes([seq]) * 256, mwr4(seq)], seq=seq) for seq in range(30)]
    out, counters, waited = run_decap(width, frames, tlp_ready_after=600, cycles=6000)
    assert waited > 0 and counters["overflows"] == 0
    assert counters["good_frames"] == len(frames)
    assert out == [t for seq in range(len(frames)) for t in (bytes([seq]) * 256, mwr4(seq))]
