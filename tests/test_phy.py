"""The NIC/PHY model (tlpoe.models.phy): line rate, error processes, the MAC's view.

Statistical checks compare a measured count with its law and allow 5 standard
deviations (a two-sided normal tail of about 6e-7), so a correct model fails
them essentially never, at any seed; the seeds are fixed anyway.
"""

import math

import numpy as np
import pytest

from tlpoe.models.phy import (
    Delivery, Fate, GilbertElliott, Link, Phy, flip_bits, frame_hit_probability,
    protected_bits, serialization_ns,
)

SEED = 20240611
SIGMAS = 5
FRAME_1500 = bytes(range(256)) * 5 + bytes(range(220))     # 1500 bytes, not all zero


def within(measured, expected, sigma):
    return abs(measured - expected) <= SIGMAS * sigma


def send(phy, frames, gap_ns=0.0, start_ns=0.0):
    """Deliveries of ``frames`` offered every ``gap_ns`` (0: back to back)
    from ``start_ns``."""
    return [phy.transmit(frame, start_ns + i * gap_ns) for i, frame in enumerate(frames)]


def bits_set(a, b):
    """Bit positions (8 * byte + weight) where ``a`` and ``b`` differ."""
    diff = np.bitwise_xor(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8))
    return np.flatnonzero(np.unpackbits(diff, bitorder="little"))


# --- line rate ----------------------------------------------------------------

# A maximum standard frame is 1518 bytes with FCS, 1514 as handed to the MAC:
# 1514 + FCS 4 + preamble/SFD 8 + IFG 12 = 1538 byte times = 12304 bits.
@pytest.mark.parametrize("rate, ns", [(10, 1230.4), (25, 492.16), (100, 123.04)])
def test_serialization_of_a_1518_byte_frame(rate, ns):
    assert serialization_ns(1514, rate) == pytest.approx(ns, abs=1e-9)


def test_minimum_frame_occupies_84_bytes_6_72_ns_at_100g_and_short_frames_are_padded():
    # 64-byte minimum with FCS = 60 + 4, + 8 + 12 = 84 byte times = 672 bits.
    assert serialization_ns(60, 100) == pytest.approx(6.72)
    assert serialization_ns(20, 100) == serialization_ns(60, 100)
    assert protected_bits(20) == protected_bits(60) == 8 * 64


def test_frames_queue_back_to_back_at_line_rate():
    phy = Phy(rate_gbps=25, latency_ns=500.0, seed=SEED)
    serial = serialization_ns(1500, 25)
    out = send(phy, [FRAME_1500] * 5)                       # all offered at t = 0
    for k, d in enumerate(out):
        assert d.start_ns == pytest.approx(k * serial)
        assert d.arrival_ns == pytest.approx(d.start_ns + serial + 500.0)
    assert phy.free_ns == pytest.approx(5 * serial)


def test_an_idle_line_sends_at_the_offer_time():
    phy = Phy(rate_gbps=10, latency_ns=0.0, seed=SEED)
    first = phy.transmit(bytes(60), 0.0)
    later = phy.transmit(bytes(60), 1000.0)
    assert (first.start_ns, later.start_ns) == (0.0, 1000.0)
    assert later.arrival_ns == pytest.approx(1000.0 + 67.2)


# --- determinism --------------------------------------------------------------

def fingerprint(deliveries):
    return [(d.fate, d.frame, d.start_ns, tuple(d.error_bits)) for d in deliveries]


SETTINGS = dict(ber=1e-4, burst=GilbertElliott.from_ber(1e-4, 64), drop_rate=0.05,
                down=[(5_000.0, 20_000.0)], deliver_bad_fcs=True)


