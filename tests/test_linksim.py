"""The link simulation (tlpoe.models.linksim) against the scoreboard and the
analytical models (tlpoe.models.gbn)."""

import random
import time

import pytest

from tlpoe.models.frame import decode_frame, frame_overhead_bytes, wire_bytes
from tlpoe.models.gbn import (
    frame_error_probability, framing_efficiency, gbn_efficiency, gbn_efficiency_nak_timer,
    gbn_nak_cost_frames, replay_buffer, sr_efficiency,
)
from tlpoe.models.linksim import (
    DEFAULTS, Delivery, _config, frame_time_ns, make_tlps, register_channel, run_point,
    tlp_index,
)
from tlpoe.models.tlp import Tlp, TlpType
from tlpoe.models.wire import FrameType

SEED = 20240611
ZERO_ERRORS = dict(lost=0, duplicated=0, corrupted=0, reordered=0, link_down_events=0)


def errors(record):
    return {k: record[k] for k in ZERO_ERRORS}


class TinyLossyChannel:
    """A test-local channel: seeded drop / corrupt of each frame, optionally every
    NAK dropped; fixed latency and line rate. Only ``transmit`` is required."""

    def __init__(self, latency_ns, rate_gbps, drop, corrupt, seed, drop_naks=False):
        self.latency, self.rate = latency_ns, rate_gbps
        self.drop, self.corrupt, self.drop_naks = drop, corrupt, drop_naks
        self.rng = random.Random(seed)
        self.naks_dropped = 0

    def transmit(self, frame, t_ns):
        arrival = t_ns + wire_bytes(len(frame)) * 8 / self.rate + self.latency
        if self.drop_naks and decode_frame(frame).frame_type == FrameType.NAK:
            self.naks_dropped += 1
            return Delivery(arrival, None, "drop")
        if self.rng.random() < self.drop:
            return Delivery(arrival, None, "drop")
        if self.rng.random() < self.corrupt:
            data = bytearray(frame)
            data[self.rng.randrange(len(data))] ^= 0x40
            return Delivery(arrival, bytes(data), "corrupt")
        return Delivery(arrival, frame, "ok")


CREATED = []


def tiny(params, seed, direction):
    channel = TinyLossyChannel(params["latency_ns"], params["rate_gbps"], params["drop"],
                               params["corrupt"], (seed, direction).__hash__(),
                               params.get("drop_naks", False))
    CREATED.append(channel)
    return channel


register_channel("tiny", tiny)

#: 10% of frames lost (5% dropped, 5% corrupted) in both directions, so ACKs
#: and NAKs are lost too; 6-bit sequence numbers so a short run wraps often.
LOSSY = dict(channel="tiny", drop=0.05, corrupt=0.05, seq_bits=6, window=31,
             tlps=2_000, latency_ns=500.0)


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_exactly_once_in_order_bit_exact_over_a_lossy_channel(mode):
    record = run_point({**LOSSY, "mode": mode}, SEED)
    assert errors(record) == ZERO_ERRORS
    assert record["tlps_delivered"] == record["tlps_sent"] == 2_000
    assert record["wraps"] >= 3
    assert record["replays"] > 0
    drops_b = record["counters_b"]["drops"]
    assert sum(drops_b.values()) > 0                # corrupted frames were caught
    assert record["counters_a"]["frames_received"] < record["counters_b"]["frames_sent"]


def test_bidirectional_traffic_over_a_lossy_channel():
    record = run_point({**LOSSY, "tlps": 1_000, "tlps_reverse": 1_000, "mode": "sr"}, SEED)
    assert errors(record) == ZERO_ERRORS
    assert (record["reverse_lost"], record["reverse_duplicated"],
            record["reverse_corrupted"], record["reverse_reordered"]) == (0, 0, 0, 0)
    assert record["counters_b"]["replays"] > 0


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_replay_timer_recovers_when_every_nak_is_lost(mode):
    CREATED.clear()
    record = run_point({**LOSSY, "mode": mode, "tlps": 500, "corrupt": 0.0,
                        "ba": {"drop_naks": True, "drop": 0.0}}, SEED)
    assert errors(record) == ZERO_ERRORS
    assert record["tlps_delivered"] == 500
    assert record["counters_b"]["naks_sent"] > 0 and CREATED[1].naks_dropped > 0
    assert record["replays_nak"] == 0
    assert record["replays_timeout"] > 0


def test_dead_channel_puts_the_link_down_once():
    record = run_point({**LOSSY, "drop": 1.0, "max_retries": 3}, SEED)
    assert record["link_down_events"] == 1
    assert record["tlps_delivered"] == 0
    assert record["replays_timeout"] == 2


def test_same_seed_same_record_other_seed_other_record():
    params = {**LOSSY, "channel": "lossy", "drop_rate": 0.1, "tlps": 500}
    assert run_point(params, 1) == run_point(params, 1)
    assert run_point(params, 1)["counters_a"] != run_point(params, 2)["counters_a"]


def test_tlps_are_4dw_memory_writes_numbered_by_address():
    tlps = make_tlps(3, 256, SEED)
    for i, raw in enumerate(tlps):
        parsed = Tlp.unpack(raw)
        assert parsed.type is TlpType.MWr and parsed.addr64 and len(parsed.data) == 256
        assert parsed.address == 2**40 + i * 4096 and parsed.tag == i
        assert len(raw) == 272 and tlp_index(raw) == i


