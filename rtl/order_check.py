"""Ordering checker: watches a TLP egress and flags every illegal pass.

Each TLP carries a *stamp*: the number of posted TLPs that entered the
bridge before it (modulo ``2**stamp_bits``), which
:class:`~tlpoe.rtl.classq.ClassQueues` assigns at the ingress; for a posted
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

``window`` bounds how far a posted TLP may run ahead of ``p_low``; one
further ahead (or behind it: a stamp seen twice) is counted in
``stamp_errors``, not judged.
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .classq import CPL, NP, P, tlp_class
from .compose import exposed_members, forward
from .streams import TlpBeat, check_width

__all__ = ["CELLS", "OrderChecker", "CheckedQueues"]

#: The cells the checker flags, in the order of ``by_cell``.
CELLS = ("A2a", "B2a", "D2a", "D5b")
A2A, B2A, D2A, D5B = range(4)


class _Txn(data.StructLayout):
    def __init__(self):
        super().__init__({"valid": 1, "requester": 16, "byte_count": 13})


def _cpl_tag(dw0, dw2):
    """A completion's Tag: Tag[7:0] in DW 2, T8 and T9 in DW 0."""
    return Cat(dw2[16:24], dw0[11], dw0[15])


def _encode(one_hot):
    """The index of the one bit set in ``one_hot``."""
    return Cat(Cat(one_hot[j] for j in range(len(one_hot)) if j >> b & 1).any()
               for b in range(max(1, (len(one_hot) - 1).bit_length())))


class _Fields(data.StructLayout):
    """The fields the checker judges a TLP by, registered on its last beat."""

    def __init__(self):
        super().__init__({"cls": 2, "ro": 1, "length": 10, "bytes_total": 13,
                          "requester": 16, "tag": 10})


def _fields(m, dw0, dw1, dw2):
    """The fields of :class:`_Fields` from the header's DWs 0..2 (lane order)."""
    f = Signal(_Fields())
    byte_count = Cat(dw1[24:32], dw1[16:20])                        # completion: Byte Count[11:0]
    cls = tlp_class(dw0)
    tag_request = Cat(dw1[16:24], dw0[11], dw0[15])                 # request: Tag[7:0], T8, T9
    m.d.comb += [
        f.cls.eq(cls),
        f.ro.eq(dw0[21]),                                           # Attr[1]
        f.length.eq(Cat(dw0[24:32], dw0[16:18])),
        f.bytes_total.eq(Mux(byte_count == 0, 4096, byte_count)),
        f.requester.eq(Cat(dw2[8:16], dw2[0:8])),                   # completion: Requester ID
        f.tag.eq(Mux(cls == CPL, _cpl_tag(dw0, dw2), tag_request)),
    ]
    return f


