"""The TLP path (encapsulator -> decapsulator) on Icarus and Verilator, through
the pyuvm testbench in tb/test_loopback.py, at 64, 256 and 512 bits."""

import json

import pytest

from tlpoe.tb.tops import Loopback
from tlpoe.sim.runner import run_cocotb, simulators
from tlpoe.tb.stimulus import CAPTURES

MODULE = "tlpoe.tb.test_loopback"
SEED = 20261125

# (width, mtu): each one Verilator build, reused by every test of that configuration.
CONFIGS = {"w64": (64, 1500), "w256": (256, 1500), "w512": (512, 9000)}


def run(sim, config, testcase, **params):
    width, mtu = CONFIGS[config]
    return run_cocotb(sim, lambda: Loopback(width, mtu=mtu), "loopback", MODULE,
                      build_key=f"loopback-{config}", testcase=testcase, seed=SEED,
                      params={"width": width, "mtu": mtu, **params},
                      run_name=f"{testcase}-{config}-{params.get('seed', 1)}")


pytestmark = [pytest.mark.sim]
SIMS = simulators()


@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("seed", [1, 2])
def test_random_tlps_256(sim, seed):
    """Random TLPs at 256 bits, malformed frames injected (every drop
    reason): 10,000 on Verilator, 2,000 on Icarus (several times slower;
    the two simulators share the Verilog, the long run is Verilator's)."""
    run(sim, "w256", "RandomTlpTest", count=5000 if sim == "verilator" else 1000, seed=seed)


@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("config", ["w64", "w512"])
def test_random_tlps_other_widths(sim, config):
    run(sim, config, "RandomTlpTest", count=1000, seed=3)


@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("config", ["w64", "w256", "w512"])
def test_size_extremes(sim, config):
    run(sim, config, "SizeExtremesTest")


@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("config", ["w64", "w256", "w512"])
def test_mtu_boundary(sim, config):
    run(sim, config, "MtuBoundaryTest")


@pytest.mark.skipif(not CAPTURES.is_dir(), reason=f"no shared captures at {CAPTURES}")
@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("config", ["w64", "w256"])
def test_capture_replay(sim, config):
    run(sim, config, "CaptureReplayTest")


@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("config", ["w64", "w256", "w512"])
def test_ingress_errors(sim, config):
    run(sim, config, "IngressErrorTest")


@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("config", ["w64", "w512"])
def test_flush_timeout(sim, config):
    run(sim, config, "FlushTimeoutTest")


@pytest.mark.parametrize("sim", SIMS)
def test_throughput_512(sim, tmp_path):
    """At 512 bits with the output always ready the encapsulator takes one
    ingress beat per cycle (256-byte MWr, MTU 9000)."""
    report = tmp_path / "throughput.json"
    run(sim, "w512", "ThroughputTest", count=400, min_beats_per_cycle=0.97, report=str(report))
    result = json.loads(report.read_text())
    assert result["ingress_beats_per_cycle"] >= 0.97
