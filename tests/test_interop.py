"""The interoperability bench's parts that need no simulator: cocotbext-pcie's
TLP bytes against the project's TLP model, the split-completion count, the
faults, the log comparison, the forms, and ``make interop``'s report and
arguments (sim/interop.py)."""

import pytest
from cocotbext.pcie.core.tlp import Tlp as PcieTlp, TlpType as PcieType

from tlpoe.models.tlp import PcieId, Tlp, TlpType
from tlpoe.sim import interop
from tlpoe.tb import interop_sequence as seq
from tlpoe.tb import pcie_interop
from tlpoe.tb.pcie_interop import (
    CompletionCorruptor, PostedWriteHold, TlpTally, bytes_to_tlp, is_split_completion,
    tlp_to_bytes,
)


def pcie_request(kind, addr, data=b"", length=None):
    t = PcieTlp()
    t.fmt_type = kind
    t.requester_id = (1, 0, 0)
    t.tag = 0x5A
    if data:
        t.set_addr_be_data(addr, data)
    else:
        t.set_addr_be(addr, length)
    return t


def test_cocotbext_pcie_bytes_are_the_models_tlps():
    """What the bench drives into a bridge (cocotbext-pcie's packing) is the
    TLP the project's model reads, field for field, and packs back to the
    same bytes: the two independent encoders agree."""
    mwr = pcie_request(PcieType.MEM_WRITE_64, 0x1_2345_6781, b"\x11\x22\x33\x44\x55")
    raw = tlp_to_bytes(mwr)
    assert raw.hex() == "60000002" "01005a3e" "0000000123456780" "0011223344550000"
    ours = Tlp.unpack(raw)
    assert (ours.type, ours.address, ours.first_be, ours.last_be, ours.tag) == \
        (TlpType.MWr, 0x1_2345_6780, 0xE, 0x3, 0x5A)
    assert ours.requester_id == PcieId(1, 0, 0) and ours.data == b"\x00\x11\x22\x33\x44\x55\x00\x00"
    assert ours.pack() == raw and bytes_to_tlp(raw) == mwr

    mrd = pcie_request(PcieType.MEM_READ, 0xC000_0FFD, length=3)
    ours = Tlp.unpack(tlp_to_bytes(mrd))
    assert (ours.type, ours.address, ours.length, ours.first_be, ours.last_be) == \
        (TlpType.MRd, 0xC000_0FFC, 1, 0xE, 0x0)

    cpl = PcieTlp.create_completion_data_for_tlp(mrd, (2, 0, 0))
    cpl.set_data(b"\xaa\xbb\xcc\xdd")
    cpl.byte_count, cpl.lower_address = 3, 0x7D
    raw = tlp_to_bytes(cpl)
    assert raw.hex() == "4a000001" "02000003" "01005a7d" "aabbccdd"
    ours = Tlp.unpack(raw)
    assert (ours.type, ours.completer_id, ours.byte_count, ours.lower_address) == \
        (TlpType.CplD, PcieId(2, 0, 0), 3, 0x7D)
    assert bytes_to_tlp(raw) == cpl

    cfg = PcieTlp()
    cfg.fmt_type = PcieType.CFG_WRITE_0
    cfg.requester_id, cfg.dest_id, cfg.tag = (0, 0, 0), (1, 0, 0), 7
    cfg.set_addr_be_data(0x10, b"\xff\xff\xff\xff")
    ours = Tlp.unpack(tlp_to_bytes(cfg))
    assert (ours.type, ours.dest_id, ours.register_offset, ours.data) == \
        (TlpType.CfgWr0, PcieId(1, 0, 0), 0x10, b"\xff" * 4)

    io = pcie_request(PcieType.IO_READ, 0x8000_0013, length=1)
    ours = Tlp.unpack(tlp_to_bytes(io))
    assert (ours.type, ours.address, ours.first_be) == (TlpType.IORd, 0x8000_0010, 0x8)


