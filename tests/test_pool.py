"""The pool manager (sim/pool.py): GPUs assigned to hosts and taken back,
with the translation tables it writes judged by the translation model."""

import pytest

from tlpoe.models.tlp import PcieId, Tlp
from tlpoe.models.translate import Reason, to_device, to_host
from tlpoe.sim.pool import Bar, Gpu, HostLink, ModelWriter, PoolError, PoolManager

MIB = 1 << 20
GPUS = [Gpu("gpu0", 0x0300, (Bar(0, 0xC000_0000, 16 * MIB), Bar(1, 0x38_0000_0000, 256 * MIB))),
        Gpu("gpu1", 0x0400, (Bar(0, 0xC100_0000, 16 * MIB), Bar(1, 0x38_1000_0000, 256 * MIB)))]
LINKS = [HostLink("hostA", 0, host_rid=0x0000, local_rid=0x0010,
                  aperture=(0x8000_0000, 256 * MIB), aperture64=(0x40_0000_0000, 1 << 32),
                  host_bus=0x05),
         HostLink("hostB", 1, host_rid=0x0000, local_rid=0x0011,
                  aperture=(0x8000_0000, 256 * MIB), aperture64=(0x40_0000_0000, 1 << 32),
                  host_bus=0x05)]


def pool():
    writer = ModelWriter()
    return PoolManager(GPUS, LINKS, writer), writer


def read(link, address, nbytes=64):
    return Tlp.mem_read(address, nbytes, requester_id=link.host_rid, tag=1)


def test_each_host_reaches_its_own_gpu_and_nothing_else():
    manager, writer = pool()
    a0 = manager.assign("gpu0", "hostA")
    b1 = manager.assign("gpu1", "hostB")
    table_a, table_b = writer.table(LINKS[0]), writer.table(LINKS[1])
    # host A's view of gpu0: BAR0 in its 32-bit aperture, BAR1 in its 64-bit one
    assert a0.bar_bases[0] % (16 * MIB) == 0 and 0x8000_0000 <= a0.bar_bases[0]
    assert a0.bar_bases[1] >= 1 << 32
    out, why = to_device(table_a, read(LINKS[0], a0.bar_bases[1] + 0x40))
    assert why is Reason.FORWARDED and out.address == 0x38_0000_0040
    assert int(out.requester_id) == LINKS[0].local_rid
    out, why = to_device(table_b, read(LINKS[1], b1.bar_bases[0] + 0x100))
    assert why is Reason.FORWARDED and out.address == 0xC100_0100
    # both hosts see their GPU at the same place; each reaches only its own
    assert a0.bar_bases == b1.bar_bases and a0.host_bdf == b1.host_bdf
    cfg = Tlp.cfg_read(PcieId.from_int(a0.host_bdf), 0, requester_id=0, tag=2)
    assert int(to_device(table_a, cfg)[0].dest_id) == 0x0300
    assert int(to_device(table_b, cfg)[0].dest_id) == 0x0400
    # gpu1's DMA cannot go to host A; gpu0's can
    dma = Tlp.mem_write(0x1000, b"\0" * 64, requester_id=0x0400, tag=3)
    assert to_host(table_a, dma) == (None, Reason.REQUESTER)
    assert to_host(table_b, dma)[1] is Reason.FORWARDED


def test_reassignment_cuts_the_old_host_off_at_once():
    manager, writer = pool()
    a0 = manager.assign("gpu0", "hostA")
    manager.assign("gpu1", "hostB")
    old = read(LINKS[0], a0.bar_bases[0])
    assert to_device(writer.table(LINKS[0]), old)[1] is Reason.FORWARDED
    manager.release("gpu0")
    assert manager.owner("gpu0") is None
    assert to_device(writer.table(LINKS[0]), old) == (None, Reason.ADDRESS)
    b0 = manager.assign("gpu0", "hostB")
    table_b = writer.table(LINKS[1])
    # gpu0 lands beside gpu1 in host B's view, not on top of it
    assert b0.bar_bases[0] != manager.assignments["gpu1"].bar_bases[0]
    out, why = to_device(table_b, read(LINKS[1], b0.bar_bases[0]))
    assert why is Reason.FORWARDED and out.address == 0xC000_0000
    assert to_device(writer.table(LINKS[0]), old) == (None, Reason.ADDRESS)
    assert manager.owner("gpu0") == manager.owner("gpu1") == "hostB"


