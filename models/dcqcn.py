"""Congestion control for the routed transports (issue 20): DCQCN's
reaction point, a rate limiter in front of the bridge's MAC, and its
notification point, in the fixed point a clocked implementation keeps.

DCQCN (Y. Zhu et al., "Congestion Control for Large-Scale RDMA
Deployments", SIGCOMM 2015, doi:10.1145/2785956.2787484) is RoCEv2's
congestion control: a switch marks ECN-CE on frames it queues above a
threshold; the receiver (the notification point, NP) sends the sender a
Congestion Notification Packet (CNP) at most once per ``cnp_interval``
while marked frames arrive; the sender (the reaction point, RP) cuts its
rate on each CNP and recovers it when none comes:

* on a CNP: the target rate ``rt`` takes the current rate ``rc``, then
  ``rc = rc * (1 - alpha / 2)`` and ``alpha = (1 - g) * alpha + g``; the
  increase stages restart;
* every ``alpha_timer`` without a CNP: ``alpha = (1 - g) * alpha``;
* an increase event every ``increase_timer`` and every ``byte_counter``
  bytes sent: while both stage counts are below ``fast_recovery`` (F),
  fast recovery, ``rc = (rt + rc) / 2``; once both exceed F, hyper
  increase, ``rt += i * hai_rate`` (``i`` the smaller count less F);
  otherwise additive increase, ``rt += ai_rate``; then ``rc = (rt + rc) / 2``.

The rates are fractions of the line rate in units of ``1 / 2**16``
(:data:`FULL`: the whole line), ``alpha`` in units of ``1 / 2**10``, ``g``
a power of two (``g_shift``), times in ticks (a clock cycle in the RTL),
so that every step is an addition, a shift or one multiplication whose
result a twin can reproduce bit for bit. The transmitter sends a frame
when its token bucket is not negative (:class:`TokenBucket`): every tick
it earns ``rc`` of the line's bytes per tick, a frame spends its wire
bytes.

Plain Python, no simulator.
"""

from dataclasses import dataclass

__all__ = ["FULL", "ALPHA_ONE", "DcqcnParams", "ReactionPoint", "NotificationPoint",
           "TokenBucket", "cut_rate", "raised_alpha", "decayed_alpha", "raised_target",
           "halfway"]

#: The whole line rate, in the rate registers' units.
FULL = 1 << 16
#: ``alpha`` = 1.
ALPHA_ONE = 1 << 10


