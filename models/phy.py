"""The NIC/PHY model: one Ethernet link between two bridges, with its faults.

A :class:`Phy` is one direction of a link. It serialises frames at line rate
(10, 25 or 100 Gb/s, counting preamble + SFD, padding, FCS and the inter-frame
gap: :func:`~tlpoe.models.frame.wire_bytes`), delays them by a fixed latency,
and loses or corrupts them as a real link does:

* **random bit errors** at a bit error rate (:class:`RandomBitErrors`);
* **burst errors** from a Gilbert-Elliott channel (:class:`GilbertElliott`);
* **frame drop** with a fixed probability (congestion in a switch);
* **link down** during scheduled intervals (every frame on the wire is lost).

What a frame sees is decided by the receiving MAC, as on real hardware: it
checks the Ethernet FCS, so by default a frame hit by any bit error is dropped
(``fcs_drop``) and never reaches the bridge. ``deliver_bad_fcs=True`` models a
NIC with the FCS check disabled (cut-through): the corrupted bytes are handed
to the bridge, whose own end-to-end CRC must catch them.

Frames go in as the bridge hands them to the MAC (no FCS, maybe shorter than
60 bytes) and come out as the receiving MAC hands them up: padded to the
60-byte minimum, FCS stripped. Bit errors are placed on the bits the FCS
protects, the padded frame and the FCS itself; a bit is numbered
``8 * byte + k`` with ``k`` its weight (``1 << k``), the order Ethernet sends
it in (least significant bit first), so a burst hits consecutive numbers.
Errors in the preamble or the inter-frame gap are not modelled: the receiver
resynchronises on the next preamble and the frame's bits are untouched.

Every random process has its own ``numpy.random.Generator``, all derived from
one seed with ``numpy.random.SeedSequence``: the same seed and parameters give
the same deliveries, and changing one process (say the drop rate) leaves the
draws of the others unchanged. Plain Python and numpy, no simulator.
"""

import bisect
import math
from dataclasses import dataclass, fields
from enum import Enum, IntEnum

import numpy as np

from .frame import FCS_LEN, PREAMBLE_SFD_LEN, wire_bytes
from .wire import MIN_FRAME

__all__ = [
    "LineRate", "LINE_RATES_GBPS", "serialization_ns", "protected_bits",
    "frame_hit_probability", "flip_bits", "RandomBitErrors", "GilbertElliott",
    "BurstChannel", "Fate", "Delivery", "PhyCounters", "Phy", "Link", "phy_from_params",
]


class LineRate(IntEnum):
    """Ethernet line rates the model is used at, in Gb/s (= bits per ns)."""
    G10 = 10
    G25 = 25
    G100 = 100


LINE_RATES_GBPS = tuple(int(rate) for rate in LineRate)

_NO_ERRORS = np.empty(0, np.int64)
_NO_ERRORS.flags.writeable = False


def serialization_ns(frame_len, rate_gbps):
    """Nanoseconds a frame of ``frame_len`` bytes (as handed to the MAC) holds
    the line at ``rate_gbps``: ``8 * wire_bytes(frame_len) / rate_gbps``, i.e.
    padding to 60, FCS 4, preamble + SFD 8 and IFG 12 included (a 60-byte
    frame at 100 Gb/s: 84 bytes, 6.72 ns)."""
    return 8 * wire_bytes(frame_len) / rate_gbps


def protected_bits(frame_len):
    """Bits of a ``frame_len``-byte frame that the FCS covers on the wire and
    that bit errors can hit: the frame padded to 60 bytes, and the FCS."""
    return 8 * (max(frame_len, MIN_FRAME) + FCS_LEN)


def frame_hit_probability(frame_len, ber):
    """Probability that independent bit errors at ``ber`` hit a frame of
    ``frame_len`` bytes: ``1 - (1 - ber) ** protected_bits(frame_len)``
    (0.11336 for 1500 bytes at 1e-5; 0.11436 for a full 1514-byte frame)."""
    return -math.expm1(protected_bits(frame_len) * math.log1p(-ber))


def flip_bits(data, positions):
    """``data`` with the bits at ``positions`` (distinct, numbered
    ``8 * byte + k`` for weight ``1 << k``) inverted."""
    buf = np.frombuffer(bytes(data), np.uint8).copy()
    pos = np.asarray(positions, np.int64)
    if pos.size and (pos.min() < 0 or pos.max() >= 8 * buf.size):
        raise ValueError(f"bit positions must lie in 0..{8 * buf.size - 1}")
    np.bitwise_xor.at(buf, pos >> 3, (1 << (pos & 7)).astype(np.uint8))
    return buf.tobytes()


