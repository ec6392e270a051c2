"""OrderChecker (rtl/queues/order_check.py) in amaranth.sim against its twin,
:class:`tlpoe.models.ordering.OrderMonitor`, and both against the table
(:func:`tlpoe.models.ordering.check_order`): a queue's random ingress and
egress with legal and illegal passes (RO, IDO, split completions, the
completions of I/O and Configuration Writes, two requesters), TLP by TLP."""

from collections import defaultdict

import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator

from tlpoe.models.ordering import check_order, monitor_events, queue_stamps
from tlpoe.models.tlp import PcieId, Tlp, TlpType
from tlpoe.rtl.queues.order_check import CELLS, OrderChecker
from tlpoe.tb.bfm import StreamLayout, to_beats
from tlpoe.tb.stimulus import ordering_trace

HOST, GPU, ROOT = 0x0100, 0x0200, 0x0000


def run_checker(events, width, **kw):
    """Drive the events of an :class:`~tlpoe.tb.stimulus.OrderTrace`, one after
    another, each on its port ("in", "out" with the TLP's stamps, "req");
    returns ({arrival: cells of its verdict}, the final outputs)."""
    dut = OrderChecker(width, **kw)
    layout = StreamLayout.tlp(width)
    ingress = [x for kind, x in events if kind == "in"]
    stamps = queue_stamps(ingress)
    leaving = [x for kind, x in events if kind == "out"]
    verdicts = {}
    out = {}
    ports = {"in": (dut.in_valid, dut.in_beat), "out": (dut.out_valid, dut.out_beat),
             "req": (dut.req_valid, dut.req_beat)}

    async def bench(ctx):
        for kind, x in events:
            valid, beat_port = ports[kind]
            tlp = ingress[x] if kind == "out" else x
            for b, beat in enumerate(to_beats(tlp, layout)):
                ctx.set(valid, 1)
                ctx.set(beat_port.as_value(), layout.pack(beat))
                if kind == "out":
                    posted, cpls = stamps[x] if b == 0 else (0xBEEF, 0xBEEF)
                    ctx.set(dut.out_posted, posted)
                    ctx.set(dut.out_cpls, cpls)
                await ctx.tick()
            ctx.set(valid, 0)
        for _ in range(dut.latency + 1):
            await ctx.tick()
        out.update(violations=ctx.get(dut.violations), irq=ctx.get(dut.irq),
                   by_cell=[ctx.get(dut.by_cell[c]) for c in range(len(CELLS))],
                   first=(ctx.get(dut.first_valid), ctx.get(dut.first_stamp),
                          ctx.get(dut.first_tag), CELLS[ctx.get(dut.first_cell)]),
                   checked=ctx.get(dut.tlps_checked),
                   errors=(ctx.get(dut.window_errors), ctx.get(dut.stamp_errors),
                           ctx.get(dut.write_collisions)))

    async def watch(ctx):               # verdicts come in egress order
        async for _, _, valid, verdict in ctx.tick().sample(dut.verdict_valid, dut.verdict):
            if valid:
                verdicts[leaving[len(verdicts)]] = {CELLS[c] for c in range(len(CELLS))
                                                    if verdict >> c & 1}

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_process(watch)
    sim.run()
    return verdicts, out


def run_model(events, window):
    return monitor_events(events, window)


def table_verdicts(trace):
    """The cells each egress TLP broke, by the table itself."""
    result = check_order(trace.ingress, [trace.ingress[n] for n in trace.egress],
                         trace.completes_write)
    assert result.ok or not (result.missing or result.unexpected)
    cells = defaultdict(set)
    for v in result.violations:
        cells[v.later].add(v.cell)
    return {n: cells.get(n, set()) for n in trace.egress}, result


