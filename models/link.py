"""The tlpoe link layer, version 1: the reference model of the bridge's replay
buffer (transmit) and sequence check (receive), in go-back-N or selective repeat.

The rules below are the protocol's contract; the RTL's own twin, cycle for
cycle, is :mod:`tlpoe.models.link_cycles`, which states where the RTL made
another legitimate choice (``CHOICES``) and what a clock adds
(docs/bridge-model.md). Plain Python, no simulator, no clock: every method takes the current time ``now`` in
ns, and a transport (the discrete-event simulation :mod:`tlpoe.models.linksim`,
a testbench, a unit test) moves the bytes.

Sequence numbers
    ``M = 2**seq_bits`` (``seq_bits`` 2..32, default 12 as PCIe). The sender
    numbers DATA frames 0, 1, 2, ... mod ``M`` and writes the number in the
    32-bit ``seq`` field; receivers use the low ``seq_bits`` bits of ``seq``
    and ``ack``. All comparisons are serial-number arithmetic:
    ``offset(a, b) = (a - b) mod M`` (:func:`seq_offset`); ``a`` is *behind*
    ``b`` when ``offset(a, b) >= M/2``. ``window`` (the replay buffer depth in
    frames) is 1 .. ``M/2 - 1`` in both modes, so a frame in flight is never
    ambiguous.

Every frame carries the receive state
    ``ack = expected - 1 (mod M)``, the last sequence number received in
    order, and ``flags`` bit 0 (ack valid) once the receiver has accepted at
    least one DATA frame in order since reset (a frame that only arrived out of
    order names nothing received). Any frame sent with bit 0 set (DATA, ACK or
    NAK) counts as an acknowledgement for ACK coalescing. ACK frames carry
    ``seq`` = 0 (ignored).

Receiver (``expected`` starts at 0), for a DATA frame that passes the frame
checks (a frame that fails them is dropped and counted by
:class:`~tlpoe.models.frame.DropReason`), with ``d = offset(seq, expected)``:
    * ``d == 0``: accept: deliver its TLPs, ``expected += 1``; in selective
      repeat also deliver, in order, every buffered frame that now follows.
    * behind (``d >= M/2``): duplicate (our ACK was lost): discard and count.
      The first duplicate after an acknowledgement makes an ACK due at once;
      later ones count towards ``ack_every`` like acceptances.
    * ahead (``0 < d < M/2``), a gap:
        - go-back-N: discard (counted ``out_of_order_discarded``). If no NAK
          is outstanding for this gap, send one NAK: ``seq = expected``
          ("resend from here"), ``ack = expected - 1``. No other NAK until
          ``expected`` advances (which closes the gap) or the NAK timer
          (``nak_timeout_ns``, started when the NAK is sent) expires with the
          gap still open, which sends the NAK again.
        - selective repeat: if ``d < window`` and not already buffered, buffer
          it (``out_of_order_buffered``; a second copy is a duplicate) and
          send one NAK per sequence number newly found missing (every ``s``
          from the previous highest buffered + 1, or ``expected``, up to
          ``seq - 1``), NAK ``seq = s``. A NAK still queued when its frame
          arrives is not sent. Each missing number is NAK'd again
          ``nak_timeout_ns`` after its last NAK while it is still missing
          (the RTL approximates this with one timer on the lowest missing
          number: docs/link-layer.md, difference 23). ``d >= window``
          cannot come from a conforming sender: dropped (``out_of_window``).
    The receiver does not check ``channel`` (demultiplexing by channel is the
    decapsulator's job); CREDIT and KEEPALIVE frames only contribute their ack.

ACK coalescing
    An ACK is due after ``ack_every`` newly accepted frames, or
    ``ack_delay_ns`` after the first acceptance not yet acknowledged,
    whichever comes first. A DATA or NAK frame sent meanwhile carries the
    ack and clears both.

Sender
    Keeps every DATA frame (its TLPs) in the replay buffer until it is
    cumulatively acknowledged; at most ``window`` frames are unacknowledged,
    beyond that TLPs wait in the ingress queue (backpressure, never a drop;
    counted once per stall in ``window_stalls``). A new DATA frame takes TLPs
    from the ingress queue greedily in order, as
    :func:`tlpoe.models.frame.aggregate` does (up to the MTU and
    ``max_tlps_per_frame``). A frame is re-encoded on each (re)transmission
    with the current ack.

    * Ack ``a`` (bit 0 set, any frame type): if ``offset(a, base) < n``
      (``base`` the oldest unacknowledged, ``n`` frames outstanding, all of
      them sent), release ``base .. a``: progress. If ``a`` is behind
      ``base`` the ack is old: ignored. Otherwise it names a frame never sent
      (a buggy or hostile peer): ignored and counted (``acks_invalid``).
    * NAK ``s`` (after its ack is applied), if ``s`` is behind ``base``: old,
      ignored; if ahead of every frame sent: ignored and counted
      (``naks_invalid``); if ``s`` is outstanding:
      go-back-N resends every outstanding frame from ``s`` in order (a replay
      counted as cause NAK unless ``s`` was not sent yet since the last
      rewind); selective repeat resends ``s`` only (unless already queued).
    * Replay timer (``replay_timeout_ns``): started by any DATA send when not
      running; restarted on progress; stopped when nothing is outstanding.
      On expiry: go-back-N resends every outstanding frame, selective repeat
      the oldest; counted as cause TIMEOUT. The ``max_retries``-th
      consecutive expiry without progress puts the link DOWN instead
      (``link_down_events``, the ``on_link_down`` callback, "the interrupt"):
      a down endpoint sends nothing and ignores what it receives until
      :meth:`LinkEndpoint.reset` (both ends must be reset: sequence numbers
      restart at 0).

Transmit order (what :meth:`LinkEndpoint.poll` hands the MAC when it is ready
for a frame): a due NAK first, then a DATA frame (retransmissions before new
ones; it piggy-backs the ack), then a due ACK.
"""

