"""Replay buffer and transmit scheduler of the link layer (go-back-N or
selective repeat)."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..models import wire
from .framer import TxDesc
from .link_common import check_mode, check_window, first_of
from .packer import FrameDesc
from .streams import check_width

__all__ = ["ReplayBuffer"]

FLAG_ACK_VALID = 1


class ReplayBuffer(wiring.Component):
    """Keeps every DATA frame body until its sequence number is acknowledged,
    and decides what the framer sends next.

    Write side: the packer's ``words`` and ``desc`` (one frame each); frame
    ``tail`` goes to slot ``tail mod window``.  When ``window`` frames are
    unacknowledged, ``words`` is backpressured: nothing is ever dropped.

    Read side: ``tx_desc`` (a :class:`~tlpoe.rtl.framer.TxDesc`) then, for a
    DATA frame, its body on ``tx_words``.  Priority: a NAK the receiver asked
    for, then the next DATA frame (``send_ptr``), then an ACK frame of its own
    (only when no DATA frame can carry the ack); every frame carries the
    receiver's cumulative ``rx_ack`` (``rx_ack_valid`` sets flag bit 0).

    Acknowledgements (``ack_in``: cumulative, from the peer's frames) release
    slots.  An ACK or NAK may name only a frame that was sent: one ahead of
    the highest sent (stored but still waiting for the MAC, or never stored)
    is ignored and counted in ``acks_invalid`` / ``naks_invalid``; one behind
    ``head`` is old and ignored.  ``nak_in`` (for ``nak_seq``) and the replay timer
    (``replay_timeout`` cycles without progress while sent frames are
    unacknowledged) are replay events, which ``mode`` handles:

    * ``"gbn"`` (go-back-N): the NAK for a sent, unacknowledged ``s`` rewinds
      ``send_ptr`` to ``s``, an expiry to the oldest unacknowledged frame, and
      every frame from there is sent again in order;
    * ``"sr"`` (selective repeat): the NAK for a sent, unacknowledged ``s``
      queues frame ``s`` alone for resending, an expiry the oldest
      unacknowledged frame alone.  The queue is a bitmap of ``window`` bits,
      one per unacknowledged frame (a frame is queued at most once); queued
      frames go before new DATA frames, the lowest sequence number first.

    After ``max_retries`` consecutive timer expiries without progress the link
    goes down: ``link_down`` stays set (and nothing more is sent) until
    reset, and ``link_down_events`` counts it.

    Sequence numbers are ``seq_bits`` wide and wrap; ``window`` (a power of two
    below ``2**(seq_bits-1)``, at least 2 in selective repeat) is the replay
    buffer depth in frames.
    """

    def __init__(self, width, *, mtu=1500, window=16, seq_bits=12, max_retries=8,
                 replay_timeout=4096, mode="gbn"):
        check_mode(mode)
        check_width(width)
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
        body_words = -(-(wire.HEADER_LEN + wire.body_capacity(mtu)) // wb)
        self.slot_words = 1 << (body_words - 1).bit_length()
        seq = seq_bits
        super().__init__({
            "words": In(stream.Signature(width)),
            "desc": In(stream.Signature(FrameDesc())),
            "tx_desc": Out(stream.Signature(TxDesc())),
            "tx_words": Out(stream.Signature(width)),
            # from the local receiver
            "rx_ack": In(seq),
            "rx_ack_valid": In(1),
            "ack_in": In(1),            # pulse: the peer acknowledged ...
            "ack_seq": In(seq),         # ... every frame up to this one
            "nak_in": In(1),            # pulse: the peer asks to resend from ...
            "nak_seq": In(seq),
            "send_ack": In(1),          # the receiver wants an ACK frame sent
            "send_nak": In(1),          # ... or a NAK frame asking from nak_from
            "nak_from": In(seq),
            "sent_ack": Out(1),         # pulse: a frame carrying rx_ack was queued
            "sent_nak": Out(1),         # pulse: the NAK frame was queued
            "replay_timeout": In(24, init=replay_timeout),
            "link_down": Out(1),
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
        })

    def elaborate(self, platform):
        m = Module()
        W, wb, n = self.width, self.width // 8, self.seq_bits
        gbn = self.mode == "gbn"
        slot_bits = (self.window - 1).bit_length()
        word_bits = (self.slot_words - 1).bit_length()
        first_word = wire.HEADER_LEN // wb

        m.submodules.body = body = Memory(shape=W, depth=self.window * self.slot_words, init=[])
        m.submodules.descs = descs = Memory(shape=FrameDesc(), depth=self.window, init=[])
        body_w = body.write_port()
        body_r = body.read_port()
        desc_w = descs.write_port()
        desc_r = descs.read_port(domain="comb")

        head = Signal(n)        # oldest unacknowledged frame
        tail = Signal(n)        # next frame to store
        send_ptr = Signal(n)    # next frame to send
        wr_word = Signal(word_bits + 1)
        in_flight = Signal(n)
        m.d.comb += [in_flight.eq(tail - head), self.unacked.eq(in_flight)]

        def slot(seq):
            return seq[:slot_bits] if slot_bits else Const(0, 1)

        # --- store --------------------------------------------------------------
        # The slot the reader is fetching stays until its last word is read,
        # even when an ACK released it meanwhile (a frame resent, or a lie):
        # a new frame written there would go out as part of the old one.
        full = Signal()
        words_left = Signal(word_bits + 1)      # body words still to fetch (the reader)
        rd_addr = Signal(word_bits + slot_bits)
        reading = Signal()
        if slot_bits:
            m.d.comb += reading.eq((words_left != 0) & (rd_addr[word_bits:] == slot(tail)))
        else:
            m.d.comb += reading.eq(words_left != 0)
        m.d.comb += full.eq((in_flight == self.window) | reading)
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

        # An ACK or NAK may name only a frame that was sent: one stored but not
        # sent yet (the MAC holding frame_out) or never stored is counted and
        # ignored; one behind head is old and ignored silently.
        high = Signal(n)        # one past the highest sequence ever sent
        ack_ok = Signal()
        m.d.comb += ack_ok.eq(self.ack_in & within(self.ack_seq, head, mod(high - head, "sent")))
        with m.If(self.ack_in & ~ack_ok & ahead(self.ack_seq, head)):
            m.d.sync += self.acks_invalid.eq(self.acks_invalid + 1)
        new_head = Signal(n)
        m.d.comb += new_head.eq(Mux(ack_ok, self.ack_seq + 1, head))
        progress = Signal()
        m.d.comb += progress.eq(ack_ok)
        nak_ok = Signal()       # s sent and unacknowledged (after this cycle's ACK)
        outstanding = mod(tail - new_head, "outstanding")     # after this cycle's ACK
        sent_span = mod(high - new_head, "sent_span")        # ... of which sent
        m.d.comb += nak_ok.eq(self.nak_in & within(self.nak_seq, new_head, sent_span))
        with m.If(self.nak_in & ~nak_ok & ahead(self.nak_seq, new_head)):
            m.d.sync += self.naks_invalid.eq(self.naks_invalid + 1)

        timer = Signal(24)
        retries = Signal(8)
        expired = Signal()
        awaiting = Signal()     # frames sent and not yet acknowledged
        m.d.comb += expired.eq(awaiting & (timer >= self.replay_timeout))
        rewind = Signal()       # a replay event (in go-back-N a rewind to rewind_to)
        if gbn:
            rewind_to = Signal(n)
        with m.If(nak_ok & ~self.link_down):
            m.d.comb += rewind.eq(1)
            if gbn:
                m.d.comb += rewind_to.eq(self.nak_seq)
        with m.Elif(expired & ~self.link_down):
            m.d.comb += rewind.eq(1)
            if gbn:
                m.d.comb += rewind_to.eq(new_head)

        m.d.sync += head.eq(new_head)
        with m.If(progress | ~awaiting | rewind):
            m.d.sync += timer.eq(0)
        with m.Elif(timer != (1 << 24) - 1):
            m.d.sync += timer.eq(timer + 1)
        with m.If(progress):
            m.d.sync += retries.eq(0)
        with m.If(rewind):
            with m.If(nak_ok):
                m.d.sync += self.replays_nak.eq(self.replays_nak + 1)
            with m.Else():
                m.d.sync += [self.replays_timeout.eq(self.replays_timeout + 1),
                             retries.eq(retries + 1)]
                with m.If(retries + 1 >= self.max_retries):
                    m.d.sync += [self.link_down.eq(1),
                                 self.link_down_events.eq(self.link_down_events + 1)]

        # --- transmit scheduler and body reader -----------------------------------------
        out_valid = Signal()
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
        reader_idle = Signal()
        m.d.comb += reader_idle.eq((words_left == 0) & ~out_valid)

        # send_ptr never trails head (an ACK may overtake a replay)
        ptr = Signal(n)
        m.d.comb += ptr.eq(Mux(within(send_ptr, new_head, outstanding + 1), send_ptr, new_head))
        if gbn:
            seq_out = ptr       # the DATA frame offered
        else:
            # selective repeat: frames queued for resending go before new ones
            resend = Signal(self.window)    # bit i: frame head + i is queued
            queued = Signal(self.window)    # the same after this cycle's ACK: new_head + i
            m.d.comb += queued.eq(resend >> mod(new_head - head, "released"))
            first = Signal(range(self.window))     # the lowest queued
            m.d.comb += first.eq(first_of(queued, 1, 0))
            seq_out = Signal(n)
            m.d.comb += seq_out.eq(Mux(queued != 0, new_head + first, ptr))
        stored = desc_r.data
        m.d.comb += desc_r.addr.eq(slot(seq_out))
        have_data = Signal()
        m.d.comb += have_data.eq(seq_out != tail)
        out = self.tx_desc.payload
        m.d.comb += [
            out.flags.eq(Mux(self.rx_ack_valid, FLAG_ACK_VALID, 0)),
            out.ack.eq(self.rx_ack),
        ]
        ack_only = Signal()         # an ACK frame of its own: no DATA frame to carry it
        m.d.comb += ack_only.eq(self.send_ack & ~have_data)
        with m.If(self.send_nak):
            m.d.comb += [out.frame_type.eq(wire.FrameType.NAK), out.seq.eq(self.nak_from)]
        with m.Elif(ack_only):
            m.d.comb += out.frame_type.eq(wire.FrameType.ACK)
        with m.Else():
            m.d.comb += [out.frame_type.eq(wire.FrameType.DATA), out.seq.eq(seq_out),
                         out.count.eq(stored.count), out.length.eq(stored.length)]
        m.d.comb += self.tx_desc.valid.eq(reader_idle & ~self.link_down & ~rewind &
                                          (self.send_nak | self.send_ack | have_data))
        sent = Signal()
        m.d.comb += sent.eq(self.tx_desc.valid & self.tx_desc.ready)
        is_data = Signal()
        m.d.comb += is_data.eq(~self.send_nak & ~ack_only)
        m.d.comb += [
            self.sent_ack.eq(sent),
            self.sent_nak.eq(sent & self.send_nak),
        ]
        retransmit = Signal()
        # A frame is a retransmission when it was sent before: below the
        # highest sequence sent so far.
        m.d.comb += [retransmit.eq(within(seq_out, new_head, sent_span)),
                     awaiting.eq(sent_span != 0)]

        # In selective repeat nothing is sent in a replay event's cycle (tx_desc
        # is held off), so its send_ptr keeps still then.
        with m.If(rewind):
            if gbn:
                m.d.sync += send_ptr.eq(rewind_to)
        with m.Elif(sent & is_data):
            if gbn:
                m.d.sync += send_ptr.eq(ptr + 1)
            with m.If(~retransmit):
                m.d.sync += high.eq(seq_out + 1)
                if not gbn:
                    m.d.sync += send_ptr.eq(seq_out + 1)
            with m.Else():
                m.d.sync += self.frames_retransmitted.eq(self.frames_retransmitted + 1)
        with m.Else():
            m.d.sync += send_ptr.eq(ptr)
        if not gbn:
            m.d.sync += resend.eq(queued)
            with m.If(rewind):
                with m.If(nak_ok):
                    offset = mod(self.nak_seq - new_head, "nak_offset")[:slot_bits]
                    m.d.sync += resend.eq(queued | (Const(1, 1) << offset))
                with m.Else():
                    m.d.sync += resend.eq(queued | 1)       # the oldest
            with m.Elif(sent & is_data & retransmit):
                m.d.sync += resend.eq(queued & ~(Const(1, 1) << first))
        with m.If(sent & is_data):
            body_words = ((wire.HEADER_LEN + stored.length + wb - 1) >> (wb.bit_length() - 1)) \
                - first_word
            m.d.sync += [words_left.eq(body_words),
                         rd_addr.eq(Cat(Const(0, word_bits), slot(seq_out)) if slot_bits else 0)]
        with m.If(sent & self.send_nak):
            m.d.sync += self.naks_sent.eq(self.naks_sent + 1)
        with m.Elif(sent & ack_only):
            m.d.sync += self.acks_sent.eq(self.acks_sent + 1)
        return m
