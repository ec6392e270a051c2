"""The Ethernet switch model: the data-center network between bridges.

An :class:`EthernetSwitch` has N ports, each with a line rate (10, 25 or
100 Gb/s) and a finite FIFO output queue. It learns source MAC addresses,
forwards known unicast destinations to their port and floods unknown and
broadcast/multicast ones to every other port, drops at the tail of a full
output queue, forwards store-and-forward or cut-through, and can pause its
senders with PFC.

Time and calls
    ``receive(in_port, frame, t_ns)`` takes one frame whose first bit (of the
    preamble) reaches ``in_port`` at ``t_ns``; calls come in non-decreasing
    ``t_ns``. It returns every :class:`SwitchDelivery` the frame causes (one
    per output port, forwarded, flooded or dropped, plus any PFC PAUSE frames
    due). An output queue serves frames in the order of these calls, so each
    departure is final when ``receive`` returns.

Wire accounting (as :func:`tlpoe.models.frame.wire_bytes` and
:mod:`tlpoe.models.phy` count it)
    A frame of ``n`` bytes (as handed to the MAC, no FCS) is padded to 60 and
    carries FCS 4, so it holds ``max(n, 60) + 4`` bytes of buffer
    (:func:`buffer_bytes`); on the wire it takes preamble + SFD 8 more, then
    the IFG 12. Reception ends when its last FCS bit is in,
    ``8 * (8 + buffer_bytes(n)) / rate`` after its first bit
    (:func:`reception_ns`). On egress a frame holds the line for
    :func:`~tlpoe.models.phy.serialization_ns` (IFG included) and its
    ``arrival_ns`` is, as :class:`tlpoe.models.phy.Delivery`'s, the start of
    transmission + ``serialization_ns`` + the port's ``link_latency_ns``.

Latency
    Store-and-forward: a frame can leave ``latency_ns`` after it is fully
    received. Cut-through: ``latency_ns`` after its first ``cut_through_bytes``
    (from the destination MAC on) are in, when the egress is not faster than
    the ingress (a faster egress would run out of bytes mid-frame) and the
    egress line is idle by then; otherwise it falls back to store-and-forward.

Queues
    A frame takes its :func:`buffer_bytes` in the output queue from its first
    bit's arrival until the egress line is free of it (its departure plus
    IFG). A frame that does not fit (``occupancy + size > queue_bytes``) is
    dropped (tail drop).

PFC (IEEE 802.1Qbb, simplified to one priority class)
    When an admitted frame takes an output queue above ``xoff_bytes``, every
    ingress port with frames in that queue (and every ingress port that adds
    one while it stays congested) is paused, ``pfc_delay_ns`` after the
    decision (the PAUSE frame's trip and the sender's reaction), until
    ``pfc_delay_ns`` after the queue drains to ``xon_bytes`` or below. Senders
    ask :meth:`EthernetSwitch.paused` / :meth:`EthernetSwitch.pause_until`;
    the switch does not stop them itself. With ``pause_frames=True`` the
    switch also returns the PFC frames it sends (MAC control EtherType
    0x8808, opcode 0x0101, ``pause_quanta`` for ``pfc_priority``; quanta 0
    at XON; refreshed at half the quanta time while the pause lasts).

Everything is deterministic; the only randomness is :func:`cross_traffic`'s,
seeded. Plain Python (numpy for the cross-traffic draws), no simulator.
"""

import bisect
import heapq
import math
from dataclasses import dataclass, fields
from enum import Enum

import numpy as np

from .frame import FCS_LEN, PREAMBLE_SFD_LEN
from .phy import LINE_RATES_GBPS, Phy, serialization_ns
from .transport import mark_ce
from .wire import ETH_LEN, ETHERNET, MIN_FRAME, Field, Layout

__all__ = [
    "Mode", "Fate", "MAC_CONTROL_ETHERTYPE", "PFC_OPCODE", "PAUSE_DST_MAC", "BROADCAST_MAC",
    "PAUSE_QUANTUM_BITS", "PFC_LAYOUT", "buffer_bytes", "reception_ns", "pause_quantum_ns",
    "pfc_frame", "parse_pfc", "SwitchDelivery", "PortCounters", "SwitchCounters",
    "EthernetSwitch", "PathDelivery", "SwitchPath", "cross_traffic",
]