from collections import deque
from dataclasses import dataclass, field, fields

from . import transport as _transport
from .frame import (
    FLAG_ACK_VALID, DropReason, FrameError, encode_frame, frame_crc, keepalive_credits,
)
from .wire import (
    BRIDGE_HEADER, BRIDGE_LEN, CRC_LEN, ETH_LEN, ETHERTYPE, HEADER_LEN, MIN_TLP, PREFIX_LEN,
    FrameType, LinkState,
)

__all__ = [
    "MODES", "LinkConfig", "LinkCounters", "LinkSender", "LinkReceiver", "LinkEndpoint",
    "seq_offset", "seq_is_behind",
]

#: Retransmission strategies: go-back-N and selective repeat.
MODES = ("gbn", "sr")


def seq_offset(a, b, seq_bits):
    """``(a - b) mod 2**seq_bits``: how many sequence numbers ``a`` is after ``b``."""
    return (a - b) & ((1 << seq_bits) - 1)


def seq_is_behind(a, b, seq_bits):
    """True when ``a`` is in the half of the sequence space before ``b``."""
    return seq_offset(a, b, seq_bits) >= 1 << (seq_bits - 1)


def _check_int(name, value, low, high=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")


def _check_time(name, value, allow_zero):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"{name} must be a number of ns, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} ns, got {value}")


