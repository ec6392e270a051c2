"""CRC-32 (IEEE 802.3, reflected; zlib's) over a wide datapath, DW by DW.

:mod:`amaranth.lib.crc` processes one fixed-width word per cycle; the bridge
needs the final word of a frame to hold any whole number of DWs, so this
module derives, once at elaboration, the XOR matrices for 1..D DWs of input
and selects among them.  The frame's byte order is the stream's (byte 0 in
lane 0), processed least-significant bit first like the Ethernet FCS.
"""

from amaranth.hdl import Cat, Const, Elaboratable, Module, Signal

__all__ = ["POLY_REFLECTED", "crc32_matrices", "Crc32Update", "reverse_zero_bytes"]

POLY_REFLECTED = 0xEDB88320


def crc32_matrices(data_bits):
    """Symbolic bit-serial CRC-32 over ``data_bits`` input bits.

    Returns ``snapshots``: for each DW boundary ``k`` (1..data_bits/32),
    a list of 32 integers; bit ``j`` of the register after ``32*k`` data bits
    is the XOR of the inputs set in ``snapshots[k-1][j]``, where input bits
    0..31 are the register before and 32+i is data bit ``i``.
    """
    reg = [1 << j for j in range(32)]
    snapshots = []
    for i in range(data_bits):
        feedback = reg[0] ^ (1 << (32 + i))
        reg = [(reg[j + 1] if j < 31 else 0) ^ (feedback if (POLY_REFLECTED >> j) & 1 else 0)
               for j in range(32)]
        if (i + 1) % 32 == 0:
            snapshots.append(list(reg))
    return snapshots


def reverse_zero_bytes(reg, nbytes):
    """Register value ``r`` such that feeding ``nbytes`` zero bytes from ``r``
    gives ``reg``: lets a CRC region start mid-word by zeroing the bytes
    before it instead of muxing the start."""
    for _ in range(8 * nbytes):
        reg = (((reg ^ POLY_REFLECTED) << 1) | 1) & 0xFFFFFFFF if reg >> 31 else (reg << 1) & 0xFFFFFFFF
    return reg


class Crc32Update(Elaboratable):
    """Combinational CRC-32 register update.

    ``crc_out`` is the register after feeding DWs ``0 .. dws-1`` of ``data``
    (``1 <= dws <= width/32``) to register value ``crc_in``; with ``dws == 0``
    it equals ``crc_in``.  The transmitted CRC is ``~register``.
    """

    def __init__(self, width):
        if width % 32:
            raise ValueError(f"width must be a multiple of 32, not {width}")
        self.width = width
        self.crc_in = Signal(32)
        self.data = Signal(width)
        self.dws = Signal(range(width // 32 + 1))
        self.crc_out = Signal(32)

    def elaborate(self, platform):
        m = Module()
        inputs = Cat(self.crc_in, self.data)
        with m.Switch(self.dws):
            with m.Case(0):
                m.d.comb += self.crc_out.eq(self.crc_in)
            for k, matrix in enumerate(crc32_matrices(self.width), start=1):
                with m.Case(k):
                    m.d.comb += self.crc_out.eq(Cat(
                        Cat(*(inputs[b] for b in range(32 + 32 * k) if (row >> b) & 1)).xor()
                        if row else Const(0, 1)
                        for row in matrix))
        return m
