"""The local slot (tlpoe.models.system): the record, its numbers checked by
hand from link rate and latencies, and the event kernel and links it runs on."""

import json

import numpy as np
import pytest

from tlpoe.models.events import EventKernel, Fabric, PcieLink, Send, link_bytes_per_ns
from tlpoe.models.host import bring_up, dma_from_vram, dma_to_vram
from tlpoe.models.system import DEFAULTS, build_local_slot, dma_sizes, run_driver, run_local_slot
from tlpoe.models.tlp import Tlp


@pytest.fixture(scope="module")
def record():
    return run_local_slot(seed=7, quick=True)


# ---------------------------------------------------------------- kernel and links

def test_gen3_x16_rate_is_128b130b():
    assert link_bytes_per_ns(8.0, 16) == pytest.approx(8 * 16 * 128 / 130 / 8)
    assert link_bytes_per_ns(5.0, 8) == pytest.approx(5 * 8 * 0.8 / 8)


def test_link_serialises_back_to_back_then_adds_latency():
    link = PcieLink(8.0, 16, latency_ns=20.0)
    tlp = Tlp.mem_write(0x1000, bytes(256))             # 12 + 256 bytes, + 8 overhead
    w = (268 + 8) / link_bytes_per_ns(8.0, 16)
    assert link.arrival_ns(0, tlp, 0.0) == pytest.approx(w + 20)
    assert link.arrival_ns(0, tlp, 0.0) == pytest.approx(2 * w + 20)    # waited
    assert link.arrival_ns(1, tlp, 0.0) == pytest.approx(w + 20)        # other direction free


class Echo:
    """A reactive model that sends each TLP back after 5 ns (if ``echo``)."""

    def __init__(self, echo):
        self.log = []
        self.echo = echo

    def receive(self, tlp, t, port):
        self.log.append((t, tlp.address))
        return [Send(t + 5.0, port, tlp)] if self.echo else []


def test_fabric_delivers_in_time_order_and_keeps_ties_in_order():
    fabric = Fabric(EventKernel())
    a, b = Echo(False), Echo(True)
    fabric.connect(a, 0, b, 0, PcieLink(8.0, 16, latency_ns=0.0))
    fabric.apply(a, [Send(10.0, 0, Tlp.mem_write(0x10, b"1234")),
                     Send(0.0, 0, Tlp.mem_write(0x20, b"1234")),
                     Send(10.0, 0, Tlp.mem_write(0x30, b"1234"))])
    fabric.kernel.run_until()
    assert [addr for _, addr in b.log] == [0x20, 0x10, 0x30]
    assert [addr for _, addr in a.log] == [0x20, 0x10, 0x30]            # echoed back


def test_kernel_refuses_the_past():
    k = EventKernel()
    k.schedule(5.0, lambda: None)
    k.run_until()
    with pytest.raises(ValueError, match="past"):
        k.schedule(1.0, lambda: None)


def test_kernel_stop_and_last_ns():
    k, log = EventKernel(), []

    def event(name, stop=False):
        log.append((name, k.now))
        if stop:
            k.stop()

    for t, name in ((2.0, "b"), (1.0, "a"), (2.0, "c"), (3.0, "d"), (9.0, "e")):
        k.schedule(t, event, name, name == "b")
    assert k.run_until(5.0) is True                         # b stopped it; c has not run
    assert log == [("a", 1.0), ("b", 2.0)] and k.now == k.last_ns == 2.0
    assert k.run_until(5.0) is False                        # the stop does not linger
    assert log[2:] == [("c", 2.0), ("d", 3.0)]
    assert (k.now, k.last_ns, k.next_ns, k.events_run) == (5.0, 3.0, 9.0, 4)
    assert k.run_until(6.0) is False and k.last_ns == 3.0   # nothing ran
    k.run_until()
    assert (k.now, k.last_ns, k.pending) == (9.0, 9.0, 0)


# ---------------------------------------------------------------- the record

def test_record_is_json_ready_and_complete(record):
    text = json.dumps(record)
    again = json.loads(text)
    assert again["system"] == "local_slot" and again["quick"] is True
    assert [g["id"] for g in again["gpus"]] == ["03:00.0", "04:00.0"]
    assert [g["bar_sizes"] for g in again["gpus"]] == [[64 << 10, 64 << 20]] * 2
    sizes = dma_sizes(DEFAULTS, quick=True)
    assert sizes[0] == 4096 and sizes[-1] == DEFAULTS["quick_dma_max"]
    assert [(d["direction"], d["bytes"]) for d in again["dma"]] == [
        (direction, s) for s in sizes for direction in ("read", "write")]
    assert dma_sizes(DEFAULTS)[-1] == 16 << 20


def test_kernels_correct_end_to_end(record):
    assert record["saxpy"]["bit_exact"] is True
    assert record["gemm"]["n"] == 256 and record["gemm"]["within_tolerance"] is True
    assert record["gemm"]["max_abs_error"] <= record["gemm"]["atol"]


def test_same_seed_same_record(record):
    assert run_local_slot(seed=7, quick=True) == record


def wire(n):
    """Serialisation of a TLP of n bytes on the default Gen3 x16 link."""
    return (n + 8) / (8 * 16 * 128 / 130 / 8)