@dataclass(frozen=True)
class DcqcnParams:
    """The registers of the rate limiter and the CNP generator (ticks, bytes,
    rates in units of ``FULL``). Defaults: the paper's and the usual NIC
    settings at a 4 ns tick: ``g`` 1/256; ``alpha`` and the increase timer
    every 55 us; a byte counter of 10 MB; F = 5; additive increase 40 Mb/s
    and hyper increase 400 Mb/s of a 100 Gb/s line; a CNP at most every
    50 us; a floor of 1/1024 of the line."""
    g_shift: int = 8
    alpha_timer: int = 13_750
    increase_timer: int = 13_750
    byte_counter: int = 10_000_000
    fast_recovery: int = 5
    ai_rate: int = 26
    hai_rate: int = 262
    min_rate: int = FULL >> 10
    cnp_interval: int = 12_500

    def __post_init__(self):
        for name, low, high in (("g_shift", 1, 10), ("alpha_timer", 1, (1 << 24) - 1),
                                ("increase_timer", 1, (1 << 24) - 1),
                                ("byte_counter", 1, (1 << 32) - 1),
                                ("fast_recovery", 1, 255), ("ai_rate", 0, FULL),
                                ("hai_rate", 0, FULL), ("min_rate", 1, FULL),
                                ("cnp_interval", 0, (1 << 24) - 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in {low}..{high}, not {value!r}")


def cut_rate(rc, alpha, params):
    """The rate after a CNP: ``rc * (1 - alpha / 2)``, not below the floor."""
    return max(params.min_rate, rc - (rc * alpha >> 11))


def raised_alpha(alpha, params):
    """``alpha`` after a CNP: ``(1 - g) * alpha + g``."""
    return alpha - (alpha >> params.g_shift) + (ALPHA_ONE >> params.g_shift)


def decayed_alpha(alpha, params):
    """``alpha`` after an ``alpha_timer`` without a CNP: ``(1 - g) * alpha``."""
    return alpha - (alpha >> params.g_shift)


def raised_target(rt, timer_stage, byte_stage, params):
    """The target rate after an increase event at these stage counts: fast
    recovery (unchanged) while both are below F, hyper increase once both
    exceed it, additive increase otherwise."""
    low, high = sorted((timer_stage, byte_stage))
    if high < params.fast_recovery:
        return rt
    if low > params.fast_recovery:
        return min(FULL, rt + (low - params.fast_recovery) * params.hai_rate)
    return min(FULL, rt + params.ai_rate)


def halfway(rt, rc):
    """The current rate after an increase event: halfway to the target."""
    return (rt + rc + 1) >> 1


class ReactionPoint:
    """DCQCN's sender side: the current and target rates and ``alpha``,
    stepped one tick at a time (:meth:`tick`), with :meth:`cnp` (a
    congestion notification arrived) and :meth:`sent` (bytes sent)."""

    def __init__(self, params=None):
        self.params = params or DcqcnParams()
        self.reset()

    def reset(self):
        self.rc = self.rt = FULL
        self.alpha = ALPHA_ONE
        self.alpha_count = 0            # ticks since the last CNP or alpha decay
        self.timer_count = 0            # ticks towards the next timer event
        self.bytes_count = 0            # bytes towards the next byte event
        self.timer_stage = self.byte_stage = 0
        self.cnps = 0

    def cnp(self):
        """A CNP: cut the rate, raise ``alpha``, restart the increase."""
        p = self.params
        self.cnps += 1
        self.rt = self.rc
        self.rc = cut_rate(self.rc, self.alpha, p)
        self.alpha = raised_alpha(self.alpha, p)
        self.alpha_count = self.timer_count = self.bytes_count = 0
        self.timer_stage = self.byte_stage = 0

    def sent(self, nbytes):
        """``nbytes`` left on the wire: the byte counter; an increase event
        for each ``byte_counter`` bytes."""
        self.bytes_count += nbytes
        while self.bytes_count >= self.params.byte_counter:
            self.bytes_count -= self.params.byte_counter
            self.byte_stage = min(self.byte_stage + 1, 255)
            self._increase()

    def tick(self):
        """One tick: ``alpha``'s decay and the increase timer."""
        p = self.params
        self.alpha_count += 1
        if self.alpha_count >= p.alpha_timer:
            self.alpha_count = 0
            self.alpha = decayed_alpha(self.alpha, p)
        self.timer_count += 1
        if self.timer_count >= p.increase_timer:
            self.timer_count = 0
            self.timer_stage = min(self.timer_stage + 1, 255)
            self._increase()

    def _increase(self):
        self.rt = raised_target(self.rt, self.timer_stage, self.byte_stage, self.params)
        self.rc = halfway(self.rt, self.rc)


class NotificationPoint:
    """DCQCN's receiver side: a CNP for the sender when a frame marked CE
    arrives, at most one per ``cnp_interval`` ticks."""

    def __init__(self, params=None):
        self.params = params or DcqcnParams()
        self.reset()

    def reset(self):
        self.since = self.params.cnp_interval      # ticks since the last CNP
        self.marked = self.sent = 0

    def tick(self, marked=False):
        """One tick; ``marked``: a frame marked CE arrived. Returns whether a
        CNP is due now."""
        self.since = min(self.since + 1, self.params.cnp_interval)
        if not marked:
            return False
        self.marked += 1
        if self.since < self.params.cnp_interval:
            return False
        self.since = 0
        self.sent += 1
        return True


class TokenBucket:
    """The transmitter's gate: ``line_bytes`` is the line's bytes per tick
    in units of 1/256 (100 Gb/s at 322.27 MHz: 38.8 B, 9,930); every tick
    the bucket earns ``rate`` (units of ``FULL``) of it, up to ``burst``
    bytes; a frame may start while it holds at least zero and spends its
    wire bytes (the bucket may go negative: a frame is never split)."""

    def __init__(self, line_bytes, burst=1538):
        if not isinstance(line_bytes, int) or line_bytes < 1:
            raise ValueError(f"line_bytes must be a positive integer (1/256 bytes), "
                             f"not {line_bytes!r}")
        self.line_bytes, self.burst = line_bytes, burst << 8
        self.tokens = self.burst                   # in 1/256 bytes

    def may_send(self):
        return self.tokens >= 0

    def tick(self, rate):
        self.tokens = min(self.burst, self.tokens + (rate * self.line_bytes >> 16))

    def spend(self, wire_bytes):
        self.tokens -= wire_bytes << 8