def _check_probability(name, value, *, low_open=False):
    if not (0 < value <= 1 if low_open else 0 <= value <= 1):
        bound = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be in {bound}, got {value}")


class _Buffered:
    """Scalars from a vectorised numpy draw, ``batch`` at a time (one numpy
    call per batch instead of one per frame)."""

    def __init__(self, draw, batch=4096):
        self._draw, self._batch = draw, batch
        self._values, self._next = [], 0

    def __call__(self):
        if self._next == len(self._values):
            self._values, self._next = self._draw(self._batch).tolist(), 0
        self._next += 1
        return self._values[self._next - 1]


# --- random bit errors ----------------------------------------------------------

class RandomBitErrors:
    """Independent bit errors at ``ber`` over the stream of protected bits.

    Model: every protected bit is in error with probability ``ber``,
    independently (a binary symmetric channel). The errors are drawn as a
    Bernoulli process over the concatenation of every frame's protected bits,
    with geometric gaps drawn in batches. This is the same law as drawing, per
    frame of ``n`` bits, a count ``Binomial(n, ber)`` and then that many
    distinct positions uniformly, but costs one comparison for the ~89% of
    1500-byte frames at 1e-5 that have no error, instead of numpy calls per
    frame. Bits outside frames (preamble, IFG, idle) are not part of the
    stream: with independent errors they would not change any frame's law.
    """

    def __init__(self, ber, rng, *, batch=4096):
        _check_probability("ber", ber)
        self.ber, self._rng, self._batch = ber, rng, batch
        self._errors = np.empty(0, np.int64)   # stream positions, not yet consumed
        self._next, self._last = 0, -1         # _last: the furthest error drawn
        self._upcoming = -1                    # the next unconsumed error
        self._consumed = 0                     # stream bits handed out so far

    def _refill(self):
        last = int(self._errors[-1]) if self._errors.size else -1
        gaps = self._rng.geometric(self.ber, self._batch)
        self._errors = np.concatenate([self._errors[self._next:], last + np.cumsum(gaps)])
        self._next, self._last = 0, int(self._errors[-1])

    def errors(self, n_bits):
        """Error positions (sorted, distinct) in the next ``n_bits`` bits."""
        if self.ber == 0:
            return _NO_ERRORS
        lo = self._consumed
        hi = self._consumed = lo + n_bits
        if self._upcoming >= hi:
            return _NO_ERRORS
        while self._last < hi:
            self._refill()
        end = self._next + int(np.searchsorted(self._errors[self._next:], hi))
        out = self._errors[self._next:end] - lo
        self._next = end
        self._upcoming = int(self._errors[end]) if end < self._errors.size else self._last + 1
        return out


# --- burst errors (Gilbert-Elliott) -----------------------------------------------

GOOD, BAD = 0, 1


@dataclass(frozen=True)
class GilbertElliott:
    """A Gilbert-Elliott burst-error channel: a two-state Markov chain stepped
    once per bit time on the wire, good (``ber_good``) and bad (``ber_bad``),
    leaving good with probability ``p_gb`` and bad with ``p_bg`` per bit.

    A burst is one stay in the bad state: its length is geometric with mean
    ``1 / p_bg`` bits (:attr:`mean_burst_bits`); inside it each bit is in
    error with probability ``ber_bad`` (0.5 by default: the receiver's bits are
    noise), so the span from a burst's first to last error is shorter than the
    burst. The chain runs through preamble, IFG and idle time too: two frames
    close together can share a burst, frames far apart are independent.
    """
    p_gb: float
    p_bg: float
    ber_good: float = 0.0
    ber_bad: float = 0.5

    def __post_init__(self):
        _check_probability("p_gb", self.p_gb, low_open=True)
        _check_probability("p_bg", self.p_bg, low_open=True)
        _check_probability("ber_good", self.ber_good)
        _check_probability("ber_bad", self.ber_bad)

    @classmethod
    def from_ber(cls, ber, mean_burst_bits, *, ber_bad=0.5, ber_good=0.0):
        """The channel with long-run bit error rate ``ber`` whose bursts (bad
        stays) last ``mean_burst_bits`` on average:
        ``p_bg = 1 / mean_burst_bits`` and ``p_gb`` from the bad-state
        fraction ``pi_b = (ber - ber_good) / (ber_bad - ber_good)``,
        ``p_gb = p_bg * pi_b / (1 - pi_b)``."""
        if mean_burst_bits < 1:
            raise ValueError(f"mean_burst_bits must be at least 1, got {mean_burst_bits}")
        if not ber_good < ber < ber_bad:
            raise ValueError(f"ber must lie between ber_good ({ber_good}) and "
                             f"ber_bad ({ber_bad}), got {ber}")
        p_bg = 1 / mean_burst_bits
        pi_b = (ber - ber_good) / (ber_bad - ber_good)
        p_gb = p_bg * pi_b / (1 - pi_b)
        if p_gb > 1:
            raise ValueError(f"ber {ber} with mean_burst_bits {mean_burst_bits} needs "
                             f"p_gb = {p_gb:.3g} > 1: use longer bursts")
        return cls(p_gb=p_gb, p_bg=p_bg, ber_good=ber_good, ber_bad=ber_bad)

    @property
    def bad_fraction(self):
        """Stationary probability of the bad state, ``p_gb / (p_gb + p_bg)``."""
        return self.p_gb / (self.p_gb + self.p_bg)

    @property
    def average_ber(self):
        """Long-run bit error rate."""
        pi_b = self.bad_fraction
        return (1 - pi_b) * self.ber_good + pi_b * self.ber_bad

    @property
    def mean_burst_bits(self):
        """Mean stay in the bad state, in bits."""
        return 1 / self.p_bg

    def channel(self, rng):
        """A :class:`BurstChannel` running this chain on ``rng``."""
        return BurstChannel(self, rng)