@dataclass(frozen=True)
class LinkConfig:
    """Parameters of one link endpoint (both ends use the same). Checked on
    construction; a bad value raises ValueError naming the parameter."""
    mode: str = "gbn"                    #: "gbn" (go-back-N) or "sr" (selective repeat)
    seq_bits: int = 12                   #: sequence numbers are mod 2**seq_bits
    window: int = 128                    #: replay buffer depth, frames; <= 2**(seq_bits-1) - 1
    ack_every: int = 8                   #: ACK after this many newly accepted frames
    ack_delay_ns: float = 1_000.0        #: ... or this long after the first unacknowledged one
    replay_timeout_ns: float = 40_000.0  #: replay timer
    nak_timeout_ns: float | None = None  #: NAK timer; None: replay_timeout_ns
    max_retries: int = 8                 #: consecutive replay-timer expiries -> link down
    mtu: int = 1500                      #: Ethernet payload size; bounds DATA frames
    max_tlps_per_frame: int | None = None  #: aggregation limit (None: the MTU alone)
    channel: int = 0                     #: bridge header `channel` written on send
    ethertype: int = ETHERTYPE
    #: The link state machine (docs/link-state.md): None, off (a link that
    #: goes down stays down until :meth:`LinkEndpoint.reset`); else the
    #: KEEPALIVE interval: every ``keepalive_ns`` while not UP, and while UP
    #: once nothing was sent for that long.
    keepalive_ns: float | None = None
    #: Silence that takes an UP link down (None: 3 x ``keepalive_ns``, BFD's
    #: detect multiplier).
    dead_ns: float | None = None
    #: The endpoint's first incarnation (32 bits); each :meth:`LinkEndpoint.reset` adds 1.
    incarnation: int = 1
    #: What carries the frames (:mod:`tlpoe.models.transport`): ``"eth"`` or
    #: ``"udp"``, with ``udp`` this endpoint's
    #: :class:`~tlpoe.models.transport.UdpConfig` (None: the default; the
    #: peer's is its ``peer()``).
    transport: str = "eth"
    udp: object = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        _check_int("seq_bits", self.seq_bits, 2, 32)
        _check_int("window", self.window, 1, 2 ** (self.seq_bits - 1) - 1)
        _check_int("ack_every", self.ack_every, 1)
        _check_time("ack_delay_ns", self.ack_delay_ns, allow_zero=True)
        _check_time("replay_timeout_ns", self.replay_timeout_ns, allow_zero=False)
        if self.nak_timeout_ns is not None:
            _check_time("nak_timeout_ns", self.nak_timeout_ns, allow_zero=False)
        _check_int("max_retries", self.max_retries, 1)
        _check_int("mtu", self.mtu, BRIDGE_LEN + CRC_LEN + PREFIX_LEN + MIN_TLP, 65535)
        if self.max_tlps_per_frame is not None:
            _check_int("max_tlps_per_frame", self.max_tlps_per_frame, 1)
        _check_int("channel", self.channel, 0, 0xFFFF)
        _check_int("ethertype", self.ethertype, 0, 0xFFFF)
        if self.keepalive_ns is not None:
            _check_time("keepalive_ns", self.keepalive_ns, allow_zero=False)
        if self.dead_ns is not None:
            if self.keepalive_ns is None:
                raise ValueError("dead_ns needs keepalive_ns (the link state machine)")
            _check_time("dead_ns", self.dead_ns, allow_zero=False)
            if self.dead_ns <= self.keepalive_ns:
                raise ValueError(f"dead_ns ({self.dead_ns}) must exceed keepalive_ns "
                                 f"({self.keepalive_ns}): a quiet but healthy peer sends a "
                                 "KEEPALIVE every keepalive_ns")
        _check_int("incarnation", self.incarnation, 0, 0xFFFFFFFF)
        _transport.Transport(self.transport)

    @property
    def modulus(self):
        return 1 << self.seq_bits

    @property
    def dead_time(self):
        """Silence, in ns, that takes an UP link down (None without the state machine)."""
        if self.keepalive_ns is None:
            return None
        return 3 * self.keepalive_ns if self.dead_ns is None else self.dead_ns

    @property
    def nak_timeout(self):
        """The NAK timer in ns (``nak_timeout_ns``, or ``replay_timeout_ns``)."""
        return self.replay_timeout_ns if self.nak_timeout_ns is None else self.nak_timeout_ns


@dataclass
class LinkCounters:
    """The endpoint's counters (the CSR block's view). ``drops`` is keyed by
    :class:`~tlpoe.models.frame.DropReason` name."""
    frames_sent: int = 0            #: every frame handed to the MAC
    data_frames_sent: int = 0       #: DATA frames, first transmissions
    tlps_sent: int = 0              #: TLPs in first transmissions
    frames_retransmitted: int = 0   #: DATA frames sent again
    replays_nak: int = 0            #: replays caused by a NAK
    replays_timeout: int = 0        #: replays caused by the replay timer
    acks_sent: int = 0              #: ACK frames (piggy-backed acks not counted)
    naks_sent: int = 0
    window_stalls: int = 0          #: times the sender found the window full
    seq_wraps: int = 0              #: times the send sequence number wrapped to 0
    frames_received: int = 0        #: frames that passed the frame checks
    tlps_delivered: int = 0
    duplicates_discarded: int = 0
    out_of_order_discarded: int = 0  #: go-back-N: DATA after a gap
    out_of_order_buffered: int = 0   #: selective repeat: DATA buffered after a gap
    out_of_window: int = 0           #: DATA too far ahead to buffer (non-conforming peer)
    acks_received: int = 0           #: ACK frames received
    naks_received: int = 0
    link_down_events: int = 0
    link_up_events: int = 0          #: the state machine's transitions to UP
    peer_restarts: int = 0           #: KEEPALIVEs with a new peer incarnation
    keepalives_sent: int = 0
    keepalives_received: int = 0
    frames_dropped_restart: int = 0  #: replay-buffer frames dropped on a peer restart
    tlps_dropped_restart: int = 0    #: ... and their TLPs
    acks_invalid: int = 0            #: acks naming a frame not sent (ignored)
    naks_invalid: int = 0            #: NAKs naming a frame not sent (ignored)
    drops: dict = field(default_factory=lambda: {r.name: 0 for r in DropReason})

    @property
    def replays(self):
        return self.replays_nak + self.replays_timeout

    def as_dict(self):
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["drops"] = dict(self.drops)
        out["replays"] = self.replays
        return out


