"""ClassQueues (rtl/classq.py) in amaranth.sim against the ordering model:
legal reordering only, posted traffic never blocked by starved non-posted
requests, credits respected, and the test-only illegal arbiter caught."""

import gc
import random

import pytest
from amaranth.sim import Simulator

from tlpoe.models.ordering import check_order
from tlpoe.models.tlp import Attr, OrderingClass, Tlp, TlpType
from tlpoe.rtl.classq import CLASSES, CPL, NP, P, ClassQueues
from tlpoe.tb.bfm import StreamLayout, beats_to_bytes, to_beats

WIDTH = 64
CLASS_OF = {OrderingClass.POSTED: P, OrderingClass.NON_POSTED: NP,
            OrderingClass.COMPLETION: CPL}


def random_tlps(seed, n):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = rng.choice(["MWr", "MWr", "MRd", "CfgWr0", "CplD", "Cpl", "Msg"])
        attr = Attr(rng.choice([0, 0, Attr.RO]))
        if kind == "MWr":
            tlp = Tlp(TlpType.MWr, address=0x1000 * (i + 1), attr=attr, first_be=0xF,
                      last_be=0xF, data=rng.randbytes(4 * rng.randint(2, 12)))
        elif kind == "MRd":
            tlp = Tlp(TlpType.MRd, address=0x1000 * (i + 1), attr=attr, tag=i % 256,
                      first_be=0xF, last_be=0xF, length=rng.randint(2, 64))
        elif kind == "CfgWr0":
            tlp = Tlp(TlpType.CfgWr0, tag=i % 256, first_be=0xF, data=b"\x01\x02\x03\x04")
        elif kind == "Msg":
            tlp = Tlp(TlpType.Msg, message_code=0x20, tag=i % 256)
        else:
            tlp = Tlp(TlpType[kind], tag=rng.randrange(8), attr=attr, lower_address=4 * (i % 16),
                      data=rng.randbytes(4 * rng.randint(1, 8)) if kind == "CplD" else b"")
        out.append(tlp)
    return out


def run(tlps, *, cycles, ready=lambda cycle: True, limits=None, dut=None, ro_enable=1):
    """Drive ``tlps`` into a ClassQueues and return (TLPs out in order,
    counters). ``limits(cycle, consumed)`` gives the credit limits ((hdr,
    data) per class) from the credits consumed so far, or None to leave
    credits off."""
    dut = dut or ClassQueues(WIDTH, depth=32, tlps=8)
    layout = StreamLayout.tlp(WIDTH)
    beats = [(layout.pack(b), b.last) for t in tlps for b in to_beats(t.pack(), layout)]
    out, current, counters = [], [], {}

    async def bench(ctx):
        ctx.set(dut.ro_enable, ro_enable)
        i = 0
        for cycle in range(cycles):
            if limits is not None:
                ctx.set(dut.credits_enable, 1)
                consumed = [(ctx.get(dut.credits_consumed[k].hdr),
                             ctx.get(dut.credits_consumed[k].data)) for k in range(3)]
                for k, (hdr, data) in enumerate(limits(cycle, consumed)):
                    ctx.set(dut.credit_limit[k].hdr, hdr % 256)
                    ctx.set(dut.credit_limit[k].data, data % 65536)
            ctx.set(dut.tlp_in.valid, i < len(beats))
            if i < len(beats):
                ctx.set(dut.tlp_in.payload.as_value(), beats[i][0])
            want = ready(cycle)
            ctx.set(dut.tlp_out.ready, want)
            took = i < len(beats) and ctx.get(dut.tlp_in.ready)
            if want and ctx.get(dut.tlp_out.valid):
                current.append(layout.unpack(ctx.get(dut.tlp_out.payload.as_value())))
                if current[-1].last:
                    out.append(Tlp.unpack(beats_to_bytes(current, layout)))
                    current.clear()
            if took:
                i += 1
            await ctx.tick()
        counters["consumed"] = [(ctx.get(dut.credits_consumed[k].hdr),
                                 ctx.get(dut.credits_consumed[k].data)) for k in range(3)]
        counters["stalls"] = [ctx.get(dut.credit_stall_cycles[k]) for k in range(3)]
        counters["sent"] = [ctx.get(dut.tlps_sent[k]) for k in range(3)]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out, counters


def plenty(consumed):
    """Limits as a peer with empty buffers advertises them: well ahead."""
    hdr, data = consumed
    return hdr + 64, data + 4096


def credits(tlp):
    return (tlp.length + 3) // 4 if tlp.type.has_data else 0