def test_model_equals_the_table_on_random_traces():
    """OrderMonitor against check_order (the pairwise table) on 20,000 TLPs
    with every cell met legally and illegally."""
    trace = ordering_trace(3, 20_000)
    want, result = table_verdicts(trace)
    got, mon = run_model(trace.events, 64)
    assert got == want
    assert mon.window_errors == mon.stamp_errors == mon.write_collisions == 0
    assert sum(1 for v in got.values() if v) == mon.violations > 1000
    # every cell met, the exceptions (A2b, B2b, D2b) and D5b included
    assert all(result.cell_hits[c] > 50 for c in result.cell_hits), result.cell_hits


@pytest.mark.parametrize("width,window", [(64, 64), (256, 64), (512, 128)])
def test_rtl_equals_the_model_tlp_by_tlp(width, window):
    trace = ordering_trace(width, 700)
    want, mon = run_model(trace.events, window)
    assert want == table_verdicts(trace)[0]
    got, out = run_checker(trace.events, width, window=window)
    assert got == want
    assert out["violations"] == mon.violations > 50
    assert out["by_cell"] == mon.by_cell and out["checked"] == mon.tlps_checked
    cell, stamp, tag = mon.first
    assert out["first"] == (1, stamp, tag, cell) and out["irq"] == 1
    assert out["errors"] == (0, 0, 0)


def cpl(tag, requester=HOST, completer=GPU, data=b"", ido=False, byte_count=None):
    return Tlp(TlpType.CplD if data else TlpType.Cpl, requester_id=requester, tag=tag,
               completer_id=completer, data=data, attr=4 if ido else 0,
               byte_count=byte_count).pack()


def mwr(requester=HOST, ro=False, ido=False, address=0x1000):
    return Tlp(TlpType.MWr, address=address, first_be=0xF, data=bytes(4), requester_id=requester,
               attr=(2 if ro else 0) | (4 if ido else 0)).pack()


def mrd(requester=HOST, tag=1, ido=False):
    return Tlp(TlpType.MRd, address=0x2000, first_be=0xF, length=1, tag=tag,
               requester_id=requester, attr=4 if ido else 0).pack()


CASES = {
    # name: (ingress TLPs, leaving order, requests told before, cells per arrival)
    "A2a": ([mwr(), mwr(address=0x2000)], [1, 0], [], {1: {"A2a"}, 0: set()}),
    "A2b RO": ([mwr(), mwr(ro=True)], [1, 0], [], {1: set(), 0: set()}),
    "A2b IDO, other requester": ([mwr(GPU), mwr(ido=True)], [1, 0], [], {1: set(), 0: set()}),
    "A2a IDO, same requester": ([mwr(), mwr(ido=True)], [1, 0], [], {1: {"A2a"}, 0: set()}),
    "B2a": ([mwr(), mrd()], [1, 0], [], {1: {"B2a"}, 0: set()}),
    "B2b": ([mwr(GPU), mrd(ido=True)], [1, 0], [], {1: set(), 0: set()}),
    "D2a": ([mwr(), cpl(3, data=bytes(4))], [1, 0], [], {1: {"D2a"}, 0: set()}),
    "D2b IDO, Completer ID": ([mwr(), cpl(3, ido=True, data=bytes(4))], [1, 0], [],
                              {1: set(), 0: set()}),
    "D2a IDO, Completer ID is the writer's": ([mwr(GPU), cpl(3, ido=True, data=bytes(4))], [1, 0],
                                              [], {1: {"D2a"}, 0: set()}),
    "D2b CfgWr": ([mwr(), cpl(7, requester=ROOT)], [1, 0],
                  [Tlp.cfg_write(PcieId.from_int(GPU), 0x10, bytes(4), tag=7,
                                 requester_id=ROOT).pack()], {1: set(), 0: set()}),
    "D2a CfgRd": ([mwr(), cpl(7, requester=ROOT, data=bytes(4))], [1, 0],
                  [Tlp.cfg_read(PcieId.from_int(GPU), 0x10, tag=7, requester_id=ROOT).pack()],
                  {1: {"D2a"}, 0: set()}),
    # the final completion overtaking its earlier partial one
    "D5b final first": ([cpl(9, data=bytes(4), byte_count=8), cpl(9, data=bytes(4), byte_count=4)],
                        [1, 0], [], {1: {"D5b"}, 0: set()}),
    "D5a": ([cpl(9, data=bytes(4)), cpl(10, data=bytes(4))], [1, 0], [], {1: set(), 0: set()}),
    "D2a and D5b": ([cpl(9, data=bytes(4), byte_count=8), mwr(),
                     cpl(9, data=bytes(4), byte_count=4)], [2, 0, 1], [],
                    {2: {"D2a", "D5b"}, 0: set(), 1: set()}),
}


