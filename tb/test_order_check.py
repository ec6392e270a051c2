"""cocotb bench of :class:`tlpoe.rtl.queues.order_check.OrderChecker` alone: a
queue's ingress and egress from :func:`tlpoe.tb.stimulus.ordering_trace`
(random writes, reads, split completions, the completions of I/O and
Configuration Writes, RO and IDO, two requesters; the egress order with
legal and illegal passes), its three ports driven at once. Each TLP's
verdict (the cells it broke) must be the one of the model's checker
(:class:`~tlpoe.models.ordering.OrderMonitor`) and of the table
(:func:`~tlpoe.models.ordering.check_order`): no false positive, no miss.
The counters must be the model's. ``report``: a JSON record."""

import json
from collections import defaultdict
from pathlib import Path

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from tlpoe.models.ordering import CHECK_CELLS, check_order, monitor_events, queue_stamps
from tlpoe.tb.bfm import StreamLayout, reset, start_clock, to_beats, wait_cycles
from tlpoe.tb.params import tb_params
from tlpoe.tb.stimulus import ordering_trace

P = tb_params(width=256, window=64, seed=1, count=2000, report="")
#: cycles between a TLP's last beat in and its first beat out (the queues take 4)
SETTLE = 4


def expected(trace, window):
    """{arrival: cells} by the model's checker, checked against the table."""
    verdicts, mon = monitor_events(trace.events, window)
    result = check_order(trace.ingress, [trace.ingress[n] for n in trace.egress],
                         trace.completes_write)
    table = defaultdict(set)
    for v in result.violations:
        table[v.later].add(v.cell)
    assert verdicts == {n: table.get(n, set()) for n in verdicts}, "OrderMonitor != the table"
    return verdicts, mon, result


class Ports:
    """Drives one of the checker's watched streams, a beat per cycle."""

    def __init__(self, dut, prefix, layout):
        self.valid = getattr(dut, f"{prefix}_valid")
        self.data = getattr(dut, f"{prefix}_beat")
        self.layout = layout
        self.valid.value = 0

    async def send(self, clk, tlp, stamps=None):
        for b, beat in enumerate(to_beats(tlp, self.layout)):
            self.valid.value = 1
            self.data.value = self.layout.pack(beat)
            if stamps is not None:      # (port, value) pairs, on the first beat
                for port, value in stamps:
                    port.value = value if b == 0 else 0
            await RisingEdge(clk)
        self.valid.value = 0


@cocotb.test()
async def checker_matches_the_model(dut):
    start_clock(dut.clk)
    layout = StreamLayout.tlp(P["width"])
    ingress, egress, requests = (Ports(dut, p, layout) for p in ("in", "out", "req"))
    dut.out_posted.value = dut.out_cpls.value = 0
    dut.irq_clear.value = 0
    await reset(dut.clk, dut.rst)
    trace = ordering_trace(P["seed"], P["count"])
    want, mon, result = expected(trace, P["window"])
    cycle = [0]
    arrived_at = {}                 # arrival number -> cycle its last beat went in
    mask = (1 << len(dut.out_posted)) - 1
    stamps = queue_stamps(trace.ingress)

    async def clock():
        while True:
            await RisingEdge(dut.clk)
            cycle[0] += 1

    async def drive_in():
        n = 0
        for kind, x in trace.events:
            if kind == "req":
                await requests.send(dut.clk, x)
            elif kind == "in":
                await ingress.send(dut.clk, x)
                arrived_at[n] = cycle[0]
                n += 1

    async def drive_out():
        for n in trace.egress:
            while n not in arrived_at or cycle[0] < arrived_at[n] + SETTLE:
                await RisingEdge(dut.clk)
            posted, cpls = stamps[n]
            await egress.send(dut.clk, trace.ingress[n],
                              ((dut.out_posted, posted & mask), (dut.out_cpls, cpls & mask)))

    got = []                        # the verdicts, in egress order

    async def watch():
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            if int(dut.verdict_valid.value):
                bits = int(dut.verdict.value)
                got.append({c for k, c in enumerate(CHECK_CELLS) if bits >> k & 1})

    cocotb.start_soon(clock())
    cocotb.start_soon(watch())
    feeder = cocotb.start_soon(drive_in())
    await drive_out()
    await feeder
    await wait_cycles(dut.clk, 10)
    got = dict(zip(trace.egress, got))
    differing = [n for n in trace.egress if got.get(n) != want[n]]
    flagged = sum(1 for v in want.values() if v)
    by_cell = [int(dut.by_cell.value) >> (32 * k) & 0xFFFFFFFF for k in range(len(CHECK_CELLS))]
    record = {
        "tlps": len(trace.egress), "passes": result.passes, "cell_hits": result.cell_hits,
        "model_violations": flagged, "model_by_cell": dict(zip(CHECK_CELLS, mon.by_cell)),
        "rtl_violations": int(dut.violations.value), "rtl_by_cell": dict(zip(CHECK_CELLS, by_cell)),
        "rtl_tlps_checked": int(dut.tlps_checked.value), "verdicts_differing": len(differing),
        "false_positives": sum(1 for n in trace.egress if got.get(n, set()) - want[n]),
        "misses": sum(1 for n in trace.egress if want[n] - got.get(n, set())),
        "cycles": cycle[0],
    }
    dut._log.info(f"record: {record}")
    if P["report"]:
        Path(P["report"]).write_text(json.dumps(record, indent=2) + "\n")
    assert not differing, [(n, got.get(n), want[n]) for n in differing[:5]]
    assert record["rtl_violations"] == flagged == mon.violations
    assert by_cell == mon.by_cell and record["rtl_tlps_checked"] == mon.tlps_checked
    assert (int(dut.window_errors.value), int(dut.stamp_errors.value),
            int(dut.write_collisions.value)) == (0, 0, 0)
