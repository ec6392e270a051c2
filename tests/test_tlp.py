"""The TLP model: encoding, decoding, rules and random generation."""

from dataclasses import replace

import numpy as np
import pytest

from tlpoe.models.tlp import (
    Attr, CplStatus, Fmt, MsgRouting, OrderingClass, PcieId, ReservedTypeError, Tlp,
    TlpError, TlpLengthError, TlpRuleError, TlpType, TruncatedTlpError, byte_enable_violation,
    byte_enables, iter_random_tlps, random_tlp, tlp_size_from_header,
)

ALL_TYPES = list(TlpType)
SEED = 20240917


def round_trip(tlp):
    """Pack, unpack, pack again: both directions must agree bit for bit."""
    raw = tlp.pack()
    back = Tlp.unpack(raw)
    assert back == tlp
    assert back.pack() == raw
    return raw


# ---------------------------------------------------------------- round trip

@pytest.mark.parametrize("tlp_type", ALL_TYPES, ids=str)
def test_round_trip_every_type(tlp_type):
    rng = np.random.default_rng(SEED)
    header_sizes = set()
    for _ in range(60):
        tlp = random_tlp(rng, types=[tlp_type])
        raw = round_trip(tlp)
        assert raw[0] >> 5 == tlp.fmt
        header_sizes.add(tlp.header_size)
    assert header_sizes == {4 * dws for dws in tlp_type.header_dws}


def test_round_trip_many_random_tlps():
    for tlp in iter_random_tlps(SEED, 3000, max_payload=512):
        raw = round_trip(tlp)
        assert len(raw) == tlp.size == tlp_size_from_header(raw[:4])


def test_random_tlps_cover_every_type_and_pass_the_rules():
    seen = set()
    for tlp in iter_random_tlps(SEED, 2000):
        tlp.validate()
        seen.add(tlp.type)
    assert seen == set(TlpType)


def test_random_tlps_repeat_for_a_seed():
    assert list(iter_random_tlps(7, 50)) == list(iter_random_tlps(7, 50))
    assert list(iter_random_tlps(7, 50)) != list(iter_random_tlps(8, 50))


def test_random_payload_respects_max_payload():
    for tlp in iter_random_tlps(SEED, 500, max_payload=64,
                                types=[TlpType.MWr, TlpType.CplD, TlpType.MsgD]):
        assert 4 <= len(tlp.data) <= 64


# ---------------------------------------------------------------- golden vectors

# Header bytes copied from shared/captures (simple-nic-ping.pcap packet 1,
# p4600-write-1blk.pcap packet 1): decoded independently of our packer.
NIC_MRD = bytes.fromhex("00000004" "1b0003ff" "2f001000")
P4600_CPLD_HEADER = bytes.fromhex("4a002040" "1b000200" "19000000")


def test_golden_memory_read():
    tlp = Tlp.unpack(NIC_MRD)
    assert (tlp.type, tlp.length, str(tlp.requester_id), tlp.tag) == (TlpType.MRd, 4, "1b:00.0", 3)
    assert (tlp.first_be, tlp.last_be, tlp.address, tlp.addr64) == (0xF, 0xF, 0x2F001000, False)
    assert tlp.pack() == NIC_MRD


def test_golden_completion_header():
    tlp = Tlp.unpack(P4600_CPLD_HEADER + bytes(256))
    assert tlp.type is TlpType.CplD and tlp.length == 64 and tlp.attr == Attr.RO
    assert (str(tlp.completer_id), str(tlp.requester_id)) == ("1b:00.0", "19:00.0")
    assert (tlp.status, tlp.bcm, tlp.byte_count, tlp.lower_address) == (
        CplStatus.SC, False, 512, 0)


