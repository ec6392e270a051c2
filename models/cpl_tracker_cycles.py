"""The completion tracker in cycles: the twin of
:class:`tlpoe.rtl.queues.cpl_tracker.CplTracker`, the rules of
:class:`tlpoe.models.cpl_tracker.CompletionTracker` (its helpers, not a
restatement) with the RTL's timing. :meth:`CycleCplTracker.step` takes one
cycle's inputs and returns what the RTL shows before the edge;
``tests/test_cpl_tracker_twin.py`` proves it against the RTL, every output
every cycle.

Per cycle, in this order: the arbiter gives the table to one operation
(:func:`grant`): a request (``req``), a completion-side TLP (``cpl``) or a
scanner's visit of the next slot; the operation issued two cycles before is
decided on the table now (stage 2; the RTL reads the table in between),
then the edge moves the registers. Stage 2:

* a tracked request (non-posted) writes its slot; an entry found there that
  a restart left (another generation) is answered (``restart_completions``),
  one of another transaction is answered (``evicted``, ``tag_reuse``), the
  same Transaction ID again only counts ``tag_reuse``;
* a completion matching the entry of its slot (valid, this generation,
  Requester ID and whole Tag) is delivered (``matched``) and retires it
  when final; any other completion is late (dropped, ``late_completions``);
  other TLPs are delivered;
* a scanner's visit answers the entry of a restart (``restart_completions``),
  else one past its deadline (``timeouts``), else any, while ``hold`` is held
  (``link_down_completions``).

Answers go into a three-entry queue (the ``err`` stream); an operation that
may answer (a request, a visit) issues only when the queue has room for it
counting those in stages 1 and 2. A request's deadline and the expiry are of
the tick of stage 1. Counters move a cycle after stage 2. A restart flips the
generation two cycles after the pulse (once the requests taken before it are
decided), and not before the last visit of the previous restart's scan is
decided.
"""

from collections import namedtuple
from dataclasses import dataclass

from .cpl_tracker import _CPL_ATTR, _covered, _first_completion, _is_final
from .tlp import Attr, CplStatus, OrderingClass, ReservedTypeError, Tlp, TlpType

__all__ = ["TICK_CYCLES", "TIMEOUT_MAX", "ERR_QUEUE", "COUNTERS", "CplTrackerCycle",
           "CycleCplTracker", "grant", "timeout_in_use", "header_tlp", "ur_completion"]

#: Cycles per tick of the timeout (the RTL's default ``tick_cycles``).
TICK_CYCLES = 1024
#: The largest timeout used, in ticks: deadlines are compared modulo 2**16.
TIMEOUT_MAX = 2 ** 15 - 1
#: Answers the err queue holds.
ERR_QUEUE = 3
#: The counters, in the order of the RTL's ports (``outstanding`` apart).
COUNTERS = ("tracked", "matched", "tag_reuse", "evicted", "late_completions", "timeouts",
            "link_down_completions", "restart_completions")
REQ, CPL, SCAN = "req", "cpl", "scan"
_M32, _M16 = 0xFFFFFFFF, 0xFFFF

CplTrackerCycle = namedtuple("CplTrackerCycle", ("req_ready", "cpl_ready", "verdict_valid",
                                                 "verdict_deliver", "err_valid", "err")
                             + COUNTERS + ("outstanding",))


def timeout_in_use(timeout):
    """The timeout the tracker uses for the ``timeout`` configured (ticks):
    0 is taken as 1, values from 2**15 on as 2**15 - 1. Registered in the
    RTL: a new value acts one cycle later, on the requests tracked from then on."""
    return 1 if timeout == 0 else min(timeout, TIMEOUT_MAX)


def grant(phase, blocked, room, clearing, req_valid, cpl_valid):
    """(req_ready, cpl_ready, which operation issues: REQ, CPL, SCAN or None).

    ``phase`` (0..3, one more per cycle) says who goes first: 0 the scanner,
    2 requests, 1 and 3 completions; then completions, requests, the
    scanner. Requests and visits need ``room``; nothing but the scanner
    goes while ``blocked``, nothing at all while ``clearing``."""
    scan = not clearing and room
    order = {0: (SCAN, CPL, REQ), 2: (REQ, CPL, SCAN)}.get(phase, (CPL, REQ, SCAN))
    want = {CPL: not blocked and cpl_valid, REQ: not blocked and room and req_valid,
            SCAN: scan}
    ready = {CPL: not blocked, REQ: not blocked and room, SCAN: True}
    before = {}
    seen = False
    for op in order:
        before[op] = seen
        seen = seen or want[op]
    req_ready = ready[REQ] and not before[REQ]
    cpl_ready = ready[CPL] and not before[CPL]
    chosen = next((op for op in order if want[op]), None)
    return req_ready, cpl_ready, chosen


