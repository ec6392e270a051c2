"""`tlpoe dump`: text and JSON decodes of the NetTLP captures, and its errors."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
# The synthetic-capture builders of the reader's tests (tests/ is on sys.path).
from test_pcap import SAMPLE_TLPS, ethernet_ipv4_udp, pcap_file, record_header, with_fmt

from tlpoe.models.pcap import MAX_RECORD_LEN, read_nettlp, read_pcap
from tlpoe.sim.cli import main

CAPTURES = Path(__file__).resolve().parents[1].parent / "shared" / "captures"
CAPTURE_FILES = sorted(CAPTURES.glob("*.pcap")) if CAPTURES.is_dir() else []
needs_captures = pytest.mark.skipif(
    not CAPTURE_FILES, reason=f"NetTLP captures not found in {CAPTURES}")
NIC_PING = CAPTURES / "simple-nic-ping.pcap"
PCIE_ID = re.compile(r"^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


def dump_json(capsys, path):
    assert main(["dump", "--json", str(path)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def check_one_line_error(capsys, argv, *, decoded_before=0):
    """Exit status 2, one line on stderr, and ``decoded_before`` TLPs listed
    before the error was met."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == decoded_before
    assert len(captured.err.splitlines()) == 1 and "error" in captured.err
    return captured.err


# ---------------------------------------------------------------- every capture

@needs_captures
@pytest.mark.parametrize("path", CAPTURE_FILES, ids=lambda p: p.name)
def test_json_decodes_every_packet(capsys, path):
    rows = dump_json(capsys, path)
    assert len(rows) == len(list(read_nettlp(path)))
    for row in rows:
        assert {"type", "length", "requester", "tag", "timestamp_ns", "truncated"} <= row.keys()
        assert PCIE_ID.match(row["requester"])
        if row["type"].startswith("Cpl"):
            assert PCIE_ID.match(row["completer"])
            assert {"status", "byte_count", "lower_address"} <= row.keys()
        else:
            assert {"address", "first_be", "last_be"} <= row.keys()


