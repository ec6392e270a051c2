"""The host model (tlpoe.models.host): its completer, interrupts, the driver
generator's operations, and the driver library run against the local slot."""

import numpy as np
import pytest

from tlpoe.models.events import Send, Timer
from tlpoe.models.host import (
    MSI_BASE, CfgRead, CfgWrite, Host, MemRead, MemWrite, Now, Sleep, WaitInterrupt,
    bring_up, enumerate_bus, mmio_read, mmio_write, walk,
)
from tlpoe.models.pcie_txn import ReadTracker
from tlpoe.models.system import build_local_slot, run_driver
from tlpoe.models.tlp import CplStatus, PcieId, Tlp, TlpType

DEV = PcieId(3, 0, 0)


# ---------------------------------------------------------------- completer

def test_device_read_answered_after_latency_split_at_rcb():
    host = Host(mem_size=1 << 16, read_latency_ns=600.0, rcb=64, cpl_max=128)
    host.memory[:] = np.arange(1 << 16) % 241
    mrd = Tlp.mem_read(0x1234, 300, requester_id=DEV, tag=77)
    sends = host.receive(mrd, 10.0)
    assert {s.t_ns for s in sends} == {610.0} and {s.port for s in sends} == {0}
    ends, address = [], 0x1234
    for s in sends:
        assert s.tlp.requester_id == DEV and s.tlp.tag == 77 and len(s.tlp.data) <= 128
        address += min(s.tlp.byte_count, len(s.tlp.data) - (address & 3))
        ends.append(address)
    assert all(e % 64 == 0 for e in ends[:-1]) and ends[-1] == 0x1234 + 300
    tracker = ReadTracker([77])
    tracker.issue(0x1234, 300)
    done = [tracker.complete(s.tlp) for s in sends][-1]
    assert bytes(done.data) == host.memory[0x1234:0x1234 + 300].tobytes()


def test_jitter_reorders_completions_across_tags():
    host = Host(mem_size=1 << 16, cpl_jitter_ns=500.0, seed=3)
    times = [host.receive(Tlp.mem_read(512 * i, 512, requester_id=DEV, tag=i), float(i))[0].t_ns
             for i in range(16)]
    assert times != sorted(times)


def test_read_beyond_memory_gets_ur():
    host = Host(mem_size=1 << 16)
    (send,) = host.receive(Tlp.mem_read(1 << 20, 4, requester_id=DEV, tag=1), 0.0)
    assert send.tlp.status == CplStatus.UR


def test_device_write_lands_in_memory_with_byte_enables():
    host = Host(mem_size=1 << 16)
    host.memory[0x100:0x108] = 0xEE
    assert host.receive(Tlp.mem_write(0x101, b"\x01\x02\x03\x04\x05"), 0.0) == []
    assert host.memory[0x100:0x108].tolist() == [0xEE, 1, 2, 3, 4, 5, 0xEE, 0xEE]


def test_msi_write_is_an_interrupt_not_memory():
    host = Host(mem_size=1 << 16)
    host.receive(Tlp.mem_write(MSI_BASE, (0x4001).to_bytes(4, "little")), 42.0)
    assert host.interrupts == [(42.0, MSI_BASE, 0x4001)]


# ---------------------------------------------------------------- driver operations

def test_driver_operations_and_their_results():
    host = Host(mem_size=1 << 16)
    seen = {}

    def driver():
        seen["t0"] = yield Now()
        yield MemWrite(0xC000_0000, bytes(200))          # posted: no wait
        seen["t1"] = yield Now()
        yield Sleep(50.0)
        seen["t2"] = yield Now()
        seen["cfg"] = yield CfgRead(PcieId(2, 0, 0), 0x08)
        return "done"

    out = host.start(driver(), 100.0)
    writes = [s for s in out if isinstance(s, Send)]
    assert [len(s.tlp.data) for s in writes] == [64, 64, 64, 8]     # write_max 64, aligned
    assert seen == {"t0": 100.0, "t1": 100.0}
    (timer,) = [o for o in out if isinstance(o, Timer)]
    (cfg,) = host.timer(timer.token, timer.t_ns)
    assert seen["t2"] == 150.0
    assert cfg.tlp.type is TlpType.CfgRd1 and cfg.tlp.register == 2   # bus 2 > root bus 1
    data = (0x03020000).to_bytes(4, "little")
    host.receive(Tlp.completion_for(cfg.tlp, completer_id=PcieId(2, 0, 0), data=data), 300.0)
    assert seen["cfg"] == 0x03020000
    assert host.driver_done and host.driver_result == "done"