def completion(byte_count, payload_dws, lower_address=0):
    return Tlp(TlpType.CplD, data=bytes(range(4 * payload_dws)), byte_count=byte_count,
               lower_address=lower_address, completer_id=PcieId(1, 0, 0), tag=3)


def test_a_split_completion_is_one_that_leaves_bytes_for_the_next():
    assert is_split_completion(completion(200, 16))            # 64 bytes of 200
    assert not is_split_completion(completion(64, 16))         # the last one
    assert not is_split_completion(completion(61, 16, lower_address=3))   # 61 after LA[1:0]
    assert is_split_completion(completion(62, 16, lower_address=3))
    assert not is_split_completion(Tlp(TlpType.Cpl, completer_id=PcieId(1, 0, 0)))


def test_the_tally_counts_types_bytes_and_splits():
    tally = TlpTally()
    for t in (completion(200, 16), completion(136, 16), completion(72, 18),
              Tlp(TlpType.MRd, address=0x1000, length=4)):
        tally.add(t.pack())
    d = tally.as_dict()
    assert d["tlps"] == 4 and d["by_type"] == {"CplD": 3, "MRd": 1}
    assert d["completions_with_data"] == 3 and d["split_completions"] == 2
    assert d["largest_payload"]["CplD"] == 72 and d["payload_bytes"] == 64 + 64 + 72
    with pytest.raises(Exception):
        tally.add(b"\x4a\x00\x00\x04" + bytes(8))          # a CplD cut short


def test_the_corruptor_flips_one_payload_byte_of_one_completion_once_armed(monkeypatch):
    monkeypatch.setattr(pcie_interop, "_now", lambda: 0.0)      # no simulator here
    fault = CompletionCorruptor("to_rc")
    cpl = completion(200, 16, lower_address=2)
    raw = cpl.pack()
    assert fault(raw, cpl, None) == raw                 # not armed yet
    fault.arm()
    mrd = Tlp(TlpType.MRd, address=0x1000, length=4)
    assert fault(mrd.pack(), mrd, None) == mrd.pack()    # not a completion with data
    bad = fault(raw, cpl, None)
    diff = [i for i in range(len(raw)) if raw[i] != bad[i]]
    assert diff == [12 + 2] and bad[14] == raw[14] ^ 0xFF   # the first byte at LA[1:0]
    assert fault.fired["payload_byte"] == 2
    assert fault(raw, cpl, None) == raw                 # once
    fault.arm()                                          # and never again
    assert fault(raw, cpl, None) == raw


def test_the_write_hold_takes_only_large_memory_writes():
    fault = PostedWriteHold("to_rc", min_payload=64)
    assert fault.matches(Tlp(TlpType.MWr, address=0x8_0000, data=bytes(64)))
    assert not fault.matches(Tlp(TlpType.MWr, address=0x8000_0000, data=bytes(4)))   # an MSI
    assert not fault.matches(completion(200, 16))


def log_of(results):
    log = seq.OperationLog()
    for i, r in enumerate(results):
        log.add("mmio", "mmio", f"BAR0 +{i:#x} len 4", r, True, 8, 100.0)
    return log


def test_compare_names_each_operation_whose_result_differs():
    ref = log_of(["00", "11", "22"])
    assert seq.compare(ref, log_of(["00", "11", "22"])) == []
    assert seq.compare(ref, log_of(["00", "ff", "22"])) == [
        (1, "mmio", "mmio", "BAR0 +0x1 len 4", "11", "ff")]
    short = seq.compare(ref, log_of(["00", "11"]))
    assert short == [(2, "mmio", "mmio", "BAR0 +0x2 len 4", "3 operations", "2 operations")]


def test_digest_keeps_small_reads_readable_and_tells_large_ones_apart():
    assert seq.digest(b"\x01\x02") == "0102"
    a, b = bytes(512), bytes(511) + b"\x01"
    assert seq.digest(a).startswith("512:") and seq.digest(a) != seq.digest(b)


