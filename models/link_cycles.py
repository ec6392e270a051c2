"""The link endpoint in cycles, as the RTL builds it: the twin of one
bridge's :class:`~tlpoe.rtl.link.replay.ReplayBuffer` (transmit scheduler,
replay timer, window) and :class:`~tlpoe.rtl.link.link_rx.LinkReceiver`
(sequence check, ACK coalescing, NAKs and the NAK timer), wired as the
``Bridge`` wires them (the receiver's ``LinkFeedback`` into the sender).

Plain Python, no simulator: :meth:`CycleEndpoint.step` takes one clock
cycle's inputs and returns what the RTL shows in that cycle (before the clock
edge), then moves every register across the edge. Driven with the RTL's
inputs, cycle by cycle, it gives the RTL's outputs and counters in every cycle
(``tests/test_link_twin.py`` proves it in amaranth.sim). The rules, settings
and counters are those of docs/link-layer.md ("Protocol", "Selective
repeat"); this module says only what a cycle adds to them.

:mod:`tlpoe.models.link` is the same protocol in ns, with frames built at
transmit time; where its rules differ from the RTL's (docs/link-layer.md,
"RTL versus the reference model") this model follows the RTL.

One cycle (the order of the RTL's combinational paths):

1. The receiver judges the frame taken this cycle (``received``, an
   :class:`RxFrame`, or None): its verdict (:class:`Verdict`) and the
   feedback for the sender (:class:`Feedback`: the cumulative ack, the peer's
   ack and NAK, the ACK and NAK requests), all from registers and the frame.
2. The sender offers its committed frame (:class:`TxFrame`, the flags and
   ack read live from the receiver); the framer takes it when ``tx_ready``;
   that tells the receiver a frame carried the ack (and the NAK).
3. The edge: the sender takes the feedback into its registers (the peer's
   ACK and NAK act one cycle later, ``FEEDBACK_LATENCY``), stores the
   packer's frame, runs the replay timer and commits the next frame; the
   receiver moves ``expected``, the coalescing count and the NAK state.
"""

from collections import namedtuple
from dataclasses import dataclass, fields

from .frame import FLAG_ECN_ECHO
from .framing_cycles import WIDTHS
from .link import MODES
from . import transport as _transport
from .wire import FrameType

__all__ = ["CHOICES", "CycleConfig", "SenderCounters", "ReceiverCounters", "RxFrame", "TxFrame",
           "Verdict", "Feedback", "Cycle", "CycleSender", "CycleReceiver", "CycleEndpoint",
           "FEEDBACK_LATENCY", "WIDTHS"]

#: Cycles from the edge where the receiver takes a frame to the edge where its
#: ACK or NAK acts in the sender (the RTL's feedback register).
FEEDBACK_LATENCY = 1
_TIMER_MAX = (1 << 24) - 1
#: Rules where the ns model (:mod:`tlpoe.models.link`) made another
#: legitimate choice than the RTL, each a setting of :class:`CycleConfig`:
#: its values, the RTL's (the default) first, then the ns model's.
CHOICES = {
    # a NAK accepted restarts the replay timer, or leaves it running
    # (docs/link-layer.md, differences 10 and 27)
    "nak_replay_timer": ("restart", "keep"),
    # the expiry that puts the link down counts in replays_timeout, or not (13)
    "final_expiry": ("counted", "not_counted"),
    # a duplicate before ack-valid makes an ACK due, or is only counted (17)
    "early_duplicate": ("ack", "ignore"),
}


def _check_range(name, value, low, high, unit=""):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be {low}..{high}{unit}, not {value!r}")


