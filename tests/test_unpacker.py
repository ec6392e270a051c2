"""The TlpUnpacker's walk under stalls on both sides (amaranth.sim).

The line-rate tests drive the receive path at its fastest, the TLP side
always ready. The unpacker's walk decides a beat from counts that lag its
decisions by a cycle and from what each prefix said of its TLP when it was
loaded; a count off by one shows only when the buffer holds exactly a
beat's worth, which needs the input to starve and the output to stall at
the right moments. Here the Decapsulator (hold mode, the link-less path)
gets frames of TLPs of every length from 3 DWs (a read, no data) to past
two beats, with random gaps between its beats, and its ``tlp`` port is
ready at random: every TLP of every good frame must come out, in order,
bit for bit, with the order stamp of its prefix, and nothing else.
"""

import random

import pytest
from amaranth.sim import Simulator

from tlpoe.models import wire
from tlpoe.models.frame import FLAG_ACK_VALID, encode_frame
from tlpoe.models.tlp import Tlp, TlpType
from tlpoe.rtl.framing.decapsulator import Decapsulator
from tlpoe.rtl.framing.deframer import frame_words
from tlpoe.rtl.framing.unpacker import TlpUnpacker
from tlpoe.tb.bfm import frame_to_beats


def a_tlp(rng, i, width):
    """A TLP of a random length: a 3- or 4-DW read, or a write with up to
    a little over two beats of data (so first, middle and last beats, and
    TLPs that end on every lane, all occur)."""
    address = rng.choice([0x1000 * i, 0x1_0000_0000 + 0x1000 * i])
    if rng.random() < 0.2:
        return Tlp(TlpType.MRd, address=address, length=rng.randint(1, 32),
                   first_be=0xF, last_be=0xF, tag=i & 0xFF).pack()
    dws = rng.randint(1, 2 * (width // 32) + 3)
    data = bytes(rng.getrandbits(8) for _ in range(4 * dws))
    return Tlp(TlpType.MWr, address=address, first_be=0xF,
               last_be=0xF if dws > 1 else 0, data=data).pack()


def frames_of(rng, width, count):
    """(frame bytes, [(TLP, stamp)]) for ``count`` DATA frames of 1 to 6 TLPs."""
    out, n = [], 0
    for seq in range(count):
        tlps = [a_tlp(rng, n + k, width) for k in range(rng.randint(1, 6))]
        stamps = [(n + k) * 7 & 0xFFFF for k in range(len(tlps))]
        n += len(tlps)
        out.append((encode_frame(tlps, seq=seq, flags=FLAG_ACK_VALID, stamps=stamps),
                    list(zip(tlps, stamps))))
    return out


class Phases:
    """Stretches of the run with their own rates: how often a word or beat
    is offered, and how often the TLP side is ready, from a trickle to
    every cycle. ``cycle`` counts the TLP side's clock edges."""

    def __init__(self, rng, offer, ready, length):
        self.rates = [(rng.choice(offer), rng.choice(ready)) for _ in range(8)]
        self.length = length
        self.cycle = 0

    def now(self):
        return self.rates[min(self.cycle // self.length, len(self.rates) - 1)]


async def collect(ctx, tlp, width, count, rng, phases):
    """The first ``count`` TLPs that leave ``tlp`` (bytes, the first beat's
    stamp), ready at the phases' rate; then nothing more may leave."""
    got, parts, idle = [], [], 0
    while len(got) < count and idle < 2000:
        ready = rng.random() < phases.now()[1]
        ctx.set(tlp.ready, ready)
        _, _, valid, beat = await ctx.tick().sample(tlp.valid, tlp.payload)
        phases.cycle += 1
        idle += 1
        if ready and valid:
            idle = 0
            parts.append(int(beat.data).to_bytes(width // 8, "little")
                         [:4 * bin(int(beat.keep)).count("1")])
            if not parts[1:]:
                stamp = int(beat.stamp)
            if beat.last:
                got.append((b"".join(parts), stamp))
                parts = []
    ctx.set(tlp.ready, 1)
    for _ in range(50):                         # and nothing more
        await ctx.tick()
        assert not ctx.get(tlp.valid)
    return got


def run(dut, background, expected, width, rng, phases):
    got = []

    async def pcie(ctx):
        got.extend(await collect(ctx, dut.tlp, width, len(expected), rng, phases))
        assert ctx.get(dut.tlps_out) == len(got)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in background:
        sim.add_testbench(bench, background=True)
    sim.add_testbench(pcie)
    sim.run()
    assert len(got) == len(expected)
    for k, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"TLP {k} of {len(expected)}"


@pytest.mark.parametrize("width, frames", [(64, 60), (128, 60), (256, 60), (512, 25)])
@pytest.mark.parametrize("seed", [1, 2])
def test_every_tlp_comes_out_whole_under_stalls(width, frames, seed):
    rng = random.Random(seed * 1000 + width)
    sent = frames_of(rng, width, frames)
    expected = [item for _, items in sent for item in items]
    dut = Decapsulator(width)
    phases = Phases(rng, [0.15, 0.5, 1.0], [0.1, 0.5, 0.9, 1.0], 400)

    async def mac(ctx):
        for frame, _ in sent:
            for beat in frame_to_beats(frame, width):
                while rng.random() >= phases.now()[0]:
                    ctx.set(dut.frame.valid, 0)
                    await ctx.tick()
                ctx.set(dut.frame.payload, {"data": beat.data, "keep": beat.keep,
                                            "last": beat.last})
                ctx.set(dut.frame.valid, 1)
                await ctx.tick().until(dut.frame.ready)
        ctx.set(dut.frame.valid, 0)

    run(dut, [mac], expected, width, rng, phases)


@pytest.mark.parametrize("width, frames", [(64, 60), (128, 60), (256, 60), (512, 25)])
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_the_unpacker_alone_under_gaps_in_its_words(width, frames, seed):
    """The TlpUnpacker driven directly: its words may come with gaps (a
    ReorderBuffer's release, or any source that is not a full FIFO), some
    frames are not good (their words are all discarded), and the TLP side
    stalls at random."""
    rng = random.Random(seed * 7919 + width)
    sent = frames_of(rng, width, frames)
    good = [rng.random() < 0.85 for _ in sent]
    expected = [item for (_, items), g in zip(sent, good) if g for item in items]
    dut = TlpUnpacker(width, max_words=frame_words(width, 1500))
    phases = Phases(rng, [0.2, 0.6, 1.0], [0.1, 0.5, 0.9, 1.0], 300)

    async def descs(ctx):
        for (frame, _), g in zip(sent, good):
            area = (len(frame) - wire.HEADER_LEN - 4) // 4
            ctx.set(dut.desc.payload, {"good": g, "words": len(frame_to_beats(frame, width)),
                                       "area": area, "ok": 1})
            ctx.set(dut.desc.valid, 1)
            await ctx.tick().until(dut.desc.ready)
        ctx.set(dut.desc.valid, 0)

    async def words(ctx):
        for frame, _ in sent:
            for beat in frame_to_beats(frame, width):
                while rng.random() >= phases.now()[0]:
                    ctx.set(dut.words.valid, 0)
                    await ctx.tick()
                ctx.set(dut.words.payload, beat.data)
                ctx.set(dut.words.valid, 1)
                await ctx.tick().until(dut.words.ready)
        ctx.set(dut.words.valid, 0)

    run(dut, [descs, words], expected, width, rng, phases)
