"""Ordering checker of one queue: every TLP that leaves is judged against
every TLP that arrived before it and is still inside, by the whole table of
:mod:`tlpoe.models.ordering`.

Only two kinds of earlier TLP can make a pass illegal: posted requests
(A2a, B2a, D2a) and completions (D5b). The checker watches the queue's
ingress (``in_*``) and keeps the posted TLPs inside in one ring and the
completions in another, each TLP at its index among its kind (the first
posted TLP is 0, the next 1, ...) modulo ``window``: per position a bit
(inside) and the transaction's Requester ID (and, for a completion, its
Tag). At the egress (``out_*``) each TLP leaves with two stamps from the
queue (:class:`~tlpoe.rtl.queues.classq.ClassQueues` ``out_posted`` and
``out_cpls``): the posted TLPs and the completions that arrived before it
(a posted TLP's own index; a completion's). The earlier posted TLPs still
inside are then the positions of the posted ring from the oldest possible
one up to its stamp, the earlier completions likewise, and it is compared
with all of them at once:

* an earlier **posted** TLP passed is illegal (A2a, B2a, D2a by the
  leaving TLP's class) unless the leaving TLP is a posted request or a
  completion with Relaxed Ordering (A2b, D2b), a completion of an I/O or
  Configuration Write (D2b), or has ID-Based Ordering and its own ID
  (Requester ID of a request, Completer ID of a completion) differs from
  the posted TLP's Requester ID (A2b, B2b, D2b);
* an earlier **completion** passed by a completion of the same
  transaction (Requester ID, Tag) is illegal (D5b): partial completions
  stay in order, the final one included;
* every other pass is legal (A3, A5, B3, B5, D3, D5a).

Non-posted TLPs may wait any time (A3 and D3 let everything pass them):
they take no position. ``window`` bounds how many later posted TLPs may
pass a posted TLP still inside (and later completions a completion): a
queue whose classes are FIFOs, as ClassQueues', never has more of a kind
inside than it holds. An arrival onto a position still inside replaces it
(``window_errors``); a posted TLP or completion that leaves with a stamp
whose position holds nothing inside is not judged (``stamp_errors``).

D2b's third case needs the request a completion answers. The non-posted
requests of the opposite direction (``req_*``) go into a per-tag table in
block RAM (``2**tag_bits`` entries: a valid bit, whether the request is an
I/O or Configuration Write, its Requester ID). A request replaces its
tag's entry if it is such a write (another requester's write there is a
``write_collisions``), or if the entry is unused or its requester's (the
earlier request of that tag is then complete). A completion finds its
request by Tag and Requester ID.

Costs (``window`` W, ``tag_bits`` T): the posted ring 17 flip-flops per
position and a 16-bit comparison, the completion ring 27 and a 26-bit
comparison, 2 to 3 more per position in the pipeline; two block RAMs of
``2**T`` x 18 bits (one read port each: the egress's lookup and the
requests' read-modify-write). At W = 64 (the receive queues of 32 TLPs per
class): about 3,000 flip-flops and 2,500 LUTs.

Timing: the stream inputs are registered before any logic
(``INPUT_STAGES``, 1), so the checker can be placed a register's hop from
the queues it watches; the times below count from the registered beat,
one cycle after the beat is taken. A TLP whose last beat is taken in
cycle ``c`` is judged in ``verdict`` (valid in ``verdict_valid``, in
egress order) in cycle ``c + latency - 1`` and in the counters from
``c + latency`` on (6). An ingress TLP is inside from three cycles after
its (registered) last beat (its kind registered, then
the ring's write enables, then the position); a TLP may leave from the
cycle after its last beat in, and the rings are read for it two cycles
after its last beat out, so every TLP that came in before it (itself
included) is inside by then. A request's table entry is written three
cycles after its last beat. One TLP per cycle is judged at every width;
the checker never holds a stream back. The model twin is
:class:`tlpoe.models.ordering.OrderMonitor`: same verdicts, same counters.
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ...models.order_cycles import INPUT_STAGES, LATENCY
from ...models.ordering import CHECK_CELLS
from ..streams import TlpBeat, check_width
from ..tlp_header import CPL, NP, P, TlpHeader

__all__ = ["CELLS", "OrderChecker"]

#: The cells the checker flags, in the order of ``by_cell`` and ``verdict``'s bits.
CELLS = CHECK_CELLS
A2A, B2A, D2A, D5B = range(4)


class _Fields(data.StructLayout):
    """What a TLP is judged by (:class:`~tlpoe.models.ordering.OrderFields`)."""

    def __init__(self):
        super().__init__({"cls": 2, "ro": 1, "ido": 1, "writes": 1, "own": 16,
                          "requester": 16, "tag": 10})


class _Request(data.StructLayout):
    """An entry of the per-tag table."""

    def __init__(self):
        super().__init__({"valid": 1, "writes": 1, "requester": 16})


def _fields(m, dws, name):
    """The fields of :class:`_Fields` from the header's DWs 0..2 (lane order)."""
    f = Signal(_Fields(), name=name)
    hdr = TlpHeader(Cat(*dws))
    cpl = hdr.is_completion
    m.d.comb += [
        f.cls.eq(hdr.cls), f.ro.eq(hdr.ro), f.ido.eq(hdr.ido),
        f.writes.eq(hdr.writes_io_or_config),
        f.own.eq(hdr.requester_id),          # DW 1: Requester ID, or a completion's Completer ID
        f.requester.eq(Mux(cpl, hdr.completion_requester, hdr.requester_id)),
        f.tag.eq(Mux(cpl, hdr.completion_tag, hdr.request_tag)),
    ]
    return f