#: MAC control EtherType (IEEE 802.3 clause 31): PAUSE and PFC frames.
MAC_CONTROL_ETHERTYPE = 0x8808
#: MAC control opcode of a PFC frame (IEEE 802.1Qbb; 802.3 Annex 31D).
PFC_OPCODE = 0x0101
#: Reserved multicast destination of PAUSE/PFC frames; never forwarded.
PAUSE_DST_MAC = bytes.fromhex("0180C2000001")
BROADCAST_MAC = b"\xff" * 6
#: One pause quantum is 512 bit times at the port's speed (802.3 Annex 31B/31D).
PAUSE_QUANTUM_BITS = 512
#: EtherType of :func:`cross_traffic` frames (IEEE 802 local experimental 2).
CROSS_ETHERTYPE = 0x88B6

#: The MAC control payload of a PFC frame, after the Ethernet header; padded to 60.
PFC_LAYOUT = Layout("pfc", 20, [
    Field("opcode", 0, 2, "MAC control opcode, 0x0101 for PFC"),
    Field("class_enable", 2, 2, "bit n set: quanta n is valid (upper byte 0)"),
    *(Field(f"quanta{n}", 4 + 2 * n, 2, f"pause time of priority {n}, in quanta")
      for n in range(8)),
])


class Mode(str, Enum):
    STORE_AND_FORWARD = "store-and-forward"
    CUT_THROUGH = "cut-through"


class Fate(str, Enum):
    """What the switch did with a frame at one output port."""
    FORWARDED = "forwarded"   #: unicast to its learned port
    FLOODED = "flooded"       #: a copy sent because the destination is unknown or group
    DROPPED = "dropped"       #: tail drop: the output queue was full
    FILTERED = "filtered"     #: the destination was learned on the ingress port
    PAUSE = "pause"           #: a PFC frame the switch sent to a paused sender


def buffer_bytes(frame_len):
    """Bytes a ``frame_len``-byte frame (as handed to the MAC) takes in a
    queue: padded to 60, FCS 4 (a full 1514-byte frame: 1518)."""
    return max(frame_len, MIN_FRAME) + FCS_LEN


def reception_ns(frame_len, rate_gbps, first_bytes=None):
    """Nanoseconds from a frame's first preamble bit to its last FCS bit at
    ``rate_gbps`` (preamble + SFD 8 + :func:`buffer_bytes`), or to the end of
    its first ``first_bytes`` bytes when given."""
    size = buffer_bytes(frame_len)
    if first_bytes is not None:
        size = min(size, first_bytes)
    return 8 * (PREAMBLE_SFD_LEN + size) / rate_gbps


def pause_quantum_ns(rate_gbps):
    """One pause quantum, 512 bit times, in ns (5.12 ns at 100 Gb/s)."""
    return PAUSE_QUANTUM_BITS / rate_gbps


def _mac(name, mac):
    if isinstance(mac, int):
        if not 0 <= mac < 1 << 48:
            raise ValueError(f"{name} must fit 48 bits, got {mac:#x}")
        return mac.to_bytes(6, "big")
    if len(mac) != 6:
        raise ValueError(f"{name} must be 6 bytes, got {len(mac)}")
    return bytes(mac)


def pfc_frame(src_mac, quanta, priority=3):
    """The 60-byte PFC frame (no FCS) asking the receiver to stop priority
    ``priority`` for ``quanta`` pause quanta (0: resume)."""
    header = ETHERNET.pack(dst_mac=int.from_bytes(PAUSE_DST_MAC, "big"),
                           src_mac=int.from_bytes(_mac("src_mac", src_mac), "big"),
                           ethertype=MAC_CONTROL_ETHERTYPE)
    body = PFC_LAYOUT.pack(opcode=PFC_OPCODE, class_enable=1 << priority,
                           **{f"quanta{priority}": quanta})
    return (header + body).ljust(MIN_FRAME, b"\0")


def parse_pfc(frame):
    """The fields of a PFC frame (:data:`PFC_LAYOUT` plus ``dst_mac``,
    ``src_mac``, ``ethertype``); ValueError when ``frame`` is not one."""
    eth = ETHERNET.unpack(frame)
    if eth["ethertype"] != MAC_CONTROL_ETHERTYPE:
        raise ValueError(f"EtherType 0x{eth['ethertype']:04X} is not MAC control")
    body = PFC_LAYOUT.unpack(frame, ETH_LEN)
    if body["opcode"] != PFC_OPCODE:
        raise ValueError(f"opcode 0x{body['opcode']:04X} is not PFC")
    return eth | body


