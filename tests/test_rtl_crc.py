"""amaranth.sim unit test of the wide CRC-32 against zlib."""

import random
import zlib

import pytest
from amaranth.sim import Simulator

from tlpoe.rtl.crc import Crc32Update, reverse_zero_bytes


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