def test_ideal_goodput_within_2_percent_of_the_framing_limit():
    tlp_bytes, payload = 16 + 256, 256
    n = 1500 - 26 - 4                               # TLP area at MTU 1500
    per_frame = n // (4 + tlp_bytes)
    limit = per_frame * payload / wire_bytes(frame_overhead_bytes(per_frame)
                                             + per_frame * tlp_bytes)
    assert limit == pytest.approx(framing_efficiency(256, 1500)[0])
    record = run_point({"tlps": 20_000, "mtu": 1500}, SEED)
    assert errors(record) == ZERO_ERRORS
    assert 0.98 * limit <= record["goodput_fraction"] <= limit
    assert record["replays"] == 0


def test_light_load_latency_is_serialisation_plus_propagation():
    record = run_point({"tlps": 200, "interval_ns": 1_000.0, "latency_ns": 700.0}, SEED)
    one = frame_time_ns(frame_overhead_bytes(1) + 272, 100.0)
    assert record["latency_p50_ns"] == pytest.approx(700.0 + one)
    assert record["latency_p99_ns"] == pytest.approx(700.0 + one)


# Goodput against the analytical models, losses on A->B only (NAKs arrive).
# GBN: the NAK-timer form of the go-back-N model (gbn.py) within 15% (3000
# frames per point: the number of losses alone varies by ~10%); the classic
# (1-p)/(1+2ap) bounds it from above within 20%. SR: (1 - p) within 8%.
@pytest.mark.parametrize("p", [0.02, 0.05, 0.1])
def test_gbn_goodput_matches_the_analytical_model(p):
    params = {"tlps": 15_000, "channel": "lossy", "drop_rate": p, "ba": {"drop_rate": 0.0},
              "mode": "gbn", "latency_ns": 1_000.0}
    record = run_point(params, SEED)
    assert errors(record) == ZERO_ERRORS
    framing, _, frame_len = framing_efficiency(256, 1500)
    tf = frame_time_ns(frame_len, 100.0)
    k = gbn_nak_cost_frames(1_000.0, tf, 100.0)
    t = _config({**DEFAULTS, **params}).nak_timeout / tf
    model = gbn_efficiency_nak_timer(p, k, t) * framing
    classic = gbn_efficiency(p, 1_000.0 / tf) * framing
    assert record["goodput_fraction"] == pytest.approx(model, rel=0.15)
    assert record["goodput_fraction"] == pytest.approx(classic, rel=0.20)


@pytest.mark.parametrize("p", [0.02, 0.1])
def test_sr_goodput_matches_the_analytical_model(p):
    record = run_point({"tlps": 15_000, "channel": "lossy", "drop_rate": p,
                        "ba": {"drop_rate": 0.0}, "mode": "sr", "latency_ns": 1_000.0}, SEED)
    assert errors(record) == ZERO_ERRORS
    model = sr_efficiency(p) * framing_efficiency(256, 1500)[0]
    assert record["goodput_fraction"] == pytest.approx(model, rel=0.08)


def test_analytical_numbers():
    assert frame_error_probability(1e-5, 1500) == pytest.approx(0.113, abs=0.001)
    assert gbn_efficiency(0.11, 83 / 2) == pytest.approx(0.088, abs=0.002)  # DESIGN.md
    assert gbn_efficiency_nak_timer(0.1, 21, 21) == pytest.approx(gbn_efficiency(0.1, 10))
    r = replay_buffer(100.0, 10_000.0, 1500)
    assert (r["window"], r["buffer_bytes"], r["seq_bits"]) == (83, 83 * 1514, 8)
    assert replay_buffer(100.0, 2_000.0, 9000)["window"] == 4


def test_speed():
    start = time.perf_counter()
    record = run_point({"tlps": 20_000, "channel": "lossy", "ber": 1e-5}, SEED)
    rate = record["tlps_delivered"] / (time.perf_counter() - start)
    assert errors(record) == ZERO_ERRORS
    assert rate > 5_000, f"{rate:.0f} TLPs/s"


def test_the_udp_transport_costs_its_headers_and_loses_nothing():
    """The reference link on the ``udp`` transport: the steady goodput is
    the ``eth`` goodput scaled by the two transports' wire efficiencies
    (28 more bytes a frame, fewer TLPs a frame); under bit errors handed
    up by the NIC, corrupted IPv4 headers are dropped as IP_HEADER, the
    rest as CRC, and nothing is lost, duplicated or corrupted."""
    from tlpoe.models import transport as tp
    eth = run_point(dict(tlps=3000), 1)
    udp = run_point(dict(tlps=3000, transport="udp"), 1)
    assert eth["lost"] == udp["lost"] == 0
    ratio = tp.wire_efficiency(272, 1500, "udp") / tp.wire_efficiency(272, 1500, "eth")
    assert udp["goodput_fraction"] / eth["goodput_fraction"] == pytest.approx(ratio, rel=2e-3)
    noisy = run_point(dict(tlps=3000, transport="udp", channel="phy", ber=1e-5,
                           deliver_bad_fcs=True), 2)
    assert noisy["lost"] == noisy["duplicated"] == noisy["corrupted"] == 0
    drops = noisy["counters_b"]["drops"]
    assert drops["IP_HEADER"] > 0 and drops["CRC"] > drops["IP_HEADER"]