@dataclass(frozen=True, slots=True)
class SwitchDelivery:
    """One frame at one output port. ``data`` is the frame as sent (padded
    to 60, no FCS), None when dropped; ``ready_ns`` when the switch could
    start sending it, ``start_ns`` when its first bit leaves ``out_port``,
    ``arrival_ns`` = ``start_ns`` + serialization (IFG included) + the
    port's link latency; the three are None for a dropped or filtered frame.
    ``in_port`` is None for a PAUSE frame."""
    out_port: int
    fate: Fate
    data: bytes | None
    in_port: int | None
    t_ns: float            # the first bit reached the switch (PAUSE: the decision)
    ready_ns: float | None = None
    start_ns: float | None = None
    arrival_ns: float | None = None
    cut_through: bool = False

    @property
    def lost(self):
        return self.data is None


@dataclass
class PortCounters:
    """Counters of one port. Byte counts are :func:`buffer_bytes` (padded, FCS)."""
    rx_frames: int = 0
    rx_bytes: int = 0
    rx_while_paused: int = 0     # frames that arrived while the port was paused
    mac_control_rx: int = 0      # PAUSE/PFC frames received (consumed, not forwarded)
    tx_frames: int = 0           # frames forwarded or flooded out of this port
    tx_bytes: int = 0
    cut_through: int = 0         # of tx_frames, sent cut-through
    drop_frames: int = 0         # tail drops at this port's output queue
    drop_bytes: int = 0
    max_occupancy_bytes: int = 0
    pauses: int = 0              # times this port was paused as a sender
    pause_frames_sent: int = 0   # PFC frames sent out of this port (XOFF, refresh, XON)
    ecn_marked: int = 0          # frames sent marked CE (ecn_threshold_bytes)

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class SwitchCounters:
    """Forwarding-table and switch-wide counters."""
    learned: int = 0      # new entries
    moved: int = 0        # a known address seen on another port
    aged: int = 0         # entries expired by ageing_ns
    forwarded: int = 0    # frames sent to a known unicast port
    flooded: int = 0      # frames flooded (once per frame, not per copy)
    filtered: int = 0     # frames whose destination is on their ingress port
    dropped: int = 0      # copies tail-dropped, all ports

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _Queue:
    """One FIFO output queue: per frame, when the line is free of it and the
    bytes admitted up to and including it; frames before ``head`` are gone."""

    def __init__(self):
        self.free, self.cum, self.src = [], [], []
        self.head = 0
        self.admitted = 0          # bytes admitted ever
        self.gone = 0              # bytes of the frames that left
        self.line_free = 0.0       # when the line is free after the last frame

    def expire(self, t):
        """Forget the frames whose line time ended by ``t``."""
        i = bisect.bisect_right(self.free, t, self.head)
        if i > self.head:
            self.gone, self.head = self.cum[i - 1], i
        if i > 4096 and i * 2 > len(self.free):
            del self.free[:i], self.cum[:i], self.src[:i]
            self.head = 0

    @property
    def occupancy(self):
        return self.admitted - self.gone

    def push(self, free, size, src):
        self.admitted += size
        self.free.append(free)
        self.cum.append(self.admitted)
        self.src.append(src)
        self.line_free = free

    def feeders(self):
        return set(self.src[self.head:])

    def drained_to(self, level, t):
        """When occupancy first falls to ``level`` or below (``t`` if it is
        there already), with no more admits."""
        need = self.admitted - level
        if need <= self.gone:
            return t
        return self.free[bisect.bisect_left(self.cum, need, self.head)]


class _Episode:
    """A congestion episode of one output queue: its senders are paused."""

    def __init__(self, decided_ns):
        self.decided_ns = decided_ns
        self.xon_ns = decided_ns
        self.feeders = {}          # port -> when its pause was decided
        self.refreshed = {}        # port -> time of the last PFC frame sent


