"""Receive side of the link layer: sequence check, ACK/NAK requests."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..models import wire
from .deframer import RxDesc

__all__ = ["LinkReceiver"]

FLAG_ACK_VALID = 1


class LinkReceiver(wiring.Component):
    """Sits on the deframer's verdicts (one :class:`~tlpoe.rtl.deframer.RxDesc`
    per frame, passed through from ``rx`` to ``out`` in the same cycle) and
    keeps the receive state of the go-back-N link.

    * A checked DATA frame whose sequence number is ``expected`` is delivered
      (``good`` kept); any other is not: behind ``expected`` it is a
      duplicate (counted, and an ACK is requested so the sender learns),
      ahead of it a gap (counted, and a NAK is requested).
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
    * Every checked frame's cumulative ack and NAK go to the replay buffer
      (``ack_in``/``ack_seq``, ``nak_in``/``nak_seq``).
    * ACKs are coalesced: ``send_ack`` rises after ``ack_every`` delivered
      frames or ``ack_delay`` cycles after the first unacknowledged one, and
      falls when any frame carrying the ack leaves (``sent_ack``).
    """

    def __init__(self, *, max_words, seq_bits=12, ack_every=8, ack_delay=256, nak_timeout=1024):
        if not 1 <= ack_every <= 255:
            raise ValueError(f"ack_every must be 1..255 frames, not {ack_every!r}")
        if not 1 <= ack_delay < 2 ** 16:
            raise ValueError(f"ack_delay must be 1..65535 cycles, not {ack_delay!r}")
        if not 0 <= nak_timeout < 2 ** 24:
            raise ValueError(f"nak_timeout must be 0..2**24-1 cycles (0: no NAK timer), "
                             f"not {nak_timeout!r}")
        self.seq_bits = seq_bits
        self.ack_every = ack_every
        n = seq_bits
        super().__init__({
            "rx": In(stream.Signature(RxDesc(max_words))),
            "out": Out(stream.Signature(RxDesc(max_words))),
            "ack_delay": In(16, init=ack_delay),
            "nak_timeout": In(24, init=nak_timeout),
            "rx_ack": Out(n),
            "rx_ack_valid": Out(1),
            "ack_in": Out(1),
            "ack_seq": Out(n),
            "nak_in": Out(1),
            "nak_seq": Out(n),
            "send_ack": Out(1),
            "send_nak": Out(1),
            "nak_from": Out(n),
            "sent_ack": In(1),
            "sent_nak": In(1),
            "frames_accepted": Out(32),
            "duplicates": Out(32),
            "out_of_order": Out(32),
            "naks_repeated": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.seq_bits
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
        in_order = Signal()
        behind = Signal()
        m.d.comb += [
            in_order.eq(desc.ok & is_data & (distance == 0)),
            behind.eq(desc.ok & is_data & distance[n - 1]),
        ]
        ahead = Signal()
        m.d.comb += ahead.eq(desc.ok & is_data & (distance != 0) & ~distance[n - 1])
        m.d.comb += [
            self.out.payload.eq(desc),
            self.out.payload.good.eq(desc.good & in_order),
            self.ack_in.eq(take & desc.ok & desc.flags[0]),
            self.ack_seq.eq(desc.ack[:n]),
            self.nak_in.eq(take & desc.ok & (desc.frame_type == wire.FrameType.NAK)),
            self.nak_seq.eq(desc.seq[:n]),
            self.rx_ack.eq(expected - 1),
            self.nak_from.eq(expected),
        ]

        accepted = Signal()
        m.d.comb += accepted.eq(take & in_order)
        with m.If(accepted):
            m.d.sync += [expected.eq(expected + 1), self.rx_ack_valid.eq(1),
                         self.frames_accepted.eq(self.frames_accepted + 1)]

        # ACK coalescing
        pending = Signal(8)
        age = Signal(16)
        pending_now = Signal(8)
        m.d.comb += pending_now.eq(Mux(self.sent_ack, 0, pending))
        m.d.sync += pending.eq(pending_now + accepted)
        with m.If((pending_now == 0) & ~accepted):
            m.d.sync += age.eq(0)
        with m.Elif(age != 0xFFFF):
            m.d.sync += age.eq(age + 1)
        dup_ack = Signal()          # a duplicate arrived: acknowledge soon
        with m.If(take & behind):
            m.d.sync += [self.duplicates.eq(self.duplicates + 1), dup_ack.eq(1)]
        with m.Elif(self.sent_ack):
            m.d.sync += dup_ack.eq(0)
        m.d.comb += self.send_ack.eq(self.rx_ack_valid & (
            dup_ack | (pending >= self.ack_every) | ((pending != 0) & (age >= self.ack_delay))))

        # one NAK per gap, sent again while the gap stays open after nak_timeout
        nak_done = Signal()         # a NAK went out for the current gap
        nak_timer = Signal(24)      # cycles since it went out (held at nak_timeout)
        nak_expired = Signal()
        m.d.comb += nak_expired.eq(nak_done & (self.nak_timeout != 0) &
                                   (nak_timer >= self.nak_timeout))
        with m.If(take & ahead):
            m.d.sync += self.out_of_order.eq(self.out_of_order + 1)
            with m.If(~nak_done):
                m.d.sync += self.send_nak.eq(1)
        with m.If(nak_expired):
            m.d.sync += self.send_nak.eq(1)
        with m.Elif(nak_done & (nak_timer < self.nak_timeout)):
            m.d.sync += nak_timer.eq(nak_timer + 1)
        with m.If(self.sent_nak):
            m.d.sync += [self.send_nak.eq(0), nak_done.eq(1), nak_timer.eq(1)]
            with m.If(nak_done):
                m.d.sync += self.naks_repeated.eq(self.naks_repeated + 1)
        with m.If(accepted):
            m.d.sync += [nak_done.eq(0), self.send_nak.eq(0)]
        return m
