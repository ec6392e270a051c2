"""pyuvm testbench for :class:`tlpoe.rtl.queues.classq.ClassQueues` with the
:class:`~tlpoe.rtl.queues.order_check.OrderChecker` on its egress
(:class:`~tlpoe.tb.tops.CheckedQueues`): random TLPs of every class
in, a credit-limited peer out, the ordering model as the judge of both.

* The **peer** (:class:`CreditPeer`) is the far receiver: a buffer of
  ``buffer_hdr`` header and ``buffer_data`` data credits per class, drained
  one TLP every ``drain_every`` cycles, whose cumulative limit (credits
  freed + buffer size) it advertises after ``credit_delay`` cycles. Every
  TLP that leaves the queues enters its buffer, and an overrun fails the
  test on the spot: the receiver buffer never overruns.
* **Starvation**: from ``np_block_start`` for ``np_block_cycles`` the peer
  advertises no NP credits at all (its NP limit stays at what it had freed);
  posted traffic must keep flowing meanwhile
  (deadlock avoidance, A3) and NP must resume after. The workload
  ``np_blocked`` is the case: reads, then a long run of posted writes, then
  reads. (With a single ingress stream, a source that keeps offering reads
  once the NP queue is full blocks its own posted traffic: a PCIe core holds
  non-posted requests back by NP credits, as the Bridge's ingress will ask.)
* **The judge** (:class:`OrderJudge`): :func:`tlpoe.models.ordering.check_order`
  of the egress order against the ingress order; every TLP must leave once.
  With ``reorder_illegally`` (the test-only arbiter) violations must be found
  instead, all of cells B2a or D2a.
* **The RTL checker** must agree with the model exactly: its verdict on
  each TLP (the cells it broke, by arrival number) is the one of the
  model's checker (:class:`~tlpoe.models.ordering.OrderMonitor`) and of
  the table (:func:`~tlpoe.models.ordering.check_order`), its counters
  theirs, and every TLP is checked.
"""

import collections
import json
from pathlib import Path

import cocotb
import pyuvm
from cocotb.triggers import RisingEdge
from pyuvm import uvm_component, uvm_env, uvm_test

from tlpoe.models.ordering import OrderMonitor, check_order
from tlpoe.models.tlp import OrderingClass, Tlp, TlpType
from tlpoe.rtl.queues.order_check import CELLS as CHECK_CELLS
from tlpoe.tb.agents import StreamAgent
from tlpoe.tb.bfm import StreamDriver, StreamLayout, StreamMonitor, reset, start_clock, wait_cycles
from tlpoe.tb.ordering_coverage import export, sample_cells
from tlpoe.tb.params import tb_params
from tlpoe.tb.scoreboard import AnalysisImp
from tlpoe.tb.sequences import StreamSequence
from tlpoe.tb.stimulus import ordering_traffic, random_tlps

P = tb_params(width=64, seed=1, count=2000, workload="random", report="", coverage_file="", max_payload=128, valid_gap=0.1, backpressure=0.3,
              buffer_hdr=16, buffer_data=256, drain_every=6, credit_delay=20,
              np_block_start=0, np_block_cycles=0, ro_enable=1, expect_violations=False,
              min_passes=1, drain_us=2000)

CLASSES = (OrderingClass.POSTED, OrderingClass.NON_POSTED, OrderingClass.COMPLETION)
HDR_BITS, DATA_BITS, LIMIT_BITS = 8, 16, 24


def cells_per_tlp(result):
    """{ingress index: the cells it broke} of the TLPs that made an illegal pass."""
    cells = collections.defaultdict(set)
    for v in result.violations:
        cells[v.later].add(v.cell)
    return dict(cells)


def flagged_per_cell(result):
    """TLPs that made an illegal pass, per cell (each counted in every cell it broke)."""
    cells = cells_per_tlp(result).values()
    return {cell: sum(cell in s for s in cells) for cell in CHECK_CELLS}