class _Entry:
    """One replay-buffer slot: a DATA frame's sequence number and TLPs."""
    __slots__ = ("seq", "tlps", "sends", "queued", "acked", "frame")

    def __init__(self, seq, tlps):
        self.seq, self.tlps, self.sends, self.queued, self.acked = seq, tlps, 0, False, False
        self.frame = None        # bytes of the last transmission


_FLAGS, _ACK = BRIDGE_HEADER["flags"], BRIDGE_HEADER["ack"]
assert not _FLAGS.bits and not _ACK.bits, "flags and ack are whole header words"


def _with_ack(frame, flags, ack):
    """``frame`` (an encoded frame) with new ``flags`` and ``ack`` and its CRC
    recomputed: the bytes :func:`encode_frame` would give, built faster."""
    if frame[ETH_LEN + _FLAGS.offset] == flags and \
            int.from_bytes(frame[ETH_LEN + _ACK.offset:ETH_LEN + _ACK.offset + _ACK.size],
                           "big") == ack:
        return frame
    buf = bytearray(frame)
    buf[ETH_LEN + _FLAGS.offset] = flags
    buf[ETH_LEN + _ACK.offset:ETH_LEN + _ACK.offset + _ACK.size] = ack.to_bytes(_ACK.size, "big")
    length = len(buf) - HEADER_LEN - CRC_LEN
    buf[HEADER_LEN + length:] = frame_crc(buf, length).to_bytes(CRC_LEN, "little")
    return bytes(buf)


class LinkSender:
    """Transmit half: ingress queue, replay buffer, replay timer, retry count.
    Shares ``counters`` with its :class:`LinkEndpoint`."""

    def __init__(self, config, counters):
        self.config, self.counters = config, counters
        self._mask = config.modulus - 1
        self._capacity = _transport.body_capacity(config.mtu, config.transport)
        self._max_group = config.max_tlps_per_frame or self._capacity
        self._largest = (self._capacity - PREFIX_LEN) // 4 * 4
        self.reset()

    def reset(self):
        self.pending = deque()       # ingress queue: TLP bytes not yet framed
        self.outstanding = deque()   # replay buffer: _Entry, oldest first
        self.next_seq = 0
        self.resend_index = 0        # go-back-N: next outstanding entry to (re)send
        self.resend = deque()        # selective repeat: entries to resend
        self.replay_deadline = None
        self.retries = 0             # consecutive expiries without progress
        self.stalled = False

    def submit(self, tlps):
        """Queue TLPs (bytes: whole DWs, 12 bytes or more, fitting one frame)."""
        for index, tlp in enumerate(tlps):
            if len(tlp) % 4 or not MIN_TLP <= len(tlp) <= self._largest:
                raise ValueError(f"TLP {index} is {len(tlp)} bytes; a TLP is whole DWs of "
                                 f"{MIN_TLP}..{self._largest} bytes at MTU {self.config.mtu}")
        self.pending.extend(tlps)

    @property
    def in_flight(self):
        return len(self.outstanding)

    def has_data(self):
        """True when :meth:`next_entry` would return a frame."""
        if self.config.mode == "gbn":
            if self.resend_index < len(self.outstanding):
                return True
        elif any(not e.acked for e in self.resend):
            return True
        return bool(self.pending) and len(self.outstanding) < self.config.window

    def next_entry(self, now):
        """The next DATA frame to send (an :class:`_Entry`), or None."""
        if self.config.mode == "gbn":
            if self.resend_index < len(self.outstanding):
                entry = self.outstanding[self.resend_index]
                self.resend_index += 1
                return self._sent(entry, now)
        else:
            while self.resend:
                entry = self.resend.popleft()
                entry.queued = False
                if not entry.acked:
                    return self._sent(entry, now)
        if not self.pending:
            return None
        if len(self.outstanding) >= self.config.window:
            if not self.stalled:
                self.stalled = True
                self.counters.window_stalls += 1
            return None
        self.stalled = False
        entry = _Entry(self.next_seq, self._take_group())
        self.next_seq = (self.next_seq + 1) & self._mask
        if self.next_seq == 0:
            self.counters.seq_wraps += 1
        self.outstanding.append(entry)
        self.resend_index = len(self.outstanding)
        self.counters.data_frames_sent += 1
        self.counters.tlps_sent += len(entry.tlps)
        return self._sent(entry, now)

    def _take_group(self):
        # The rule of frame.aggregate (greedy, in order, up to the MTU and
        # max_tlps), applied to the head of the queue only.
        used = count = 0
        for tlp in self.pending:
            need = PREFIX_LEN + len(tlp)
            if used + need > self._capacity or count == self._max_group:
                break
            used += need
            count += 1
        popleft = self.pending.popleft
        return [popleft() for _ in range(count)]

    def _sent(self, entry, now):
        if entry.sends:
            self.counters.frames_retransmitted += 1
        entry.sends += 1
        if self.replay_deadline is None:
            self.replay_deadline = now + self.config.replay_timeout_ns
        return entry

    def on_ack(self, ack, now):
        """Apply a cumulative ack (low ``seq_bits`` bits of the field)."""
        n = len(self.outstanding)
        base = self.outstanding[0].seq if n else self.next_seq
        offset = seq_offset(ack, base, self.config.seq_bits)
        if offset >= n:
            if offset < self.config.modulus >> 1:
                self.counters.acks_invalid += 1     # ahead of every frame sent
            return      # else behind base: an old ack
        released = offset + 1
        popleft = self.outstanding.popleft
        for _ in range(released):
            popleft().acked = True
        self.resend_index = max(0, self.resend_index - released)
        self.retries = 0
        self.replay_deadline = (now + self.config.replay_timeout_ns
                                if self.outstanding else None)

    def on_nak(self, seq, now):
        """Replay on a NAK for ``seq`` (after its ack was applied)."""
        base = self.outstanding[0].seq if self.outstanding else self.next_seq
        index = seq_offset(seq, base, self.config.seq_bits)
        if index >= len(self.outstanding):
            if index < self.config.modulus >> 1:
                self.counters.naks_invalid += 1     # ahead of every frame sent
            return      # else behind base: an old NAK
        if self.config.mode == "gbn":
            if index < self.resend_index:
                self.resend_index = index
                self.counters.replays_nak += 1
        else:
            entry = self.outstanding[index]
            if entry.sends and not entry.queued:
                entry.queued = True
                self.resend.append(entry)
                self.counters.replays_nak += 1

    def on_timer(self, now):
        """Handle an expired replay timer; True when the link must go down."""
        if self.replay_deadline is None or now < self.replay_deadline:
            return False
        self.replay_deadline = None     # restarted by the replay's first send
        if not self.outstanding:
            return False
        self.retries += 1
        if self.retries >= self.config.max_retries:
            return True
        self.counters.replays_timeout += 1
        if self.config.mode == "gbn":
            self.resend_index = 0
        else:
            oldest = self.outstanding[0]
            if not oldest.queued:
                oldest.queued = True
                self.resend.appendleft(oldest)
        return False


