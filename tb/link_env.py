"""pyuvm environment for two bridges (:class:`tlpoe.rtl.bridge.bridge.Bridge` A and
B, under :class:`tlpoe.tb.tops.Pair`) joined by the NIC/PHY model.

    A.tlp_in --> [bridge A] --frame_out--> Phy a->b --frame_in--> [bridge B] --> B.tlp_out
    A.tlp_out <-- [bridge A] <--frame_in-- Phy b->a <--frame_out-- [bridge B] <-- B.tlp_in

Each direction of the network is a :class:`NetworkWire`: it takes every frame
a bridge sends, passes it through its
:class:`~tlpoe.models.phy.Phy` (line rate, latency, bit errors, drops, link
down) and hands what survives to the other bridge at its arrival time. The
sending MAC has a transmit FIFO of ``mac_fifo_bytes``: while more than that
is queued for the line, it holds the bridge's ``frame_out`` (ready low), so a
datapath faster than the line rate runs at the line rate, as on a board. The
scoreboards check exactly-once, in-order, bit-exact TLP delivery per direction.

With ``twin``, beside each bridge runs its cycle twin
(:class:`~tlpoe.tb.bridge_twin.BridgeTwin`): the model of the whole Bridge
(:class:`~tlpoe.models.bridge.BridgeModel`), compared with the RTL in every
cycle, every frame and TLP beat and every counter.
:class:`~tlpoe.tb.link_coverage.LinkCoverage` samples the replay causes and
link events from the counters.
"""

import collections
import functools
import heapq

import cocotb
from cocotb.triggers import Event, RisingEdge, SimTimeoutError, with_timeout
from cocotb.utils import get_sim_time
from pyuvm import uvm_analysis_port, uvm_component, uvm_env

from ..models.frame import DEFAULT_DST_MAC, DEFAULT_SRC_MAC, DropReason, FrameError, decode_frame
from ..models.phy import Fate, phy_from_params
from ..models.tlp import Tlp
from ..models.transport import UdpConfig, mark_ce, receive
from .agents import StreamAgent
from .bfm import StreamDriver, StreamLayout, StreamMonitor
from .capture import link_capture
from .credit_monitor import CreditMonitor
from .faults import model_verdict
from .bridge_ports import BridgePorts
from .bridge_twin import BridgeTwin, bridge_model
from .items import StreamItem
from .link_coverage import LinkCoverage
from .loopback_env import TlpScoreboard
from .scoreboard import AnalysisImp, tlp_pass_rule
from .transactions import Responder, TransactionChecker, bridge_answer

__all__ = ["NetworkWire", "LinkEnv", "read_bridge_counters", "configure", "configure_bridge",
           "COUNTERS", "SR_COUNTERS"]

COUNTERS = ("frames_sent", "good_frames", "control_frames", "overflows", "tlps_out", "replays_nak",
            "replays_timeout", "frames_retransmitted", "link_down_events", "acks_sent",
            "naks_sent", "frames_accepted", "duplicates", "out_of_order",
            "naks_repeated", "window_full_cycles", "link_down", "credit_frames",
            "order_violations", "order_stamp_errors", "order_window_errors",
            "order_tlps_checked", "tx_order_violations", "tx_order_stamp_errors",
            "tx_order_window_errors", "tx_order_tlps_checked", "link_status", "link_up_events",
            "peer_restarts", "keepalives_sent", "keepalives_received", "replays_link",
            "frames_dropped", "tracked", "matched", "late_completions", "timeouts",
            "link_down_completions", "restart_completions", "evicted", "posted_dropped",
            "np_contained", "cpl_dropped", "outstanding", "containment", "ce_frames",
            "cnps_sent", "cnps_received", "throttled_cycles", "rate_current")
