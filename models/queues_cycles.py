"""The class queues in cycles, as the RTL builds them: the twin of
:class:`~tlpoe.rtl.queues.classq.ClassQueues` (per-class beat FIFOs and
descriptor queues, the count of posted TLPs each non-posted request and
completion waits for, the credit check a cycle ahead, the ``"oldest"``
arbiter, the registered egress), in the manner of
:mod:`tlpoe.models.framing_cycles`: :meth:`CycleClassQueues.step` takes one
cycle's inputs, returns what the RTL shows before the edge and moves the
registers across it. Cycle-exact at every port and counter
(``tests/test_queues_twin.py`` proves it in amaranth.sim).

The ordering rules themselves are :mod:`tlpoe.models.ordering`'s; this
module says only when the RTL's queues apply them.
"""

from collections import namedtuple

from .framing_cycles import WIDTHS, SyncFifo, SyncFifoBuffered
from .ordering import OrderFields

__all__ = ["HDR_BITS", "DATA_BITS", "NP_MAX_BYTES", "HeadFifo", "QueuesCycle", "CycleClassQueues", "tlp_class",
           "data_credits"]

#: The largest non-posted TLP: a 4-DW header and an atomic's 32 bytes of operands.
NP_MAX_BYTES = 48
P, NP, CPL = 0, 1, 2
#: The widths of the bridge header's credit fields (headers, 16-byte data
#: credits); one definition, which ``rtl/streams.py`` imports.
HDR_BITS, DATA_BITS = 8, 16


def tlp_class(dw0_bytes):
    """(ordering class, Relaxed Ordering) of a TLP from its first header
    bytes (at least 12; the RTL reads DW 0)."""
    f = OrderFields.of(dw0_bytes)
    return f.cls, f.ro


def data_credits(dw0):
    """The 16-byte data credits of a TLP from its first DW (32 bits, byte 0
    in bits 7:0): none without data, else ``ceil(Length / 4)`` DWs (0 is 1024)."""
    fmt, length = dw0 >> 5 & 7, (dw0 >> 16 & 0x3) << 8 | dw0 >> 24 & 0xFF
    return ((length or 1024) + 3) >> 2 if fmt & 2 else 0


class HeadFifo:
    """The RTL's ``_HeadFIFO``: a ``SyncFIFO`` of ``depth - 1`` entries and
    the head register; ``next_data``/``next_rdy`` the entry behind the head,
    ``load`` (given ``r_en``) whether the head takes it this cycle."""

    def __init__(self, depth):
        self.depth = depth
        self.inner = SyncFifo(depth - 1)
        self.r_rdy, self.r_data = False, None

    @property
    def w_rdy(self):
        return self.inner.w_rdy

    @property
    def level(self):
        return self.inner.level + int(self.r_rdy)

    @property
    def next_rdy(self):
        return self.inner.r_rdy

    @property
    def next_data(self):
        return self.inner.r_data

    def load(self, r_en):
        return self.inner.r_rdy and (not self.r_rdy or r_en)

    def clock(self, w_en, w_data, r_en):
        load = self.load(r_en)
        data = self.inner.r_data
        self.inner.clock(w_en, w_data, load)
        if load:
            self.r_data, self.r_rdy = data, True
        elif r_en:
            self.r_rdy = False


_Desc = namedtuple("_Desc", "stamp cpls free data_credits arrival beats one")
_EMPTY = _Desc(0, 0, False, 0, 0, 0, False)


class _Room:
    """The RTL's ``_has_room``: the FIFO's level mirrored and ``room`` a
    register worked out a cycle ahead (depth 3 and up; below, ``w_rdy``)."""

    def __init__(self, queue):
        self.queue, self.level, self.reg = queue, 0, True

    @property
    def room(self):
        return self.reg if self.queue.depth >= 3 else self.queue.w_rdy

    def clock(self, w_en, r_en):
        q = self.queue
        nxt = self.level + int(w_en and q.w_rdy) - int(r_en and q.r_rdy)
        self.level, self.reg = nxt, nxt < q.depth


