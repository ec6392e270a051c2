"""The PCIe switch model (tlpoe.models.pcie_switch), driven through its
reactive interface: receive(tlp, t, port) -> [Send]."""

import pytest

from tlpoe.models.events import Send
from tlpoe.models.pcie_switch import PcieSwitch
from tlpoe.models.tlp import CplStatus, MsgRouting, PcieId, Tlp, TlpType

HOST = PcieId(0, 0, 0)
T = 1000.0
LAT = 100.0


@pytest.fixture
def switch():
    """Buses 1 (above), 2 (internal), 3 and 4 (ports 1 and 2); windows set directly."""
    s = PcieSwitch(2, latency_ns=LAT)
    s.set_bus_numbers(0, 1, 2, 4)
    s.set_bus_numbers(1, 2, 3, 3)
    s.set_bus_numbers(2, 2, 4, 4)
    s.set_memory_window(0, 0xC000_0000, 0xC01F_FFFF)
    s.set_memory_window(1, 0xC000_0000, 0xC00F_FFFF)
    s.set_memory_window(2, 0xC010_0000, 0xC01F_FFFF)
    s.set_memory_window(2, 0x40_0000_0000, 0x40_03FF_FFFF, prefetchable=True)
    for port in range(3):
        s.enable(port)
    return s


def only(sends):
    assert len(sends) == 1, sends
    return sends[0]


def test_memory_request_routed_by_address_to_the_window_holding_it(switch):
    sends = switch.receive(Tlp.mem_write(0xC010_0040, b"abcd"), T, 0)
    assert only(sends).port == 2 and only(sends).t_ns == T + LAT
    sends = switch.receive(Tlp.mem_read(0xC000_0100, 4, requester_id=HOST), T, 0)
    assert only(sends).port == 1


def test_prefetchable_64_bit_window_routes_above_4_gib(switch):
    assert only(switch.receive(Tlp.mem_read(0x40_0100_0000, 64), T, 0)).port == 2
    assert switch.ports[2].claims(0x40_03FF_FFFF) and not switch.ports[2].claims(0x40_0400_0000)


def test_windows_programmed_by_configuration_writes(switch):
    switch.set_memory_window(1, 0xC000_0000, 0xC00F_FFFF)
    # move port 1's window to 0xD000_0000..0xD00F_FFFF with a Type 1 write to bus 2, device 0
    value = 0xD000 | 0xD000 << 16
    cpl = only(switch.receive(Tlp.cfg_write(PcieId(2, 0, 0), 0x20 // 4, value.to_bytes(4, "little"),
                                            type1=True, requester_id=HOST, tag=7), T, 0))
    assert cpl.port == 0 and cpl.tlp.type is TlpType.Cpl and cpl.tlp.status == CplStatus.SC
    assert only(switch.receive(Tlp.mem_write(0xD000_0000, b"1234"), T, 0)).port == 1
    assert switch.receive(Tlp.mem_write(0xC000_0000, b"1234"), T, 0) == []


def test_type1_to_a_ports_secondary_bus_becomes_type0_there(switch):
    send = only(switch.receive(Tlp.cfg_read(PcieId(4, 0, 0), 0, type1=True, tag=3), T, 0))
    assert send.port == 2 and send.tlp.type is TlpType.CfgRd0 and send.tlp.tag == 3


def test_type1_beyond_a_ports_secondary_bus_stays_type1():
    s = PcieSwitch(2)
    s.set_bus_numbers(0, 1, 2, 9)
    s.set_bus_numbers(1, 2, 3, 5)                # a bridge below port 1 owns buses 4..5
    send = only(s.receive(Tlp.cfg_read(PcieId(5, 0, 0), 0, type1=True), T, 0))
    assert send.port == 1 and send.tlp.type is TlpType.CfgRd1


