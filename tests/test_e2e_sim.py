"""The whole system on Icarus and Verilator (tb/test_e2e.py): host models
drive GPU models in another chassis through the disaggregated RTL (a host
bridge and a device bridge per host, the device fabric with its translation
and access tables) and the Ethernet model.

Icarus runs the small case, Verilator the larger ones: SAXPY bit-exact,
GEMM within tolerance, BER 1e-6 with the second host's congestion, run-time
reassignment, and host 0's attempts on GPU 1 denied, counted, and GPU 1's
memory unchanged. Zero TLPs cross an access-table boundary in every run."""

import functools
import json

import pytest

from tlpoe.rtl.system import DisaggregatedTop
from tlpoe.sim.runner import run_cocotb, simulators

MODULE = "tlpoe.tb.test_e2e"
SEED = 20261126
WIDTH = 256
#: The bridges of the end-to-end system: 12-bit sequences, a window of 32
#: frames (a 100 GbE round trip of a few microseconds at 1500-byte frames).
BRIDGE = dict(window=32, seq_bits=12)


def system():
    return DisaggregatedTop(WIDTH, hosts=2, **BRIDGE)


def run(sim, name, tmp_path, **params):
    report = tmp_path / f"{name}.json"
    run_cocotb(sim, system, "system", MODULE, build_key=f"system-w{WIDTH}-win32",
               testcase="E2eRun", seed=SEED, run_name=name,
               params={"width": WIDTH, "report": str(report), **params})
    return json.loads(report.read_text())


pytestmark = [pytest.mark.sim]
SIMS = simulators()


@pytest.mark.parametrize("sim", SIMS)
def test_remote_gpu_small(sim, tmp_path):
    """Both hosts each use their GPU at once (DMA round trips, SAXPY), host 0's
    attempts on GPU 1 are denied, then the GPUs are swapped and used again."""
    r = run(sim, "small", tmp_path, dma_sizes=[4096], saxpy_n=512, peer_saxpy_n=256)
    assert r["host0"]["saxpy"]["bit_exact"] and r["host1"]["saxpy"]["bit_exact"]
    assert r["attacks"]["denied"] == r["attacks"]["made"] > 0
    assert r["attacks"]["gpu1_vram_unchanged"]
    assert all(x["bit_exact"] for x in r["reassigned"].values())
    assert r["counters"]["unrouted"] == 0
