"""ClassQueues (rtl/queues/classq.py) in amaranth.sim against the ordering model:
legal reordering only, posted traffic never blocked by starved non-posted
requests, credits respected, and the test-only illegal arbiter caught."""

import gc
import random

import pytest
from amaranth.sim import Simulator

from tlpoe.models.ordering import check_order
from tlpoe.models.tlp import Attr, OrderingClass, Tlp, TlpType
from tlpoe.rtl.queues.classq import ClassQueues
from tlpoe.rtl.tlp_header import CLASSES, CPL, NP, P
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


def run(tlps, *, cycles, ready=lambda cycle: True, limits=None, dut=None, ro_enable=1,
        stamps=None, class_enable=lambda cycle: 0b111, width=WIDTH):
    """Drive ``tlps`` into a ClassQueues and return (TLPs out in order,
    counters). ``limits(cycle, consumed)`` gives the credit limits ((hdr,
    data) per class) from the credits consumed so far, or None to leave
    credits off. ``stamps``: each TLP's stamp in ``tlp_in``'s payload; the
    stamps out (``tlp_out``'s at each first beat) are ``counters["stamps"]``, and
    ``counters["np_room"]`` is ``np_room`` per cycle."""
    dut = dut or ClassQueues(width, depth=32, tlps=8)
    layout = StreamLayout.tlp(width)
    beats = [(layout.pack(b), b.last, k) for k, t in enumerate(tlps)
             for b in to_beats(t.pack(), layout)]
    out, current, counters = [], [], {"stamps": [], "np_room": []}

    async def bench(ctx):
        ctx.set(dut.ro_enable, ro_enable)
        i = 0
        for cycle in range(cycles):
            ctx.set(dut.class_enable, class_enable(cycle))
            counters["np_room"].append(ctx.get(dut.np_room))
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
                if stamps is not None:          # the stamp rides in the payload
                    ctx.set(dut.tlp_in.payload.stamp, stamps[beats[i][2]])
            want = ready(cycle)
            ctx.set(dut.tlp_out.ready, want)
            took = i < len(beats) and ctx.get(dut.tlp_in.ready)
            if want and ctx.get(dut.tlp_out.valid):
                if not current:
                    counters["stamps"].append(ctx.get(dut.tlp_out.payload.stamp))
                current.append(layout.unpack(ctx.get(dut.tlp_out.payload.as_value())))
                if current[-1].last:
                    out.append(Tlp.unpack(beats_to_bytes(current, layout)))
                    counters.setdefault("out_cycles", []).append(cycle)
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