@dataclass
class _Entry:
    """A slot of the table (the RTL's ``_Entry``; ``None`` is not valid)."""
    gen: int
    requester_id: int
    tag: int
    deadline: int
    byte_count: int         # 1..4096
    lower_address: int
    tc: int
    attr: int
    locked: bool


Answer = namedtuple("Answer", "requester_id tag byte_count lower_address tc attr locked")


class CycleCplTracker:
    """``tag_bits`` (8 or 10), ``timeout`` (ticks, the configuration input:
    set :attr:`timeout` to change it) and ``tick_cycles`` as the RTL's;
    :meth:`reset` is the RTL's ``rst`` (the table is cleared in the
    ``2**tag_bits`` cycles that follow)."""

    def __init__(self, *, tag_bits=10, timeout=2048, tick_cycles=TICK_CYCLES):
        self.tag_bits, self.timeout, self.tick_cycles = tag_bits, timeout, tick_cycles
        self.timeout_init = timeout
        self.slots = 1 << tag_bits
        self.reset()

    def reset(self):
        self.table = [None] * self.slots
        self.clearing = self.slots          # cycles of clearing left
        self.phase = self.div = self.tick = 0
        self.timeout_used = timeout_in_use(self.timeout_init)
        self.hold = False
        self.restart_pending, self.pending_d, self.gen = False, False, 0
        self.sweep_left, self.swept_d = 0, True
        self.scan_at = 0
        self.stage1 = None                  # (op, slot, tlp) issued in the cycle before
        self.stage2 = None                  # (op, slot, tlp, tick, timeout_used) of the one before
        self.err = []                       # the answers queued, the head first
        self.verdict = (False, False)
        self.flags = dict.fromkeys(COUNTERS, 0)
        self.delta = 0
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.outstanding = 0

    # --- what the RTL shows --------------------------------------------------------
    @property
    def _room(self):
        may_answer = sum(stage is not None and stage[0] in (REQ, SCAN)
                         for stage in (self.stage1, self.stage2))
        return len(self.err) + may_answer < ERR_QUEUE

    def _grant(self, req_valid, cpl_valid):
        blocked = bool(self.clearing) or self.restart_pending
        return grant(self.phase, blocked, self._room, bool(self.clearing), req_valid,
                     cpl_valid)

    def outputs(self, req_valid=False, cpl_valid=False):
        req_ready, cpl_ready, _ = self._grant(req_valid, cpl_valid)
        return CplTrackerCycle(req_ready, cpl_ready, *self.verdict, bool(self.err),
                               self.err[0] if self.err else None, **self.counts,
                               outstanding=self.outstanding)

    # --- one cycle ------------------------------------------------------------------
    def step(self, *, req=None, cpl=None, err_ready=True, hold=False, restart=False):
        """One cycle: ``req`` / ``cpl`` the :class:`~tlpoe.models.tlp.Tlp`
        offered at each port (``None``: valid low), ``err_ready``, ``hold``,
        ``restart``. Returns the :class:`CplTrackerCycle` shown before the
        edge (its ``err`` an :class:`Answer` while ``err_valid``)."""
        shown = self.outputs(req is not None, cpl is not None)
        _, _, chosen = self._grant(req is not None, cpl is not None)
        answer, flags, delta, verdict = self._decide()
        # the edge
        if chosen == SCAN:
            issued = (SCAN, self.scan_at, None)
            self.scan_at = (self.scan_at + 1) % self.slots
        elif chosen is not None:
            tlp = req if chosen == REQ else cpl
            issued = (chosen, tlp.tag % self.slots, tlp)
        else:
            issued = None
        self.stage2 = self.stage1 and (*self.stage1, self.tick, self.timeout_used)
        self.stage1 = issued
        if self.err and err_ready:
            self.err.pop(0)
        if answer is not None:
            self.err.append(answer)
        self.verdict = verdict
        for name in COUNTERS:
            self.counts[name] = (self.counts[name] + self.flags[name]) & _M32
        self.outstanding = (self.outstanding + self.delta) & _M32
        self.flags, self.delta = flags, delta
        flip = (self.restart_pending and self.pending_d and self.sweep_left == 0
                and self.swept_d)
        self.pending_d, self.swept_d = self.restart_pending, self.sweep_left == 0
        if flip:
            self.gen ^= 1
            self.sweep_left, self.restart_pending = self.slots, restart
        else:
            self.restart_pending = self.restart_pending or restart
            if chosen == SCAN and self.sweep_left:
                self.sweep_left -= 1
        if self.clearing:
            self.clearing -= 1
        self.phase = (self.phase + 1) & 3
        self.div = (self.div + 1) % self.tick_cycles
        if self.div == 0:
            self.tick = (self.tick + 1) & _M16
        self.timeout_used = timeout_in_use(self.timeout)
        self.hold = hold
        return shown

    def _decide(self):
        """The operation in stage 2 decided on the table: (answer or None,
        the counters' increments, the change of ``outstanding``, the
        verdict). Its deadline, if a request, and the expiry are of the
        tick of stage 1 (the cycle before)."""
        flags, delta, answer, verdict = dict.fromkeys(COUNTERS, 0), 0, None, (False, False)
        if self.stage2 is None:
            return answer, flags, delta, verdict
        op, slot, tlp, tick, timeout_used = self.stage2
        entry = self.table[slot]
        stale = entry is not None and entry.gen != self.gen
        current = entry is not None and not stale
        if op == REQ:
            if tlp.ordering_class is not OrderingClass.NON_POSTED:
                return answer, flags, delta, verdict
            flags["tracked"] = 1
            if stale:
                answer, flags["restart_completions"] = _answer(entry), 1
            elif current:
                flags["tag_reuse"] = 1
                if (entry.requester_id, entry.tag) != (int(tlp.requester_id), tlp.tag):
                    answer, flags["evicted"] = _answer(entry), 1
            else:
                delta = 1
            byte_count, lower_address = _first_completion(tlp)
            self.table[slot] = _Entry(self.gen, int(tlp.requester_id), tlp.tag,
                                      (tick + timeout_used) & _M16, byte_count,
                                      lower_address, tlp.tc, int(tlp.attr & _CPL_ATTR),
                                      tlp.type is TlpType.MRdLk)
        elif op == CPL:
            if not tlp.type.is_completion:
                return answer, flags, delta, (True, True)
            if not current or (entry.requester_id, entry.tag) != (int(tlp.requester_id),
                                                                  tlp.tag):
                flags["late_completions"] = 1
                return answer, flags, delta, (True, False)
            flags["matched"] = 1
            if _is_final(tlp):
                self.table[slot], delta = None, -1
            else:
                entry.byte_count = tlp.byte_count - _covered(tlp)
                entry.lower_address = (tlp.lower_address + _covered(tlp)) & 0x7F
            verdict = (True, True)
        elif entry is not None:
            expired = (tick - entry.deadline) & _M16 < 0x8000
            counter = ("restart_completions" if stale else "timeouts" if expired else
                       "link_down_completions" if self.hold else None)
            if counter:
                answer, flags[counter], delta = _answer(entry), 1, -1
                self.table[slot] = None
        return answer, flags, delta, verdict