#: What the queues show in a cycle: ``tlp_in_ready``, ``tlp_out`` (``(data,
#: keep, last, stamp)``, or None), ``out_posted`` and ``out_cpls`` (beside
#: it), ``np_room``, and the counters ``credits_consumed`` (per class
#: ``(hdr, data)``), ``credit_stall_cycles`` and ``tlps_sent`` (per class).
QueuesCycle = namedtuple("QueuesCycle", "tlp_in_ready tlp_out out_posted out_cpls np_room "
                                        "credits_consumed credit_stall_cycles tlps_sent")


class CycleClassQueues:
    """The :class:`~tlpoe.rtl.queues.classq.ClassQueues` with the
    ``"oldest"`` policy (the Bridge's, both ways) and no carried stamps.

    :meth:`step` inputs: ``beat`` (the TLP beat offered, ``(data, keep,
    last)``, or None), ``out_ready``, ``credit_limit`` (per class ``(hdr,
    data)``), ``credits_enable``, ``ro_enable`` and ``class_enable`` (three
    bits, P first)."""

    def __init__(self, width, *, depth=64, tlps=16, stamp_bits=16, max_credits=256,
                 reorder_illegally=False):
        if width not in WIDTHS:
            raise ValueError(f"width must be one of {WIDTHS}, not {width!r}")
        if not 2 ** (stamp_bits - 1) > 3 * tlps:
            raise ValueError(f"stamp_bits must hold twice the TLPs queued (3 x {tlps}), "
                             f"not {stamp_bits!r}")
        self.width, self.depth, self.tlps = width, depth, tlps
        self.stamp_bits, self.max_credits = stamp_bits, max_credits
        self.reorder_illegally = reorder_illegally
        self.np_beats = -(-NP_MAX_BYTES * 8 // width)
        self.cb = (tlps + 1).bit_length()
        self.arrival_bits = min(stamp_bits, (3 * tlps).bit_length() + 1)
        self.reset()

    def reset(self):
        self.beats = [SyncFifoBuffered(self.depth) for _ in range(3)]
        self.descs = [HeadFifo(self.tlps) for _ in range(3)]
        for d in self.descs:
            d.r_data = _EMPTY
            d.inner.mem = [_EMPTY] * d.inner.depth
        self.beats_room = [_Room(b) for b in self.beats]
        self.descs_room = [_Room(d) for d in self.descs]
        # ingress
        self.first, self.cls_held = True, 0
        self.r_valid, self.r_beat, self.r_cls = False, (0, 0, 0), 0
        self.held_free, self.held_credits = False, 0
        self.count = 0
        self.p_in = self.n_in = self.c_in = 0
        self.np_open = False
        # the posted TLPs each waits for
        self.unsent = 0
        self.waits = SyncFifo(self.tlps)
        self.waits.mem = [(0, 0)] * self.tlps
        self.tail = [0, 0]                  # NP, CPL
        self.released = [0, 0, 0]
        self.released_any = [False, False, False]
        self.stale = False
        # eligibility, arbiter, egress
        self.credit_ok = [False, False, False]
        self.order_ready = [False, False, False]
        self.older = {(0, 1): False, (0, 2): False, (1, 2): False}
        self.busy, self.cur, self.left, self.last_q = False, 0, 0, False
        self.cur_stamp = self.cur_posted = self.cur_cpls = 0
        # counters
        self.consumed = [[0, 0] for _ in range(3)]
        self.stall = [0, 0, 0]
        self.tlps_sent = [0, 0, 0]

    def _older(self, k, j):
        return self.older[k, j] if k < j else not self.older[j, k]

    def _first(self, a, b):
        return ((a.arrival - b.arrival) % (1 << self.arrival_bits)) >> (self.arrival_bits - 1)

    @staticmethod
    def _room(avail, need, bits):
        return (avail - need) % (1 << bits) <= 1 << (bits - 1)

    def _np_room(self):
        opening = self.np_open or (self.r_valid and self.r_cls == NP)
        d, b = self.descs[NP], self.beats[NP]
        descs_ok = d.level < self.tlps - 1 if opening else d.w_rdy
        return descs_ok and b.level + (self.np_beats if opening else 0) <= \
            self.depth - self.np_beats

    def _room_in(self):
        last = self.r_beat[2]
        return self.beats_room[self.r_cls].room and (
            not last or self.descs_room[self.r_cls].room)

    def outputs(self):
        beats = self.beats[self.cur]
        tlp_out = None
        if self.busy and beats.r_rdy:
            data, keep, last = beats.r_data
            tlp_out = (data, keep, last, self.cur_stamp)
        return QueuesCycle(not self.r_valid or self._room_in(), tlp_out, self.cur_posted,
                           self.cur_cpls, self._np_room(),
                           [tuple(c) for c in self.consumed], list(self.stall),
                           list(self.tlps_sent))

    def step(self, *, beat=None, out_ready=False, credit_limit=((0, 0),) * 3,
             credits_enable=False, ro_enable=True, class_enable=0b111, credits_restart=False):
        """One clock cycle; returns the :class:`QueuesCycle` shown before the edge.
        ``credits_restart``: the peer restarted (nothing consumed; no credit
        until its limits come)."""
        shown = self.outputs()
        mask_s = (1 << self.stamp_bits) - 1
        heads = [d.r_data for d in self.descs]

        # ingress (this cycle's values)
        move = self.r_valid and self._room_in()
        r_last = bool(self.r_beat[2])
        p_arrive = move and r_last and self.r_cls == P
        arrive = move and r_last and self.r_cls != P and not self.held_free
        arrive_k = [arrive and self.r_cls == k for k in range(3)]
        desc_in = _Desc(self.p_in, self.c_in, self.held_free, self.held_credits, self.n_in,
                        self.count + 1, self.count == 0)

        # eligibility and the arbiter (registers)
        eligible, waiting = [], []
        for k in range(3):
            ready = self.descs[k].r_rdy if k == P or self.reorder_illegally \
                else self.order_ready[k]
            w = ready and bool(class_enable >> k & 1)
            waiting.append(w)
            eligible.append(w and self.credit_ok[k])
        pick = 0
        for k in range(3):
            if eligible[k] and all(not eligible[j] or self._older(k, j)
                                   for j in range(3) if j != k):
                pick = k
        sent = shown.tlp_out is not None and out_ready
        granted = (not self.busy or (sent and self.last_q)) and any(eligible)
        p_grant = granted and pick == P
        r_en = [granted and pick == k for k in range(3)]
        loads = [self.descs[k].load(r_en[k]) for k in range(3)]
        nexts = [self.descs[k].next_data for k in range(3)]

        # the posted TLPs each waits for
        unsent = self.unsent
        still = unsent > 1 if p_grant else unsent != 0
        last_out = p_grant and unsent == 1
        from_waits = self.waits.r_data
        released_any_next = list(self.released_any)
        released, tail = list(self.released), list(self.tail)
        rmask = (1 << self.cb) - 1
        for j, k in enumerate((NP, CPL)):
            r = self.released[k]
            now_free = arrive_k[k] and unsent == 0
            freed = ((r + 1 if arrive_k[k] and unsent <= 1 else r) +
                     (self.tail[j] if unsent == 1 else from_waits[j])) & rmask
            spent = granted and pick == k and not heads[k].free
            if p_grant:
                released[k] = freed
                released_any_next[k] = freed != 0
            elif spent:
                released[k] = r if now_free else (r - 1) & rmask
                released_any_next[k] = self.released_any[k] if now_free else r != 1
            else:
                released[k] = (r + 1) & rmask if now_free else r
                released_any_next[k] = now_free or self.released_any[k]
            if p_arrive or last_out:
                tail[j] = 0
            elif still and arrive_k[k]:
                tail[j] = (self.tail[j] + 1) & rmask
        waits_w = p_arrive and unsent != 0
        waits_r = (p_grant and unsent >= 2) or self.stale
        self.waits.clock(waits_w, tuple(self.tail), waits_r)
        self.stale = p_arrive and p_grant and unsent == 1
        self.unsent = unsent + int(p_arrive) - int(p_grant)
        self.released, self.tail = released, tail

        # the credit check and the order test, registered a cycle ahead
        credit_ok, order_ready = [], []
        for k in range(3):
            head, d = heads[k], self.descs[k]
            lim_h, lim_d = credit_limit[k]
            avail_h = (lim_h - self.consumed[k][0]) % (1 << HDR_BITS)
            avail_d = (lim_d - self.consumed[k][1]) % (1 << DATA_BITS)
            hdr1 = self._room(avail_h, 1, HDR_BITS)
            stable = hdr1 and self._room(avail_d, head.data_credits, DATA_BITS)
            idle = hdr1 and self._room(avail_d, self.max_credits, DATA_BITS)
            nxt = self._room(avail_h, 2, HDR_BITS) and \
                self._room(avail_d, head.data_credits + self.max_credits, DATA_BITS)
            credit_ok.append(not credits_enable or (nxt if r_en[k] else
                                                    (stable if d.r_rdy else idle))
                             and not credits_restart)
            free_next = nexts[k].free if loads[k] else head.free
            order_ready.append((loads[k] or (d.r_rdy and not r_en[k])) and
                               (free_next or released_any_next[k]))
            if waiting[k] and not self.credit_ok[k]:
                self.stall[k] = (self.stall[k] + 1) & 0xFFFFFFFF
        older = {}
        for (k, j) in self.older:
            hk, hj = (nexts[k] if loads[k] else heads[k]), (nexts[j] if loads[j] else heads[j])
            older[k, j] = bool(self._first(hk, hj))
        self.credit_ok, self.order_ready, self.released_any = credit_ok, order_ready, \
            released_any_next
        self.older = older

        # egress
        cur = self.cur
        if granted:
            h = heads[pick]
            c = self.consumed[pick]
            c[0], c[1] = (c[0] + 1) & 0xFF, (c[1] + h.data_credits) & 0xFFFF
            self.tlps_sent[pick] = (self.tlps_sent[pick] + 1) & 0xFFFFFFFF
            self.cur, self.busy, self.left, self.last_q = pick, True, h.beats, h.one
            self.cur_stamp = self.cur_posted = h.stamp
            self.cur_cpls = h.cpls
        elif sent:
            if self.last_q:
                self.busy = False
            self.left, self.last_q = self.left - 1, self.left == 2
        if credits_restart:
            self.consumed = [[0, 0] for _ in range(3)]
        for k in range(3):
            w_beat = move and self.r_cls == k
            w_desc = w_beat and r_last
            r_beat = sent and cur == k
            self.beats_room[k].clock(w_beat, r_beat)
            self.descs_room[k].clock(w_desc, r_en[k])
            self.beats[k].clock(w_beat, self.r_beat, r_beat)
            self.descs[k].clock(w_desc, desc_in, r_en[k])
        if move and r_last:
            self.n_in = (self.n_in + 1) & mask_s
            if self.r_cls == P:
                self.p_in = (self.p_in + 1) & mask_s
            elif self.r_cls == CPL:
                self.c_in = (self.c_in + 1) & mask_s

        # ingress (the edge)
        if move and self.r_cls == NP:
            self.np_open = not r_last
        if move:
            self.count = 0 if r_last else self.count + 1
        if beat is not None and shown.tlp_in_ready:
            data, keep, last = beat
            dw0 = data & 0xFFFFFFFF
            raw = dw0.to_bytes(4, "little") + bytes(8)
            cls, ro = tlp_class(raw)
            cls_now = cls if self.first else self.cls_held
            self.r_valid, self.r_beat, self.r_cls = True, (data, keep, int(last)), cls_now
            if self.first:
                self.held_free = cls_now == CPL and ro and ro_enable
                self.held_credits = data_credits(dw0)
            self.first, self.cls_held = bool(last), cls_now
        elif move:
            self.r_valid = False
        return shown
