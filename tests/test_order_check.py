"""OrderChecker (rtl/queues/order_check.py) in amaranth.sim against the ordering
model: never a flag on a legal reordering, a flag on every illegal pass, with
its cell, stamp and tag."""

import gc
import random

import pytest
from amaranth.sim import Simulator

from tlpoe.models.ordering import check_order, legal_pass
from tlpoe.models.tlp import OrderingClass, Tlp, TlpType
from tlpoe.rtl.queues.order_check import CELLS, OrderChecker
from tlpoe.tb.bfm import StreamLayout, to_beats
from tlpoe.tb.stimulus import ordering_traffic

HOST, GPU = 0x0100, 0x0200


def traffic(seed, n):
    """The ordering stimulus without IDO (which the checker does not judge)."""
    return [Tlp.unpack(t) for t in ordering_traffic(seed, n, ido=0.0)]


def stamps(tlps):
    """Posted TLPs before each one, in arrival order (what ClassQueues writes)."""
    out, posted = [], 0
    for tlp in tlps:
        out.append(posted)
        posted += tlp.ordering_class is OrderingClass.POSTED
    return out


def posted_writes(n):
    return [Tlp(TlpType.MWr, address=0x1000 + 4 * k, first_be=0xF, data=bytes(4)) for k in range(n)]


def legal_shuffle(n, tlps, rng, depth=8):
    waiting, order = list(range(n)), []
    while waiting:
        window = waiting[:depth]
        choices = [k for k, i in enumerate(window)
                   if all(legal_pass(tlps[i], tlps[j]) for j in window[:k])]
        order.append(waiting.pop(rng.choice(choices)))
    return order


def run_checker(tlps, order, width, **kw):
    """Feed the TLPs in ``order`` back to back with their stamps; return the
    egress positions flagged, with their cells, and the final outputs."""
    dut = OrderChecker(width, **kw)
    layout = StreamLayout.tlp(width)
    stamp_of = stamps(tlps)
    flagged, out = [], {}

    async def bench(ctx):
        last_beat, seen = [], []               # cycle of each TLP's last beat; violations per cycle
        for i in order:
            beats = to_beats(tlps[i].pack(), layout)
            for b, beat in enumerate(beats):
                ctx.set(dut.valid, 1)
                ctx.set(dut.beat.as_value(), layout.pack(beat))
                ctx.set(dut.stamp, stamp_of[i] if b == 0 else 0xDEAD)
                await ctx.tick()
                seen.append(ctx.get(dut.violations))
            last_beat.append(len(seen) - 1)
        ctx.set(dut.valid, 0)
        for _ in range(dut.latency):
            await ctx.tick()
            seen.append(ctx.get(dut.violations))
        seen.insert(0, 0)                      # seen[c]: in cycle c, before the clock edge
        for k, c in enumerate(last_beat):      # counted from cycle c + latency on
            if seen[c + dut.latency] != seen[c + dut.latency - 1]:
                flagged.append(k)
        out.update(violations=ctx.get(dut.violations), irq=ctx.get(dut.irq),
                   by_cell=[ctx.get(dut.by_cell[c]) for c in range(len(CELLS))],
                   first=(ctx.get(dut.first_valid), ctx.get(dut.first_stamp),
                          ctx.get(dut.first_tag), CELLS[ctx.get(dut.first_cell)]),
                   checked=ctx.get(dut.tlps_checked), stamp_errors=ctx.get(dut.stamp_errors))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return flagged, out


def expected_flags(tlps, order):
    """The egress positions the checker must flag, per the model: the TLP
    that passed for A2a/B2a/D2a; for D5b the earlier completion, which is
    where the Byte Count is seen to rise."""
    result = check_order(tlps, [tlps[i] for i in order])
    position = {i: k for k, i in enumerate(order)}
    flags = {}
    for v in result.violations:
        k = position[v.earlier] if v.cell == "D5b" else v.egress_index
        flags.setdefault(k, v.cell)
    return flags