class LinkReceiver:
    """Receive half: sequence check, duplicate discard, NAK on gap, out-of-order
    buffer (selective repeat), ACK coalescing. Shares ``counters``."""

    def __init__(self, config, counters):
        self.config, self.counters = config, counters
        self._mask = config.modulus - 1
        self._half = config.modulus >> 1
        self.reset()

    def reset(self):
        self.expected = 0
        self.ack_valid = False
        self.unacked = 0             # acceptances since the last acknowledgement
        self.dups_since_ack = 0
        self.ack_due = False
        self.ack_deadline = None
        self.nak_due = False         # go-back-N: a NAK for `expected` is to be sent
        self.gap_open = False        # go-back-N: a NAK went out for the current gap
        self.nak_queue = deque()     # selective repeat: missing seqs to NAK
        self.nak_sent_at = {}        # selective repeat: missing seq -> time of its last NAK
        self.nak_order = deque()     # selective repeat: (time, seq) of NAKs, oldest first
        self.buffer = {}             # selective repeat: seq -> TLPs
        self.top = 0                 # selective repeat: 1 + highest buffered seq
        self.nak_deadline = None

    @property
    def ack(self):
        """The ``ack`` field: ``expected - 1`` mod 2**seq_bits."""
        return (self.expected - 1) & self._mask

    def acknowledged(self):
        """A frame carrying the (valid) ack was sent."""
        self.unacked = self.dups_since_ack = 0
        self.ack_due = False
        self.ack_deadline = None

    def next_nak(self):
        """The ``seq`` of the next NAK to send, or None."""
        if self.config.mode == "gbn":
            if self.nak_due:
                self.nak_due = False
                return self.expected
            return None
        while self.nak_queue:
            seq = self.nak_queue.popleft()
            if self._missing(seq):
                return seq
        return None

    def _missing(self, seq):
        top = seq_offset(self.top, self.expected, self.config.seq_bits)
        return seq_offset(seq, self.expected, self.config.seq_bits) < top and seq not in self.buffer

    def nak_sent(self, seq, now):
        """A NAK for ``seq`` went out: start the NAK timer if none is running."""
        if self.config.mode == "sr":
            self.nak_sent_at[seq] = now
            self.nak_order.append((now, seq))
        if self.nak_deadline is None:
            self.nak_deadline = now + self.config.nak_timeout

    def on_data(self, seq, tlps, now):
        """A DATA frame that passed the frame checks; returns the TLPs delivered."""
        d = (seq - self.expected) & self._mask
        if d == 0:
            return self._accept(tlps, now)
        counters = self.counters
        if d >= self._half:
            counters.duplicates_discarded += 1
            self._duplicate()
        elif self.config.mode == "gbn":
            counters.out_of_order_discarded += 1
            if not self.gap_open:
                self.gap_open = self.nak_due = True
        elif d >= self.config.window:
            counters.out_of_window += 1
        elif seq in self.buffer:
            counters.duplicates_discarded += 1
        else:
            # self.top == self.expected while the buffer is empty
            top = (self.top - self.expected) & self._mask
            self.buffer[seq] = tlps
            self.nak_sent_at.pop(seq, None)
            counters.out_of_order_buffered += 1
            for k in range(top, d):
                self.nak_queue.append((self.expected + k) & self._mask)
            if d >= top:
                self.top = (seq + 1) & self._mask
        return []

    def _duplicate(self):
        if not self.ack_valid:
            return
        if self.dups_since_ack == 0:
            self.ack_due = True
        self.dups_since_ack += 1
        if self.dups_since_ack >= self.config.ack_every:
            self.ack_due = True

    def _accept(self, tlps, now):
        delivered = list(tlps)
        accepted = 1
        self.expected = (self.expected + 1) & self._mask
        if self.config.mode == "gbn":
            self.gap_open = self.nak_due = False
            self.nak_deadline = None
        elif self.buffer:
            buffer = self.buffer
            while self.expected in buffer:
                delivered += buffer.pop(self.expected)
                self.expected = (self.expected + 1) & self._mask
                accepted += 1
            if not buffer:
                self.top = self.expected
                self.nak_deadline = None
                self.nak_sent_at.clear()
                self.nak_order.clear()
        else:
            self.top = self.expected
        self.ack_valid = True
        if self.unacked == 0:
            self.ack_deadline = now + self.config.ack_delay_ns
        self.unacked += accepted
        if self.unacked >= self.config.ack_every:
            self.ack_due = True
        self.counters.tlps_delivered += len(delivered)
        return delivered

    def on_timer(self, now):
        if self.ack_deadline is not None and now >= self.ack_deadline:
            self.ack_deadline = None
            self.ack_due = True
        if self.nak_deadline is not None and now >= self.nak_deadline:
            self.nak_deadline = None
            if self.config.mode == "gbn":
                self.nak_due = self.gap_open    # the NAK's send restarts the timer
            else:
                self._nak_again(now)

    def _nak_again(self, now):
        # NAK again each number still missing whose last NAK is nak_timeout old;
        # the timer then runs to the next oldest NAK's expiry.
        timeout, order = self.config.nak_timeout, self.nak_order
        while order and order[0][0] + timeout <= now:
            sent, seq = order.popleft()
            if self.nak_sent_at.get(seq) == sent and self._missing(seq):
                self.nak_queue.append(seq)
        if order:
            self.nak_deadline = order[0][0] + timeout


