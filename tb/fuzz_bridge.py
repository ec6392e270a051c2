"""The hostile-input bench around one :class:`~tlpoe.rtl.bridge.bridge.Bridge`
whose link peer is the bench.

The peer is the reference link endpoint (:class:`~tlpoe.models.link.LinkEndpoint`,
the bridge's mode): it sends memory writes to the bridge, acknowledges what
the bridge sends, NAKs its gaps, and advertises generous credits. Between its
frames the bench sends hostile ones:

* byte-level lies (:func:`tlpoe.tb.hostile.hostile_frame`) on the peer's frames;
* link-level lies, every one CRC-valid: DATA frames replayed (duplicates) or
  numbered outside the window; ACKs and NAKs naming frames the bridge never
  sent (the stored-but-not-sent case included: the MAC holds ``frame_out``
  at random); NAK storms for frames it did send; credit advertisements that
  go backwards or jump by more than half the counter (``credits_enable``).

Per frame (:class:`tlpoe.tb.fuzz.FrameJudge`): the verdict of the frame
model and of the reference receiver, exactly the counters it names moved
(``drops``, ``good_frames``, ``control_frames``, ``frames_accepted``,
``duplicates``, ``out_of_order``, ``out_of_order_buffered``,
``acks_invalid``, ``naks_invalid``), the credit limits as the cumulative rule
says, and the TLPs delivered exactly as the receiver model delivers them.
At the end every memory write the bench gave ``tlp_in`` has reached the peer
exactly once, in order, and the link is up.
"""

import random

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from ..models import wire
from ..models.frame import (
    DEFAULT_DST_MAC, DEFAULT_SRC_MAC, FLAG_ACK_VALID, FLAG_CREDITS_VALID, DropReason, encode_frame,
)
from ..models.link import LinkConfig, LinkCounters, LinkEndpoint, LinkReceiver
from ..models.ordering import take_credit_limit
from ..models.tlp import Tlp
from ..rtl.streams import DATA_BITS, HDR_BITS
from ..rtl.tlp_header import CLASSES
from ..rtl.link.link_common import FEEDBACK_COUNTERS, FEEDBACK_LATENCY
from ..rtl.queues.credits import PEER_CREDITS_STAGES
from .bfm import StreamDriver, StreamLayout, StreamMonitor
from .faults import _refresh_crc, _set
from .fuzz import FATE_COUNTERS, MAC_LINE, FrameJudge, Prediction, ReceivePort, predict_frame
from .hostile import hostile_frame
from .link_env import configure_bridge

__all__ = ["BridgeFuzz", "LIES", "mwr_tlps"]

#: Link-level lies, each CRC-valid.
LIES = ("duplicate", "seq_out_of_window", "ack_unsent", "nak_unsent", "nak_storm",
        "credits_backwards", "credits_overflow")


