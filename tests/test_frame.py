"""The frame model (tlpoe.models.frame) against the wire format (tlpoe.models.wire)."""

import struct
import zlib

import numpy as np
import pytest

from tlpoe.models.frame import (
    CHECK_ORDER, FLAG_CREDITS_VALID, DropReason, FrameError, FrameStats, aggregate, decode_frame,
    encode_frame, frame_overhead_bytes, frames_for, largest_tlp, pad_to_minimum,
    wire_efficiency,
)
from tlpoe.models.wire import ETHERTYPE, MTUS, FrameType, body_capacity

SEED = 20240611


def random_tlps(rng, n, max_dws=260):
    """``n`` TLPs of 3..max_dws DWs of random bytes."""
    return [rng.bytes(4 * int(dws)) for dws in rng.integers(3, max_dws + 1, size=n)]


def tlp(n_bytes, fill=0xA5):
    return bytes([fill]) * n_bytes


def craft(*, payload, tlp_count, frame_type=0, version=1, ethertype=ETHERTYPE,
          payload_length=None, crc=None):
    """A frame built with struct, not with encode_frame: ``payload`` is the raw
    TLP area; the CRC is computed unless given."""
    length = len(payload) if payload_length is None else payload_length
    eth = bytes.fromhex("0a0b0c0d0e0f") + bytes.fromhex("010203040506") + struct.pack(">H", ethertype)
    bridge = struct.pack(">BBHIIHHHHHBBBB", version << 4 | frame_type, 0, 0, 0, 0,
                         tlp_count, length, 0, 0, 0, 0, 0, 0, 0)
    body = eth + bridge + payload
    if crc is None:
        crc = zlib.crc32(body[14:])
    return body + struct.pack("<I", crc)


def prefixed(*tlps):
    return b"".join(struct.pack(">HH", len(t), 0) + t for t in tlps)


def reason_of(frame, **kwargs):
    with pytest.raises(FrameError) as info:
        decode_frame(frame, **kwargs)
    return info.value.reason


# --- round trip -----------------------------------------------------------------

@pytest.mark.parametrize("mtu", MTUS)
def test_random_tlp_lists_round_trip_through_frames(mtu):
    rng = np.random.default_rng(SEED + mtu)
    tlps = random_tlps(rng, 300)
    frames = frames_for(tlps, mtu=mtu, first_seq=2**32 - 3, ack=9, channel=2)
    decoded = [decode_frame(f, mtu=mtu) for f in frames]
    assert [t for d in decoded for t in d.tlps] == tlps
    assert [d.seq for d in decoded] == [(2**32 - 3 + i) % 2**32 for i in range(len(frames))]
    assert all(d.ack == 9 and d.channel == 2 and d.frame_type == FrameType.DATA for d in decoded)
    assert all(len(f) <= 14 + mtu for f in frames)


@pytest.mark.parametrize("mtu", MTUS)
def test_aggregation_is_greedy(mtu):
    groups = aggregate(random_tlps(np.random.default_rng(SEED), 200), mtu=mtu)
    for group, following in zip(groups, groups[1:]):
        used = sum(4 + len(t) for t in group)
        assert used + 4 + len(following[0]) > body_capacity(mtu)


def test_frame_object_re_encodes_to_the_same_bytes():
    frame = encode_frame([tlp(12), tlp(20)], seq=5, ack=4, flags=3, channel=7,
                         credits={"credit_p_data": 300, "credit_cpl_hdr": 9})
    decoded = decode_frame(frame)
    assert decoded.credits["credit_p_data"] == 300 and decoded.credits["credit_cpl_hdr"] == 9
    assert decoded.encode() == frame


