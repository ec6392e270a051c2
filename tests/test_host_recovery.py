"""The host driver model across a failing network (issue 19): the GPUs behind
a :class:`~tlpoe.models.bridged_link.BridgedLink` (the two bridges'
completion trackers and containment), the driver of ``models/host.py``.

A flap shorter than detection plus the hold time loses nothing and the
command completes; a longer outage makes every request outstanding complete
with UR (reads return all ones): the driver reports the device gone instead
of hanging, polls it, and once the link is up again rescans and sets the GPU
up again; a cable cut for good ends with the device reported gone after the
driver's limit. Every run ends: no driver is left waiting."""

import numpy as np
import pytest

from tlpoe.models.bridged_link import BridgedLink
from tlpoe.models.host import (DeviceGone, MemWrite, Now, Sleep, bring_up, device_present,
                               dma_to_vram, mmio_read, recover)
from tlpoe.models.system import BUF_BASE, build_local_slot, run_driver

US = 1000.0
#: The bridges' settings (ns): detection 15 us, UP 10 us after the cable is
#: back, containment after 100 us DOWN, completion timeout 1 ms.
BRIDGES = dict(latency_ns=3 * US, dead_ns=15 * US, up_ns=10 * US, hold_ns=100 * US,
               timeout_ns=1000 * US)
SIZE = 64 << 10


def slot_with(outages):
    link = BridgedLink(outages=outages, **BRIDGES)
    slot = build_local_slot({"gpu_command_ns": 1000.0}, seed=3, host_link=link)
    slot.host.memory[BUF_BASE:BUF_BASE + SIZE] = np.arange(SIZE, dtype=np.uint32).view(
        np.uint8)[:SIZE]
    return slot, link


def copy_then(outage_at_us, *, recover_after=True, give_up_ns=2000 * US):
    """A driver: bring the GPUs up, copy 64 KiB in by DMA (both take about
    1.6 ms across the bridges), sleep until ``outage_at_us``, copy again (the outage hits it), and (with
    ``recover_after``) recover and copy once more. Returns its log."""
    def driver():
        log = []
        _, gpus = yield from bring_up()
        gpu = gpus[0]
        yield from dma_to_vram(gpu, BUF_BASE, 0, SIZE)
        log.append(("copied", (yield Now())))
        now = yield Now()
        yield Sleep(max(0.0, outage_at_us * US - now))
        try:
            yield from dma_to_vram_watched(gpu)
            log.append(("copied", (yield Now())))
        except DeviceGone as gone:
            log.append(("gone", (yield Now()), str(gone)))
            if not recover_after:
                return log
            try:
                _, gpus, back = yield from recover(gpu, poll_ns=20 * US, give_up_ns=give_up_ns)
            except DeviceGone as still:
                log.append(("given up", (yield Now()), str(still)))
                return log
            log.append(("back", back))
            gpu = gpus[0]
            yield from dma_to_vram_watched(gpu)
            log.append(("copied", (yield Now())))
            yield MemWrite(gpu.vram, b"\x01\x02\x03\x04")
            log.append(("read", (yield from mmio_read(gpu, 0, 4))))
        return log
    return driver


def dma_to_vram_watched(gpu):
    """The copy with the driver's watchdog: 500 us for its interrupt."""
    from tlpoe.models.gpu import Opcode
    from tlpoe.models.host import run_command
    return (yield from run_command(gpu, Opcode.COPY_H2D, timeout_ns=500 * US, host=BUF_BASE,
                                   a=0, size=SIZE))


def run(outages, **kw):
    slot, link = slot_with(outages)
    log = run_driver(slot, copy_then(**kw)())
    return log, slot, link


def test_a_flap_shorter_than_the_hold_time_loses_nothing():
    log, slot, link = run([(2000 * US, 2060 * US)], outage_at_us=1995)
    assert [e[0] for e in log] == ["copied", "copied"], log
    counters = {k: v for k, v in link.counters.items() if k.startswith("contained")}
    assert not counters and not link.counters["ur_completions"], link.counters
    assert not slot.gpus[0].errors and not slot.host.errors
    assert np.array_equal(slot.gpus[0].vram[:SIZE], slot.host.memory[BUF_BASE:BUF_BASE + SIZE])


def test_a_long_outage_reports_the_device_gone_then_recovers():
    """The cable is out 2000..2500 us: DOWN at 2015, containment at 2115 us
    (the copy's reads and the watchdog's status read answered with UR: all
    ones), the driver reports the device gone, polls it (URs while down),
    sees it back after 2510 us, rescans, sets it up and copies again."""
    log, slot, link = run([(2000 * US, 2500 * US)], outage_at_us=1995)
    kinds = [e[0] for e in log]
    assert kinds == ["copied", "gone", "back", "copied", "read"], log
    gone_at, back_at = log[1][1], log[2][1]
    assert 2115 * US <= gone_at < 2500 * US and back_at >= 2510 * US
    assert log[4][1] == b"\x01\x02\x03\x04"
    assert link.counters["ur_completions"] > 0
    assert link.trackers[0].counters()["link_down_completions"] > 0
    # the GPU saw its DMA reads fail (UR), and nothing hangs on either side
    assert any("UR" in e for e in slot.gpus[0].errors), slot.gpus[0].errors
    assert not any(t.outstanding for t in link.trackers)


def test_a_cable_cut_for_good_is_reported_not_hung():
    log, slot, link = run([(2000 * US, 1e15)], outage_at_us=1995, give_up_ns=1000 * US)
    assert [e[0] for e in log] == ["copied", "gone", "given up"], log
    assert link.counters["contained_posted"] > 0        # the driver's doorbell writes


def test_device_present_reads_the_vendor_id():
    slot, _ = slot_with([])

    def driver():
        _, gpus = yield from bring_up()
        return (yield from device_present(gpus[0].id))
    assert run_driver(slot, driver()) is True


@pytest.mark.parametrize("bad", [dict(hold_ns=-1), dict(outages=[(5, 5)])])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad)).split("_")[0]):
        BridgedLink(**bad)
