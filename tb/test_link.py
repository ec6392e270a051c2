"""pyuvm tests of the reliable link: two bridges joined by the NIC/PHY model
(tb/link_env.py). The pytest entry points (tests/test_link_sim.py) choose the
network (drops, bit errors, bursts, link down) through the parameters.

Every test checks exactly-once, in-order, bit-exact TLP delivery per
direction, that no corrupted frame got past the CRC, and the counters each
scenario must move (replay causes, duplicates, wrap-arounds, window full).
The environment also runs the reference link model beside each bridge
(receive counters and delivered TLPs exactly as the model predicts, every
frame sent within the go-back-N rules) and samples the link's functional
coverage, written to ``coverage_file`` when that is not empty. With ``twin``
each bridge also has its cycle twin (tb/bridge_twin.py): the model of the
whole Bridge (its parameters ``bridge``), compared with the RTL in every
cycle, every output and counter.
"""

import collections
import json
from pathlib import Path

import cocotb
import pyuvm
from cocotb.triggers import Combine, Event, ReadOnly, RisingEdge, SimTimeoutError, Timer, with_timeout
from pyuvm import ConfigDB, uvm_test

from tlpoe.models.frame import DropReason
from tlpoe.models.wire import LinkState
from tlpoe.models.ordering import check_order
from tlpoe.models.tlp import OrderingClass, Tlp
from tlpoe.rtl.framing.transport import CHECKSUM_LAG
from tlpoe.tb import stimulus, transactions
from tlpoe.tb.bfm import reset, start_clock, wait_cycles
from tlpoe.tb.bridge_ports import BridgePorts
from tlpoe.tb.link_env import LinkEnv, configure, read_bridge_counters
from tlpoe.tb.ordering_coverage import sample_cells
from tlpoe.tb.params import tb_params
from tlpoe.tb.sequences import StreamSequence

#: Congestion control's counters and the rate in the record.
ECN_STATS = ("ce_frames", "cnps_sent", "cnps_received", "throttled_cycles", "rate_current")
#: The completion tracker's counters in the record.
TRACKER_STATS = ("tracked", "matched", "late_completions", "timeouts", "link_down_completions",
                 "restart_completions", "evicted", "posted_dropped", "np_contained",
                 "cpl_dropped", "outstanding")

# nak_timeout: a NAK's replay arrives within a round trip (200 cycles) plus
# about four full frames at the 64-bit datapath (190 cycles each, slower than
# the 10 Gb/s line), so 1000 cycles, below replay_timeout.
P = tb_params(width=64, mtu=1500, seq_bits=6, window=8, mode="gbn", seed=1, count=300,
              workload="random", max_payload=256, tlp_payload=256, valid_gap=0.2,
              backpressure=0.1, bidirectional=False,
              flush_timeout=32, replay_timeout=1500, nak_timeout=1000, ack_delay=50,
              phy={"rate_gbps": 10, "latency_ns": 1000.0}, phy_a_to_b={}, phy_b_to_a={},
              mac_fifo_bytes=4096, ecn_threshold_bytes=None, cfg={}, credits=1, credit_delay=200, credit_refresh=None,
              np_block_cycles=0, expect_order_violations=False, expect_overrun=False, ido=0.1,
              expect_nonzero=[], expect_zero=[], expect_link_down=(), min_wraps=0,
              drain_us=2000, progress_us=0, peer_reset_us=0, timeline=False,
              clock_ns=10.0, report="", coverage_file="",
              twin=False, bridge={}, bridge_sides={}, twin_break={})


def workload(src):
    """The TLPs that side ``src`` sends: ``workload`` "random" (every type,
    sizes up to ``max_payload``) or "mwr" (``tlp_payload``-byte memory
    writes back to back, the bulk DMA case)."""
    if P["workload"] == "mwr":
        return stimulus.mwr_stream(P["count"], P["tlp_payload"])
    if P["workload"] == "random":
        return stimulus.random_tlps(P["seed"] * 7 + ord(src), P["count"], mtu=P["mtu"],
                                    max_payload=P["max_payload"])
    if P["workload"] == "ordering":
        return stimulus.ordering_traffic(P["seed"] * 7 + ord(src), P["count"], ido=P["ido"])
    if P["workload"] == "producer_consumer":
        return stimulus.producer_consumer(P["seed"] * 7 + ord(src), P["count"])
    if P["workload"] == "transactions":
        return transactions.requests(P["seed"] * 7 + ord(src), P["count"],
                                     transactions.REQUESTERS[src])
    raise ValueError(f"workload must be 'random', 'mwr', 'ordering', 'producer_consumer' or "
                     f"'transactions', not {P['workload']!r}")