def test_ur_config_read_returns_none():
    host = Host(mem_size=1 << 16)
    result = {}

    def driver():
        result["v"] = yield CfgRead(PcieId(1, 4, 0), 0)

    (send,) = host.start(driver())
    assert send.tlp.type is TlpType.CfgRd0
    host.receive(Tlp.completion_for(send.tlp, completer_id=PcieId(1, 0, 0),
                                    status=CplStatus.UR), 1.0)
    assert result == {"v": None}


def test_wait_interrupt_before_or_after_it_arrives():
    host = Host(mem_size=1 << 16)
    got = []

    def driver():
        got.append((yield WaitInterrupt(7)))
        got.append((yield WaitInterrupt(7)))

    host.start(driver())
    host.receive(Tlp.mem_write(MSI_BASE, (9).to_bytes(4, "little")), 5.0)   # another vector
    assert got == []
    host.receive(Tlp.mem_write(MSI_BASE, (7).to_bytes(4, "little")), 10.0)
    host.receive(Tlp.mem_write(MSI_BASE, (7).to_bytes(4, "little")), 20.0)
    assert got == [10.0, 20.0] and host.driver_done


# ---------------------------------------------------------------- driver library on the slot

@pytest.fixture(scope="module")
def slot_up():
    slot = build_local_slot(dict(vram_size=16 << 20, host_mem_size=8 << 20))
    tree, gpus = run_driver(slot, bring_up())
    return slot, tree, gpus


def test_enumeration_finds_both_gpus_with_ids_and_bar_sizes(slot_up):
    slot, tree, gpus = slot_up
    found = [f for f in walk(tree) if f.header_type == 0]
    assert [str(f.id) for f in found] == ["03:00.0", "04:00.0"]
    for f in found:
        assert (f.vendor_id, f.device_id, f.class_code) == (0x10DE, 0x1DB4, 0x030200)
        assert [b.size for b in f.bars] == [64 << 10, 16 << 20]
        assert [(b.bits64, b.prefetchable) for b in f.bars] == [(False, False), (True, True)]
    bridges = [f for f in walk(tree) if f.is_bridge]
    assert [(str(b.id), b.secondary, b.subordinate) for b in bridges] == [
        ("01:00.0", 2, 4), ("02:00.0", 3, 3), ("02:01.0", 4, 4)]
    assert [g.requester_id for g in slot.gpus] == [PcieId(3, 0, 0), PcieId(4, 0, 0)]


def test_bars_assigned_and_switch_windows_cover_them(slot_up):
    slot, _, gpus = slot_up
    for i, (g, model) in enumerate(zip(gpus, slot.gpus)):
        assert model.bar0_base() == g.bar0 and model.vram_base() == g.vram
        assert g.bar0 % g.bar0_size == 0 and g.vram % g.vram_size == 0 and g.vram >= 1 << 32
        port = slot.switch.ports[i + 1]
        assert port.claims(g.bar0) and port.claims(g.vram + g.vram_size - 1)
        assert model.memory_enabled and model.bus_master
        assert (model.max_payload, model.max_read_request, model.rcb) == (256, 512, 64)
    assert not slot.switch.ports[1].claims(gpus[1].bar0)


def test_small_buffer_copied_by_mmio_and_read_back(slot_up):
    slot, _, gpus = slot_up
    data = bytes(range(256)) * 3 + b"tail"
    run_driver(slot, mmio_write(gpus[1], 0x1003, data))
    assert slot.gpus[1].vram[0x1003:0x1003 + len(data)].tobytes() == data
    assert run_driver(slot, mmio_read(gpus[1], 0x1003, len(data))) == data


def test_driver_access_to_an_unassigned_address_reads_all_ones(slot_up):
    slot, _, _ = slot_up
    result = run_driver(slot, _read(0xD000_0000))
    assert result == b"\xff" * 4
    assert slot.switch.counters["unroutable_address"] >= 1


def _read(address):
    return (yield MemRead(address, 4))


def test_enumerate_alone_on_a_fresh_slot_leaves_windows_unprogrammed():
    slot = build_local_slot(dict(vram_size=16 << 20, host_mem_size=8 << 20))
    tree = run_driver(slot, enumerate_bus())
    assert len(list(walk(tree))) == 5
    assert all(f.bars[0].address == 0 for f in walk(tree) if f.header_type == 0)
    assert slot.switch.counters["ur_completions"] > 0        # empty device slots probed


def test_config_write_returns_status(slot_up):
    slot, _, _ = slot_up

    def driver():
        return (yield CfgWrite(PcieId(3, 0, 0), 0x20, 0))

    assert run_driver(slot, driver()) == CplStatus.SC
