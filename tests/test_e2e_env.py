"""The end-to-end bench's own judges, without a simulator: the boundary
checker must flag every TLP that crosses an access table, and only those."""

from tlpoe.models.tlp import CplStatus, PcieId, Tlp
from tlpoe.sim.pool import Bar, Gpu, HostLink, ModelWriter, PoolManager
from tlpoe.tb.e2e_env import BoundaryChecker, device_mac, host_mac

GPUS = [Gpu("gpu0", 0x0300, (Bar(0, 0xC000_0000, 1 << 16), Bar(1, 0x40_0000_0000, 1 << 24))),
        Gpu("gpu1", 0x0400, (Bar(0, 0xC010_0000, 1 << 16), Bar(1, 0x40_1000_0000, 1 << 24)))]
LINKS = [HostLink(f"host{i}", i, 0x0000, int(PcieId(0, 31, i)), aperture=(0xC000_0000, 1 << 28),
                  aperture64=(0x40_0000_0000, 1 << 36), host_bus=1) for i in range(2)]


def checker():
    pool = PoolManager(GPUS, LINKS, ModelWriter())
    pool.assign("gpu0", "host0")
    pool.assign("gpu1", "host1")
    return pool, BoundaryChecker(pool, {link.index: link for link in LINKS})


def test_requests_inside_their_links_assignments_pass():
    pool, b = checker()
    b.into_chassis(Tlp.mem_write(0xC000_0100, b"\0" * 4, requester_id=LINKS[0].local_rid), 1.0)
    b.into_chassis(Tlp.mem_read(0x40_1000_0000, 64, requester_id=LINKS[1].local_rid, tag=1), 2.0)
    b.into_chassis(Tlp.cfg_read(PcieId.from_int(0x0300), 0, requester_id=LINKS[0].local_rid,
                                tag=2), 3.0)
    host_view = pool.assignments["gpu0"].host_bdf
    b.into_host(0, Tlp.mem_write(0xFEE0_0000, b"\0" * 4, requester_id=host_view), 4.0)
    assert b.violations == [] and b.checked["into_chassis"] == 3


def test_every_crossing_is_flagged():
    pool, b = checker()
    b.into_chassis(Tlp.mem_write(0xC010_0000, b"\0" * 4, requester_id=LINKS[0].local_rid), 1.0)
    b.into_chassis(Tlp.mem_read(0xC000_FFFC, 8, requester_id=LINKS[0].local_rid, tag=1), 2.0)
    b.into_chassis(Tlp.cfg_read(PcieId.from_int(0x0400), 0, requester_id=LINKS[0].local_rid,
                                tag=2), 3.0)
    b.into_chassis(Tlp.mem_write(0xC000_0000, b"\0" * 4, requester_id=0x0123), 4.0)
    b.into_host(1, Tlp.mem_write(0xFEE0_0000, b"\0" * 4,
                                 requester_id=pool.assignments["gpu0"].host_bdf + 1), 5.0)
    assert len(b.violations) == 5, b.violations


def test_the_bridges_own_unsupported_request_completions_pass():
    pool, b = checker()
    read = Tlp.cfg_read(PcieId(1, 5, 0), 0, requester_id=0x0000, tag=3)
    b.into_host(0, Tlp.completion_for(read, completer_id=LINKS[0].host_rid,
                                      status=CplStatus.UR), 1.0)
    assert b.violations == []
    # with data, or successful, it would be the chassis' answer: judged as such
    b.into_host(0, Tlp.completion_for(read, completer_id=LINKS[0].host_rid,
                                      data=b"\x00" * 4), 2.0)
    assert len(b.violations) == 1


def test_a_release_takes_effect_at_once():
    pool, b = checker()
    pool.release("gpu0")
    b.into_chassis(Tlp.mem_write(0xC000_0100, b"\0" * 4, requester_id=LINKS[0].local_rid), 1.0)
    assert len(b.violations) == 1


def test_each_bridge_has_its_own_mac():
    macs = {host_mac(i) for i in range(4)} | {device_mac(i) for i in range(4)}
    assert len(macs) == 8 and all(m[0] & 0x03 == 0x02 for m in macs)    # unicast, local