def case_events(ingress, order, requests):
    return ([("req", r) for r in requests] + [("in", t) for t in ingress] +
            [("out", n) for n in order])


@pytest.mark.parametrize("name", list(CASES))
def test_each_cell(name):
    """Each cell, in the model and the RTL (64 bits: headers over two beats)."""
    ingress, order, requests, want = CASES[name]
    events = case_events(ingress, order, requests)
    assert run_model(events, 8)[0] == want
    assert run_checker(events, 64, window=8)[0] == want


@pytest.mark.parametrize("width", [128, 512])
def test_back_to_back_single_beat_tlps(width):
    """Single-beat TLPs leaving on consecutive cycles: each judged against the
    state its predecessors left (the position freed a cycle later)."""
    ingress = [mwr(address=0x1000 * k) for k in range(4)] + [mrd(tag=k) for k in range(4)]
    order = [0, 4, 1, 5, 2, 6, 3, 7]
    events = [("in", t) for t in ingress] + [("out", n) for n in order]
    want, _ = run_model(events, 16)
    assert sum(1 for v in want.values() if v) == 3
    assert run_checker(events, width, window=16)[0] == want


def test_window_errors_and_stamp_errors_are_counted_not_judged():
    """Six posted writes into a window of 4: the fifth and sixth replace
    the first two (window errors); the first leaves from a position now the
    fifth's (judged as it), then the fifth finds its position empty (a
    stamp error); a read behind them all is judged against those inside."""
    ingress = [mwr(address=0x1000 * k) for k in range(6)] + [mrd()]
    events = [("in", t) for t in ingress] + [("out", 0), ("out", 4), ("out", 6)]
    got, mon = run_model(events, 4)
    _, out = run_checker(events, 64, window=4)
    assert (mon.window_errors, mon.stamp_errors) == (2, 1)
    assert out["errors"] == (2, 1, 0) and out["checked"] == mon.tlps_checked == 2
    assert got == {0: set(), 4: set(), 6: {"B2a"}}   # 4: not judged


def test_a_write_of_another_requester_on_a_tag_in_use_is_a_collision():
    cfg = [Tlp.cfg_write(PcieId.from_int(GPU), 0x10, bytes(4), tag=7, requester_id=r).pack()
           for r in (ROOT, HOST)]
    events = [("req", cfg[0]), ("req", cfg[1]), ("in", mwr())]
    mon = run_model(events, 8)[1]
    assert mon.write_collisions == 1
    assert run_checker(events, 64, window=8)[1]["errors"] == (0, 0, 1)


@pytest.mark.parametrize("width", [64, 512])
def test_request_table_is_read_synchronously(width):
    """One memory, ``requests``, two read ports, each clocked (``$memrd_v2``
    with CLK_ENABLE), which block RAM (DP16KD, RAMB18) needs."""
    text = rtlil.convert(OrderChecker(width, window=8))
    reads = [cell for cell in text.split("  cell ")[1:] if cell.startswith("$memrd")]
    assert len(reads) == 2
    for r in reads:
        assert '\\MEMID "\\\\requests"' in r and "parameter \\CLK_ENABLE 1\n" in r, r


@pytest.mark.parametrize("kw,name", [({"window": 48}, "window"), ({"window": 1}, "window"),
                                     ({"stamp_bits": 4}, "stamp_bits"),
                                     ({"tag_bits": 9}, "tag_bits")])
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_bad_parameters_name_themselves(kw, name):
    with pytest.raises(ValueError, match=name):
        OrderChecker(64, **kw)
