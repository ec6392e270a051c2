"""Ordering checker: watches a TLP egress and flags every illegal pass.

Each TLP carries a *stamp*: the number of posted TLPs that entered the
bridge before it (modulo ``2**stamp_bits``), which
:class:`~tlpoe.rtl.queues.classq.ClassQueues` assigns at the ingress; for a posted
TLP the stamp is its own index among the posted TLPs. From the stamps alone
the checker knows, at the egress, whether a posted TLP that arrived earlier
is still inside: it keeps ``p_low``, the lowest posted index not out yet,
and a bitmap of the posted indices already out above it. For the TLP
leaving, with stamp ``s``:

* posted, ``s > p_low``: it passed an earlier posted TLP; illegal (A2a)
  unless it has Relaxed Ordering;
* non-posted, ``s > p_low``: illegal (B2a);
* completion, ``s > p_low``: illegal (D2a) unless it has Relaxed Ordering;
* completion of a transaction (Requester ID, Tag) whose earlier completion
  reported fewer remaining bytes (Byte Count): an earlier completion of
  the same request came after a later one, illegal (D5b).

The cells are those of :mod:`tlpoe.models.ordering`; every other pass is
legal and never flagged. Not judged, and never flagged: ID-Based Ordering
(a pass allowed by IDO would need the passed TLP's Requester ID; the bridge
never makes one) and I/O or Configuration Write completions (D2b): both
are counted as violations if they pass a posted TLP. D5b is seen only while
the transaction's state is kept: a final completion (Byte Count within its
own payload) closes it, so a final completion that overtakes an earlier one
of its request goes unseen; a per-tag table (``2**tag_bits`` entries) keeps
one transaction per tag.

The table is in block RAM (DP16KD on ECP5, RAMB on UltraScale+): it is
read synchronously, with the address taken from the beat that brings the
completion's Tag (the first beat, or the second at 64 bits) and the entry
used one cycle after the TLP's last beat. A completion's entry is written
in that cycle too; when the next TLP is a single beat right behind it (at
128 bits and wider) its read is issued in the same cycle, and the write is
forwarded to it.

The TLP is judged in three steps: its header fields are registered on its
last beat (stage 1), the comparisons (posted indices, Byte Count) one cycle
later (stage 2), and the counters the cycle after: a TLP whose last beat is
taken in cycle ``c`` is in the outputs from cycle ``c + 3`` (``latency``).
One TLP per cycle is judged at every width; the checker only watches and
never holds the stream back.

``window`` bounds how far a posted TLP may run ahead of ``p_low``; one
further ahead (or behind it: a stamp seen twice) is counted in
``stamp_errors``, not judged.
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..streams import TlpBeat, check_width
from ..tlp_header import CPL, NP, P, TlpHeader

__all__ = ["CELLS", "OrderChecker"]

#: The cells the checker flags, in the order of ``by_cell``.
CELLS = ("A2a", "B2a", "D2a", "D5b")
A2A, B2A, D2A, D5B = range(4)


class _Txn(data.StructLayout):
    def __init__(self):
        super().__init__({"valid": 1, "requester": 16, "byte_count": 13})


def _cpl_tag(dw0, dw2):
    """A completion's Tag: Tag[7:0] in DW 2, T8 and T9 in DW 0."""
    return TlpHeader(Cat(dw0, Const(0, 32), dw2)).completion_tag


class _Fields(data.StructLayout):
    """The fields the checker judges a TLP by, registered on its last beat."""

    def __init__(self):
        super().__init__({"cls": 2, "ro": 1, "length": 10, "bytes_total": 13,
                          "requester": 16, "tag": 10})


def _fields(m, dw0, dw1, dw2):
    """The fields of :class:`_Fields` from the header's DWs 0..2 (lane order)."""
    f = Signal(_Fields())
    hdr = TlpHeader(Cat(dw0, dw1, dw2))
    m.d.comb += [
        f.cls.eq(hdr.cls),
        f.ro.eq(hdr.ro),
        f.length.eq(hdr.length),
        f.bytes_total.eq(Mux(hdr.byte_count == 0, 4096, hdr.byte_count)),
        f.requester.eq(hdr.completion_requester),
        f.tag.eq(Mux(hdr.is_completion, hdr.completion_tag, hdr.request_tag)),
    ]
    return f