def test_under_backpressure_every_tlp_leaves_in_a_legal_order():
    """Credits off, the egress ready one cycle in three: the queues fill and
    the arbiter interleaves classes, making only legal passes."""
    tlps = random_tlps(1, 120)
    out, counters = run(tlps, cycles=3000, ready=lambda cycle: cycle % 3 == 0)
    result = check_order(tlps, out)
    assert result.ok, result.violations[:3] or (result.missing, result.unexpected)
    assert result.passes >= 20
    assert counters["sent"] == [sum(CLASS_OF[t.ordering_class] == k for t in tlps)
                                for k in range(3)]
    assert counters["consumed"] == [
        (n, sum(credits(t) for t in tlps if CLASS_OF[t.ordering_class] == k))
        for k, n in enumerate(counters["sent"])]


def test_posted_flows_while_non_posted_has_no_credits_and_np_resumes_after():
    """Deadlock avoidance (A3): with zero NP credits for a long stretch the
    posted requests behind the blocked reads still leave; NP goes when its
    credits come back, and nothing passes illegally."""
    tlps = random_tlps(2, 150)
    np_count = sum(t.ordering_class is OrderingClass.NON_POSTED for t in tlps)
    release = 1500

    def limits(cycle, consumed):
        np = plenty(consumed[NP]) if cycle >= release else (0, 0)
        return [plenty(consumed[P]), np, plenty(consumed[CPL])]

    out, counters = run(tlps, cycles=release + 800, limits=limits)
    result = check_order(tlps, out)
    assert result.ok, result.violations[:3] or (result.missing, result.unexpected)
    first_np = next(k for k, t in enumerate(out) if t.ordering_class is OrderingClass.NON_POSTED)
    posted_before_np = sum(t.ordering_class is OrderingClass.POSTED for t in out[:first_np])
    assert posted_before_np >= 10                       # posted traffic kept flowing
    assert counters["stalls"][NP] >= release - 200      # NP waited for credits all along
    assert counters["sent"][NP] == np_count             # and resumed


def test_credits_are_never_exceeded():
    """A slow trickle of credits: the arbiter never consumes more than the
    limit it was given, in any class."""
    tlps = random_tlps(3, 80)
    seen = []

    def limits(cycle, consumed):
        step = cycle // 20
        limit = [(step, 4 * step), (step // 2, step), (step, 3 * step)]
        seen.append(limit)
        return limit

    out, counters = run(tlps, cycles=2500, limits=limits)
    final = seen[-1]
    for k in range(3):
        hdr, data = counters["consumed"][k]
        assert hdr <= final[k][0] and data <= final[k][1], (CLASSES[k], hdr, data, final[k])
    assert check_order(tlps[:len(out)], out).violations == []


def test_relaxed_ordering_completions_may_pass_stalled_posted():
    """Posted credits withheld: a completion with RO leaves ahead of earlier
    posted requests when ro_enable is set (D2b), and not when it is clear."""
    write = Tlp(TlpType.MWr, address=0x1000, first_be=0xF, last_be=0xF, data=bytes(16))
    done = Tlp(TlpType.CplD, tag=1, attr=Attr.RO, data=bytes(8))
    def limits(cycle, consumed):
        return [(0, 0) if cycle < 60 else plenty(consumed[P]), plenty(consumed[NP]),
                plenty(consumed[CPL])]

    out, _ = run([write, done], cycles=100, limits=limits)
    assert [t.type for t in out] == [TlpType.CplD, TlpType.MWr]
    out, _ = run([write, done], cycles=100, limits=limits, ro_enable=0)
    assert [t.type for t in out] == [TlpType.MWr, TlpType.CplD]


def test_throughput_is_one_beat_per_cycle_across_classes():
    tlps = random_tlps(4, 60)
    n_beats = sum(len(to_beats(t.pack(), StreamLayout.tlp(WIDTH))) for t in tlps)
    out, _ = run(tlps, cycles=n_beats + 8)
    assert len(out) == len(tlps)


def test_the_illegal_arbiter_is_caught_by_the_ordering_model():
    tlps = random_tlps(5, 150)
    def limits(cycle, consumed):         # posted credits trickle: posted TLPs wait
        return [((cycle // 40) % 256, consumed[P][1] + 4096), plenty(consumed[NP]),
                plenty(consumed[CPL])]

    out, _ = run(tlps, cycles=4000, limits=limits,
                 dut=ClassQueues(WIDTH, depth=32, tlps=8, reorder_illegally=True))
    violations = check_order(tlps, out).violations
    assert violations and {v.cell for v in violations} <= {"B2a", "D2a"}


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("kw, name", [(dict(depth=1), "depth"), (dict(tlps=0), "tlps"),
                                      (dict(stamp_bits=4), "stamp_bits")])
def test_bad_parameters_name_themselves(kw, name):
    with pytest.raises(ValueError, match=name):
        ClassQueues(WIDTH, **kw)
    gc.collect()            # the half-built component's warning, here where it is ignored