@needs_captures
@pytest.mark.parametrize("path", CAPTURE_FILES, ids=lambda p: p.name)
def test_text_dump_one_line_per_tlp(capsys, path):
    assert main(["dump", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    records = list(read_nettlp(path))
    assert len(lines) == len(records)
    for line, record in zip(lines, records):
        assert f" {record.tlp.type}" in line
        assert line.endswith("[truncated]") == record.truncated


# ---------------------------------------------------------------- simple-nic-ping, as published

@pytest.fixture
def nic(capsys):
    if not NIC_PING.exists():
        pytest.skip(f"{NIC_PING} not found")
    return dump_json(capsys, NIC_PING)


def test_nic_tx_tail_doorbell(nic):
    row = nic[0]
    assert (row["type"], row["length"], row["tag"], row["address"]) == ("MWr", 1, 0x03, 0xA0000010)


def test_nic_descriptor_read(nic):
    row = nic[1]
    assert (row["type"], row["length"], row["requester"]) == ("MRd", 4, "1b:00.0")
    assert (row["tag"], row["address"]) == (0x03, 0x2F001000)


def test_nic_descriptor_completion(nic):
    row = nic[2]
    assert (row["type"], row["length"], row["byte_count"]) == ("CplD", 4, 16)
    assert (row["requester"], row["tag"], row["status"]) == ("1b:00.0", 0x03, "SC")


def test_nic_packet_read_of_98_bytes(nic):
    row = nic[3]
    assert (row["type"], row["length"], row["first_be"], row["last_be"]) == ("MRd", 25, 0xF, 0x3)


def test_nic_msix_write(nic):
    row = nic[5]
    assert (row["type"], row["length"], row["address"]) == ("MWr", 1, 0xFEE1A000)
    # The wire carries the payload bytes 22 40 00 00 in address order: byte 0
    # goes to 0xfee1a000.  The MSI-X message data is a little-endian DW in
    # memory, so the publishers' "data 0x00004022" is the payload read little
    # endian; read big endian it would be 0x22400000.
    payload = bytes.fromhex(row["data"])
    assert payload == b"\x22\x40\x00\x00"
    assert int.from_bytes(payload, "little") == 0x00004022


def test_nic_rx_dma_write(nic):
    row = nic[6]
    assert (row["type"], row["length"], row["address"]) == ("MWr", 25, 0x2F003000)


def test_nic_text_line(capsys):
    if not NIC_PING.exists():
        pytest.skip(f"{NIC_PING} not found")
    main(["dump", str(NIC_PING)])
    line = capsys.readouterr().out.splitlines()[1]
    assert line == ("1568818308.210055000 seq 0 0x3003 > 0x3003: "
                    "MRd len 4 req 1b:00.0 tag 0x03 addr 0x2f001000 be 0xf/0xf")


@needs_captures
def test_truncated_completion_in_json(capsys):
    rows = dump_json(capsys, CAPTURES / "p4600-write-1blk.pcap")
    assert [(r["type"], r["truncated"]) for r in rows] == [
        ("MRd", False), ("CplD", True), ("CplD", True)]
    first = rows[1]
    assert (first["completer"], first["byte_count"], first["lower_address"]) == ("1b:00.0", 512, 0)


# ---------------------------------------------------------------- errors

def test_bad_magic_exits_2_with_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all, just text\n")
    assert "bad magic" in check_one_line_error(capsys, ["dump", str(bad)])


@needs_captures
def test_truncated_file_exits_2_with_one_line(capsys, tmp_path):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(NIC_PING.read_bytes()[:300])      # packets 0-2 whole, packet 3 cut
    err = check_one_line_error(capsys, ["dump", "--json", str(cut)], decoded_before=3)
    assert "packet 3" in err


def test_missing_file_exits_2(capsys, tmp_path):
    assert "No such file" in check_one_line_error(capsys, ["dump", str(tmp_path / "none.pcap")])


@pytest.mark.parametrize("argv", [[], ["dump"], ["dump", "--bogus", "x.pcap"], ["frobnicate"]])
def test_bad_arguments_exit_2(capsys, argv):
    check_one_line_error(capsys, argv)


def test_module_entry_point_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(10))
    result = subprocess.run([sys.executable, "-m", "tlpoe.sim.cli", "dump", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_help_documents_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        main(["dump", "--help"])
    out = capsys.readouterr().out
    assert "--strict" in out
    assert "1  some packets could not be decoded" in out and "2  file error" in out


# ---------------------------------------------------------------- bad packets

RESERVED_FMT = 0b101
GOOD_BEFORE, GOOD_AFTER = 2, 3


@pytest.fixture
def mixed(tmp_path):
    """A capture of good TLPs with one reserved-Fmt packet at index 2, three
    good ones after it; each packet's NetTLP seq is its index."""
    tlps = [t.pack() for t in SAMPLE_TLPS[:GOOD_BEFORE]]
    tlps += [with_fmt(SAMPLE_TLPS[0].pack(), RESERVED_FMT)]
    tlps += [t.pack() for t in SAMPLE_TLPS[1:1 + GOOD_AFTER]]
    path = tmp_path / "mixed.pcap"
    path.write_bytes(pcap_file([ethernet_ipv4_udp(t, seq=i) for i, t in enumerate(tlps)]))
    return path


def check_bad_packet_named(err, index):
    """One stderr line, naming the packet and the reserved Fmt."""
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"tlpoe: packet {index}: ") and "reserved Fmt 101b" in err


def test_bad_packet_is_named_and_the_listing_goes_on(capsys, mixed):
    assert main(["dump", str(mixed)]) == 1
    captured = capsys.readouterr()
    seqs = [int(line.split(" seq ")[1].split()[0]) for line in captured.out.splitlines()]
    assert seqs == [0, 1, 3, 4, 5]
    check_bad_packet_named(captured.err, GOOD_BEFORE)


def test_json_bad_packet_is_named_and_the_listing_goes_on(capsys, mixed):
    assert main(["dump", "--json", str(mixed)]) == 1
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 3, 4, 5]
    check_bad_packet_named(captured.err, GOOD_BEFORE)


@pytest.mark.parametrize("mode", [[], ["--json"]], ids=["text", "json"])
def test_strict_stops_at_the_bad_packet_with_status_2(capsys, mixed, mode):
    err = check_one_line_error(capsys, ["dump", "--strict", *mode, str(mixed)],
                               decoded_before=GOOD_BEFORE)
    assert f"packet {GOOD_BEFORE}: " in err and "reserved Fmt 101b" in err


def reserve_fmt_in_capture(source, dest, index):
    """Copy the capture ``source`` to ``dest`` with packet ``index``'s TLP
    given the reserved Fmt 101b; every other byte unchanged."""
    data = bytearray(source.read_bytes())
    packets = list(read_pcap(source))
    record = list(read_nettlp(source))[index]
    frame_start = 24 + sum(16 + len(p.data) for p in packets[:index]) + 16
    nettlp = bytes(packets[index].data).find(
        record.seq.to_bytes(2, "big") + record.nettlp_timestamp.to_bytes(4, "big")
        + record.tlp_bytes)
    assert nettlp >= 0
    tlp_start = frame_start + nettlp + 6
    data[tlp_start] = RESERVED_FMT << 5 | data[tlp_start] & 0x1F
    dest.write_bytes(bytes(data))


@needs_captures
def test_real_capture_with_a_reserved_fmt_packet_lists_the_rest(capsys, tmp_path):
    # None of the shared captures holds a reserved Fmt, so one is made in a
    # copy: the 128-packet P4600 read, packet 97 (30 good TLPs after it).
    source = CAPTURES / "p4600-read-64blk.pcap"
    total = len(list(read_nettlp(source)))
    bad = total - 31
    spoiled = tmp_path / "p4600-read-64blk-fmt101.pcap"
    reserve_fmt_in_capture(source, spoiled, bad)
    assert main(["dump", "--json", str(spoiled)]) == 1
    captured = capsys.readouterr()
    indices = [json.loads(line)["index"] for line in captured.out.splitlines()]
    assert indices == [i for i in range(total) if i != bad]
    assert len([i for i in indices if i > bad]) == 30
    check_bad_packet_named(captured.err, bad)


# ---------------------------------------------------------------- bad record headers

HOLD_AS = """
import resource, sys
from tlpoe.sim.cli import main
# What the interpreter needs once the CLI is imported, plus 1 GiB: a 2 GiB
# allocation for the record's claimed length cannot fit.
needed = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (needed + 2**30, needed + 2**30))
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_huge_record_length_is_refused_without_allocating_it(tmp_path):
    path = tmp_path / "huge.pcap"
    good = [ethernet_ipv4_udp(t.pack()) for t in SAMPLE_TLPS[:2]]
    path.write_bytes(pcap_file(good, snaplen=MAX_RECORD_LEN) + record_header(0x7FFFFFFF)
                     + bytes(100))
    result = subprocess.run([sys.executable, "-c", HOLD_AS, "dump", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stdout.splitlines()) == 2                  # the TLPs before it
    assert result.stderr.count("\n") == 1
    assert "packet 2: " in result.stderr and "2147483647" in result.stderr


def test_record_longer_than_the_snaplen_exits_2(capsys, tmp_path):
    path = tmp_path / "over-snaplen.pcap"
    good = [ethernet_ipv4_udp(t.pack()) for t in SAMPLE_TLPS[:2]]
    path.write_bytes(pcap_file(good, snaplen=128) + record_header(200) + bytes(200)
                     + pcap_file(good)[24:])              # readable records follow, unread
    err = check_one_line_error(capsys, ["dump", str(path)], decoded_before=2)
    assert "packet 2: " in err and "200 captured bytes" in err and "snaplen of 128" in err