class OrderChecker(wiring.Component):
    """Watches one TLP stream beat by beat: ``valid`` marks a beat taken
    (the stream's valid and ready), ``stamp`` is read on a TLP's first beat.

    Outputs: ``violations`` (TLPs that made at least one illegal pass) and
    ``by_cell`` (per cell of :data:`CELLS`), the first violation's
    ``first_stamp``, ``first_tag`` and ``first_cell`` (valid once
    ``first_valid``), ``irq`` (set by a violation, held until
    ``irq_clear``), ``stamp_errors`` and ``tlps_checked``. Latency: a TLP
    whose last beat is taken in cycle ``c`` is counted from cycle
    ``c + latency`` on (3; it was 1 while the table was read
    combinationally). No backpressure: it has no ``ready``.
    """

    #: A TLP whose last beat is taken in cycle ``c`` is in the outputs from
    #: cycle ``c + latency`` on.
    latency = 3

    def __init__(self, width, *, window=64, stamp_bits=16, tag_bits=10):
        check_width(width)
        if not isinstance(window, int) or window < 2 or window & (window - 1):
            raise ValueError(f"window must be a power of two of at least 2, not {window!r}")
        if not isinstance(stamp_bits, int) or not 2 ** (stamp_bits - 1) > window:
            raise ValueError(f"stamp_bits must hold twice the window ({window}), "
                             f"not {stamp_bits!r}")
        if tag_bits not in (8, 10):
            raise ValueError(f"tag_bits must be 8 or 10, not {tag_bits!r}")
        self.width, self.window, self.stamp_bits, self.tag_bits = width, window, stamp_bits, tag_bits
        super().__init__({
            "valid": In(1),
            "beat": In(TlpBeat(width)),
            "stamp": In(stamp_bits),
            "irq_clear": In(1),
            "violations": Out(32),
            "by_cell": Out(data.ArrayLayout(32, len(CELLS))),
            "first_stamp": Out(stamp_bits),
            "first_tag": Out(10),
            "first_cell": Out(2),
            "first_valid": Out(1),
            "irq": Out(1),
            "stamp_errors": Out(32),
            "tlps_checked": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        hdr = self._header(m)
        txns, look = self._table(m, hdr)

        # --- stage 1: the TLP's header, registered on its last beat ----------------------
        v1, f, s1 = Signal(), Signal(_Fields()), Signal(self.stamp_bits)
        m.d.sync += v1.eq(hdr.done)
        with m.If(hdr.done):
            m.d.sync += [f.eq(_fields(m, *hdr.dws)), s1.eq(hdr.stamp)]

        rises = self._byte_count_rises(m, txns, look, v1 & (f.cls == CPL), f)
        passed_posted, in_window = self._posted(m, v1 & (f.cls == P), s1)

        # --- stage 2: the comparisons, registered; the verdict and the counters -------------
        v2, cls2, ro2, passed2, in_window2, rises2 = (Signal(), Signal(2), Signal(), Signal(),
                                                     Signal(), Signal())
        stamp2, tag2 = Signal(self.stamp_bits), Signal(10)
        m.d.sync += v2.eq(v1)
        with m.If(v1):
            m.d.sync += [cls2.eq(f.cls), ro2.eq(f.ro), passed2.eq(passed_posted),
                         in_window2.eq(in_window), rises2.eq(rises), stamp2.eq(s1), tag2.eq(f.tag)]
        cell2 = Signal(2)
        bad = Signal()
        with m.If(cls2 == P):
            m.d.comb += [bad.eq(passed2 & in_window2 & ~ro2), cell2.eq(A2A)]
        with m.Elif(cls2 == NP):
            m.d.comb += [bad.eq(passed2), cell2.eq(B2A)]
        with m.Elif(passed2 & ~ro2):
            m.d.comb += [bad.eq(1), cell2.eq(D2A)]
        with m.Else():
            m.d.comb += [bad.eq(rises2), cell2.eq(D5B)]
        bad2, stamp_error2 = Signal(), Signal()
        m.d.comb += [bad2.eq(v2 & bad), stamp_error2.eq(v2 & (cls2 == P) & ~in_window2)]
        with m.If(v2):
            m.d.sync += self.tlps_checked.eq(self.tlps_checked + 1)
        with m.If(stamp_error2):
            m.d.sync += self.stamp_errors.eq(self.stamp_errors + 1)
        with m.If(bad2):
            m.d.sync += [self.violations.eq(self.violations + 1), self.irq.eq(1)]
            for k in range(len(CELLS)):
                with m.If(cell2 == k):
                    m.d.sync += self.by_cell[k].eq(self.by_cell[k] + 1)
            with m.If(~self.first_valid):
                m.d.sync += [self.first_valid.eq(1), self.first_stamp.eq(stamp2),
                             self.first_tag.eq(tag2), self.first_cell.eq(cell2)]
        with m.If(self.irq_clear & ~bad2):
            m.d.sync += self.irq.eq(0)
        return m

    def _header(self, m):
        """Stage 0: DWs 0..2 of the TLP from the beats they arrive in; its stamp."""
        D = self.width // 32
        hdr = SimpleNamespace(first=Signal(init=1), index=Signal(range(3 + 1)),
                              held=[Signal(32, name=f"dw{i}") for i in range(3)],
                              lane=lambda i: self.beat.data[32 * (i % D):32 * (i % D + 1)])
        stamp_held = Signal(self.stamp_bits)
        dws = []
        for i in range(3):
            here = self.valid & (hdr.index == i // D)
            dws.append(Mux(here, hdr.lane(i), hdr.held[i]))
            with m.If(here):
                m.d.sync += hdr.held[i].eq(hdr.lane(i))
        with m.If(self.valid):
            m.d.sync += hdr.first.eq(self.beat.last)
            with m.If(self.beat.last):
                m.d.sync += hdr.index.eq(0)
            with m.Elif(hdr.index != 3):
                m.d.sync += hdr.index.eq(hdr.index + 1)
            with m.If(hdr.first):
                m.d.sync += stamp_held.eq(self.stamp)
        hdr.dws = dws
        hdr.stamp = Mux(hdr.first, self.stamp, stamp_held)
        hdr.done = self.valid & self.beat.last
        return hdr

    def _posted(self, m, mark, stamp):
        """The posted indices out. ``mark``: a posted TLP with ``stamp``
        leaves. Returns (an earlier posted TLP is still inside, ``stamp`` is
        within the window).

        ``p_low`` is kept as its epoch ``p_low // window`` and its position
        ``p_low % window`` (one-hot, and as a mask of the positions at or
        above it); ``out`` has bit ``i % window`` set for each index ``i`` in
        ``p_low + 1 .. p_low + window - 1`` already out. Nothing moves when
        ``p_low`` leaves: its new position is the first one not out after
        it, found with one add (a carry chain), not a shift."""
        W, k, n = self.window, self.window.bit_length() - 1, self.stamp_bits
        epoch, epoch_next = Signal(n - k), Signal(n - k, init=1)    # p_low // W, and + 1
        at = Signal(W, init=1)                   # one-hot: p_low % W
        at_or_above = Signal(W, init=(1 << W) - 1)                  # positions >= p_low % W
        out = Signal(W)
        s_epoch, s_pos = stamp[k:], stamp[:k]
        same_epoch = Signal()
        next_epoch = Signal()
        m.d.comb += [same_epoch.eq(s_epoch == epoch), next_epoch.eq(s_epoch == epoch_next)]
        ge, eq = at_or_above.bit_select(s_pos, 1), at.bit_select(s_pos, 1)
        d = Signal(n - k)                        # epochs ahead
        m.d.comb += d.eq(s_epoch - epoch)
        half = 1 << (n - k - 1)
        # ahead = stamp - p_low is in 1 .. 2**(n-1) - 1: an earlier posted TLP is still inside
        passed_posted, in_window, is_low = Signal(), Signal(), Signal()
        m.d.comb += [
            passed_posted.eq((same_epoch & ge & ~eq) | ((d != 0) & ~d[-1])
                             | ((d == half) & ~ge)),
            in_window.eq((same_epoch & ge) | (next_epoch & ~ge)),
            is_low.eq(same_epoch & eq),
        ]

        # p_low leaves: the first position not out after it, above it or
        # (wrapping into the next epoch) from 0
        taken = out | at
        above = Cat(taken | ~at_or_above, Const(0, 1))
        below = Cat(taken, Const(0, 1))
        run_above, run_below = Signal(W), Signal(W)  # the ones a +1 carries through
        first_above, first_below = Signal(W + 1), Signal(W + 1)     # one-hot: where it stops
        m.d.comb += [
            run_above.eq(above & ~(above + 1)), first_above.eq(~above & (above + 1)),
            run_below.eq(below & ~(below + 1)), first_below.eq(~below & (below + 1)),
        ]
        wraps, all_out = first_above[W], first_below[W]
        with m.If(mark & in_window):
            with m.If(is_low):
                with m.If(~wraps):
                    m.d.sync += [at.eq(first_above), at_or_above.eq(~run_above),
                                 out.eq(out & ~(at_or_above & run_above))]
                with m.Else():
                    m.d.sync += [epoch.eq(epoch_next), epoch_next.eq(epoch_next + 1)]
                    with m.If(~all_out):
                        m.d.sync += [at.eq(first_below), at_or_above.eq(~run_below),
                                     out.eq(out & ~at_or_above & ~run_below)]
                    with m.Else():               # the whole window was out
                        m.d.sync += out.eq(0)
            with m.Else():
                m.d.sync += out.eq(out | (Const(1, W) << s_pos))
        return passed_posted, in_window

    def _table(self, m, hdr):
        """The per-tag table, read synchronously: the address on the beat
        that brings the completion's Tag (DW 2: beat 0, or beat 1 at 64
        bits), the entry a cycle later and held until the next TLP's."""
        m.submodules.txns = txns = memory.Memory(shape=_Txn(), depth=2 ** self.tag_bits, init=[])
        look = txns.read_port()
        tag_beat = 2 // (self.width // 32)
        dw0 = hdr.lane(0) if tag_beat == 0 else hdr.held[0]
        m.d.comb += [
            look.en.eq(self.valid & (hdr.index == tag_beat)),
            look.addr.eq(_cpl_tag(dw0, hdr.lane(2))[:self.tag_bits]),
        ]
        return txns, look

    def _byte_count_rises(self, m, txns, look, write, f):
        """Writes the completion of stage 1 (``write``) and returns whether
        its Byte Count is above the one its transaction's entry holds (D5b).
        At 128 bits and wider the next TLP's read is issued in the cycle of
        this write and finds the entry before it: the write is forwarded
        (compared apart, so that no multiplexer follows the block RAM). A
        final completion (Byte Count within its payload) closes the entry."""
        keep = txns.write_port()
        m.d.comb += [
            keep.addr.eq(f.tag[:self.tag_bits]),
            keep.en.eq(write),
            keep.data.valid.eq(f.bytes_total > (Mux(f.length == 0, 1024, f.length) << 2)),
            keep.data.requester.eq(f.requester),
            keep.data.byte_count.eq(f.bytes_total),
        ]
        forward = Signal()
        written = Signal(_Txn())
        with m.If(look.en):
            m.d.sync += [forward.eq(keep.en & (keep.addr == look.addr)), written.eq(keep.data)]

        def rises(known):
            return (known.valid & (known.requester == f.requester)
                    & (f.bytes_total > known.byte_count))
        return Mux(forward, rises(written), rises(look.data))
