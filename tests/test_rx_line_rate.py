"""The receive path keeps up with a MAC that cannot wait (issue 17).

A MAC hands over a beat every cycle while a frame lasts and cannot hold
one back, so ``frame_in.ready`` is always 1 and a frame that finds no room
is dropped and counted in ``overflows``. Here the MAC of the issue's two
targets sends frames as fast as its line allows: 100 GbE at 512 bits and
322.27 MHz, 10 GbE at 64 bits and 156.25 MHz. Each frame occupies the line
for its bytes, its FCS, preamble and the minimum gap (24 bytes); its beats
come one per cycle and the next frame starts at the first cycle the line
allows. Every mix, from frames of one 4-byte write to full frames, with
control and corrupted frames among them; the TLP side is always ready.
Nothing may overflow, and every TLP of every good frame comes out, in
order, bit for bit.

The Decapsulator alone (the link-less path) and the whole Bridge (the link
receiver, the receive queues and the ordering checker after it) are both
driven; the Bridge receives its frames in sequence, as from a peer.
"""

import random

import pytest
from amaranth.sim import Simulator

from tlpoe.models import wire
from tlpoe.models.frame import FLAG_ACK_VALID, FrameType, decode_frame, encode_frame
from tlpoe.models.tlp import Tlp, TlpType
from tlpoe.rtl.bridge.bridge import Bridge
from tlpoe.rtl.framing.decapsulator import Decapsulator
from tlpoe.tb.bfm import frame_to_beats


def mwr(nbytes, i):
    """A memory write of ``nbytes`` (a 64-bit address: a 4-DW header)."""
    data = bytes((i * 13 + k) & 0xFF for k in range(nbytes))
    return Tlp(TlpType.MWr, address=0x1_0000_0000 + 0x1000 * i, first_be=0xF,
               last_be=0xF if nbytes > 4 else 0, data=data).pack()


