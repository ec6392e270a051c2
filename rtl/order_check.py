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


class OrderChecker(wiring.Component):
    """Watches one TLP stream beat by beat: ``valid`` marks a beat taken
    (the stream's valid and ready), ``stamp`` is read on a TLP's first beat.

    Outputs: ``violations`` (TLPs that made at least one illegal pass) and
    ``by_cell`` (per cell of :data:`CELLS`), the first violation's
    ``first_stamp``, ``first_tag`` and ``first_cell`` (valid once
    ``first_valid``), ``irq`` (set by a violation, held until
    ``irq_clear``), ``stamp_errors`` and ``tlps_checked``.
    """

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
        W, D = self.width, self.width // 32
        n = self.stamp_bits

        # --- the header: DWs 0..2, from the beats they arrive in --------------------------
        first = Signal(init=1)
        index = Signal(range(3 + 1))            # beat number within the TLP, saturating
        held = [Signal(32, name=f"dw{i}") for i in range(3)]
        stamp_held = Signal(n)
        dws = []
        for i in range(3):
            lane = self.beat.data[32 * (i % D):32 * (i % D + 1)]
            here = self.valid & (index == i // D)
            dws.append(Mux(here, lane, held[i]))
            with m.If(here):
                m.d.sync += held[i].eq(lane)
        with m.If(self.valid):
            m.d.sync += first.eq(self.beat.last)
            with m.If(self.beat.last):
                m.d.sync += index.eq(0)
            with m.Elif(index != 3):
                m.d.sync += index.eq(index + 1)
            with m.If(first):
                m.d.sync += stamp_held.eq(self.stamp)
        stamp = Signal(n)
        m.d.comb += stamp.eq(Mux(first, self.stamp, stamp_held))
        dw0, dw1, dw2 = dws
        done = Signal()                          # the TLP's last beat: judge it
        m.d.comb += done.eq(self.valid & self.beat.last)

        cls = Signal(2)
        m.d.comb += cls.eq(tlp_class(dw0))
        ro = dw0[21]                            # Attr[1]
        length = Cat(dw0[24:32], dw0[16:18])
        byte_count = Cat(dw1[24:32], dw1[16:20])        # completion: Byte Count[11:0]
        bytes_total = Signal(13)
        m.d.comb += bytes_total.eq(Mux(byte_count == 0, 4096, byte_count))
        requester = Cat(dw2[8:16], dw2[0:8])            # completion: Requester ID
        tag = Signal(10)
        tag_request = Cat(dw1[16:24], dw0[11], dw0[15]) # request: Tag[7:0], T8, T9
        tag_cpl = Cat(dw2[16:24], dw0[11], dw0[15])
        m.d.comb += tag.eq(Mux(cls == CPL, tag_cpl, tag_request))

        # --- posted indices out: p_low and the bitmap above it -------------------------------
        p_low = Signal(n)
        out_above = Signal(self.window)          # bit j: posted index p_low + j is out
        ahead = Signal(n)
        m.d.comb += ahead.eq(stamp - p_low)
        passed_posted = Signal()                 # an earlier posted TLP is still inside
        m.d.comb += passed_posted.eq((ahead != 0) & ~ahead[-1])
        in_window = Signal()
        m.d.comb += in_window.eq(ahead < self.window)
        marked = Signal(self.window)
        m.d.comb += marked.eq(out_above | (Const(1, self.window) << ahead[:self.window.bit_length() - 1]))
        run = Signal(range(self.window + 1))     # trailing ones of `marked`: indices now out in a row
        for j in reversed(range(self.window)):
            with m.If(~marked[j]):
                m.d.comb += run.eq(j)
        with m.If(marked.all()):
            m.d.comb += run.eq(self.window)
        with m.If(done & (cls == P)):
            with m.If(~in_window):
                m.d.sync += self.stamp_errors.eq(self.stamp_errors + 1)
            with m.Else():
                m.d.sync += [p_low.eq(p_low + run), out_above.eq(marked >> run)]

        # --- completions of one transaction: Byte Count only falls ----------------------------
        m.submodules.txns = txns = memory.Memory(shape=_Txn(), depth=2 ** self.tag_bits, init=[])
        look = txns.read_port(domain="comb")
        keep = txns.write_port()
        m.d.comb += look.addr.eq(tag[:self.tag_bits])
        known = look.data
        same = Signal()
        m.d.comb += same.eq(known.valid & (known.requester == requester))
        final = Signal()
        m.d.comb += final.eq(bytes_total <= (Mux(length == 0, 1024, length) << 2))
        m.d.comb += [
            keep.addr.eq(tag[:self.tag_bits]),
            keep.en.eq(done & (cls == CPL)),
            keep.data.valid.eq(~final),
            keep.data.requester.eq(requester),
            keep.data.byte_count.eq(bytes_total),
        ]

        # --- the verdict ------------------------------------------------------------------
        cell = Signal(2)
        bad = Signal()
        with m.If(cls == P):
            m.d.comb += [bad.eq(passed_posted & in_window & ~ro), cell.eq(A2A)]
        with m.Elif(cls == NP):
            m.d.comb += [bad.eq(passed_posted), cell.eq(B2A)]
        with m.Elif(passed_posted & ~ro):
            m.d.comb += [bad.eq(1), cell.eq(D2A)]
        with m.Else():
            m.d.comb += [bad.eq(same & (bytes_total > known.byte_count)), cell.eq(D5B)]
        with m.If(done):
            m.d.sync += self.tlps_checked.eq(self.tlps_checked + 1)
            with m.If(bad):
                m.d.sync += [self.violations.eq(self.violations + 1), self.irq.eq(1)]
                for k in range(len(CELLS)):
                    with m.If(cell == k):
                        m.d.sync += self.by_cell[k].eq(self.by_cell[k] + 1)
                with m.If(~self.first_valid):
                    m.d.sync += [self.first_valid.eq(1), self.first_stamp.eq(stamp),
                                 self.first_tag.eq(tag), self.first_cell.eq(cell)]
        with m.If(self.irq_clear & ~(done & bad)):
            m.d.sync += self.irq.eq(0)
        return m


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