def _tap(m, width, valid, beat, name, arrival=None):
    """A stream watched beat by beat (``valid``: a beat taken): DWs 0..2 of
    each TLP as its last beat goes by (``dws``, with ``done``), the lanes
    of the beat (``lane``), the beat's index in its TLP (``index``, up to
    3), and ``arrival`` as it was on the TLP's first beat."""
    D = width // 32
    t = SimpleNamespace(first=Signal(init=1, name=f"{name}_first"),
                        index=Signal(range(3 + 1), name=f"{name}_index"),
                        held=[Signal(32, name=f"{name}_dw{i}") for i in range(3)],
                        lane=lambda i: beat.data[32 * (i % D):32 * (i % D + 1)])
    t.dws = []
    for i in range(3):
        here = valid & (t.index == i // D)
        t.dws.append(Mux(here, t.lane(i), t.held[i]))
        with m.If(here):
            m.d.sync += t.held[i].eq(t.lane(i))
    with m.If(valid):
        m.d.sync += t.first.eq(beat.last)
        with m.If(beat.last):
            m.d.sync += t.index.eq(0)
        with m.Elif(t.index != 3):
            m.d.sync += t.index.eq(t.index + 1)
    if arrival is not None:
        held = Signal.like(arrival, name=f"{name}_arrival")
        with m.If(valid & t.first):
            m.d.sync += held.eq(arrival)
        t.arrival = Mux(t.first, arrival, held)
    t.done = valid & beat.last
    return t


class OrderChecker(wiring.Component):
    """Watches one queue: ``in_valid``/``in_beat`` its ingress (beats
    taken), ``out_valid``/``out_beat`` its egress with ``out_posted`` and
    ``out_cpls`` (the TLP's stamps, read on its first beat), and
    ``req_valid``/``req_beat`` the opposite direction's requests (for D2b).

    Outputs: ``verdict_valid`` for one cycle per TLP judged, with
    ``verdict`` (a bit per cell of :data:`CELLS` it broke); ``violations``
    (TLPs that broke at least one cell), ``by_cell``, the first
    violation's ``first_stamp`` (its ``out_posted``), ``first_tag`` and
    ``first_cell`` (the lowest cell it broke; valid once ``first_valid``),
    ``irq`` (set by a violation, held until ``irq_clear``),
    ``tlps_checked``, ``window_errors``, ``stamp_errors`` and
    ``write_collisions``. No backpressure."""

    #: Registers on the stream inputs before any of the checker's logic.
    INPUT_STAGES = INPUT_STAGES
    #: A TLP whose last beat is taken in cycle ``c`` is in the counters from
    #: cycle ``c + latency`` on (and in ``verdict`` in cycle ``c + latency - 1``).
    latency = LATENCY
    #: Ring positions per copy of the leaving TLP's IDs (the fan-out of each copy).
    GROUP = 16

    def __init__(self, width, *, window=64, stamp_bits=16, tag_bits=10):
        check_width(width)
        if not isinstance(window, int) or window < 2 or window & (window - 1):
            raise ValueError(f"window must be a power of two of at least 2, not {window!r}")
        if not isinstance(stamp_bits, int) or not 2 ** (stamp_bits - 1) > window:
            raise ValueError(f"stamp_bits must hold twice the window ({window}), "
                             f"not {stamp_bits!r}")
        if tag_bits not in (8, 10):
            raise ValueError(f"tag_bits must be 8 or 10, not {tag_bits!r}")
        self.width, self.window, self.tag_bits = width, window, tag_bits
        self.stamp_bits = stamp_bits
        super().__init__({
            "in_valid": In(1), "in_beat": In(TlpBeat(width)),
            "out_valid": In(1), "out_beat": In(TlpBeat(width)),
            "out_posted": In(stamp_bits), "out_cpls": In(stamp_bits),
            "req_valid": In(1), "req_beat": In(TlpBeat(width)),
            "irq_clear": In(1),
            "verdict_valid": Out(1), "verdict": Out(len(CELLS)),
            "violations": Out(32),
            "by_cell": Out(data.ArrayLayout(32, len(CELLS))),
            "first_stamp": Out(stamp_bits),
            "first_tag": Out(10),
            "first_cell": Out(2),
            "first_valid": Out(1),
            "irq": Out(1),
            "tlps_checked": Out(32),
            "window_errors": Out(32),
            "stamp_errors": Out(32),
            "write_collisions": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        W = self.window

        # --- ingress: the fields and the kind registered on the last beat; the
        # ring's write enables a cycle later, from registers; the ring written
        # a cycle after that (the fields registered again)
        # --- the taps' inputs registered first (``INPUT_STAGES``): the checker
        # may sit anywhere on the part, a register's hop from the queues it watches
        s = self._staged(m)

        ti = _tap(m, self.width, s.in_valid, s.in_beat, "in")
        fi = _fields(m, ti.dws, "in_fields")
        i1, i2 = Signal(_Fields()), Signal(_Fields())
        p1, c1 = Signal(), Signal()
        m.d.sync += [p1.eq(ti.done & (fi.cls == P)), c1.eq(ti.done & (fi.cls == CPL)),
                     i2.eq(i1)]
        with m.If(ti.done):
            m.d.sync += i1.eq(fi)
        posted = self._ring(m, "p", {"requester": 16}, p1, i2)
        cpls = self._ring(m, "c", {"requester": 16, "tag": 10}, c1, i2)

        # --- the table of requests (D2b) --------------------------------------------------
        m.submodules.requests = table = memory.Memory(shape=_Request(), depth=2 ** self.tag_bits,
                                                      init=[])
        self._requests(m, table, s)

        # --- egress, stage 0: the header and stamps; the completion's request looked up ------
        to = _tap(m, self.width, s.out_valid, s.out_beat, "out",
                  Cat(s.out_posted, s.out_cpls))
        fo = _fields(m, to.dws, "out_fields")
        look = table.read_port()
        tag_beat = 2 // (self.width // 32)
        dw0 = to.lane(0) if tag_beat == 0 else to.held[0]
        m.d.comb += [
            look.en.eq(s.out_valid & (to.index == tag_beat)),
            look.addr.eq(TlpHeader(Cat(dw0, Const(0, 32), to.lane(2))).completion_tag
                         [:self.tag_bits]),
        ]

        # stage 1: the fields and stamps registered on the last beat (the lookup is read now)
        n = self.stamp_bits
        v1, f1 = Signal(), Signal(_Fields())
        sp1, sc1 = Signal(n), Signal(n)
        m.d.sync += v1.eq(to.done)
        with m.If(to.done):
            m.d.sync += [f1.eq(fo), sp1.eq(to.arrival[:n]), sc1.eq(to.arrival[n:])]
        completes_write = (look.data.valid & look.data.writes &
                           (look.data.requester == f1.requester))

        # stage 2: may it pass posted TLPs at all; where its stamps are in each ring
        # (the IDs it is compared by, a copy per group of positions: each copy
        # drives the comparisons of its group, which the placer can keep near
        # it. Each copy also loads in its own cycles of a free-running count,
        # when nothing reads it, so that synthesis cannot merge them into one)
        v2, cls2, ido2, free2 = Signal(), Signal(2), Signal(), Signal()
        groups = -(-W // self.GROUP)
        ids2 = [SimpleNamespace(**{k: Signal(b, name=f"{k}2_{g}")
                                   for k, b in (("own", 16), ("req", 16), ("tag", 10))})
                for g in range(groups)]
        spread = Signal(range(groups))
        if groups > 1:
            m.d.sync += spread.eq(Mux(spread == groups - 1, 0, spread + 1))
        sp2 = Signal(n)
        m.d.sync += v2.eq(v1)
        with m.If(v1):
            m.d.sync += [
                cls2.eq(f1.cls), ido2.eq(f1.ido), sp2.eq(sp1),
                free2.eq(Mux(f1.cls == CPL, f1.ro | completes_write, (f1.cls == P) & f1.ro)),
            ]
        for g, ids in enumerate(ids2):
            with m.If(v1 | ((spread == g) if g else 0)):
                m.d.sync += [ids.own.eq(f1.own), ids.req.eq(f1.requester), ids.tag.eq(f1.tag)]
        earlier_p, here_p = posted.earlier(m, v1, sp1, v1 & (f1.cls == P))
        earlier_c, here_c = cpls.earlier(m, v1, sc1, v1 & (f1.cls == CPL))
        present = Mux(cls2 == P, here_p, Mux(cls2 == CPL, here_c, 1))
        judged = Signal()
        m.d.comb += judged.eq(v2 & present)
        with m.If(v2 & ~present):
            m.d.sync += self.stamp_errors.eq(self.stamp_errors + 1)

        # stage 3: each position compared, registered
        v3, cls3, ido3, free3 = Signal(), Signal(2), Signal(), Signal()
        sp3, tag3 = Signal(n), Signal(10)
        p3, differs3, c3, same3 = Signal(W), Signal(W), Signal(W), Signal(W)
        m.d.sync += [v3.eq(judged), cls3.eq(cls2), ido3.eq(ido2), free3.eq(free2),
                     sp3.eq(sp2), tag3.eq(ids2[0].tag), p3.eq(earlier_p), c3.eq(earlier_c)]
        for j in range(W):
            pe, ce, ids = posted.entries[j], cpls.entries[j], ids2[j // self.GROUP]
            m.d.sync += [differs3[j].eq(pe.requester != ids.own),
                         same3[j].eq((ce.requester == ids.req) & (ce.tag == ids.tag))]
        posted_bad = ~free3 & (p3 & ~Mux(ido3, differs3, 0)).any()
        d5b = (cls3 == CPL) & (c3 & same3).any()

        # stage 4: the verdict; the counters a cycle later
        v4, cell4 = Signal(), Signal(len(CELLS))
        sp4, tag4 = Signal(n), Signal(10)
        m.d.sync += [v4.eq(v3), sp4.eq(sp3), tag4.eq(tag3),
                     cell4.eq(Cat(posted_bad & (cls3 == P), posted_bad & (cls3 == NP),
                                  posted_bad & (cls3 == CPL), d5b))]
        m.d.comb += [self.verdict_valid.eq(v4), self.verdict.eq(Mux(v4, cell4, 0))]
        bad = Signal()
        m.d.comb += bad.eq(v4 & (cell4 != 0))
        first = Signal(2)
        for c in reversed(range(len(CELLS))):
            with m.If(cell4[c]):
                m.d.comb += first.eq(c)
        with m.If(v4):
            m.d.sync += self.tlps_checked.eq(self.tlps_checked + 1)
        with m.If(bad):
            m.d.sync += [self.violations.eq(self.violations + 1), self.irq.eq(1)]
            for c in range(len(CELLS)):
                with m.If(cell4[c]):
                    m.d.sync += self.by_cell[c].eq(self.by_cell[c] + 1)
            with m.If(~self.first_valid):
                m.d.sync += [self.first_valid.eq(1), self.first_stamp.eq(sp4),
                             self.first_tag.eq(tag4), self.first_cell.eq(first)]
        with m.If(self.irq_clear & ~bad):
            m.d.sync += self.irq.eq(0)
        overwrote = Signal()                # registered: the count's adder a cycle later
        m.d.sync += overwrote.eq(posted.overwrite | cpls.overwrite)
        with m.If(overwrote):
            m.d.sync += self.window_errors.eq(self.window_errors + 1)
        return m

    def _ring(self, m, name, fields, coming, source):
        """The TLPs of one kind inside: ``W`` positions, each TLP at its index
        (``count`` of its kind before it) modulo ``W``. ``coming``: one
        arrives now, its fields in ``source`` from the next cycle, when
        its position is written. Returns a namespace: ``entries``,
        ``overwrite`` (an arrival onto a position still inside) and
        ``earlier(m, valid, stamp, leaving)``, which, given a stamp in
        cycle ``t``, returns in cycle ``t + 1`` the mask of positions inside
        whose TLPs came before the stamp, and whether the stamp's own
        position is inside; with ``leaving``, that position is freed at the
        end of cycle ``t + 1``.

        The write is decided a cycle ahead: ``we``, one bit per position,
        is a register (the write pointer kept one-hot beside the count), so
        that neither the class decode nor a pointer decode reaches the
        entries' enables."""
        W, n = self.window, self.stamp_bits
        k = (W - 1).bit_length()
        ones = (1 << W) - 1
        r = SimpleNamespace(overwrite=Signal(name=f"{name}_overwrite"))
        layout = data.StructLayout(fields)
        r.entries = [Signal(layout, name=f"{name}_entry{j}") for j in range(W)]
        inside = Signal(W, name=f"{name}_inside")
        count = Signal(n, name=f"{name}_count")         # of this kind in so far
        wp = count[:k]                                  # the next one's position
        at = Signal(W, init=1, name=f"{name}_at")       # wp, one-hot
        ge_wp = Signal(W, init=ones, name=f"{name}_ge_wp")     # positions >= wp
        we = Signal(W, name=f"{name}_we")               # written now (one-hot or 0)
        writing = Signal(name=f"{name}_writing")        # we != 0
        clear = Signal(W, name=f"{name}_clear")         # freed now
        after = Cat(at[W - 1], at[:W - 1])              # the position after wp
        m.d.sync += [writing.eq(coming),
                     we.eq(Mux(coming, Mux(writing, after, at), 0)),
                     inside.eq((inside & ~clear) | we)]
        m.d.comb += r.overwrite.eq((inside & we).any())
        with m.If(writing):
            m.d.sync += [count.eq(count + 1), at.eq(after),
                         ge_wp.eq(Mux(at[W - 1], ones, ge_wp & ~we))]
        for j in range(W):
            with m.If(we[j]):
                m.d.sync += r.entries[j].eq(Cat(*(getattr(source, f) for f in fields)))

        def earlier(m, valid, stamp, leaving):
            # stage 1 (``stamp`` given): how far the stamp is behind the count,
            # the positions below the stamp's, the one to free; stage 2: the mask
            behind = Signal(n, name=f"{name}_behind")
            m.d.comb += behind.eq(count - stamp)
            zero1, far1, near1 = (Signal(name=f"{name}_{x}") for x in ("zero", "far", "near"))
            inc = Signal(name=f"{name}_inc")             # one more arrives between the stages
            lt, pos = Signal(W, name=f"{name}_lt"), Signal(k, name=f"{name}_pos")
            with m.If(valid):
                m.d.sync += [zero1.eq(behind == 0), far1.eq(behind >= W),
                             near1.eq(behind == W - 1), lt.eq((Const(1, W) << stamp[:k]) - 1),
                             pos.eq(stamp[:k])]
            # the position is freed whether or not it was taken (no path from
            # the bit read to the ring's update)
            m.d.sync += [inc.eq(writing),
                         clear.eq(Mux(leaving, Const(1, W) << stamp[:k], 0))]
            # nothing came after the stamp: every TLP inside is earlier; W or
            # more came after it: none inside is; else the positions from wp
            # (the oldest possible) up to the stamp's, wrapping
            all_, none = zero1 & ~inc, far1 | (near1 & inc)
            wraps = pos < wp
            mask = Signal(W, name=f"{name}_earlier")
            m.d.comb += mask.eq(Mux(all_, ones, Mux(none, 0,
                                                    Mux(wraps, ge_wp | lt, ge_wp & lt))) & inside)
            return mask, inside.bit_select(pos, 1)
        r.earlier = earlier
        return r

    def _staged(self, m):
        """The stream inputs (``in_*``, ``out_*`` with the stamps, ``req_*``)
        a register later: ``INPUT_STAGES`` cycles on every path into the
        checker, none of its logic before a register. ``irq_clear`` is not
        staged."""
        s = SimpleNamespace()
        for name in ("in_valid", "in_beat", "out_valid", "out_beat", "out_posted",
                     "out_cpls", "req_valid", "req_beat"):
            port = getattr(self, name)
            staged = Signal(port.shape(), name=f"{name}_r")
            m.d.sync += staged.eq(port)
            setattr(s, name, staged)
        return s

    def _requests(self, m, table, s):
        """The opposite direction's non-posted requests into the per-tag
        table: read, then written a cycle later (a write in that cycle to
        the tag read is forwarded)."""
        tr = _tap(m, self.width, s.req_valid, s.req_beat, "req")
        fr = _fields(m, tr.dws, "req_fields")
        r1_valid, r1 = Signal(), Signal(_Fields())
        m.d.sync += r1_valid.eq(tr.done & (fr.cls == NP))
        with m.If(tr.done):
            m.d.sync += r1.eq(fr)
        rd, wr = table.read_port(), table.write_port()
        m.d.comb += [rd.en.eq(r1_valid), rd.addr.eq(r1.tag[:self.tag_bits])]
        r2_valid, r2 = Signal(), Signal(_Fields())
        forward, written = Signal(), Signal(_Request())
        m.d.sync += [r2_valid.eq(r1_valid), r2.eq(r1),
                     forward.eq(wr.en & (wr.addr == rd.addr)), written.eq(wr.data)]
        held = Signal(_Request())
        m.d.comb += held.eq(Mux(forward, written, rd.data))
        mine = held.requester == r2.requester
        m.d.comb += [
            wr.addr.eq(r2.tag[:self.tag_bits]),
            wr.en.eq(r2_valid & (r2.writes | ~held.valid | mine)),
            wr.data.valid.eq(1), wr.data.writes.eq(r2.writes),
            wr.data.requester.eq(r2.requester),
        ]
        collided = Signal()                 # registered: the count's adder a cycle later
        m.d.sync += collided.eq(r2_valid & r2.writes & held.valid & held.writes & ~mine)
        with m.If(collided):
            m.d.sync += self.write_collisions.eq(self.write_collisions + 1)
