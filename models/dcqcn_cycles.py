"""DCQCN in cycles: the twins of :class:`tlpoe.rtl.link.dcqcn.RateLimiter`
(the reaction point and its token bucket) and
:class:`tlpoe.rtl.link.dcqcn.CnpGenerator` (the notification point), the
algorithm of :mod:`tlpoe.models.dcqcn` with the RTL's timing.
``tests/test_dcqcn_twin.py`` proves them against the RTL, every output
every cycle.

The rate limiter's rules (docs/transports.md, "Congestion control"):

* **events.** A CNP (``cnp``, while ``enable``), the ``alpha`` timer, the
  increase timer and the byte counter (``sent_bytes``: the wire bytes of
  a DATA frame the framer took) each set a pending bit; a bit already set
  absorbs a second event of its kind. The timers count cycles up to their
  period (``alpha_timer``, ``increase_timer``); the byte counter keeps
  what is left over its ``byte_counter``.
* **the engine** serves one pending event at a time in five cycles:
  IDLE picks the first of CNP, alpha, increase timer, byte counter (an
  increase event raises its stage count as it is picked); three cycles
  work out the new rates a step a cycle, each registered (S1: the stage
  counts' minimum and maximum against ``fast_recovery``, ``rc * alpha``;
  S2: the increase step with ``ai_rate`` or ``hai_rate``, ``rc`` less
  its cut; S3: the target, the cut held at ``min_rate``), each step
  reading the registers it names in its own cycle; APPLY writes ``rc``,
  ``rt`` and ``alpha`` with the arithmetic of :mod:`tlpoe.models.dcqcn`.
  A CNP applied also restarts both timers, the byte counter and the stage
  counts, and discards the pending alpha and increase events (they
  counted from before the cut).
* **the token bucket** (1/256 bytes): each cycle earns the rate of the
  cycle before times ``line_bytes`` (``rc * line_bytes >> 16``, a
  registered product) up to ``burst`` bytes, and a DATA frame taken
  spends its wire bytes a cycle later (registered; the byte counter
  counts them in that cycle too). ``rate_ok`` (a DATA
  frame may be committed) is the bucket not negative; while the limiter
  is off (``enable`` 0) or the rate is the whole line the bucket stays
  full and ``rate_ok`` is 1.

The notification point: ``echo`` (the next frame sent carries
``FLAG_ECN_ECHO``) is set when a frame marked CE arrives ``cnp_interval``
cycles or more after the last one that set it, and stays until a frame
carrying it is taken (``echo_sent``).
"""

from collections import namedtuple

from .frame import wire_bytes
from .wire import CRC_LEN
from .dcqcn import ALPHA_ONE, FULL, DcqcnParams, decayed_alpha, halfway, raised_alpha

__all__ = ["TIMER_BITS", "OPS", "RateLimiterCycles", "RateCycle", "CnpCycles", "CnpCycle",
           "wire_bytes_of"]

#: Width of the timers and of ``cnp_interval`` (cycles).
TIMER_BITS = 24
_TIMER_MAX = (1 << TIMER_BITS) - 1
#: The engine's operations, in priority order.
OPS = ("cnp", "alpha", "timer", "byte")
IDLE, S1, S2, S3, APPLY = range(5)

RateCycle = namedtuple("RateCycle", "rate_ok rc rt alpha tokens cnps_received "
                                    "throttled_cycles")
CnpCycle = namedtuple("CnpCycle", "echo ce_frames cnps_sent")


def wire_bytes_of(area_at, length):
    """The byte times a DATA frame of ``length`` TLP-area bytes takes on the
    wire (the token bucket's and the byte counter's measure): its headers,
    the area and the bridge's CRC (:func:`~tlpoe.models.frame.wire_bytes`:
    with the FCS, the preamble and the gap; a DATA frame is never padded)."""
    return wire_bytes(area_at + length + CRC_LEN)


