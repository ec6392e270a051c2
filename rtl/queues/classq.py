"""Per-class transmit queues with an ordering-aware arbiter and credit gates.

Of the PCIe ordering rules (:mod:`tlpoe.models.ordering`) four cells forbid
a later TLP to pass an earlier one: posted after posted (A2a, unless Relaxed
Ordering), non-posted after posted (B2a), completion after posted (D2a,
unless Relaxed Ordering) and completions of one transaction (D5b). Every
other pass is permitted, and two are required: posted requests and
completions must be able to pass blocked non-posted requests (A3, D3), or
the fabric can deadlock. :class:`ClassQueues` keeps one FIFO per class, so
passes happen only between classes, and holds a non-posted request or a
completion until every posted request that arrived before it has left.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from ..streams import DATA_BITS, HDR_BITS, CreditLimit, TlpBeat, check_width, tlp_stream
from ..tlp_header import CLASSES, CPL, NP, P, TlpHeader

__all__ = ["ClassQueues"]

#: The largest non-posted TLP: a 4-DW header and an atomic's 32 bytes of operands.
NP_MAX_BYTES = 48
POLICIES = ("oldest", "round_robin")


class _Desc(data.StructLayout):
    def __init__(self, stamp_bits, carry, depth):
        super().__init__({"stamp": stamp_bits, "cpls": stamp_bits, "free": 1, "data_credits": 9,
                          "arrival": stamp_bits, "beats": range(depth + 1), "one": 1,
                          **({"carried": stamp_bits} if carry else {})})


class _HeadFIFO(wiring.Component):
    """A descriptor queue: :class:`~amaranth.lib.fifo.SyncFIFOBuffered`'s
    interface and timing (``depth`` entries, the head in a register,
    ``r_rdy`` two cycles after the write into an empty queue), built as an
    unbuffered :class:`~amaranth.lib.fifo.SyncFIFO` of ``depth - 1``
    entries (asynchronous read, LUT RAM) and the head register, so that
    the entry behind the head is visible too: ``next_data``, valid with
    ``next_rdy``. ``load``: the head register takes ``next_data`` this
    cycle (it is empty or read now, and an entry is behind it)."""

    def __init__(self, width, depth):
        if depth < 2:
            raise ValueError(f"depth must be at least 2, not {depth!r}")
        self.width, self.depth = width, depth
        super().__init__({
            "w_en": In(1), "w_data": In(width), "w_rdy": Out(1),
            "r_en": In(1), "r_data": Out(width), "r_rdy": Out(1),
            "level": Out(range(depth + 1)),
            "next_data": Out(width), "next_rdy": Out(1), "load": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = fifo.SyncFIFO(width=self.width, depth=self.depth - 1)
        m.d.comb += [
            inner.w_en.eq(self.w_en), inner.w_data.eq(self.w_data), self.w_rdy.eq(inner.w_rdy),
            self.next_data.eq(inner.r_data), self.next_rdy.eq(inner.r_rdy),
            self.load.eq(inner.r_rdy & (~self.r_rdy | self.r_en)),
            inner.r_en.eq(self.load),
            self.level.eq(inner.level + self.r_rdy),
        ]
        with m.If(self.load):
            m.d.sync += [self.r_data.eq(inner.r_data), self.r_rdy.eq(1)]
        with m.Elif(self.r_en):
            m.d.sync += self.r_rdy.eq(0)
        return m


def _csa(a, b, c, bits):
    """Three operands to two (sum, carries) with the same total mod 2**bits."""
    return (a ^ b ^ c)[:bits], Cat(Const(0, 1), ((a & b) | (a & c) | (b & c))[:bits - 1])


def _room(m, limit, consumed, bits, need, const):
    """PCIe's flow-control test: whether ``left = (limit - consumed - need -
    const) mod 2**bits`` is at most ``2**(bits-1)`` (enough credits for
    ``need + const``; ``need`` a value or None, ``const`` an int). As
    ``limit + ~consumed + ~need + (2 - const)``, carry-save to two operands,
    then one adder."""
    x = limit[:bits]
    y = (~consumed)[:bits]
    z = Const(0, bits)
    if need is not None:
        wide = Signal(bits)
        m.d.comb += wide.eq(need)
        z = ~wide
    k = Const((1 + (need is not None) - const) % 2 ** bits, bits)
    s1, c1 = _csa(x, y, z, bits)
    s2, c2 = _csa(s1, c1, k, bits)
    left = Signal(bits)
    m.d.comb += left.eq(s2 + c2)
    return ~left[bits - 1] | (left == 1 << (bits - 1))


def _of_class(cls, values):
    """``values[cls]`` as multiplexers. (An ``Array`` becomes a ``case``
    in an ``always @*`` block, which Icarus evaluates only once an input
    changes: registers that keep their initial values, such as the FIFOs'
    room, would leave it X.)"""
    return Mux(cls == 0, values[0], Mux(cls == 1, values[1], values[2]))


class ClassQueues(wiring.Component):
    """Three queues, posted (P), non-posted (NP) and completion (CPL), between
    a TLP ingress and a TLP egress, with an arbiter that reorders only where
    the PCIe ordering rules allow.

    * **Queues.** Each TLP goes whole into its class's beat FIFO
      (``depth`` beats, which must hold the largest TLP) through a register
      stage (``tlp_in.ready`` never depends on the beat offered), and with
      its last beat a descriptor (``tlps`` per class): its *stamp*, the
      number of posted TLPs that arrived before it, and its beats counted.
      A TLP can leave once it is all in.
    * **Arbiter.** Between TLPs it picks one class whose head is
      *eligible*, by ``policy``: ``"oldest"`` (the head that arrived first,
      so TLPs leave in arrival order unless a head is held by credits or by
      ``class_enable``) or ``"round_robin"`` (classes in turn, which
      reorders whenever it may). Eligible: P always (posted requests never wait for other
      classes); NP and CPL only when every posted TLP that arrived before
      them has started to leave (counted exactly, however long it waits:
      each posted TLP's grant releases the TLPs that arrived right after
      it), or, for a completion with Relaxed Ordering that arrived while
      ``ro_enable`` was set, at once (D2b). Within a class the FIFO keeps
      arrival order.
      A head must also have credits (below).
    * **Credits.** While ``credits_enable`` is set, a head leaves only if its
      class's ``credit_limit`` (cumulative, as the peer advertises) covers
      one more header and its data credits (16-byte units) under PCIe's
      modular rule; ``credits_consumed`` counts what was sent. With
      ``credits_enable`` clear credits are not checked (and still counted).
      ``credit_stall_cycles`` counts, per class, cycles in which the head
      waited for credits only. The check is a register computed a cycle
      ahead; where the head is about to change (granted, or not there
      yet), it assumes a TLP of ``max_credits`` data credits (the largest
      the source sends), which can hold a head for one cycle when the
      credits are nearly used up.
    * ``tlp_out`` carries each TLP's stamp in its payload (``stamp``, on the
      first beat: for the packer's prefix and an
      :class:`~tlpoe.rtl.queues.order_check.OrderChecker`). With
      ``carry_stamp``, ``tlp_in`` has a ``stamp`` too, and the stamp out is
      the one that came in with the TLP (a receiver keeps the sender's
      stamps). ``out_posted`` and ``out_cpls``, beside ``tlp_out``'s
      beats: the posted TLPs and the completions that arrived at these
      queues before it (a posted TLP's own index, a completion's; modulo
      ``2**stamp_bits``), for an
      :class:`~tlpoe.rtl.queues.order_check.OrderChecker` on the queues.
    * ``class_enable`` (per class, default all set): a class whose bit is
      clear starts no TLP (a consumer that cannot take non-posted requests
      now); the others pass it where the rules allow.
    * ``np_room``: the NP queue takes one more non-posted TLP of any size
      (``NP_MAX_BYTES``) without stalling ``tlp_in``; a source that offers
      non-posted TLPs only while it is set never blocks posted TLPs behind
      them (ingress head-of-line blocking).
    * ``reorder_illegally`` (elaboration parameter, tests only): NP and CPL
      heads ignore the posted stamps, so the arbiter makes illegal passes
      (B2a, D2a) whenever posted traffic waits; an ordering checker must
      catch them.

    A TLP is granted (descriptor popped, credits charged, ``tlps_sent``
    counted) when ``tlp_out`` is idle or while the previous TLP's last beat
    leaves (known from the beats counted, a register); its first beat is
    offered from the next cycle (a registered stage between the arbiter and
    the egress, so that the credit check and the arbitration do not reach
    the beat FIFOs' read). The offer then stands until taken, as the stream
    rules require.

    Throughput: one beat per cycle, TLPs back to back across classes.
    Latency through empty queues: a TLP's first beat is offered 4 cycles
    after the cycle its last beat is taken.
    """

    def __init__(self, width, *, depth=64, tlps=16, stamp_bits=16, policy="round_robin",
                 carry_stamp=False, max_credits=256, reorder_illegally=False):
        check_width(width)
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"depth must be at least 2 beats, not {depth!r}")
        if not isinstance(tlps, int) or tlps < 2:
            raise ValueError(f"tlps must be at least 2, not {tlps!r}")
        if not isinstance(stamp_bits, int) or not 2 ** (stamp_bits - 1) > 3 * tlps:
            raise ValueError(f"stamp_bits must hold twice the TLPs queued (3 x {tlps}), "
                             f"not {stamp_bits!r}")
        if not isinstance(max_credits, int) or not 1 <= max_credits <= 256:
            raise ValueError(f"max_credits must be 1..256 (16-byte data credits of the "
                             f"largest TLP), not {max_credits!r}")
        self.width, self.depth, self.tlps = width, depth, tlps
        self.max_credits = max_credits
        self.stamp_bits = stamp_bits
        self.policy, self.carry_stamp = policy, bool(carry_stamp)
        self.np_beats = -(-NP_MAX_BYTES * 8 // width)
        if depth < self.np_beats:
            raise ValueError(f"depth must hold the largest non-posted TLP "
                             f"({self.np_beats} beats), not {depth!r}")
        self.reorder_illegally = bool(reorder_illegally)
        super().__init__({
            "tlp_in": In(tlp_stream(width, stamp_bits if carry_stamp else 0)),
            "tlp_out": Out(tlp_stream(width, stamp_bits)),
            "ro_enable": In(1, init=1),
            "credits_enable": In(1),
            "credit_limit": In(data.ArrayLayout(CreditLimit(), 3)),
            "credits_restart": In(1),       # the peer restarted: nothing consumed
            "credits_consumed": Out(data.ArrayLayout(CreditLimit(), 3)),
            "credit_stall_cycles": Out(data.ArrayLayout(32, 3)),
            "tlps_sent": Out(data.ArrayLayout(32, 3)),
            "class_enable": In(3, init=0b111),
            "np_room": Out(1),
            "out_posted": Out(stamp_bits),
            "out_cpls": Out(stamp_bits),
        })

    def elaborate(self, platform):
        m = Module()
        beat_bits = TlpBeat(self.width).size
        desc_layout = _Desc(self.stamp_bits, self.carry_stamp, self.depth)
        beats, descs = [], []
        for name in CLASSES:
            m.submodules[f"{name}_beats"] = b = fifo.SyncFIFOBuffered(width=beat_bits,
                                                                      depth=self.depth)
            m.submodules[f"{name}_descs"] = d = _HeadFIFO(desc_layout.size, self.tlps)
            beats.append(b)
            descs.append(d)

        # --- ingress: a registered stage, then the beat into its class's FIFO -----------
        # `tlp_in.ready` depends only on this register and the FIFOs, never
        # on the beat offered: the first beat's class is decoded into the
        # register, not on the way to `ready`. A TLP's descriptor is written
        # with its last beat, when its beats are counted: the egress then
        # knows each TLP's length from a register, not from the `last` bit
        # coming out of a FIFO's memory.
        inp = self.tlp_in
        first = Signal(init=1)              # the next beat offered starts a TLP
        cls_held = Signal(2)
        hdr = TlpHeader(inp.payload.data[:32])
        r_valid = Signal()                  # the register holds a beat
        r_beat = Signal(TlpBeat(self.width))    # the stamp (carried) goes into `held`
        r_cls = Signal(2)
        held = Signal(desc_layout)          # the first beat's fields, until the last
        count = Signal(range(self.depth + 1))    # beats of the TLP moved so far
        room = Signal()
        beats_room = [self._has_room(m, b, f"{name}_beats") for b, name in zip(beats, CLASSES)]
        descs_room = [self._has_room(m, d, f"{name}_descs") for d, name in zip(descs, CLASSES)]
        m.d.comb += room.eq(_of_class(r_cls, beats_room) &
                            (~r_beat.last | _of_class(r_cls, descs_room)))
        move = Signal()
        m.d.comb += [move.eq(r_valid & room), inp.ready.eq(~r_valid | room)]
        with m.If(inp.valid & inp.ready):
            cls_now = Mux(first, hdr.cls, cls_held)
            m.d.sync += [
                r_valid.eq(1), r_beat.data.eq(inp.payload.data),
                r_beat.keep.eq(inp.payload.keep), r_beat.last.eq(inp.payload.last),
                r_cls.eq(cls_now), first.eq(inp.payload.last), cls_held.eq(cls_now),
            ]
            with m.If(first):
                m.d.sync += [
                    # a completion with Relaxed Ordering, arriving while
                    # ro_enable is set, waits for no posted TLP (D2b)
                    held.free.eq((cls_now == CPL) & hdr.ro & self.ro_enable),
                    held.data_credits.eq(hdr.data_credits),
                ]
                if self.carry_stamp:
                    m.d.sync += held.carried.eq(inp.payload.stamp)
        with m.Elif(move):
            m.d.sync += r_valid.eq(0)
        with m.If(move):
            m.d.sync += count.eq(Mux(r_beat.last, 0, count + 1))

        p_in = Signal(self.stamp_bits)      # posted TLPs in so far
        n_in = Signal(self.stamp_bits)      # TLPs in so far
        c_in = Signal(self.stamp_bits)      # completions in so far
        desc_in = Signal(desc_layout)
        m.d.comb += [
            desc_in.eq(held),
            desc_in.stamp.eq(p_in),
            desc_in.arrival.eq(n_in),
            desc_in.cpls.eq(c_in),
            desc_in.beats.eq(count + 1),
            desc_in.one.eq(count == 0),          # a single beat: known before the grant
        ]
        # An NP TLP on its way in (beats in the register or the FIFO, its
        # descriptor not yet written) will take a descriptor and up to
        # np_beats beats more than the FIFOs show.
        np_beats, np_descs = beats[NP], descs[NP]
        np_open = Signal()                  # an NP TLP has beats moved, not its last
        with m.If(move & (r_cls == NP)):
            m.d.sync += np_open.eq(~r_beat.last)
        opening = Signal()
        m.d.comb += opening.eq(np_open | (r_valid & (r_cls == NP)))
        m.d.comb += self.np_room.eq(
            Mux(opening, np_descs.level < self.tlps - 1, np_descs.w_rdy) &
            (np_beats.level + Mux(opening, self.np_beats, 0) <= self.depth - self.np_beats))
        for k, (b, d) in enumerate(zip(beats, descs)):
            m.d.comb += [
                b.w_en.eq(move & (r_cls == k)),
                b.w_data.eq(r_beat),
                d.w_en.eq(move & r_beat.last & (r_cls == k)),
                d.w_data.eq(desc_in.as_value()),
            ]
        with m.If(move & r_beat.last):
            m.d.sync += n_in.eq(n_in + 1)
            with m.If(r_cls == P):
                m.d.sync += p_in.eq(p_in + 1)
            with m.If(r_cls == CPL):
                m.d.sync += c_in.eq(c_in + 1)

        heads = [desc_layout(d.r_data) for d in descs]
        heads_free = [h.free for h in heads]

        # --- the posted TLPs each waits for -------------------------------------------------
        # An NP or CPL TLP may leave once every posted TLP that arrived
        # before it has been granted. Those that wait are counted against
        # the latest posted TLP that arrived before them (`tail`, then, once
        # a later posted TLP arrives, an entry of `waits` per posted TLP not
        # granted, oldest first); a posted TLP's grant releases its count
        # into `released`. A class's TLPs are released in their FIFO's
        # order, so its head may leave while `released` is not zero: the
        # arbiter starts from a register, and no count wraps however long
        # a TLP waits.
        granted = Signal()
        pick = Signal(2)
        cb = (self.tlps + 1).bit_length()
        unsent = Signal(range(self.tlps + 2))  # posted TLPs in, not granted yet
        p_grant = Signal()
        m.d.comb += p_grant.eq(granted & (pick == P))
        arrive = Signal()                   # an NP or CPL TLP that waits for no posted TLP
        arrive_k = [Signal(name=f"arrive_{CLASSES[k]}") for k in range(3)]
        m.d.comb += arrive.eq(move & r_beat.last & (r_cls != P) & ~held.free)
        for k in range(3):
            m.d.comb += arrive_k[k].eq(arrive & (r_cls == k))
        m.submodules.waits = waits = fifo.SyncFIFO(width=2 * cb, depth=self.tlps)
        tail = [Signal(cb, name=f"tail_{CLASSES[k]}") for k in (NP, CPL)]
        released = [Signal(range(self.tlps + 2), name=f"released_{CLASSES[k]}")
                    for k in range(3)]
        # released != 0, a register beside it: the arbiter's order test
        # reads one flip-flop, not an OR of the count's bits
        released_any = [Signal(name=f"released_any_{CLASSES[k]}") for k in range(3)]
        released_any_next = [Signal(name=f"released_any_next_{CLASSES[k]}") for k in range(3)]
        p_arrive = move & r_beat.last & (r_cls == P)
        # Every count is worked out for both outcomes of this cycle's
        # arbitration (a posted TLP granted or not) from registers and the
        # ingress; the grant only picks, at the end.
        m.d.sync += unsent.eq(Mux(p_grant, unsent + p_arrive - 1, unsent + p_arrive))
        # unsent == 0 and unsent == 1 in registers beside the count, each
        # worked out from the count's compares and this cycle's arrival and
        # grant: every test below reads a flip-flop, not the count's bits
        # (the 256-bit Bridge's critical path ran unsent -> == 1 -> the
        # released counts' adders)
        top = (1 << len(unsent)) - 1
        is0, is1 = Signal(init=1, name="unsent_is0"), Signal(name="unsent_is1")
        m.d.sync += [
            is0.eq(Mux(p_grant, Mux(p_arrive, unsent == 0, unsent == 1),
                       Mux(p_arrive, unsent == top, unsent == 0))),
            is1.eq(Mux(p_grant, Mux(p_arrive, unsent == 1, unsent == 2),
                       Mux(p_arrive, unsent == 0, unsent == 1))),
        ]
        le1 = is0 | is1
        still = Signal()                    # a posted TLP not granted after this cycle
        m.d.comb += still.eq(Mux(p_grant, ~le1, ~is0))
        last_out = p_grant & is1            # the latest posted TLP is granted now
        from_waits = [waits.r_data[:cb], waits.r_data[cb:]]
        # The entry is written whenever a posted TLP arrives behind one not
        # granted before this cycle, so that the write does not wait for
        # the grant. If that one is granted now (its counts are released
        # from `tail` at once), the entry is stale: one posted TLP is then
        # left (unsent stays 1), so nothing reads `waits` next cycle but the
        # stale entry's own removal.
        stale = Signal()
        m.d.sync += stale.eq(p_arrive & p_grant & is1)
        m.d.comb += [waits.w_data.eq(Cat(*tail)), waits.w_en.eq(p_arrive & ~is0),
                     waits.r_en.eq((p_grant & ~le1) | stale)]
        for j, k in enumerate((NP, CPL)):
            # released: + arrivals that wait for nothing, + the counts a
            # posted grant releases, - a head of this class granted
            r, up, down = released[k], released[k] + 1, released[k] - 1
            now_free = arrive_k[k] & is0                # (no posted grant)
            freed = Signal.like(r, name=f"freed_{CLASSES[k]}")
            m.d.comb += freed.eq(Mux(arrive_k[k] & le1, up, r) +
                                 Mux(is1, tail[j], from_waits[j]))
            spent = granted & (pick == k) & ~heads_free[k]
            m.d.sync += r.eq(Mux(p_grant, freed,
                                 Mux(spent, Mux(now_free, r, down), Mux(now_free, up, r))))
            # the same choice of whether it is zero (`up` never is; `down`
            # is zero when r is 1), each outcome worked out from registers
            # freed != 0 without its adder: both terms are counts, so the
            # sum is zero only when each is (the adder stays on the path to
            # the count's register only)
            released_nz = Mux(arrive_k[k] & le1, 1, released_any[k])
            m.d.comb += released_any_next[k].eq(
                Mux(p_grant, released_nz | Mux(is1, tail[j] != 0, from_waits[j] != 0),
                    Mux(spent, Mux(now_free, released_any[k], r != 1),
                        now_free | released_any[k])))
            m.d.sync += released_any[k].eq(released_any_next[k])
            with m.If(p_arrive | last_out):
                m.d.sync += tail[j].eq(0)
            with m.Elif(still & arrive_k[k]):
                m.d.sync += tail[j].eq(tail[j] + 1)

        # --- eligibility and credits ------------------------------------------------------
        # The credit check is a register, computed a cycle ahead from the
        # counters and the heads of that cycle: the arbiter then starts from
        # flip-flops. The limits only grow, so last cycle's limit is safe.
        # Where the head will change (the class is granted now, or has no
        # head yet), the next head's credits are not known: the check then
        # assumes the largest TLP (`max_credits`), which can hold a head one
        # cycle when the credits are nearly used up, never longer.
        p_out = Signal(self.stamp_bits)     # posted TLPs started out so far
        eligible = Signal(3)
        for k in range(3):
            head = heads[k]
            limit, consumed = self.credit_limit[k], self.credits_consumed[k]
            now = Signal(name=f"granting_{CLASSES[k]}")
            m.d.comb += now.eq(granted & (pick == k))
            # each test's `limit - consumed - need` in one carry chain (the
            # three operands added carry-save first: no subtraction waits for
            # another's carries)
            hdr = (limit.hdr, consumed.hdr, HDR_BITS)
            data_ = (limit.data, consumed.data, DATA_BITS)
            stable = _room(m, *hdr, None, 1) & _room(m, *data_, head.data_credits, 0)
            unknown_idle = _room(m, *hdr, None, 1) & _room(m, *data_, None, self.max_credits)
            # after this head is charged: its credits and a largest TLP's
            unknown_next = _room(m, *hdr, None, 2) & \
                _room(m, *data_, head.data_credits, self.max_credits)
            # (with the credits switched off, always: a configuration bit,
            # taken a cycle late)
            credit_ok = Signal(name=f"credit_ok_{CLASSES[k]}")
            # (a credits restart: none until the peer's limits come, which
            # the check a cycle ahead has not seen yet)
            m.d.sync += credit_ok.eq(~self.credits_enable |
                                     Mux(now, unknown_next,
                                         Mux(descs[k].r_rdy, stable, unknown_idle)) &
                                     ~self.credits_restart)
            if k == P or self.reorder_illegally:
                ready = descs[k].r_rdy
            else:
                # a head, and every posted TLP that arrived before it has
                # been granted: a register, worked out a cycle ahead from
                # the head the queue will have (the one behind it if loaded)
                # and the count `released` will have
                ready = Signal(name=f"order_ready_{CLASSES[k]}")
                d = descs[k]
                head_next_free = Mux(d.load, desc_layout(d.next_data).free, head.free)
                m.d.sync += ready.eq((d.load | (d.r_rdy & ~d.r_en)) &
                                     (head_next_free | released_any_next[k]))
            waiting = ready & self.class_enable[k]
            m.d.comb += eligible[k].eq(waiting & credit_ok)
            with m.If(waiting & ~credit_ok):
                m.d.sync += self.credit_stall_cycles[k].eq(self.credit_stall_cycles[k] + 1)

        turn = Signal(2)
        any_eligible = Signal()
        m.d.comb += any_eligible.eq(eligible != 0)
        if self.policy == "oldest":
            # the eligible head that arrived first. Which of two heads
            # arrived first is a register (`older[k, j]`), worked out a
            # cycle ahead for each way the heads can change (either head
            # replaced by the entry behind it, or both, or neither) from
            # registers and the queues' next entries; the grant only picks
            # among the four. Arrival numbers are unique and at most
            # 3 * tlps apart: a modular comparison of their low bits orders
            # them.
            bits = min(self.stamp_bits, (3 * self.tlps).bit_length() + 1)
            nexts = [desc_layout(d.next_data) for d in descs]

            def first(a, b, name):
                diff = Signal(bits, name=name)
                m.d.comb += diff.eq(a.arrival[:bits] - b.arrival[:bits])
                return diff[-1]
            older = {}
            for k, j in ((0, 1), (0, 2), (1, 2)):
                o = older[k, j] = Signal(name=f"older_{CLASSES[k]}_{CLASSES[j]}")
                hh = first(heads[k], heads[j], f"hh_{k}{j}")
                nh = first(nexts[k], heads[j], f"nh_{k}{j}")
                hn = first(heads[k], nexts[j], f"hn_{k}{j}")
                nn = first(nexts[k], nexts[j], f"nn_{k}{j}")
                lk, lj = descs[k].load, descs[j].load
                m.d.sync += o.eq(Mux(lk, Mux(lj, nn, nh), Mux(lj, hn, hh)))
                older[j, k] = ~o
            for k in range(3):
                wins = eligible[k]
                for j in range(3):
                    if j != k:
                        wins = wins & (~eligible[j] | older[k, j])
                with m.If(wins):
                    m.d.comb += pick.eq(k)
        else:
            self._round_robin(m, turn, eligible, pick)

        # --- egress ---------------------------------------------------------------------
        # The grant and the output are a registered stage apart: a grant
        # (the arbiter's choice, from the descriptor heads and the credit
        # counters) sets `cur`, and the beats leave from `cur`'s FIFO from
        # the next cycle on. The next TLP is granted while the current one's
        # last beat leaves, so TLPs still follow each other without a gap.
        busy = Signal()                     # a granted TLP of class `cur` is not out yet
        cur = Signal(2)
        cur_stamp = Signal(self.stamp_bits)
        cur_posted = Signal(self.stamp_bits)
        cur_cpls = Signal(self.stamp_bits)
        left = Signal(range(self.depth + 1))    # its beats still to leave
        last_q = Signal()                   # left == 1: the beat on offer is its last
        pick_stamp = Signal(self.stamp_bits)
        pick_posted = Signal(self.stamp_bits)
        pick_cpls = Signal(self.stamp_bits)
        pick_beats = Signal(range(self.depth + 1))
        pick_one = Signal()
        with m.Switch(pick):
            for k in range(3):
                with m.Case(k):
                    m.d.comb += [pick_stamp.eq(heads[k].carried if self.carry_stamp
                                               else heads[k].stamp),
                                 pick_posted.eq(heads[k].stamp), pick_cpls.eq(heads[k].cpls),
                                 pick_beats.eq(heads[k].beats), pick_one.eq(heads[k].one)]
        # `cur` one-hot and gated by `busy` (`serving[k]` is `busy & (cur == k)`,
        # kept as registers): the output's valid, and so the grant of the
        # next TLP while this one's last beat leaves, decode nothing
        serving = Signal(3)
        out = self.tlp_out
        beat = TlpBeat(self.width)(Array(b.r_data for b in beats)[cur])
        m.d.comb += [
            out.valid.eq((serving & Cat(*(b.r_rdy for b in beats))) != 0),
            out.payload.data.eq(beat.data),
            out.payload.keep.eq(beat.keep),
            out.payload.last.eq(beat.last),
            out.payload.stamp.eq(cur_stamp),
            self.out_posted.eq(cur_posted),
            self.out_cpls.eq(cur_cpls),
        ]
        sent = Signal()
        m.d.comb += sent.eq(out.valid & out.ready)
        m.d.comb += granted.eq((~busy | (sent & last_q)) & any_eligible)
        for k, (b, d) in enumerate(zip(beats, descs)):
            m.d.comb += [
                b.r_en.eq(out.ready & serving[k] & b.r_rdy),
                d.r_en.eq(granted & (pick == k)),
            ]
            with m.If(granted & (pick == k)):
                consumed = self.credits_consumed[k]
                m.d.sync += [
                    consumed.hdr.eq(consumed.hdr + 1),
                    consumed.data.eq(consumed.data + heads[k].data_credits),
                    self.tlps_sent[k].eq(self.tlps_sent[k] + 1),
                ]
        # The peer restarted: what it had consumed is forgotten (a TLP
        # granted now, or granted before and not yet framed, reaches the new
        # peer uncharged: at most a frame's worth, which its receive path's
        # backpressure absorbs, docs/link-state.md)
        with m.If(self.credits_restart):
            m.d.sync += self.credits_consumed.eq(0)
        with m.If(granted):
            m.d.sync += [turn.eq(Mux(pick == 2, 0, pick + 1)), cur.eq(pick),
                         cur_stamp.eq(pick_stamp), cur_posted.eq(pick_posted), cur_cpls.eq(pick_cpls),
                         busy.eq(1), serving.eq(1 << pick),
                         left.eq(pick_beats),
                         last_q.eq(pick_one)]
            with m.If(pick == P):
                m.d.sync += p_out.eq(p_out + 1)
        with m.Elif(sent):
            m.d.sync += [left.eq(left - 1), last_q.eq(left == 2)]
            with m.If(last_q):
                m.d.sync += [busy.eq(0), serving.eq(0)]
        return m

    @staticmethod
    def _has_room(m, queue, name):
        """``queue.w_rdy`` as a register: the FIFO's level kept beside it
        (writes and reads as the FIFO does them), and whether it will be
        below the depth worked out a cycle ahead, so that the register
        stage's enable (every bit of a beat) does not wait on the FIFO's
        level. A ``SyncFIFOBuffered`` (or a
        descriptor queue, built the same way) of depth 3 and up takes a write
        exactly when its level is below its depth; below that its own
        ``w_rdy`` is used."""
        if queue.depth < 3:
            return queue.w_rdy
        level = Signal(range(queue.depth + 1), name=f"{name}_level")
        room = Signal(name=f"{name}_room", init=1)
        nxt = level + (queue.w_en & queue.w_rdy) - (queue.r_en & queue.r_rdy)
        m.d.sync += [level.eq(nxt), room.eq(nxt < queue.depth)]
        return room

    @staticmethod
    def _round_robin(m, turn, eligible, pick):
        """``pick``: the first eligible class from ``turn`` on."""
        with m.Switch(turn):
            for t in range(3):
                with m.Case(t):
                    order = [(t + i) % 3 for i in range(3)]
                    with m.If(eligible[order[0]]):
                        m.d.comb += pick.eq(order[0])
                    with m.Elif(eligible[order[1]]):
                        m.d.comb += pick.eq(order[1])
                    with m.Else():
                        m.d.comb += pick.eq(order[2])
