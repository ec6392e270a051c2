"""``make e2e`` (sim/e2e.py): the comparison rows, the extrapolation, the
report files, and a bad argument."""

import json

import pytest

from tlpoe.sim import e2e
from tlpoe.sim.runner import simulators


def _dma(direction, size, ns):
    return dict(direction=direction, bytes=size, ns=ns, gbytes_per_s=size / ns)


LOCAL = dict(mmio_read_latency_ns={"mean": 600.0},
             dma=[_dma(d, s, 1000 + s / 10) for s in (4096, 65536, 1 << 20) for d in ("read", "write")],
             saxpy={"n": 1024, "ns": 10_000.0}, gemm={"n": 256, "ns": 50_000.0},
             gemm_resident={"n": 1024, "ns": 160_000.0})
REMOTE = dict(mmio_read_latency_ns={"mean": 2600.0},
              dma=[_dma(d, s, 3000 + s / 8) for s in (4096, 65536) for d in ("read", "write")],
              saxpy={"n": 1024, "ns": 10_500.0}, gemm={"n": 256, "ns": 80_000.0},
              gemm_resident={"n": 1024, "ns": 163_000.0})


def test_rows_compare_extrapolate_and_label():
    rows = {r["workload"]: r for r in e2e.rows(LOCAL, REMOTE, 65536, 1600.0)}
    assert set(rows) == {"mmio_read_4B", "dma_read_4KiB", "dma_write_4KiB", "dma_read_64KiB",
                         "dma_write_64KiB", "dma_read_1MiB", "dma_write_1MiB", "saxpy_1024",
                         "gemm_256", "gemm_resident_1024"}
    for r in rows.values():
        assert set(r) >= {"workload", "local_ns", "disaggregated_ns", "overhead_fraction",
                          "simulated"}
        assert r["overhead_fraction"] == pytest.approx(r["disaggregated_ns"] / r["local_ns"] - 1,
                                                       abs=1e-4)
        assert r["under_dxpu_10pct"] == (r["overhead_fraction"] < 0.10)
    assert rows["mmio_read_4B"]["overhead_fraction"] == pytest.approx(2600 / 600 - 1, abs=1e-4)
    # 1 MiB was not simulated: the line through the two largest simulated sizes
    big = rows["dma_read_1MiB"]
    assert big["simulated"] is False and rows["dma_read_64KiB"]["simulated"] is True
    assert big["disaggregated_ns"] == pytest.approx(3000 + (1 << 20) / 8, rel=1e-6)
    assert rows["saxpy_1024"]["under_dxpu_10pct"] and not rows["gemm_256"]["under_dxpu_10pct"]
    assert rows["gemm_resident_1024"]["under_dxpu_10pct"]
    assert "compute-bound" in rows["gemm_resident_1024"]["why"]
    assert "bandwidth-bound" in rows["dma_read_1MiB"]["why"]


def test_network_round_trip_counts_both_hops_and_the_switch_each_way():
    net = dict(e2e.NET, cable_ns=100.0, switch_latency_ns=200.0, rate_gbps=100)
    hop = 100.0 + 84 * 8 / 100
    assert e2e.net_round_trip_ns(net) == pytest.approx(2 * (2 * hop + 200.0))


def test_a_bad_argument_says_what_is_wrong(capsys):
    with pytest.raises(SystemExit) as exc:
        e2e.main(["--jobs", "0"])
    assert exc.value.code == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        e2e.main(["--clock-mhz", "0"])
    assert exc.value.code == 2
    assert "--clock-mhz must be between 1 and 1000, not 0" in capsys.readouterr().err


def test_a_clock_in_mhz_becomes_a_period_a_simulator_runs():
    """`make e2e CLOCK_MHZ=127.88` (ECP5's 256-bit figure) once failed every
    run: 7.8198... ns is finer than the simulators' picosecond."""
    assert e2e.clock_period_ns(127.88) == 7.82
    assert e2e.clock_period_ns(250) == 4.0
    assert e2e.clock_period_ns(322.27) == 3.103
    for mhz in (127.88, 136.15, 322.27, 156.25):
        assert float(round(e2e.clock_period_ns(mhz) * 1000)) == e2e.clock_period_ns(mhz) * 1000


def test_the_clock_bounds_the_datapath_in_the_explanation():
    """At ECP5's clock the 512-bit datapath, not the line, is the bound."""
    slow = {r["workload"]: r for r in e2e.rows(LOCAL, REMOTE, 65536, 1600.0, 512, 1000 / 100)}
    fast = {r["workload"]: r for r in e2e.rows(LOCAL, REMOTE, 65536, 1600.0, 512, 1000 / 250)}
    assert "512-bit datapath at 100 MHz" in slow["dma_read_1MiB"]["why"]
    assert "100 GbE line" in fast["dma_read_1MiB"]["why"]


@pytest.mark.sim
@pytest.mark.skipif("verilator" not in simulators(), reason="make e2e runs on Verilator")
def test_quick_report(tmp_path):
    """The short mode end to end: local slot and one RTL run, every row
    with the fields the issue asks for, the disaggregated path slower than
    the local slot wherever it was simulated, and the files written."""
    assert e2e.main(["--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "e2e.json").read_text())
    rows = report["rows"]
    names = {r["workload"] for r in rows}
    assert {"mmio_read_4B", "dma_read_4KiB", "dma_write_16KiB", "saxpy_1024"} <= names
    for r in rows:
        assert r["simulated"] is True
        assert r["disaggregated_ns"] > r["local_ns"] > 0, r
    assert report["disaggregated"]["saxpy"]["bit_exact"]
    for name in ("e2e.md", "overhead.png", "dma_bandwidth.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "DxPU" in (tmp_path / "e2e.md").read_text()


def _incast(ecn, drops=0, p99=9000.0, shares=(0.5, 0.5), resent=0, cnps=5):
    return dict(ecn=ecn, hosts={f"host{i}": dict(share=s, gbps=40 * s) for i, s in
                                enumerate(shares)},
                goodput_gbps=80.0, queue_p50_bytes=2000.0, queue_p99_bytes=p99,
                queue_max_bytes=int(p99) + 100, switch_drops=drops, replays=resent,
                frames_retransmitted=resent, cnps_sent=cnps, cnps_received=cnps,
                throttled_cycles=100 if cnps else 0, uplink={"ecn_marked": 40},
                threshold_bytes=e2e.INCAST_ECN_BYTES if ecn else None, bdp_bytes=20336)


@pytest.mark.parametrize("runs, failing", [
    ([_incast(True), _incast(False, drops=30, p99=48000.0, resent=40, cnps=0)], set()),
    ([_incast(True, drops=1)], {"ecn: no switch drop"}),
    ([_incast(True, p99=12288 + 20336 + 1)], {"ecn: p99 queue below threshold + BDP"}),
    ([_incast(True, shares=(0.44, 0.56))], {"ecn: shares within 10%"}),
    ([_incast(True, cnps=0)], {"ecn: marks echoed and acted on"}),
    ([_incast(False, drops=0, resent=0, cnps=0)], {"no ecn: drops and replays"}),
])
def test_the_incast_verdict_is_the_issues_acceptance(runs, failing):
    verdict = e2e.incast_verdict(runs)
    assert {k for k, (ok, _) in verdict.items() if not ok} == failing
    text = e2e._incast_markdown(runs, verdict)
    assert text.count("| on |") + text.count("| off |") == len(runs)
    assert ("FAIL" in text) == bool(failing)
