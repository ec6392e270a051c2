"""The credit loop in cycles, as the RTL builds it (``rtl/queues/credits.py``):
the twins of :class:`~tlpoe.rtl.queues.credits.CreditReturn` (credits
freed at the receive egress), :class:`~tlpoe.rtl.queues.credits.PeerCredits`
(the limits the peer advertised, ``invalid``) and
:class:`~tlpoe.rtl.queues.credits.CreditAdvertiser` (when our limits need a
frame of their own: the replay buffer's ``send_credit``, flag bit 1).

Each in the manner of :mod:`tlpoe.models.framing_cycles`: :meth:`outputs`
is what the block shows in a cycle, :meth:`step` takes one cycle's inputs,
returns what was shown before the edge and moves the registers across it.
``tests/test_credits_twin.py`` proves each against its RTL block in
amaranth.sim, every output every cycle. The rules themselves are
:mod:`tlpoe.models.ordering`'s (:func:`~tlpoe.models.ordering.take_credit_limit`);
the sizing is :func:`queue_credits`, which the RTL imports.
"""

from collections import namedtuple

from .ordering import take_credit_limit
from .queues_cycles import DATA_BITS, HDR_BITS, data_credits, tlp_class

__all__ = ["HDR_BITS", "DATA_BITS", "TLP_OVERHEAD_BYTES", "check_buffers", "queue_credits",
           "CycleCreditReturn", "CyclePeerCredits", "CycleCreditAdvertiser"]

#: Most header bytes a TLP brings besides its payload: a 4-DW header and a digest.
TLP_OVERHEAD_BYTES = 20
_MASKS = ((1 << HDR_BITS) - 1, (1 << DATA_BITS) - 1)


def check_buffers(buffers):
    """``buffers``: per class, ``(hdr, data)`` credits; raise naming it."""
    if len(buffers) != 3:
        raise ValueError(f"buffers must give (hdr, data) for 3 classes, not {buffers!r}")
    for k, (hdr, credits) in enumerate(buffers):
        if not 1 <= hdr < 2 ** (HDR_BITS - 1):
            raise ValueError(f"buffers[{k}] header credits must be 1..127, not {hdr!r}")
        if not 1 <= credits < 2 ** (DATA_BITS - 1):
            raise ValueError(f"buffers[{k}] data credits must be 1..32767, not {credits!r}")
    return tuple(tuple(b) for b in buffers)


def queue_credits(width, depth, tlps):
    """The ``(hdr, data)`` credits a receive queue of ``depth`` beats and
    ``tlps`` descriptors can promise: ``tlps`` headers (at most 127) and as
    many 16-byte data credits as the beats left over hold in the worst case.
    A TLP of ``c`` data credits takes at most ``(20 + 16c) / Wb + 1`` beats
    of ``Wb`` bytes, so ``hdr`` TLPs with ``data`` credits in all fit when
    ``(20 hdr + 16 data) / Wb + hdr <= depth``."""
    wb = width // 8
    hdr = min(tlps, 2 ** (HDR_BITS - 1) - 1)
    credits = (wb * (depth - hdr) - TLP_OVERHEAD_BYTES * hdr) // 16
    return hdr, max(0, min(credits, 2 ** (DATA_BITS - 1) - 1))


def _limits(limit):
    return [tuple(x) for x in limit]


#: What the credit return shows: ``limit`` (to advertise) and ``freed``,
#: each per class ``(hdr, data)``.
ReturnCycle = namedtuple("ReturnCycle", "limit freed")


class _FirstBeats:
    """Each TLP's first beat, its class and data credits registered (the
    RTL's ``CreditReturn._first_beats``)."""

    def __init__(self):
        self.first, self.seen, self.cls, self.credits = True, False, 0, 0

    def clock(self, valid, beat):
        dw0 = beat[0] & 0xFFFFFFFF
        self.seen = bool(valid and self.first)
        self.cls = tlp_class(dw0.to_bytes(4, "little") + bytes(8))[0]
        self.credits = data_credits(dw0)
        if valid:
            self.first = bool(beat[2])


