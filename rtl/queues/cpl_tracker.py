"""The completion tracker (docs/link-state.md, "Completion timeout and
containment"): the non-posted requests carried to the peer, in a per-tag
table in block RAM, answered with Unsupported Request completions when their
completions cannot come. The rules are
:class:`tlpoe.models.cpl_tracker.CompletionTracker`'s; the cycle twin is
:class:`tlpoe.models.cpl_tracker_cycles.CycleCplTracker`.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...models.cpl_tracker_cycles import COUNTERS, ERR_QUEUE, TICK_CYCLES, TIMEOUT_MAX
from ...models.tlp import HEADER_LAYOUTS, CplStatus, TlpType
from ..tlp_header import NP, TlpHeader
from ..wirefmt import pack_bytes

__all__ = ["CplTracker"]

_CPL, _MEM3 = HEADER_LAYOUTS["cpl"], HEADER_LAYOUTS["mem3"]


class _Entry(data.StructLayout):
    """A slot of the table: 70 bits."""

    def __init__(self):
        super().__init__({"valid": 1, "gen": 1, "requester": 16, "tag": 10, "deadline": 16,
                          "byte_count": 12, "lower_address": 7, "tc": 3, "attr": 3,
                          "locked": 1})


class _Answer(data.StructLayout):
    """An error completion's fields (``attr``: NS, RO, IDO from bit 0)."""

    def __init__(self):
        super().__init__({"requester": 16, "tag": 10, "byte_count": 12,
                          "lower_address": 7, "tc": 3, "attr": 3, "locked": 1})


class _Write(data.StructLayout):
    """A write of the table, registered: the slot, the entry, whether a
    request wrote it (a new Transaction ID); with ``upd`` the entry's Byte
    Count and Lower Address are ``next_bc`` and ``next_la`` (a completion
    matched, not the last: applied after the register, off the decision's
    path)."""

    def __init__(self, tag_bits):
        super().__init__({"en": 1, "slot": tag_bits, "track": 1, "entry": _Entry(), "upd": 1,
                          "next_bc": 12, "next_la": 7})


class _Stage(data.StructLayout):
    """An operation in the pipeline: which, its slot, its TLP's Transaction
    ID, a request's entry, a completion's next Byte Count and Lower
    Address; from stage 1 on, of the operations 1, 2, 3 ahead, which write
    its slot (``hit``) and which have its Transaction ID, if requests
    (``same``); from stage 2 on, what the writes ahead of it said
    (``tracked``: a request among them, whose Transaction ID was
    ``same_ahead``, and whose deadline ``expired_ahead``)."""

    def __init__(self, tag_bits):
        super().__init__({"req": 1, "cpl": 1, "scan": 1, "track": 1, "is_cpl": 1,
                          "slot": tag_bits, "requester": 16, "tag": 10, "new": _Entry(),
                          "final": 1, "next_bc": 12, "next_la": 7, "hit": 3, "same": 3,
                          "tracked": 1,
                          "same_ahead": 1, "expired_ahead": 1})


def _written(m, write, name):
    """The entry a write (:class:`_Write`) puts in the table."""
    entry = Signal(_Entry(), name=name)
    m.d.comb += entry.eq(write.entry)
    with m.If(write.upd):
        m.d.comb += [entry.byte_count.eq(write.next_bc),
                     entry.lower_address.eq(write.next_la)]
    return entry


def _writes(stage):
    """Whether the operation in ``stage`` writes its slot back (a tracked
    request, a completion, a visit)."""
    return stage.track | stage.is_cpl | stage.scan


def _same(requester, tag, other_requester, other_tag, tag_bits):
    """Whether two Transaction IDs of the same slot are equal (the Tag's
    low ``tag_bits`` are the slot's)."""
    if tag_bits == 10:
        return requester == other_requester
    return (requester == other_requester) & (tag[tag_bits:] == other_tag[tag_bits:])


def _expired(tick, deadline):
    """An entry is expired while ``tick`` is less than 2**15 past its deadline."""
    return ~(tick - deadline)[15]


def _lowest_enabled(be):
    """Offset of the first enabled byte of a DW (0 when none)."""
    return Mux(be[0], 0, Mux(be[1], 1, Mux(be[2], 2, Mux(be[3], 3, 0))))


