"""Discrete-event simulation of one tlpoe link: two :class:`~tlpoe.models.link.LinkEndpoint`
(A and B) joined by two one-direction channels, carrying TLPs from A to B (and
optionally from B to A), with a scoreboard for exactly-once, in-order,
bit-exact delivery.

:func:`run_point` is a pure function of ``(params, seed)`` returning one
JSON-ready record, so a process pool or a cluster runs points unchanged.

Timing
    The simulation runs on :class:`tlpoe.models.events.EventKernel` (events
    of equal time in the order they were scheduled). Each endpoint has one
    transmitter. Whenever it is idle the simulation asks
    the endpoint for a frame (:meth:`LinkEndpoint.poll`); the frame occupies
    the transmitter for ``wire_bytes(len(frame)) * 8 / rate_gbps`` ns
    (:func:`tlpoe.models.frame.wire_bytes`: padding, FCS, preamble, IFG), and
    is handed to the channel at the time its first bit goes out.

Channels
    Anything with ``transmit(frame: bytes, t_ns) -> Delivery`` where the
    delivery has ``arrival_ns`` (the receiver holds the whole frame) and
    ``data`` (bytes, possibly corrupted, or None when lost) and ``fate``. The
    simulation calls ``transmit`` at most once per frame, in time order, never
    while the previous frame of that direction is still being serialised; the
    NIC/PHY model fits this shape. ``params["channel"]`` names the factory:
    ``"ideal"``, ``"lossy"`` (:class:`LossyChannel`), ``"phy"``
    (:class:`PhyChannel`, the NIC/PHY model), a name added with
    :func:`register_channel`, or ``"package.module:callable"``. A factory is
    called as ``factory(params, seed, direction)`` with ``direction`` "ab" or
    "ba" and ``params`` the run's parameters updated with ``params[direction]``
    (a dict, so each direction can have its own error settings).

TLPs
    4-DW memory writes (MWr, 64-bit address) with ``tlp_payload`` bytes of
    seeded random data; TLP ``i`` writes address ``ADDRESS_BASE + i * 4096``,
    which is how the scoreboard finds which TLP arrived.
"""

import importlib
import math
import random
import struct
from collections import namedtuple
from dataclasses import replace

import numpy as np

from .events import EventKernel
from .frame import wire_bytes
from .link import LinkConfig, LinkEndpoint
from .phy import phy_from_params
from .transport import UdpConfig
from .wire import CRC_LEN, HEADER_LEN, PREFIX_LEN

__all__ = [
    "Delivery", "IdealChannel", "LossyChannel", "PhyChannel", "CHANNELS", "register_channel",
    "make_channel", "DEFAULTS", "ADDRESS_BASE", "mwr_tlp", "tlp_index", "make_tlps",
    "frame_time_ns", "default_replay_timeout_ns", "default_nak_timeout_ns", "run_point",
]

#: What a channel returns for each frame.
Delivery = namedtuple("Delivery", "arrival_ns data fate")

#: Address written by TLP 0; TLP ``i`` writes ``ADDRESS_BASE + i * 4096``.
ADDRESS_BASE = 1 << 40


class IdealChannel:
    """No loss: a frame arrives ``serialisation + latency_ns`` after it starts."""

    def __init__(self, latency_ns=1_000.0, rate_gbps=100.0):
        if latency_ns < 0:
            raise ValueError(f"latency_ns must be >= 0, got {latency_ns}")
        if not rate_gbps > 0:
            raise ValueError(f"rate_gbps must be > 0, got {rate_gbps}")
        self.latency_ns = latency_ns
        self._ns_per_byte = 8.0 / rate_gbps

    def serialisation_ns(self, frame):
        return wire_bytes(len(frame)) * self._ns_per_byte

    def transmit(self, frame, t_ns):
        return Delivery(t_ns + self.serialisation_ns(frame) + self.latency_ns, frame, "ok")