def test_order_stamps_ride_in_the_prefixes():
    frame = encode_frame([tlp(12), tlp(20), tlp(16)], stamps=[7, 0xFFFF, 8])
    decoded = decode_frame(frame)
    assert decoded.stamps == [7, 0xFFFF, 8]
    assert decoded.encode() == frame
    assert decode_frame(encode_frame([tlp(12)])).stamps == [0]
    with pytest.raises(ValueError, match="2 order stamps for 3 TLPs"):
        encode_frame([tlp(12)] * 3, stamps=[1, 2])
    with pytest.raises(ValueError, match="order_stamp"):
        encode_frame([tlp(12)], stamps=[1 << 16])


# --- byte level -----------------------------------------------------------------

def test_frame_bytes_match_the_layout_built_by_hand():
    t0 = bytes(range(12))
    t1 = bytes(range(100, 120))
    frame = encode_frame([t0, t1], stamps=[0, 0x0203], seq=0x01020304, ack=0x0A0B0C0D, channel=0x0102,
                         frame_type=FrameType.DATA, flags=0x03,
                         credits=dict(credit_p_data=0x1112, credit_np_data=0x2122,
                                      credit_cpl_data=0x3132, credit_p_hdr=0x41,
                                      credit_np_hdr=0x51, credit_cpl_hdr=0x61),
                         dst_mac=bytes.fromhex("aabbccddeeff"),
                         src_mac=bytes.fromhex("020000000001"), ethertype=0x88B5)
    eth = bytes.fromhex("aabbccddeeff020000000001") + b"\x88\xb5"
    bridge = (bytes([0x10, 0x03]) + b"\x01\x02" + b"\x01\x02\x03\x04" + b"\x0a\x0b\x0c\x0d"
              + b"\x00\x02" + b"\x00\x28" + b"\x11\x12\x21\x22\x31\x32" + b"\x41\x51\x61" + b"\x00")
    area = b"\x00\x0c\x00\x00" + t0 + b"\x00\x14\x02\x03" + t1
    assert len(bridge) == 26 and len(area) == 0x28
    expected = eth + bridge + area + struct.pack("<I", zlib.crc32(bridge + area))
    assert frame == expected


def test_crc_is_zlib_crc32_of_bytes_14_on_appended_little_endian():
    frame = encode_frame([tlp(16)])
    body, crc = frame[:-4], frame[-4:]
    assert crc == zlib.crc32(body[14:]).to_bytes(4, "little")
    assert crc != zlib.crc32(body[14:]).to_bytes(4, "big")   # the test would see a swap


def test_frames_are_not_padded_and_pad_to_minimum_pads_to_60():
    frame = encode_frame([], frame_type=FrameType.ACK)
    assert len(frame) == 44
    assert pad_to_minimum(frame) == frame + bytes(16)
    long = encode_frame([tlp(40)])
    assert pad_to_minimum(long) == long


def test_frame_overhead_is_frame_length_minus_tlp_bytes():
    tlps = [tlp(12), tlp(20), tlp(64)]
    assert len(encode_frame(tlps)) == frame_overhead_bytes(3) + sum(map(len, tlps))


# --- encoder argument checks ----------------------------------------------------

@pytest.mark.parametrize("tlps, kwargs, words", [
    ([tlp(14)], {}, "TLP 0 is 14 bytes, not a multiple of 4"),
    ([tlp(12), tlp(8)], {}, "TLP 1 is 8 bytes, shorter"),
    ([], {}, "DATA frame needs at least one TLP"),
    ([tlp(12)], {"frame_type": FrameType.ACK}, "ACK frame carries no TLPs"),
    ([tlp(1000), tlp(468)], {"mtu": 1500}, "more than the 1470"),
    ([tlp(12)], {"credits": {"credit_bogus": 1}}, "unknown credit fields"),
    ([tlp(12)], {"seq": 2**32}, "seq"),
])
def test_encode_rejects_naming_the_problem(tlps, kwargs, words):
    with pytest.raises(ValueError, match=words):
        encode_frame(tlps, **kwargs)


# --- aggregation ----------------------------------------------------------------