class RateLimiterCycles:
    """DCQCN's reaction point and token bucket as the RTL's
    ``RateLimiter``: ``params`` (a :class:`~tlpoe.models.dcqcn.DcqcnParams`),
    ``line_bytes`` (the line's bytes per cycle, in 1/256), ``burst``
    (bytes) and ``enable`` are its registers (set them between cycles; a
    new value acts in the next cycle). :meth:`reset` is ``rst``."""

    def __init__(self, params=None, *, line_bytes, burst=1538, enable=True):
        self.params = params or DcqcnParams()
        self.line_bytes, self.burst, self.enable = line_bytes, burst, enable
        self.burst_init = burst
        self.reset()

    def reset(self):
        self.rc = self.rt = FULL
        self.alpha = ALPHA_ONE
        self.alpha_count = self.timer_count = self.bytes_count = 0
        self.timer_stage = self.byte_stage = 0
        self.pending = dict.fromkeys(OPS, False)
        self.state, self.op = IDLE, "cnp"
        self.cut = self.target = 0
        # the engine's registers between its steps
        self.k = self.product = self.step_ = self.less = 0
        self.hyper = self.fast = False
        self.earn = self.spend = 0
        self.counted = None             # the frame taken in the cycle before
        # the bucket's reset is the burst's reset value (the register's init)
        self.tokens = self.burst_init << 8
        self.cnps_received = self.throttled_cycles = 0

    def bypass(self):
        return not self.enable or self.rc == FULL

    def rate_ok(self):
        return self.bypass() or self.tokens >= 0

    def step(self, *, cnp=False, sent_bytes=None):
        """One cycle: ``cnp`` a CNP arrived, ``sent_bytes`` the wire bytes
        of a DATA frame the framer took (None: none). Returns the
        :class:`RateCycle` the RTL shows before the edge."""
        p = self.params
        ok = self.rate_ok()
        shown = RateCycle(int(ok), self.rc, self.rt, self.alpha, self.tokens,
                          self.cnps_received, self.throttled_cycles)
        self.throttled_cycles = (self.throttled_cycles + (not ok)) & 0xFFFFFFFF
        cnp = bool(cnp) and bool(self.enable)
        self.cnps_received = (self.cnps_received + cnp) & 0xFFFFFFFF

        # the token bucket (from this cycle's rate and earnings)
        if self.bypass():
            tokens = self.burst << 8
        else:
            tokens = min(self.burst << 8, self.tokens + self.earn) - self.spend
        earn = self.rc * self.line_bytes >> 16
        spend = 0 if sent_bytes is None else sent_bytes << 8
        counted, self.counted = self.counted, sent_bytes       # registered

        # the counters' events
        applying = self.state == APPLY
        cut_applied = applying and self.op == "cnp"
        fired = dict.fromkeys(OPS, False)
        fired["cnp"] = cnp
        if cut_applied:
            alpha_count = timer_count = bytes_count = 0
        else:
            alpha_count = self.alpha_count + 1
            if alpha_count >= p.alpha_timer:
                alpha_count, fired["alpha"] = 0, True
            timer_count = self.timer_count + 1
            if timer_count >= p.increase_timer:
                timer_count, fired["timer"] = 0, True
            bytes_count = self.bytes_count
            if counted is not None:
                bytes_count += counted
                if bytes_count >= p.byte_counter:
                    bytes_count, fired["byte"] = bytes_count - p.byte_counter, True

        # the engine
        rc, rt, alpha = self.rc, self.rt, self.alpha
        timer_stage, byte_stage = self.timer_stage, self.byte_stage
        pending = dict(self.pending)
        state, op, cut, target = self.state, self.op, self.cut, self.target
        if self.state == IDLE:
            first = next((k for k in OPS if pending[k]), None)
            if first is not None:
                pending[first] = False
                state, op = S1, first
                if first == "timer":
                    timer_stage = min(timer_stage + 1, 255)
                elif first == "byte":
                    byte_stage = min(byte_stage + 1, 255)
        elif self.state == S1:
            low, high = sorted((self.timer_stage, self.byte_stage))
            F = p.fast_recovery
            self.fast, self.hyper = high < F, low > F
            self.k = (low - F) & 0xFF
            self.product = self.rc * self.alpha
            state = S2
        elif self.state == S2:
            self.step_ = self.k * p.hai_rate if self.hyper else p.ai_rate
            self.less = self.rc - (self.product >> 11)
            state = S3
        elif self.state == S3:
            # (raised_target's and cut_rate's arithmetic, a step a cycle)
            target = self.rt if self.fast else min(FULL, self.rt + self.step_)
            cut = max(p.min_rate, self.less)
            state = APPLY
        else:
            if self.op == "cnp":
                rt, rc, alpha = self.rc, self.cut, raised_alpha(self.alpha, p)
                timer_stage = byte_stage = 0
            elif self.op == "alpha":
                alpha = decayed_alpha(self.alpha, p)
            else:
                rt, rc = self.target, halfway(self.target, self.rc)
            state = IDLE
        for k in OPS:
            pending[k] = pending[k] or fired[k]
        if cut_applied:
            pending["alpha"] = pending["timer"] = pending["byte"] = False

        self.tokens, self.earn, self.spend = tokens, earn, spend
        self.alpha_count, self.timer_count, self.bytes_count = alpha_count, timer_count, bytes_count
        self.rc, self.rt, self.alpha = rc, rt, alpha
        self.timer_stage, self.byte_stage = timer_stage, byte_stage
        self.pending, self.state, self.op, self.cut, self.target = pending, state, op, cut, target
        return shown


class CnpCycles:
    """DCQCN's notification point as the RTL's ``CnpGenerator``:
    ``cnp_interval`` (cycles) and ``enable`` are its registers."""

    def __init__(self, *, cnp_interval=12_500, enable=True):
        self.cnp_interval, self.enable = cnp_interval, enable
        self.reset()

    def reset(self):
        self.since = _TIMER_MAX
        self.echo = False
        self.ce_frames = self.cnps_sent = 0

    def step(self, *, ce=False, echo_sent=False):
        """One cycle: ``ce`` a frame marked CE passed its checks,
        ``echo_sent`` the framer took a frame carrying the echo."""
        shown = CnpCycle(int(self.echo), self.ce_frames, self.cnps_sent)
        due = bool(self.enable) and bool(ce) and self.since >= self.cnp_interval
        self.since = 0 if due else min(self.since + 1, _TIMER_MAX)
        self.echo = due or (self.echo and not echo_sent)
        self.ce_frames = (self.ce_frames + bool(ce)) & 0xFFFFFFFF
        self.cnps_sent = (self.cnps_sent + bool(echo_sent)) & 0xFFFFFFFF
        return shown
