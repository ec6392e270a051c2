"""The whole system on Icarus and Verilator (tb/test_e2e.py): host models
drive GPU models in another chassis through the disaggregated RTL (a host
bridge and a device bridge per host, the device fabric with its translation
and access tables) and the Ethernet model.

Icarus runs the small case, Verilator the larger ones: SAXPY bit-exact,
GEMM within tolerance, BER 1e-6 with the second host's congestion, run-time
reassignment, and host 0's attempts on GPU 1 denied, counted, and GPU 1's
memory unchanged. Zero TLPs cross an access-table boundary in every run.

The small case on Verilator also runs each bridge's cycle twin
(tb/bridge_twin.py): the model of the whole Bridge compared with the RTL in
every cycle, four bridges at 256 bits, about 122,000 cycles each (about 65 s
of model time). ``TWIN=1`` in the environment turns the twins on in every
run, Icarus's included (the small case there: 67,509 cycles per bridge,
262 s)."""

import pytest

from tlpoe.sim.e2e import bridge_params, run_system
from tlpoe.sim.runner import SimulationFailed, simulators


def run(sim, name, tmp_path, **params):
    return run_system(sim, name, params, tmp_path)


pytestmark = [pytest.mark.sim]
SIMS = simulators()


@pytest.mark.parametrize("sim", SIMS)
def test_remote_gpu_small(sim, tmp_path):
    """Both hosts bring their GPU up through the bridge and use it at once
    (DMA round trips, SAXPY); host 0's attempts on GPU 1 are denied; on
    Verilator the GPUs are then swapped and used again (on Icarus, whose
    run is several times slower, the full and reassignment cases are left
    to Verilator)."""
    reassign = sim == "verilator"
    # (on Icarus half the SAXPY: the same path, in half the time)
    n = 512 if sim == "verilator" else 256
    r = run(sim, "small", tmp_path, dma_sizes=[4096], saxpy_n=n, peer_saxpy_n=n // 2,
            reassign=reassign, twin=sim == "verilator")
    if sim == "verilator":      # the twins ran (and found the RTL equal: else the run failed)
        assert set(r["twins"]) == {"twin_h0", "twin_d0", "twin_h1", "twin_d1"}
        assert min(t["cycles"] for t in r["twins"].values()) > 10000, r["twins"]
    assert r["host0"]["saxpy"]["bit_exact"] and r["host1"]["saxpy"]["bit_exact"]
    assert r["attacks"]["denied"] == r["attacks"]["made"] > 0 and not r["attacks"]["answered"]
    assert r["attacks"]["gpu1_vram_unchanged"]
    if reassign:
        assert all(x["bit_exact"] for x in r["reassigned"].values())
    c = r["counters"]
    assert c["unrouted"] == 0
    # the hosts' scans: 31 empty slots each answered Unsupported Request, the
    # BAR sizing answered from the virtual BARs
    assert c["link0_to_device_unsupported"] >= 31 and c["link0_to_device_local"] > 0


def check_full(r):
    assert r["host0"]["saxpy"]["bit_exact"]
    g = r["host0"]["gemm"]
    assert g["n"] >= 256 and g["within_tolerance"], g
    assert r["attacks"]["denied"] == r["attacks"]["made"] > 0
    assert r["attacks"]["gpu1_vram_unchanged"] and r["attacks"]["gpu1_regs_unchanged"]
    assert all(x["bit_exact"] for x in r["reassigned"].values())
    assert r["counters"]["unrouted"] == 0


FULL = dict(dma_sizes=[4096, 65536], saxpy_n=4096, gemm_n=256, peer_saxpy_n=1024)


@pytest.mark.skipif("verilator" not in SIMS, reason="the full case runs on Verilator")
def test_remote_gpu_full_verilator(tmp_path):
    """SAXPY (4096) bit-exact and GEMM 256x256 within tolerance, computed on
    the remote GPU; DMA round trips; attacks; reassignment."""
    r = run("verilator", "full", tmp_path, **FULL)
    check_full(r)
    assert r["counters"]["h0_replays_nak"] == r["counters"]["h0_replays_timeout"] == 0