class LinkTest(uvm_test):
    """Send TLPs A -> B (and B -> A when bidirectional) over the network."""

    def build_phase(self):
        ConfigDB().set(self, "env", "params", P)
        self.env = LinkEnv("env", self)

    async def run_phase(self):
        self.raise_objection()
        dut = cocotb.top
        start_clock(dut.clk, P["clock_ns"])
        if P["credit_refresh"] is None:
            P["credit_refresh"] = P["replay_timeout"]
        self.ports = configure(dut, P)
        if P["np_block_cycles"]:
            self.ports["b"].set(np_accept=0)    # B's consumer takes no non-posted TLP yet
            cocotb.start_soon(self.release_np(dut))
        # on udp the configuration's pipeline has no reset: a reset as long
        # as it fills it with the configuration set (and the twins with it)
        udp = P["bridge"].get("transport", "eth") != "eth"
        await reset(dut.clk, dut.rst, cycles=CHECKSUM_LAG + 2 if udp else 4)
        if P["progress_us"]:
            cocotb.start_soon(self.progress(dut))
        self.timeline = []
        if P["timeline"]:
            cocotb.start_soon(self.watch_links(dut))
        self.restart = {}
        self.recovered = Event()
        if P["peer_reset_us"]:
            cocotb.start_soon(self.peer_reset(dut))
        else:
            self.recovered.set()
        self.stimulus = {}
        sends = []
        for src in self.env.tx:
            tlps = workload(src)
            self.stimulus[src] = tlps
            sends.append(cocotb.start_soon(
                StreamSequence(f"tlps_{src}", tlps).start(self.env.tx[src].sequencer)))
            if self.env.transactions:       # the side's completer, for ever
                cocotb.start_soon(transactions.ResponderSequence(
                    f"cpls_{src}", self.env.responders[src]).start(self.env.tx[src].sequencer))
        self.stalled = False
        try:
            await with_timeout(Combine(*sends), P["drain_us"], "us")
        except SimTimeoutError:
            self.stalled = True         # only right when the link went down
        try:        # after a peer's reset: both ends UP again before the drain
            await with_timeout(self.recovered.wait(), P["drain_us"], "us")
        except SimTimeoutError:
            self.stalled = True
        for sb in self.env.scoreboards.values():
            sb.allow_pending = bool(P["expect_link_down"])
            sb.expect_illegal = bool(P["expect_order_violations"])
            await sb.wait_drained(timeout=P["drain_us"], unit="us")
        if self.env.transactions:       # every read answered (or the drain time out)
            try:
                await with_timeout(self.answered(), P["drain_us"], "us")
            except SimTimeoutError:
                pass                    # check_transactions reports the hangs
        for wire in self.env.wires.values():    # the network stops: every frame handed
            await wire.freeze()                 # over is counted once checked
        await wait_cycles(dut.clk, 200)
        await ReadOnly()            # this edge's counts and frames taken both settled
        self.counters = {side: read_bridge_counters(dut, side, P["mode"]) for side in ("a", "b")}
        self.env.settle(self.counters)
        for side, counters in self.counters.items():
            self.logger.info(f"{side}: " + ", ".join(
                f"{k}={v}" for k, v in counters.items() if v and k != "drops"))
        self.drop_objection()

    def check_ordering(self, c):
        """The ordering checkers against the scoreboards: the sender's
        (its transmit queues) checked every TLP in, the receiver's (its
        receive queues) every TLP out, and together they flagged exactly
        the TLPs the scoreboard saw make an illegal pass (none, unless the
        sender's test-only illegal arbiter is on). With ``np_block_cycles``: while B
        took no non-posted TLP, none left B and posted ones kept flowing."""
        problems = []
        for key, sb in self.env.scoreboards.items():
            src, dst = key
            # the ordering model over the whole run, for the table's coverage
            # and as a second opinion on the scoreboard's illegal passes
            # (without the TLPs a peer's reset lost: check_phase has counted them)
            lost = collections.Counter(i.data for i in sb.lost_items)
            kept = []
            for data in self.env.ingress[src]:
                if lost[data]:
                    lost[data] -= 1
                else:
                    kept.append(data)
            result = check_order(kept, [i.data for i in self.env.delivered[dst]])
            hit, missed = sample_cells(result.cell_hits)
            self.logger.info(f"{key}: {result.passes} passes, ordering cells hit "
                             f"{sorted(c for c, n in result.cell_hits.items() if n)}")
            if bool(result.violations) != bool(sb.illegal_items):
                problems.append(f"{key}: the ordering model finds {len(result.violations)} "
                                f"violations, the scoreboard {sb.illegal_items} illegal passes")
            # (the completions a tracker dropped as late left the queues too)
            delivered = len(self.env.delivered[dst]) + c[dst]["late_completions"]
            sent = self.env.tx[src].monitor_bfm.packets_seen
            # a bridge reset mid-run (peer_reset_us) counts from its reset
            reset = {"b"} if P["peer_reset_us"] else set()
            if dst not in reset and c[dst]["order_tlps_checked"] != delivered:
                problems.append(f"{dst}: the receive queues' checker saw "
                                f"{c[dst]['order_tlps_checked']} TLPs, {delivered} left tlp_out")
            # every TLP in left A's queues, unless the link went down (the
            # rest wait there for ever)
            checked = c[src]["tx_order_tlps_checked"]
            # (under containment the tracker's tap drops TLPs before the queues)
            sent -= c[src]["posted_dropped"] + c[src]["np_contained"] + c[src]["cpl_dropped"]
            if src in reset:
                pass
            elif checked > sent or (checked != sent and not P["expect_link_down"]):
                problems.append(f"{src}: the transmit queues' checker saw {checked} TLPs, "
                                f"{sent} went in")
            for side, prefix in ((dst, "order_"), (src, "tx_order_")):
                for name in ("stamp_errors", "window_errors"):
                    if c[side][prefix + name]:
                        problems.append(f"{side}: {prefix}{name} = {c[side][prefix + name]}")
            # the passes are made in A's transmit queues (the test-only arbiter)
            # or B's receive queues (never illegal): the two checkers together
            # flag exactly the TLPs that passed illegally end to end
            if c[dst]["order_violations"]:
                problems.append(f"{dst}: the receive queues made {c[dst]['order_violations']} "
                                "illegal passes")
            flagged = c[src]["tx_order_violations"] + c[dst]["order_violations"]
            if flagged != sb.illegal_items:
                problems.append(f"{src}/{dst}: the ordering checkers flagged {flagged} TLPs, "
                                f"the scoreboard {sb.illegal_items} that made an illegal pass")
            if P["expect_order_violations"] and not sb.illegal_items:
                problems.append(f"{key}: no illegal pass was made (the test-only arbiter?)")
        if P["np_block_cycles"]:
            end = self.np_released_at
            during = [Tlp.unpack(item.data).ordering_class for item in self.env.delivered["b"]
                      if item.meta["first_cycle"] < end]
            np_during = during.count(OrderingClass.NON_POSTED)
            p_during = during.count(OrderingClass.POSTED)
            np_total = sum(Tlp.unpack(item.data).ordering_class is OrderingClass.NON_POSTED
                           for item in self.env.delivered["b"])
            self.logger.info(f"while B blocked non-posted TLPs ({end} cycles): {p_during} "
                             f"posted out, {np_during} non-posted; {np_total} non-posted "
                             f"in all; A's NP credit stall {c['a']['credit_stall_cycles_np']} "
                             f"cycles")
            if np_during or not p_during or not np_total:
                problems.append(f"while B blocked non-posted TLPs: {np_during} non-posted "
                                f"and {p_during} posted left B ({np_total} non-posted in all)")
        return problems

    def answered_lost(self, key):
        """Of the TLPs scoreboard ``key`` counts lost, the completions of
        reads answered with UR (the transactions workload): dropped as late
        by the requester's bridge, by design."""
        if not self.env.transactions:
            return 0
        sb, checker = self.env.scoreboards[key], self.env.checkers[key[1]]
        tlps = (Tlp.unpack(item.data) for item in list(sb.lost_items) + list(sb._expected))
        return sum(1 for t in tlps if t.type.is_completion and checker.late_ok(t))

    async def answered(self):
        while any(checker.open for checker in self.env.checkers.values()):
            await Timer(1, "us")

    def check_transactions(self):
        """The transactions workload: every read answered once, with the
        right data or an error; with the completion tracker none left
        without an answer (a hang)."""
        problems = []
        for side, checker in getattr(self.env, "checkers", {}).items():
            summary = checker.summary()
            self.logger.info(f"{side}'s reads: {summary}")
            problems += checker.problems
            if P["bridge"].get("tracker") and checker.hangs():
                problems.append(f"{side}: {len(checker.hangs())} reads never answered "
                                f"(tags {checker.hangs()[:8]}...)")
        return problems

    async def peer_reset(self, dut):
        """At ``peer_reset_us``, B alone is reset for a cycle (the Pair's
        ``b_reset``), between two of its input TLPs (its driver
        held meanwhile). What B held is lost: the TLPs B took in before its
        reset ended, and those A took in before it saw B's restart (the
        frames it then drops). The scoreboards count those as ``lost`` if
        they never arrive; every other TLP must arrive, once, in a legal
        order. ``self.restart``: the cycles of the reset's end and of A's
        detection."""
        clock = self.env.rx["a" if "a" in self.env.rx else "b"].monitor_bfm
        await Timer(P["peer_reset_us"], "us")
        driver = self.env.tx["b"].driver_bfm if "b" in self.env.tx else None
        if driver is not None:
            driver.held = True
            while not driver.at_boundary:
                await RisingEdge(dut.clk)
        # B's outputs: a packet under way when B is reset is gone (a MAC
        # aborts the frame), not glued to B's next one
        in_reset = lambda: bool(dut.b_reset.value)     # noqa: E731
        for agent in (self.env.rx.get("b"), self.env.b_wire):
            if agent is not None:
                agent.monitor_bfm.reset_fn = in_reset
        restarts = BridgePorts(dut, "a").stats("peer_restarts")
        cut = {"ab": float("inf"), "ba": float("inf")}
        for key, sb in self.env.scoreboards.items():
            late = sb.may_lose or (lambda item: False)      # (the transactions')
            sb.may_lose = lambda item, key=key, late=late: \
                item.meta["first_cycle"] < cut[key] or late(item)
        dut.b_reset.value = 1
        await RisingEdge(dut.clk)
        dut.b_reset.value = 0
        cut["ba"] = self.restart["reset_end"] = clock.cycles
        if self.env.transactions:
            self.env.checkers["b"].reset()
        if driver is not None:
            driver.held = False
        while BridgePorts(dut, "a").stats("peer_restarts") == restarts:
            await RisingEdge(dut.clk)
        cut["ab"] = self.restart["detected"] = clock.cycles
        for sb in self.env.scoreboards.values():
            sb.recheck()
        while not all(BridgePorts(dut, side).stats("link_status") == LinkState.UP
                      for side in ("a", "b")):
            await RisingEdge(dut.clk)
        self.restart["up"] = clock.cycles
        self.logger.info(f"B reset until cycle {cut['ba']}; A saw the restart at {cut['ab']}; "
                         f"both UP at {self.restart['up']}")
        self.recovered.set()

    async def watch_links(self, dut):
        """``timeline``: every change of each bridge's ``link_down`` output,
        ``(cycle, side, "down" | "up")``, the cycle counted as the
        monitors count it (from the start of the run)."""
        clock = next(iter(self.env.rx.values())).monitor_bfm
        ports = {side: getattr(dut, f"{side}_link_down") for side in ("a", "b")}
        last = {side: None for side in ports}
        while True:
            await RisingEdge(dut.clk)
            for side, port in ports.items():
                value = port.value
                if not value.is_resolvable:
                    continue
                down = int(value)
                if down != last[side]:
                    if last[side] is not None:
                        self.timeline.append((clock.cycles, side, "down" if down else "up"))
                    last[side] = down

    async def progress(self, dut):
        """Every ``progress_us``: each side's link status and how far its
        traffic got, to the log (for a long scenario's post-mortem)."""
        names = ("link_status", "frames_sent", "good_frames", "tlps_out", "keepalives_sent",
                 "keepalives_received", "replays_timeout", "replays_link", "link_down_events",
                 "link_up_events")
        while True:
            await Timer(P["progress_us"], "us")
            line = []
            for side in ("a", "b"):
                stats = BridgePorts(dut, side).stats()
                line.append(f"{side}: " + " ".join(f"{n}={stats[n]}" for n in names))
            delivered = {dst: len(items) for dst, items in self.env.delivered.items()}
            self.logger.info(f"progress: {' | '.join(line)} | delivered {delivered}")

    async def release_np(self, dut):
        await wait_cycles(dut.clk, P["np_block_cycles"])
        self.np_released_at = self.env.rx["b"].monitor_bfm.cycles
        self.ports["b"].set(np_accept=1)

    def record(self):
        """One run as a record (what ``make ber`` collects per point): A -> B.

        ``goodput_fraction`` is the steady-state goodput, as
        :func:`tlpoe.models.linksim.run_point` defines it: TLP data payload
        bits delivered after the first TLP out of B, over what the line
        (``phy.rate_gbps``) carries from that first delivery to the last
        (the pipeline's fill latency left out). ``datapath_fraction`` is
        whole-TLP bytes over the datapath's capacity (``width`` bits per
        cycle) from the first TLP beat into A to the last out of B."""
        sb, c = self.env.scoreboards["ab"], self.counters
        latencies = sorted(sb.latencies)

        def percentile(q):
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None

        span = (sb.last_cycle - sb.first_cycle + 1) if latencies else 0
        steady_ns = (sb.last_cycle - sb.first_out_cycle) * P["clock_ns"] if latencies else 0
        rate = P["phy"].get("rate_gbps", 100)
        p50, p99 = percentile(0.50), percentile(0.99)
        return {
            "width": P["width"], "phy": P["phy"], "seed": P["seed"], "workload": P["workload"],
            "clock_ns": P["clock_ns"], "window": P["window"], "seq_bits": P["seq_bits"],
            "mode": P["mode"],
            "tlps_sent": self.env.tx["a"].monitor_bfm.packets_seen,
            "tlps_delivered": sb.compared - sb.mismatched,
            "lost": sb.pending_expected, "duplicated": sb.pending_actual,
            "corrupted": sb.mismatched,
            "replays": c["a"]["replays_nak"] + c["a"]["replays_timeout"],
            "replays_nak": c["a"]["replays_nak"], "replays_timeout": c["a"]["replays_timeout"],
            "frames_retransmitted": c["a"]["frames_retransmitted"],
            "goodput_fraction": sb.payload_after_first * 8 / (rate * steady_ns) if steady_ns else 0.0,
            "datapath_fraction": sb.bytes_matched / (span * P["width"] / 8) if span else 0.0,
            "elapsed_ns": span * P["clock_ns"],
            "wraps": c["b"]["frames_accepted"] >> P["seq_bits"],
            "frames_sent": c["a"]["frames_sent"],
            "latency_p50_cycles": p50, "latency_p99_cycles": p99,
            "latency_p50_ns": p50 * P["clock_ns"] if latencies else None,
            "latency_p99_ns": p99 * P["clock_ns"] if latencies else None,
            "link_down_events": c["a"]["link_down_events"],
            "overflows": c["a"]["overflows"] + c["b"]["overflows"],
            "legal_passes": sb.passes, "illegal_passes": sb.illegal_passes,
            "illegal_tlps": sb.illegal_items,
            "order_violations": c["a"]["tx_order_violations"] + c["b"]["order_violations"],
            "credit_stall_cycles": {k: c["a"][f"credit_stall_cycles_{k}"]
                                    for k in ("p", "np", "cpl")},
            "credit_overruns": self.env.credit_monitors["ab"].overruns,
            # both directions, for the faults report
            "tlps_sent_both": {src: self.env.tx[src].monitor_bfm.packets_seen
                               for src in self.env.tx},
            "lost_both": {k: s.pending_expected + s.lost for k, s in self.env.scoreboards.items()},
            "duplicated_both": {k: s.pending_actual for k, s in self.env.scoreboards.items()},
            "corrupted_both": {k: s.mismatched for k, s in self.env.scoreboards.items()},
            "timeline": self.timeline, "restart": self.restart,
            "link_up_at_end": {side: not c[side]["link_down"] for side in ("a", "b")},
            "frames_dropped": {side: c[side]["frames_dropped"] for side in ("a", "b")},
            "peer_restarts": {side: c[side]["peer_restarts"] for side in ("a", "b")},
            "answered_lost_both": {k: self.answered_lost(k) for k in self.env.scoreboards},
            "transactions": {side: checker.summary() for side, checker in
                             getattr(self.env, "checkers", {}).items()},
            "tracker": {side: {k: c[side][k] for k in TRACKER_STATS} for side in ("a", "b")},
            "ecn": {"ce_marked": {k: w.ce_marked for k, w in self.env.wires.items()},
                    **{side: {k: c[side][k] for k in ECN_STATS} for side in ("a", "b")}},
        }

    def report_phase(self):
        record = self.record()
        self.logger.info(f"record: {record}")
        if P["report"]:
            Path(P["report"]).write_text(json.dumps(record, indent=2) + "\n")

    def check_phase(self):
        c = self.counters
        fates = {k: w.fates for k, w in self.env.wires.items()}
        self.logger.info(f"network fates: {fates}")
        self.logger.info(f"counters: {c}")
        problems = []
        if self.stalled and not P["expect_link_down"]:
            problems.append("the TLP ingress stalled: not every TLP was accepted")
        for side in ("a", "b"):
            if c[side]["link_down"] != int(side in P["expect_link_down"]):
                problems.append(f"{side}.link_down = {c[side]['link_down']}")
        for name in P["expect_nonzero"]:
            side, counter = name.split(".")
            if not c[side][counter]:
                problems.append(f"{name} stayed 0")
        for name in P["expect_zero"]:
            side, counter = name.split(".")
            if c[side][counter]:
                problems.append(f"{name} = {c[side][counter]}, expected 0")
        # every frame the network corrupted was caught by the end-to-end CRC
        # (or an earlier check); none was accepted
        for src, dst in (("a", "b"), ("b", "a")):
            detectable = self.env.wires[src + dst].detectable
            expected = {r: detectable[r] for r in DropReason}
            if dst == "b" and P["peer_reset_us"]:
                # B counts from its reset; a frame it was taking in then
                # arrives headless after it, and is dropped: at most one
                extra = sum(c[dst]["drops"].values()) - sum(expected.values())
                if not 0 <= extra <= 1:
                    problems.append(f"{src}->{dst}: B dropped {c[dst]['drops']} after its "
                                    f"reset, the network corrupted {expected}")
            elif c[dst]["drops"] != expected:
                problems.append(f"{src}->{dst}: the model rejects corrupted frames as "
                                f"{expected}, the bridge dropped {c[dst]['drops']}")
        problems += self.check_ordering(c)
        problems += self.check_transactions()
        monitor = self.env.credit_monitors["ab"]
        if P["expect_overrun"] and not monitor.overruns:
            problems.append("credits off and small receive buffers, yet A never sent beyond "
                            "B's credits: the credit monitor cannot be trusted")
        wraps = c["b"]["frames_accepted"] // (1 << P["seq_bits"])
        if wraps < P["min_wraps"]:
            problems.append(f"{wraps} sequence wrap-arounds, expected >= {P['min_wraps']}")
        assert not problems, "; ".join(problems)
        self.logger.info(f"B accepted {c['b']['frames_accepted']} frames "
                         f"({wraps} sequence wrap-arounds)")


@pyuvm.test()
class LinkRandomTest(LinkTest):
    """Random TLPs through the network the parameters describe."""
