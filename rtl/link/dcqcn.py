"""DCQCN in the RTL (issue 20, docs/transports.md "Congestion control"):
the sending bridge's rate limiter (the reaction point and its token
bucket, which gates the replay buffer's DATA commits) and the receiving
bridge's CNP generator (the notification point: the ECN echo flag on the
next frame sent). Their cycle twins are
:class:`tlpoe.models.dcqcn_cycles.RateLimiterCycles` and
:class:`tlpoe.models.dcqcn_cycles.CnpCycles`; the algorithm and its fixed
point are :mod:`tlpoe.models.dcqcn`'s.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...models.dcqcn import ALPHA_ONE, FULL, DcqcnParams
from ...models.dcqcn_cycles import OPS, TIMER_BITS

__all__ = ["RateLimiter", "CnpGenerator", "RATE_BITS", "ALPHA_BITS", "SENT_BITS"]

#: Bits of a rate (0 .. FULL), of ``alpha`` (0 .. ALPHA_ONE), of a frame's wire bytes.
RATE_BITS = FULL.bit_length()
ALPHA_BITS = ALPHA_ONE.bit_length()
SENT_BITS = 14
_TIMER_MAX = (1 << TIMER_BITS) - 1
IDLE, S1, S2, S3, APPLY = range(5)


def _check(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, not {value!r}")


class RateLimiter(wiring.Component):
    """DCQCN's reaction point and a token bucket, in front of the replay
    buffer's DATA commits.

    Inputs: ``cnp`` (a pulse: a frame carrying the peer's ECN echo was
    accepted), ``sent`` with ``sent_bytes`` (the framer took a DATA frame;
    its wire bytes, :func:`~tlpoe.models.dcqcn_cycles.wire_bytes_of`).
    Registers: ``enable``, the :class:`~tlpoe.models.dcqcn.DcqcnParams`
    of the reaction point (``g_shift``, ``alpha_timer``,
    ``increase_timer``, ``byte_counter``, ``fast_recovery``, ``ai_rate``,
    ``hai_rate``, ``min_rate``), ``line_bytes`` (the line's bytes per
    cycle in 1/256) and ``burst`` (the bucket's depth, bytes).

    Outputs: ``rate_ok`` (a DATA frame may be committed), the current and
    target rates ``rc`` and ``rt`` (units of 1/65536 of the line),
    ``alpha`` (1/1024), counters ``cnps_received`` and
    ``throttled_cycles`` (cycles with ``rate_ok`` 0).

    Events set pending bits served one at a time by a five-cycle engine
    (pick; three steps of the arithmetic, each registered: the products
    of ``rc`` have registers before and after, a DSP block's pipeline, and
    no carry chain follows another in a cycle; apply); the token bucket
    earns the rate of the cycle before; a frame's bytes are spent and
    counted a cycle after the framer took it (registered). The rules are the twin's
    (models/dcqcn_cycles.py)."""

    def __init__(self, params=None, *, line_bytes=64 << 8, burst=1538, enable=False):
        params = params or DcqcnParams()
        if not isinstance(params, DcqcnParams):
            raise ValueError(f"params must be a DcqcnParams, not {params!r}")
        _check("line_bytes", line_bytes, 1, (1 << 16) - 1)
        _check("burst", burst, 1, (1 << 16) - 1)
        self.params = params
        p = params
        super().__init__({
            "cnp": In(1),
            "sent": In(1),
            "sent_bytes": In(SENT_BITS),
            "enable": In(1, init=int(bool(enable))),
            "g_shift": In(4, init=p.g_shift),
            "alpha_timer": In(TIMER_BITS, init=p.alpha_timer),
            "increase_timer": In(TIMER_BITS, init=p.increase_timer),
            "byte_counter": In(32, init=p.byte_counter),
            "fast_recovery": In(8, init=p.fast_recovery),
            "ai_rate": In(RATE_BITS, init=p.ai_rate),
            "hai_rate": In(RATE_BITS, init=p.hai_rate),
            "min_rate": In(RATE_BITS, init=p.min_rate),
            "line_bytes": In(16, init=line_bytes),
            "burst": In(16, init=burst),
            "rate_ok": Out(1),
            "rc": Out(RATE_BITS, init=FULL),
            "rt": Out(RATE_BITS, init=FULL),
            "alpha": Out(ALPHA_BITS, init=ALPHA_ONE),
            "cnps_received": Out(32),
            "throttled_cycles": Out(32),
        })
        self._burst_init = burst

    def elaborate(self, platform):
        m = Module()
        rc, rt, alpha = self.rc, self.rt, self.alpha
        cnp = Signal()
        m.d.comb += cnp.eq(self.cnp & self.enable)
        with m.If(cnp):
            m.d.sync += self.cnps_received.eq(self.cnps_received + 1)

        # --- the token bucket (1/256 bytes) ---------------------------------------------
        tokens = Signal(signed(27), init=self._burst_init << 8)
        earn = Signal(RATE_BITS)            # rc * line_bytes >> 16, from the cycle before
        # the frame the framer took, registered: its bytes count from the
        # next cycle (the replay buffer's descriptor -> the byte counter's
        # compare was the 64-bit udp+ecn Bridge's critical path)
        sent, sent_bytes = Signal(), Signal(SENT_BITS)
        m.d.sync += [sent.eq(self.sent), sent_bytes.eq(self.sent_bytes)]
        spend = Signal(SENT_BITS + 8)
        bypass = Signal()
        m.d.comb += [bypass.eq(~self.enable | rc[RATE_BITS - 1]),
                     self.rate_ok.eq(bypass | ~tokens[-1])]
        with m.If(~self.rate_ok):
            m.d.sync += self.throttled_cycles.eq(self.throttled_cycles + 1)
        m.d.sync += earn.eq((rc * self.line_bytes) >> 16)
        m.d.comb += spend.eq(Mux(sent, Cat(Const(0, 8), sent_bytes), 0))
        # min(full, tokens + earn) - spend as two carry chains in a row: the
        # cap's compare (tokens > full - earn) beside the sums
        full = Signal(25)
        m.d.comb += full.eq(Cat(Const(0, 8), self.burst))
        headroom, net = Signal(signed(27)), Signal(signed(27))
        m.d.comb += [headroom.eq(full - earn), net.eq(earn - spend)]
        with m.If(bypass):
            m.d.sync += tokens.eq(full)
        with m.Elif(tokens > headroom):
            m.d.sync += tokens.eq(full - spend)
        with m.Else():
            m.d.sync += tokens.eq(tokens + net)

        # --- the events ------------------------------------------------------------------
        state = Signal(range(5))
        op = Signal(range(len(OPS)))
        applying_cut = Signal()
        m.d.comb += applying_cut.eq((state == APPLY) & (op == OPS.index("cnp")))
        fired = Signal(len(OPS))
        alpha_count = Signal(TIMER_BITS)
        timer_count = Signal(TIMER_BITS)
        bytes_count = Signal(32)
        a1 = Signal(TIMER_BITS + 1)
        t1 = Signal(TIMER_BITS + 1)
        b1 = Signal(33)
        m.d.comb += [a1.eq(alpha_count + 1), t1.eq(timer_count + 1),
                     b1.eq(bytes_count + Mux(sent, sent_bytes, 0))]
        fire_a, fire_t, fire_b = Signal(), Signal(), Signal()
        m.d.comb += [fire_a.eq(a1 >= self.alpha_timer), fire_t.eq(t1 >= self.increase_timer),
                     fire_b.eq(sent & (b1 >= self.byte_counter))]
        with m.If(applying_cut):
            m.d.sync += [alpha_count.eq(0), timer_count.eq(0), bytes_count.eq(0)]
        with m.Else():
            m.d.sync += [alpha_count.eq(Mux(fire_a, 0, a1)), timer_count.eq(Mux(fire_t, 0, t1)),
                         bytes_count.eq(Mux(fire_b, b1 - self.byte_counter, b1))]
            m.d.comb += fired.eq(Cat(Const(0, 1), fire_a, fire_t, fire_b))
        m.d.comb += fired[0].eq(cnp)

        # --- the engine: pick, multiply, apply -----------------------------------------
        pending = Signal(len(OPS))
        picked = Signal(len(OPS))
        timer_stage, byte_stage = Signal(8), Signal(8)
        cut = Signal(RATE_BITS)
        target = Signal(RATE_BITS)
        # the engine's registers between its steps
        fast, hyper = Signal(), Signal()
        stage_k = Signal(8)              # the smaller stage count less F
        product = Signal(RATE_BITS + ALPHA_BITS)
        step = Signal(RATE_BITS + 8)
        less = Signal(RATE_BITS)
        g = self.g_shift
        with m.Switch(state):
            with m.Case(IDLE):
                for k, name in enumerate(OPS):
                    with (m.If if k == 0 else m.Elif)(pending[k]):
                        m.d.comb += picked[k].eq(1)
                        m.d.sync += [state.eq(S1), op.eq(k)]
                        if name == "timer":
                            m.d.sync += timer_stage.eq(timer_stage + (timer_stage != 255))
                        elif name == "byte":
                            m.d.sync += byte_stage.eq(byte_stage + (byte_stage != 255))
            with m.Case(S1):
                # the stage counts against F; rc * alpha (registered in and out)
                ordered = timer_stage < byte_stage
                low = Mux(ordered, timer_stage, byte_stage)
                high = Mux(ordered, byte_stage, timer_stage)
                m.d.sync += [fast.eq(high < self.fast_recovery),
                             hyper.eq(low > self.fast_recovery),
                             stage_k.eq(low - self.fast_recovery),
                             product.eq(rc * alpha), state.eq(S2)]
            with m.Case(S2):
                m.d.sync += [step.eq(Mux(hyper, stage_k * self.hai_rate, self.ai_rate)),
                             less.eq(rc - (product >> 11)), state.eq(S3)]
            with m.Case(S3):
                raised = Signal(RATE_BITS + 9)
                m.d.comb += raised.eq(rt + step)
                m.d.sync += [target.eq(Mux(fast, rt, Mux(raised > FULL, FULL, raised))),
                             cut.eq(Mux(less < self.min_rate, self.min_rate, less)),
                             state.eq(APPLY)]
            with m.Case(APPLY):
                with m.Switch(op):
                    with m.Case(OPS.index("cnp")):
                        m.d.sync += [rt.eq(rc), rc.eq(cut),
                                     alpha.eq(alpha - (alpha >> g) + (ALPHA_ONE >> g)),
                                     timer_stage.eq(0), byte_stage.eq(0)]
                    with m.Case(OPS.index("alpha")):
                        m.d.sync += alpha.eq(alpha - (alpha >> g))
                    with m.Default():
                        m.d.sync += [rt.eq(target), rc.eq((target + rc + 1) >> 1)]
                m.d.sync += state.eq(IDLE)
        after = Signal(len(OPS))
        m.d.comb += after.eq((pending & ~picked) | fired)
        m.d.sync += pending.eq(Mux(applying_cut, after & 1, after))
        return m


class CnpGenerator(wiring.Component):
    """DCQCN's notification point: ``echo`` (the next frame sent carries
    ``FLAG_ECN_ECHO``) from a frame marked CE (``ce``, a pulse: it passed
    its checks) arriving ``cnp_interval`` cycles or more after the last one
    that set it, until a frame carrying it is taken (``echo_sent``).
    Counters ``ce_frames`` and ``cnps_sent``."""

    def __init__(self, *, cnp_interval=None, enable=False):
        cnp_interval = DcqcnParams().cnp_interval if cnp_interval is None else cnp_interval
        _check("cnp_interval", cnp_interval, 0, _TIMER_MAX)
        super().__init__({
            "ce": In(1),
            "echo_sent": In(1),
            "enable": In(1, init=int(bool(enable))),
            "cnp_interval": In(TIMER_BITS, init=cnp_interval),
            "echo": Out(1),
            "ce_frames": Out(32),
            "cnps_sent": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        since = Signal(TIMER_BITS, init=_TIMER_MAX)
        due = Signal()
        m.d.comb += due.eq(self.enable & self.ce & (since >= self.cnp_interval))
        m.d.sync += [since.eq(Mux(due, 0, since + (since != _TIMER_MAX))),
                     self.echo.eq(due | (self.echo & ~self.echo_sent))]
        with m.If(self.ce):
            m.d.sync += self.ce_frames.eq(self.ce_frames + 1)
        with m.If(self.echo_sent):
            m.d.sync += self.cnps_sent.eq(self.cnps_sent + 1)
        return m
