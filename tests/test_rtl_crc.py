"""amaranth.sim unit test of the wide CRC-32 against zlib."""

import random
import zlib

import pytest
from amaranth.sim import Simulator

from tlpoe.rtl.framing.crc import Crc32Pipelined, Crc32Update, reverse_zero_bytes


def _reg_after(reg, data):
    return zlib.crc32(data, reg ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


@pytest.mark.parametrize("width", [64, 512])
def test_update_matches_zlib_for_every_dw_count(width):
    dut = Crc32Update(width)
    rng = random.Random(width)
    cases = [(rng.getrandbits(32), rng.randbytes(width // 8), k)
             for k in range(width // 32 + 1) for _ in range(4)]

    async def bench(ctx):
        for reg, data, dws in cases:
            ctx.set(dut.crc_in, reg)
            ctx.set(dut.data, int.from_bytes(data, "little"))
            ctx.set(dut.dws, dws)
            assert ctx.get(dut.crc_out) == _reg_after(reg, data[:4 * dws]), (reg, dws)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


def test_reverse_zero_bytes_undoes_zero_feed():
    start = reverse_zero_bytes(0xFFFFFFFF, 14)
    assert _reg_after(start, bytes(14)) == 0xFFFFFFFF
    data = bytes(range(40))
    # zeroing the first 14 bytes from `start` gives zlib's CRC of bytes 14..
    assert _reg_after(start, bytes(14) + data[14:]) ^ 0xFFFFFFFF == zlib.crc32(data[14:])


def _messages(width, rng):
    """Messages as beats (data bytes, DWs fed, first): for every DW count of
    the final beat, 1 to 3 full beats before it, then 0 to 2 beats of
    ``dws == 0``; with bubbles and single-beat messages."""
    D = width // 32
    out = []
    for k in list(range(1, D + 1)) * 2:
        for full in (0, 1, 3):
            beats = [(rng.randbytes(width // 8), D) for _ in range(full)]
            beats.append((rng.randbytes(width // 8), k))
            beats += [(rng.randbytes(width // 8), 0) for _ in range(rng.randrange(3))]
            out.append(beats)
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("width", [64, 128, 256, 512])
def test_pipelined_matches_zlib_back_to_back(width):
    """Every DW count of a message's last beat, messages back to back (a
    ``first`` every cycle for single-beat ones) and with bubbles: the
    register after each beat, ``latency`` cycles later, is zlib's."""
    init = reverse_zero_bytes(0xFFFFFFFF, 14)
    dut = Crc32Pipelined(width, init=init)
    rng = random.Random(width + 1)
    stream, expected = [], []            # per cycle: (valid, first, data, dws)
    for beats in _messages(width, rng):
        fed = b""
        for i, (data, dws) in enumerate(beats):
            fed += data[:4 * dws]
            stream.append((1, i == 0, data, dws))
            expected.append(_reg_after(init, fed))
        if rng.random() < 0.3:
            stream.append((0, 0, bytes(width // 8), 0))
            expected.append(None)

    async def bench(ctx):
        seen = []
        for cycle in range(len(stream) + dut.latency):
            if cycle < len(stream):
                valid, first, data, dws = stream[cycle]
                ctx.set(dut.valid, valid)
                ctx.set(dut.first, first)
                ctx.set(dut.data, int.from_bytes(data, "little"))
                ctx.set(dut.dws, dws)
            else:
                ctx.set(dut.valid, 0)
            if cycle >= dut.latency:
                want = expected[cycle - dut.latency]
                assert ctx.get(dut.out_valid) == (want is not None), cycle
                if want is not None:
                    seen.append(ctx.get(dut.crc))
                    assert seen[-1] == want, (cycle, hex(seen[-1]), hex(want))
            await ctx.tick()
        assert len(seen) == sum(e is not None for e in expected)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