@pytest.mark.parametrize("width", [64, 256])
def test_legal_reordering_is_never_flagged(width):
    rng = random.Random(width)
    tlps = traffic(width, 600)
    order = legal_shuffle(len(tlps), tlps, rng)
    assert check_order(tlps, [tlps[i] for i in order]).ok
    assert order != sorted(order)
    flagged, out = run_checker(tlps, order, width)
    assert flagged == [] and out["violations"] == 0 and not out["irq"]
    assert out["checked"] == len(tlps) and out["stamp_errors"] == 0


@pytest.mark.parametrize("width", [64, 256])
def test_every_illegal_pass_is_flagged_with_its_cell(width):
    rng = random.Random(7 + width)
    tlps = traffic(100 + width, 600)
    order = legal_shuffle(len(tlps), tlps, rng)
    injected = 0
    for at in range(0, len(order) - 1, 5):           # illegal neighbour swaps
        i, j = order[at], order[at + 1]
        if i < j and not legal_pass(tlps[j], tlps[i]):
            order[at], order[at + 1] = j, i
            injected += 1
    expected = expected_flags(tlps, order)
    assert injected >= 20 and {"A2a", "B2a", "D2a"} <= set(expected.values())
    flagged, out = run_checker(tlps, order, width)
    assert flagged == sorted(expected)
    assert out["by_cell"] == [list(expected.values()).count(c) for c in CELLS]
    first = min(expected)
    tlp = tlps[order[first]]
    assert out["first"] == (1, stamps(tlps)[order[first]], tlp.tag, expected[first])
    assert out["irq"] == 1


def test_split_completions_out_of_order_are_d5b():
    parts = [Tlp(TlpType.CplD, requester_id=HOST, tag=5, completer_id=GPU, byte_count=192 - 64 * k,
                 data=bytes([k]) * 64) for k in range(3)]
    flagged, out = run_checker(parts, [1, 0, 2], 256)
    assert flagged == [1] and out["by_cell"][CELLS.index("D5b")] == 1
    flagged, out = run_checker(parts, [0, 1, 2], 256)
    assert flagged == []


@pytest.mark.parametrize("width", [64, 512])
def test_the_oldest_posted_write_out_last_frees_the_whole_window(width):
    """The window's other 63 writes pass the first one (each A2a), then it
    leaves: ``p_low`` moves past all 64, and the writes after them are in
    order again."""
    writes = posted_writes(70)
    flagged, out = run_checker(writes, list(range(1, 64)) + [0] + list(range(64, 70)), width)
    assert flagged == list(range(63)) and out["by_cell"] == [63, 0, 0, 0]
    assert out["stamp_errors"] == 0 and out["checked"] == 70


def test_posted_writes_scrambled_within_the_window_are_judged_as_the_model_does():
    """Runs of every length out of order, across many wraps of the window:
    each write that passed an earlier one is A2a, and none is a stamp error."""
    rng = random.Random(17)
    writes = posted_writes(600)
    order, start = [], 0
    while start < len(writes):
        size = min(rng.choice([1, 2, 5, 17, 40, 64]), len(writes) - start)
        block = list(range(start, start + size))
        rng.shuffle(block)
        order += block
        start += size
    expected = expected_flags(writes, order)
    flagged, out = run_checker(writes, order, 128)
    assert flagged == sorted(expected) and out["by_cell"] == [len(expected), 0, 0, 0]
    assert out["stamp_errors"] == 0 and out["checked"] == len(writes)


def test_irq_clears_and_a_stamp_seen_twice_is_a_stamp_error():
    write = Tlp(TlpType.MWr, address=0x1000, first_be=0xF, data=bytes(4))
    tlps = [write, Tlp(TlpType.MWr, address=0x2000, first_be=0xF, data=bytes(4))]
    _, out = run_checker(tlps, [0, 0, 1], 64)
    assert out["stamp_errors"] == 1 and out["violations"] == 0


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("kw, name", [(dict(window=48), "window"), (dict(stamp_bits=6), "stamp_bits"),
                                      (dict(tag_bits=9), "tag_bits")])
def test_bad_parameters_name_themselves(kw, name):
    with pytest.raises(ValueError, match=name):
        OrderChecker(64, **kw)
    gc.collect()