def rtl_by_cell():
    """The RTL checker's ``check_by_cell`` counters by cell name."""
    value = int(cocotb.top.check_by_cell.value)
    return {cell: (value >> (32 * k)) & 0xFFFFFFFF for k, cell in enumerate(CHECK_CELLS)}


def data_credits(tlp):
    return (tlp.length + 3) // 4 if tlp.type.has_data else 0


def workload():
    """The TLPs offered: ``random`` (every type), ``ordering`` (writes,
    reads and split completions with RO and IDO: every cell of the ordering
    table between neighbours) or ``np_blocked``."""
    if P["workload"] == "random":
        return random_tlps(P["seed"], P["count"], max_payload=P["max_payload"])
    if P["workload"] == "ordering":
        return ordering_traffic(P["seed"], P["count"])
    if P["workload"] == "np_blocked":
        reads = [Tlp(TlpType.MRd, address=0x1000 * i, tag=i, first_be=0xF, last_be=0xF,
                     length=16).pack() for i in range(8)]
        writes = [Tlp(TlpType.MWr, address=0x10_0000 + 64 * i, first_be=0xF, last_be=0xF,
                      data=bytes([i % 256]) * 64).pack() for i in range(P["count"])]
        return reads + writes + reads
    raise ValueError(f"workload must be 'random', 'ordering' or 'np_blocked', "
                     f"not {P['workload']!r}")


class CreditPeer(uvm_component):
    """The far receiver's buffers and the credit limits it advertises."""

    def build_phase(self):
        self.cycle = 0
        self.held = collections.deque()             # (class, hdr, data) in the buffer
        self.used = [[0, 0] for _ in CLASSES]
        self.freed = [[0, 0] for _ in CLASSES]      # cumulative credits freed
        self.advert = collections.deque()           # (cycle due, limits)
        self.overruns = []
        self.peak = [[0, 0] for _ in CLASSES]
        self.egress_cycles = {c: [] for c in CLASSES}
        self.tlp_export = AnalysisImp("tlp_export", self, self.write)

    def write(self, item):
        tlp = Tlp.unpack(item.data)
        k = CLASSES.index(tlp.ordering_class)
        need = (1, data_credits(tlp))
        self.egress_cycles[tlp.ordering_class].append(self.cycle)
        for i, cap in enumerate((P["buffer_hdr"], P["buffer_data"])):
            self.used[k][i] += need[i]
            self.peak[k][i] = max(self.peak[k][i], self.used[k][i])
            if self.used[k][i] > cap:
                self.overruns.append(f"cycle {self.cycle}: {tlp.ordering_class} buffer "
                                     f"{('header', 'data')[i]} {self.used[k][i]} > {cap}")
        self.held.append((k, *need))

    def limits(self, blocked_np):
        value = 0
        for k in range(3):
            hdr = self.freed[k][0] + P["buffer_hdr"]
            data = self.freed[k][1] + P["buffer_data"]
            if k == 1 and blocked_np:
                hdr, data = self.np_frozen
            value |= ((hdr % 2**HDR_BITS) | (data % 2**DATA_BITS) << HDR_BITS) << (LIMIT_BITS * k)
        return value

    async def run_phase(self):
        dut = cocotb.top
        edge = RisingEdge(dut.clk)
        start, length = P["np_block_start"], P["np_block_cycles"]
        self.np_frozen = (0, 0)
        dut.credits_enable.value = 1
        dut.credits_restart.value = 0        # (the peer never restarts here)
        dut.credit_limit.value = self.limits(bool(length) and start == 0)
        while True:
            await edge
            self.cycle += 1
            if self.held and self.cycle % P["drain_every"] == 0:
                k, hdr, data = self.held.popleft()
                self.used[k][0] -= hdr
                self.used[k][1] -= data
                self.freed[k][0] += hdr
                self.freed[k][1] += data
            blocked = length and start <= self.cycle < start + length
            if self.cycle == start and length:
                self.np_frozen = tuple(self.freed[1])
            self.advert.append((self.cycle + P["credit_delay"], self.limits(blocked)))
            while self.advert and self.advert[0][0] <= self.cycle:
                dut.credit_limit.value = self.advert.popleft()[1]

    def check_phase(self):
        assert not self.overruns, f"receiver buffer overrun: {self.overruns[:3]}"