#: Per-class counters (P, NP, CPL), read as ``<name>_p`` ... ``<name>_cpl``.
CLASS_COUNTERS = ("credit_stall_cycles", "tlps_sent")
#: The counters a selective-repeat bridge (``mode="sr"``) adds.
SR_COUNTERS = ("out_of_order_buffered",)


class NetworkWire(uvm_component):
    """One direction of the network: frames from ``frame_export`` through
    ``phy`` to ``driver`` (the far bridge's ``frame_in``), at their arrival
    time. Each frame handed to ``driver`` is also written to ``handed_ap``.

    ``ecn_threshold_bytes`` (None: no marking): the sending MAC's FIFO
    stands for a switch's egress queue into a slower line; a frame that
    finds more than that many bytes queued before it is marked ECN-CE
    (:func:`~tlpoe.models.transport.mark_ce`, an IPv4 frame only;
    ``ce_marked`` counts them), as a DCTCP/DCQCN switch marks."""

    def __init__(self, name, parent, phy, driver, mac_fifo_bytes=4096, decode=decode_frame,
                 ecn_threshold_bytes=None):
        super().__init__(name, parent)
        self.phy = phy
        self.ecn_threshold_bytes = ecn_threshold_bytes
        self.ce_marked = 0
        self.decode = decode        # the receiving bridge's checks (its transport's)
        self.driver = driver
        self.mac_fifo_ns = mac_fifo_bytes * 8 / phy.rate_gbps
        self.frame_export = AnalysisImp("frame_export", self, self.write)
        self.handed_ap = uvm_analysis_port("handed_ap", self)
        self._heap = []
        self._order = 0
        self._wake = Event()
        self.fates = {}
        self.malformed = []
        self.detectable = collections.Counter()   # corrupted frames handed over that the model rejects, by reason
        self.frozen = False

    def check_phase(self):
        assert not self.malformed, f"{len(self.malformed)} malformed frame(s) sent; first: {self.malformed[0]}"

    def mac_ready(self):
        """Whether the MAC's transmit FIFO has room: the line is booked less
        than ``mac_fifo_bytes`` ahead of now."""
        return self.phy.free_ns - get_sim_time("ns") < self.mac_fifo_ns

    def write(self, item):
        try:                      # what a bridge sends must always be well formed
            self.decode(item.data)
        except FrameError as e:
            self.malformed.append(f"{get_sim_time('ns')} ns: {e}: {item.data[:48].hex()}")
            if len(self.malformed) <= 3:
                self.logger.error(f"bridge sent a malformed frame: {self.malformed[-1]}")
        data = item.data
        if self.ecn_threshold_bytes is not None:
            queued = (self.phy.free_ns - get_sim_time("ns")) * self.phy.rate_gbps / 8
            marked = mark_ce(data) if queued > self.ecn_threshold_bytes else None
            if marked is not None:
                data, self.ce_marked = marked, self.ce_marked + 1
        delivery = self.phy.transmit(data, get_sim_time("ns"))
        self.fates[delivery.fate.value] = self.fates.get(delivery.fate.value, 0) + 1
        reason = None
        if delivery.fate is Fate.CORRUPTED:
            reason = model_verdict(delivery.frame, mtu=None, decode=self.decode)
            if reason is None and delivery.frame[12:len(data)] != data[12:]:
                self.malformed.append("corruption inside the frame passed the model's checks")
            # else: only the MAC addresses (a hop's business: the FCS covers them, the
            # end-to-end CRC does not) or the MAC's padding after the frame were hit
        if delivery.frame is not None:
            heapq.heappush(self._heap, (delivery.arrival_ns, self._order, delivery.frame, reason))
            self._order += 1
            self._wake.set()

    async def run_phase(self):
        while True:
            if not self._heap:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.frozen:
                return
            arrival, _, frame, reason = self._heap[0]
            now = get_sim_time("ns")
            if arrival > now:
                self._wake.clear()
                try:
                    await with_timeout(self._wake.wait(), arrival - now, "ns", round_mode="ceil")
                except SimTimeoutError:
                    pass
                continue
            heapq.heappop(self._heap)
            # hand over on a clock edge, as every other BFM acts
            await RisingEdge(self.driver.clock)
            if self.frozen:
                return
            self.driver.send_nowait(frame)
            if reason is not None:
                self.detectable[reason] += 1
            self.handed_ap.write(StreamItem("handed", frame))

    async def freeze(self):
        """Stop handing frames over (those still on the way are never
        delivered) and wait until the driver has put the last one on
        ``frame_in``: from then on every frame handed over is in the far
        bridge's counters once its checks are done."""
        self.frozen = True
        self._wake.set()
        await self.driver.wait_idle()


