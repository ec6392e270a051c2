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
           "Crc32Pipelined", "reverse_zero_bytes"]

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


def _columns(matrix, nbits):
    """Per input bit ``b`` of a linear map, the 32-bit column it flips."""
    return [sum(1 << j for j, row in enumerate(matrix) if (row >> b) & 1) for b in range(nbits)]


def _xor_rows(columns, inputs):
    """32 bits: output bit ``j`` the XOR of ``inputs[b]`` over the ``b`` whose
    column has bit ``j``; one reduction XOR of a masked word per bit (a single
    Verilog expression each, which synthesis balances)."""
    n = len(columns)
    bits = []
    for j in range(32):
        mask = sum(1 << b for b, column in enumerate(columns) if (column >> j) & 1)
        bits.append((inputs[:n] & Const(mask, n)).xor() if mask else Const(0, 1))
    return Cat(*bits)


class Crc32Pipelined(Elaboratable):
    """Pipelined CRC-32 register over a stream of ``width``-bit beats.

    The same function as :class:`Crc32Update` chained beat by beat, split so
    that no register-to-register path has more than a few LUT levels at any
    width.  The CRC is linear, ``reg' = A·reg ⊕ B·data``: only ``A·reg`` (a
    32x32 matrix) is in the loop that carries the register from beat to beat;
    the data term ``B·data`` is an XOR tree over the whole word with no
    feedback, computed one pipeline stage per lane group ahead of the loop
    (as verilog-ethernet and Corundum pipeline their wide CRCs).  A beat with
    fewer than ``width/32`` DWs is fed as a full word with zeros in the
    missing DWs; the excess zero DWs are undone after the loop, one register
    per power of two (:func:`unadvance_matrix`).

    Inputs, sampled every cycle (no backpressure): ``valid``; ``first``
    (the register restarts from ``init`` before this beat); ``data``;
    ``dws`` (the DWs of ``data`` to feed, from lane 0).  A beat with
    ``0 < dws < width/32`` ends its message: until the next ``first`` every
    beat must have ``dws == 0`` (it leaves the register unchanged).

    Outputs: ``crc`` and ``out_valid``, :attr:`latency` cycles after the beat
    went in: the register after every DW fed since the last ``first`` up to
    and including that beat (the transmitted CRC is ``~crc``).
    """

    def __init__(self, width, *, init=0xFFFFFFFF):
        if width % 32 or width < 64 or width & (width - 1):
            raise ValueError(f"width must be a power of two of at least 64 bits, not {width}")
        if not 0 <= init <= 0xFFFFFFFF:
            raise ValueError(f"init must be a 32-bit value, not {init!r}")
        self.width = width
        self.init = init
        D = width // 32
        self.unadvance_stages = (D - 1).bit_length()
        #: Cycles from a beat on the inputs to its register on ``crc``.
        self.latency = self.latency_at(width)
        self.valid = Signal()
        self.first = Signal()
        self.data = Signal(width)
        self.dws = Signal(range(D + 1))
        self.crc = Signal(32)
        self.out_valid = Signal()

    @staticmethod
    def latency_at(width):
        """:attr:`latency` at ``width``: four stages, then one per power of two
        of zero DWs to undo."""
        return 4 + (width // 32 - 1).bit_length()

    def elaborate(self, platform):
        m = Module()
        W, D = self.width, self.width // 32
        full = crc32_matrix(W)                  # inputs: 32 register bits, then W data bits
        reg_columns = _columns([row & 0xFFFFFFFF for row in full], 32)
        data_columns = _columns([row >> 32 for row in full], W)

        # Stage 1: the inputs, lane enables as a thermometer code.
        v1, f1, nz1 = Signal(), Signal(), Signal()
        d1 = Signal(W)
        en1 = Signal(D)
        excess1 = Signal(range(D))
        m.d.sync += [
            v1.eq(self.valid), f1.eq(self.first), d1.eq(self.data), nz1.eq(self.dws != 0),
            en1.eq(Cat(self.dws > i for i in range(D))),
            excess1.eq(D - self.dws),
        ]
        # Stage 2: each lane's share of the data term, masked by its enable.
        v2, f2, nz2 = Signal(), Signal(), Signal()
        excess2 = Signal(range(D))
        parts = [Signal(32, name=f"lane{i}_term") for i in range(D)]
        m.d.sync += [v2.eq(v1), f2.eq(f1), nz2.eq(nz1), excess2.eq(excess1)]
        for i, part in enumerate(parts):
            lane = d1[32 * i:32 * (i + 1)]
            term = _xor_rows(data_columns[32 * i:32 * (i + 1)], lane)
            m.d.sync += part.eq(Mux(en1[i], term, 0))
        # Stage 3: the data term, the XOR of the lanes' shares.
        v3, f3, nz3 = Signal(), Signal(), Signal()
        excess3 = Signal(range(D))
        term = Signal(32)
        m.d.sync += [v3.eq(v2), f3.eq(f2), nz3.eq(nz2), excess3.eq(excess2)]
        total = parts[0]
        for part in parts[1:]:
            total = total ^ part
        m.d.sync += term.eq(total)
        # Stage 4, the loop: reg' = A·base ⊕ term, base = init on a message's first beat.
        reg = Signal(32, init=self.init)
        excess = Signal(range(D))
        v4 = Signal()
        a_init = 0
        for j in range(32):
            a_init |= (bin(full[j] & self.init & 0xFFFFFFFF).count("1") & 1) << j
        advanced = Mux(f3, Const(a_init, 32), _xor_rows(reg_columns, reg)) ^ term
        base = Mux(f3, Const(self.init, 32), reg)
        m.d.sync += v4.eq(v3)
        with m.If(v3):
            m.d.sync += [reg.eq(Mux(nz3, advanced, base)),
                         excess.eq(Mux(nz3, excess3, Mux(f3, 0, excess)))]
        # Stages 5..: undo the zero DWs past the message's end, a power of two per stage.
        value, valid, left = reg, v4, excess
        for b in range(self.unadvance_stages):
            undone = Signal(32, name=f"undo_{1 << b}_dw")
            nvalid = Signal(name=f"undo_{1 << b}_valid")
            nleft = Signal(range(D), name=f"undo_{1 << b}_left")
            m.d.sync += [
                undone.eq(Mux(left[b], _xor_rows(_columns(unadvance_matrix(32 << b), 32), value),
                              value)),
                nvalid.eq(valid), nleft.eq(left),
            ]
            value, valid, left = undone, nvalid, nleft
        m.d.comb += [self.crc.eq(value), self.out_valid.eq(valid)]
        return m