@pytest.mark.parametrize("tlp_type, addr64, first_byte", [
    (TlpType.MRd, False, 0x00), (TlpType.MRd, True, 0x20), (TlpType.MRdLk, False, 0x01),
    (TlpType.MWr, False, 0x40), (TlpType.MWr, True, 0x60), (TlpType.IORd, False, 0x02),
    (TlpType.IOWr, False, 0x42), (TlpType.CfgRd0, False, 0x04), (TlpType.CfgWr0, False, 0x44),
    (TlpType.CfgRd1, False, 0x05), (TlpType.CfgWr1, False, 0x45), (TlpType.Cpl, False, 0x0A),
    (TlpType.CplD, False, 0x4A), (TlpType.CplLk, False, 0x0B), (TlpType.CplDLk, False, 0x4B),
    (TlpType.FetchAdd, False, 0x4C), (TlpType.Swap, True, 0x6D), (TlpType.CAS, False, 0x4E),
    (TlpType.Msg, True, 0x30), (TlpType.MsgD, True, 0x70),
])
def test_fmt_type_byte(tlp_type, addr64, first_byte):
    rng = np.random.default_rng(SEED)
    while True:
        tlp = random_tlp(rng, types=[tlp_type])
        if tlp.addr64 == addr64:
            break
    if tlp_type.is_message:
        tlp.routing = MsgRouting.TO_ROOT_COMPLEX
    assert tlp.pack()[0] == first_byte


@pytest.mark.parametrize("routing", list(MsgRouting))
def test_message_routing_is_type_low_bits(routing):
    msg = Tlp.message(0x20, routing=routing)
    assert msg.pack()[0] == 0x30 | routing
    assert Tlp.unpack(msg.pack()).routing is routing
    assert Tlp.message(0x7F, routing=routing, data=bytes(8)).pack()[0] == 0x70 | routing


def test_config_header_fields():
    tlp = Tlp.cfg_read(PcieId(1, 2, 3), 0x3FF, requester_id=PcieId(0, 0, 0), tag=5)
    raw = round_trip(tlp)
    assert raw[8:12] == bytes([0x01, 0x13, 0x0F, 0xFC])   # bus, dev<<3|fn, ext reg, reg<<2
    assert tlp.register_offset == 0xFFC


def test_completion_byte_count_4096_is_encoded_as_zero():
    cpl = Tlp.completion(requester_id=1, tag=1, completer_id=2, byte_count=4096)
    raw = round_trip(cpl)
    assert raw[6] & 0x0F == 0 and raw[7] == 0


def test_length_1024_is_encoded_as_zero():
    tlp = Tlp.mem_write(0x1000, bytes(4096))
    raw = round_trip(tlp)
    assert tlp.length == 1024 and raw[2] & 0x3 == 0 and raw[3] == 0


def test_four_dw_header_for_addresses_above_4g():
    tlp = Tlp.mem_read(0x1_2345_6780, 8)
    raw = round_trip(tlp)
    assert tlp.fmt is Fmt.FOUR_DW and raw[8:16] == bytes.fromhex("0000000123456780")


def test_attributes_and_header_flags_bits():
    tlp = Tlp.mem_read(0x100, 4, attr=Attr.IDO | Attr.RO | Attr.NS, tc=5, th=True, ph=2,
                       ep=True, at=2, digest=b"\x01\x02\x03\x04")
    raw = round_trip(tlp)
    assert raw[1] == 0b0101_0101             # TC=101, Attr[2] (IDO) bit 2, TH bit 0
    assert raw[2] == 0b1111_1000             # TD, EP, Attr[1:0] = RO,NS, AT=10
    assert raw[11] & 0x3 == 2 and raw[-4:] == b"\x01\x02\x03\x04"
    assert tlp.ro and tlp.ns and tlp.ido and tlp.td


# ---------------------------------------------------------------- 10-bit tags

@pytest.mark.parametrize("tag, byte1, tag_byte", [
    (0x0FF, 0x00, 0xFF), (0x100, 0x08, 0x00), (0x200, 0x80, 0x00), (0x3A5, 0x88, 0xA5),
])
def test_ten_bit_tag_bits(tag, byte1, tag_byte):
    request = Tlp.mem_read(0x1000, 4, tag=tag)
    cpl = Tlp.completion(requester_id=0, tag=tag, completer_id=0, data=bytes(4))
    assert request.pack()[1] == byte1 and request.pack()[6] == tag_byte
    assert cpl.pack()[1] == byte1 and cpl.pack()[10] == tag_byte


def test_ten_bit_tag_leaves_traffic_class_alone():
    raw = Tlp.mem_read(0x1000, 4, tag=0x300, tc=7).pack()
    assert raw[1] == 0xF8                    # T9, TC=111, T8