@dataclass(frozen=True)
class CycleConfig:
    """The endpoint's settings, with the RTL's names, ranges and defaults
    (``Bridge``'s parameters). ``replay_timeout``, ``nak_timeout`` and
    ``ack_delay`` are the reset values of run-time inputs, which
    :class:`CycleEndpoint` lets a caller change between cycles. A bad value
    raises ValueError naming the parameter."""
    mode: str = "gbn"           #: "gbn" (go-back-N) or "sr" (selective repeat)
    width: int = 256            #: datapath bits: how many words a frame body takes
    window: int = 16            #: replay buffer frames: a power of two < 2**(seq_bits-1)
    seq_bits: int = 12          #: 2..32
    max_retries: int = 8        #: 1..255 expiries without progress: link down
    replay_timeout: int = 4096  #: 1..2**24-1 cycles
    nak_timeout: int = 1024     #: 0..2**24-1 cycles; 0: no NAK timer
    ack_every: int = 8          #: 1..255 frames accepted: an ACK is due
    ack_delay: int = 256        #: 1..65535 cycles after the first of them: an ACK is due
    nak_replay_timer: str = "restart"   #: see :data:`CHOICES`
    final_expiry: str = "counted"
    early_duplicate: str = "ack"
    transport: str = "eth"      #: where the TLP area starts (models/transport.py)

    def __post_init__(self):
        _transport.Transport(self.transport)
        for name, values in CHOICES.items():
            if getattr(self, name) not in values:
                raise ValueError(f"{name} must be one of {values}, not {getattr(self, name)!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.width not in WIDTHS:
            raise ValueError(f"width must be one of {WIDTHS}, not {self.width!r}")
        _check_range("seq_bits", self.seq_bits, 2, 32)
        low = 2 if self.mode == "sr" else 1
        w = self.window
        if isinstance(w, bool) or not isinstance(w, int) or w < low or w & (w - 1) \
                or w >= 1 << (self.seq_bits - 1):
            raise ValueError(f"window must be a power of two, at least {low}, below "
                             f"2**(seq_bits-1) = {1 << (self.seq_bits - 1)}, not {w!r}")
        _check_range("max_retries", self.max_retries, 1, 255)
        _check_range("replay_timeout", self.replay_timeout, 1, _TIMER_MAX, " cycles")
        _check_range("nak_timeout", self.nak_timeout, 0, _TIMER_MAX, " cycles")
        _check_range("ack_every", self.ack_every, 1, 255, " frames")
        _check_range("ack_delay", self.ack_delay, 1, 0xFFFF, " cycles")


@dataclass
class SenderCounters:
    """The ReplayBuffer's counters (docs/link-layer.md, "Counters")."""
    replays_nak: int = 0
    replays_timeout: int = 0
    frames_retransmitted: int = 0
    link_down_events: int = 0
    acks_sent: int = 0
    naks_sent: int = 0
    window_full_cycles: int = 0
    acks_invalid: int = 0
    naks_invalid: int = 0
    replays_link: int = 0
    frames_dropped: int = 0


@dataclass
class ReceiverCounters:
    """The LinkReceiver's counters; ``out_of_order_buffered`` moves only in
    selective repeat (the RTL has it only there)."""
    frames_accepted: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    naks_repeated: int = 0
    out_of_order_buffered: int = 0


#: A frame the deframer hands the receiver (its ``RxDesc``'s link fields):
#: ``ok`` (passed every check), ``frame_type``, ``flags``, ``seq``, ``ack``
#: and ``good`` (its TLPs may be delivered).
RxFrame = namedtuple("RxFrame", "ok good frame_type flags seq ack")
#: The frame offered to the framer (its ``TxDesc``).
TxFrame = namedtuple("TxFrame", "frame_type flags seq ack count length tc")
#: The receiver's verdict on the frame taken: ``good`` (deliver it now),
#: ``store`` and ``release`` (selective repeat's reorder buffer; 0 in go-back-N).
Verdict = namedtuple("Verdict", "good store release")
#: What the receiver tells the sender in a cycle: the cumulative ack every
#: frame carries (``rx_ack``, ``rx_ack_valid``), the peer's ack and NAK
#: (``ack_in``, ``nak_in``: a sequence number, or None), and the requests
#: ``send_ack`` (bool) and ``send_nak`` (the NAK's ``seq``, or None);
#: ``echo_in``: the frame taken carries the peer's ECN echo (a CNP).
Feedback = namedtuple("Feedback", "rx_ack rx_ack_valid ack_in nak_in send_ack send_nak echo_in",
                      defaults=(False,))
#: What the endpoint shows in one cycle: ``tx`` (a :class:`TxFrame` offered,
#: or None), ``taken`` (the framer took it), ``tx_words_valid``,
#: ``store_ready`` (the packer's ``words``/``desc`` ready), ``verdict`` (for
#: the frame received, or None), ``feedback`` and ``echo_sent`` (the frame
#: taken carries our ECN echo).
Cycle = namedtuple("Cycle", "tx taken tx_words_valid store_ready verdict feedback echo_sent")


class CycleReceiver:
    """The LinkReceiver: ``expected``, ack-valid, the coalescing count and
    age, the duplicate's ACK request, the NAK state (go-back-N: one request
    and one timer per gap; selective repeat: the ``held`` bitmap, ``top``,
    the NAK scan pointer and a timer on the lowest missing number)."""

    def __init__(self, config):
        self.config = config
        self.nak_timeout, self.ack_delay = config.nak_timeout, config.ack_delay
        self._mask = (1 << config.seq_bits) - 1
        self._half = 1 << (config.seq_bits - 1)
        self.reset()

    def reset(self):
        """The state after ``rst``; run-time inputs keep their values."""
        self.counters = ReceiverCounters()
        self.expected = 0
        self.ack_valid = False
        self.pending = 0            # acceptances since a frame carried the ack (8 bits)
        self.age = 0                # cycles since the first of them (16 bits)
        self.dup_ack = False        # a duplicate arrived: acknowledge soon
        self.nak_done = False       # the NAK watched went out: the NAK timer runs
        self.nak_timer = 0
        self.nak_request = False    # go-back-N: send_nak; selective repeat: the repeat
        self.held = 0               # selective repeat: bit d, frame expected + d held
        self.top = 0                # ... 1 + distance of the highest held, 0: none
        self.scan = 0               # ... the next distance that may need a first NAK

    # --- this cycle, from registers and the frame taken -------------------------

    def judge(self, frame):
        """The verdict on ``frame`` (None: nothing taken) and what it means:
        (verdict, kind, distance), ``kind`` one of None (no checked DATA
        frame), "in_order", "behind", "held" (selective repeat: stored now),
        "again" (held already), "ahead" (discarded after a gap, or beyond
        the window)."""
        if frame is None:
            return None, None, 0
        kind, distance, store, release = None, 0, 0, 0
        if frame.ok and frame.frame_type == FrameType.DATA:
            distance = (frame.seq - self.expected) & self._mask
            if distance == 0:
                kind = "in_order"
                if self.config.mode == "sr":
                    release = self._release()
            elif distance >= self._half:
                kind = "behind"
            elif self.config.mode == "sr" and distance < self.config.window:
                kind = "again" if self.held >> distance & 1 else "held"
                store = int(kind == "held")
            else:
                kind = "ahead"
        return Verdict(int(bool(frame.good) and kind == "in_order"), store, release), kind, distance

    def _release(self):
        """Held frames right after ``expected``, without a gap."""
        held, run = self.held >> 1, 0
        while run < self.config.window - 1 and held & 1:
            held >>= 1
            run += 1
        return run

    def feedback(self, frame):
        """What the sender sees this cycle (``frame`` the one taken, or None)."""
        ack_in = nak_in = None
        if frame is not None and frame.ok:
            if frame.flags & 1:
                ack_in = frame.ack & self._mask
            if frame.frame_type == FrameType.NAK:
                nak_in = frame.seq & self._mask
        send_ack = self.ack_valid and (
            self.dup_ack or self.pending >= self.config.ack_every or
            (self.pending != 0 and self.age >= self.ack_delay))
        echo_in = frame is not None and bool(frame.ok) and bool(frame.flags & FLAG_ECN_ECHO)
        return Feedback((self.expected - 1) & self._mask, self.ack_valid, ack_in, nak_in,
                        send_ack, self._nak_wanted(), echo_in)

    def _nak_wanted(self):
        if self.config.mode == "gbn":
            return self.expected if self.nak_request else None
        if self.nak_request:
            return self.expected
        if self.scan < self.top and not self.held >> self.scan & 1:
            return (self.expected + self.scan) & self._mask
        return None

    # --- the clock edge -----------------------------------------------------------

    def clock(self, verdict, kind, distance, sent_ack, sent_nak):
        """Move the registers across the edge: ``kind``/``distance`` from
        :meth:`judge`, ``sent_ack``/``sent_nak`` the sender's pulses."""
        c = self.counters
        accepted = kind == "in_order"
        delivered = 1 + (verdict.release if accepted else 0)
        advance = delivered if accepted else 0
        if self.config.mode == "sr":
            self._clock_reorder(kind, distance, sent_nak, advance)
        else:
            self._clock_gap(kind, sent_nak, accepted)
        if accepted:
            self.expected = (self.expected + delivered) & self._mask
            self.ack_valid = True
            c.frames_accepted += delivered
        pending = 0 if sent_ack else self.pending
        if pending == 0 and not accepted:
            self.age = 0
        elif self.age != 0xFFFF:
            self.age += 1
        self.pending = (pending + advance) & 0xFF
        if kind == "behind":
            c.duplicates += 1
        if kind == "behind" and (self.ack_valid or self.config.early_duplicate == "ack"):
            self.dup_ack = True
        elif sent_ack:
            self.dup_ack = False

    def adopt(self, base):
        """The link came up after a restart (after :meth:`clock`): ``base``
        is the next number expected, and nothing else is known."""
        self.expected = base & self._mask
        self.ack_valid = self.dup_ack = self.nak_done = self.nak_request = False
        self.pending = self.age = self.nak_timer = self.held = self.top = self.scan = 0

    def _clock_gap(self, kind, sent_nak, accepted):
        """Go-back-N: one NAK per gap, again each ``nak_timeout`` it stays open."""
        c = self.counters
        if kind == "ahead":
            c.out_of_order += 1
            if not self.nak_done:
                self.nak_request = True
        self._run_nak_timer()
        if sent_nak:
            self.nak_request = False
            if self.nak_done:
                c.naks_repeated += 1
            self.nak_done, self.nak_timer = True, 1
        if accepted:
            self.nak_done = self.nak_request = False

    def _run_nak_timer(self):
        if self.nak_done and self.nak_timeout and self.nak_timer >= self.nak_timeout:
            self.nak_request = True
        elif self.nak_done and self.nak_timer < self.nak_timeout:
            self.nak_timer += 1

    def _clock_reorder(self, kind, distance, sent_nak, advance):
        """Selective repeat: the held bitmap, the NAK scan and the NAK timer
        on the lowest missing number."""
        c = self.counters
        if kind == "held":
            c.out_of_order_buffered += 1
        elif kind == "again":
            c.duplicates += 1
        elif kind == "ahead":
            c.out_of_order += 1
        top = distance + 1 if kind == "held" and distance >= self.top else self.top
        scan_due = self.scan < self.top
        scan_held = scan_due and self.held >> self.scan & 1
        scan = self.scan + int(scan_due and (scan_held or (sent_nak and not self.nak_request)))
        held = self.held | (1 << distance if kind == "held" else 0)
        repeat = self.nak_request
        repeat_sent = sent_nak and (repeat or self.scan == 0)
        self.held = (held >> advance) & ((1 << self.config.window) - 1)
        self.top, self.scan = max(top - advance, 0), max(scan - advance, 0)
        self._run_nak_timer()
        if repeat_sent:
            if repeat:
                c.naks_repeated += 1
            self.nak_request, self.nak_done, self.nak_timer = False, True, 1
        if advance:
            # expected moves on: watch its NAK if it already went out
            self.nak_request, self.nak_done, self.nak_timer = False, self.scan != 0, 1


class _Committed:
    """The frame chosen for the framer (the RTL's ``held`` register)."""
    __slots__ = ("frame_type", "seq", "count", "length", "words", "resend", "tc")

    def __init__(self, frame_type, seq, count=0, length=0, words=0, resend=False, tc=0):
        self.frame_type, self.seq, self.count, self.length = frame_type, seq, count, length
        self.words, self.resend, self.tc = words, resend, tc


class CycleSender:
    """The ReplayBuffer: the descriptors of ``window`` frames stored (their
    bodies are only counted, in words), ``head`` / ``tail`` / ``send_ptr`` /
    ``high`` / ``on_wire``, the committed frame, the body reader, the
    feedback registers, the replay timer and retry count, and in selective
    repeat the resend bitmap."""

    def __init__(self, config):
        self.config = config
        self.replay_timeout = config.replay_timeout
        n = config.seq_bits
        self._mask, self._half = (1 << n) - 1, 1 << (n - 1)
        wb = config.width // 8
        self._area_at = _transport.area_offset(config.transport)
        self._word_shift, self._first_word = wb.bit_length() - 1, self._area_at // wb
        self._wb = wb
        self.reset()

    def reset(self):
        """The state after ``rst``; run-time inputs keep their values."""
        self.counters = SenderCounters()
        self.stored = {}            # slot -> (count, length, tc)
        self.head = self.tail = self.send_ptr = self.high = self.on_wire = 0
        self.at_window = False      # the window full (a register: before this cycle's ACK)
        self.committed = None
        self.words_left = 0         # body words still to fetch
        self.read_slot = 0
        self.out_valid = False      # tx_words holds a word
        self.fb = Feedback(0, False, None, None, False, None)   # registered (rx_ack unused)
        self.timer = self.retries = 0
        self.replaying = False
        self.replay_to = 0
        self.retry_limit = False    # the last expiry, this cycle (an output)
        self.resend = 0             # selective repeat: bit i, frame head + i queued

    def _slot(self, seq):
        return seq & (self.config.window - 1)

    def _within(self, seq, low, span):
        return ((seq - low) & self._mask) < span

    def _ahead(self, seq, low):
        return ((seq - low) & self._mask) < self._half

    @property
    def unacked(self):
        """Frames stored and not acknowledged (the ``unacked`` port)."""
        return (self.tail - self.head) & self._mask

    def store_ready(self):
        """The packer may store (``words.ready``, ``desc.ready``): the window
        is not full, and ``tail``'s slot is not the frame committed or being
        read (an ACK may have released it: a resend, or a lie)."""
        tail = self._slot(self.tail)
        reading = (self.words_left and self.read_slot == tail) or (
            self.committed is not None and self.committed.frame_type == FrameType.DATA and
            self._slot(self.committed.seq) == tail)
        return not self.at_window and not reading

    def offer(self, fb, up=True, drop=False, echo=False):
        """The frame offered to the framer this cycle (a :class:`TxFrame`),
        or None, and whether a NAK offered is stale (the receiver no longer
        asks for it: it goes as an ACK frame). While not ``up`` only a
        KEEPALIVE frame; its ``seq`` is the head as it is now (the tail
        after a ``drop`` in this cycle)."""
        held = self.committed
        if held is None or self.words_left or self.out_valid or \
                not (up or held.frame_type == FrameType.KEEPALIVE):
            return None, False
        stale = held.frame_type == FrameType.NAK and fb.send_nak != held.seq
        frame_type, seq = (FrameType.ACK, 0) if stale else (held.frame_type, held.seq)
        if held.frame_type == FrameType.KEEPALIVE:
            seq = self.tail if drop else self.head
        flags = int(fb.rx_ack_valid) | (FLAG_ECN_ECHO if echo else 0)
        return TxFrame(frame_type, flags, seq, fb.rx_ack, held.count,
                       held.length, held.tc), stale

    def clock(self, fb, taken, stale, desc, words_valid, tx_words_ready, data_sent, send_credit,
              up=True, rewind=False, drop=False, keepalive_due=False, echo=False,
              rate_ok=True):
        """Move the registers across the edge (the arguments as in
        :meth:`CycleEndpoint.step`; ``fb`` this cycle's feedback, ``taken``
        and ``stale`` from :meth:`offer`). Returns whether ``desc`` was
        stored; ``retry_limit`` is this cycle's."""
        cfg, c, mask = self.config, self.counters, self._mask
        gbn = cfg.mode == "gbn"
        held = self.committed
        held_data = held is not None and held.frame_type == FrameType.DATA
        head, in_flight = self.head, self.unacked
        r = self.fb

        # store
        ready = self.store_ready()
        if not ready and (words_valid or desc is not None):
            c.window_full_cycles += 1
        stored = ready and desc is not None
        # the RTL's `at_window`: the window full after this cycle's frame,
        # counted before this cycle's ACK (a slot freed now is free next cycle)
        at_window = (in_flight + stored) == cfg.window

        # acknowledgements, NAKs and the replay timer (the registered feedback)
        if data_sent is not None and self._ahead(data_sent, self.on_wire):
            on_wire = (data_sent + 1) & mask
        else:
            on_wire = self.on_wire
        sent_span = (self.high - head) & mask
        wire_span = (self.on_wire - head) & mask
        ack_ok = r.ack_in is not None and self._within(r.ack_in, head, wire_span)
        if r.ack_in is not None and not ack_ok and self._ahead(r.ack_in, head):
            c.acks_invalid += 1
        new_head = (r.ack_in + 1) & mask if ack_ok else head
        nak_ok = r.nak_in is not None and self._within(r.nak_in, head, wire_span)
        if r.nak_in is not None and not nak_ok and self._ahead(r.nak_in, head):
            c.naks_invalid += 1
        awaiting = sent_span != 0
        expired = awaiting and r.ack_in is None and self.timer >= self.replay_timeout
        event = (nak_ok or expired) and up
        restart = event and (not nak_ok or cfg.nak_replay_timer == "restart")
        if ack_ok or not awaiting or restart or not up:
            timer = 0
        else:
            timer = min(self.timer + 1, _TIMER_MAX)
        retries = self.retries
        limit = self.retry_limit = event and not nak_ok and self.retries + 1 >= cfg.max_retries
        if event:
            if nak_ok:
                c.replays_nak += 1
            else:
                retries = (self.retries + 1) & 0xFF
                c.replays_timeout += not limit or cfg.final_expiry == "counted"
        if ack_ok or not up:
            retries = 0
        c.link_down_events += limit
        c.replays_link += bool(rewind)

        # the choice of the next frame, from registers only
        unsent = self._within(self.send_ptr, head, in_flight)
        if gbn:
            resend_now = self.send_ptr != self.high
            seq_out, have_data = self.send_ptr, unsent
            first = 0
        else:
            resend_now = self.resend != 0
            first = (self.resend & -self.resend).bit_length() - 1 if resend_now else 0
            seq_out = (head + first) & mask if resend_now else self.send_ptr
            have_data = resend_now or unsent
        # (while not up, only a KEEPALIVE frame)
        load = held is None and not self.replaying
        nak_now = r.send_nak is not None and up
        ack_now = r.send_ack and up
        commit_data = load and not nak_now and have_data and up and rate_ok
        committed = held
        if load and (nak_now or commit_data or ack_now or keepalive_due):
            if nak_now:
                committed = _Committed(FrameType.NAK, r.send_nak, resend=resend_now)
            elif commit_data:
                count, length, tc = self.stored[self._slot(seq_out)]
                words = (((self._area_at + length + self._wb - 1) >> self._word_shift)
                         - self._first_word)
                committed = _Committed(FrameType.DATA, seq_out, count, length, words, resend_now,
                                       tc)
            elif ack_now:
                committed = _Committed(FrameType.ACK, 0, resend=resend_now)
            else:
                committed = _Committed(FrameType.KEEPALIVE, 0, resend=resend_now)
        if taken:
            committed = None
        behind = held_data and ((held.seq - head) & mask) >= self._half
        withdraw = held_data and not taken and (
            behind or not up or (self.replaying and (gbn or not held.resend)))
        # while not up, an ACK or NAK frame committed is withdrawn too
        if withdraw or (held is not None and held.frame_type != FrameType.KEEPALIVE
                        and not up):
            committed = None

        # send_ptr: one past the frame committed; the frame a go-back-N replay
        # names; back to a new frame withdrawn; never behind head
        stored_span = (in_flight + 1) & mask
        if self.replaying if gbn else withdraw and not held.resend:
            ptr = self.replay_to if gbn else held.seq
        elif commit_data and (gbn or not resend_now):
            ptr = (self.send_ptr + 1) & mask
        else:
            ptr = self.send_ptr
        send_ptr = ptr if self._within(ptr, head, stored_span) else head
        if not gbn:
            self.resend = self._requeue(held, commit_data and resend_now, first, head, new_head,
                                        sent_span if rewind else 0)

        # the framer takes the committed frame; the body reader
        words_left, out_valid, high = self.words_left, self.out_valid, self.high
        if taken and held_data:
            if held.resend:
                c.frames_retransmitted += 1
            else:
                high = (held.seq + 1) & mask
            words_left, self.read_slot = held.words, self._slot(held.seq)
        if taken and held.frame_type == FrameType.NAK and not stale:
            c.naks_sent += 1
        elif taken and not held_data and held.frame_type != FrameType.KEEPALIVE:
            c.acks_sent += 1
        if self.words_left and (not self.out_valid or tx_words_ready):
            words_left, out_valid = self.words_left - 1, True
        elif tx_words_ready:
            out_valid = False

        # the peer restarted: every frame stored is forgotten (the one stored
        # now stays); a DATA frame committed is withdrawn
        if drop:
            c.frames_dropped += in_flight
            new_head = on_wire = high = send_ptr = self.tail
            timer = retries = 0
            at_window = stored and cfg.window == 1
            if held_data and not taken:
                committed = None
            if not gbn:
                self.resend = 0
        if stored:
            self.stored[self._slot(self.tail)] = (desc[0], desc[1], desc[2] if len(desc) > 2 else 0)
            self.tail = (self.tail + 1) & mask
        self.at_window = at_window
        send_nak = fb.send_nak
        if taken and held.frame_type == FrameType.NAK:
            send_nak = None
        self.fb = Feedback(fb.rx_ack, fb.rx_ack_valid, fb.ack_in, fb.nak_in,
                           (fb.send_ack or send_credit or echo) and not taken, send_nak)
        rewinding = rewind and gbn      # a go-back-N replay to head
        self.replaying = event or rewinding
        self.replay_to = r.nak_in if nak_ok and not rewinding else head
        self.head, self.on_wire, self.high, self.send_ptr = new_head, on_wire, high, send_ptr
        self.timer, self.retries = timer, retries
        self.committed, self.words_left, self.out_valid = committed, words_left, out_valid
        return stored

    def _requeue(self, held, resent, first, head, new_head, rewound):
        """Selective repeat's resend bitmap after this cycle: the resend
        committed leaves it, the frame a replay names joins it (unless it is
        the frame committed, or behind ``head`` now), on a rewind the
        ``rewound`` frames from ``head`` join it, and it shifts to the new
        ``head``."""
        mask = self._mask
        kept = self.resend & ~(1 << first) if resent else self.resend
        named = (self.replay_to - head) & mask
        committed = (held is not None and held.frame_type == FrameType.DATA and
                     held.seq == self.replay_to)
        if self.replaying and not committed and named < self._half:
            kept |= 1 << (named & (self.config.window - 1))
        kept |= (1 << min(rewound, self.config.window)) - 1
        return (kept >> ((new_head - head) & mask)) & ((1 << self.config.window) - 1)


class CycleEndpoint:
    """One bridge's link endpoint in cycles: a :class:`CycleSender` and a
    :class:`CycleReceiver` joined as the ``Bridge`` joins the ReplayBuffer
    and the LinkReceiver.

    ``replay_timeout``, ``nak_timeout`` and ``ack_delay`` are the run-time
    inputs (set them between cycles); ``counters()`` gives every counter by
    its RTL name; ``link_down`` is the interrupt: without a link state
    (``up`` not given to :meth:`step`) a latch, set by the sender's retry
    limit until reset, that takes ``up`` away, as the TransmitPath's.
    """

    def __init__(self, config=None):
        self.config = config if config is not None else CycleConfig()
        self.sender = CycleSender(self.config)
        self.receiver = CycleReceiver(self.config)
        self.link_down = False

    def reset(self):
        """``rst``: every register and counter back to its initial value."""
        self.sender.reset()
        self.receiver.reset()
        self.link_down = False

    replay_timeout = property(lambda self: self.sender.replay_timeout,
                              lambda self, v: setattr(self.sender, "replay_timeout", v))
    nak_timeout = property(lambda self: self.receiver.nak_timeout,
                           lambda self, v: setattr(self.receiver, "nak_timeout", v))
    ack_delay = property(lambda self: self.receiver.ack_delay,
                         lambda self, v: setattr(self.receiver, "ack_delay", v))

    def counters(self):
        """Every counter, by its RTL name (``out_of_order_buffered`` only in
        selective repeat)."""
        out = {f.name: getattr(self.sender.counters, f.name) for f in fields(SenderCounters)}
        out.update((f.name, getattr(self.receiver.counters, f.name))
                   for f in fields(ReceiverCounters))
        if self.config.mode == "gbn":
            del out["out_of_order_buffered"]
        return out

    def step(self, *, received=None, desc=None, words_valid=False, tx_ready=False,
             tx_words_ready=False, data_sent=None, send_credit=False, up=None, rewind=False,
             drop=False, keepalive_due=False, adopt=False, adopt_base=0, echo=False,
             rate_ok=True):
        """One clock cycle. Inputs:

        * ``received``: the :class:`RxFrame` the receiver takes this cycle
          (its ``rx`` valid and the downstream ready), or None;
        * ``desc``: the packer's ``(count, length[, tc])`` offered on ``desc``, or
          None; ``words_valid``: the packer offers a body word;
        * ``tx_ready``, ``tx_words_ready``: the framer's ``tx_desc.ready`` and
          ``tx_words.ready``;
        * ``data_sent``: the sequence number of the DATA frame whose last
          beat the MAC took this cycle (the Framer's report), or None;
        * ``send_credit``: the credit loop asks for an ACK frame;
        * the link state's (docs/link-state.md): ``up`` (None: to the sender
          the latch ``link_down``, to the receiver 1), ``rewind``, ``drop``,
          ``keepalive_due`` to the sender, ``adopt`` and ``adopt_base`` to
          the receiver (which, while not up or adopting, judges a frame as
          one that failed its checks);
        * congestion control (docs/transports.md): ``echo`` (the CNP
          generator's: the frame taken carries FLAG_ECN_ECHO; an ACK frame
          when nothing else goes) and ``rate_ok`` (the rate limiter's: a
          DATA frame may be committed).

        Returns the :class:`Cycle` the RTL shows before the edge."""
        rx, tx = self.receiver, self.sender
        judged = received
        if received is not None and (up is False or adopt):
            judged = received._replace(ok=0)
        if up is None:
            up = not self.link_down
        verdict, kind, distance = rx.judge(judged)
        fb = rx.feedback(judged)
        offered, stale = tx.offer(fb, up, drop, echo)
        taken = offered is not None and bool(tx_ready)
        sent_nak = taken and tx.committed.frame_type == FrameType.NAK and not stale
        cycle = Cycle(offered, taken, tx.out_valid, tx.store_ready(), verdict, fb,
                      taken and bool(echo))
        tx.clock(fb, taken, stale, desc, words_valid, tx_words_ready, data_sent, send_credit,
                 up, rewind, drop, keepalive_due, echo, rate_ok)
        self.link_down |= tx.retry_limit
        rx.clock(verdict or Verdict(0, 0, 0), kind, distance, taken, sent_nak)
        if adopt:
            rx.adopt(adopt_base)
        return cycle
