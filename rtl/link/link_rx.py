"""Receive side of the link layer: sequence check, ACK/NAK requests."""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...models import wire
from ...models.frame import FLAG_ECN_ECHO
from ..streams import RxDesc, ReorderDesc
from .link_common import LinkFeedback, check_mode, check_window, first_of

__all__ = ["LinkReceiver"]

FLAG_ACK_VALID = 1


class LinkReceiver(wiring.Component):
    """Sits on the deframer's verdicts (one :class:`~tlpoe.rtl.streams.RxDesc`
    per frame, passed from ``rx`` to ``out`` in the same cycle) and keeps the
    receive state of the link, go-back-N or selective repeat (``mode``).

    * A checked DATA frame whose sequence number is ``expected`` is delivered
      (``good`` kept).  Behind ``expected`` it is a duplicate (not delivered,
      counted, and an ACK is requested so the sender learns).  Ahead of it
      (after a gap) it is not delivered now: in go-back-N it is discarded
      (``out_of_order``) and a NAK is requested; in selective repeat see
      below.

    Go-back-N (``out`` is an ``RxDesc``):

    * A gap gets one NAK (``send_nak`` until the replay buffer sends it,
      ``sent_nak``) and no other while that NAK is outstanding, unless the
      NAK timer expires: it starts when the NAK is sent and stops when the
      gap closes (a frame accepted).  ``nak_timeout`` cycles after the NAK
      was sent, with the gap still open, the timer expires and ``send_nak``
      rises in the next cycle, so a lost NAK or a lost replay is asked for
      again; each NAK sent again counts in ``naks_repeated``.  A requested
      NAK not yet sent when the gap closes is cancelled.  ``nak_timeout``
      (a 24-bit run-time input) = 0 turns the timer off: one NAK per gap,
      and only the sender's replay timer recovers a lost one.

    Selective repeat (``out`` is a :class:`~tlpoe.rtl.streams.ReorderDesc`
    for a :class:`~tlpoe.rtl.link.reorder.ReorderBuffer` of ``window`` slots;
    ``d`` is the frame's distance ahead of ``expected``):

    * ``0 < d < window`` and not held yet: the frame is held (``store``;
      ``out_of_order_buffered``).  Held again: a duplicate (counted, no ACK
      requested).  ``d >= window`` (never from a conforming sender): discarded
      (``out_of_order``).
    * The frame ``expected`` is delivered together with the held frames that
      follow it without a gap (``release``); ``expected`` and the cumulative
      ack move past all of them, and ``frames_accepted`` counts them all.
    * Each sequence number found missing (below the highest held one, not
      held) gets one NAK of its own, ``nak_from`` = that number, lowest first;
      a number whose frame arrives before its NAK is sent gets none.
    * The NAK timer watches the lowest missing number, ``expected``: it starts
      when a NAK for ``expected`` is sent, restarts when ``expected`` moves
      on to a number already NAKed, and stops when no number is missing.
      ``nak_timeout`` cycles after it started, the NAK for ``expected`` is
      requested again (``naks_repeated`` when sent; before any NAK of a
      newly missing number).  ``nak_timeout`` = 0 turns it off.

    Both modes:

    * Every checked frame's cumulative ack and NAK go to the replay buffer
      (``feedback``, a :class:`~tlpoe.rtl.link.link_common.LinkFeedback`:
      ``ack_in``/``ack_seq``, ``nak_in``/``nak_seq``).
    * ACKs are coalesced: ``send_ack`` rises after ``ack_every`` delivered
      frames or ``ack_delay`` cycles after the first unacknowledged one, and
      falls when any frame carrying the ack leaves (``sent_ack``).

    The link state (docs/link-state.md): while ``up`` is 0, and in a cycle
    of ``adopt``, a frame is judged as one that failed its checks (not
    delivered, its ack and NAK not passed on, nothing counted). ``adopt``
    (a pulse: the link came up after a restart) makes ``adopt_base`` the
    next number expected and clears the rest: the ack is not valid, no ACK
    or NAK is due, no frame is held (a reorder buffer's slots are then free).
    """

    def __init__(self, *, max_words, seq_bits=12, ack_every=8, ack_delay=256, nak_timeout=1024,
                 mode="gbn", window=16):
        check_mode(mode)
        if mode == "sr":
            check_window(window, seq_bits, mode)
        if not 1 <= ack_every <= 255:
            raise ValueError(f"ack_every must be 1..255 frames, not {ack_every!r}")
        if not 1 <= ack_delay < 2 ** 16:
            raise ValueError(f"ack_delay must be 1..65535 cycles, not {ack_delay!r}")
        if not 0 <= nak_timeout < 2 ** 24:
            raise ValueError(f"nak_timeout must be 0..2**24-1 cycles (0: no NAK timer), "
                             f"not {nak_timeout!r}")
        self.seq_bits = seq_bits
        self.ack_every = ack_every
        self.mode, self.window = mode, window
        n = seq_bits
        verdict = RxDesc(max_words) if mode == "gbn" else ReorderDesc(max_words, window)
        sr_counters = {"out_of_order_buffered": Out(32)} if mode == "sr" else {}
        super().__init__({
            "rx": In(stream.Signature(RxDesc(max_words))),
            "out": Out(stream.Signature(verdict)),
            "ack_delay": In(16, init=ack_delay),
            "nak_timeout": In(24, init=nak_timeout),
            "up": In(1, init=1),            # the link state: UP
            "adopt": In(1),                 # take adopt_base as the next number expected
            "adopt_base": In(n),
            "feedback": Out(LinkFeedback(n)),
            "frames_accepted": Out(32),
            "duplicates": Out(32),
            "out_of_order": Out(32),
            "naks_repeated": Out(32),
            **sr_counters,
        })

    def elaborate(self, platform):
        m = Module()
        n = self.seq_bits
        fb = self.feedback
        gbn = self.mode == "gbn"
        expected = Signal(n)
        desc = self.rx.payload
        take = Signal()
        m.d.comb += [
            self.out.valid.eq(self.rx.valid),
            self.rx.ready.eq(self.out.ready),
            take.eq(self.rx.valid & self.rx.ready),
        ]
        is_data = desc.frame_type == wire.FrameType.DATA
        distance = Signal(n)
        m.d.comb += distance.eq(desc.seq[:n] - expected)
        ok = Signal()       # checked, and the link up (not adopting a base now)
        m.d.comb += ok.eq(desc.ok & self.up & ~self.adopt)
        in_order = Signal()
        behind = Signal()
        m.d.comb += [
            # an equality, not the subtraction's zero test: no carry chain
            # from the verdict to the acceptance (the 256-bit Bridge's
            # critical path ran deframer -> distance -> pending's adder)
            in_order.eq(ok & is_data & (desc.seq[:n] == expected)),
            behind.eq(ok & is_data & distance[n - 1]),
        ]
        ahead = Signal()
        m.d.comb += ahead.eq(ok & is_data & (distance != 0) & ~distance[n - 1])
        verdict = self.out.payload if gbn else self.out.payload.frame
        m.d.comb += [
            verdict.eq(desc),
            verdict.good.eq(desc.good & in_order),
            fb.ack_in.eq(take & ok & desc.flags[0]),
            fb.ack_seq.eq(desc.ack[:n]),
            fb.nak_in.eq(take & ok & (desc.frame_type == wire.FrameType.NAK)),
            fb.nak_seq.eq(desc.seq[:n]),
            fb.echo_in.eq(take & ok & desc.flags[FLAG_ECN_ECHO.bit_length() - 1]),
            fb.rx_ack.eq(expected - 1),
        ]
        if gbn:
            m.d.comb += fb.nak_from.eq(expected)

        accepted = Signal()
        m.d.comb += accepted.eq(take & in_order)
        if gbn:
            delivered, advance = 1, accepted
        else:
            delivered, advance = self._selective_repeat(m, expected, take, distance, in_order,
                                                        ahead, accepted)
        with m.If(accepted):
            m.d.sync += [expected.eq(expected + delivered), fb.rx_ack_valid.eq(1),
                         self.frames_accepted.eq(self.frames_accepted + delivered)]

        # ACK coalescing
        pending = Signal(8)
        age = Signal(16)
        pending_now = Signal(8)
        m.d.comb += pending_now.eq(Mux(fb.sent_ack, 0, pending))
        # both sums from registers; the acceptance picks
        m.d.sync += pending.eq(Mux(accepted, pending_now + delivered, pending_now))
        with m.If((pending_now == 0) & ~accepted):
            m.d.sync += age.eq(0)
        with m.Elif(age != 0xFFFF):
            m.d.sync += age.eq(age + 1)
        dup_ack = Signal()          # a duplicate arrived: acknowledge soon
        with m.If(take & behind):
            m.d.sync += [self.duplicates.eq(self.duplicates + 1), dup_ack.eq(1)]
        with m.Elif(fb.sent_ack):
            m.d.sync += dup_ack.eq(0)
        m.d.comb += fb.send_ack.eq(fb.rx_ack_valid & (
            dup_ack | (pending >= self.ack_every) | ((pending != 0) & (age >= self.ack_delay))))

        if gbn:
            nak_state = self._go_back_n_naks(m, take, ahead, accepted)
        else:
            nak_state = self._nak_state
        # the link came up after a restart: the peer's base, nothing else
        # (after every other assignment: it wins)
        with m.If(self.adopt):
            m.d.sync += [expected.eq(self.adopt_base), fb.rx_ack_valid.eq(0), pending.eq(0),
                         age.eq(0), dup_ack.eq(0), *(s.eq(0) for s in nak_state)]
        return m

    def _go_back_n_naks(self, m, take, ahead, accepted):
        """One NAK per gap, sent again while the gap stays open after
        ``nak_timeout``."""
        fb = self.feedback
        nak_done, nak_timer, nak_expired = self._nak_timer(m)
        with m.If(take & ahead):
            m.d.sync += self.out_of_order.eq(self.out_of_order + 1)
            with m.If(~nak_done):
                m.d.sync += fb.send_nak.eq(1)
        with m.If(nak_expired):
            m.d.sync += fb.send_nak.eq(1)
        with m.Elif(nak_done & (nak_timer < self.nak_timeout)):
            m.d.sync += nak_timer.eq(nak_timer + 1)
        with m.If(fb.sent_nak):
            m.d.sync += [fb.send_nak.eq(0), nak_done.eq(1), nak_timer.eq(1)]
            with m.If(nak_done):
                m.d.sync += self.naks_repeated.eq(self.naks_repeated + 1)
        with m.If(accepted):
            m.d.sync += [nak_done.eq(0), fb.send_nak.eq(0)]
        return nak_done, nak_timer, fb.send_nak

    def _nak_timer(self, m):
        """The NAK timer's state: ``nak_done`` (the NAK watched went out: the
        timer runs), ``nak_timer`` (cycles since, held at ``nak_timeout``) and
        ``nak_expired`` (that NAK is due again)."""
        nak_done = Signal()         # a NAK went out for the current gap
        nak_timer = Signal(24)      # cycles since it went out (held at nak_timeout)
        nak_expired = Signal()
        m.d.comb += nak_expired.eq(nak_done & (self.nak_timeout != 0) &
                                   (nak_timer >= self.nak_timeout))
        return nak_done, nak_timer, nak_expired

    def _selective_repeat(self, m, expected, take, distance, in_order, ahead, accepted):
        """The reorder verdicts, the NAK per missing number and the NAK timer
        of selective repeat; returns (frames delivered by an acceptance,
        frames delivered this cycle)."""
        fb = self.feedback
        W = self.window
        k = W.bit_length() - 1
        out = self.out.payload
        held = Signal(W)                # bit d: frame expected + d is held (bit 0 stays 0)
        top = Signal(range(W + 1))      # 1 + distance of the highest held frame; 0: none
        release = Signal(range(W))      # held frames right after expected
        m.d.comb += release.eq(first_of(held[1:], 0, W - 1))
        near = Signal()                 # ahead within the window
        again = Signal()                # ... and held already
        store = Signal()
        m.d.comb += [
            near.eq(ahead & (distance < W)),
            again.eq(near & held.bit_select(distance[:k], 1)),
            store.eq(near & ~again),
            out.store.eq(store),
            out.release.eq(Mux(in_order, release, 0)),
        ]
        with m.If(take & store):
            m.d.sync += self.out_of_order_buffered.eq(self.out_of_order_buffered + 1)
        with m.If(take & again):
            m.d.sync += self.duplicates.eq(self.duplicates + 1)
        with m.If(take & ahead & ~near):
            m.d.sync += self.out_of_order.eq(self.out_of_order + 1)
        delivered = Signal(range(W + 1))
        advance = Signal(range(W + 1))      # distances shrink by this much
        m.d.comb += [delivered.eq(release + 1), advance.eq(Mux(accepted, delivered, 0))]

        # NAKs: every number at a distance in [scan, top) not held still
        # needs its first NAK; repeat asks again for expected's
        scan = Signal(range(W + 1))
        repeat = Signal()
        scan_due = Signal()
        scan_held = Signal()
        m.d.comb += [
            scan_due.eq(scan < top),
            scan_held.eq(held.bit_select(scan[:k], 1)),
            fb.send_nak.eq(repeat | (scan_due & ~scan_held)),
            fb.nak_from.eq(Mux(repeat, expected, expected + scan)),
        ]
        top_next = Signal(range(W + 1))
        scan_next = Signal(range(W + 1))
        m.d.comb += [
            top_next.eq(Mux(take & store & (distance >= top), distance + 1, top)),
            scan_next.eq(scan + (scan_due & (scan_held | (fb.sent_nak & ~repeat)))),
        ]

        def moved(value):
            """A distance from ``expected`` after this cycle's acceptance."""
            return Mux(value > advance, value - advance, 0)

        newly = Mux(take & store, Const(1, 1) << distance[:k], 0)
        m.d.sync += [held.eq((held | newly) >> advance),
                     top.eq(moved(top_next)), scan.eq(moved(scan_next))]

        # the NAK timer of the lowest missing number
        nak_done, nak_timer, nak_expired = self._nak_timer(m)
        with m.If(nak_expired):
            m.d.sync += repeat.eq(1)
        with m.Elif(nak_done & (nak_timer < self.nak_timeout)):
            m.d.sync += nak_timer.eq(nak_timer + 1)
        with m.If(fb.sent_nak & (repeat | (scan == 0))):
            m.d.sync += [repeat.eq(0), nak_done.eq(1), nak_timer.eq(1)]
            with m.If(repeat):
                m.d.sync += self.naks_repeated.eq(self.naks_repeated + 1)
        with m.If(accepted):
            # expected moves on: watch its NAK if it already went out
            m.d.sync += [repeat.eq(0), nak_done.eq(moved(scan_next) != 0), nak_timer.eq(1)]
        self._nak_state = (held, top, scan, repeat, nak_done, nak_timer)
        return delivered, advance