def test_every_ten_bit_tag_round_trips():
    for tag in range(1024):
        assert Tlp.unpack(Tlp.mem_read(0, 4, tag=tag).pack()).tag == tag
        cpl = Tlp.completion(requester_id=3, tag=tag, completer_id=4)
        assert Tlp.unpack(cpl.pack()).tag == tag


# ---------------------------------------------------------------- ordering class

ORDERING = {
    OrderingClass.POSTED: {TlpType.MWr, TlpType.Msg, TlpType.MsgD},
    OrderingClass.NON_POSTED: {
        TlpType.MRd, TlpType.MRdLk, TlpType.IORd, TlpType.IOWr, TlpType.CfgRd0,
        TlpType.CfgWr0, TlpType.CfgRd1, TlpType.CfgWr1, TlpType.FetchAdd, TlpType.Swap,
        TlpType.CAS},
    OrderingClass.COMPLETION: {TlpType.Cpl, TlpType.CplD, TlpType.CplLk, TlpType.CplDLk},
}


@pytest.mark.parametrize("tlp_type", ALL_TYPES, ids=str)
def test_ordering_class_of_every_type(tlp_type):
    expected = next(cls for cls, types in ORDERING.items() if tlp_type in types)
    tlp = random_tlp(np.random.default_rng(SEED), types=[tlp_type])
    assert tlp.ordering_class is expected


def test_type_names_are_spec_mnemonics():
    assert [str(t) for t in TlpType] == [
        "MRd", "MRdLk", "MWr", "IORd", "IOWr", "CfgRd0", "CfgWr0", "CfgRd1", "CfgWr1",
        "Msg", "MsgD", "Cpl", "CplD", "CplLk", "CplDLk", "FetchAdd", "Swap", "CAS"]


# ---------------------------------------------------------------- size from header

@pytest.mark.parametrize("tlp, size", [
    (Tlp.mem_read(0x1000, 512), 12),
    (Tlp.mem_read(0x1_0000_0000, 4), 16),
    (Tlp.mem_write(0x1000, bytes(4)), 16),
    (Tlp.mem_write(0x1_0000_0000, bytes(4096)), 16 + 4096),
    (Tlp.completion(requester_id=0, tag=0, completer_id=0, data=bytes(16), digest=bytes(4)), 32),
    (Tlp.completion(requester_id=0, tag=0, completer_id=0), 12),
    (Tlp.message(0x19), 16),
    (Tlp.atomic(TlpType.CAS, 0x1000, bytes(32)), 44),
], ids=lambda v: str(v) if isinstance(v, int) else str(v.type))
def test_size_from_header(tlp, size):
    raw = tlp.pack()
    assert len(raw) == size == tlp_size_from_header(raw[:4])


def test_size_from_header_needs_four_bytes():
    with pytest.raises(TruncatedTlpError):
        tlp_size_from_header(b"\x40\x00\x00")


def test_size_from_header_rejects_prefix():
    with pytest.raises(ReservedTypeError):
        tlp_size_from_header(b"\x90\x00\x00\x01")


# ---------------------------------------------------------------- malformed input

def _with_first_byte(raw, first):
    return bytes([first]) + raw[1:]


@pytest.mark.parametrize("first_byte", [
    0x03,        # Type 00011b is reserved
    0x1B,        # TCfgRd, deprecated: reserved here
    0x22,        # IORd with a 4-DW header
    0x24,        # CfgRd0 with a 4-DW header
    0x2A,        # Cpl with a 4-DW header
    0x10,        # Msg with a 3-DW header
    0x36, 0x37,  # Msg routing r = 110b, 111b
    0x8E,        # Fmt 100b: TLP prefix
    0xA0, 0xE0,  # Fmt 101b, 111b
])
def test_reserved_fmt_type_raises(first_byte):
    raw = _with_first_byte(Tlp.mem_read(0, 4).pack() + bytes(4), first_byte)
    with pytest.raises(ReservedTypeError, match="Fmt"):
        Tlp.unpack(raw)


@pytest.mark.parametrize("raw, what", [
    (b"", "first DW"),
    (b"\x00\x00\x00", "first DW"),
    (NIC_MRD[:11], "12-byte header"),
    (Tlp.mem_read(0x1_0000_0000, 4).pack()[:12], "16-byte header"),
    (Tlp.mem_write(0, bytes(8)).pack()[:-1], "needs 20 bytes"),
    (Tlp.mem_write(0, bytes(8), digest=bytes(4)).pack()[:-4], "needs 24 bytes"),
])
def test_truncated_tlp_raises(raw, what):
    with pytest.raises(TruncatedTlpError, match=what):
        Tlp.unpack(raw)