def mix(name, rng, count):
    """Frames of workload ``name``: a list of (frame bytes, its TLPs or None
    for a frame that is not delivered)."""
    out, seq = [], 0

    def data(tlps):
        nonlocal seq
        frame = encode_frame(tlps, seq=seq, flags=FLAG_ACK_VALID)
        seq += 1
        return frame, tlps

    for i in range(count):
        if name == "smallest":              # one 4-byte write per frame
            out.append(data([mwr(4, i)]))
        elif name == "full":                # 256-byte writes, or one write filling the MTU
            if i % 2:
                out.append(data([mwr((wire.max_tlp_bytes(1500) - 16) // 4 * 4, i)]))
            else:
                out.append(data([mwr(256, 5 * i + k) for k in range(5)]))
        elif name == "tail":                # a full frame, then the smallest frames behind it
            if i % 41 == 0:
                out.append(data([mwr((wire.max_tlp_bytes(1500) - 16) // 4 * 4, i)]))
            else:
                out.append((encode_frame([], seq=0, ack=i, frame_type=FrameType.ACK,
                                         flags=FLAG_ACK_VALID), None))
        else:                               # anything, with control and bad frames
            kind = rng.random()
            if kind < 0.15:
                out.append((encode_frame([], seq=0, ack=i, frame_type=FrameType.ACK,
                                         flags=FLAG_ACK_VALID), None))
            elif kind < 0.25:
                frame = bytearray(data([mwr(4 * rng.randint(1, 64), i)])[0])
                frame[-1] ^= 0x40           # a bad CRC: dropped, its number comes again
                seq -= 1
                out.append((bytes(frame), None))
            else:
                sizes = [4 * rng.randint(1, 64) for _ in range(rng.randint(1, 4))]
                out.append(data([mwr(n, 10 * i + k) for k, n in enumerate(sizes)]))
    return out


#: width -> (line rate in Gb/s, clock in MHz): the issue's two MAC targets.
LINE = {64: (10, 156.25), 512: (100, 322.27)}
#: Bytes a frame occupies on the line besides its own: FCS, preamble, gap.
LINE_OVERHEAD = 4 + 8 + 12


def schedule(frames, width, gap=True):
    """The cycle at which the MAC starts each frame: back to back at the
    line rate (a frame's beats take a cycle each, so a frame never starts
    before the last one's beats are out)."""
    rate, mhz = LINE[width]
    bytes_per_cycle = rate * 1e3 / 8 / mhz
    starts, line, cycle = [], 0.0, 0
    for frame, _ in frames:
        cycle = max(cycle, int(-(-line // 1))) if gap else cycle
        starts.append(cycle)
        line = max(line, cycle) + (len(frame) + LINE_OVERHEAD) / bytes_per_cycle
        cycle += len(frame_to_beats(frame, width))
    return starts


def drive(dut, frame_port, tlp_port, frames, width, extra_cycles, setup=None, gap=True):
    """Feed ``frames`` back to back without looking at ``ready`` (a MAC);
    collect the TLPs that leave. Returns (TLPs, every beat offered while
    ``ready`` was low, ``overflows`` and ``good_frames`` at the end)."""
    starts = schedule(frames, width, gap)
    got, waited, end = [], [], {}

    async def mac(ctx):
        if setup:
            setup(ctx)
        cycle = 0
        for (frame, _), start in zip(frames, starts):
            ctx.set(frame_port.valid, 0)
            if start > cycle:
                await ctx.tick().repeat(start - cycle)
            cycle = start
            for beat in frame_to_beats(frame, width):
                ctx.set(frame_port.payload, {"data": beat.data, "keep": beat.keep,
                                             "last": beat.last})
                ctx.set(frame_port.valid, 1)
                if not ctx.get(frame_port.ready):
                    waited.append(beat)
                await ctx.tick()
                cycle += 1
        ctx.set(frame_port.valid, 0)

    async def pcie(ctx):
        ctx.set(tlp_port.ready, 1)
        parts = []
        for _ in range(starts[-1] + extra_cycles):
            await ctx.tick()
            if ctx.get(tlp_port.valid):
                beat = ctx.get(tlp_port.payload)
                parts.append(int(beat["data"]).to_bytes(width // 8, "little")
                             [:4 * bin(beat["keep"]).count("1")])
                if beat["last"]:
                    got.append(b"".join(parts))
                    parts = []
        counters = dut.stats if "stats" in dut.signature.members else dut   # a Bridge's
        end["overflows"] = ctx.get(counters.overflows)
        end["good_frames"] = ctx.get(counters.good_frames)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(mac, background=True)
    sim.add_testbench(pcie)
    sim.run()
    return got, waited, end


MIXES = {"smallest": 200, "full": 10, "random": 60, "tail": 123}
#: The mixes whose frames may also come with no gap at 64 bits (minimum
#: frames with no gap come faster than any MAC sends them).
NO_GAP_MIXES = ("smallest", "full", "random")


@pytest.mark.parametrize("width", [64])
@pytest.mark.parametrize("name", list(MIXES))
def test_the_decapsulator_never_falls_behind(width, name):
    """The link-less path at 64 bits (the Bridge below runs the same
    Deframer and unpacker at both widths; 512 bits here takes minutes)."""
    frames = mix(name, random.Random(width), MIXES[name])
    dut = Decapsulator(width, hold=False)
    got, waited, end = drive(dut, dut.frame, dut.tlp, frames, width, extra_cycles=400)
    expected = [t for f, tlps in frames if tlps is not None for t in decode_frame(f).tlps]
    assert not waited and end["overflows"] == 0
    assert end["good_frames"] == sum(tlps is not None for _, tlps in frames)
    assert got == expected


@pytest.mark.parametrize("width", [64, 512])
@pytest.mark.parametrize("name", list(MIXES))
def test_the_bridge_never_falls_behind(width, name):
    frames = mix(name, random.Random(width + 1), MIXES[name])
    dut = Bridge(width)

    def setup(ctx):
        ctx.set(dut.frame_out.ready, 1)       # our own ACKs leave freely

    got, waited, end = drive(dut, dut.frame_in, dut.tlp_out, frames, width, extra_cycles=600,
                             setup=setup)
    expected = [t for _, tlps in frames if tlps is not None for t in tlps]
    assert not waited and end["overflows"] == 0
    assert end["good_frames"] == sum(tlps is not None for _, tlps in frames)
    assert got == expected


@pytest.mark.parametrize("name", NO_GAP_MIXES)
def test_the_bridge_takes_frames_with_no_gap_at_64_bits(name):
    """At 64 bits the datapath is no faster than 10 GbE, so a MAC's frames
    can follow each other with no idle cycle at all (the fuzz bench's
    case): a frame's words then wait for the verdict on the one before
    while the next arrives, and the body FIFO has room for that."""
    frames = mix(name, random.Random(7), MIXES[name])
    dut = Bridge(64)

    def setup(ctx):
        ctx.set(dut.frame_out.ready, 1)

    got, waited, end = drive(dut, dut.frame_in, dut.tlp_out, frames, 64, extra_cycles=600,
                             setup=setup, gap=False)
    assert end["overflows"] == 0
    assert got == [t for _, tlps in frames if tlps is not None for t in tlps]


@pytest.mark.parametrize("width", [64, 512])
def test_a_selective_repeat_release_does_not_overflow(width):
    """Selective repeat: frames 1..15 arrive before frame 0 and are kept;
    frame 0 releases all of them at once, while the next 25 full frames
    keep coming with no gap. The release holds the receive FIFOs' outputs
    for a window of frames; the FIFOs take what arrives meanwhile."""
    size = (wire.max_tlp_bytes(1500) - 16) // 4 * 4
    frames = {seq: encode_frame([mwr(size, seq)], seq=seq, flags=FLAG_ACK_VALID)
              for seq in range(41)}
    order = list(range(1, 16)) + [0] + list(range(16, 41))
    sent = [(frames[seq], [mwr(size, seq)]) for seq in order]
    dut = Bridge(width, mode="sr", window=16)

    def setup(ctx):
        ctx.set(dut.frame_out.ready, 1)

    got, waited, end = drive(dut, dut.frame_in, dut.tlp_out, sent, width,
                             extra_cycles=4000 if width == 64 else 1000, setup=setup, gap=False)
    assert end["overflows"] == 0
    assert got == [mwr(size, seq) for seq in range(41)]
