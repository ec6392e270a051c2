"""CRC-32 (IEEE 802.3, reflected; zlib's) over a wide datapath, DW by DW.

:mod:`amaranth.lib.crc` processes one fixed-width word per cycle; the bridge
needs the final word of a frame to hold any whole number of DWs.  Feeding a
word whose last ``D - k`` DWs are zero advances the register by ``D - k``
zero DWs past the ``k``-DW result, and that advance is an invertible linear
map, so::

    update_k(reg, dws) = Z^-(D-k) · update_D(reg, dws followed by zeros)

One full-word XOR matrix and ``log2(D)`` small 32x32 stages that each undo
a power-of-two number of zero DWs replace ``D`` separate matrices: less
logic in the FPGA, and far fewer events in an event-driven simulator.  The
frame's byte order is the stream's (byte 0 in lane 0), processed least
significant bit first, like the Ethernet FCS.
"""

from amaranth.hdl import Cat, Const, Elaboratable, Module, Mux, Signal

__all__ = ["POLY_REFLECTED", "crc32_matrix", "unadvance_matrix", "Crc32Update",
           "reverse_zero_bytes"]

POLY_REFLECTED = 0xEDB88320


def crc32_matrix(data_bits):
    """Symbolic bit-serial CRC-32 over ``data_bits`` input bits: 32 integers,
    bit ``j`` of the register afterwards being the XOR of the inputs set in
    entry ``j``; input bits 0..31 are the register before, 32+i data bit ``i``."""
    reg = [1 << j for j in range(32)]
    for i in range(data_bits):
        feedback = reg[0] ^ (1 << (32 + i))
        reg = [(reg[j + 1] if j < 31 else 0) ^ (feedback if (POLY_REFLECTED >> j) & 1 else 0)
               for j in range(32)]
    return reg


def unadvance_matrix(zero_bits):
    """32 integers: the register before ``zero_bits`` zero data bits, as XORs
    of the register bits after them (the inverse of the zero advance)."""
    reg = [1 << j for j in range(32)]
    for _ in range(zero_bits):
        feedback = reg[31]                       # the bit the forward step fed back
        undone = [reg[j] ^ (feedback if (POLY_REFLECTED >> j) & 1 else 0) for j in range(32)]
        reg = [feedback] + undone[:31]           # shift back left, feedback into bit 0
    return reg


def reverse_zero_bytes(reg, nbytes):
    """Register value ``r`` such that feeding ``nbytes`` zero bytes from ``r``
    gives ``reg``: lets a CRC region start mid-word by zeroing the bytes
    before it instead of muxing the start."""
    for _ in range(8 * nbytes):
        reg = (((reg ^ POLY_REFLECTED) << 1) | 1) & 0xFFFFFFFF if reg >> 31 else (reg << 1) & 0xFFFFFFFF
    return reg


def _apply(matrix, inputs):
    """The linear map ``matrix`` (from :func:`crc32_matrix`) of value ``inputs``.

    Written as the XOR of one 32-bit column per input bit (the column where
    the bit is set), reduced as a balanced tree: whole-word operations that
    an event-driven simulator (Icarus) evaluates many times faster than 32
    reductions over scattered bits, and the same XOR network for synthesis."""
    columns = []
    for b in range(len(inputs)):
        column = sum(1 << j for j, row in enumerate(matrix) if (row >> b) & 1)
        if column:
            columns.append(Mux(inputs[b], Const(column, 32), Const(0, 32)))
    while len(columns) > 1:
        pairs = [columns[i] ^ columns[i + 1] for i in range(0, len(columns) - 1, 2)]
        columns = pairs + columns[len(pairs) * 2:]
    return columns[0] if columns else Const(0, 32)


class Crc32Update(Elaboratable):
    """Combinational CRC-32 register update.

    ``crc_out`` is the register after feeding DWs ``0 .. dws-1`` of ``data``
    (``0 <= dws <= width/32``; DWs from ``dws`` on are ignored) to register
    value ``crc_in``.  The transmitted CRC is ``~register``.
    """

    def __init__(self, width):
        if width % 32 or width < 64 or width & (width - 1):
            raise ValueError(f"width must be a power of two of at least 64 bits, not {width}")
        self.width = width
        self.crc_in = Signal(32)
        self.data = Signal(width)
        self.dws = Signal(range(width // 32 + 1))
        self.crc_out = Signal(32)

    def elaborate(self, platform):
        m = Module()
        D = self.width // 32
        lanes = Signal(self.width)
        m.d.comb += lanes.eq(Cat(Mux(self.dws > i, self.data[32 * i:32 * (i + 1)], 0)
                                 for i in range(D)))
        full = Signal(32)
        m.d.comb += full.eq(_apply(crc32_matrix(self.width), Cat(self.crc_in, lanes)))
        # Undo the (D - dws) zero DWs the full-word update went past, a power of two at a time.
        excess = Signal(range(D))
        m.d.comb += excess.eq(D - self.dws)
        value = full
        for b in range((D - 1).bit_length()):
            stage = Signal(32, name=f"undo_{1 << b}_dw")
            m.d.comb += stage.eq(Mux(excess[b], _apply(unadvance_matrix(32 << b), value), value))
            value = stage
        m.d.comb += self.crc_out.eq(Mux(self.dws == 0, self.crc_in, value))
        return m