def _answer(entry):
    return Answer(entry.requester_id, entry.tag, entry.byte_count, entry.lower_address,
                  entry.tc, entry.attr, entry.locked)


def header_tlp(header):
    """The :class:`~tlpoe.models.tlp.Tlp` whose header the tracker's ports
    show (``header``: the first four DWs in lane order, an int or 16
    bytes; a 3-DW header's fourth DW is ignored), payload left out.

    A reserved Fmt/Type is read as the RTL's decode
    (:class:`~tlpoe.rtl.tlp_header.TlpHeader`) reads it: Type 0101x a
    completion (its fields in the 3-DW layout); a memory write Type with
    data or a message Type posted (a Memory Write stands in: neither
    tracked nor judged); every other a non-posted request, whose entry is
    a memory read's (Type 0000x without data), an AtomicOp's (Type 011xx
    but 01111) or else Byte Count 4 and Lower Address 0 (a Configuration
    Read stands in)."""
    head = bytearray(header.to_bytes(16, "little") if isinstance(header, int) else header)
    try:
        return _unpack_header(head)
    except ReservedTypeError:
        pass
    fmt, typ = head[0] >> 5, head[0] & 0x1F
    if typ >> 1 == 0b0101:
        head[0] = (fmt & 0b010) << 5 | typ
    elif (typ == 0 and fmt & 0b010) or typ >> 3 == 0b10:
        return Tlp(TlpType.MWr)
    elif typ >> 1 == 0 and not fmt & 0b010:
        head[0] = (fmt & 1) << 5 | typ
    elif typ >> 2 == 0b011 and typ & 3 != 3:
        head[0] = (0b010 | fmt & 1) << 5 | typ
    else:
        head[0] = 0b00100       # CfgRd0
    return _unpack_header(head)


def _unpack_header(head):
    return Tlp.unpack(bytes(head[:16 if head[0] & 0x20 else 12]), allow_truncated=True)


def ur_completion(answer, completer_id):
    """The UR completion (header bytes, 3 DWs) the tracker makes of an
    :class:`Answer`, as its ``err_header`` shows it."""
    return Tlp.completion(requester_id=answer.requester_id, tag=answer.tag,
                          completer_id=completer_id, status=CplStatus.UR,
                          byte_count=answer.byte_count, lower_address=answer.lower_address,
                          locked=answer.locked, tc=answer.tc, attr=Attr(answer.attr)).pack()