def test_truncated_payload_kept_when_allowed():
    raw = Tlp.mem_write(0, bytes(range(64))).pack()
    tlp = Tlp.unpack(raw[:40], allow_truncated=True)
    assert tlp.truncated and tlp.length == 16 and tlp.data == bytes(range(28))
    with pytest.raises(TlpLengthError):
        tlp.pack()


@pytest.mark.parametrize("raw", [
    NIC_MRD + bytes(4),
    Tlp.mem_write(0, bytes(8)).pack() + b"\x00",
    Tlp.completion(requester_id=0, tag=0, completer_id=0).pack() + bytes(4),
])
def test_trailing_bytes_raise(raw):
    with pytest.raises(TlpLengthError, match="more"):
        Tlp.unpack(raw)


@pytest.mark.parametrize("tlp, field", [
    (Tlp.mem_read(0, 4, tag=1024), "tag"),
    (Tlp.mem_read(0, 4, tc=8), "tc"),
    (Tlp.mem_read(0, 4, at=4), "at"),
    (Tlp(TlpType.MRd, length=1025), "length"),
    (Tlp(TlpType.MRd, length=0), "length"),
    (Tlp(TlpType.MWr, length=2, data=bytes(4)), "payload"),
    (Tlp(TlpType.MWr, data=bytes(3)), "payload"),
    (Tlp(TlpType.MRd, address=0x1002), "aligned"),
    (Tlp(TlpType.MRd, address=1 << 32, addr64=False), "4-DW"),
    (Tlp(TlpType.CfgRd0, addr64=True), "4-DW"),
    (Tlp(TlpType.CfgRd0, register=1024), "register"),
    (Tlp(TlpType.Cpl, byte_count=4097), "byte_count"),
    (Tlp(TlpType.Cpl, byte_count=0), "byte_count"),
    (Tlp(TlpType.Cpl, lower_address=128), "lower_address"),
    (Tlp(TlpType.Msg, message_code=256), "message_code"),
    (Tlp(TlpType.MRd, first_be=16), "first_be"),
    (Tlp(TlpType.MRd, digest=bytes(3)), "digest"),
    (Tlp(TlpType.MRd, td=True), "digest"),
], ids=lambda v: v if isinstance(v, str) else str(v.type))
def test_field_out_of_range_on_pack(tlp, field):
    with pytest.raises(TlpLengthError, match=field):
        tlp.pack()


def test_every_tlp_error_is_a_value_error():
    for exc in (ReservedTypeError, TruncatedTlpError, TlpLengthError, TlpRuleError):
        assert issubclass(exc, TlpError) and issubclass(exc, ValueError)


# ---------------------------------------------------------------- byte enables

@pytest.mark.parametrize("address, nbytes, expected", [
    (0x1000, 4, (0xF, 0x0, 1)),
    (0x1001, 2, (0b0110, 0x0, 1)),
    (0x1003, 2, (0b1000, 0b0001, 2)),
    (0x1000, 98, (0xF, 0b0011, 25)),     # the simple-nic ICMP frame read
    (0x1002, 8, (0b1100, 0b0011, 3)),
    (0x1000, 0, (0x0, 0x0, 1)),          # zero-length read
])
def test_byte_enables_from_address_and_size(address, nbytes, expected):
    assert byte_enables(address, nbytes) == expected
    first_be, last_be, length = expected
    assert byte_enable_violation(length, first_be, last_be, address) is None


@pytest.mark.parametrize("length, first_be, last_be, address, why", [
    (1, 0xF, 0x1, 0, "Last DW BE must be 0000b"),
    (2, 0x0, 0xF, 0, "must not be 0000b"),
    (3, 0xF, 0x0, 0, "must not be 0000b"),
    (3, 0b0101, 0xF, 0, "First DW BE 0101b is not contiguous"),
    (3, 0xF, 0b1010, 0, "Last DW BE 1010b is not contiguous"),
    (2, 0b0101, 0b1010, 4, "not contiguous"),       # 2 DW but not QW aligned
])
def test_byte_enable_rules_broken(length, first_be, last_be, address, why):
    assert why in byte_enable_violation(length, first_be, last_be, address)
    request = Tlp(TlpType.MRd, length=length, first_be=first_be, last_be=last_be,
                  address=0x1000 + address)
    with pytest.raises(TlpRuleError, match="BE"):
        request.validate()