def read_bridge_counters(dut, side, mode="gbn"):
    """Counters of bridge ``side`` ("a" or "b") in link ``mode``, ``drops`` as
    {DropReason: n}."""
    stats = BridgePorts(dut, side).stats()
    by_reason = {r: stats["drops"][r] for r in DropReason}
    names = COUNTERS + (SR_COUNTERS if mode == "sr" else ())
    per_class = {f"{name}_{cls}": stats[f"{name}_{cls}"] for name in CLASS_COUNTERS
                 for cls in ("p", "np", "cpl")}
    return {"drops": by_reason, **per_class,
            **{f"drops_{r.name}": n for r, n in by_reason.items()},
            **{name: stats[name] for name in names}}


class LinkEnv(uvm_env):
    """Agents, network, scoreboards, the cycle twins and coverage around
    the Pair DUT. ``params`` (ConfigDB): ``width``, ``mtu``, ``seq_bits``,
    ``window``, ``valid_gap``, ``backpressure``, ``bidirectional``, ``phy``
    (settings of :func:`~tlpoe.models.phy.phy_from_params`, both
    directions), ``phy_a_to_b`` / ``phy_b_to_a`` (overrides),
    ``mac_fifo_bytes``, ``ecn_threshold_bytes`` (the wires mark CE above
    it: :class:`NetworkWire`), ``cfg`` (config fields set on both bridges
    after the others), ``seed``, ``coverage_file`` (where
    :class:`~tlpoe.tb.link_coverage.LinkCoverage` writes; empty: nowhere);
    ``twin`` (true: each bridge's cycle twin, a
    :class:`~tlpoe.tb.bridge_twin.BridgeTwin`, in ``twins[side]``), ``bridge``
    (the Bridges' parameters besides ``width``, ``window``, ``seq_bits`` and
    ``mode``: the twins' too), ``bridge_sides`` (those of one bridge only,
    ``{"a": {...}}``) and ``twin_break`` (parameters the twins take
    differently from the Bridges: a deliberate break, which must fail).
    Call :meth:`settle` with the counters read at the end of the run."""

    def build_phase(self):
        p = self.cdb_get("params")
        dut = cocotb.top
        tlp, frame = StreamLayout.tlp(p["width"]), StreamLayout.frame(p["width"])
        self.scoreboards = {}
        self.tx, self.rx = {}, {}
        directions = [("a", "b")] + ([("b", "a")] if p["bidirectional"] else [])
        for src, dst in directions:
            self.tx[src] = StreamAgent(
                f"{src}_tx", self,
                driver_bfm=StreamDriver(dut, f"{src}_tlp_in", dut.clk, tlp, valid_gap=p["valid_gap"]),
                monitor_bfm=StreamMonitor(dut, f"{src}_tlp_in", dut.clk, tlp))
            self.rx[dst] = StreamAgent(
                f"{dst}_rx", self,
                monitor_bfm=StreamMonitor(dut, f"{dst}_tlp_out", dut.clk, tlp, drive_ready=True,
                                          backpressure=p["backpressure"]))
            sb = TlpScoreboard(f"sb_{src}{dst}", self, p["mtu"])
            sb.pass_rule = tlp_pass_rule    # the bridges may reorder where PCIe allows
            self.scoreboards[src + dst] = sb
        # the transactions workload: each side answers the peer's reads, and
        # the outcome of each of its own is followed (tb/transactions.py)
        self.transactions = p.get("workload") == "transactions"
        if self.transactions:
            if not p["bidirectional"]:
                raise ValueError("workload 'transactions' needs bidirectional=True")
            self.responders = {side: Responder(side) for side in ("a", "b")}
            self.checkers = {side: TransactionChecker(side) for side in ("a", "b")}
            for key, sb in self.scoreboards.items():
                # a completion whose read was answered with an error may be dropped
                # by the destination's tracker as late
                checker = self.checkers[key[1]]
                sb.may_lose = lambda item, checker=checker: checker.late_ok(
                    Tlp.unpack(item.data))
        if p.get("peer_reset_us") or hasattr(dut, "b_reset"):
            dut.b_reset.value = 0               # B's own reset (Pair(peer_reset=True))
        for side in ("a", "b"):
            if side not in self.rx:             # a side with no receiver agent still drains
                getattr(dut, f"{side}_tlp_out__ready").value = 1
            if side not in self.tx:             # and offers nothing (not an undriven valid)
                getattr(dut, f"{side}_tlp_in__valid").value = 0
        self.wires = {}
        decoders = receivers(p["bridge"].get("transport", "eth"))
        for index, (src, dst) in enumerate((("a", "b"), ("b", "a"))):
            phy = phy_from_params({**p["phy"], **p[f"phy_{src}_to_{dst}"]},
                                  seed=p["seed"] * 2 + index)
            driver = StreamDriver(dut, f"{dst}_frame_in", dut.clk, frame)
            wire = NetworkWire(f"wire_{src}{dst}", self, phy, driver, p["mac_fifo_bytes"],
                               decode=decoders[dst],
                               ecn_threshold_bytes=p.get("ecn_threshold_bytes"))
            self.wires[src + dst] = wire
            out = StreamAgent(f"{src}_wire", self, monitor_bfm=StreamMonitor(
                dut, f"{src}_frame_out", dut.clk, frame, drive_ready=True,
                ready_fn=wire.mac_ready))
            setattr(self, f"{src}_wire", out)
        self.credit_monitors = {
            # (not across a peer's restart: the credits start again on each
            # side at its own moment, which the monitor does not follow)
            src + dst: CreditMonitor(f"credits_{src}{dst}", self, p["seq_bits"],
                                     enabled=bool(p["credits"]) and not p.get("peer_reset_us"),
                                     decode_limit=decoders[src], decode_sent=decoders[dst])
            for src, dst in (("a", "b"), ("b", "a"))}
        self.coverage = LinkCoverage("coverage", self, dut, 1 << p["seq_bits"], p["coverage_file"])
        self.pcap = link_capture(self, frame)      # PCAP=1: tb/capture.py
        self.twins = {}
        if p["twin"]:       # created now, before the test's reset
            bridge = {"mode": p["mode"], "window": p["window"], "seq_bits": p["seq_bits"],
                      "mtu": p["mtu"], **p["bridge"]}
            resets = {"b": (dut.rst, dut.b_reset)} if p.get("peer_reset_us") else {}
            self.twins = {side: BridgeTwin(dut, side, bridge_model(
                p["width"], **{**bridge, **p["bridge_sides"].get(side, {}), **p["twin_break"]}),
                rst=resets.get(side), name=f"twin_{side}") for side in ("a", "b")}

    def connect_phase(self):
        # what leaves each tlp_out: with the transactions workload, the
        # bridge's own error completions go to the checker alone
        self._out = {}
        for key, sb in self.scoreboards.items():
            src, dst = key
            self.tx[src].ap.connect(sb.expected_export)
            self._out[dst] = [sb.write_actual]
        if self.transactions:
            for side in ("a", "b"):
                self.tx[side].ap.connect(AnalysisImp(f"sent_{side}", self,
                                                     self.checkers[side].sent))
                self._out[side] += [self.checkers[side].received, self.responders[side].write]
        for key, wire in self.wires.items():
            getattr(self, f"{key[0]}_wire").ap.connect(wire.frame_export)
        for side in ("a", "b"):
            getattr(self, f"{side}_wire").ap.connect(self.coverage.frame_exports[side])
        # what each bridge took in (as the scoreboard predicts it) and put out
        self.ingress = {src: [] for src in self.tx}
        self.delivered = {side: [] for side in self.rx}
        self._collectors = []
        for (src, _), sb in self.scoreboards.items():
            imp = AnalysisImp(f"ingress_{src}", self, lambda item, src=src, sb=sb:
                              self.ingress[src].extend(e.data for e in sb.predict(item)))
            self.tx[src].ap.connect(imp)
            self._collectors.append(imp)
        for side in self.rx:
            self._out[side].append(self.delivered[side].append)
            imp = AnalysisImp(f"out_{side}", self, lambda item, side=side: self._deliver(
                side, item))
            self.rx[side].ap.connect(imp)
            self._collectors.append(imp)
        for key, monitor in self.credit_monitors.items():
            src, dst = key
            self.wires[dst + src].handed_ap.connect(monitor.limit_export)
            getattr(self, f"{src}_wire").ap.connect(monitor.sent_export)

    def _deliver(self, side, item):
        """An item out of ``side``'s ``tlp_out``, to the scoreboard, the
        delivered list, the checker and the responder; a completion the
        bridge made (transactions) to the checker alone."""
        if self.transactions and bridge_answer(Tlp.unpack(item.data)):
            self.checkers[side].received(item)
            return
        for write in self._out[side]:
            write(item)

    def check_phase(self):
        for twin in self.twins.values():
            self.logger.info(twin.summary())
            twin.check()

    def settle(self, counters):
        """Hand both bridges' counters ({side: :func:`read_bridge_counters`},
        read in the read-only phase after a clock edge, so that every frame
        a ``frame_in`` has taken is counted) to the coverage."""
        self.coverage.settle(counters)