class OrderJudge(uvm_component):
    """Ingress and egress TLPs, judged by the ordering model at the end."""

    def build_phase(self):
        self.ingress, self.egress = [], []
        self.verdicts = []              # the RTL checker's, in egress order: cells
        self.in_export = AnalysisImp("in_export", self, lambda item: self.ingress.append(item.data))
        self.out_export = AnalysisImp("out_export", self, lambda item: self.egress.append(item.data))

    async def run_phase(self):
        dut = cocotb.top
        while True:
            await RisingEdge(dut.clk)
            if int(dut.check_verdict_valid.value):
                mask = int(dut.check_verdict.value)
                self.verdicts.append({c for k, c in enumerate(CHECK_CELLS) if mask >> k & 1})

    def check_phase(self):
        result = check_order(self.ingress, self.egress)
        self.result = result
        if P["report"]:
            self.write_report(result)
        self.check_rtl_checker(result)
        cells = {c: n for c, n in result.cell_hits.items() if n}
        hit, missed = sample_cells(result.cell_hits)
        self.logger.info(f"ordering cells covered: {len(hit)} of {len(hit) + len(missed)}"
                         + (f"; missed {missed}" if missed else ""))
        if P["coverage_file"]:
            export(P["coverage_file"], self.logger)
        self.logger.info(f"{len(self.egress)} TLPs out, {result.passes} passes, "
                         f"{len(result.violations)} violations; cells {cells}")
        assert not result.missing and not result.unexpected, \
            f"missing {result.missing[:5]}, unexpected {result.unexpected[:5]}"
        if P["expect_violations"]:
            assert result.violations, "the illegal arbiter made no illegal pass that was caught"
            assert {v.cell for v in result.violations} <= {"B2a", "D2a"}
        else:
            tlps = [Tlp.unpack(t) for t in self.ingress]
            assert not result.violations, result.violations[0].describe(tlps)
            assert result.passes >= P["min_passes"], f"only {result.passes} passes"


    def write_report(self, result):
        """One run's record for ``make ordering`` (JSON at ``report``)."""
        dut = cocotb.top
        record = {
            "tlps": len(self.egress), "passes": result.passes, "cell_hits": result.cell_hits,
            "model_violations": flagged_per_cell(result),
            "verdicts_differing": len(self.differing(result)),
            "rtl_violations": int(dut.check_violations.value),
            "rtl_by_cell": rtl_by_cell(),
            "rtl_tlps_checked": int(dut.check_tlps_checked.value),
            "missing": len(result.missing), "unexpected": len(result.unexpected),
        }
        Path(P["report"]).write_text(json.dumps(record, indent=2) + "\n")

    def differing(self, result):
        """Egress positions whose RTL verdict differs from the table's (and
        from :class:`OrderMonitor`'s, run on the same ingress and egress)."""
        table = cells_per_tlp(result)
        # every TLP in first, then out: a window that holds them all
        monitor = OrderMonitor(1 << len(self.ingress).bit_length())
        arrival = {}
        for n, raw in enumerate(self.ingress):
            monitor.ingress(raw)
            arrival.setdefault(raw, collections.deque()).append(n)
        twin, order = [], []
        for raw in self.egress:
            n = arrival[raw].popleft()
            twin.append(set(monitor.egress(n)))
            order.append(n)
        assert twin == [table.get(n, set()) for n in order], "OrderMonitor != the table"
        rtl = self.verdicts + [None] * (len(twin) - len(self.verdicts))
        return [k for k, (a, b) in enumerate(zip(rtl, twin)) if a != b]

    def check_rtl_checker(self, result):
        """The RTL OrderChecker's verdicts and counters against the model's."""
        dut = cocotb.top
        rtl, model = rtl_by_cell(), flagged_per_cell(result)
        flagged = len(cells_per_tlp(result))
        self.logger.info(f"RTL checker: {int(dut.check_violations.value)} flagged {rtl}; "
                         f"model: {flagged} {model}")
        differing = self.differing(result)
        assert not differing, f"RTL verdicts differ from the model's at egress {differing[:5]}"
        assert int(dut.check_tlps_checked.value) == len(self.egress)
        assert int(dut.check_violations.value) == flagged, (rtl, model)
        assert rtl == model, (rtl, model)
        assert int(dut.check_irq.value) == bool(flagged)
        for name in ("stamp_errors", "window_errors", "write_collisions"):
            assert int(getattr(dut, f"check_{name}").value) == 0, name