def test_mmio_read_latency_by_hand(record):
    L, S, gpu = DEFAULTS["link_latency_ns"], DEFAULTS["switch_latency_ns"], \
        DEFAULTS["gpu_mmio_read_ns"]
    mrd, cpld = 12, 12 + 4                                # 3-DW MRd; CplD with 1 DW
    expected = 2 * (wire(mrd) + L) + S + gpu + 2 * (wire(cpld) + L) + S
    assert record["mmio_read_latency_ns"]["mean"] == pytest.approx(expected)


def test_4k_dma_read_time_by_hand(record):
    """Command entry (64 B MWr) and doorbell (4 B MWr) from the host; the GPU
    issues 8 MRds of 512 B; the host answers each after 600 ns with two 256 B
    CplDs (RCB 64, 256 B completions), which queue back to back on the host
    link (16 x 268 B); the last one crosses the switch; the MSI-X (4 B MWr)
    goes back."""
    L, S = DEFAULTS["link_latency_ns"], DEFAULTS["switch_latency_ns"]
    C, H = DEFAULTS["gpu_command_ns"], DEFAULTS["host_read_latency_ns"]
    entry, doorbell, mrd, cpld, msi = 12 + 64, 12 + 4, 12, 12 + 256, 12 + 4
    t_doorbell = 2 * wire(entry) + wire(doorbell) + 2 * L + S
    t_start = t_doorbell + C
    t_first_cpl = t_start + 2 * (wire(mrd) + L) + S + H
    t_finish = t_first_cpl + 16 * wire(cpld) + L + S + wire(cpld) + L
    expected = t_finish + 2 * (wire(msi) + L) + S
    first = record["dma"][0]
    assert (first["direction"], first["bytes"]) == ("read", 4096)
    assert first["ns"] == pytest.approx(expected)
    assert first["engine_ns"] == pytest.approx(t_finish - t_start)


def test_large_dma_approaches_the_link_payload_rate(record):
    big = [d for d in record["dma"] if d["bytes"] == DEFAULTS["quick_dma_max"]]
    ceiling = 256 / (12 + 256 + 8) * link_bytes_per_ns(8.0, 16)      # 256 B payload per TLP
    for d in big:
        assert 0.85 * ceiling < d["gbytes_per_s"] < ceiling
    small = record["dma"][0]["gbytes_per_s"]
    assert small < 0.25 * ceiling                        # latency-bound


def test_faster_link_makes_large_dma_faster():
    slow = build_local_slot(dict(link_lanes=8, vram_size=8 << 20, host_mem_size=8 << 20))
    fast = build_local_slot(dict(link_lanes=16, vram_size=8 << 20, host_mem_size=8 << 20))
    times = []
    for slot in (slow, fast):
        _, gpus = run_driver(slot, bring_up())
        t0, t1 = run_driver(slot, dma_from_vram(gpus[0], 0, 1 << 20, 1 << 20))
        times.append(t1 - t0)
    assert times[0] == pytest.approx(2 * times[1], rel=0.05)


def test_out_of_order_completions_across_tags_reassembled_in_the_system():
    slot = build_local_slot(dict(cpl_jitter_ns=400.0, vram_size=8 << 20,
                                 host_mem_size=8 << 20), seed=5)
    _, gpus = run_driver(slot, bring_up())
    rng = np.random.default_rng(5)
    data = rng.integers(0, 256, 1 << 16, dtype=np.uint8)
    slot.host.memory[1 << 20:(1 << 20) + (1 << 16)] = data
    run_driver(slot, dma_to_vram(gpus[1], 1 << 20, 0x4000, 1 << 16))
    gpu = slot.gpus[1]
    tags = gpu.tracker.completion_tags
    assert tags != sorted(tags) and gpu.errors == []
    assert gpu.vram[0x4000:0x4000 + (1 << 16)].tobytes() == data.tobytes()


def test_unknown_parameter_is_refused():
    with pytest.raises(ValueError, match="link_gtz"):
        build_local_slot(dict(link_gtz=16.0))


def test_resident_gemm_costs_the_kernel_plus_the_command():
    """A GEMM on operands already in VRAM: the FLOPs at the GPU's rate, plus
    the command's and the launch's fixed costs and the MSI-X trip, and
    nothing for copies; too large for VRAM is refused by name."""
    from tlpoe.models.system import gemm_resident
    slot = build_local_slot({"vram_size": 16 << 20, "host_mem_size": 4 << 20})
    p = slot.params

    def driver(n):
        _, gpus = yield from bring_up()
        return (yield from gemm_resident(gpus[0], n))
    r = run_driver(slot, driver(512))
    kernel_ns = 2 * 512 ** 3 / p["gpu_fp32_gflops"]
    fixed = p["gpu_command_ns"] + p["gpu_kernel_launch_ns"]
    assert r["n"] == 512 and kernel_ns + fixed < r["ns"] < kernel_ns + fixed + 5000
    with pytest.raises(ValueError, match="VRAM"):
        run_driver(build_local_slot({"vram_size": 16 << 20, "host_mem_size": 4 << 20}),
                   driver(2048))