def configure_bridge(dut, prefix, dst_mac, src_mac, params, **fields):
    """Set the run-time inputs of the bridge whose ports are ``{prefix}_*``
    (``prefix`` None: a Bridge at the top level; ``params``: the timeouts and
    delays in cycles, ``credits``), then ``fields``; returns its
    :class:`BridgePorts`."""
    ports = BridgePorts(dut, prefix)
    ports.configure(dst_mac, src_mac, params, **fields)
    return ports


#: The ``udp`` transport's addresses of side b: side a's (the reset values)
#: mirrored, so that each takes the other's datagrams.
_B_ADDRESSES = dict(src_ip=UdpConfig().dst_ip, dst_ip=UdpConfig().src_ip)


def receivers(transport):
    """``{side: decode}``: each side's receive checks on ``transport``
    (:func:`~tlpoe.models.transport.receive` with its configuration as
    :func:`configure` sets it), a function of a frame's bytes (and
    ``mtu``) that returns the frame or raises FrameError."""
    ours = {"a": UdpConfig(), "b": UdpConfig().peer()}
    return {side: functools.partial(receive, transport=transport, config=ours[side])
            for side in ("a", "b")}


def configure(dut, params):
    """Set both bridges' run-time inputs (side b with side a's IPv4
    addresses swapped); returns their :class:`BridgePorts`."""
    extra = params.get("cfg", {})
    return {"a": configure_bridge(dut, "a", DEFAULT_DST_MAC, DEFAULT_SRC_MAC, params, **extra),
            "b": configure_bridge(dut, "b", DEFAULT_SRC_MAC, DEFAULT_DST_MAC, params,
                                  **_B_ADDRESSES, **extra)}