def tlps_filling(n_bytes):
    """TLPs whose prefixes and bytes add up to exactly ``n_bytes`` (a multiple of 4)."""
    tlps = []
    while n_bytes:
        size = min(1000, n_bytes - 4)
        if 0 < n_bytes - 4 - size < 16:      # keep the last one at least 12 bytes
            size -= 16
        tlps.append(tlp(size))
        n_bytes -= 4 + size
    return tlps


@pytest.mark.parametrize("mtu", [*MTUS, 1498, 8998])
def test_aggregation_fills_to_the_mtu_and_one_dw_more_splits(mtu):
    fill = body_capacity(mtu) // 4 * 4
    exact = tlps_filling(fill)
    assert len(aggregate(exact, mtu=mtu)) == 1
    assert len(encode_frame(exact, mtu=mtu)) <= 14 + mtu
    over = exact[:-1] + [exact[-1] + bytes(4)]
    assert [len(g) for g in aggregate(over, mtu=mtu)] == [len(exact) - 1, 1]


def test_mtu_1498_frame_is_exactly_14_plus_mtu():
    frame = encode_frame(tlps_filling(body_capacity(1498)), mtu=1498)
    assert len(frame) == 14 + 1498
    decode_frame(frame, mtu=1498)


def test_aggregation_closes_a_frame_at_max_tlps():
    groups = aggregate([tlp(12)] * 10, mtu=1500, max_tlps=3)
    assert [len(g) for g in groups] == [3, 3, 3, 1]


@pytest.mark.parametrize("mtu", MTUS)
def test_largest_tlp_fits_one_frame_and_one_dw_more_is_rejected(mtu):
    big = largest_tlp(mtu)
    assert len(encode_frame([tlp(big)], mtu=mtu)) <= 14 + mtu
    with pytest.raises(ValueError, match=f"TLP 2 is {big + 4} bytes"):
        aggregate([tlp(12), tlp(12), tlp(big + 4)], mtu=mtu)


def test_aggregate_of_nothing_is_no_frames():
    assert aggregate([], mtu=1500) == [] and frames_for([], mtu=1500) == []


# --- receive checks -------------------------------------------------------------

def test_drop_reasons_are_numbered_in_the_rtl_order():
    assert [(r.name, r.value) for r in DropReason] == [
        ("TRUNCATED", 0), ("ETHERTYPE", 1), ("VERSION", 2), ("CRC", 3),
        ("PREFIX_OVERRUN", 4), ("COUNT_MISMATCH", 5), ("EMPTY_DATA", 6), ("OVERSIZE", 7),
        ("IP_HEADER", 8), ("NOT_OURS", 9)]
    assert [r.name for r, _ in CHECK_ORDER] == [
        "TRUNCATED", "ETHERTYPE", "VERSION", "TRUNCATED", "PREFIX_OVERRUN", "CRC", "PREFIX_OVERRUN",
        "COUNT_MISMATCH", "EMPTY_DATA", "OVERSIZE"]


GOOD = craft(payload=prefixed(tlp(12), tlp(20)), tlp_count=2)


def flip(frame, byte, bit=0):
    out = bytearray(frame)
    out[byte] ^= 1 << bit
    return bytes(out)


