"""The NetTLP pcap reader: the real captures, and synthetic files for every
format variant and every way a file can be bad."""

import io
import struct
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest

from tlpoe.models.pcap import (MAX_RECORD_LEN, PacketError, PcapError, PcapWriter, iter_nettlp,
                               read_nettlp, read_pcap, write_pcap)
from tlpoe.models.tlp import PcieId, Tlp, TlpType

CAPTURES = Path(__file__).resolve().parents[1].parent / "shared" / "captures"
CAPTURE_FILES = sorted(CAPTURES.glob("*.pcap")) if CAPTURES.is_dir() else []
needs_captures = pytest.mark.skipif(
    not CAPTURE_FILES, reason=f"NetTLP captures not found in {CAPTURES}")


# ---------------------------------------------------------------- synthetic captures

def ethernet_ipv4_udp(tlp_bytes, *, vlan=False, ip_options=b"", seq=1, nettlp_ts=2,
                      port=0x3000, protocol=17, ethertype=0x0800):
    """One NetTLP frame around ``tlp_bytes``, padded to the Ethernet minimum."""
    udp_payload = struct.pack("!HI", seq, nettlp_ts) + tlp_bytes
    udp = struct.pack("!HHHH", port, port, 8 + len(udp_payload), 0) + udp_payload
    ihl = 5 + len(ip_options) // 4
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(udp), 0, 0x4000, 64,
                     protocol, 0, bytes([192, 168, 10, 1]), bytes([192, 168, 10, 3]))
    tag = struct.pack("!HH", 0x8100, 100) if vlan else b""
    frame = bytes(6) + bytes.fromhex("001122334455") + tag + struct.pack("!H", ethertype)
    frame += ip + ip_options + udp
    return frame.ljust(60, b"\0")


def pcap_file(frames, *, nanosecond=True, order="<", snaplen=None, times=None):
    """Bytes of a classic pcap holding ``frames`` (cut to ``snaplen``)."""
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen or 65535, 1)
    for i, frame in enumerate(frames):
        sec, frac = times[i] if times else (1_600_000_000 + i, 123)
        captured = frame[:snaplen] if snaplen else frame
        out += struct.pack(order + "IIII", sec, frac, len(captured), len(frame)) + captured
    return out


def read_all(data):
    return list(read_nettlp(io.BytesIO(data)))


def with_fmt(tlp_bytes, fmt):
    """``tlp_bytes`` with its Fmt field (byte 0, bits 7:5) set to ``fmt``."""
    return bytes([fmt << 5 | tlp_bytes[0] & 0x1F]) + tlp_bytes[1:]


def record_header(caplen, wire_length=None, order="<"):
    """A 16-byte pcap record header claiming ``caplen`` captured bytes."""
    return struct.pack(order + "IIII", 1_600_000_000, 0, caplen, wire_length or caplen)


SAMPLE_TLPS = [
    Tlp.mem_write(0xFEE1A000, b"\x22\x40\x00\x00", requester_id=PcieId(0x1B, 0, 0), tag=3),
    Tlp.mem_read(0x1_0000_1000, 512, tag=0x3FF, digest=b"\xde\xad\xbe\xef"),
    Tlp.completion(requester_id=0x1B00, tag=7, completer_id=0x100, data=bytes(range(32))),
    Tlp.cfg_read(PcieId(2, 0, 1), 0x10),
]


# ---------------------------------------------------------------- real captures

@needs_captures
@pytest.mark.parametrize("path", CAPTURE_FILES, ids=lambda p: p.name)
def test_every_packet_of_every_capture_decodes(path):
    records = list(read_nettlp(path))
    assert records and [r.index for r in records] == list(range(len(records)))
    for record in records:
        assert record.src_port == record.dst_port == 0x3000 + (record.tlp.tag & 0xF)
        if not record.truncated:
            assert record.tlp.pack() == record.tlp_bytes      # bit-exact


@needs_captures
@pytest.mark.parametrize("path", [p for p in CAPTURE_FILES if p.name.startswith("p4600")],
                         ids=lambda p: p.name)