class CycleCreditReturn:
    """:class:`~tlpoe.rtl.queues.credits.CreditReturn`: a TLP whose first
    beat is taken (``valid``, ``beat`` ``(data, keep, last)``) frees one
    header and its data credits two edges later (its class and credits
    are registered first); the queues' ingress (``in_valid``, ``in_beat``)
    is counted the same way into ``taken``, which ``rebase`` takes from
    the limit (the peer restarted)."""

    def __init__(self, buffers=((32, 256), (16, 16), (32, 256))):
        self.buffers = check_buffers(buffers)
        self.reset()

    def reset(self):
        self.out, self.into = _FirstBeats(), _FirstBeats()
        self.freed = [(0, 0)] * 3
        self.taken = [(0, 0)] * 3
        self.limit = [tuple(b) for b in self.buffers]

    def outputs(self):
        return ReturnCycle(list(self.limit), list(self.freed))

    def step(self, *, valid=False, beat=(0, 0, 0), in_valid=False, in_beat=(0, 0, 0),
             rebase=False):
        shown = self.outputs()
        out, into = self.out, self.into
        if out.seen:
            k, c = out.cls, out.credits
            for reg in (self.freed, self.limit):
                h, d = reg[k]
                reg[k] = ((h + 1) & _MASKS[0], (d + c) & _MASKS[1])
        if rebase:
            self.limit = [((h - th) & _MASKS[0], (d - td) & _MASKS[1])
                          for (h, d), (th, td) in zip(self.limit, self.taken)]
            self.taken = [(0, 0)] * 3
        if into.seen:
            k, c = into.cls, into.credits
            h, d = self.taken[k]
            self.taken[k] = ((h + 1) & _MASKS[0], (d + c) & _MASKS[1])
        out.clock(valid, beat)
        into.clock(in_valid, in_beat)
        return shown


class CyclePeerCredits:
    """:class:`~tlpoe.rtl.queues.credits.PeerCredits`: on ``update`` each
    field of ``received`` is taken by
    :func:`~tlpoe.models.ordering.take_credit_limit` against ``consumed``
    (``enable``: credits enforced); ``invalid`` counts the updates with a
    field refused as invalid. Outputs (``limit``, ``invalid``) are the
    attributes, registers. A frame's fields are registered first and taken
    at the next edge (against that cycle's ``consumed``)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.limit = [(0, 0)] * 3
        self.invalid = 0
        self._pending = None

    def step(self, *, update=False, received=((0, 0),) * 3, consumed=((0, 0),) * 3,
             enable=True, restart=False):
        """One edge; returns ``(limit, invalid)`` shown before it.
        ``restart``: every limit 0, an update on its way dropped."""
        shown = (list(self.limit), self.invalid)
        pending, self._pending = self._pending, (tuple(received) if update else None)
        if pending is not None:
            received = pending
            limit, bad = [], False
            for cur, new, used in zip(self.limit, received, consumed):
                parts = []
                for i, bits in enumerate((HDR_BITS, DATA_BITS)):
                    value, invalid = take_credit_limit(cur[i], new[i], used[i], bits, enable)
                    parts.append(value)
                    bad |= invalid
                limit.append(tuple(parts))
            self.limit = limit
            if bad:
                self.invalid = (self.invalid + 1) & 0xFFFFFFFF
        if restart:
            self.limit, self._pending = [(0, 0)] * 3, None
        return shown


class CycleCreditAdvertiser:
    """:class:`~tlpoe.rtl.queues.credits.CreditAdvertiser`: when a
    receiver's credit limits must go out in a frame of their own.

    ``buffers``: per class ``(hdr, data)`` credits; ``delay`` and
    ``refresh`` the run-time inputs (cycles; refresh 0: never). Each cycle,
    :meth:`wants` says whether a frame is to be asked for, from the limits
    (``[(hdr, data)] * 3``, cumulative) and the state; :attr:`request` is
    that answer of the cycle before (a register), cleared by a frame sent;
    :meth:`step` advances one clock edge (``sent``: a frame took the
    limits; ``ack_due``: an ACK frame was due anyway, so a credit frame is
    not counted in :attr:`frames`)."""

    HDR_BITS, DATA_BITS = HDR_BITS, DATA_BITS

    def __init__(self, buffers, delay=256, refresh=4096):
        self.buffers = check_buffers(buffers)
        self.delay, self.refresh = delay, refresh
        self.reset()

    def reset(self):
        self.advertised = [(0, 0)] * len(self.buffers)
        self.waited = self.idle = self.frames = 0
        self.request = False

    def _unsent(self, limit):
        return [((lh - ah) % (1 << HDR_BITS), (ld - ad) % (1 << DATA_BITS))
                for (lh, ld), (ah, ad) in zip(limit, self.advertised)]

    def wants(self, limit):
        eighth = any(uh >= max(1, hdr // 8) or ud >= max(1, data // 8)
                     for (uh, ud), (hdr, data) in zip(self._unsent(limit), self.buffers))
        pending = _limits(limit) != self.advertised
        return (eighth or (pending and self.waited >= self.delay) or
                (self.refresh != 0 and self.idle >= self.refresh))

    def step(self, limit, sent, ack_due=False):
        """One edge; returns ``(request, advertised, frames)`` shown before it."""
        shown = (self.request, list(self.advertised), self.frames)
        want = self.wants(limit)
        if sent:
            if self.request and not ack_due:
                self.frames = (self.frames + 1) & 0xFFFFFFFF
            self.advertised = _limits(limit)
            self.waited = self.idle = 0
            self.request = False
            return shown
        self.request = want
        if _limits(limit) != self.advertised and self.waited != 0xFFFF:
            self.waited += 1
        if self.idle != 0xFFFFFF:
            self.idle += 1
        return shown