class EthernetSwitch:
    """An N-port Ethernet switch (see the module docstring for the model).

    Parameters (``rate_gbps``, ``queue_bytes`` and ``link_latency_ns`` take
    one value for every port or a sequence of ``n_ports``):

    * ``n_ports`` (>= 2); ``rate_gbps`` one of 10, 25, 100;
    * ``queue_bytes`` output queue per port, in :func:`buffer_bytes`
      (>= 1518, a full standard frame);
    * ``mode`` "store-and-forward" or "cut-through"; ``latency_ns`` the fixed
      forwarding latency (lookup, pipeline) added in both modes;
      ``cut_through_bytes`` (14..1518) bytes that must be in before a
      cut-through frame may leave;
    * ``link_latency_ns`` cable and far-end PHY after each output port;
    * ``ageing_ns`` forwarding-table ageing (None: entries never expire);
    * ``pfc``, ``xoff_bytes``, ``xon_bytes`` (0 <= xon < xoff <= queue),
      ``pfc_delay_ns``, ``pause_frames``, ``pause_quanta`` (1..65535),
      ``pfc_priority`` (0..7);
    * ``mac`` the switch's base MAC; port ``p`` sends PFC frames from ``mac + p``;
    * ``ecn_threshold_bytes`` (None: no marking): an ECN-capable IPv4 frame
      that finds its output queue holding more than this many bytes leaves
      marked CE (:func:`tlpoe.models.transport.mark_ce`; DCTCP's step
      marking on the instantaneous queue), counted per port as
      ``ecn_marked``.

    Bad values raise ValueError naming the parameter.
    """

    def __init__(self, n_ports, rate_gbps=100, *, queue_bytes=262_144,
                 mode=Mode.STORE_AND_FORWARD, latency_ns=300.0, cut_through_bytes=64,
                 link_latency_ns=0.0, ageing_ns=None, pfc=False, xoff_bytes=None,
                 xon_bytes=None, pfc_delay_ns=0.0, pause_frames=False, pause_quanta=0xFFFF,
                 pfc_priority=3, mac=0x02_53_57_00_00_00, ecn_threshold_bytes=None):
        if not isinstance(n_ports, int) or n_ports < 2:
            raise ValueError(f"n_ports must be an int of at least 2, got {n_ports!r}")
        self.n_ports = n_ports
        self.rates = self._per_port("rate_gbps", rate_gbps)
        for rate in self.rates:
            if rate not in LINE_RATES_GBPS:
                raise ValueError(f"rate_gbps must be one of {LINE_RATES_GBPS}, got {rate}")
        self.queue_bytes = self._per_port("queue_bytes", queue_bytes)
        for size in self.queue_bytes:
            if not size >= buffer_bytes(ETH_LEN + 1500):
                raise ValueError(f"queue_bytes must hold a 1518-byte frame, got {size}")
        self.link_latency_ns = self._per_port("link_latency_ns", link_latency_ns)
        for value in self.link_latency_ns:
            if not value >= 0:
                raise ValueError(f"link_latency_ns must not be negative, got {value}")
        try:
            self.mode = Mode(mode)
        except ValueError:
            raise ValueError(f"mode must be one of {[m.value for m in Mode]}, got {mode!r}") from None
        if not latency_ns >= 0:
            raise ValueError(f"latency_ns must not be negative, got {latency_ns}")
        if not ETH_LEN <= cut_through_bytes <= 1518:
            raise ValueError(f"cut_through_bytes must be in {ETH_LEN}..1518, got {cut_through_bytes}")
        if ageing_ns is not None and not ageing_ns > 0:
            raise ValueError(f"ageing_ns must be positive or None, got {ageing_ns}")
        self.latency_ns, self.cut_through_bytes = float(latency_ns), cut_through_bytes
        self.ageing_ns = ageing_ns
        self.pfc = bool(pfc)
        if self.pfc:
            if xoff_bytes is None or xon_bytes is None:
                raise ValueError("xoff_bytes and xon_bytes are needed with pfc=True")
            if not 0 < xoff_bytes <= min(self.queue_bytes):
                raise ValueError(f"xoff_bytes must be in 1..queue_bytes "
                                 f"({min(self.queue_bytes)}), got {xoff_bytes}")
            if not 0 <= xon_bytes < xoff_bytes:
                raise ValueError(f"xon_bytes must be in 0..xoff_bytes-1, got {xon_bytes}")
        if not pfc_delay_ns >= 0:
            raise ValueError(f"pfc_delay_ns must not be negative, got {pfc_delay_ns}")
        if not 1 <= pause_quanta <= 0xFFFF:
            raise ValueError(f"pause_quanta must be in 1..65535, got {pause_quanta}")
        if pfc_priority not in range(8):
            raise ValueError(f"pfc_priority must be in 0..7, got {pfc_priority}")
        self.xoff_bytes, self.xon_bytes = xoff_bytes, xon_bytes
        self.pfc_delay_ns, self.pause_frames = float(pfc_delay_ns), bool(pause_frames)
        self.pause_quanta, self.pfc_priority = pause_quanta, pfc_priority
        self.mac = int.from_bytes(_mac("mac", mac), "big")
        if ecn_threshold_bytes is not None and not (
                isinstance(ecn_threshold_bytes, int) and
                0 <= ecn_threshold_bytes < min(self.queue_bytes)):
            raise ValueError(f"ecn_threshold_bytes must be None or 0..queue_bytes-1 "
                             f"({min(self.queue_bytes) - 1}), got {ecn_threshold_bytes!r}")
        self.ecn_threshold_bytes = ecn_threshold_bytes
        self.table = {}                       # MAC bytes -> (port, last seen ns or None: static)
        self.counters = SwitchCounters()
        self.ports = [PortCounters() for _ in range(n_ports)]
        self._queues = [_Queue() for _ in range(n_ports)]
        self._episodes = [None] * n_ports     # per output queue
        self._in_free = [0.0] * n_ports
        self._now = -math.inf

    def _per_port(self, name, value):
        if isinstance(value, (int, float)):
            return [value] * self.n_ports
        values = list(value)
        if len(values) != self.n_ports:
            raise ValueError(f"{name} must be one value or {self.n_ports} values, got {len(values)}")
        return values

    def _check_port(self, name, port):
        if not isinstance(port, int) or not 0 <= port < self.n_ports:
            raise ValueError(f"{name} must be a port in 0..{self.n_ports - 1}, got {port!r}")

    def port_mac(self, port):
        """The MAC address port ``port`` sends PFC frames from."""
        return (self.mac + port).to_bytes(6, "big")

    # --- forwarding table ---------------------------------------------------------

    def add_static(self, mac, port):
        """A forwarding entry that never ages and learning does not move."""
        self._check_port("port", port)
        self.table[_mac("mac", mac)] = (port, None)

    def lookup(self, mac, t_ns):
        """The port ``mac`` was learned on, or None (unknown or aged at ``t_ns``)."""
        entry = self.table.get(bytes(mac))
        if entry is None:
            return None
        port, seen = entry
        if seen is not None and self.ageing_ns is not None and t_ns - seen >= self.ageing_ns:
            del self.table[bytes(mac)]
            self.counters.aged += 1
            return None
        return port

    def _learn(self, mac, port, t):
        if mac[0] & 1:                        # group addresses are never a source
            return
        entry = self.table.get(mac)
        if entry is not None and entry[1] is None:
            return
        if entry is None or self.lookup(mac, t) is None:
            self.counters.learned += 1
        elif entry[0] != port:
            self.counters.moved += 1
        self.table[mac] = (port, t)

    # --- PFC ---------------------------------------------------------------------

    def paused(self, port, t_ns):
        """Whether a sender on ``port`` must not start a frame at ``t_ns``
        (as known from the frames received so far)."""
        return self.pause_until(port, t_ns) > t_ns

    def pause_until(self, port, t_ns):
        """The earliest time at or after ``t_ns`` when ``port`` is not paused."""
        self._check_port("port", port)
        t, d = t_ns, self.pfc_delay_ns
        moved = True
        while moved:
            moved = False
            for episode in self._episodes:
                if episode is None or port not in episode.feeders:
                    continue
                if episode.feeders[port] + d <= t < episode.xon_ns + d:
                    t, moved = episode.xon_ns + d, True
        return t

    def _pause_delivery(self, port, t, quanta):
        frame = pfc_frame(self.port_mac(port), quanta, self.pfc_priority)
        self.ports[port].pause_frames_sent += 1
        arrival = t + serialization_ns(len(frame), self.rates[port]) + self.link_latency_ns[port]
        return SwitchDelivery(port, Fate.PAUSE, frame, None, t, t, t, arrival)

    def _refresh_ns(self, port):
        return self.pause_quanta * pause_quantum_ns(self.rates[port]) / 2

    def _control_until(self, t):
        """PFC frames due by ``t`` (refreshes, XON) and episodes ended by ``t``."""
        out = []
        for q, episode in enumerate(self._episodes):
            if episode is None:
                continue
            ended = episode.xon_ns <= t
            horizon = episode.xon_ns if ended else t
            if self.pause_frames:
                for port, last in episode.refreshed.items():
                    step = self._refresh_ns(port)
                    while last + step < horizon and last + step <= t:
                        last += step
                        out.append(self._pause_delivery(port, last, self.pause_quanta))
                    episode.refreshed[port] = last
            if ended:
                if self.pause_frames:
                    out += [self._pause_delivery(port, episode.xon_ns, 0)
                            for port in episode.feeders]
                self._episodes[q] = None
        out.sort(key=lambda d: d.t_ns)
        return out

    def _congestion(self, q, t, in_port):
        """PFC after a frame from ``in_port`` entered output queue ``q`` at ``t``."""
        queue, episode, out = self._queues[q], self._episodes[q], []
        if episode is None:
            if queue.occupancy <= self.xoff_bytes:
                return out
            episode = self._episodes[q] = _Episode(t)
        for port in sorted(queue.feeders() | {in_port}):
            if port not in episode.feeders:
                episode.feeders[port] = t
                self.ports[port].pauses += 1
                if self.pause_frames:
                    episode.refreshed[port] = t
                    out.append(self._pause_delivery(port, t, self.pause_quanta))
        episode.xon_ns = queue.drained_to(self.xon_bytes, t)
        return out

    # --- the datapath ---------------------------------------------------------------

    def receive(self, in_port, frame, t_ns):
        """Take ``frame`` (bytes as handed to the MAC, no FCS) whose first bit
        reaches ``in_port`` at ``t_ns``; returns the :class:`SwitchDelivery`
        list it causes, PFC frames due by ``t_ns`` first."""
        self._check_port("in_port", in_port)
        if t_ns < self._now:
            raise ValueError(f"t_ns {t_ns} is before the previous call's {self._now}: "
                             "calls must come in time order")
        if t_ns < self._in_free[in_port] - 1e-6:
            raise ValueError(f"in_port {in_port}: a frame at t_ns {t_ns} overlaps the previous "
                             f"one, on the line until {self._in_free[in_port]}")
        if len(frame) < ETH_LEN:
            raise ValueError(f"frame of {len(frame)} bytes has no Ethernet header")
        self._now = t_ns
        out = self._control_until(t_ns) if self.pfc else []
        frame = bytes(frame).ljust(MIN_FRAME, b"\0")
        size = buffer_bytes(len(frame))
        self._in_free[in_port] = t_ns + serialization_ns(len(frame), self.rates[in_port])
        pc = self.ports[in_port]
        pc.rx_frames += 1
        pc.rx_bytes += size
        if self.pfc and self.paused(in_port, t_ns):
            pc.rx_while_paused += 1
        dst, src = frame[0:6], frame[6:12]
        if dst == PAUSE_DST_MAC or ETHERNET["ethertype"].get(frame) == MAC_CONTROL_ETHERTYPE:
            pc.mac_control_rx += 1
            return out
        self._learn(src, in_port, t_ns)
        port = None if dst[0] & 1 else self.lookup(dst, t_ns)
        if port == in_port:
            self.counters.filtered += 1
            return out + [SwitchDelivery(in_port, Fate.FILTERED, None, in_port, t_ns)]
        if port is None:
            self.counters.flooded += 1
            targets, fate = [p for p in range(self.n_ports) if p != in_port], Fate.FLOODED
        else:
            self.counters.forwarded += 1
            targets, fate = [port], Fate.FORWARDED
        for q in targets:
            out += self._enqueue(q, in_port, frame, size, t_ns, fate)
        return out

    def _enqueue(self, q, in_port, frame, size, t, fate):
        queue, pc = self._queues[q], self.ports[q]
        queue.expire(t)
        if queue.occupancy + size > self.queue_bytes[q]:
            pc.drop_frames += 1
            pc.drop_bytes += size
            self.counters.dropped += 1
            return [SwitchDelivery(q, Fate.DROPPED, None, in_port, t)]
        if self.ecn_threshold_bytes is not None and queue.occupancy > self.ecn_threshold_bytes:
            marked = mark_ce(frame)
            if marked is not None:
                frame = marked
                pc.ecn_marked += 1
        r_in, r_out = self.rates[in_port], self.rates[q]
        ready_ct = t + reception_ns(len(frame), r_in, self.cut_through_bytes) + self.latency_ns
        cut = (self.mode is Mode.CUT_THROUGH and r_out <= r_in and queue.line_free <= ready_ct)
        ready = ready_ct if cut else t + reception_ns(len(frame), r_in) + self.latency_ns
        start = max(ready, queue.line_free)
        free = start + serialization_ns(len(frame), r_out)
        queue.push(free, size, in_port)
        pc.tx_frames += 1
        pc.tx_bytes += size
        pc.cut_through += cut
        pc.max_occupancy_bytes = max(pc.max_occupancy_bytes, queue.occupancy)
        out = [SwitchDelivery(q, fate, frame, in_port, t, ready, start,
                              free + self.link_latency_ns[q], cut)]
        if self.pfc:
            out += self._congestion(q, t, in_port)
        return out

    def advance(self, t_ns):
        """PFC frames due by ``t_ns`` (no frame arrives before it)."""
        if t_ns < self._now:
            raise ValueError(f"t_ns {t_ns} is before the previous call's {self._now}")
        self._now = t_ns
        return self._control_until(t_ns) if self.pfc else []

    def finish(self):
        """Every PFC frame still due, assuming no more frames arrive."""
        return self._control_until(math.inf) if self.pfc else []

    def occupancy(self, port, t_ns):
        """Bytes in ``port``'s output queue at ``t_ns`` (at or after the last call)."""
        self._check_port("port", port)
        queue = self._queues[port]
        queue.expire(t_ns)
        return queue.occupancy