@pytest.mark.skipif("verilator" not in SIMS, reason="the full case runs on Verilator")
def test_remote_gpu_ber_and_congestion_verilator(tmp_path):
    """The same with BER 1e-6 on every link of the network, both ways, and
    host 1 moving 64 KiB DMA round trips through the same chassis uplink and
    PCIe switch port for as long as host 0 works: the results are the same,
    frames were lost and replayed, and host 1 really loaded the path."""
    net = {"rate_gbps": 100, "cable_ns": 250.0, "ber": 1e-6, "switch_mode": "cut-through",
           "switch_latency_ns": 300.0, "switch_queue_bytes": 262144, "mac_fifo_bytes": 4096}
    r = run("verilator", "ber-congestion", tmp_path, net=net, congestion=True, **FULL)
    check_full(r)
    assert r["phy"].get("fcs_drop", 0) > 0, r["phy"]
    c = r["counters"]
    assert sum(c[f"{s}_frames_retransmitted"] for s in ("h0", "d0", "h1", "d1")) > 0, c
    assert r["host1"]["round_trips"] > 0


@pytest.mark.skipif("verilator" not in SIMS, reason="the twins run on Verilator in make test")
def test_the_twins_catch_a_model_configured_apart_from_the_rtl(tmp_path):
    """The twins' comparison in this bench is not vacuous: models built with
    64 receive TLP slots against the RTL's 127 must fail the run, naming the
    first field that differs."""
    bridge = {**bridge_params(), "queue_tlps": 64}
    with pytest.raises(SimulationFailed) as failure:
        run("verilator", "twin-break", tmp_path, dma_sizes=[4096], saxpy_n=64,
            peer_saxpy_n=64, reassign=False, twin=True, bridge=bridge)
    log = failure.value.log.read_text()
    assert "TwinDifference: twin_h0: cycle " in log
    assert "stats.credits_advertised: RTL [(127, " in log and "model [(64, " in log


@pytest.mark.skipif("verilator" not in SIMS, reason="the fault case runs on Verilator")
def test_a_remote_gpu_across_its_cable_flapping_then_failing(tmp_path):
    """The resilient bridges (link state machine, completion tracker; all the
    end-to-end system's) between host 0 and its GPU; host 0's cable out for 50 us, then for 400 us, each
    time under a 64 KiB DMA round trip (tb/test_e2e.py ``faults``):

    * the flap (DOWN after 30 us of silence, back before containment at
      102 us) is ridden out: the copy comes back intact, nothing answered UR;
    * the outage reaches containment: the bridges answer what is
      outstanding with UR, the driver reads the device gone (all ones)
      instead of hanging, polls it until the link is back, rescans and sets
      the GPU up again; SAXPY on it is then bit-exact.

    Host 1, on its own cable through the same chassis uplink, runs its SAXPY
    bit-exact meanwhile and its link never goes down."""
    r = run_system("verilator", "faults", dict(
        faults=[[20, 50], [20, 400]], dma_sizes=[], saxpy_n=512, peer_saxpy_n=512,
        attacks=False, reassign=False), tmp_path)
    flap, outage = r["host0"]["faults"]
    c = r["counters"]
    assert flap["outcome"] == "rode through" and flap["copy_intact"], flap
    assert outage["outcome"] == "DeviceGone", outage
    # gone once containment answered (102 us after DOWN), back after the cable
    assert outage["cut_ns"] + 130_000 <= outage["failed_ns"] < outage["cut_ns"] + 400_000, outage
    assert outage["back_ns"] >= outage["cut_ns"] + 400_000, outage
    assert r["host0"]["saxpy"]["bit_exact"] and r["host1"]["saxpy"]["bit_exact"]
    for side in ("h0", "d0"):               # both ends of host 0's cable: down twice, up again
        assert c[f"{side}_link_down_events"] == 2 and c[f"{side}_link_up_events"] == 3, c
        assert c[f"{side}_peer_restarts"] == 0 and c[f"{side}_outstanding"] == 0, c
    for side in ("h1", "d1"):
        assert c[f"{side}_link_down_events"] == 0 and c[f"{side}_link_up_events"] == 1, c
    # what containment answered and dropped: the host's status read, the GPU's reads
    assert c["h0_link_down_completions"] + c["h0_np_contained"] > 0, c
    assert c["d0_link_down_completions"] + c["d0_np_contained"] > 0, c
    assert r["phy"]["link_down"] > 0, r["phy"]