def test_p4600_payloads_are_flagged_truncated_not_invented(path):
    records = list(read_nettlp(path))
    with_data = [r for r in records if r.tlp.type.has_data]
    assert with_data and all(r.truncated and r.tlp.truncated for r in with_data)
    for record in with_data:
        tlp = record.tlp
        assert tlp.data == record.tlp_bytes[tlp.header_size:]
        assert len(tlp.data) < 4 * tlp.length
        # The header is whole: it re-encodes to the captured header bytes.
        whole = replace(tlp, data=tlp.data.ljust(4 * tlp.length, b"\0"))
        assert whole.pack()[:tlp.header_size] == record.tlp_bytes[:tlp.header_size]
    assert not any(r.truncated for r in records if not r.tlp.type.has_data)


@needs_captures
def test_p4600_write_completions_split_a_512_byte_read():
    records = list(read_nettlp(CAPTURES / "p4600-write-1blk.pcap"))
    read, first, second = (r.tlp for r in records)
    assert (read.type, read.length, str(read.requester_id)) == (TlpType.MRd, 128, "19:00.0")
    assert [(c.type, c.length, c.byte_count) for c in (first, second)] == [
        (TlpType.CplD, 64, 512), (TlpType.CplD, 64, 256)]
    assert str(first.completer_id) == "1b:00.0" and first.requester_id == read.requester_id


@needs_captures
def test_microsecond_capture_timestamps_in_nanoseconds():
    records = list(read_nettlp(CAPTURES / "simple-nic-ping.pcap"))
    assert records[0].timestamp_ns == 1568818308_210015000
    assert all(r.timestamp_ns % 1000 == 0 for r in records)
    assert not any(r.truncated for r in records)


@needs_captures
def test_nanosecond_capture_timestamp():
    first = next(read_nettlp(CAPTURES / "p4600-read-1blk.pcap"))
    assert first.timestamp_ns == 0x5D3462A5 * 10**9 + 0x107D944F
    assert (first.seq, first.nettlp_timestamp) == (0x0317, 0x1FE64C7B)