@pytest.mark.parametrize("width", [64, 256])
def test_credits_are_never_exceeded(width):
    """A slow trickle of credits: the arbiter never consumes more than the
    limit it was given, in any class, at any cycle (at 256 bits most TLPs
    are one beat, so grants of one class can follow each other every
    cycle)."""
    tlps = random_tlps(3, 80)
    given = []

    def limits(cycle, consumed):
        step = cycle // 20
        limit = [(step, 4 * step), (step // 2, step), (step, 3 * step)]
        if given:                   # what was consumed by now was granted under the last limit
            for k in range(3):
                assert consumed[k][0] <= given[-1][k][0] and consumed[k][1] <= given[-1][k][1], \
                    (cycle, CLASSES[k], consumed[k], given[-1][k])
        given.append(limit)
        return limit

    out, counters = run(tlps, cycles=2500, limits=limits, width=width,
                        dut=ClassQueues(width, depth=32, tlps=8))
    assert len(out) >= 40
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
    """Back to back: a beat per cycle once the first TLP is in whole (a
    TLP's descriptor is written with its last beat), plus a few cycles of
    pipeline; a cycle lost per TLP would need 60 more."""
    tlps = random_tlps(4, 60)
    sizes = [len(to_beats(t.pack(), StreamLayout.tlp(WIDTH))) for t in tlps]
    out, _ = run(tlps, cycles=sum(sizes) + sizes[0] + 8)
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


def test_oldest_policy_keeps_arrival_order_until_a_class_is_held():
    """The Bridge's policy: with nothing held, TLPs leave exactly in arrival
    order (backpressure or not); with NP credits withheld, posted requests
    and completions pass the waiting reads (legally) and nothing else moves."""
    tlps = random_tlps(5, 120)
    oldest = dict(depth=32, tlps=8, policy="oldest")
    out, _ = run(tlps, cycles=3000, ready=lambda cycle: cycle % 3 == 0,
                 dut=ClassQueues(WIDTH, **oldest))
    assert [t.pack() for t in out] == [t.pack() for t in tlps]

    def limits(cycle, consumed):
        np = plenty(consumed[NP]) if cycle >= 800 else (0, 0)
        return [plenty(consumed[P]), np, plenty(consumed[CPL])]

    out, counters = run(tlps, cycles=2500, limits=limits, dut=ClassQueues(WIDTH, **oldest))
    result = check_order(tlps, out)
    assert result.ok and result.passes > 0, result.violations[:3]
    assert counters["stalls"][NP] > 500
    others = [t.pack() for t in tlps if t.ordering_class is not OrderingClass.NON_POSTED]
    assert [t.pack() for t in out if t.ordering_class is not OrderingClass.NON_POSTED] == others


def test_carried_stamps_leave_with_their_tlps():
    """``carry_stamp``: the stamp given with a TLP's first beat is the one
    ``tlp_out`` carries when that TLP leaves, across reordering."""
    tlps = random_tlps(6, 80)
    stamps = [(977 * k + 5) % 65536 for k in range(len(tlps))]
    by_bytes = {t.pack(): s for t, s in zip(tlps, stamps)}
    out, counters = run(tlps, cycles=2500, ready=lambda cycle: cycle % 2 == 0, stamps=stamps,
                        class_enable=lambda cycle: 0b101 if cycle < 600 else 0b111,
                        dut=ClassQueues(WIDTH, depth=32, tlps=8, policy="oldest",
                                        carry_stamp=True))
    assert len(out) == len(tlps)
    assert counters["stamps"] == [by_bytes[t.pack()] for t in out]


def test_class_enable_holds_non_posted_and_np_room_falls_when_full():
    """``class_enable`` NP clear: no non-posted TLP leaves while posted ones
    and completions pass them; ``np_room`` falls once the NP queue cannot
    take a largest non-posted TLP, and rises again as it drains."""
    tlps = random_tlps(7, 150)
    out, counters = run(tlps, cycles=3000, class_enable=lambda cycle: 0b101 if cycle < 1200
                        else 0b111, dut=ClassQueues(WIDTH, depth=32, tlps=8, policy="oldest"))
    assert check_order(tlps, out).ok and len(out) == len(tlps)
    during = [t for t, c in zip(out, counters["out_cycles"]) if c < 1200]
    assert len(during) >= 5 and all(t.ordering_class is not OrderingClass.NON_POSTED
                                    for t in during)
    assert any(t.ordering_class is OrderingClass.NON_POSTED
               for t in tlps[:tlps.index(during[-1])])      # they passed waiting reads
    room = counters["np_room"]
    assert room[0] == 1 and 0 in room[:1200] and room[-1] == 1


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("kw, name", [(dict(depth=1), "depth"), (dict(tlps=0), "tlps"),
                                      (dict(stamp_bits=4), "stamp_bits"),
                                      (dict(policy="fifo"), "policy")])
def test_bad_parameters_name_themselves(kw, name):
    with pytest.raises(ValueError, match=name):
        ClassQueues(WIDTH, **kw)
    gc.collect()            # the half-built component's warning, here where it is ignored


@pytest.mark.parametrize("posted", [3, 20, 40, 52])
def test_a_read_held_while_many_posted_pass_leaves_when_released(posted):
    """A read waits (``class_enable`` NP clear) while ``posted`` writes pass
    it, then NP is enabled with no posted traffic left: the read leaves. The
    stamps are 5 bits here (tlps=4): a read released by comparing stamps
    modulo 32 would look unreleased again after 16 to 31 passes and wait
    forever (a host left waiting for its completion)."""
    read = Tlp(TlpType.MRd, address=0x9000, tag=1, first_be=0xF, last_be=0xF, length=1)
    writes = [Tlp(TlpType.MWr, address=0x1000 * (i + 1), first_be=0xF, last_be=0xF,
                  data=bytes(8)) for i in range(posted)]
    tlps = [writes[0], read] + writes[1:]
    out, counters = run(tlps, cycles=12 * posted + 100,
                        class_enable=lambda cycle: 0b101 if cycle < 8 * posted + 40 else 0b111,
                        dut=ClassQueues(WIDTH, depth=32, tlps=4, stamp_bits=5))
    assert len(out) == len(tlps) and out[-1].type is TlpType.MRd
    assert counters["out_cycles"][-1] >= 8 * posted + 40