def test_type0_reads_the_upstream_bridge_and_type1_the_downstream_ones(switch):
    up = only(switch.receive(Tlp.cfg_read(PcieId(1, 0, 0), 0, requester_id=HOST), T, 0))
    assert up.tlp.data == (0x8747 << 16 | 0x10B5).to_bytes(4, "little")
    down = only(switch.receive(Tlp.cfg_read(PcieId(2, 1, 0), 0x18 // 4, type1=True), T, 0))
    assert down.tlp.data[:3] == bytes([2, 4, 4])     # port 2's primary, secondary, subordinate
    assert down.tlp.completer_id == PcieId(2, 1, 0)


def test_completions_routed_by_requester_id(switch):
    down = Tlp.completion(requester_id=PcieId(4, 0, 0), tag=5, completer_id=HOST, data=b"xxxx")
    assert only(switch.receive(down, T, 0)).port == 2
    up = Tlp.completion(requester_id=HOST, tag=5, completer_id=PcieId(3, 0, 0), data=b"xxxx")
    assert only(switch.receive(up, T, 1)).port == 0


def test_unexpected_completion_from_above_dropped_and_counted(switch):
    cpl = Tlp.completion(requester_id=PcieId(9, 0, 0), tag=1, completer_id=HOST)
    assert switch.receive(cpl, T, 0) == []
    assert switch.counters["unexpected_completion"] == 1


def test_unroutable_read_gets_ur_from_the_receiving_port(switch):
    mrd = Tlp.mem_read(0xE000_0000, 8, requester_id=HOST, tag=0x2A)
    send = only(switch.receive(mrd, T, 0))
    cpl = send.tlp
    assert send.port == 0 and send.t_ns == T + LAT
    assert cpl.type is TlpType.Cpl and cpl.status == CplStatus.UR
    assert cpl.tag == 0x2A and cpl.requester_id == HOST and cpl.completer_id == PcieId(1, 0, 0)
    assert switch.counters["ur_completions"] == 1 and switch.counters["unroutable_address"] == 1


def test_unroutable_posted_write_dropped_and_counted(switch):
    assert switch.receive(Tlp.mem_write(0xE000_0000, b"dead"), T, 0) == []
    assert switch.counters["posted_dropped"] == 1
    assert switch.counters["ur_completions"] == 0


def test_config_to_missing_device_gets_ur(switch):
    cpl = only(switch.receive(Tlp.cfg_read(PcieId(3, 1, 0), 0, type1=True), T, 0)).tlp
    assert cpl.status == CplStatus.UR
    cpl = only(switch.receive(Tlp.cfg_read(PcieId(1, 5, 0), 0), T, 0)).tlp
    assert cpl.status == CplStatus.UR
    cpl = only(switch.receive(Tlp.cfg_read(PcieId(2, 7, 0), 0, type1=True), T, 0)).tlp
    assert cpl.status == CplStatus.UR


def test_memory_space_disabled_means_ur(switch):
    switch.enable(2, memory=False)
    cpl = only(switch.receive(Tlp.mem_read(0xC010_0000, 4), T, 0)).tlp
    assert cpl.status == CplStatus.UR


def test_device_dma_goes_upstream_only_with_bus_master(switch):
    mwr = Tlp.mem_write(0x0010_0000, b"data", requester_id=PcieId(3, 0, 0))
    assert only(switch.receive(mwr, T, 1)).port == 0
    switch.enable(1, bus_master=False)
    assert switch.receive(mwr, T, 1) == []
    assert switch.counters["unroutable_bus_master_disabled"] == 1


def test_peer_to_peer_by_address(switch):
    mwr = Tlp.mem_write(0x40_0000_1000, b"peer", requester_id=PcieId(3, 0, 0))
    assert only(switch.receive(mwr, T, 1)).port == 2


def test_messages_implicit_routing(switch):
    to_root = Tlp.message(0x20, routing=MsgRouting.TO_ROOT_COMPLEX, requester_id=PcieId(3, 0, 0))
    assert only(switch.receive(to_root, T, 1)).port == 0
    broadcast = Tlp.message(0x19, routing=MsgRouting.BROADCAST_FROM_ROOT_COMPLEX)
    assert sorted(s.port for s in switch.receive(broadcast, T, 0)) == [1, 2]
    local = Tlp.message(0x50, routing=MsgRouting.LOCAL)
    assert switch.receive(local, T, 0) == [] and switch.counters["messages_local"] == 1
    by_id = Tlp.message(0x7E, routing=MsgRouting.BY_ID, address=4 << 56)
    assert only(switch.receive(by_id, T, 0)).port == 2


def test_per_port_latency():
    s = PcieSwitch(2, latency_ns=100.0, port_latency_ns={2: 50.0})
    s.set_bus_numbers(0, 1, 2, 4)
    s.set_bus_numbers(1, 2, 3, 3)
    s.set_bus_numbers(2, 2, 4, 4)
    c3 = Tlp.completion(requester_id=PcieId(3, 0, 0), tag=0, completer_id=HOST)
    c4 = Tlp.completion(requester_id=PcieId(4, 0, 0), tag=0, completer_id=HOST)
    assert s.receive(c3, T, 0) == [Send(T + 100.0, 1, c3)]
    assert s.receive(c4, T, 0) == [Send(T + 150.0, 2, c4)]


def test_window_must_be_1_mib_aligned(switch):
    with pytest.raises(ValueError, match="1 MiB"):
        switch.set_memory_window(1, 0xC000_1000, 0xC00F_FFFF)