def mwr_tlps(rng, count, *, max_payload=256):
    """``count`` memory writes with distinct random payloads (posted: one
    ordering class, so the bridge keeps their order whatever the credits)."""
    return [Tlp.mem_write(0x1_0000_0000 + 64 * i,
                          rng.randbytes(4 * rng.randrange(1, max_payload // 4 + 1)),
                          requester_id=0x0100, tag=i % 256).pack() for i in range(count)]


def with_credits(frame, limits):
    """``frame`` with the credits-valid flag and the six credit fields of
    ``limits`` ({field: value}), its CRC recomputed."""
    header = wire.BRIDGE_HEADER
    flags = header["flags"].get(frame, wire.ETH_LEN) | FLAG_CREDITS_VALID
    frame = _set(frame, header["flags"], flags)
    for name, value in limits.items():
        frame = _set(frame, header[name], value)
    return _refresh_crc(frame)


class BridgeFuzz:
    """The bench state around ``dut`` (a Bridge): ``p`` the parameters
    (``width``, ``mtu``, ``mode``, ``window``, ``seq_bits``, ``seed``,
    ``count`` hostile frames, ``lie_share`` of them link-level, ``tlps``
    each way, ``mac_hold``), ``clock_ns``."""

    def __init__(self, dut, p, clock_ns, log):
        self.dut, self.p, self.log = dut, p, log
        self.ports = configure_bridge(dut, None, DEFAULT_DST_MAC, DEFAULT_SRC_MAC, p)
        self.rng = random.Random(f"fuzz-bridge:{p['seed']}")
        self.clock_ns = clock_ns
        self.bits = p["seq_bits"]
        self.modulus = 1 << self.bits
        ns = clock_ns
        self.config = LinkConfig(mode=p["mode"], seq_bits=self.bits, window=p["window"],
                                 ack_every=8, ack_delay_ns=256 * ns,
                                 replay_timeout_ns=p["replay_timeout"] * ns,
                                 nak_timeout_ns=p["nak_timeout"] * ns, mtu=p["mtu"])
        self.peer = LinkEndpoint(self.config)
        # what the bridge's receive side does, frame by frame
        self.rx_counters = LinkCounters()
        self.rx_model = LinkReceiver(self.config, self.rx_counters)
        self.head = 0                   # the bridge's oldest unacknowledged frame
        self.seen = 0                   # one past the highest DATA seq seen whole (unwrapped)
        self.seen_before = (0, 0)       # (time, seen until then): the last advance
        self.sent_frames = []           # every frame the peer sent (for duplicates)
        self.limits = [[0, 0] for _ in CLASSES]   # the bridge's credit_limit, modelled
        self.advertised = None          # the peer's last honest advertisement
        self.credits_sent_ns = 0
        self.consumed_history = []      # [(time, credits_consumed)], the last few edges
        self.to_bridge = mwr_tlps(self.rng, p["tlps"])
        self.from_bridge = mwr_tlps(self.rng, p["tlps"])
        self.peer_got = []
        self.lies = {name: 0 for name in LIES}
        self.lost = 0                   # the peer's frames lost on the wire
        self.overflowed = 0             # frames dropped whole for want of room
        # overflows is watched and never predicted: frame_in never waits (a
        # MAC cannot), and a frame the receive path has no room for fails
        watched = FATE_COUNTERS + tuple(f"drops_{r.name}" for r in DropReason) + (
            "frames_accepted", "duplicates", "out_of_order", "acks_invalid", "naks_invalid",
            "credits_invalid", "overflows")
        if p["mode"] == "sr":
            watched += ("out_of_order_buffered",)
        self.judge = FrameJudge(watched, log)
        counters = ("drops", "good_frames", "control_frames", "overflows", "tlps_out",
                    "frames_accepted",
                    "duplicates", "out_of_order", "acks_invalid", "naks_invalid", "credits_invalid",
                    "credit_limit", "link_down", "replays_nak", "replays_timeout",
                    "frames_sent", "frames_retransmitted") + (
            ("out_of_order_buffered",) if p["mode"] == "sr" else ())
        self.port = ReceivePort(dut, dut.clk, p["width"], frame_port="frame_in",
                                tlp_port="tlp_out", counters=counters,
                                drop_reasons=tuple(DropReason), stall_bound=p["stall_bound"],
                                on_tlp=self.judge.tlp_out,
                                # elsewhere a beat per cycle
                                mac_line=MAC_LINE.get(p["width"], (p["width"] / 8, 125.0)),
                                latency={**{name: FEEDBACK_LATENCY for name in FEEDBACK_COUNTERS},
                                         # the peer's credit fields are registered first
                                         **{name: PEER_CREDITS_STAGES
                                            for name in ("credit_limit", "credits_invalid")}},
                                reader=self.ports.stats)
        self.tlp_driver = StreamDriver(dut, "tlp_in", dut.clk, StreamLayout.tlp(p["width"]),
                                       valid_gap=0.3, rng=random.Random(p["seed"]))
        self.mac_rng = random.Random(f"mac:{p['seed']}")
        self.frame_monitor = StreamMonitor(
            dut, "frame_out", dut.clk, StreamLayout.frame(p["width"]), drive_ready=True,
            ready_fn=self._mac_ready, callback=self._from_bridge)
        self.hold = 0

    # --- the bridge's transmit side, seen by the peer -----------------------------

    def _mac_ready(self):
        """The MAC holds ``frame_out`` now and then, for up to ``mac_hold`` cycles."""
        if self.hold:
            self.hold -= 1
            return False
        if self.mac_rng.random() < 0.01:
            self.hold = self.mac_rng.randrange(1, self.p["mac_hold"] + 1)
        return True

    def _from_bridge(self, packet):
        data = packet.data
        if wire.BRIDGE_HEADER["frame_type"].get(data, wire.ETH_LEN) == wire.FrameType.DATA:
            seq = wire.BRIDGE_HEADER["seq"].get(data, wire.ETH_LEN) % self.modulus
            ahead = (seq - self.seen) % self.modulus
            if ahead < self.modulus // 2:
                self.seen_before = (self._now(), self.seen)
                self.seen += ahead + 1
        self.peer_got += self.peer.receive(data, self._now())

    def _now(self):
        return get_sim_time("ns")

    # --- frames to the bridge -------------------------------------------------------

    def _honest_credits(self):
        """Limits well ahead of what the bridge has consumed: the peer's
        buffer is unbounded."""
        limits = {}
        for cls, (hdr, data) in zip(CLASSES, self.ports.stats("credits_consumed")):
            limits[f"credit_{cls}_hdr"] = (hdr + 100) % (1 << HDR_BITS)
            limits[f"credit_{cls}_data"] = (data + 20000) % (1 << DATA_BITS)
        self.advertised = limits
        return limits

    def _control(self, frame_type, seq=0, ack=None):
        flags = FLAG_ACK_VALID if ack is not None else 0
        return encode_frame([], frame_type=frame_type, seq=seq, ack=ack or 0, flags=flags)

    def _lie(self, kind):
        """One link-level lie (CRC-valid frame bytes)."""
        rng, m = self.rng, self.modulus
        if kind == "duplicate" and self.sent_frames:
            return rng.choice(self.sent_frames[-64:])
        if kind in ("duplicate", "seq_out_of_window"):
            expected = self.rx_model.expected
            seq = (expected + rng.randrange(self.p["window"], m // 2)) % m
            return encode_frame(mwr_tlps(rng, 1, max_payload=32), seq=seq)
        # mostly just past the frames sent, where frames stored for the MAC
        # wait (the defect of an ack releasing one of them), else anywhere ahead
        reach = self.p["window"] if rng.random() < 0.75 else m // 4
        unsent = (self.seen + rng.randrange(reach)) % m
        if kind == "ack_unsent":
            return self._control(wire.FrameType.ACK, ack=unsent)
        if kind == "nak_unsent":
            return self._control(wire.FrameType.NAK, seq=unsent, ack=(self.head - 1) % m)
        if kind == "nak_storm":
            span = max(1, (self.seen - self.head) % m)
            return self._control(wire.FrameType.NAK, seq=(self.head + rng.randrange(span)) % m,
                                 ack=(self.head - 1) % m)
        base = self.advertised or self._honest_credits()
        if kind == "credits_backwards":
            limits = {n: (v - rng.randrange(1, 50)) % (1 << self._bits_of(n))
                      for n, v in base.items()}
        else:
            limits = {n: (v + (1 << (self._bits_of(n) - 1)) + rng.randrange(1, 50)) %
                      (1 << self._bits_of(n)) for n, v in base.items()}
        return with_credits(self._control(wire.FrameType.ACK), limits)

    @staticmethod
    def _bits_of(name):
        return HDR_BITS if name.endswith("_hdr") else DATA_BITS

    def next_frame(self):
        """The next frame to hand to the bridge: (kind, bytes), or None when
        the peer has nothing and no hostile frame is due."""
        now = self._now()
        if self.peer.next_deadline() is not None and now >= self.peer.next_deadline():
            self.peer.on_timer(now)
        honest = self.peer.poll(now)
        if honest is None and now - self.credits_sent_ns >= self.p["credit_refresh"] * self.clock_ns:
            # like the bridge's credit_refresh: an idle peer still advertises
            honest = self._control(wire.FrameType.ACK)
        if honest is not None:
            honest = with_credits(honest, self._honest_credits())
            self.sent_frames.append(honest)
            self.credits_sent_ns = now
            if self.rng.random() < self.p["loss"]:     # lost on the wire: a gap
                self.lost += 1
                honest = None
        if self.hostile_sent >= self.p["count"]:
            return ("good", honest) if honest is not None else None
        if honest is not None and self.rng.random() < 0.5:
            return "good", honest
        self.hostile_sent += 1
        if self.rng.random() < self.p["lie_share"]:
            kind = self.rng.choice(LIES)
            if self.hold > 64 and self.rng.random() < 0.5:   # frames stored for the MAC
                kind = self.rng.choice(("ack_unsent", "nak_unsent"))
            self.lies[kind] += 1
            frame = self._lie(kind)
        else:
            source = honest or with_credits(self._control(wire.FrameType.ACK,
                                                          ack=(self.head - 1) % self.modulus),
                                            self._honest_credits())
            hostile = hostile_frame(self.rng, source, mtu=self.p["mtu"])
            kind, frame = hostile.kind, hostile.data
        if honest is not None:      # the honest frame goes too, after the lie
            self.backlog.append(("good", honest))
        return kind, frame

    # --- predictions, judged when the bridge has taken the frame -------------------------

    def judge_frame(self, index, kind, data, counters):
        prediction, frame = predict_frame(data, self.p["mtu"])
        moves = dict(prediction.moves)
        tlps = []
        if (counters["overflows"] - self.judge.before["overflows"]) & 0xFFFFFFFF:
            # No room for it at its first beat: dropped whole, nothing else
            # moves, and for the models it was lost on the wire (the link
            # layer recovers it). At the MAC's line rate the tests require
            # none; a faster stream may overflow.
            self.overflowed += 1
            prediction, frame, moves = Prediction("overflow", {}), None, {"overflows": 1}
        if frame is not None:
            if frame.frame_type is wire.FrameType.DATA:
                c, expected = self.rx_counters, self.rx_model.expected
                before = (c.duplicates_discarded, c.out_of_order_buffered,
                          c.out_of_order_discarded + c.out_of_window)
                tlps = self.rx_model.on_data(frame.seq % self.modulus, frame.tlps, self._now())
                in_order = (self.rx_model.expected - expected) % self.modulus
                if in_order:
                    moves["frames_accepted"] = in_order
                elif c.duplicates_discarded != before[0]:
                    moves["duplicates"] = 1
                elif c.out_of_order_buffered != before[1]:
                    moves["out_of_order_buffered"] = 1
                else:
                    moves["out_of_order"] = 1
            if frame.flags & FLAG_ACK_VALID:
                self._ack(frame.ack % self.modulus, moves)
            if frame.frame_type is wire.FrameType.NAK:
                self._nak(frame.seq % self.modulus, moves)
            if frame.carries_credits:      # (never a KEEPALIVE's bytes)
                self._credits(frame, moves)
        self.judge.frame_done(index, kind, Prediction(prediction.label, moves,
                                                      [(t, 0) for t in tlps]), counters)
        got = [list(limit) for limit in counters["credit_limit"]]
        if got != self.limits:
            self.judge.error(f"frame {index} ({kind}): credit_limit {got}, "
                             f"the cumulative rule gives {self.limits}")
            self.limits = got

    def _sent_at_check(self):
        """One past the highest DATA frame whose last beat the MAC took before
        the edge now judged: the bridge checked the ack or NAK in the cycle
        before it, so a frame seen whole at this very edge does not count."""
        time, before = self.seen_before
        return before if time == self._now() else self.seen

    def _judge_name(self, seq, name, moves):
        """True when the ack or NAK ``seq`` names a frame sent and
        unacknowledged (its last beat taken by the MAC: the bridge's
        ``data_sent``); counts it invalid when it names one not sent."""
        offset = (seq - self.head) % self.modulus
        if offset >= self.modulus // 2:
            return False                # old
        if offset < (self._sent_at_check() - self.head) % self.modulus:
            return True
        moves[name] = moves.get(name, 0) + 1
        return False

    def _ack(self, ack, moves):
        if self._judge_name(ack, "acks_invalid", moves):
            self.head = (ack + 1) % self.modulus

    def _nak(self, seq, moves):
        self._judge_name(seq, "naks_invalid", moves)

    def _credits(self, frame, moves):
        """The cumulative rule: a limit moves only forward, and (credits
        enabled) never more than half the counter past the credits consumed
        in the cycle the frame ended; a frame with such a limit is counted."""
        consumed = self.consumed_before()
        invalid = False
        for k, cls in enumerate(CLASSES):
            for part, bits in ((0, HDR_BITS), (1, DATA_BITS)):
                new = getattr(frame, f"credit_{cls}_{'hdr' if part == 0 else 'data'}")
                self.limits[k][part], bad = take_credit_limit(
                    self.limits[k][part], new, consumed[k][part], bits, bool(self.p["credits"]))
                invalid |= bad
        if invalid:
            moves["credits_invalid"] = 1

    def consumed_before(self):
        """``credits_consumed`` during the cycle that ended at this edge
        (what the RTL compared the frame's limits with), per class
        [hdr, data]: the value read after the edge before the one that moved
        the frame's counters. The judge runs ``FEEDBACK_LATENCY`` edges after
        that one (when the link feedback's counters have moved too)."""
        counters_edge = self._now() - FEEDBACK_LATENCY * self.clock_ns
        value = next((v for t, v in reversed(self.consumed_history) if t < counters_edge),
                     [(0, 0)] * len(CLASSES))
        return [list(limit) for limit in value]

    async def _watch_consumed(self):
        """``credits_consumed`` after every edge, with the edge's time (the
        judge, in the same read-only phase, may run before or after this)."""
        edge, settle = RisingEdge(self.dut.clk), ReadOnly()
        while True:
            await edge
            await settle
            self.consumed_history = self.consumed_history[-3:] + [
                (self._now(), self.ports.stats("credits_consumed"))]

    # --- the run ---------------------------------------------------------------------

    async def run(self):
        p, port = self.p, self.port
        self.hostile_sent = 0
        self.backlog = []
        self.judge.start(port.read_counters())
        cocotb.start_soon(self._watch_consumed())
        bursts = self._bursts()
        edge = RisingEdge(self.dut.clk)
        index = 0
        idle, last = 0, None
        while True:
            while bursts and bursts[0][0] <= index:
                _, out, back = bursts.pop(0)
                for tlp in out:
                    self.tlp_driver.send_nowait(tlp)
                self.peer.submit(back, self._now())
                # the MAC holds while the burst is framed: frames stored, not sent
                self.hold = max(self.hold, self.p["burst_hold"])
            if port.pending < 4:
                item = self.backlog.pop(0) if self.backlog else self.next_frame()
                if item is not None:
                    kind, data = item
                    port.send(data, lambda c, i=index, k=kind, d=data: self.judge_frame(i, k, d, c))
                    index += 1
            for _ in range(4):
                await edge
            done = (self.hostile_sent >= p["count"] and not self.backlog and not port.pending
                    and self.peer_got == self.from_bridge[:len(self.peer_got)]
                    and len(self.peer_got) == len(self.from_bridge)
                    and not self.judge.expected and not self.peer.sender.outstanding
                    and not self.peer.sender.pending)
            if done:
                break
            progress = (index if self.hostile_sent < p["count"] else 0,
                        len(self.peer_got), self.judge.delivered)
            idle = idle + 4 if progress == last else 0
            last = progress
            if idle > p["drain_cycles"]:        # no TLP delivered either way for so long
                break
        for _ in range(200):
            await edge
        return self.report(port.read_counters())

    def _bursts(self):
        """When the TLPs go in, each way: bursts of 1 to 32 spread over the
        hostile frames, so that lies meet a window full of frames sent and
        frames stored for the MAC. [(frame index, to tlp_in, to the peer)]."""
        rng, out, back = self.rng, list(self.from_bridge), list(self.to_bridge)
        bursts = []
        count = max(1, self.p["count"])
        while out or back:
            size = rng.randrange(1, 33)
            bursts.append((rng.randrange(count), out[:size], back[:size]))
            out, back = out[size:], back[size:]
        starts = sorted(index for index, _, _ in bursts)
        return [(start, o, b) for start, (_, o, b) in zip(starts, bursts)]

    def report(self, counters):
        errors = self.judge.errors
        got, want = self.peer_got, self.from_bridge
        if got != want[:len(got)]:
            first = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
            errors.append(f"the peer received TLP {first} of tlp_in wrong or out of order")
        elif len(got) != len(want):
            errors.append(f"the peer received {len(got)} of the {len(want)} TLPs given to "
                          f"tlp_in: lost")
        if self.judge.expected:
            errors.append(f"{len(self.judge.expected)} TLPs the receiver model delivered never "
                          f"left tlp_out")
        if self.peer.sender.outstanding or self.peer.sender.pending:
            errors.append("the peer's TLPs were not all acknowledged by the bridge")
        if counters["tlps_out"] != self.judge.delivered:
            errors.append(f"tlps_out {counters['tlps_out']}, {self.judge.delivered} TLPs seen")
        bad = {reason: n for reason, n in self.peer.counters.as_dict()["drops"].items() if n}
        if bad:
            errors.append(f"the peer dropped frames the bridge sent: {bad}")
        if counters["link_down"]:
            errors.append("the bridge took the link down")
        return self.judge.summary() | {
            "cycles": self.port.cycles, "max_stall": self.port.max_stall,
            "stall_bound": self.p["stall_bound"], "hostile_frames": self.hostile_sent,
            "lies": self.lies, "peer_frames_lost": self.lost, "overflowed": self.overflowed,
            "tlps_to_peer": len(got), "counters": counters,
            "frames_out_seen": self.frame_monitor.packets_seen,
            "transmit": {n: self.ports.stats(n) for n in (
                "window_full_cycles", "oversize_drops", "length_errors", "credits_consumed",
                "credit_limit", "credit_stall_cycles", "tlps_sent")},
            "peer": self.peer.counters.as_dict()}