CRAFTED = {
    "shorter than 44 bytes": (GOOD[:43], {}, DropReason.TRUNCATED),
    "CRC cut off": (GOOD[:-1], {}, DropReason.TRUNCATED),
    "payload_length past the frame": (craft(payload=prefixed(tlp(12)), tlp_count=1,
                                            payload_length=20), {}, DropReason.TRUNCATED),
    "foreign EtherType": (craft(payload=prefixed(tlp(12)), tlp_count=1, ethertype=0x0800),
                          {}, DropReason.ETHERTYPE),
    "EtherType other than configured": (GOOD, {"ethertype": 0x88B6}, DropReason.ETHERTYPE),
    "version 2": (craft(payload=prefixed(tlp(12)), tlp_count=1, version=2), {}, DropReason.VERSION),
    "reserved frame_type": (craft(payload=b"", tlp_count=0, frame_type=5), {}, DropReason.VERSION),
    "flipped TLP bit": (flip(GOOD, 50), {}, DropReason.CRC),
    "tlp_length not whole DWs": (craft(payload=prefixed(tlp(12))[:1] + b"\x0e"
                                       + prefixed(tlp(12))[2:] + bytes(2), tlp_count=1),
                                 {}, DropReason.PREFIX_OVERRUN),
    "tlp_length below 12": (craft(payload=prefixed(tlp(8)), tlp_count=1), {},
                            DropReason.PREFIX_OVERRUN),
    "TLP past payload_length": (craft(payload=prefixed(tlp(12))[:-4], tlp_count=1), {},
                                DropReason.PREFIX_OVERRUN),
    "prefix past payload_length": (craft(payload=prefixed(tlp(12)) + bytes(2), tlp_count=1),
                                   {}, DropReason.PREFIX_OVERRUN),
    "tlp_count too high": (craft(payload=prefixed(tlp(12), tlp(20)), tlp_count=3), {},
                           DropReason.COUNT_MISMATCH),
    "tlp_count 0 with TLPs": (craft(payload=prefixed(tlp(12)), tlp_count=0), {},
                              DropReason.COUNT_MISMATCH),
    "ACK frame with a TLP": (craft(payload=prefixed(tlp(12)), tlp_count=1, frame_type=1), {},
                             DropReason.COUNT_MISMATCH),
    "empty DATA frame": (craft(payload=b"", tlp_count=0), {}, DropReason.EMPTY_DATA),
    "longer than 14 + mtu": (craft(payload=prefixed(tlp(1000)), tlp_count=1), {"mtu": 1000},
                             DropReason.OVERSIZE),
}


@pytest.mark.parametrize("name", CRAFTED)
def test_crafted_frame_is_dropped_for_its_reason(name):
    frame, kwargs, reason = CRAFTED[name]
    assert reason_of(frame, **kwargs) == reason


def test_every_drop_reason_has_a_crafted_frame():
    """Every reason of the ``eth`` transport (the ``udp`` transport's own
    are crafted in tests/test_transport.py)."""
    assert {reason for _, _, reason in CRAFTED.values()} == \
        set(DropReason) - {DropReason.IP_HEADER, DropReason.NOT_OURS}


@pytest.mark.parametrize("frame, kwargs, reason", [
    (craft(payload=b"", tlp_count=0, ethertype=0x0800, version=3)[:43], {}, DropReason.TRUNCATED),
    (craft(payload=b"", tlp_count=0, ethertype=0x0800, version=3), {}, DropReason.ETHERTYPE),
    (craft(payload=b"", tlp_count=0, version=3, payload_length=500), {}, DropReason.VERSION),
    (craft(payload=prefixed(tlp(12)), tlp_count=1, payload_length=100, crc=0), {},
     DropReason.TRUNCATED),
    (craft(payload=prefixed(tlp(8)), tlp_count=5, crc=0), {}, DropReason.CRC),
    (craft(payload=prefixed(tlp(8)), tlp_count=5), {}, DropReason.PREFIX_OVERRUN),
    (craft(payload=prefixed(tlp(1000)), tlp_count=2), {"mtu": 100}, DropReason.COUNT_MISMATCH),
    (craft(payload=b"", tlp_count=0), {"mtu": 20}, DropReason.EMPTY_DATA),
], ids=["short>ethertype", "ethertype>version", "version>truncated", "truncated>crc",
        "crc>prefix", "prefix>count", "count>oversize", "empty>oversize"])
def test_first_failing_check_names_the_drop(frame, kwargs, reason):
    assert reason_of(frame, **kwargs) == reason


