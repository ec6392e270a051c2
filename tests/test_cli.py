"""`tlpoe dump`: text and JSON decodes of the NetTLP captures, and its errors."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tlpoe.models.pcap import read_nettlp
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