class OrderChecker(wiring.Component):
    """Watches one TLP stream beat by beat: ``valid`` marks a beat taken
    (the stream's valid and ready), ``stamp`` is read on a TLP's first beat.

    Outputs: ``violations`` (TLPs that made at least one illegal pass) and
    ``by_cell`` (per cell of :data:`CELLS`), the first violation's
    ``first_stamp``, ``first_tag`` and ``first_cell`` (valid once
    ``first_valid``), ``irq`` (set by a violation, held until
    ``irq_clear``), ``stamp_errors`` and ``tlps_checked``.
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

        known = self._write_table(m, txns, look, v1 & (f.cls == CPL), f)
        passed_posted, in_window = self._posted(m, v1 & (f.cls == P), s1)
        same = Signal()
        m.d.comb += same.eq(known.valid & (known.requester == f.requester))
        cell = Signal(2)
        bad = Signal()
        with m.If(f.cls == P):
            m.d.comb += [bad.eq(passed_posted & in_window & ~f.ro), cell.eq(A2A)]
        with m.Elif(f.cls == NP):
            m.d.comb += [bad.eq(passed_posted), cell.eq(B2A)]
        with m.Elif(passed_posted & ~f.ro):
            m.d.comb += [bad.eq(1), cell.eq(D2A)]
        with m.Else():
            m.d.comb += [bad.eq(same & (f.bytes_total > known.byte_count)), cell.eq(D5B)]

        # --- stage 2: the verdict, registered; the counters --------------------------------
        v2, bad2, cell2 = Signal(), Signal(), Signal(2)
        stamp2, tag2, stamp_error2 = Signal(self.stamp_bits), Signal(10), Signal()
        m.d.sync += [v2.eq(v1), bad2.eq(v1 & bad), stamp_error2.eq(v1 & (f.cls == P) & ~in_window)]
        with m.If(v1):
            m.d.sync += [cell2.eq(cell), stamp2.eq(s1), tag2.eq(f.tag)]
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
        """The posted indices out: ``p_low`` and the bitmap above it. ``mark``:
        a posted TLP with ``stamp`` leaves. Returns (an earlier posted TLP is
        still inside, ``stamp`` is within the window)."""
        n = self.stamp_bits
        p_low = Signal(n)
        out_above = Signal(self.window)          # bit j: posted index p_low + j is out (never bit 0)
        ahead = Signal(n)
        m.d.comb += ahead.eq(stamp - p_low)
        passed_posted = Signal()
        m.d.comb += passed_posted.eq((ahead != 0) & ~ahead[-1])
        in_window = Signal()
        m.d.comb += in_window.eq(ahead < self.window)
        # p_low itself leaves: p_low and the run of indices out above it go
        ones = Cat(out_above | 1, Const(0, 1))
        first_in = Signal(self.window + 1)     # one-hot: the lowest index above the run
        m.d.comb += first_in.eq(~ones & (ones + 1))
        run = Signal(range(self.window + 1))
        m.d.comb += run.eq(_encode(first_in))
        with m.If(mark & in_window):
            with m.If(ahead == 0):
                m.d.sync += [p_low.eq(p_low + run), out_above.eq(ones >> run)]
            with m.Else():
                m.d.sync += out_above.eq(out_above | (Const(1, self.window) << ahead[:self.window.bit_length() - 1]))
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

    def _write_table(self, m, txns, look, write, f):
        """Writes the completion of stage 1 (``write``) and returns the entry
        its read found, with the write forwarded: at 128 bits and wider the
        next TLP's read is issued in the same cycle as this write and sees
        the entry before it. A final completion (Byte Count within its
        payload) closes the entry."""
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
        known = Signal(_Txn())
        m.d.comb += known.eq(Mux(forward, written, look.data))
        return known

class CheckedQueues(wiring.Component):
    """:class:`~tlpoe.rtl.classq.ClassQueues` with an :class:`OrderChecker`
    on its egress: the queues' ports, and the checker's ports prefixed
    ``check_`` (its ``irq_clear`` input and every output). The unit the
    ordering testbench proves, the test-only ``reorder_illegally`` arbiter
    included."""

    def __init__(self, width, **queue_kw):
        from .classq import ClassQueues
        self.queues = ClassQueues(width, **queue_kw)
        self.checker = OrderChecker(width, stamp_bits=self.queues.stamp_bits)
        members = exposed_members(self.queues)
        members.update(exposed_members(self.checker, self._CHECK_NAMES))
        for name in ("valid", "beat", "stamp"):
            del members[name]
        super().__init__(members)

    _CHECK_NAMES = {name: f"check_{name}" for name in (
        "irq_clear", "violations", "by_cell", "first_stamp", "first_tag", "first_cell",
        "first_valid", "irq", "stamp_errors", "tlps_checked")}

    def elaborate(self, platform):
        m = Module()
        m.submodules.queues = queues = self.queues
        m.submodules.checker = checker = self.checker
        forward(m, self, queues)
        m.d.comb += [
            checker.valid.eq(queues.tlp_out.valid & queues.tlp_out.ready),
            checker.beat.eq(queues.tlp_out.payload),
            checker.stamp.eq(queues.tlp_out_stamp),
            checker.irq_clear.eq(self.check_irq_clear),
        ]
        for name in self._CHECK_NAMES:
            if name != "irq_clear":
                m.d.comb += getattr(self, f"check_{name}").eq(getattr(checker, name))
        return m