def test_same_seed_and_parameters_give_the_same_deliveries():
    runs = [fingerprint(send(Phy(seed=SEED, **SETTINGS), [FRAME_1500] * 2000))
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert {fate for fate, *_ in runs[0]} == set(Fate) - {Fate.FCS_DROP}   # all processes acted


def test_another_seed_gives_other_deliveries():
    a, b = (fingerprint(send(Phy(seed=s, **SETTINGS), [FRAME_1500] * 2000))
            for s in (SEED, SEED + 1))
    assert a != b


def test_drop_rate_does_not_change_the_bit_error_draws():
    a, b = (send(Phy(ber=1e-4, drop_rate=p, seed=SEED), [FRAME_1500] * 500)
            for p in (0.0, 0.5))
    assert [tuple(d.error_bits) for d in a] == [tuple(d.error_bits) for d in b]


def test_link_directions_are_independent_and_reproducible():
    frames = [FRAME_1500] * 3000

    def run(seed):
        link = Link(seed=seed, ber=1e-4, b_to_a={"drop_rate": 0.1})
        return (fingerprint(send(link.a_to_b, frames)), fingerprint(send(link.b_to_a, frames)),
                link.b_to_a.drop_rate)

    ab, ba, drop = run(SEED)
    assert (ab, ba) == run(SEED)[:2]
    assert drop == 0.1
    assert [e for *_, e in ab] != [e for *_, e in ba]       # different seeds per direction


# --- random bit errors ----------------------------------------------------------

N_FRAMES = 100_000
BER = 1e-5


@pytest.fixture(scope="module")
def ber_run():
    phy = Phy(ber=BER, seed=SEED)
    return phy, send(phy, [FRAME_1500] * N_FRAMES)


def test_injected_ber_matches_the_target(ber_run):
    phy, _ = ber_run
    c = phy.counters
    assert c.bits == N_FRAMES * protected_bits(1500)
    # The count of errors over n independent bits is Binomial(n, ber).
    assert within(c.bit_errors, c.bits * BER, math.sqrt(c.bits * BER * (1 - BER)))


def test_fraction_of_1500_byte_frames_hit_at_1e_5(ber_run):
    # A 1500-byte frame exposes 1500 + FCS 4 = 1504 bytes = 12032 protected bits:
    # 1 - (1 - 1e-5)**12032 = 0.11336. (A full 1514-byte frame, 12144 bits: 0.11436,
    # DESIGN.md's "11%". Preamble and IFG bits are not counted: errors there do not
    # touch the frame.)
    p = frame_hit_probability(1500, BER)
    assert p == pytest.approx(0.113364, abs=1e-6)
    assert frame_hit_probability(1514, BER) == pytest.approx(0.114356, abs=1e-6)
    phy, out = ber_run
    hit = sum(d.error_bits.size > 0 for d in out)
    assert phy.counters.fcs_drop == hit
    assert within(hit, N_FRAMES * p, math.sqrt(N_FRAMES * p * (1 - p)))


def test_errors_per_frame_are_binomial_and_positions_uniform():
    ber, n_frames = 2e-3, 20_000
    n = protected_bits(100)
    out = send(Phy(ber=ber, seed=SEED), [bytes(100)] * n_frames)
    counts = np.array([d.error_bits.size for d in out])
    mean, var = n * ber, n * ber * (1 - ber)
    assert within(counts.mean(), mean, math.sqrt(var / n_frames))
    # The sample variance of n_frames draws has sd ~ var * sqrt(2 / n_frames).
    assert within(counts.var(), var, var * math.sqrt(2 / n_frames) * 1.1)
    positions = np.concatenate([d.error_bits for d in out])
    assert positions.min() >= 0 and positions.max() < n
    assert all(np.all(np.diff(d.error_bits) > 0) for d in out)   # sorted, distinct
    # Uniform on 0..n-1: mean (n-1)/2, variance (n^2-1)/12.
    assert within(positions.mean(), (n - 1) / 2, math.sqrt((n * n - 1) / 12 / positions.size))


# --- burst errors ----------------------------------------------------------------

def test_gilbert_elliott_parameters_from_ber_and_burst_length():
    ge = GilbertElliott.from_ber(1e-5, 100)
    assert ge.p_bg == pytest.approx(0.01)
    assert ge.average_ber == pytest.approx(1e-5)
    assert ge.mean_burst_bits == pytest.approx(100)
    assert ge.bad_fraction == pytest.approx(2e-5)


def test_gilbert_elliott_bursts_and_ber_match_their_parameters():
    ge = GilbertElliott.from_ber(1e-3, 20)
    channel = ge.channel(np.random.default_rng(SEED))
    n = 40_000_000
    runs = channel.segments(0, n)
    bursts = np.array([length for _, length, state in runs[1:-1] if state == 1])
    # Stays are geometric: mean 1/p, variance (1 - p) / p^2.
    mean = {s: 1 / p for s, p in ((0, ge.p_gb), (1, ge.p_bg))}
    var = {s: (1 - p) / p ** 2 for s, p in ((0, ge.p_gb), (1, ge.p_bg))}
    assert bursts.size > 1000
    assert within(bursts.mean(), ge.mean_burst_bits, math.sqrt(var[1] / bursts.size))
    # Time in the bad state: a renewal-reward ratio over n / (mean good + mean bad)
    # cycles; its sd by the delta method.
    pi_b, cycles = ge.bad_fraction, n / (mean[0] + mean[1])
    sd = math.sqrt(((1 - pi_b) ** 2 * var[1] + pi_b ** 2 * var[0]) / cycles) / (mean[0] + mean[1])
    bad_time = sum(length for _, length, state in runs if state == 1) / n
    assert within(bad_time, pi_b, sd)
    errors = channel.errors(n, n)            # the next n bits: long-run BER
    assert errors.size / n == pytest.approx(ge.average_ber, rel=0.1)


@pytest.mark.parametrize("gap", [5, 40, 10_000])
def test_gilbert_elliott_state_across_idle_gaps_follows_the_chain(gap):
    # Probe the state at t and t + gap, probes 10^6 bits apart (independent):
    # P(bad at t + gap | bad at t) = pi_b + (1 - pi_b) * lam**gap, lam = 1 - p_gb - p_bg.
    ge = GilbertElliott(p_gb=0.01, p_bg=0.02)
    channel = ge.channel(np.random.default_rng(SEED))
    pairs = [(channel.segments(t, 1)[0][2], channel.segments(t + gap, 1)[0][2])
             for t in range(0, 20_000 * 10**6, 10**6)]
    first = np.array([a for a, _ in pairs])
    after_bad = np.array([b for a, b in pairs if a == 1])
    pi_b, lam = ge.bad_fraction, 1 - ge.p_gb - ge.p_bg
    assert within(first.mean(), pi_b, math.sqrt(pi_b * (1 - pi_b) / first.size))
    p = pi_b + (1 - pi_b) * lam ** gap
    assert within(after_bad.mean(), p, math.sqrt(p * (1 - p) / after_bad.size))


def test_gilbert_elliott_average_ber_through_the_phy():
    # Bursty errors are not binomial: use batch means, 100 batches of 1000 frames,
    # tolerance 5 standard errors of the batch BERs.
    ge = GilbertElliott.from_ber(1e-4, 50)
    phy = Phy(burst=ge, seed=SEED)
    batch_ber = []
    for _ in range(100):
        before = phy.counters.bit_errors
        send(phy, [FRAME_1500] * 1000)
        batch_ber.append((phy.counters.bit_errors - before) / (1000 * protected_bits(1500)))
    batch_ber = np.array(batch_ber)
    assert within(batch_ber.mean(), ge.average_ber, batch_ber.std(ddof=1) / 10)
    assert within(phy.counters.bit_errors / phy.counters.bits, 1e-4,
                  batch_ber.std(ddof=1) / 10)


def test_burst_errors_are_clustered():
    out = send(Phy(burst=GilbertElliott.from_ber(1e-4, 64), seed=SEED), [FRAME_1500] * 20_000)
    hit = [d.error_bits for d in out if d.error_bits.size > 1]
    spans = np.array([e[-1] - e[0] for e in hit])
    assert len(hit) > 100
    assert np.median(spans) < 4 * 64            # a burst, not errors spread over 12032 bits


# --- frame drop and link down ------------------------------------------------------

def test_drop_rate_within_tolerance():
    p, n = 0.01, 100_000
    phy = Phy(drop_rate=p, seed=SEED)
    send(phy, [bytes(60)] * n)
    assert within(phy.counters.dropped, n * p, math.sqrt(n * p * (1 - p)))
    assert phy.counters.delivered == n - phy.counters.dropped


def test_link_down_loses_every_frame_inside_and_none_outside():
    down = [(10_000.0, 20_000.0), (50_000.0, 50_001.0)]
    phy = Phy(rate_gbps=100, down=down, seed=SEED)
    serial = serialization_ns(1500, 100)
    out = send(phy, [FRAME_1500] * 600, gap_ns=100.0 + serial)
    for d in out:
        on_wire = (d.start_ns, d.start_ns + serial - 12 * 8 / 100)   # preamble .. FCS
        overlaps = any(a < on_wire[1] and on_wire[0] < b for a, b in down)
        assert (d.fate == Fate.LINK_DOWN) == overlaps
        assert d.lost == overlaps
    assert phy.counters.link_down == sum(d.fate == Fate.LINK_DOWN for d in out) > 40


def test_a_down_span_added_while_running_acts_as_one_given_at_the_start():
    down = [(10_000.0, 20_000.0), (15_000.0, 30_000.0)]
    frames = [FRAME_1500] * 400
    gap = 100.0 + serialization_ns(1500, 100)
    given = send(Phy(down=down, seed=SEED), frames, gap_ns=gap)
    phy = Phy(seed=SEED)
    out = send(phy, frames[:40], gap_ns=gap)            # up to 40 x 220 ns: before the cut
    for span in down:
        phy.add_down(*span)
    assert phy.down == ((10_000.0, 30_000.0),)
    out += send(phy, frames[40:], gap_ns=gap, start_ns=40 * gap)
    assert [d.fate for d in out] == [d.fate for d in given]
    assert phy.counters.link_down > 0
    with pytest.raises(ValueError, match="start < end"):
        phy.add_down(5.0, 5.0)


# --- the MAC's view -----------------------------------------------------------------

def test_a_bit_error_is_never_delivered_in_the_default_mode():
    phy = Phy(ber=1e-4, burst=GilbertElliott.from_ber(1e-4, 32), seed=SEED)
    frames = [bytes([i % 256]) * (40 + 37 * i % 1500) for i in range(5000)]
    out = [phy.transmit(frame, 0.0) for frame in frames]
    assert sum(d.error_bits.size > 0 for d in out) > 500
    for frame, d in zip(frames, out):
        if d.error_bits.size:
            assert d.fate == Fate.FCS_DROP and d.frame is None
        else:
            assert d.fate == Fate.DELIVERED and d.frame == frame.ljust(60, b"\0")
    assert phy.counters.corrupted == 0


def test_deliver_bad_fcs_flips_exactly_the_injected_bits():
    phy = Phy(ber=3e-4, deliver_bad_fcs=True, seed=SEED)
    frames = [bytes([7]) * (20 + 13 * i % 1500) for i in range(3000)]
    out = [phy.transmit(frame, 0.0) for frame in frames]
    fcs_only = 0
    for frame, d in zip(frames, out):
        padded = frame.ljust(60, b"\0")
        in_frame = d.error_bits[d.error_bits < 8 * len(padded)]
        assert np.array_equal(bits_set(d.frame, padded), in_frame)
        assert d.fate == (Fate.CORRUPTED if in_frame.size else Fate.DELIVERED)
        fcs_only += in_frame.size == 0 and d.error_bits.size > 0
    assert phy.counters.corrupted > 1000
    assert fcs_only > 0                 # errors only in the FCS: the bytes arrive intact


def test_short_frames_are_delivered_padded_to_60_bytes():
    d = Phy(seed=SEED).transmit(b"\x01\x02", 0.0)
    assert d.fate == Fate.DELIVERED and d.frame == b"\x01\x02" + bytes(58)


def test_flip_bits_numbers_bits_least_significant_first():
    assert flip_bits(b"\x00\x00", [0, 9, 15]) == b"\x01\x82"
    with pytest.raises(ValueError, match="bit positions"):
        flip_bits(b"\x00", [8])


# --- parameters ----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, name", [
    (dict(rate_gbps=40), "rate_gbps"), (dict(ber=1.5), "ber"), (dict(drop_rate=-0.1), "drop_rate"),
    (dict(latency_ns=-1), "latency_ns"), (dict(down=[(5.0, 5.0)]), "down"),
])
def test_bad_parameters_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Phy(**kwargs)


def test_gilbert_elliott_rejects_impossible_targets():
    with pytest.raises(ValueError, match="ber"):
        GilbertElliott.from_ber(0.6, 10)
    with pytest.raises(ValueError, match="mean_burst_bits"):
        GilbertElliott.from_ber(1e-5, 0.5)
    with pytest.raises(ValueError, match="p_gb"):
        GilbertElliott(p_gb=0, p_bg=0.1)


def test_delivery_reports_lost_frames():
    d = Phy(drop_rate=1.0, seed=SEED).transmit(FRAME_1500, 0.0)
    assert isinstance(d, Delivery) and d.lost and d.fate == Fate.DROPPED