class LossyChannel(IdealChannel):
    """An :class:`IdealChannel` that, per frame and seeded, drops it with
    probability ``drop_rate``, else corrupts it (one bit flipped at a random
    position) with probability ``corrupt_rate`` or when a bit error at
    ``ber`` hits one of its ``8 * len(frame)`` bits. (CRC-32 detects any
    error of up to 3 bits at these lengths, so the number of flipped bits does
    not change what the receiver does; a flip in a MAC address is not seen by
    the end-to-end CRC and is harmless to the TLPs.)"""

    def __init__(self, latency_ns=1_000.0, rate_gbps=100.0, *, drop_rate=0.0,
                 corrupt_rate=0.0, ber=0.0, seed=0):
        super().__init__(latency_ns, rate_gbps)
        for name, value in (("drop_rate", drop_rate), ("corrupt_rate", corrupt_rate),
                            ("ber", ber)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in 0..1, got {value}")
        self.drop_rate, self.corrupt_rate, self.ber = drop_rate, corrupt_rate, ber
        self._rng = random.Random(seed)
        self._hit = {}       # frame length -> probability of corruption

    def _p_corrupt(self, length):
        p = self._hit.get(length)
        if p is None:
            p_ber = -math.expm1(8 * length * math.log1p(-self.ber)) if self.ber < 1 else 1.0
            p = self._hit[length] = 1 - (1 - self.corrupt_rate) * (1 - p_ber)
        return p

    def transmit(self, frame, t_ns):
        arrival = t_ns + self.serialisation_ns(frame) + self.latency_ns
        rng = self._rng
        if rng.random() < self.drop_rate:
            return Delivery(arrival, None, "drop")
        if rng.random() < self._p_corrupt(len(frame)):
            bit = rng.randrange(8 * len(frame))
            data = bytearray(frame)
            data[bit >> 3] ^= 1 << (bit & 7)
            return Delivery(arrival, bytes(data), "corrupt")
        return Delivery(arrival, frame, "ok")


def _ideal(params, seed, direction):
    return IdealChannel(params["latency_ns"], params["rate_gbps"])


def _lossy(params, seed, direction):
    return LossyChannel(params["latency_ns"], params["rate_gbps"],
                        drop_rate=params.get("drop_rate", 0.0),
                        corrupt_rate=params.get("corrupt_rate", 0.0),
                        ber=params.get("ber", 0.0),
                        seed=(seed << 1) | (direction == "ba"))


class PhyChannel:
    """The NIC/PHY model (:class:`tlpoe.models.phy.Phy`) as a channel: line
    rate, latency, random and burst bit errors, drops, link down; a frame
    hit by bit errors is dropped by the receiving MAC, or handed up with
    its errors when ``deliver_bad_fcs`` (a cut-through NIC)."""

    def __init__(self, phy):
        self.phy = phy

    def transmit(self, frame, t_ns):
        delivery = self.phy.transmit(frame, t_ns)
        return Delivery(delivery.arrival_ns, delivery.frame, delivery.fate.value)


def _phy(params, seed, direction):
    settings = {"rate_gbps": params["rate_gbps"], "latency_ns": params["latency_ns"],
                "ber": params.get("ber", 0.0), "burst": params.get("burst"),
                "drop_rate": params.get("drop_rate", 0.0),
                "deliver_bad_fcs": params.get("deliver_bad_fcs", False)}
    return PhyChannel(phy_from_params(settings, seed=(seed << 1) | (direction == "ba")))


#: Channel factories by name: ``factory(params, seed, direction) -> channel``.
CHANNELS = {"ideal": _ideal, "lossy": _lossy, "phy": _phy}


def register_channel(name, factory):
    """Make ``factory(params, seed, direction)`` available as ``params["channel"] = name``."""
    CHANNELS[name] = factory


def make_channel(params, seed, direction):
    """The channel for ``direction`` ("ab" or "ba") named by ``params["channel"]``."""
    name = params.get("channel", "ideal")
    if name in CHANNELS:
        factory = CHANNELS[name]
    elif ":" in name:
        module, _, attr = name.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    else:
        raise ValueError(f"channel {name!r} is not one of {sorted(CHANNELS)} "
                         "nor a 'module:callable'")
    return factory({**params, **params.get(direction, {})}, seed, direction)


# --- TLPs -----------------------------------------------------------------------

def mwr_tlp(index, payload, requester_id=0x0100):
    """A 4-DW MWr (64-bit address) TLP writing ``payload`` (whole DWs, 4..4096
    bytes) at ``ADDRESS_BASE + index * 4096``; tag = ``index`` mod 256."""
    dws = len(payload) // 4
    if len(payload) % 4 or not 1 <= dws <= 1024:
        raise ValueError(f"payload of {len(payload)} bytes: MWr payload is 1..1024 DWs")
    dw0 = (0b011 << 29) | (dws & 0x3FF)                 # Fmt 4DW with data, Type MWr
    byte_enables = 0x0F if dws == 1 else 0xFF           # last BE 0 for a 1-DW write
    dw1 = (requester_id << 16) | ((index & 0xFF) << 8) | byte_enables
    return struct.pack(">IIQ", dw0, dw1, ADDRESS_BASE + index * 4096) + payload


def tlp_index(tlp):
    """The index :func:`mwr_tlp` wrote into ``tlp``'s address (-1 if not one of ours)."""
    offset = int.from_bytes(tlp[8:16], "big") - ADDRESS_BASE
    return offset >> 12 if offset >= 0 and not offset & 0xFFF else -1


def make_tlps(n, payload_bytes, seed):
    """``n`` MWr TLPs with seeded random payloads."""
    data = np.random.default_rng(seed).bytes(n * payload_bytes)
    return [mwr_tlp(i, data[i * payload_bytes:(i + 1) * payload_bytes]) for i in range(n)]


# --- parameters -----------------------------------------------------------------

#: Every parameter of :func:`run_point` and its default. Timers left None are
#: derived from the latency (:func:`default_replay_timeout_ns`).
DEFAULTS = {
    "rate_gbps": 100.0,       # line rate, both directions
    "latency_ns": 1_000.0,    # one-way delay after serialisation (propagation, switch)
    "channel": "ideal",       # channel factory name (see CHANNELS)
    "drop_rate": 0.0,         # lossy channel: frame drop probability
    "corrupt_rate": 0.0,      # lossy channel: frame corruption probability
    "ber": 0.0,               # lossy and phy channels: bit error rate
    "burst": None,            # phy channel: Gilbert-Elliott bursts, {"ber", "mean_burst_bits"}
    "deliver_bad_fcs": False, # phy channel: hand up frames with bit errors (cut-through)
    "mode": "gbn",
    "window": 128,
    "seq_bits": 12,
    "ack_every": 8,
    "ack_delay_ns": 500.0,
    "replay_timeout_ns": None,
    "nak_timeout_ns": None,
    "max_retries": 8,
    "mtu": 1500,
    "max_tlps_per_frame": None,
    "tlps": 10_000,           # TLPs from A to B
    "tlps_reverse": 0,        # TLPs from B to A
    "tlp_payload": 256,       # MWr payload bytes per TLP (the TLP is 16 bytes more)
    "interval_ns": 0.0,       # one TLP every interval_ns; 0: saturating
    "queue_tlps": 256,        # saturating: ingress queue depth kept full
    "max_time_ns": None,      # simulated-time limit (None: derived, generous)
    "transport": "eth",       # models/transport.py: eth or udp (A's addresses the defaults)
}


def frame_time_ns(frame_len, rate_gbps):
    """Wire time of a frame of ``frame_len`` bytes (as handed to the MAC)."""
    return wire_bytes(frame_len) * 8.0 / rate_gbps


def default_replay_timeout_ns(latency_ns, rate_gbps, mtu, ack_delay_ns, ack_every):
    """Replay timer used when none is given: three round trips of full frames,
    plus twice the ACK delay and ``ack_every`` frame times (recovery from a
    loss takes about two round trips, and an ACK may wait for coalescing)."""
    tf = frame_time_ns(14 + mtu, rate_gbps)
    rtt = 2 * latency_ns + 2 * tf
    return 3 * rtt + 2 * ack_delay_ns + ack_every * tf


def default_nak_timeout_ns(latency_ns, rate_gbps, mtu):
    """NAK timer used when none is given: the longest a NAK's replay can take
    to arrive (both transmitters finishing a frame, the replayed frame's own
    serialisation, two latencies), rounded up to four full frame times. Much
    shorter than the replay timer: a lost replay costs about this long."""
    return 2 * latency_ns + 4 * frame_time_ns(14 + mtu, rate_gbps)


def _config(p):
    timeout, nak_timeout = p["replay_timeout_ns"], p["nak_timeout_ns"]
    if timeout is None:
        timeout = default_replay_timeout_ns(p["latency_ns"], p["rate_gbps"], p["mtu"],
                                            p["ack_delay_ns"], p["ack_every"])
    if nak_timeout is None:
        nak_timeout = min(timeout, default_nak_timeout_ns(p["latency_ns"], p["rate_gbps"],
                                                          p["mtu"]))
    return LinkConfig(mode=p["mode"], seq_bits=p["seq_bits"], window=p["window"],
                      ack_every=p["ack_every"], ack_delay_ns=p["ack_delay_ns"],
                      replay_timeout_ns=timeout, nak_timeout_ns=nak_timeout,
                      max_retries=p["max_retries"], mtu=p["mtu"],
                      max_tlps_per_frame=p["max_tlps_per_frame"], transport=p["transport"],
                      udp=UdpConfig())


# --- the simulation -------------------------------------------------------------

class _Stream:
    """One direction's TLP source (offered load) and scoreboard."""

    def __init__(self, tlps, interval_ns, queue_tlps):
        self.tlps = tlps
        self.n = len(tlps)
        self.interval = interval_ns
        self.queue = queue_tlps
        self.next = 0
        self.enqueued = np.zeros(self.n)
        self.latency = np.full(self.n, np.nan)
        self.seen = bytearray(self.n)
        self.delivered = self.duplicated = self.corrupted = self.reordered = 0
        self.expect = 0
        self.first_ns = self.last_ns = None
        self.payload_after_first = 0      # payload bytes delivered after the first delivery

    def top_up(self, endpoint, t):
        k = min(self.queue - len(endpoint.sender.pending), self.n - self.next)
        if k > 0:
            endpoint.submit(self.tlps[self.next:self.next + k], t)
            self.enqueued[self.next:self.next + k] = t
            self.next += k

    def submit_one(self, endpoint, t):
        endpoint.submit([self.tlps[self.next]], t)
        self.enqueued[self.next] = t
        self.next += 1

    def deliver(self, tlps, t):
        for tlp in tlps:
            i = tlp_index(tlp)
            if not 0 <= i < self.n or tlp != self.tlps[i]:
                self.corrupted += 1
            elif self.seen[i]:
                self.duplicated += 1
            else:
                self.seen[i] = 1
                self.delivered += 1
                if i != self.expect:
                    self.reordered += 1
                self.expect = i + 1
                self.latency[i] = t - self.enqueued[i]
                if self.first_ns is None:
                    self.first_ns = t
                elif t > self.first_ns:
                    self.payload_after_first += len(tlp) - 16
                self.last_ns = t

    @property
    def done(self):
        return self.delivered == self.n


def _percentile(values, q):
    values = values[~np.isnan(values)]
    return float(np.percentile(values, q)) if len(values) else None


def run_point(params, seed):
    """Simulate one point; returns its record (a dict of JSON-ready values).

    ``params`` updates :data:`DEFAULTS` (channel factories may read further
    keys). The record holds every scalar parameter, ``seed``, and:
    ``tlps_sent``, ``tlps_delivered``, ``lost`` (sent, never delivered),
    ``duplicated``, ``corrupted`` (delivered but not as sent), ``reordered``,
    ``replays`` (and by cause), ``frames_retransmitted``, ``goodput_fraction``
    (the steady state: MWr payload bits delivered after the first delivery
    over ``rate_gbps`` times the time from the first delivery to the last),
    ``latency_p50_ns`` / ``latency_p99_ns`` (TLP enqueued at A to delivered
    at B), ``link_down_events``, ``wraps`` (A's send sequence wrap-arounds),
    ``elapsed_ns`` (from 0 to the last delivery), ``sim_end_ns``, and both
    endpoints' counters (``counters_a``, ``counters_b``); with
    ``tlps_reverse`` the B-to-A stream's ``reverse_*`` results.
    """
    unknown = set(params) - set(DEFAULTS) - {"ab", "ba"}
    p = {**DEFAULTS, **params}
    config = _config(p)
    rate = p["rate_gbps"]
    ns_per_byte = 8.0 / rate
    down = []
    endpoints = [LinkEndpoint(config, on_link_down=down.append),     # B: A's addresses mirrored
                 LinkEndpoint(replace(config, udp=config.udp.peer()), on_link_down=down.append)]
    channels = [make_channel(p, seed, "ab"), make_channel(p, seed, "ba")]
    streams = [_Stream(make_tlps(p["tlps"], p["tlp_payload"], seed), p["interval_ns"],
                       p["queue_tlps"]),
               _Stream(make_tlps(p["tlps_reverse"], p["tlp_payload"], seed + 0x5EED),
                       p["interval_ns"], p["queue_tlps"])]
    max_time = p["max_time_ns"]
    if max_time is None:
        per_tlp = max(p["interval_ns"], frame_time_ns(HEADER_LEN + CRC_LEN + PREFIX_LEN
                                                      + 16 + p["tlp_payload"], rate))
        max_time = 100 * (max(p["tlps"], p["tlps_reverse"]) * per_tlp
                          + config.max_retries * config.replay_timeout_ns + p["latency_ns"])

    # Per endpoint x, four kinds of event on the kernel: a frame arrives at x,
    # x's transmitter is done, x's timer fires, x's next paced submission.
    # After each, unless the run stops there, x's transmitter is kicked and
    # its timer armed. The run stops at the first event after max_time, when
    # both streams are done, or when a timer takes the link down.
    kernel = EventKernel()
    schedule = kernel.schedule
    sending = [False, False]
    armed = [None, None]      # the deadline each endpoint's timer event is set for
    arrive, tx_done, timer, submit = [None, None], [None, None], [None, None], [None, None]

    def kick(x, t):
        if sending[x]:
            return
        frame = endpoints[x].poll(t)
        if frame is None:
            return
        stream = streams[x]
        if stream.interval == 0 and stream.next < stream.n:
            stream.top_up(endpoints[x], t)
        sending[x] = True
        schedule(t + wire_bytes(len(frame)) * ns_per_byte, tx_done[x])
        delivery = channels[x].transmit(frame, t)
        if delivery.data is not None:
            schedule(delivery.arrival_ns, arrive[1 - x], delivery.data)

    def arm(x):
        deadline = endpoints[x].next_deadline()
        if deadline is not None and (armed[x] is None or deadline < armed[x]):
            armed[x] = deadline
            schedule(deadline, timer[x])

    def handlers(x):
        endpoint, stream, other = endpoints[x], streams[x], streams[1 - x]
        ab, ba = streams

        def on_arrive(data):
            t = kernel.now
            tlps = endpoint.receive(data, t)
            if tlps:
                other.deliver(tlps, t)
                if ab.done and ba.done:
                    kernel.stop()
                    return
            kick(x, t)
            arm(x)

        def on_tx_done():
            sending[x] = False
            t = kernel.now
            kick(x, t)
            arm(x)

        def on_timer():
            t = kernel.now
            if armed[x] != t:           # superseded by an earlier deadline
                return
            armed[x] = None
            endpoint.on_timer(t)
            if down:
                kernel.stop()
                return
            kick(x, t)
            arm(x)

        def on_submit():
            t = kernel.now
            stream.submit_one(endpoint, t)
            if stream.next < stream.n:
                schedule(t + stream.interval, on_submit)
            kick(x, t)
            arm(x)

        arrive[x], tx_done[x], timer[x], submit[x] = on_arrive, on_tx_done, on_timer, on_submit

    for x in (0, 1):
        handlers(x)
        if streams[x].n:
            if streams[x].interval == 0:
                streams[x].top_up(endpoints[x], 0.0)
            else:
                schedule(0.0, submit[x])
    for x in (0, 1):
        kick(x, 0.0)
        arm(x)
    if kernel.run_until(max_time):
        t = kernel.now            # stopped by an event: its time
    elif kernel.pending:
        t = kernel.next_ns        # the first event after max_time
    else:
        t = kernel.last_ns        # nothing left to do
    return _record(p, seed, unknown, streams, endpoints, rate, t)


def _record(p, seed, unknown, streams, endpoints, rate, t_end):
    ab, ba = streams
    a, b = endpoints[0].counters, endpoints[1].counters
    elapsed = ab.last_ns or 0.0
    steady = elapsed - ab.first_ns if ab.first_ns is not None else 0.0
    record = {k: v for k, v in p.items() if k not in ("ab", "ba")}
    record.update(
        seed=seed,
        tlps_sent=ab.next,
        tlps_delivered=ab.delivered,
        lost=ab.n - ab.delivered,
        duplicated=ab.duplicated,
        corrupted=ab.corrupted,
        reordered=ab.reordered,
        replays=a.replays,
        replays_nak=a.replays_nak,
        replays_timeout=a.replays_timeout,
        frames_retransmitted=a.frames_retransmitted,
        data_frames_sent=a.data_frames_sent,
        goodput_fraction=ab.payload_after_first * 8 / (rate * steady) if steady > 0 else 0.0,
        latency_p50_ns=_percentile(ab.latency, 50),
        latency_p99_ns=_percentile(ab.latency, 99),
        link_down_events=a.link_down_events + b.link_down_events,
        wraps=a.seq_wraps,
        elapsed_ns=elapsed,
        sim_end_ns=t_end,
        counters_a=a.as_dict(),
        counters_b=b.as_dict(),
    )
    if unknown:
        record["unknown_params"] = sorted(unknown)
    if ba.n:
        record.update(reverse_tlps_delivered=ba.delivered, reverse_lost=ba.n - ba.delivered,
                      reverse_duplicated=ba.duplicated, reverse_corrupted=ba.corrupted,
                      reverse_reordered=ba.reordered)
    return record