# --- cross traffic ------------------------------------------------------------------

def cross_traffic(in_port, *, rate_gbps, dst_mac, src_mac, load, stop_ns, frame_len=1514,
                  burst_frames=1, start_ns=0.0, seed=0):
    """Frames a second host sends into ``in_port``: a pure function of its
    arguments, as a list of ``(t_ns, in_port, frame)`` in time order.

    Bursts of ``burst_frames`` frames of ``frame_len`` bytes leave back to
    back at ``rate_gbps``; the idle gap after each burst is exponential with
    mean ``burst_time * (1 - load) / load``, so the long-run load is ``load``
    (0 < load <= 1; 1: back to back) of the line rate. The first burst starts
    at ``start_ns`` plus one idle gap; no frame starts at or after
    ``stop_ns``. Frames carry EtherType 0x88B6 and seeded random bytes."""
    if not 0 < load <= 1:
        raise ValueError(f"load must be in (0, 1], got {load}")
    if not ETH_LEN <= frame_len <= 9014:
        raise ValueError(f"frame_len must be in {ETH_LEN}..9014, got {frame_len}")
    if not isinstance(burst_frames, int) or burst_frames < 1:
        raise ValueError(f"burst_frames must be an int of at least 1, got {burst_frames!r}")
    if rate_gbps not in LINE_RATES_GBPS:
        raise ValueError(f"rate_gbps must be one of {LINE_RATES_GBPS}, got {rate_gbps}")
    rng = np.random.default_rng(seed)
    serial = serialization_ns(frame_len, rate_gbps)
    mean_gap = burst_frames * serial * (1 - load) / load
    header = ETHERNET.pack(dst_mac=int.from_bytes(_mac("dst_mac", dst_mac), "big"),
                           src_mac=int.from_bytes(_mac("src_mac", src_mac), "big"),
                           ethertype=CROSS_ETHERTYPE)
    out, t = [], float(start_ns)
    while True:
        t += float(rng.exponential(mean_gap)) if mean_gap else 0.0
        for _ in range(burst_frames):
            if t >= stop_ns:
                return out
            out.append((t, in_port, header + rng.bytes(frame_len - ETH_LEN)))
            t += serial


