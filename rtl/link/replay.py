"""Replay buffer and transmit scheduler of the link layer (go-back-N or
selective repeat)."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...models import transport as tp
from ...models import wire
from ..streams import FrameDesc, TxDesc, check_width
from .link_common import LinkFeedback, check_mode, check_window, first_of

__all__ = ["ReplayBuffer"]

from ...models.frame import FLAG_ACK_VALID, FLAG_ECN_ECHO


class ReplayBuffer(wiring.Component):
    """Keeps every DATA frame body until its sequence number is acknowledged,
    and decides what the framer sends next.

    Write side: the packer's ``words`` and ``desc`` (one frame each); frame
    ``tail`` goes to slot ``tail mod window``.  When ``window`` frames are
    unacknowledged, ``words`` is backpressured: nothing is ever dropped.

    Read side: ``tx_desc`` (a :class:`~tlpoe.rtl.streams.TxDesc`) then, for a
    DATA frame, its body on ``tx_words``.  The next frame is chosen from
    registers only and committed to a register one cycle before it can be
    offered; a frame committed goes out before anything chosen later.
    Priority: a NAK the receiver asked for, then a DATA frame (``send_ptr``),
    then an ACK frame of its own (only when no DATA frame can carry the ack:
    ``feedback.send_ack``, or ``send_credit`` for the credit loop); every
    frame carries the receiver's cumulative ``rx_ack`` as it is when the
    framer takes the frame (``rx_ack_valid`` sets flag bit 0).  A DATA frame
    committed and not yet taken is withdrawn when an ACK covered it, in
    go-back-N by a replay (which starts with the frame it names), and in
    selective repeat, when it is a new frame, by a resend queued.

    ``feedback`` (:class:`~tlpoe.rtl.link.link_common.LinkFeedback`) is the local
    receiver's; its inputs act one cycle late (they are registered here).
    A replay event (a NAK accepted, an expiry) is found in that cycle and
    carried out in the next; nothing is committed while it is.

    Acknowledgements (``ack_in``: cumulative, from the peer's frames) release
    slots.  An ACK or NAK may name only a frame that was sent, that is whose
    last beat the MAC took (``data_sent``, ``data_sent_seq``: the Framer's
    report): one ahead of the highest sent (stored, taken by the Framer but
    still waiting for the MAC, or never stored) is ignored and counted in ``acks_invalid`` / ``naks_invalid``; one behind
    ``head`` is old and ignored.  ``nak_in`` (for ``nak_seq``) and the replay timer
    (``replay_timeout`` cycles without progress while sent frames are
    unacknowledged) are replay events, which ``mode`` handles:

    * ``"gbn"`` (go-back-N): the NAK for a sent, unacknowledged ``s`` rewinds
      ``send_ptr`` to ``s``, an expiry to the oldest unacknowledged frame, and
      every frame from there is sent again in order;
    * ``"sr"`` (selective repeat): the NAK for a sent, unacknowledged ``s``
      queues frame ``s`` alone for resending, an expiry the oldest
      unacknowledged frame alone.  The queue is a bitmap of ``window`` bits,
      one per unacknowledged frame (a frame is queued at most once, and not
      while it is the frame committed); queued frames go before new DATA
      frames, the lowest sequence number first.

    After ``max_retries`` consecutive timer expiries without progress
    ``retry_limit`` pulses (in the cycle of the last expiry) and
    ``link_down_events`` counts it: the link state above (the
    :class:`~tlpoe.rtl.link.link_state.LinkStateMachine`, or a latch) takes
    ``up`` away.

    The link state (docs/link-state.md): while ``up`` is 0 no DATA, ACK or
    NAK frame is committed or offered (one committed is withdrawn), the
    replay timer and the retry count stay at 0, and only KEEPALIVE frames
    go out. ``keepalive_due`` asks for a KEEPALIVE frame (its ``seq`` the
    ``head`` as it is when the framer takes it, its ``base``): the lowest
    priority while up, after an ACK frame. ``rewind`` (a pulse, the link came up) resends every frame sent
    and not acknowledged (go-back-N: a replay to ``head``; selective
    repeat: each one queued), counted in ``replays_link``. ``drop`` (a
    pulse, the peer restarted) forgets every frame stored: ``head``,
    ``send_ptr`` and the sent marks jump to ``tail`` and the frames are
    counted in ``frames_dropped`` (a frame being read out finishes).
    ``frame_sent`` and ``keepalive_sent`` pulse when the framer takes a
    frame, a KEEPALIVE frame.

    Congestion control (docs/transports.md): a DATA frame (new or resent)
    is committed only while ``rate_ok`` (the rate limiter's token bucket);
    ``echo`` (the CNP generator: our peer's frames arrived marked CE) sets
    ``FLAG_ECN_ECHO`` in the frame the framer takes, asks for an ACK frame
    when no other frame is committed, and ``echo_sent`` pulses when a frame
    carrying it is taken.

    Sequence numbers are ``seq_bits`` wide and wrap; ``window`` (a power of two
    below ``2**(seq_bits-1)``, at least 2 in selective repeat) is the replay
    buffer depth in frames.
    """

    def __init__(self, width, *, mtu=1500, window=16, seq_bits=12, max_retries=8,
                 replay_timeout=4096, mode="gbn", transport="eth"):
        check_mode(mode)
        check_width(width)
        #: The TLP area's first byte in a frame (the transport's headers before it).
        self.area_at = tp.area_offset(transport)
        if mtu not in wire.MTUS:
            raise ValueError(f"mtu must be one of {wire.MTUS}, not {mtu!r}")
        if not 2 <= seq_bits <= 32:
            raise ValueError(f"seq_bits must be 2..32, not {seq_bits!r}")
        check_window(window, seq_bits, mode)
        if not 1 <= max_retries <= 255:
            raise ValueError(f"max_retries must be 1..255, not {max_retries!r}")
        if not 1 <= replay_timeout < 2 ** 24:
            raise ValueError(f"replay_timeout must be 1..2**24-1 cycles, not {replay_timeout!r}")
        self.width, self.mtu, self.window, self.seq_bits = width, mtu, window, seq_bits
        self.max_retries, self.mode = max_retries, mode
        wb = width // 8
        body_words = -(-(self.area_at + tp.body_capacity(mtu, transport)) // wb)
        self.slot_words = 1 << (body_words - 1).bit_length()
        seq = seq_bits
        super().__init__({
            "words": In(stream.Signature(width)),
            "desc": In(stream.Signature(FrameDesc())),
            "tx_desc": Out(stream.Signature(TxDesc())),
            "tx_words": Out(stream.Signature(width)),
            "feedback": In(LinkFeedback(seq)),
            "send_credit": In(1),       # an ACK frame is due for the credit advertisement
            "data_sent": In(1),         # the MAC took the last beat of DATA frame ...
            "data_sent_seq": In(seq),   # ... this one (the Framer's report)
            "replay_timeout": In(24, init=replay_timeout),
            "up": In(1, init=1),        # the link state: UP
            "rewind": In(1),            # the link came up: resend what is not acknowledged
            "drop": In(1),              # the peer restarted: forget the frames stored
            "keepalive_due": In(1),     # a KEEPALIVE frame is due
            "rate_ok": In(1, init=1),   # the rate limiter lets a DATA frame be committed
            "echo": In(1),              # a congestion echo is due (the CNP generator)
            "echo_sent": Out(1),        # the framer took a frame carrying it
            "retry_limit": Out(1),      # the last of max_retries expiries (a pulse)
            "frame_sent": Out(1),       # the framer took a frame ...
            "keepalive_sent": Out(1),   # ... a KEEPALIVE frame
            "unacked": Out(range(window + 1)),
            "replays_nak": Out(32),
            "replays_timeout": Out(32),
            "frames_retransmitted": Out(32),
            "link_down_events": Out(32),
            "acks_sent": Out(32),
            "naks_sent": Out(32),
            "window_full_cycles": Out(32),
            "acks_invalid": Out(32),
            "naks_invalid": Out(32),
            "replays_link": Out(32),
            "frames_dropped": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        W, wb, n = self.width, self.width // 8, self.seq_bits
        gbn = self.mode == "gbn"
        slot_bits = (self.window - 1).bit_length()
        word_bits = (self.slot_words - 1).bit_length()
        first_word = self.area_at // wb
        fb = self.feedback

        m.submodules.body = body = Memory(shape=W, depth=self.window * self.slot_words, init=[])
        m.submodules.descs = descs = Memory(shape=FrameDesc(), depth=self.window, init=[])
        body_w = body.write_port()
        body_r = body.read_port()
        desc_w = descs.write_port()
        desc_r = descs.read_port(domain="comb")

        head = Signal(n)        # oldest unacknowledged frame
        tail = Signal(n)        # next frame to store
        send_ptr = Signal(n)    # next frame to send (go-back-N) / next new frame (selective repeat)
        high = Signal(n)        # one past the highest sequence ever taken by the framer
        on_wire = Signal(n)     # one past the highest sequence whose last beat the MAC took
        wr_word = Signal(word_bits + 1)
        in_flight = Signal(n)
        m.d.comb += [in_flight.eq(tail - head), self.unacked.eq(in_flight)]

        def slot(seq):
            return seq[:slot_bits] if slot_bits else Const(0, 1)

        def mod(value, name):
            """``value`` modulo 2**n, as an n-bit unsigned signal (differences
            of sequence numbers are only meaningful modulo the sequence space)."""
            sig = Signal(n, name=name)
            m.d.comb += sig.eq(value)
            return sig

        def within(seq, low, span):
            """``seq`` in [low, low + span) modulo 2**n (``span`` <= 2**n - 1)."""
            return mod(seq - low, "offset") < span

        def ahead(seq, low):
            """``seq`` in the half of the sequence space after ``low`` (or at it)."""
            return ~mod(seq - low, "distance")[n - 1]

        # --- the committed frame: the next one the framer takes ------------------------
        # ``held`` is chosen one cycle or more before the framer takes it (a
        # register between the choice and the Framer); its ``flags`` and
        # ``ack`` are read live when it is taken.
        held = Signal(TxDesc())
        held_valid = Signal()
        held_data = Signal()            # a DATA frame ...
        held_resend = Signal()          # ... sent before
        held_nak = Signal()
        held_ka = Signal()              # a KEEPALIVE frame
        held_words = Signal(word_bits + 1)      # its body words
        words_left = Signal(word_bits + 1)      # body words still to fetch (the reader)
        out_valid = Signal()                    # tx_words holds a word
        reader_idle = Signal()
        m.d.comb += reader_idle.eq((words_left == 0) & ~out_valid)
        taken = Signal()
        # A NAK committed is a NAK only while the receiver still asks for it:
        # once the gap closed (the frame arrived) it would name the number
        # that the live ack, one higher now, says was received. It then goes
        # out as an ACK frame, which carries that ack (the model's rule: a
        # NAK still queued when its frame arrives is not sent). The frame
        # goes either way, so the check stays off the framer's handshake.
        stale_nak = Signal()
        m.d.comb += stale_nak.eq(held_nak & ~(fb.send_nak & (fb.nak_from == held.seq[:n])))
        m.d.comb += [
            self.tx_desc.payload.eq(held),
            self.tx_desc.payload.frame_type.eq(Mux(stale_nak, wire.FrameType.ACK,
                                                   held.frame_type)),
            # a KEEPALIVE's base is the head as it is when the framer takes
            # it (after a drop in this cycle: the tail)
            self.tx_desc.payload.seq.eq(Mux(held_ka, Mux(self.drop, tail, head),
                                            Mux(stale_nak, 0, held.seq))),
            self.tx_desc.payload.flags.eq(Mux(fb.rx_ack_valid, FLAG_ACK_VALID, 0) |
                                          Mux(self.echo, FLAG_ECN_ECHO, 0)),
            self.tx_desc.payload.ack.eq(fb.rx_ack),
            self.tx_desc.valid.eq(held_valid & reader_idle & (self.up | held_ka)),
            taken.eq(self.tx_desc.valid & self.tx_desc.ready),
            self.frame_sent.eq(taken),
            self.keepalive_sent.eq(taken & held_ka),
            self.echo_sent.eq(taken & self.echo),
            fb.sent_ack.eq(taken),
            fb.sent_nak.eq(taken & held_nak & ~stale_nak),
        ]

        # --- the receiver's feedback, one cycle late ------------------------------------
        # A request is dropped in the cycle its frame is taken: the receiver
        # withdraws it in the same edge, and the register would repeat it.
        ack_in, nak_in, send_ack, send_nak = Signal(), Signal(), Signal(), Signal()
        ack_seq, nak_seq, nak_from = Signal(n), Signal(n), Signal(n)
        m.d.sync += [
            ack_in.eq(fb.ack_in), ack_seq.eq(fb.ack_seq),
            nak_in.eq(fb.nak_in), nak_seq.eq(fb.nak_seq),
            send_ack.eq((fb.send_ack | self.send_credit | self.echo) & ~taken),
            send_nak.eq(fb.send_nak & ~(taken & held_nak)),
            nak_from.eq(fb.nak_from),
        ]

        # --- store --------------------------------------------------------------
        # A slot stays taken while its frame is committed or being read out,
        # even when an ACK released it meanwhile (a frame resent, or a lie):
        # a new frame written there would go out as part of the old one.
        full = Signal()
        rd_addr = Signal(word_bits + slot_bits)
        reading = Signal()
        if slot_bits:
            m.d.comb += reading.eq(
                ((words_left != 0) & (rd_addr[word_bits:] == slot(tail))) |
                (held_valid & held_data & (slot(held.seq) == slot(tail))))
        else:
            m.d.comb += reading.eq((words_left != 0) | (held_valid & held_data))
        # ``in_flight == window``, kept in a register (``at_window``) worked out
        # from this cycle's next tail and head: the store's ``ready`` then does
        # not wait for the ``tail - head`` subtraction (in the 256-bit Bridge,
        # head -> tail - head -> ready -> the packer's slice -> the body's
        # write enables was the critical path)
        at_window = Signal()
        m.d.comb += full.eq(at_window | reading)
        m.d.comb += [
            self.words.ready.eq(~full),
            self.desc.ready.eq(~full),
            body_w.addr.eq(Cat(wr_word[:word_bits], slot(tail)) if slot_bits else wr_word[:word_bits]),
            body_w.data.eq(self.words.payload),
            body_w.en.eq(self.words.valid & self.words.ready),
            desc_w.addr.eq(slot(tail)),
            desc_w.data.eq(self.desc.payload),
            desc_w.en.eq(self.desc.valid & self.desc.ready),
        ]
        with m.If(self.words.valid & self.words.ready):
            m.d.sync += wr_word.eq(wr_word + 1)
        with m.If(full & (self.words.valid | self.desc.valid)):
            m.d.sync += self.window_full_cycles.eq(self.window_full_cycles + 1)
        with m.If(self.desc.valid & self.desc.ready):
            m.d.sync += [tail.eq(tail + 1), wr_word.eq(0)]

        # --- acknowledgements, NAKs and the replay timer -----------------------------
        # An ACK or NAK may name only a frame that was sent: one stored but not
        # sent yet (the MAC holding frame_out) or never stored is counted and
        # ignored; one behind head is old and ignored silently.  An ACK moves
        # head at once; a replay event (a NAK, the timer) is found in that
        # cycle and carried out in the next (``replaying``, ``replay_to``).
        with m.If(self.data_sent & ahead(self.data_sent_seq, on_wire)):
            m.d.sync += on_wire.eq(self.data_sent_seq + 1)
        sent_span = mod(high - head, "sent_span")       # frames framed, not acknowledged
        wire_span = mod(on_wire - head, "wire_span")    # ... of them on the wire
        ack_ok = Signal()
        m.d.comb += ack_ok.eq(ack_in & within(ack_seq, head, wire_span))
        with m.If(ack_in & ~ack_ok & ahead(ack_seq, head)):
            m.d.sync += self.acks_invalid.eq(self.acks_invalid + 1)
        new_head = Signal(n)
        m.d.comb += new_head.eq(Mux(ack_ok, ack_seq + 1, head))
        m.d.sync += head.eq(new_head)
        # from this cycle's count and frame, not its ACK: a slot an ACK frees
        # is free for the packer a cycle later (the ACK's check is not on
        # the path: its three carry chains in a row were the 128-bit
        # Bridge's critical path, and over the replay buffer's LUT budget)
        fire = self.desc.valid & self.desc.ready
        m.d.sync += at_window.eq(Mux(fire, in_flight == self.window - 1,
                                     in_flight == self.window))
        nak_ok = Signal()
        m.d.comb += nak_ok.eq(nak_in & within(nak_seq, head, wire_span))
        with m.If(nak_in & ~nak_ok & ahead(nak_seq, head)):
            m.d.sync += self.naks_invalid.eq(self.naks_invalid + 1)

        timer = Signal(24)
        retries = Signal(8)
        expired = Signal()
        awaiting = Signal()     # frames sent and not yet acknowledged
        m.d.comb += [awaiting.eq(sent_span != 0),
                     expired.eq(awaiting & ~ack_in & (timer >= self.replay_timeout))]
        event = Signal()        # a replay event found this cycle
        m.d.comb += event.eq((nak_ok | expired) & self.up)
        replaying = Signal()    # ... carried out this cycle
        replay_to = Signal(n)   # the frame it names: the NAK's, or the oldest
        # (a rewind: a replay to head, in go-back-N)
        rewinding = self.rewind if gbn else Const(0)
        m.d.sync += [replaying.eq(event | rewinding),
                     replay_to.eq(Mux(nak_ok & ~rewinding, nak_seq, head))]
        with m.If(self.rewind):
            m.d.sync += self.replays_link.eq(self.replays_link + 1)
        # (cleared on an event, or while down: the same terms written out,
        # so the clear does not wait for the event's AND with up)
        with m.If(ack_ok | ~awaiting | nak_ok | (~ack_in & (timer >= self.replay_timeout)) |
                  ~self.up):
            m.d.sync += timer.eq(0)
        with m.Elif(timer != (1 << 24) - 1):
            m.d.sync += timer.eq(timer + 1)
        m.d.comb += self.retry_limit.eq(event & ~nak_ok & (retries + 1 >= self.max_retries))
        with m.If(event):
            with m.If(nak_ok):
                m.d.sync += self.replays_nak.eq(self.replays_nak + 1)
            with m.Else():
                m.d.sync += [self.replays_timeout.eq(self.replays_timeout + 1),
                             retries.eq(retries + 1)]
        # (at the limit the link state takes `up` away, which clears it)
        with m.If(ack_ok | ~self.up):
            m.d.sync += retries.eq(0)
        with m.If(self.retry_limit):
            m.d.sync += self.link_down_events.eq(self.link_down_events + 1)

        # --- the choice of the next frame, from registers only -----------------------
        unsent = Signal()       # send_ptr names a stored frame at or after head
        m.d.comb += unsent.eq(within(send_ptr, head, in_flight))
        if gbn:
            seq_out = send_ptr
            resend_now = Signal()
            m.d.comb += resend_now.eq(send_ptr != high)
        else:
            # selective repeat: frames queued for resending go before new ones
            resend = Signal(self.window)    # bit i: frame head + i is queued
            first = Signal(range(self.window))     # the lowest queued
            m.d.comb += first.eq(first_of(resend, 1, 0))
            resend_now = Signal()
            m.d.comb += resend_now.eq(resend != 0)
            seq_out = Signal(n)
            m.d.comb += seq_out.eq(Mux(resend_now, head + first, send_ptr))
        have_data = Signal()
        m.d.comb += [have_data.eq(resend_now | unsent) if not gbn else have_data.eq(unsent),
                     desc_r.addr.eq(slot(seq_out))]
        stored = desc_r.data
        load = Signal()                 # the register is free: commit a frame
        commit_data = Signal()
        # while not up, only a KEEPALIVE frame
        nak_now, ack_now = Signal(), Signal()
        m.d.comb += [nak_now.eq(send_nak & self.up), ack_now.eq(send_ack & self.up),
                     load.eq(~held_valid & ~replaying),
                     commit_data.eq(load & ~nak_now & have_data & self.up & self.rate_ok)]
        with m.If(load & (nak_now | commit_data | ack_now | self.keepalive_due)):
            m.d.sync += [held_valid.eq(1), held_nak.eq(nak_now), held_data.eq(commit_data),
                         held_resend.eq(resend_now),
                         held_ka.eq(~nak_now & ~commit_data & ~ack_now)]
            with m.If(nak_now):
                m.d.sync += [held.frame_type.eq(wire.FrameType.NAK), held.seq.eq(nak_from),
                             held.count.eq(0), held.length.eq(0), held.tc.eq(0)]
            with m.Elif(commit_data):
                m.d.sync += [held.frame_type.eq(wire.FrameType.DATA), held.seq.eq(seq_out),
                             held.count.eq(stored.count), held.length.eq(stored.length),
                             held.tc.eq(stored.tc),
                             held_words.eq(((self.area_at + stored.length + wb - 1)
                                            >> (wb.bit_length() - 1)) - first_word)]
            with m.Elif(ack_now):
                m.d.sync += [held.frame_type.eq(wire.FrameType.ACK), held.seq.eq(0),
                             held.count.eq(0), held.length.eq(0), held.tc.eq(0)]
            with m.Else():
                m.d.sync += [held.frame_type.eq(wire.FrameType.KEEPALIVE), held.seq.eq(0),
                             held.count.eq(0), held.length.eq(0), held.tc.eq(0)]
        with m.If(taken):
            m.d.sync += held_valid.eq(0)

        # A DATA frame committed and not taken is withdrawn when another
        # choice is now right: it is behind head (an ACK covered it: a resend
        # no longer needed); in go-back-N a replay (it starts with the frame
        # named); in selective repeat a replay while it is a new frame
        # (resends go first).
        behind = Signal()
        m.d.comb += behind.eq(mod(held.seq[:n] - head, "held_offset")[n - 1])
        if not gbn:
            # a resend committed and not yet taken goes out anyway: not queued again
            committed = Signal()
            m.d.comb += committed.eq(held_valid & held_data & (held.seq[:n] == replay_to))
        withdraw = Signal()
        m.d.comb += withdraw.eq(held_valid & held_data & ~taken & (
            behind | ~self.up | (replaying if gbn else replaying & ~held_resend)))
        # while not up, an ACK or NAK frame committed is withdrawn too (the
        # KEEPALIVEs need the register; the receiver asks again)
        with m.If(withdraw | (held_valid & ~held_ka & ~self.up)):
            m.d.sync += held_valid.eq(0)

        # send_ptr: one past the frame committed; the frame a go-back-N replay
        # names; back to a new frame withdrawn; never behind head (an ACK may
        # overtake a replay: one cycle late, unsent keeps it from being sent).
        # Each candidate is checked against head (from registers, in parallel)
        # before the choice, which then picks a candidate and its check: the
        # choice (commit_data, from the descriptor read) is the late signal.
        # "At or before tail" is an offset from head of at most in_flight
        # (in_flight < 2**(n-1): no wrap), compared with the count itself,
        # not with in_flight + 1 (a carry chain fewer in a row; the 256-bit
        # Bridge's critical path with seed 3 ran tail -> in_flight + 1 ->
        # this check); the next pointer's check from send_ptr's own offset.
        def upto_tail(seq, name):
            return mod(seq - head, name) <= in_flight
        ptr_off = mod(send_ptr - head, "ptr_offset")
        plus_one = mod(send_ptr + 1, "send_next")
        other = replay_to if gbn else held.seq[:n]
        ptr_next, ptr_ok = Signal(n), Signal()
        advance = commit_data if gbn else commit_data & ~resend_now
        m.d.comb += [ptr_next.eq(send_ptr), ptr_ok.eq(ptr_off <= in_flight)]
        with m.If(replaying if gbn else withdraw & ~held_resend):
            m.d.comb += [ptr_next.eq(other), ptr_ok.eq(upto_tail(other, "other_offset"))]
        with m.Elif(advance):
            # send_ptr + 1 at or before tail: send_ptr before it, or just behind head
            m.d.comb += [ptr_next.eq(plus_one),
                         ptr_ok.eq((ptr_off < in_flight) | (ptr_off == (1 << n) - 1))]
        m.d.sync += send_ptr.eq(Mux(ptr_ok, ptr_next, head))
        if not gbn:
            # the queue after this cycle's resend and replay, from head, then
            # moved to the new head
            kept = Signal(self.window)
            m.d.comb += kept.eq(Mux(commit_data & resend_now,
                                    resend & ~(Const(1, 1) << first), resend))
            named = mod(replay_to - head, "queued_offset")
            queue = Signal()
            m.d.comb += queue.eq(replaying & ~committed & ~named[n - 1])
            queued = Mux(queue, kept | (Const(1, 1) << named[:slot_bits]), kept)
            # a rewind queues every frame sent and not acknowledged
            every_sent = Cat(sent_span > i for i in range(self.window))
            queued = Mux(self.rewind, queued | every_sent, queued)
            m.d.sync += resend.eq(queued >> mod(new_head - head, "released"))

        # --- the framer takes the committed frame; the body reader --------------------
        with m.If(taken & held_data):
            with m.If(~held_resend):
                m.d.sync += high.eq(held.seq[:n] + 1)
            with m.Else():
                m.d.sync += self.frames_retransmitted.eq(self.frames_retransmitted + 1)
            m.d.sync += [words_left.eq(held_words),
                         rd_addr.eq(Cat(Const(0, word_bits), slot(held.seq)) if slot_bits
                                    else 0)]
        with m.If(fb.sent_nak):                 # a stale NAK goes out as an ACK frame
            m.d.sync += self.naks_sent.eq(self.naks_sent + 1)
        with m.Elif(taken & ~held_data & ~held_ka):
            m.d.sync += self.acks_sent.eq(self.acks_sent + 1)
        fetch = Signal()
        m.d.comb += [
            fetch.eq((words_left != 0) & (~out_valid | self.tx_words.ready)),
            body_r.addr.eq(rd_addr),
            body_r.en.eq(fetch),
            self.tx_words.valid.eq(out_valid),
            self.tx_words.payload.eq(body_r.data),
        ]
        with m.If(fetch):
            m.d.sync += [rd_addr.eq(rd_addr + 1), words_left.eq(words_left - 1),
                         out_valid.eq(1)]
        with m.Elif(self.tx_words.ready):
            m.d.sync += out_valid.eq(0)

        # --- the peer restarted: every frame stored is forgotten ----------------------
        # (after every other assignment: it wins). A DATA frame committed is
        # withdrawn; one being read out finishes. The frame stored in this
        # cycle, if any, stays (tail moves past it).
        with m.If(self.drop):
            m.d.sync += [head.eq(tail), send_ptr.eq(tail), high.eq(tail), on_wire.eq(tail),
                         timer.eq(0), retries.eq(0),
                         at_window.eq(fire if self.window == 1 else 0),
                         self.frames_dropped.eq(self.frames_dropped + in_flight)]
            with m.If(held_valid & held_data & ~taken):
                m.d.sync += held_valid.eq(0)
            if not gbn:
                m.d.sync += resend.eq(0)
        return m
