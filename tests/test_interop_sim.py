"""A peer's PCIe models through two bridges (tb/test_interop.py): cocotbext-pcie's
RootComplex and a MemoryEndpoint, written elsewhere, through two Bridges at
their defaults and the NIC/PHY model, every operation's result compared with
the same sequence on the models joined straight.

The short form (``make interop QUICK=1``) runs on each simulator; the faults
(a completion corrupted by one byte in either direction, a posted write
passed by the MSI behind it) on one, each of which must fail the run at
exactly the operation it hit."""

import json

import pytest

from tlpoe.sim import interop
from tlpoe.sim.runner import SimulationFailed, simulators

pytestmark = [pytest.mark.sim]
SIMS = simulators()
ONE_SIM = "verilator" if "verilator" in SIMS else SIMS[0]


@pytest.mark.parametrize("sim", SIMS)
def test_short_form_through_two_bridges_equals_the_direct_connection(sim, tmp_path):
    """Enumeration, BAR sizing, MMIO of sizes 1..512 at every alignment on a
    32-bit and a 64-bit BAR, IO, DMA both ways with MPS 128 and 256 and
    completions split on the RCB, every MSI vector, DMA writes before MSIs:
    each result through the bridges equals the direct run's; the report
    says so."""
    assert interop.main(["--quick", "--sim", sim, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "interop.json").read_text())
    assert all(c["passed"] for c in report["checks"]), report["checks"]
    record = report["record"]
    assert record["differences"] == [] and record["problems"] == []
    direct, bridged = record["direct"], record["bridged"]
    assert bridged["operations"] == direct["operations"] > 100
    assert bridged["by_op"] == direct["by_op"]
    for op in ("enumerate", "bar_sizing", "mmio", "io", "dma_to_host", "dma_from_host", "msi",
               "dma_then_msi"):
        assert bridged["by_op"].get(op), op
    assert report["split_completions_to_device"] > 0 and report["split_completions_to_host"] > 0
    tlps = bridged["tlps"]
    assert tlps["a_in"]["tlps"] == tlps["b_out"]["tlps"] and tlps["b_in"]["tlps"] == tlps["a_out"]["tlps"]
    assert {"CfgRd0", "CfgWr0", "MWr", "MRd", "IORd", "IOWr", "CplD"} <= set(tlps["a_in"]["by_type"])
    assert tlps["b_in"]["largest_payload"]["MWr"] == 256       # the endpoint's writes at MPS 256
    assert "| operations (each compared with the direct run) |" in (tmp_path / "interop.md").read_text()


#: fault -> (phase it is armed in, the operation it must break)
FAULTS = {
    "corrupt_to_ep": ("dma", "dma_to_host"),        # an RC completion to a DMA read
    "corrupt_to_rc": ("mmio", "mmio_latency"),      # the endpoint's completion to an MMIO read
    "reorder_to_rc": ("msi", "dma_then_msi"),       # a DMA write passed by its MSI
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_misbehaving_bridge_fails_the_run(fault, tmp_path):
    """One byte of one completion flipped on its way out of a bridge, or one
    posted write held while the MSI behind it goes on: the run fails, and
    the one operation that differs from the direct run is the one hit."""
    phase, op = FAULTS[fault]
    with pytest.raises(SimulationFailed):
        interop.run_interop(ONE_SIM, "short", tmp_path, name=f"interop-{fault}", fault=fault,
                            fault_phase=phase)
    record = json.loads((tmp_path / f"interop-{fault}-{ONE_SIM}.json").read_text())
    assert record["bridged"]["fault"]["where"] == fault
    differences = record["differences"]
    assert [(d["phase"], d["op"]) for d in differences] == [(phase, op)], differences
    assert any(p.startswith(f"bridged: {op} ") for p in record["problems"]), record["problems"]
