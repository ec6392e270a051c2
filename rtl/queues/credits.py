"""Credit return: the receiving side of end-to-end flow control.

The receiver gives each class (posted, non-posted, completion) a buffer of
``hdr`` headers and ``data`` data credits (16-byte units) and advertises
cumulative limits: the buffer size plus every credit freed so far, modulo
``2**8`` (headers) and ``2**16`` (data), the widths of the bridge header's
credit fields. The sender (:class:`~tlpoe.rtl.queues.classq.ClassQueues`) sends a
TLP only while its class's limit covers it, so the buffers never overrun.

The three blocks of the loop, as the :class:`~tlpoe.rtl.bridge.bridge.Bridge` joins
them: :class:`CreditReturn` frees credits at the receive egress;
:class:`CreditAdvertiser` decides when our limits must go out in a frame of
their own; :class:`PeerCredits` keeps the limits the peer advertised, for
the transmit queues.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...models.credits_cycles import check_buffers, queue_credits
from ..streams import DATA_BITS, HDR_BITS, CreditLimit, TlpBeat, check_width
from ..tlp_header import CLASSES, TlpHeader

__all__ = ["CreditReturn", "CreditAdvertiser", "PeerCredits", "PEER_CREDITS_STAGES",
           "CreditLoop", "Limits",
           "queue_credits"]


def Limits():
    """One :class:`~tlpoe.rtl.streams.CreditLimit` per class (P, NP, Cpl)."""
    return data.ArrayLayout(CreditLimit(), len(CLASSES))


class CreditLoop(wiring.Signature):
    """The credit loop from the receive path to the transmit path:
    ``limit``, our cumulative limits (every frame sent carries them);
    ``peer_update`` pulses with ``peer_limit``, the limits a good frame of
    the peer advertised."""

    def __init__(self):
        super().__init__({"limit": Out(Limits()), "peer_update": Out(1),
                          "peer_limit": Out(Limits())})


class CreditReturn(wiring.Component):
    """Watches the receiver's TLP egress (``valid``: a beat taken; ``beat``)
    and frees each TLP's credits, one header and its data credits, two edges
    after the edge that takes its first beat (the beat's class and size are
    registered first). ``limit`` is the cumulative limit to advertise per
    class; ``freed`` the credits freed so far (cumulative, same widths).

    The peer restarted (docs/link-state.md): it counts what it consumes
    from 0 again, so ``rebase`` (a pulse, the link up after the restart)
    takes from ``limit`` the credits ``taken`` into the receive queues
    since the last rebase (their ingress, ``in_valid`` / ``in_beat``,
    counted as the egress is): the limit is then the free space, and grows
    with every credit freed as before.

    ``buffers`` gives, per class, ``(hdr, data)``: the receive buffer in
    headers (1..127) and 16-byte data credits (1..32767); the modular credit
    rule allows at most half of each counter's range outstanding.
    """

    def __init__(self, width, *, buffers=((32, 256), (16, 16), (32, 256))):
        check_width(width)
        self.width, self.buffers = width, check_buffers(buffers)
        super().__init__({
            "valid": In(1),
            "beat": In(TlpBeat(width)),
            "in_valid": In(1),
            "in_beat": In(TlpBeat(width)),
            "rebase": In(1),
            "limit": Out(Limits()),
            "freed": Out(Limits()),
        })

    @staticmethod
    def _first_beats(m, valid, beat, name):
        """Each TLP's first beat (``valid``, ``beat``), its class and data
        credits, registered: (seen, class, credits), a cycle late."""
        first = Signal(init=1, name=f"{name}_first")
        with m.If(valid):
            m.d.sync += first.eq(beat.last)
        hdr = TlpHeader(beat.data[:32])
        seen = Signal(name=f"{name}_seen")
        seen_cls = Signal(2, name=f"{name}_cls")
        seen_credits = Signal(9, name=f"{name}_credits")
        m.d.sync += [seen.eq(valid & first), seen_cls.eq(hdr.cls),
                     seen_credits.eq(hdr.data_credits)]
        return seen, seen_cls, seen_credits

    def elaborate(self, platform):
        m = Module()
        # The TLP's class and credits are registered before the counters
        # add them: the receive queue's FIFO read is not on the adders' path.
        seen, seen_cls, seen_credits = self._first_beats(m, self.valid, self.beat, "out")
        got, got_cls, got_credits = self._first_beats(m, self.in_valid, self.in_beat, "in")
        # The limit (freed + the buffer) is a counter of its own, moved with
        # `freed`: a register, not an adder on the advertiser's path.
        limit = Signal(Limits(), init=[{"hdr": hdr, "data": size} for hdr, size in self.buffers])
        taken = Signal(Limits())        # credits into the queues since the last rebase
        m.d.comb += self.limit.eq(limit)
        for k in range(len(self.buffers)):
            freed, now = self.freed[k], seen & (seen_cls == k)
            into = got & (got_cls == k)
            with m.If(now):
                m.d.sync += [freed.hdr.eq(freed.hdr + 1),
                             freed.data.eq(freed.data + seen_credits)]
            for part, one, c in (("hdr", 1, 1), ("data", seen_credits, got_credits)):
                lim, tk = getattr(limit[k], part), getattr(taken[k], part)
                plus = Mux(now, lim + one, lim)
                m.d.sync += [lim.eq(Mux(self.rebase, plus - tk, plus)),
                             tk.eq(Mux(self.rebase, 0, tk) + Mux(into, c, 0))]
        return m


class CreditAdvertiser(wiring.Component):
    """When our limits (``limit``, from :class:`CreditReturn`) must go out.

    Every frame sent carries them; ``sent`` (a frame taken by the Framer)
    makes them ``advertised``. ``request`` asks for a frame of our own (an
    ACK frame) when an eighth of a buffer's headers or data credits are
    freed and not yet advertised (a quarter left 127 header credits short
    of a 1 us hop at 100 Gb/s: ``make ber``'s clean point was credit-bound
    at 94% of the framing limit), when freed credits have waited ``delay``
    cycles, or when nothing was sent for ``refresh`` cycles (0: never), so
    that a lost update is sent again. ``frames`` counts the frames sent
    because of a request while no ACK was due anyway (``ack_due``).

    ``buffers``: per class, ``(hdr, data)`` credits of the receive buffer.
    """

    def __init__(self, *, buffers, delay=256, refresh=4096):
        self.buffers = check_buffers(buffers)
        if not 1 <= delay < 2 ** 16:
            raise ValueError(f"credit_delay must be 1..65535 cycles, not {delay!r}")
        if not 0 <= refresh < 2 ** 24:
            raise ValueError(f"credit_refresh must be 0..2**24-1 cycles, not {refresh!r}")
        super().__init__({
            "limit": In(Limits()),
            "sent": In(1),
            "ack_due": In(1),
            "delay": In(16, init=delay),
            "refresh": In(24, init=refresh),
            "advertised": Out(Limits()),
            "request": Out(1),
            "frames": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        limit, advertised = self.limit, self.advertised
        pending = Signal()
        m.d.comb += pending.eq(limit.as_value() != advertised.as_value())
        # an eighth of a buffer freed and not advertised: send now, the peer may be waiting
        eighths = []
        for k, (hdr, credits) in enumerate(self.buffers):
            for part, size, bits in (("hdr", hdr, HDR_BITS), ("data", credits, DATA_BITS)):
                unsent = Signal(bits, name=f"unsent_{CLASSES[k]}_{part}")
                m.d.comb += unsent.eq(getattr(limit[k], part) - getattr(advertised[k], part))
                eighths.append(unsent >= max(1, size // 8))
        waited = Signal(16)
        idle = Signal(24)
        # `request` is a register, worked out from registers a cycle ahead
        # (a frame sent clears it: what it asked for has gone out, and the
        # next cycle asks again from the new `advertised`)
        m.d.sync += self.request.eq(
            ~self.sent & (Cat(*eighths).any() | (pending & (waited >= self.delay)) |
                          ((self.refresh != 0) & (idle >= self.refresh))))
        with m.If(self.sent):
            m.d.sync += [advertised.eq(limit), waited.eq(0), idle.eq(0)]
            with m.If(self.request & ~self.ack_due):
                m.d.sync += self.frames.eq(self.frames + 1)
        with m.Else():
            with m.If(pending & (waited != 0xFFFF)):
                m.d.sync += waited.eq(waited + 1)
            with m.If(idle != 0xFFFFFF):
                m.d.sync += idle.eq(idle + 1)
        return m


#: Register stages in front of :class:`PeerCredits`' rule: a frame's credit
#: fields show in ``limit`` and ``invalid`` this many edges later than if
#: they were taken as they come.
PEER_CREDITS_STAGES = 1


class PeerCredits(wiring.Component):
    """The limits the peer advertised (``limit``, for the transmit queues),
    from each good frame's credit fields (``update``, ``received``).

    Cumulative: a limit never goes back to an older value (a late frame's),
    and never more than half the counter past what was ``consumed``: the
    flow-control test (rtl/queues/classq.py ``_room``) would read such a limit as
    exhausted, and every honest advertisement after it as older, so the
    class would stall for good. Those are counted in ``invalid``. (With
    ``enable`` clear, consumed runs past the limits: only the first rule
    holds.)

    ``restart`` (the peer restarted: it counts from 0 again) sets every
    limit to 0 until its first credit frame, and drops an update on its way.

    A frame's fields are registered here first and taken a cycle later:
    they come from the receive side's deframer, across the chip from the
    transmit queues that read ``limit`` (at 256 bits that wire was the
    Bridge's critical path).
    """

    def __init__(self):
        super().__init__({
            "update": In(1),
            "received": In(Limits()),
            "consumed": In(Limits()),
            "enable": In(1, init=1),
            "restart": In(1),           # the peer restarted: no limits until it sends some
            "limit": Out(Limits()),
            "invalid": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        update = Signal()
        received = Signal(Limits())
        m.d.sync += [update.eq(self.update), received.eq(self.received)]
        invalid = []
        for k in range(3):
            new, cur, consumed = received[k], self.limit[k], self.consumed[k]
            for part, bits in (("hdr", HDR_BITS), ("data", DATA_BITS)):
                name = f"{CLASSES[k]}_{part}"
                ahead = Signal(bits, name=f"ahead_{name}")
                room = Signal(bits, name=f"room_{name}")
                legal = Signal(name=f"legal_{name}")
                m.d.comb += [ahead.eq(getattr(new, part) - getattr(cur, part)),
                             room.eq(getattr(new, part) - getattr(consumed, part)),
                             legal.eq((room <= 1 << (bits - 1)) | ~self.enable)]
                with m.If(update & ~ahead[-1] & legal):
                    m.d.sync += getattr(cur, part).eq(getattr(new, part))
                invalid.append(~ahead[-1] & ~legal)
        with m.If(update & Cat(*invalid).any()):
            m.d.sync += self.invalid.eq(self.invalid + 1)
        with m.If(self.restart):        # (an update on its way is the old peer's)
            m.d.sync += [self.limit.eq(0), update.eq(0)]
        return m