def test_release_clears_the_function_before_the_windows():
    class Recording(ModelWriter):
        def __init__(self):
            super().__init__()
            self.log = []

        def write_window(self, link, slot, window):
            self.log.append(("window", window is not None))
            super().write_window(link, slot, window)

        def write_function(self, link, slot, function):
            self.log.append(("function", function is not None))
            super().write_function(link, slot, function)

    writer = Recording()
    manager = PoolManager(GPUS, LINKS, writer)
    manager.assign("gpu0", "hostA")
    assert writer.log == [("window", True), ("window", True), ("function", True)]
    writer.log.clear()
    manager.release("gpu0")
    assert writer.log == [("function", False), ("window", False), ("window", False)]


@pytest.mark.parametrize("action, match", [
    (lambda m: m.assign("gpu9", "hostA"), "unknown GPU"),
    (lambda m: m.assign("gpu0", "hostZ"), "unknown link"),
    (lambda m: (m.assign("gpu0", "hostA"), m.assign("gpu0", "hostB")), "release it first"),
    (lambda m: m.release("gpu1"), "not assigned"),
])
def test_bad_requests_say_what_is_wrong(action, match):
    manager, _ = pool()
    with pytest.raises(PoolError, match=match):
        action(manager)


def test_a_full_table_or_aperture_refuses_and_changes_nothing():
    small = HostLink("tiny", 2, host_rid=0, local_rid=0x0012, aperture=(0x8000_0000, 16 * MIB),
                     aperture64=(0x40_0000_0000, 1 << 32), host_bus=6, windows=4, functions=1)
    writer = ModelWriter()
    manager = PoolManager(GPUS, LINKS + [small], writer)
    manager.assign("gpu0", "tiny")
    before = writer.writes
    with pytest.raises(PoolError, match="no room"):
        manager.assign("gpu1", "tiny")              # one function entry only
    assert writer.writes == before and manager.owner("gpu1") is None
    manager.release("gpu0")
    cramped = HostLink("cramped", 3, host_rid=0, local_rid=0x0013,
                       aperture=(0x8000_0000, 8 * MIB), aperture64=(0x40_0000_0000, 1 << 32),
                       host_bus=7)
    manager = PoolManager(GPUS, [cramped], ModelWriter())
    with pytest.raises(PoolError, match="aperture"):
        manager.assign("gpu0", "cramped")           # a 16 MiB BAR in 8 MiB
    assert manager.owner("gpu0") is None


def test_links_need_their_own_local_rid():
    with pytest.raises(PoolError, match="local_rid"):
        PoolManager(GPUS, [LINKS[0], LINKS[0].__class__(**{**LINKS[1].__dict__,
                                                          "local_rid": 0x0010})], ModelWriter())


def test_the_function_entry_carries_the_hosts_view_of_its_bars():
    """Each BAR's size and flags, and the host address the pool chose as
    the shadow's initial value: what the host reads before writing."""
    manager, writer = pool()
    a = manager.assign("gpu0", "hostA")
    assert writer.table(LINKS[0]).functions == (a.function,)
    low, high = a.bar_bases[0], a.bar_bases[1]
    assert a.function.bar_values == (low, (high & 0xFFFF_FFFF) | 0xC, high >> 32, 0, 0, 0)
    assert a.function.bar_masks == (0xFF00_0000, 0xF000_0000, 0xFFFF_FFFF, 0, 0, 0)
    assert LINKS[0].resources() == dict(mem32_base=0x8000_0000, pref_base=0x40_0000_0000)


def test_a_bar_the_host_would_place_across_4_gib_from_the_chassis_is_refused():
    """A 64-bit BAR that is not prefetchable goes below 4 GiB in the host's
    view; its window cannot reach a chassis address above 4 GiB without
    changing the TLPs' header format."""
    odd = Gpu("odd", 0x0500, (Bar(0, 0x38_0000_0000, 16 * MIB, bits64=True, prefetchable=False),))
    manager = PoolManager([odd], LINKS, ModelWriter())
    with pytest.raises(PoolError, match="4 GiB"):
        manager.assign("odd", "hostA")
    assert manager.owner("odd") is None