class BurstChannel:
    """A running :class:`GilbertElliott` chain on a bit-time axis.

    Simulated by sojourns, not bits: the state holds for a geometric number of
    bits, then flips. Across a gap between frames the state is drawn from the
    chain's ``d``-step transition, ``P(bad) = pi_b + (x - pi_b) * lam ** d``
    with ``x`` the state at the gap's start and ``lam = 1 - p_gb - p_bg``, and
    the stay from there is geometric again (the chain is memoryless), so idle
    time costs nothing. The chain starts in its stationary distribution.
    Queries must not go back in time.
    """

    def __init__(self, params, rng):
        self.params, self._rng = params, rng
        self._state = None     # state of the current stay (None: not started)
        self._end = 0          # bit time at which the current stay ends
        self._stay = (_Buffered(lambda n: rng.geometric(params.p_gb, n)),
                      _Buffered(lambda n: rng.geometric(params.p_bg, n)))
        self._uniform = _Buffered(rng.random)

    def _enter(self, t_bit):
        """Draw the state at ``t_bit`` (at or after the current stay's end)
        and a fresh stay from there."""
        p = self.params
        pi_b = p.bad_fraction
        if self._state is None:
            p_bad = pi_b
        else:
            x = 1 - self._state                # the state the chain flipped to at _end
            p_bad = pi_b + (x - pi_b) * (1 - p.p_gb - p.p_bg) ** (t_bit - self._end)
        self._state = BAD if self._uniform() < p_bad else GOOD
        self._end = t_bit + self._stay[self._state]()

    def segments(self, t_bit, n_bits):
        """The states over bit times ``t_bit .. t_bit + n_bits - 1``: a list of
        ``(offset, length, state)`` runs, ``offset`` from ``t_bit``."""
        if self._state is None or t_bit >= self._end:
            self._enter(t_bit)
        runs, start, stop = [], t_bit, t_bit + n_bits
        while True:
            end = min(self._end, stop)
            runs.append((start - t_bit, end - start, self._state))
            if self._end >= stop:
                return runs
            start, self._state = self._end, 1 - self._state
            self._end = start + self._stay[self._state]()

    def errors(self, t_bit, n_bits):
        """Error positions (sorted, distinct, from ``t_bit``) over ``n_bits``
        bit times starting at ``t_bit``."""
        ber = (self.params.ber_good, self.params.ber_bad)
        runs = self.segments(t_bit, n_bits)
        if len(runs) == 1 and ber[runs[0][2]] == 0:
            return _NO_ERRORS
        hits = []
        for offset, length, state in runs:
            if ber[state]:
                k = int(self._rng.binomial(length, ber[state]))
                if k:
                    hits.append(offset + self._rng.choice(length, k, replace=False))
        return np.sort(np.concatenate(hits)).astype(np.int64) if hits else _NO_ERRORS


# --- one direction of a link ------------------------------------------------------

class Fate(str, Enum):
    """What became of a transmitted frame (also the :class:`PhyCounters` names)."""
    DELIVERED = "delivered"    #: reached the bridge intact
    CORRUPTED = "corrupted"    #: reached the bridge with bit errors (deliver_bad_fcs only)
    FCS_DROP = "fcs_drop"      #: hit by bit errors, dropped by the receiving MAC
    DROPPED = "dropped"        #: lost to random drop (congestion)
    LINK_DOWN = "link_down"    #: on the wire while the link was down