def _highest_enabled(be):
    return Mux(be[3], 3, Mux(be[2], 2, Mux(be[1], 1, 0)))


class CplTracker(wiring.Component):
    """The completion tracker: one table slot per low ``tag_bits`` (8 or
    10) of the Tag, ``2**tag_bits`` x 70 bits of block RAM (one write
    port, one synchronous read port).

    Request side: ``req_valid``/``req_ready``/``req_header`` (the first 4
    header DWs in lane order, :class:`~tlpoe.rtl.tlp_header.TlpHeader`'s):
    every TLP going to the peer; the non-posted requests (``TlpHeader.cls``:
    neither a completion nor posted) are tracked, the others taken and
    ignored. Completion side: ``cpl_valid``/``cpl_ready``/
    ``cpl_header``: every TLP from the peer, each answered in order on
    ``verdict_valid`` (one cycle) with ``verdict_deliver`` (0: a late
    completion, to drop; 1 for everything else) exactly 3 cycles after its
    handshake (a handshake in cycle ``t``: the verdict shows in ``t + 3``).

    ``err_valid``/``err_ready`` with ``err_requester_id``, ``err_tag``,
    ``err_byte_count`` (0 = 4096), ``err_lower_address``, ``err_tc``,
    ``err_attr`` (NS, RO, IDO from bit 0), ``err_locked`` (CplLk) and
    ``err_header`` (the whole 3-DW UR completion header in lane order, with
    ``completer_id``, an input whose reset value is the parameter): the
    error completions, from a three-entry queue (a ring of 4 registers,
    the head chosen by a registered pointer); one pushed at the edge ending
    cycle ``t + 2`` for a request taken in ``t`` (valid from ``t + 3``).

    Configuration: ``timeout`` in ticks of ``tick_cycles`` (1024) cycles;
    0 is taken as 1 and values from 2**15 on as 2**15 - 1 (deadlines are
    16-bit and compared modulo 2**16: an entry is expired while the tick
    counter is less than 2**15 past its deadline; a request taken in ``t``
    gets the deadline ``tick + timeout`` of cycle ``t + 1``, and an entry is
    judged against the tick of the cycle before its decision). Registered:
    a new value acts a cycle later, for the requests tracked from then on
    (each entry keeps its deadline). An entry expires ``timeout - 1`` to ``timeout``
    ticks after its request, and is answered when the scanner next visits
    it. ``hold`` (a level, registered): the link has been down for the hold
    time: every entry the scanner visits is answered. ``restart`` (a
    pulse): the peer restarted: every entry tracked from a request taken
    in or before the pulse's cycle is answered (the table's generation bit
    flips at the end of the pulse's cycle + 2, once those requests are
    decided; both ports are held meanwhile); the TLPs taken from the next
    cycle on are after it.

    Counters (from 4 cycles after the handshake): ``tracked``, ``matched``,
    ``tag_reuse``, ``evicted``, ``late_completions``, ``timeouts``,
    ``link_down_completions``, ``restart_completions``, ``outstanding``.

    Scheduling: one operation on the table per cycle, a request, a
    completion-side TLP or a scanner's visit of the next slot, in table
    order (so a scan of the whole table takes ``2**tag_bits`` visits, at
    least one in 4 cycles while ``err`` has room). Every TLP offered takes
    one, tracked or not: with both ports and the scanner busy, completions
    get 2 cycles in 4, requests 1, the scanner 1. Answers come in the
    order their entries are found (evictions at once, the scanner's in
    table order), not oldest first as the model's. Pipeline: an operation
    issued in ``t`` reads the table (address in ``t``), its entry leaves
    the block RAM in ``t + 1`` into a register, it is decided in ``t + 2``
    (answer pushed, verdict and counter increments registered) and its
    write-back registered, written into the table at the end of ``t + 3``;
    the writes of the three operations ahead of it, not yet in the entry
    read, are forwarded (the table's read-during-write result is never
    used: ``no_rw_check``). Backpressure: ``req_ready`` and
    ``cpl_ready`` depend on the other port's valid (one of them wins a
    cycle; phase by phase the scanner, completions or requests first);
    requests and visits (which may answer) wait for room in the ``err``
    queue, counting those issued in the two cycles before (not yet
    decided): with ``err_ready`` low nothing is lost, requests and the scanner
    stop, completions go on. After reset, and after a second restart before
    the first one's scan ended, both ports are held (ready low) for up to a
    table's worth of cycles (the table is cleared; the scan completes).
    """

    def __init__(self, *, tag_bits=10, completer_id=0, timeout=2048,
                 tick_cycles=TICK_CYCLES):
        if type(tag_bits) is not int or tag_bits not in (8, 10):
            raise ValueError(f"tag_bits must be 8 or 10, not {tag_bits!r}")
        if type(completer_id) is not int or not 0 <= completer_id < 2 ** 16:
            raise ValueError(f"completer_id must be a 16-bit PCIe ID, not {completer_id!r}")
        if type(timeout) is not int or not 0 <= timeout < 2 ** 16:
            raise ValueError(f"timeout must be 0..2**16-1 ticks, not {timeout!r}")
        if type(tick_cycles) is not int or tick_cycles < 1 or tick_cycles & (tick_cycles - 1):
            raise ValueError(f"tick_cycles must be a power of two, not {tick_cycles!r}")
        self.tag_bits, self.tick_cycles, self._timeout = tag_bits, tick_cycles, timeout
        super().__init__({
            "req_valid": In(1), "req_ready": Out(1), "req_header": In(128),
            "cpl_valid": In(1), "cpl_ready": Out(1), "cpl_header": In(128),
            "verdict_valid": Out(1), "verdict_deliver": Out(1),
            "err_valid": Out(1), "err_ready": In(1),
            "err_requester_id": Out(16), "err_tag": Out(10), "err_byte_count": Out(12),
            "err_lower_address": Out(7), "err_tc": Out(3), "err_attr": Out(3),
            "err_locked": Out(1), "err_header": Out(96),
            "completer_id": In(16, init=completer_id),
            "timeout": In(16, init=timeout), "hold": In(1), "restart": In(1),
            **{name: Out(32) for name in COUNTERS}, "outstanding": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        T, N = self.tag_bits, 2 ** self.tag_bits
        # no_rw_check: a read of the slot written at the same edge is never
        # used (the write is forwarded), so Yosys need not emulate the
        # collision in logic behind the block RAM's output
        m.submodules.table = table = Memory(shape=_Entry(), depth=N, init=[],
                                            attrs={"no_rw_check": 1})
        rd, wr = table.read_port(), table.write_port()

        # --- time, configuration, restarts -----------------------------------------
        tick = Signal(16)
        if self.tick_cycles > 1:
            div = Signal(range(self.tick_cycles))
            m.d.sync += div.eq(div + 1)
            with m.If(div == self.tick_cycles - 1):
                m.d.sync += tick.eq(tick + 1)
        else:
            m.d.sync += tick.eq(tick + 1)
        init = 1 if self._timeout == 0 else min(self._timeout, TIMEOUT_MAX)
        timeout_used, hold = Signal(16, init=init), Signal()
        m.d.sync += [timeout_used.eq(Mux(self.timeout == 0, 1,
                                         Mux(self.timeout[15], TIMEOUT_MAX, self.timeout))),
                     hold.eq(self.hold)]
        phase = Signal(2)
        m.d.sync += phase.eq(phase + 1)
        clear_at = Signal(T + 1)                # the slot cleared after reset; N: done
        clearing = ~clear_at[T]
        clear_last = Signal()                   # clearing its last slot (a register)
        with m.If(clearing):
            m.d.sync += [clear_at.eq(clear_at + 1), clear_last.eq(clear_at == N - 2)]
        # a restart flips the generation once the operations taken before it
        # are decided, then a whole scan (sweep_left visits) answers the
        # entries of the old one; a restart during that scan waits for its
        # end and the last visit's decision (ports held), so that no entry's
        # generation comes round again
        pending, pending_d, gen = Signal(), Signal(), Signal()
        sweep_left, swept, swept_d = Signal(range(N + 1)), Signal(init=1), Signal(init=1)
        m.d.sync += [pending_d.eq(pending), swept_d.eq(swept)]     # swept: sweep_left == 0
        flip = pending & pending_d & swept & swept_d
        # the ports' turns and whether they are open (neither clearing nor a
        # restart pending), registered a cycle ahead: phase 0, 2 and odd
        phase_next, ok_next = Signal(2), Signal()
        m.d.comb += [phase_next.eq(phase + 1),
                     ok_next.eq(~(clearing & ~clear_last)
                                & ~Mux(flip, self.restart, pending | self.restart))]
        okp0_next, okp2_next, okodd_next = (ok_next & (phase_next == 0),
                                            ok_next & (phase_next == 2), ok_next & phase_next[0])

        # --- the pipeline's registers: stage 1 (read), stage 2 (decided) -------------------
        s1, s2 = Signal(_Stage(T), name="s1"), Signal(_Stage(T), name="s2")
        w1, w2 = (Signal(_Write(T), name=f"w{k}") for k in (1, 2))
        e1, e2 = (_written(m, w, f"e{k}") for k, w in enumerate((w1, w2), 1))

        # --- the err queue: 4 registers in a ring, at most 3 answers ------------------------
        ring = Array(Signal(_Answer().size, name=f"ring{k}") for k in range(4))
        rd_ptr, wr_ptr, err_count = Signal(2), Signal(2), Signal(2)
        # may: room for an operation that may answer (a request, a visit),
        # counting those in stages 1 and 2; a register, its next value
        # chosen by this cycle's answer and issue
        may = Signal(init=1)

        # --- stage 0: the arbiter, the table read, the headers decoded ------------------------
        # phase 0: the scanner first (it always may when the ports are open),
        # 2: requests, odd: completions; then completions, requests, the
        # scanner. The terms are registers (a cycle ahead): the table's
        # address is two LUTs from them
        okp2, req_first, req_odd, cpl_turn = (Signal(name=n) for n in
                                              ("okp2", "req_first", "req_odd", "cpl_turn"))
        want_scan = ~clearing & may
        rv, cv = self.req_valid, self.cpl_valid
        m.d.comb += [
            self.cpl_ready.eq(cpl_turn | (okp2 & ~rv)),
            self.req_ready.eq(req_first | (req_odd & ~cv)),
        ]
        take_req = self.req_valid & self.req_ready
        take_cpl = self.cpl_valid & self.cpl_ready
        scan = want_scan & ~take_req & ~take_cpl
        req, cpl = TlpHeader(self.req_header), TlpHeader(self.cpl_header)
        scan_at = Signal(T)
        with m.If(scan):
            m.d.sync += scan_at.eq(scan_at + 1)
        m.d.comb += [rd.en.eq(1),
                     rd.addr.eq(Mux(take_req, req.request_tag[:T],
                                    Mux(take_cpl, cpl.completion_tag[:T], scan_at)))]
        m.d.sync += [s1.req.eq(take_req), s1.cpl.eq(take_cpl), s1.scan.eq(scan),
                     s1.track.eq(take_req & (req.cls == NP)),
                     s1.is_cpl.eq(take_cpl & cpl.is_completion), s1.slot.eq(rd.addr)]
        # both headers decoded every cycle (not under take_req: Yosys would
        # share their adders behind the arbiter's choice)
        m.d.sync += [s1.requester.eq(Mux(take_req, req.requester_id, cpl.completion_requester)),
                     s1.tag.eq(Mux(take_req, req.request_tag, cpl.completion_tag))]
        self._request_entry(m, req, s1.new)
        self._completion_next(m, cpl, s1.final, s1.next_bc, s1.next_la)
        # which of the operations 1, 2, 3 ahead (in stage 1, stage 2, w1 now)
        # write the slot read: for each address the read may take, chosen as it is
        ahead_now = [(_writes(s1), s1.slot), (_writes(s2), s2.slot), (w1.en, w1.slot)]

        def hits(slot):
            return Cat(*(en & (other == slot) for en, other in ahead_now))
        m.d.sync += s1.hit.eq(Mux(take_req, hits(req.request_tag[:T]),
                                  Mux(take_cpl, hits(cpl.completion_tag[:T]), hits(scan_at))))
        # and whether its Transaction ID is theirs, were they requests (their
        # new entries' IDs: in stage 1, stage 2, w1 now)
        ids_now = [(s1.requester, s1.tag), (s2.requester, s2.tag),
                   (w1.entry.requester, w1.entry.tag)]

        def sames(requester, tag):
            return Cat(*(_same(requester, tag, r, t, T) for r, t in ids_now))
        m.d.sync += s1.same.eq(Mux(take_req, sames(req.requester_id, req.request_tag),
                                   sames(cpl.completion_requester, cpl.completion_tag)))

        # --- stage 1: the entry leaves the block RAM; what the writes not yet in it say -------
        # the entry, and whether it is expired, straight from the block RAM's
        # output (the expiry's carry chain here, its sign registered as it
        # leaves the chain: not expired)
        ram_q, ram_unexpired = Signal(_Entry()), Signal()
        m.d.sync += [ram_q.eq(rd.data), ram_unexpired.eq((tick - rd.data.deadline)[15])]
        m.d.sync += s2.eq(s1)
        m.d.sync += s2.new.deadline.eq(tick + timeout_used)
        # the writes the read missed: of the operations 1, 2 and 3 ahead
        # (stage 2 now, then w1, w2); each is w1, then rest, in stage 2
        ahead = [(s2.track, s2.new.deadline), (w1.track, w1.entry.deadline),
                 (w2.track, w2.entry.deadline)]
        hit, same_ahead = s1.hit, s1.same
        expired_ahead = Signal(3)
        for k, (_, deadline) in enumerate(ahead):
            m.d.comb += expired_ahead[k].eq(_expired(tick, deadline))
        # the entry's identity (Transaction ID, deadline) changes only on a
        # request's write: the latest request ahead, else the block RAM's
        tracked = Cat(*(hit[k] & track for k, (track, _) in enumerate(ahead)))
        # the entry as far as known now: of the two writes ahead already in
        # registers (w1, w2), else the block RAM's; whether it is current
        # (valid, of the generation of the next cycle) or stale; the RAM's
        # Transaction ID compared two bits a LUT
        gen_next, rest, rest_hit = Signal(), Signal(_Entry()), Signal()
        m.d.comb += [gen_next.eq(gen ^ flip), rest.eq(Mux(hit[1], e1, e2)),
                     rest_hit.eq(hit[1] | hit[2])]
        rest_q, rest_hit_q = Signal(_Entry()), Signal()
        cur_q, stale_q = Signal(), Signal()             # of rest, else of the RAM
        ids = Cat(s1.requester, s1.tag[T:])
        ram_ids = Cat(rd.data.requester, rd.data.tag[T:])
        parts_q = Signal((len(ids) + 1) // 2)
        m.d.sync += [rest_q.eq(rest), rest_hit_q.eq(rest_hit),
                     cur_q.eq(Mux(rest_hit, rest.valid & (rest.gen == gen_next),
                                  rd.data.valid & (rd.data.gen == gen_next))),
                     stale_q.eq(Mux(rest_hit, rest.valid & (rest.gen != gen_next),
                                    rd.data.valid & (rd.data.gen != gen_next))),
                     parts_q.eq(Cat(*(ram_ids[i:i + 2] == ids[i:i + 2]
                                      for i in range(0, len(ids), 2))))]
        m.d.sync += [s2.tracked.eq(tracked != 0),
                     s2.same_ahead.eq(Mux(tracked[0], same_ahead[0],
                                          Mux(tracked[1], same_ahead[1], same_ahead[2]))),
                     s2.expired_ahead.eq(Mux(tracked[0], expired_ahead[0],
                                             Mux(tracked[1], expired_ahead[1],
                                                 expired_ahead[2])))]

        # --- stage 2: the operation is decided ------------------------------------------------
        entry = Signal(_Entry())
        m.d.comb += entry.eq(Mux(s2.hit[0], e1, Mux(rest_hit_q, rest_q, ram_q)))
        same = Mux(s2.tracked, s2.same_ahead, parts_q.all())
        expired = Mux(s2.tracked, s2.expired_ahead, ~ram_unexpired)
        stale = Mux(s2.hit[0], w1.entry.valid & (w1.entry.gen != gen), stale_q)
        current = Mux(s2.hit[0], w1.entry.valid & (w1.entry.gen == gen), cur_q)
        track = s2.req & s2.track
        r_restart, r_reuse = track & stale, track & current
        r_evict, r_fresh = r_reuse & ~same, track & ~entry.valid
        c_match = s2.is_cpl & current & same
        c_late = s2.is_cpl & ~c_match
        c_retire = c_match & s2.final
        v_restart = s2.scan & stale
        visit = s2.scan & current
        v_timeout, v_down = visit & expired, visit & ~expired & hold
        # the answer if the Transaction IDs are the same (answers[1]) or not:
        # the compare, the latest input, chooses last in the registers it decides
        answers = [Signal(name=f"answer_if_{k}") for k in (0, 1)]
        for k, a in enumerate(answers):
            m.d.comb += a.eq(r_restart | v_restart | (visit & (hold | expired))
                             | (r_reuse & (not k)))

        def by_answer(if_answered, if_not):
            """``if_answered`` or ``if_not``, the compare choosing last."""
            return Mux(same, Mux(answers[1], if_answered, if_not),
                       Mux(answers[0], if_answered, if_not))
        retire = c_retire | v_restart | (visit & (expired | hold))

        # the write, from a register (into the block RAM a cycle later)
        m.d.sync += [w1.en.eq(_writes(s2)), w1.slot.eq(s2.slot), w1.track.eq(track),
                     w1.upd.eq(c_match & ~s2.final), w1.next_bc.eq(s2.next_bc),
                     w1.next_la.eq(s2.next_la), w2.eq(w1)]
        with m.If(track):
            m.d.sync += [w1.entry.eq(s2.new), w1.entry.gen.eq(gen)]
        with m.Else():
            # everything else writes the entry back, changed or not
            # (valid kept unless retired: chosen last by the Transaction ID's compare)
            kept_valid = entry.valid & ~v_restart & ~(visit & (expired | hold))
            matched_last = s2.is_cpl & current & s2.final
            m.d.sync += [w1.entry.eq(entry),
                         w1.entry.valid.eq(Mux(same, kept_valid & ~matched_last, kept_valid))]
        m.d.comb += [wr.en.eq(clearing | w1.en), wr.addr.eq(Mux(clearing, clear_at[:T], w1.slot)),
                     wr.data.eq(Mux(clearing, 0, e1))]

        m.d.sync += [self.verdict_valid.eq(s2.cpl), self.verdict_deliver.eq(s2.cpl & ~c_late)]

        # --- the err queue: every cycle the entry is written at the tail, kept if answered -----
        m.d.sync += ring[wr_ptr].eq(Cat(entry.requester, entry.tag, entry.byte_count,
                                        entry.lower_address, entry.tc, entry.attr,
                                        entry.locked))
        pop = self.err_valid & self.err_ready
        m.d.comb += self.err_valid.eq(err_count != 0)
        pushed, kept = Signal(2), Signal(2)             # err_count next, answered or not
        m.d.comb += [pushed.eq(err_count + 1 - pop), kept.eq(err_count - pop)]
        m.d.sync += [wr_ptr.eq(by_answer(wr_ptr + 1, wr_ptr)), rd_ptr.eq(rd_ptr + pop),
                     err_count.eq(by_answer(pushed, kept))]
        issued, m1 = take_req | scan, s1.req | s1.scan
        room = {(a, i): Signal(name=f"room_{a}{i}") for a in (0, 1) for i in (0, 1)}
        for (a, i), r in room.items():
            m.d.comb += r.eq((pushed if a else kept) + i + m1 < ERR_QUEUE)

        def chosen(term):
            """``term`` of the next room, chosen last by the answer and the issue."""
            return by_answer(Mux(issued, term(room[1, 1]), term(room[1, 0])),
                             Mux(issued, term(room[0, 1]), term(room[0, 0])))
        m.d.sync += [may.eq(chosen(lambda r: r)), okp2.eq(okp2_next),
                     req_first.eq(chosen(lambda r: r & okp2_next)),
                     req_odd.eq(chosen(lambda r: r & okodd_next)),
                     cpl_turn.eq(chosen(lambda r: okodd_next | (~r & (okp0_next | okp2_next))))]
        head = data.View(_Answer(), ring[rd_ptr])
        m.d.comb += [
            self.err_requester_id.eq(head.requester), self.err_tag.eq(head.tag),
            self.err_byte_count.eq(head.byte_count),
            self.err_lower_address.eq(head.lower_address), self.err_tc.eq(head.tc),
            self.err_attr.eq(head.attr), self.err_locked.eq(head.locked),
            self.err_header.eq(pack_bytes(
                _CPL, fmt=0, type=Cat(head.locked, Const(TlpType.Cpl.type_code >> 1, 4)),
                t9=head.tag[9], t8=head.tag[8], tag=head.tag[:8], tc=head.tc,
                attr=head.attr[:2], attr2=head.attr[2], completer_id=self.completer_id,
                status=int(CplStatus.UR), byte_count=head.byte_count,
                requester_id=head.requester, lower_address=head.lower_address)),
        ]

        # --- restarts -------------------------------------------------------------------------------
        with m.If(flip):
            m.d.sync += [gen.eq(~gen), sweep_left.eq(N), swept.eq(0), pending.eq(self.restart)]
        with m.Else():
            with m.If(self.restart):
                m.d.sync += pending.eq(1)
            with m.If(scan & ~swept):
                m.d.sync += [sweep_left.eq(sweep_left - 1), swept.eq(sweep_left == 1)]

        # --- counters: the increments registered, added a cycle later -------------------------
        incs = {"tracked": track, "matched": c_match, "tag_reuse": r_reuse,
                "evicted": r_evict, "late_completions": c_late, "timeouts": v_timeout,
                "link_down_completions": v_down, "restart_completions": r_restart | v_restart}
        for name in COUNTERS:
            inc = Signal(name=f"inc_{name}")
            m.d.sync += inc.eq(incs[name])
            counter = getattr(self, name)
            with m.If(inc):
                m.d.sync += counter.eq(counter + 1)
        up, down = Signal(), Signal()
        m.d.sync += [up.eq(r_fresh), down.eq(retire)]
        with m.If(up):
            m.d.sync += self.outstanding.eq(self.outstanding + 1)
        with m.Elif(down):
            m.d.sync += self.outstanding.eq(self.outstanding - 1)
        return m

    @staticmethod
    def _request_entry(m, req, new):
        """The entry of request ``req`` (a TlpHeader), into ``new``: the first
        completion's Byte Count and Lower Address
        (:func:`~tlpoe.models.cpl_tracker._first_completion`)."""
        typ, length = req.type, req.length_dws
        first, last = req.first_be, req.last_be
        memory_read = ~req.has_data & (typ[1:5] == 0)             # MRd, MRdLk
        atomic = (typ[2:5] == 0b011) & (typ[:2] != 0b11)          # FetchAdd, Swap, CAS
        cas = typ == TlpType.CAS.type_code
        lowest = _lowest_enabled(first)
        span = Mux(first == 0, 1, _highest_enabled(first) - lowest + 1)
        many = 4 * length - lowest - 3 + _highest_enabled(last)
        read_bc = Mux(length == 1, span, many)
        atomic_bc = Mux(cas, 2 * length, 4 * length)
        m.d.sync += [
            new.valid.eq(1), new.requester.eq(req.requester_id), new.tag.eq(req.request_tag),
            new.byte_count.eq(Mux(memory_read, read_bc, Mux(atomic, atomic_bc, 4))),
            new.lower_address.eq(Mux(memory_read, Cat(lowest[:2], req.address[2:7]), 0)),
            new.tc.eq(req.tc), new.attr.eq(Cat(req.field(_MEM3, "attr"), req.ido)),
            new.locked.eq(memory_read & typ[0]),
        ]

    @staticmethod
    def _completion_next(m, cpl, final, next_bc, next_la):
        """Whether completion ``cpl`` is final
        (:func:`~tlpoe.models.cpl_tracker._is_final`), and if not the
        next one's Byte Count and Lower Address."""
        byte_count = Mux(cpl.byte_count == 0, 4096, cpl.byte_count)
        lower = cpl.field(_CPL, "lower_address")
        covered = Signal(13)
        m.d.comb += covered.eq(4 * cpl.length_dws - lower[:2])
        m.d.sync += [
            final.eq((cpl.field(_CPL, "status") != 0) | ~cpl.has_data | (byte_count <= covered)),
            next_bc.eq(byte_count - covered), next_la.eq(lower + covered),
        ]