@needs_captures
def test_capture_cut_short_raises_with_packet_index(tmp_path):
    data = (CAPTURES / "p4600-read-8blk.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:500])
    with pytest.raises(PcapError, match="packet 3"):
        list(read_nettlp(cut))


# ---------------------------------------------------------------- format variants

@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("nanosecond", [True, False], ids=["ns", "us"])
def test_both_magics_in_both_byte_orders(order, nanosecond):
    frames = [ethernet_ipv4_udp(t.pack()) for t in SAMPLE_TLPS]
    data = pcap_file(frames, nanosecond=nanosecond, order=order, times=[(5, 7)] * 4)
    records = read_all(data)
    assert [r.tlp for r in records] == SAMPLE_TLPS
    assert {r.timestamp_ns for r in records} == {5 * 10**9 + (7 if nanosecond else 7000)}


def test_vlan_tag_and_ip_options_are_skipped():
    frames = [ethernet_ipv4_udp(t.pack(), vlan=True, ip_options=bytes(8), seq=9)
              for t in SAMPLE_TLPS]
    records = read_all(pcap_file(frames))
    assert [r.tlp for r in records] == SAMPLE_TLPS and {r.seq for r in records} == {9}


def test_ethernet_padding_is_not_taken_for_tlp_bytes():
    cpl = Tlp.completion(requester_id=1, tag=2, completer_id=3)   # 46-byte frame, padded
    (record,) = read_all(pcap_file([ethernet_ipv4_udp(cpl.pack())]))
    assert record.tlp == cpl and record.tlp_bytes == cpl.pack()


def test_snaplen_cut_payload_is_flagged_and_kept():
    tlp = Tlp.mem_write(0x1000, bytes(range(200)))
    (record,) = read_all(pcap_file([ethernet_ipv4_udp(tlp.pack())], snaplen=128))
    assert record.truncated and record.tlp.truncated
    assert record.tlp.length == 50 and record.tlp.data == bytes(range(128 - 14 - 20 - 8 - 6 - 12))


def test_cut_digest_is_flagged():
    tlp = Tlp.mem_write(0x1000, bytes(16), digest=b"\x01\x02\x03\x04")
    frame = ethernet_ipv4_udp(tlp.pack())
    (record,) = read_all(pcap_file([frame], snaplen=14 + 20 + 8 + 6 + 12 + 16 + 2))
    assert record.truncated and record.tlp.td and record.tlp.digest is None


def test_read_pcap_gives_raw_records():
    frames = [ethernet_ipv4_udp(t.pack()) for t in SAMPLE_TLPS]
    packets = list(read_pcap(io.BytesIO(pcap_file(frames, snaplen=70))))
    assert [p.index for p in packets] == [0, 1, 2, 3]
    assert all(len(p.data) <= 70 for p in packets)
    assert [p.truncated for p in packets] == [False, False, True, False]


# ---------------------------------------------------------------- bad files

GOOD = pcap_file([ethernet_ipv4_udp(t.pack()) for t in SAMPLE_TLPS])


@pytest.mark.parametrize("data, why", [
    (b"", "not a pcap file"),
    (b"\x00\x01\x02\x03" + GOOD[4:], "bad magic"),
    (b"\x0a\x0d\x0d\x0a" + GOOD[4:], "pcapng"),
    (GOOD[:20], "global header"),
    (GOOD[:20] + b"\x71\x00\x00\x00" + GOOD[24:], "link type 113"),
    (GOOD[:24 + 10], "packet 0: truncated record header"),
    (GOOD[:-5], "packet 3: record of"),
])
def test_bad_file_raises_pcap_error(data, why):
    with pytest.raises(PcapError, match=why):
        read_all(data)


@pytest.mark.parametrize("frame, why", [
    (ethernet_ipv4_udp(SAMPLE_TLPS[0].pack(), ethertype=0x86DD), "EtherType 0x86dd is not IPv4"),
    (ethernet_ipv4_udp(SAMPLE_TLPS[0].pack(), protocol=6), "IP protocol 6 is not UDP"),
    (ethernet_ipv4_udp(b"\x03" + SAMPLE_TLPS[0].pack()[1:]), "ReservedTypeError"),
    (ethernet_ipv4_udp(SAMPLE_TLPS[0].pack() + bytes(4)), "TlpLengthError"),
    (ethernet_ipv4_udp(SAMPLE_TLPS[0].pack()[:-4]), "TruncatedTlpError"),
    (bytes(6) + bytes(6) + b"\x08\x00" + b"\x45\x00", "inside the IPv4 header"),
])
def test_bad_packet_raises_pcap_error_naming_it(frame, why):
    frames = [ethernet_ipv4_udp(SAMPLE_TLPS[0].pack()), frame]
    with pytest.raises(PcapError, match=f"packet 1: .*{why}"):
        read_all(pcap_file(frames))


def test_iter_nettlp_yields_a_bad_packet_and_goes_on():
    frames = [ethernet_ipv4_udp(t.pack(), seq=i) for i, t in enumerate(SAMPLE_TLPS)]
    frames.insert(2, ethernet_ipv4_udp(with_fmt(SAMPLE_TLPS[0].pack(), 0b101), seq=99))
    items = list(iter_nettlp(io.BytesIO(pcap_file(frames))))
    assert [type(i).__name__ for i in items] == ["NetTlpRecord"] * 2 + ["PacketError"] + [
        "NetTlpRecord"] * 2
    assert items[2].index == 2 and "reserved Fmt 101b" in str(items[2])
    assert [r.tlp for r in items if not isinstance(r, PacketError)] == SAMPLE_TLPS


def test_iter_nettlp_raises_a_file_error():
    with pytest.raises(PcapError, match="packet 3: record of"):
        list(iter_nettlp(io.BytesIO(GOOD[:-5])))


def huge_record_file(path):
    """A capture of one good packet then a record header claiming 0x7fffffff
    captured bytes, followed by a few bytes only.  A real file, not BytesIO:
    a buffered file's read(n) allocates n bytes up front, BytesIO's does not."""
    good = pcap_file([ethernet_ipv4_udp(SAMPLE_TLPS[0].pack())], snaplen=MAX_RECORD_LEN)
    path.write_bytes(good + record_header(0x7FFFFFFF) + bytes(100))
    return path


def test_oversized_record_is_refused_before_reading(tmp_path):
    path = huge_record_file(tmp_path / "huge.pcap")
    packets = read_pcap(path)
    assert next(packets).index == 0                    # the packet before it is read
    with pytest.raises(PcapError, match=f"packet 1: .*2147483647 .*maximum of {MAX_RECORD_LEN}"):
        next(packets)


def test_oversized_record_allocates_nothing_large(tmp_path):
    path = huge_record_file(tmp_path / "huge.pcap")
    tracemalloc.start()
    try:
        with pytest.raises(PcapError):
            list(read_pcap(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20


def test_record_longer_than_the_snaplen_is_refused():
    frames = [ethernet_ipv4_udp(t.pack()) for t in SAMPLE_TLPS[:2]]
    data = pcap_file(frames, snaplen=128) + record_header(200) + bytes(200)
    with pytest.raises(PcapError, match="packet 2: .*200 captured bytes.*snaplen of 128"):
        read_all(data)


def test_snaplen_zero_sets_no_limit_below_the_maximum():
    big = ethernet_ipv4_udp(Tlp.mem_write(0x1000, bytes(4096)).pack())
    data = bytearray(pcap_file([big]))
    data[16:20] = bytes(4)                              # snaplen 0, as some writers leave it
    (record,) = read_all(bytes(data))
    assert not record.truncated and len(record.tlp.data) == 4096


def test_pcap_error_is_one_line_value_error():
    with pytest.raises(ValueError) as info:
        read_all(GOOD[:-5])
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- the writer

WRITE_TIMES = [0, 1, 999_999_999, 1_000_000_000, 1_000_000_001, 123_456_789_012,
               (2**32 - 1) * 1_000_000_000 + 999_999_999]


def test_written_pcap_reads_back_exact_to_the_nanosecond(tmp_path):
    frames = [bytes([i]) * (60 + i) for i in range(len(WRITE_TIMES))]
    path = tmp_path / "sub" / "dir" / "link.pcap"         # folders are created
    assert write_pcap(path, zip(WRITE_TIMES, frames)) == len(frames)
    packets = list(read_pcap(path))
    assert [p.timestamp_ns for p in packets] == WRITE_TIMES
    assert [p.data for p in packets] == frames
    assert [p.index for p in packets] == list(range(len(frames)))
    assert not any(p.truncated for p in packets)


def test_writer_header_is_nanosecond_little_endian_ethernet():
    out = io.BytesIO()
    with PcapWriter(out) as writer:
        writer.write(5_000_000_007, b"\xaa" * 64)
    magic, major, minor, zone, sigfigs, snaplen, linktype = struct.unpack("<IHHiIII", out.getvalue()[:24])
    assert (magic, major, minor, linktype) == (0xA1B23C4D, 2, 4, 1)
    assert struct.unpack("<IIII", out.getvalue()[24:40]) == (5, 7, 64, 64)


def test_writer_cuts_packets_to_snaplen_and_keeps_the_wire_length():
    out = io.BytesIO()
    with PcapWriter(out, snaplen=100) as writer:
        writer.write(1, bytes(range(150)))
        writer.write(2, bytes(100))
    first, second = read_pcap(io.BytesIO(out.getvalue()))
    assert (first.data, first.wire_length, first.truncated) == (bytes(range(100)), 150, True)
    assert (len(second.data), second.truncated) == (100, False)


def test_writer_file_is_readable_before_close(tmp_path):
    path = tmp_path / "open.pcap"
    writer = PcapWriter(path)
    writer.write(10, b"\x01" * 60)
    assert [p.timestamp_ns for p in read_pcap(path)] == [10]
    writer.close()


@pytest.mark.parametrize("timestamp", [-1, 2**32 * 1_000_000_000, 1.0, "1"])
def test_writer_rejects_a_timestamp_it_cannot_store(timestamp):
    with pytest.raises(ValueError, match="timestamp_ns"):
        PcapWriter(io.BytesIO()).write(timestamp, b"\0" * 60)