def test_frame_error_is_a_value_error_with_reason_and_message():
    with pytest.raises(ValueError, match="CRC: CRC 0x") as info:
        decode_frame(flip(GOOD, 50))
    assert isinstance(info.value, FrameError) and info.value.reason == DropReason.CRC


@pytest.mark.parametrize("frame_type", [t for t in FrameType if t != FrameType.DATA])
def test_non_data_frames_decode_with_no_tlps(frame_type):
    frame = encode_frame([], frame_type=frame_type, ack=77, flags=3,
                         credits={"credit_np_hdr": 12})
    decoded = decode_frame(pad_to_minimum(frame), mtu=1500)
    assert (decoded.frame_type, decoded.tlps, decoded.ack, decoded.credit_np_hdr) == \
        (frame_type, [], 77, 12)


@pytest.mark.parametrize("padding", [b"\x00", b"\xff", b"\x5a"])
def test_padded_frames_decode_and_padding_is_ignored(padding):
    frame = encode_frame([tlp(12)])
    assert len(frame) == 60
    short = encode_frame([], frame_type=FrameType.KEEPALIVE)
    padded = short + padding * (60 - len(short))
    assert decode_frame(padded).frame_type == FrameType.KEEPALIVE
    assert decode_frame(frame + padding * 8).tlps == [tlp(12)]


def test_a_custom_ethertype_round_trips():
    frame = encode_frame([tlp(12)], ethertype=0x88B6)
    assert decode_frame(frame, ethertype=0x88B6).ethertype == 0x88B6


FUZZ_FRAMES = {
    "two small TLPs": encode_frame([tlp(12, 0x00), tlp(20, 0xFF)], seq=3, ack=2, flags=1),
    "random TLPs at 1500": frames_for(random_tlps(np.random.default_rng(SEED), 8, 40),
                                      mtu=1500)[0],
    "ACK": encode_frame([], frame_type=FrameType.ACK, ack=12345, flags=1),
}


@pytest.mark.parametrize("name", FUZZ_FRAMES)
def test_any_single_bit_flip_after_the_mac_addresses_is_dropped(name):
    frame = FUZZ_FRAMES[name]
    decode_frame(frame)
    for byte in range(12, len(frame)):
        for bit in range(8):
            with pytest.raises(FrameError):
                decode_frame(flip(frame, byte, bit))


# --- overhead and efficiency ----------------------------------------------------

@pytest.mark.parametrize("mtu, size", [(1500, 12), (1500, 272), (9000, 1040), (9000, 4112)])
def test_wire_efficiency_matches_stats_of_a_full_frame_stream(mtu, size):
    per_frame = body_capacity(mtu) // (4 + size)
    frames = frames_for([tlp(size)] * per_frame * 5, mtu=mtu)
    stats = FrameStats.of(frames)
    assert (stats.frames, stats.tlps) == (5, per_frame * 5)
    assert stats.efficiency == pytest.approx(wire_efficiency(size, mtu))


def test_wire_efficiency_counts_preamble_fcs_ifg_and_padding():
    # One 12-byte TLP per 60-byte frame would be 12 / (60 + 4 + 8 + 12).
    frames = [encode_frame([tlp(12)])]
    assert FrameStats.of(frames).efficiency == pytest.approx(12 / 84)


@pytest.mark.parametrize("frame_type", list(FrameType))
def test_only_a_frame_that_is_not_a_keepalive_carries_credits(frame_type):
    """Flag bit 1 makes the credit fields limits, except in a KEEPALIVE,
    whose bytes there are its link-state fields (a peer that sets the flag
    there must not change our credits)."""
    for flags in (0, FLAG_CREDITS_VALID):
        frame = decode_frame(encode_frame([], frame_type=frame_type, flags=flags) if frame_type
                             else encode_frame([bytes(12)], flags=flags))
        want = bool(flags) and frame_type != FrameType.KEEPALIVE
        assert frame.carries_credits == want