@pytest.mark.parametrize("length, first_be, last_be, address", [
    (1, 0b0101, 0, 0),          # 1 DW: any First DW BE
    (1, 0b0000, 0, 0),          # zero-length access
    (2, 0b0101, 0b1010, 8),     # QW-aligned 2 DW: non-contiguous allowed
])
def test_byte_enable_rules_allowed(length, first_be, last_be, address):
    assert byte_enable_violation(length, first_be, last_be, address) is None


def test_mem_write_pads_to_dwords_with_disabled_bytes():
    tlp = Tlp.mem_write(0x2001, b"\xaa\xbb\xcc\xdd\xee")
    assert (tlp.address, tlp.length, tlp.first_be, tlp.last_be) == (0x2000, 2, 0b1110, 0b0011)
    assert tlp.data == b"\x00\xaa\xbb\xcc\xdd\xee\x00\x00"


# ---------------------------------------------------------------- other usage rules

@pytest.mark.parametrize("tlp, why", [
    (Tlp.mem_read(0xFFC, 8), "4 KB"),
    (Tlp(TlpType.IORd, length=2, first_be=0xF, last_be=0xF), "1 DW"),
    (Tlp.cfg_read(PcieId(1, 0, 0), 0, tc=1), "TC0"),
    (Tlp.atomic(TlpType.FetchAdd, 0x1000, bytes(16)), "operand"),
    (Tlp.atomic(TlpType.CAS, 0x1004, bytes(16)), "aligned"),
    (Tlp(TlpType.Msg, length=1), "Length 0"),
])
def test_usage_rules_broken(tlp, why):
    tlp.pack()                              # well encoded all the same
    with pytest.raises(TlpRuleError, match=why):
        tlp.validate()


# ---------------------------------------------------------------- constructors

def test_completion_for_a_read_reports_byte_count_and_lower_address():
    request = Tlp.mem_read(0x2F001003, 98, requester_id=PcieId(0x1B, 0, 0), tag=0x2A5,
                           tc=3, attr=Attr.RO | Attr.NS)
    cpl = Tlp.completion_for(request, completer_id=PcieId(0, 0, 0),
                             data=bytes(4 * request.length))
    assert cpl.type is TlpType.CplD and cpl.ordering_class is OrderingClass.COMPLETION
    assert (cpl.byte_count, cpl.lower_address) == (98, 0x03)
    assert (cpl.requester_id, cpl.tag, cpl.tc) == (request.requester_id, 0x2A5, 3)
    assert cpl.attr == Attr.RO              # No Snoop is not copied to a completion
    round_trip(cpl)


def test_completion_for_a_locked_read_is_locked():
    cpl = Tlp.completion_for(Tlp.mem_read(0, 4, locked=True), completer_id=1, data=bytes(4))
    assert cpl.type is TlpType.CplDLk


def test_completion_for_a_config_write_has_no_data():
    cpl = Tlp.completion_for(Tlp.cfg_write(PcieId(2, 0, 0), 4, bytes(4)), completer_id=0x200)
    assert cpl.type is TlpType.Cpl and cpl.byte_count == 4


def test_completion_for_a_posted_request_is_refused():
    with pytest.raises(ValueError):
        Tlp.completion_for(Tlp.mem_write(0, bytes(4)), completer_id=0)


def test_pcie_id_text_and_int():
    pid = PcieId.parse("1b:00.0")
    assert (int(pid), str(pid)) == (0x1B00, "1b:00.0")
    assert PcieId.from_int(0x1B0B) == PcieId(0x1B, 1, 3)
    with pytest.raises(ValueError):
        PcieId(0, 32, 0)


def test_replace_keeps_derived_fields_consistent():
    tlp = Tlp.mem_write(0x1000, bytes(8))
    bigger = replace(tlp, data=bytes(16), length=None)
    assert bigger.length == 4
    round_trip(bigger)