class ClassqEnv(uvm_env):
    def build_phase(self):
        dut = cocotb.top
        layout = StreamLayout.tlp(P["width"])
        self.tx = StreamAgent("tx", self,
                              driver_bfm=StreamDriver(dut, "tlp_in", dut.clk, layout,
                                                      valid_gap=P["valid_gap"]),
                              monitor_bfm=StreamMonitor(dut, "tlp_in", dut.clk, layout))
        self.rx = StreamAgent("rx", self,
                              monitor_bfm=StreamMonitor(dut, "tlp_out", dut.clk, layout,
                                                        drive_ready=True,
                                                        backpressure=P["backpressure"]))
        self.peer = CreditPeer("peer", self)
        self.judge = OrderJudge("judge", self)

    def connect_phase(self):
        self.tx.ap.connect(self.judge.in_export)
        self.rx.ap.connect(self.judge.out_export)
        self.rx.ap.connect(self.peer.tlp_export)


@pyuvm.test()
class ClassqRandomTest(uvm_test):
    """Random TLPs of every class through the queues to a credit-limited peer."""

    def build_phase(self):
        self.env = ClassqEnv("env", self)

    async def run_phase(self):
        self.raise_objection()
        dut = cocotb.top
        start_clock(dut.clk)
        dut.ro_enable.value = P["ro_enable"]
        dut.class_enable.value = 0b111      # every class may leave (the port's reset value)
        await reset(dut.clk, dut.rst)
        tlps = workload()
        await StreamSequence("tlps", tlps).start(self.env.tx.sequencer)
        rx, n = self.env.rx.monitor_bfm, self.env.tx.monitor_bfm.packets_seen
        for _ in range(P["drain_us"] * 100):
            if rx.packets_seen >= n:
                break
            await wait_cycles(dut.clk, 10)
        await wait_cycles(dut.clk, 20)
        self.drop_objection()

    def check_phase(self):
        peer = self.env.peer
        self.logger.info(f"peak buffer use (hdr, data) per class: {peer.peak}")
        start, length = P["np_block_start"], P["np_block_cycles"]
        if length:
            during = [c for c in peer.egress_cycles[OrderingClass.POSTED]
                      if start + P["credit_delay"] + 50 <= c < start + length]
            np_after = [c for c in peer.egress_cycles[OrderingClass.NON_POSTED]
                        if c >= start + length]
            np_during = [c for c in peer.egress_cycles[OrderingClass.NON_POSTED]
                         if start + P["credit_delay"] <= c < start + length]
            self.logger.info(f"NP blocked for {length} cycles: {len(during)} posted TLPs "
                             f"left meanwhile, {len(np_during)} NP, {len(np_after)} NP after")
            # P flowed through the block, at half the rate of the drain or of the
            # datapath (a 64-byte write is 80 bytes of beats) at least, to its end
            per_tlp = max(P["drain_every"], -(-80 // (P["width"] // 8)))
            assert len(during) >= (length - 100 - P["credit_delay"]) // per_tlp // 2, \
                f"posted traffic stalled while NP had no credits: {len(during)} TLPs"
            assert during and during[-1] >= start + length - 10 * P["drain_every"], \
                "posted traffic stopped before the NP block ended"
            assert not np_during, f"{len(np_during)} NP TLPs left without credits"
            assert np_after, "NP did not resume when its credits returned"