# --- one path through the switch, as a channel ------------------------------------------

@dataclass(frozen=True, slots=True)
class PathDelivery:
    """What a :class:`SwitchPath` returns for one frame, in the channel shape
    of :mod:`tlpoe.models.linksim` (``arrival_ns``, ``data``, ``fate``).
    ``fate`` is ``"delivered"``, ``"corrupted"`` (bit errors handed up), a
    :class:`~tlpoe.models.phy.Fate` value of the Phy that lost it
    (``"fcs_drop"``, ``"dropped"``, ``"link_down"``), ``"switch_drop"``
    (tail drop), ``"filtered"`` or ``"misrouted"`` (the switch sent it
    elsewhere). ``switch`` is the switch's delivery to the out port (None
    when the frame never reached it)."""
    arrival_ns: float | None
    data: bytes | None
    fate: str
    start_ns: float
    switch: SwitchDelivery | None = None

    @property
    def frame(self):
        return self.data

    @property
    def lost(self):
        return self.data is None


class SwitchPath:
    """One path through an :class:`EthernetSwitch`, ``in_port`` to
    ``out_port``, as a channel: ``transmit(frame, t_ns) -> PathDelivery``.

    ``ingress`` is the sender's :class:`~tlpoe.models.phy.Phy` into
    ``in_port`` (default: a lossless one with no latency); it serialises the
    sender's frames and its losses and bit errors apply before the switch.
    ``egress`` (optional) is the Phy from ``out_port`` to the receiver: every
    frame leaving ``out_port`` goes through it, at the time the switch sends
    it, so its bit errors and latency apply (the switch port's
    ``link_latency_ns`` is then not added). Both must run at their port's rate.

    ``cross`` is an iterable of ``(t_ns, in_port, frame)`` (for instance
    :func:`cross_traffic` lists, merged) from other senders, fed to the
    switch in time order as the path's frames go by. With
    ``respect_pause`` (default) every sender, the path's and the cross
    traffic's, holds a frame while the switch pauses its port, and a cross
    sender keeps its frames in order and back to back at most.
    """

    def __init__(self, switch, in_port, out_port, *, ingress=None, egress=None, cross=(),
                 respect_pause=True):
        switch._check_port("in_port", in_port)
        switch._check_port("out_port", out_port)
        if in_port == out_port:
            raise ValueError(f"out_port must differ from in_port ({in_port})")
        self.switch, self.in_port, self.out_port = switch, in_port, out_port
        self.ingress = ingress if ingress is not None else Phy(
            rate_gbps=switch.rates[in_port], latency_ns=0.0)
        for name, phy, port in (("ingress", self.ingress, in_port), ("egress", egress, out_port)):
            if phy is not None and phy.rate_gbps != switch.rates[port]:
                raise ValueError(f"{name} Phy runs at {phy.rate_gbps} Gb/s, port {port} at "
                                 f"{switch.rates[port]}")
        self.egress, self.respect_pause = egress, respect_pause
        self._cross = {}                      # port -> list of (t, frame), in order
        for t, port, frame in sorted(cross, key=lambda c: c[0]):
            switch._check_port("cross in_port", port)
            if port == in_port:
                raise ValueError(f"cross traffic must not enter in_port {in_port}")
            self._cross.setdefault(port, []).append((float(t), frame))
        self._next = {port: 0 for port in self._cross}
        self._free = {port: 0.0 for port in self._cross}
        self._heap = [(frames[0][0], port) for port, frames in self._cross.items()]
        heapq.heapify(self._heap)
        self.cross_deliveries = []            # the switch's deliveries of cross frames
        self.control = []                     # PFC frames the switch sent

    @property
    def rate_gbps(self):
        return self.ingress.rate_gbps

    @property
    def free_ns(self):
        """When the sender's line is free for its next frame."""
        return self.ingress.free_ns

    def _sent(self, deliveries):
        """Pass the switch's deliveries to out_port through the egress Phy;
        return the one for the path frame (the last non-PAUSE to out_port)."""
        mine = None
        for d in deliveries:
            if d.fate is Fate.PAUSE:
                self.control.append(d)
            elif d.out_port == self.out_port:
                phy = None
                if self.egress is not None and not d.lost:
                    phy = self.egress.transmit(d.data, d.start_ns)
                    if abs(phy.start_ns - d.start_ns) > 1e-6:
                        raise RuntimeError(f"egress Phy busy until {phy.start_ns}, the switch "
                                           f"sent at {d.start_ns}: frames reached it elsewhere")
                mine = (d, phy)
        return mine

    def _feed(self, until):
        """Hand the switch every cross frame starting by ``until``."""
        sw = self.switch
        while self._heap and self._heap[0][0] <= until:
            key, port = heapq.heappop(self._heap)
            i = self._next[port]
            t_sched, frame = self._cross[port][i]
            t = max(t_sched, self._free[port], sw._now)
            if self.respect_pause:
                t = sw.pause_until(port, t)
            if t > key:
                heapq.heappush(self._heap, (t, port))
                continue
            out = sw.receive(port, frame, t)
            self._sent(out)
            self.cross_deliveries += [d for d in out if d.fate is not Fate.PAUSE]
            self._free[port] = t + serialization_ns(len(frame), sw.rates[port])
            self._next[port] = i + 1
            if i + 1 < len(self._cross[port]):
                nxt = max(self._cross[port][i + 1][0], self._free[port])
                heapq.heappush(self._heap, (nxt, port))

    def finish(self):
        """Feed the switch every cross frame left; returns the PFC frames still due."""
        self._feed(math.inf)
        self.control += self.switch.finish()
        return self.control

    def transmit(self, frame, t_ns):
        """Send ``frame`` (as handed to the MAC) offered at ``t_ns``; it
        leaves when the sender's line is free and its port not paused."""
        sw = self.switch
        start = max(float(t_ns), self.ingress.free_ns)
        while True:
            self._feed(start)
            held = sw.pause_until(self.in_port, start) if self.respect_pause else start
            if held <= start:
                break
            start = held
        first = self.ingress.transmit(frame, start)
        at_switch = first.start_ns + self.ingress.latency_ns
        if first.frame is None:
            return PathDelivery(None, None, first.fate.value, first.start_ns)
        self._feed(at_switch)
        mine = self._sent(sw.receive(self.in_port, first.frame, at_switch))
        if mine is None:
            return PathDelivery(None, None, "misrouted", first.start_ns)
        hop, phy = mine
        if hop.lost:
            fate = "switch_drop" if hop.fate is Fate.DROPPED else hop.fate.value
            return PathDelivery(None, None, fate, first.start_ns, hop)
        if phy is None:
            fate = "corrupted" if first.fate.value == "corrupted" else "delivered"
            return PathDelivery(hop.arrival_ns, hop.data, fate, first.start_ns, hop)
        if phy.frame is None:
            return PathDelivery(None, None, phy.fate.value, first.start_ns, hop)
        corrupted = "corrupted" in (first.fate.value, phy.fate.value)
        return PathDelivery(phy.arrival_ns, phy.frame, "corrupted" if corrupted else "delivered",
                            first.start_ns, hop)
