"""The hostile-frame generator (tlpoe.tb.hostile) against the frame model.

The generator only lies; the frame model (decode_frame) is the oracle the
bench uses. These tests check the generator's own contract: deterministic,
every kind reachable and honest about its name and ``crc_fixed``, lengths in
bounds, the verdicts that a kind makes certain, and a mix of verdicts over a
long stream that covers every drop reason and still holds valid frames.
"""

import collections
import random
import subprocess
import sys

import pytest

from tlpoe.models.frame import (ETH_REASONS, DropReason, FrameError, decode_frame, encode_frame,
                               largest_tlp)
from tlpoe.models.wire import (
    CRC_LEN, ETH_LEN, HEADER_LEN, MIN_TLP, MTUS, FrameType, body_capacity,
)
from tlpoe.tb.faults import control_frame, model_verdict
from tlpoe.tb.hostile import (
    BEATS, MUTATIONS, Hostile, crc_modes, good_frame, hostile_frame, max_hostile_len, mutate,
    random_tlp,
)

SEED = 20240917
R = DropReason


def goods(mtu, rng=None):
    """Valid frames to mutate: random DATA frames, padded and unpadded control
    frames, the 60-byte one-TLP frame, a one-52-byte-TLP frame, and a full frame."""
    rng = rng or random.Random(SEED)
    frames = [good_frame(rng, mtu=mtu, seq=i) for i in range(6)]
    frames += [control_frame(rng, seq=1), encode_frame([], frame_type=FrameType.ACK, ack=9)]
    frames += [encode_frame([bytes(range(12))]), encode_frame([bytes(range(52))], seq=3)]
    frames += [encode_frame([rng.randbytes(largest_tlp(mtu))], mtu=mtu)]
    return frames


def verdict(hostile, mtu=1500):
    return model_verdict(hostile.data, mtu)


def draws(kind, mtu=1500, n=40, crc_fixed=None, seed=SEED):
    """``n`` mutations of ``kind`` over each of :func:`goods`."""
    rng = random.Random(seed)
    return [mutate(kind, rng, good, mtu=mtu, crc_fixed=crc_fixed)
            for good in goods(mtu) for _ in range(n)]


# --- determinism, names, bounds ------------------------------------------------------

def stream(seed, n=600, mtu=1500):
    rng = random.Random(seed)
    return [hostile_frame(rng, good_frame(rng, mtu=mtu, seq=i), mtu=mtu) for i in range(n)]


def test_same_seed_same_frames():
    assert stream(SEED) == stream(SEED)
    assert stream(SEED) != stream(SEED + 1)


def test_hostile_frame_draws_every_kind_and_never_good():
    rng = random.Random(SEED)
    frames = goods(1500)
    kinds = collections.Counter(hostile_frame(rng, rng.choice(frames)).kind
                                for _ in range(3000))
    assert set(kinds) == set(MUTATIONS)
    assert len(MUTATIONS) == len(set(MUTATIONS)) and "good" not in MUTATIONS


@pytest.mark.parametrize("kind", MUTATIONS + ("good",))
def test_mutate_returns_its_kind_and_honours_crc_fixed(kind):
    rng = random.Random(SEED)
    for good in goods(1500):
        hostile = mutate(kind, rng, good)
        assert isinstance(hostile, Hostile) and hostile.kind == kind
        assert hostile.crc_fixed in crc_modes(kind)
        for fixed in (False, True):
            if fixed in crc_modes(kind):
                assert mutate(kind, rng, good, crc_fixed=fixed).crc_fixed is fixed
            else:
                with pytest.raises(ValueError, match=kind):
                    mutate(kind, rng, good, crc_fixed=fixed)


def test_mutate_draws_both_crc_modes_where_the_kind_has_both():
    for kind in MUTATIONS:
        if len(crc_modes(kind)) == 2:
            assert {h.crc_fixed for h in draws(kind, n=4)} == {False, True}, kind


def test_mutate_rejects_unknown_kinds_and_invalid_goods():
    rng = random.Random(SEED)
    good = good_frame(rng)
    with pytest.raises(ValueError, match="unknown mutation"):
        mutate("no_such_kind", rng, good)
    with pytest.raises(ValueError, match="valid frame"):
        mutate("count_lie", rng, good[:-1])
    with pytest.raises(ValueError, match="valid frame"):        # longer than 14 + mtu
        mutate("count_lie", rng, good + bytes(1500))


@pytest.mark.parametrize("mtu", MTUS)
def test_lengths_stay_within_bounds(mtu):
    for kind in MUTATIONS:
        for hostile in draws(kind, mtu=mtu, n=15):
            assert 1 <= len(hostile.data) <= ETH_LEN + mtu + 64 == max_hostile_len(mtu), kind