_COUNTER = {fate: fate.value for fate in Fate}


@dataclass(frozen=True, slots=True)
class Delivery:
    """One transmitted frame: when it went out and arrived, what the receiving
    MAC hands up (``frame``, None when lost), and the bit errors injected into
    its protected bits (positions as in :func:`flip_bits`; those at or beyond
    ``8 * len(frame)`` hit the FCS)."""
    fate: Fate
    frame: bytes | None
    start_ns: float      # the first bit (of the preamble) leaves the transmitter
    arrival_ns: float    # start + serialization_ns (IFG included) + latency
    error_bits: np.ndarray

    @property
    def lost(self):
        return self.frame is None


@dataclass
class PhyCounters:
    """Totals of one :class:`Phy`. ``bits`` counts protected bits (the padded
    frame and FCS), so ``bit_errors / bits`` is the injected BER."""
    frames: int = 0
    bytes: int = 0          # frame bytes handed in (unpadded, no FCS)
    bits: int = 0
    bit_errors: int = 0
    delivered: int = 0
    corrupted: int = 0
    fcs_drop: int = 0
    dropped: int = 0
    link_down: int = 0

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _seed_sequence(seed):
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key)
    return np.random.SeedSequence(seed)


class Phy:
    """One direction of an Ethernet link: MAC, PHY and cable to the far MAC.

    ``transmit(frame, t_ns)`` queues the frame behind the previous one (the
    line carries one frame at a time, IFG included) and returns its
    :class:`Delivery`. Parameters: ``rate_gbps`` (a :class:`LineRate`);
    ``latency_ns`` one-way (cable, PHY and MAC pipelines); ``ber`` independent
    bit errors; ``burst`` a :class:`GilbertElliott` (or None), whose errors add
    to those of ``ber``; ``drop_rate`` the probability of losing a frame to
    congestion; ``down`` a sequence of ``(start_ns, end_ns)`` intervals during
    which the link is down; ``deliver_bad_fcs`` hand up frames with bit errors
    instead of dropping them; ``seed`` an int or ``numpy.random.SeedSequence``.

    A frame is lost to a link-down interval if any of its bits, preamble to
    FCS, is on the wire during it; fates are decided in the order link down,
    random drop, bit errors (errors are drawn for every frame, so each
    process's draws do not depend on the others' settings).
    """

    def __init__(self, rate_gbps=100, latency_ns=1000.0, ber=0.0, burst=None,
                 drop_rate=0.0, down=(), deliver_bad_fcs=False, seed=0):
        if rate_gbps not in LINE_RATES_GBPS:
            raise ValueError(f"rate_gbps must be one of {LINE_RATES_GBPS}, got {rate_gbps}")
        if latency_ns < 0:
            raise ValueError(f"latency_ns must not be negative, got {latency_ns}")
        _check_probability("drop_rate", drop_rate)
        if burst is not None and not isinstance(burst, GilbertElliott):
            raise TypeError(f"burst must be a GilbertElliott or None, got {burst!r}")
        self.rate_gbps, self.latency_ns = int(rate_gbps), float(latency_ns)
        self.ber, self.burst, self.drop_rate = ber, burst, drop_rate
        self.deliver_bad_fcs = bool(deliver_bad_fcs)
        self.down = self._merge(down)
        self._down_starts = [start for start, _ in self.down]
        rng_bits, rng_burst, rng_drop = (
            np.random.default_rng(s) for s in _seed_sequence(seed).spawn(3))
        self._random = RandomBitErrors(ber, rng_bits)
        self._burst = burst.channel(rng_burst) if burst is not None else None
        self._drop = _Buffered(rng_drop.random)
        self._free_ns = 0.0
        self.counters = PhyCounters()

    @staticmethod
    def _merge(down):
        """``down`` sorted, with overlapping intervals merged."""
        merged = []
        for start, end in sorted((float(s), float(e)) for s, e in down):
            if not start < end:
                raise ValueError(f"down interval ({start}, {end}) must have start < end")
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return tuple(merged)

    def add_down(self, start_ns, end_ns):
        """Take the link down in ``[start_ns, end_ns)`` as well (a cable
        pulled while it runs: frames already on their way are judged by
        their time on the wire, as for ``down``)."""
        self.down = self._merge(self.down + ((start_ns, end_ns),))
        self._down_starts = [start for start, _ in self.down]

    @property
    def free_ns(self):
        """When the line is free for the next frame (end of the last IFG)."""
        return self._free_ns

    def is_down(self, start_ns, end_ns):
        """Whether the link is down at any time in ``[start_ns, end_ns)``."""
        i = bisect.bisect_left(self._down_starts, end_ns)
        return i > 0 and self.down[i - 1][1] > start_ns

    def _errors(self, start_ns, n_bits):
        errors = self._random.errors(n_bits)
        if self._burst is not None:
            first_bit = round(start_ns * self.rate_gbps) + 8 * PREAMBLE_SFD_LEN
            burst = self._burst.errors(first_bit, n_bits)
            if burst.size:
                errors = np.union1d(errors, burst) if errors.size else burst
        return errors

    def transmit(self, frame, t_ns):
        """Send ``frame`` (bytes as handed to the MAC, no FCS) offered at
        ``t_ns``; it leaves when the line is free. Returns its :class:`Delivery`."""
        n = len(frame)
        if n == 0:
            raise ValueError("frame must not be empty")
        start = max(float(t_ns), self._free_ns)
        serial = serialization_ns(n, self.rate_gbps)
        self._free_ns = start + serial
        n_bits = protected_bits(n)
        errors = self._errors(start, n_bits)
        c = self.counters
        c.frames += 1
        c.bytes += n
        c.bits += n_bits
        c.bit_errors += errors.size
        on_wire_ns = 8 * (PREAMBLE_SFD_LEN + n_bits // 8) / self.rate_gbps
        if self.is_down(start, start + on_wire_ns):
            fate, out = Fate.LINK_DOWN, None
        elif self.drop_rate and self._drop() < self.drop_rate:
            fate, out = Fate.DROPPED, None
        elif not errors.size:
            fate, out = Fate.DELIVERED, _padded(frame)
        elif not self.deliver_bad_fcs:
            fate, out = Fate.FCS_DROP, None
        else:
            padded = _padded(frame)
            in_frame = errors[errors < 8 * len(padded)]
            fate = Fate.CORRUPTED if in_frame.size else Fate.DELIVERED
            out = flip_bits(padded, in_frame) if in_frame.size else padded
        name = _COUNTER[fate]
        setattr(c, name, getattr(c, name) + 1)
        return Delivery(fate, out, start, start + serial + self.latency_ns, errors)


def _padded(frame):
    frame = bytes(frame)
    return frame + bytes(MIN_FRAME - len(frame)) if len(frame) < MIN_FRAME else frame


#: The keyword arguments of :class:`Phy` that :func:`phy_from_params` takes.
PHY_PARAMS = ("rate_gbps", "latency_ns", "ber", "burst", "drop_rate", "down", "deliver_bad_fcs")


def phy_from_params(params, seed=0):
    """A :class:`Phy` from JSON-ready settings (a testbench parameter, a
    sweep point): the keyword arguments of :class:`Phy`, except that
    ``burst`` is None or a dict of :meth:`GilbertElliott.from_ber` arguments
    (``{"ber": 1e-6, "mean_burst_bits": 100}``) and ``down`` a list of
    ``[start_ns, end_ns]`` pairs. An unknown key raises ValueError naming it."""
    unknown = sorted(set(params) - set(PHY_PARAMS))
    if unknown:
        raise ValueError(f"unknown PHY setting(s) {unknown}; known: {list(PHY_PARAMS)}")
    kw = dict(params)
    burst = kw.get("burst")
    if isinstance(burst, dict):
        kw["burst"] = GilbertElliott.from_ber(**burst)
    return Phy(**kw, seed=seed)


class Link:
    """Two :class:`Phy`, ``a_to_b`` and ``b_to_a``, with independent settings
    and seeds. ``common`` keyword arguments go to both directions, the dicts
    ``a_to_b`` and ``b_to_a`` override them per direction; the two seeds are
    spawned from ``seed`` (``numpy.random.SeedSequence(seed).spawn(2)``)."""

    def __init__(self, *, seed=0, a_to_b=None, b_to_a=None, **common):
        for name, own in (("a_to_b", a_to_b), ("b_to_a", b_to_a)):
            if own and "seed" in own:
                raise ValueError(f"{name} must not set seed: both are spawned from Link's seed")
        seed_ab, seed_ba = np.random.SeedSequence(seed).spawn(2)
        self.a_to_b = Phy(**{**common, **(a_to_b or {})}, seed=seed_ab)
        self.b_to_a = Phy(**{**common, **(b_to_a or {})}, seed=seed_ba)