@pytest.mark.parametrize("form", sorted(seq.FORMS))
def test_every_form_covers_the_alignments_and_stays_in_its_windows(form):
    f = seq.FORMS[form]
    bar0 = seq.BARS[0][1]
    assert f.batch * seq.MMIO_WINDOW <= bar0            # a batch's windows are BAR0's
    assert all(off + n <= seq.MMIO_WINDOW for n, off in f.mmio)
    assert all(off + n <= seq.DMA_WINDOW for n, off in f.dma)
    assert f.batch * seq.DMA_WINDOW <= 0x8_0000         # below the ordering checks' buffers
    assert 0x8_0000 + f.ordering_checks * 0x2000 <= seq.HOST_MEM_BYTES
    for n in (1, 2, 3, 4):                               # every byte-enable pattern
        assert {off % 4 for size, off in f.mmio if size == n} == {0, 1, 2, 3}
    assert any((off & 0xFFF) + n > 0x1000 for n, off in f.mmio)      # across 4 KiB
    assert any((off & 0xFFF) + n > 0x1000 for n, off in f.dma)
    assert max(n for n, _ in f.dma) > 4096 and max(n for n, _ in f.mmio) == 512
    assert {mps for mps, _ in f.dma_modes} == {128, 256} and any(rcb for _, rcb in f.dma_modes)


def test_the_long_form_has_every_mmio_size_at_every_alignment():
    mmio = seq.FORMS["long"].mmio
    for n in range(1, 513):
        assert {off % 4 for size, off in mmio if size == n} == {0, 1, 2, 3}


def record(differences=0, failures=0, problems=(), splits=(5, 7)):
    def tally(tlps, split=0):
        return dict(tlps=tlps, bytes=10 * tlps, split_completions=split,
                    completions_with_data=split + 1, by_type={"MWr": tlps})
    bridged = dict(operations=100, by_op={"mmio": 60, "msi": 1, "dma_then_msi": 4}, bytes=5000,
                   failures=failures, mmio_read_ns_mean=1500.0, sim_ns=2e5, cycles=50000,
                   wall_s=4.0, tlps={"a_in": tally(30), "b_in": tally(20),
                                     "a_out": tally(20, splits[1]), "b_out": tally(30, splits[0])},
                   bridge_stats={"a": {"frames_sent": 9}, "b": {"frames_sent": 8}})
    return dict(form="short", bridged=bridged,
                direct=dict(operations=100, failures=0, mmio_read_ns_mean=20.0, sim_ns=6e3,
                            wall_s=0.3),
                differences=[{}] * differences, problems=list(problems), wall_s=30.0)


def verdicts(r):
    return {name: ok for name, ok, _ in interop.checks(r, interop.figures(r))}


def test_the_report_passes_a_clean_run_and_fails_each_broken_one():
    assert all(verdicts(record()).values())
    f = interop.figures(record())
    assert f["tlps_host_to_device"] == 30 and f["split_completions_to_device"] == 5
    assert f["tlp_bytes_through_bridges"] == 500
    assert not all(verdicts(record(differences=1)).values())
    assert not all(verdicts(record(failures=2)).values())
    assert not all(verdicts(record(problems=["bridge a: overflows = 1"])).values())
    assert not all(verdicts(record(splits=(0, 7))).values())
    no_reference = record()
    del no_reference["direct"]
    assert not all(verdicts(no_reference).values())
    md = interop.markdown(f, interop.checks(record(), f), record(), "verilator", True)
    assert "| operations (each compared with the direct run) | 100 |" in md


def test_a_bad_argument_says_what_is_wrong(capsys):
    with pytest.raises(SystemExit) as exc:
        interop.main(["--timeout-ms", "0"])
    assert exc.value.code == 2
    assert "--timeout-ms must be positive, not 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        interop.main(["--sim", "xsim"])
    assert exc.value.code == 2 and "invalid choice: 'xsim'" in capsys.readouterr().err