class LinkEndpoint:
    """One end of a link: a :class:`LinkSender` and a :class:`LinkReceiver`
    sharing one :class:`LinkCounters`, because every frame carries both
    directions' state; with ``keepalive_ns`` set, the link state machine of
    docs/link-state.md around them.

    Event methods (``now`` in ns, non-decreasing):

    * :meth:`submit` (TLPs in), :meth:`receive` (frame bytes in; returns the
      TLPs delivered, in order), :meth:`on_timer` (call at or after
      :meth:`next_deadline`; spurious calls are harmless);
    * :meth:`poll`: the MAC is ready for a frame; returns the frame's bytes
      or None. The transport calls it whenever its transmitter is idle after
      any event (frames are built at transmit time, so replays and acks are
      always current); :meth:`drain` pulls every frame ready now.

    The link state machine (``keepalive_ns`` not None): the endpoint starts
    DOWN and sends a KEEPALIVE every ``keepalive_ns`` (its incarnation, the
    peer's as far as it knows, its state, ``seq`` = its ``base``, the oldest
    frame not acknowledged). DOWN goes to INIT on a KEEPALIVE saying DOWN,
    and DOWN or INIT to UP on one saying INIT or UP that names our
    incarnation. While not UP only KEEPALIVEs are read and only KEEPALIVEs
    are sent. A KEEPALIVE is owed (sent as soon as the frame choice gets to
    it, whatever the interval) after every change of state and on a
    KEEPALIVE saying INIT while UP: the peer learns our state at once. UP goes DOWN after :attr:`LinkConfig.dead_time` without a good
    frame, after ``max_retries`` replay-timer expiries without progress, or
    on a KEEPALIVE saying DOWN (``link_down_events``, ``on_link_down``).
    On UP every frame not acknowledged is sent again (go-back-N from the
    oldest; selective repeat queues each). A KEEPALIVE with an incarnation
    other than the one held (or the first one heard) is a peer restart: the
    replay buffer's frames are dropped (``frames_dropped_restart``,
    ``tlps_dropped_restart``; TLPs not yet framed stay queued) and the
    receiver takes the peer's ``base`` as the next number it expects, from
    the KEEPALIVE that brings the link UP.
    """

    def __init__(self, config=None, *, on_link_down=None, on_link_up=None):
        self.config = config if config is not None else LinkConfig()
        self.counters = LinkCounters()
        self.on_link_down = on_link_down
        self.on_link_up = on_link_up
        self.sender = LinkSender(self.config, self.counters)
        self.receiver = LinkReceiver(self.config, self.counters)
        self._mask = self.config.modulus - 1
        self.stateful = self.config.keepalive_ns is not None
        self.incarnation = self.config.incarnation
        self._init_state()

    def _init_state(self):
        self.state = LinkState.DOWN if self.stateful else LinkState.UP
        self.peer_incarnation = None     # None: no peer heard since reset
        self.adopt = False               # take the peer's base when UP
        self.last_heard = self.last_sent = None
        self.next_keepalive = 0.0        # while not UP: when the next KEEPALIVE is due
        self.owed = False                # a KEEPALIVE due until sent: the state changed

    @property
    def down(self):
        """True while the link is not UP (without the state machine: after
        the retry limit, until :meth:`reset`)."""
        return self.state != LinkState.UP

    def reset(self):
        """Back to the initial state (sequence numbers 0, queues and buffers
        empty; with the state machine DOWN, a new incarnation, no peer
        known); counters are kept."""
        self.sender.reset()
        self.receiver.reset()
        if self.stateful:
            self.incarnation = (self.incarnation + 1) & 0xFFFFFFFF
        self._init_state()

    def submit(self, tlps, now=0):
        """Queue TLPs (``bytes`` each) for transmission, in order."""
        self.sender.submit(tlps)

    def next_deadline(self):
        """The earliest running timer's deadline (ns), or None."""
        if not self.stateful:
            if self.down:
                return None
            timers = (self.sender.replay_deadline, self.receiver.ack_deadline,
                      self.receiver.nak_deadline)
        elif self.down:
            timers = (self.next_keepalive,)
        else:
            keepalive = self.config.keepalive_ns
            timers = (self.sender.replay_deadline, self.receiver.ack_deadline,
                      self.receiver.nak_deadline,
                      None if self.last_sent is None else self.last_sent + keepalive,
                      self.last_heard + self.config.dead_time)
        deadlines = [t for t in timers if t is not None]
        return min(deadlines) if deadlines else None

    def on_timer(self, now):
        if self.down:
            return
        if self.stateful and now >= self.last_heard + self.config.dead_time:
            self._go_down(now)
            return
        self.receiver.on_timer(now)
        if self.sender.on_timer(now):
            self._go_down(now)

    def _go_down(self, now):
        self.state = LinkState.DOWN
        self.counters.link_down_events += 1
        sender = self.sender
        sender.replay_deadline, sender.retries = None, 0
        self.next_keepalive = now
        self.owed = True
        if self.on_link_down is not None:
            self.on_link_down(self)

    def _go_up(self, base, now):
        self.state = LinkState.UP
        self.owed = True
        self.counters.link_up_events += 1
        self.last_heard = now
        if self.adopt:
            self.adopt = False
            self.receiver.reset()
            self.receiver.expected = base & self._mask
            self.receiver.top = self.receiver.expected
        sender = self.sender
        if self.config.mode == "gbn":
            sender.resend_index = 0
        else:
            for entry in sender.outstanding:
                if entry.sends and not entry.queued:
                    entry.queued = True
                    sender.resend.append(entry)
        if self.on_link_up is not None:
            self.on_link_up(self)

    def _restart(self):
        """The peer lost its link state: drop the replay buffer's frames."""
        sender, counters = self.sender, self.counters
        counters.peer_restarts += 1
        counters.frames_dropped_restart += len(sender.outstanding)
        counters.tlps_dropped_restart += sum(len(e.tlps) for e in sender.outstanding)
        for entry in sender.outstanding:
            entry.acked = True
        sender.outstanding.clear()
        sender.resend.clear()
        sender.resend_index = 0
        sender.replay_deadline, sender.retries = None, 0
        self.receiver.reset()

    def _on_keepalive(self, frame, now):
        self.counters.keepalives_received += 1
        k = frame.keepalive
        if k["incarnation"] != self.peer_incarnation:
            if self.peer_incarnation is not None:
                self._restart()
                if self.state == LinkState.UP:
                    self._go_down(now)
            self.peer_incarnation = k["incarnation"]
            self.adopt = True
        says = k["state"]
        names_us = bool(k["peer_known"]) and k["peer_incarnation"] == self.incarnation
        if self.state == LinkState.UP:
            if says == LinkState.DOWN:
                self._go_down(now)
            elif says == LinkState.INIT:
                self.owed = True        # the peer may have missed ours: answer
        elif says in (LinkState.INIT, LinkState.UP) and names_us:
            self._go_up(frame.seq, now)
        elif says == LinkState.DOWN or self.state == LinkState.DOWN:
            self.state = LinkState.INIT
            self.owed = True

    def _base(self):
        sender = self.sender
        return sender.outstanding[0].seq if sender.outstanding else sender.next_seq

    def _encode(self, frame_type, seq, tlps=(), entry=None, credits=None):
        rx = self.receiver
        flags = FLAG_ACK_VALID if rx.ack_valid else 0
        if flags:
            rx.acknowledged()
        self.counters.frames_sent += 1
        if entry is not None and entry.frame is not None:     # a retransmission
            entry.frame = _with_ack(entry.frame, flags, rx.ack)
            return entry.frame
        frame = encode_frame(tlps, seq=seq, ack=rx.ack, flags=flags, frame_type=frame_type,
                             channel=self.config.channel, ethertype=self.config.ethertype,
                             credits=credits)
        if entry is not None:
            entry.frame = frame
        return frame

    def _keepalive(self, now):
        self.counters.keepalives_sent += 1
        self.owed = False
        known = self.peer_incarnation is not None
        credits = keepalive_credits(incarnation=self.incarnation,
                                    peer_incarnation=self.peer_incarnation if known else 0,
                                    peer_known=int(known), state=self.state)
        return self._encode(FrameType.KEEPALIVE, self._base(), credits=credits)

    def poll(self, now):
        """The next frame for the MAC (bytes), or None when nothing is due."""
        frame = self._poll(now)
        if frame is not None:
            self.last_sent = now
            if self.config.transport != "eth":
                frame = _transport.encode(frame, self.config.transport, self.config.udp)
        return frame

    def _poll(self, now):
        if self.down:
            if self.stateful and (self.owed or now >= self.next_keepalive):
                self.next_keepalive = now + self.config.keepalive_ns
                return self._keepalive(now)
            return None
        rx = self.receiver
        nak = rx.next_nak()
        if nak is not None:
            self.counters.naks_sent += 1
            rx.nak_sent(nak, now)
            return self._encode(FrameType.NAK, nak)
        entry = self.sender.next_entry(now)
        if entry is not None:
            return self._encode(FrameType.DATA, entry.seq, entry.tlps, entry)
        if rx.ack_due:
            self.counters.acks_sent += 1
            return self._encode(FrameType.ACK, 0)
        if self.stateful and (self.owed or self.last_sent is None or
                              now >= self.last_sent + self.config.keepalive_ns):
            return self._keepalive(now)
        return None

    def drain(self, now):
        """Every frame :meth:`poll` gives now, as a list."""
        frames = []
        while (frame := self.poll(now)) is not None:
            frames.append(frame)
        return frames

    def receive(self, data, now):
        """A frame from the MAC; returns the TLPs it makes deliverable, in order."""
        if self.down and not self.stateful:
            return []
        try:
            frame = _transport.receive(data, self.config.transport, self.config.udp,
                                       ethertype=self.config.ethertype, mtu=self.config.mtu)
        except FrameError as error:
            self.counters.drops[error.reason.name] += 1
            return []
        counters = self.counters
        counters.frames_received += 1
        frame_type = frame.frame_type
        if self.stateful:
            if frame_type == FrameType.KEEPALIVE:
                self._on_keepalive(frame, now)
            if self.down:
                return []
            self.last_heard = now
        if frame.flags & FLAG_ACK_VALID:
            if frame_type == FrameType.ACK:
                counters.acks_received += 1
            self.sender.on_ack(frame.ack & self._mask, now)
        if frame_type == FrameType.DATA:
            return self.receiver.on_data(frame.seq & self._mask, frame.tlps, now)
        if frame_type == FrameType.NAK:
            counters.naks_received += 1
            self.sender.on_nak(frame.seq & self._mask, now)
        return []