def test_good_is_returned_unchanged():
    rng = random.Random(SEED)
    for good in goods(1500):
        hostile = mutate("good", rng, good)
        assert hostile.data == good and hostile.crc_fixed and verdict(hostile) is None


def test_generator_imports_no_simulator():
    code = ("import sys, tlpoe.tb.hostile; "
            "sys.exit(any(m.split('.')[0] in ('cocotb', 'pyuvm') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- verdicts a kind makes certain -------------------------------------------------

#: (kind, crc_fixed) -> the verdicts the model may give (None = valid).
CERTAIN = {
    ("truncate_eth", False): {R.TRUNCATED, R.ETHERTYPE},     # ETHERTYPE: padded with zeros
    ("truncate_bridge", False): {R.TRUNCATED, R.CRC},       # CRC: padded to 60 with zeros
    ("truncate_prefix", False): {R.TRUNCATED, R.CRC},
    ("truncate_tlp", False): {R.TRUNCATED, R.CRC},
    ("truncate_crc", False): {R.TRUNCATED, R.CRC},
    ("length_overrun", False): {R.TRUNCATED, R.CRC},
    ("length_underrun", False): {R.CRC, R.PREFIX_OVERRUN},  # PREFIX_OVERRUN: L not whole DWs
    ("length_short_consistent", True): {None},
    ("count_lie", True): {R.COUNT_MISMATCH},
    ("count_lie", False): {R.CRC},
    ("prefix_long", False): {R.CRC},
    ("prefix_short", False): {R.CRC},
    ("prefix_malformed", True): {R.PREFIX_OVERRUN},
    ("prefix_malformed", False): {R.CRC},
    ("wrong_ethertype", True): {R.ETHERTYPE},
    ("wrong_version", True): {R.VERSION},
    ("wrong_version", False): {R.VERSION},
    ("reserved_frame_type", True): {R.VERSION},
    ("reserved_frame_type", False): {R.VERSION},
    ("control_with_tlps", True): {R.COUNT_MISMATCH},
    ("control_with_tlps", False): {R.CRC},
    ("control_with_count", True): {R.COUNT_MISMATCH},
    ("control_with_count", False): {R.CRC},
    ("data_empty", True): {R.EMPTY_DATA},
    ("data_empty", False): {R.CRC},
    ("oversize_padding", True): {R.OVERSIZE},
    ("oversize_area", True): {R.OVERSIZE},
    ("bit_flips_covered", False): {R.CRC},
}


@pytest.mark.parametrize("kind, crc_fixed", sorted(CERTAIN))
@pytest.mark.parametrize("mtu", MTUS)
def test_certain_verdicts(kind, crc_fixed, mtu):
    for hostile in draws(kind, mtu=mtu, n=12, crc_fixed=crc_fixed):
        assert verdict(hostile, mtu) in CERTAIN[kind, crc_fixed], hostile.detail


def test_truncation_inside_the_headers_unpadded_is_truncated():
    for kind in ("truncate_eth", "truncate_bridge"):
        for hostile in draws(kind):
            if len(hostile.data) < HEADER_LEN:
                assert verdict(hostile) is R.TRUNCATED
    assert any(len(h.data) == 60 for h in draws("truncate_bridge")), "never MAC-padded"


@pytest.mark.parametrize("kind", [k for k in MUTATIONS if True in crc_modes(k)])
def test_a_fixed_crc_is_never_what_drops_the_frame(kind):
    for hostile in draws(kind, n=12, crc_fixed=True):
        assert verdict(hostile) is not R.CRC, hostile.detail


def test_trailing_bytes_leave_the_frame_as_it_was():
    for good in goods(1500):
        ref = decode_frame(good)
        end = HEADER_LEN + ref.payload_length + CRC_LEN
        rng = random.Random(SEED)
        for _ in range(40):
            hostile = mutate("trailing_bytes", rng, good)
            got = decode_frame(hostile.data)       # no MTU: a full frame may go over
            assert (got.tlps, got.stamps, got.seq, got.frame_type) == \
                (ref.tlps, ref.stamps, ref.seq, ref.frame_type)
            assert hostile.data[:end] == good[:end]
            assert end < len(hostile.data) <= len(good) + 64


def test_trailing_bytes_end_at_every_byte_lane_of_both_beats():
    """The case that jammed the RTL: a frame whose last beat is partly trailing bytes."""
    rng = random.Random(SEED)
    for tlp_len, jam in ((12, 8), (52, 32)):
        good = encode_frame([bytes(tlp_len)])
        ends = collections.Counter(len(mutate("trailing_bytes", rng, good).data)
                                   for _ in range(2500))
        for beat in BEATS:
            assert {end % beat for end in ends} == set(range(beat)), (tlp_len, beat)
        assert ends[len(good) + jam] > 0, f"{len(good)}-byte frame + {jam} never made"


def test_length_short_consistent_keeps_the_first_tlps():
    for good in goods(1500):
        ref = decode_frame(good).tlps
        rng = random.Random(SEED)
        for _ in range(20):
            hostile = mutate("length_short_consistent", rng, good)
            tlps = decode_frame(hostile.data, mtu=1500).tlps
            assert tlps
            if len(ref) >= 2:              # else a DATA frame with random TLPs was made
                assert len(tlps) < len(ref) and tlps == ref[:len(tlps)]
                assert len(hostile.data) == len(good)


def test_bit_flips_change_one_to_eight_bits():
    for kind in ("bit_flips", "bit_flips_covered", "header_flips"):
        rng = random.Random(SEED)
        for good in goods(1500):
            hostile = mutate(kind, rng, good)
            a, b = good, hostile.data
            assert len(a) == len(b)
            # header_flips rewrites the CRC, maybe inside the TLP area: count the headers only
            span = HEADER_LEN if kind == "header_flips" else len(a)
            flipped = sum(bin(x ^ y).count("1") for x, y in zip(a[:span], b[:span]))
            assert 1 <= flipped <= 8, (kind, hostile.detail)


def test_truncations_are_a_cut_good_frame_maybe_padded_to_60():
    for kind in [k for k in MUTATIONS if k.startswith("truncate_")]:
        rng = random.Random(SEED)
        for good in goods(1500):
            if len(decode_frame(good).tlps) == 0 and kind in ("truncate_prefix", "truncate_tlp"):
                continue                   # cut from a DATA frame made for the purpose
            for _ in range(10):
                data = mutate(kind, rng, good).data
                assert len(data) < len(good) and data == good[:len(data)] or \
                    len(data) == 60 and any(data == good[:k] + bytes(60 - k) for k in range(60))


# --- the mix over a long stream ------------------------------------------------------

def test_a_long_stream_covers_every_drop_reason_and_holds_valid_frames():
    """20,000 hostile frames from random DATA and control frames: every drop
    reason at least 50 times, and more than 5 % valid (consistent lies and
    trailing bytes), which the bench needs to check the accept path too."""
    rng = random.Random(SEED)
    counts = collections.Counter()
    for i in range(20000):
        good = control_frame(rng, seq=i) if rng.random() < 0.2 else good_frame(rng, seq=i)
        counts[verdict(hostile_frame(rng, good))] += 1
    for reason in ETH_REASONS:
        assert counts[reason] >= 50, (reason, counts)
    assert counts[None] > 0.05 * 20000, counts


# --- valid frames ------------------------------------------------------------------------

@pytest.mark.parametrize("mtu", MTUS)
def test_good_frame_decodes_and_round_trips(mtu):
    rng = random.Random(SEED)
    ends, singles = set(), collections.Counter()
    for i in range(400):
        frame = good_frame(rng, mtu=mtu, seq=i, ack=7, flags=1, max_tlps=8)
        got = decode_frame(frame, mtu=mtu)
        assert got.frame_type is FrameType.DATA and (got.seq, got.ack, got.flags) == (i, 7, 1)
        assert 1 <= len(got.tlps) <= 8 and got.encode() == frame
        assert all(len(t) % 4 == 0 and MIN_TLP <= len(t) <= 1044 for t in got.tlps)
        assert got.payload_length <= body_capacity(mtu)
        ends.add(len(frame) % 64)
        if len(got.tlps) == 1:
            singles[len(got.tlps[0])] += 1
    assert ends == set(range(0, 64, 4))            # every DW lane of a 512-bit beat
    assert singles[MIN_TLP] > 0 and len(singles) > 20


def test_random_tlp_sizes():
    rng = random.Random(SEED)
    sizes = [len(random_tlp(rng, 2000)) for _ in range(2000)]
    assert min(sizes) == 12 and max(sizes) <= 1044 and all(s % 4 == 0 for s in sizes)
    assert sum(s <= 64 for s in sizes) > len(sizes) / 2          # biased to small TLPs
    assert all(len(random_tlp(rng, 13)) == 12 for _ in range(20))
    with pytest.raises(ValueError):
        random_tlp(rng, 11)


def test_good_frame_raises_nothing_for_the_model():
    rng = random.Random(SEED)
    for mtu in MTUS:
        for _ in range(200):
            try:
                decode_frame(good_frame(rng, mtu=mtu, max_tlps=1), mtu=mtu)
            except FrameError as e:                               # pragma: no cover
                pytest.fail(str(e))
