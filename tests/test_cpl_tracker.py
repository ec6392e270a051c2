"""The completion tracker (models/cpl_tracker.py): which requests it tracks,
which completions retire them, and the UR completions it makes itself on a
timeout, a link down for longer than the hold time, and a peer's restart.
Expected Byte Counts and Lower Addresses are worked out by hand from the
PCIe tables (Base Specification 6.0, Tables 2-40 and 2-41; 2.2.9.1)."""

import numpy as np
import pytest

from tlpoe.models.cpl_tracker import CompletionTracker
from tlpoe.models.tlp import Attr, CplStatus, OrderingClass, PcieId, Tlp, TlpType, random_tlp

US = 1_000                      # ns
BRIDGE = PcieId(0x01, 0, 0)     # the tracker's Completer ID
GPU = PcieId(0x02, 0, 0)        # the peer's completer
REQ = PcieId(0x12, 3, 1)
OTHER = PcieId(0x40, 0, 2)


def tracker(**kw):
    kw.setdefault("timeout_ns", 50 * US)
    return CompletionTracker(completer_id=BRIDGE, **kw)


def cpl(tag, *, dws=0, byte_count=4, lower_address=0, requester_id=REQ, status=CplStatus.SC):
    return Tlp.completion(requester_id=requester_id, tag=tag, completer_id=GPU,
                          data=bytes(4 * dws), byte_count=byte_count,
                          lower_address=lower_address, status=status)


# 512 bytes at 0x1022: DWs 0x1020..0x1223 (129 DW, First BE 1100b, Last BE 0011b),
# answered at a 64-byte RCB: 30 bytes to 0x1040, seven 64-byte completions, then
# the last 34 bytes (9 DW). (DW count, Lower Address, Byte Count) of each.
SPLIT_READ = dict(address=0x1022, nbytes=512)
SPLIT = [(8, 0x22, 512), (16, 0x40, 482), (16, 0x00, 418), (16, 0x40, 354), (16, 0x00, 290),
         (16, 0x40, 226), (16, 0x00, 162), (16, 0x40, 98), (9, 0x00, 34)]


# ---------------------------------------------------------------- what retires an entry

def test_a_read_answered_by_one_completion_retires():
    t = tracker()
    assert t.request(Tlp.mem_read(0x1000, 64, requester_id=REQ, tag=7), 0) is True
    assert t.completion(cpl(7, dws=16, byte_count=64), 100) is True
    assert t.outstanding == 0
    assert t.expire(10**9) == []
    assert t.counters()["matched"] == 1


def test_split_completions_retire_only_on_the_last():
    t = tracker()
    t.request(Tlp.mem_read(SPLIT_READ["address"], SPLIT_READ["nbytes"], requester_id=REQ,
                           tag=0x155), 0)
    for dws, lower, byte_count in SPLIT[:-1]:
        assert t.completion(cpl(0x155, dws=dws, byte_count=byte_count, lower_address=lower), 10)
        assert t.outstanding == 1
    dws, lower, byte_count = SPLIT[-1]
    assert t.completion(cpl(0x155, dws=dws, byte_count=byte_count, lower_address=lower), 10)
    assert t.outstanding == 0
    assert t.counters()["matched"] == 9


def test_a_configuration_write_is_answered_by_cpl():
    t = tracker()
    t.request(Tlp.cfg_write(GPU, 4, b"\x06\x00\x00\x00", requester_id=REQ, tag=3), 0)
    assert t.completion(cpl(3), 10) is True
    assert t.outstanding == 0


@pytest.mark.parametrize("status", [CplStatus.UR, CplStatus.CA, CplStatus.CRS, 0b111],
                         ids=["UR", "CA", "CRS", "reserved"])
def test_a_completion_with_an_error_status_is_final(status):
    # with a DW of data (malformed) and Byte Count 512, only its status makes it final
    t = tracker()
    t.request(Tlp.mem_read(0x1000, 512, requester_id=REQ, tag=5), 0)
    assert t.completion(cpl(5, dws=1, byte_count=512, status=status), 10) is True
    assert t.outstanding == 0


def test_a_completion_matching_nothing_is_late_and_dropped():
    t = tracker()
    t.request(Tlp.mem_read(0x1000, 4, requester_id=REQ, tag=1), 0)
    assert t.completion(cpl(2, dws=1), 10) is False
    assert t.completion(cpl(1, dws=1, requester_id=OTHER), 10) is False
    assert t.counters()["late_completions"] == 2
    assert t.outstanding == 1


def test_requests_from_the_peer_pass_the_completion_side():
    assert tracker().completion(Tlp.mem_read(0x1000, 4, requester_id=GPU, tag=1), 0) is True


# ---------------------------------------------------------------- what is tracked

@pytest.mark.parametrize("tlp", [
    Tlp.mem_write(0x1000, bytes(8), requester_id=REQ, tag=1),
    Tlp.message(0x20, requester_id=REQ),
    Tlp.message(0x7F, data=bytes(4), requester_id=REQ),
    cpl(1),
    cpl(1, dws=1),
], ids=str)
def test_posted_requests_and_completions_are_not_tracked(tlp):
    t = tracker()
    assert t.request(tlp, 0) is False
    assert t.outstanding == 0
    assert t.counters()["tracked"] == 0


def test_the_same_transaction_id_twice_is_a_tag_reuse():
    t = tracker()
    t.request(Tlp.mem_read(0x1000, 4, requester_id=REQ, tag=9, tc=0), 0)
    t.request(Tlp.mem_read(0x2000, 4, requester_id=REQ, tag=9, tc=5), 20 * US)
    assert t.counters()["tag_reuse"] == 1 and t.counters()["evicted"] == 0
    assert t.outstanding == 1
    assert t.expire(50 * US) == []          # the first request's deadline
    [ur] = t.expire(70 * US)
    assert ur.tc == 5


def test_two_requesters_with_one_tag_share_a_slot():
    t = tracker()
    t.request(Tlp.mem_read(0x1000, 4, requester_id=REQ, tag=9), 0)
    t.request(Tlp.mem_read(0x1000, 4, requester_id=OTHER, tag=9), 0)
    assert t.counters()["tag_reuse"] == t.counters()["evicted"] == 1
    [ur] = t.expire(5)                      # the first requester's, answered at once
    assert (ur.requester_id, ur.tag, ur.status) == (REQ, 9, CplStatus.UR)
    assert t.completion(cpl(9, dws=1), 10) is False
    assert t.completion(cpl(9, dws=1, requester_id=OTHER), 10) is True


@pytest.mark.parametrize("tag_bits, reuse", [(8, 1), (10, 0)])
def test_tags_equal_in_their_low_tag_bits_share_a_slot(tag_bits, reuse):
    t = tracker(tag_bits=tag_bits)
    t.request(Tlp.mem_read(0x1000, 4, requester_id=REQ, tag=0x105), 0)
    t.request(Tlp.mem_read(0x1000, 4, requester_id=REQ, tag=0x205), 0)
    assert t.counters()["tag_reuse"] == t.counters()["evicted"] == reuse
    assert [ur.tag for ur in t.expire(0)] == [0x105] * reuse


# ---------------------------------------------------------------- the tracker's own completions

def test_a_timeout_gives_one_ur_completion_with_the_requests_fields():
    # 6 bytes at 0x2005: DWs 0x2004..0x200B, First BE 1110b, Last BE 0111b:
    # Byte Count 6, Lower Address 0x05
    t = tracker()
    t.request(Tlp.mem_read(0x2005, 6, requester_id=REQ, tag=0x2A5, tc=3,
                           attr=Attr.RO | Attr.NS | Attr.IDO), 1 * US)
    assert t.expire(51 * US - 1) == []
    [ur] = t.expire(51 * US)
    assert (ur.type, ur.status, ur.data) == (TlpType.Cpl, CplStatus.UR, b"")
    assert (ur.completer_id, ur.requester_id, ur.tag) == (BRIDGE, REQ, 0x2A5)
    assert (ur.tc, ur.attr) == (3, Attr.RO | Attr.NS | Attr.IDO)
    assert (ur.byte_count, ur.lower_address) == (6, 0x05)
    assert t.expire(10**9) == []
    assert t.counters()["timeouts"] == 1


def test_a_completion_after_the_timeout_is_late_and_dropped():
    t = tracker()
    t.request(Tlp.mem_read(0x2000, 8, requester_id=REQ, tag=4), 0)
    t.expire(50 * US)
    assert t.completion(cpl(4, dws=2, byte_count=8), 60 * US) is False
    assert t.counters()["late_completions"] == 1


def test_after_part_of_a_read_the_ur_carries_what_is_still_to_come():
    # the split read above, its first completion (30 bytes) delivered: the
    # next would have been Byte Count 482 at Lower Address 0x40
    t = tracker()
    t.request(Tlp.mem_read(SPLIT_READ["address"], SPLIT_READ["nbytes"], requester_id=REQ,
                           tag=0x155), 0)
    t.completion(cpl(0x155, dws=8, byte_count=512, lower_address=0x22), 10)
    [ur] = t.expire(50 * US)
    assert (ur.byte_count, ur.lower_address) == (482, 0x40)


@pytest.mark.parametrize("request_, cpl_type, byte_count, lower_address", [
    # a zero-length read asks for 1 byte (First/Last BE 0000b)
    (Tlp.mem_read(0x3000, 0), TlpType.Cpl, 1, 0x00),
    (Tlp.mem_read(0x1_0000_0046, 2, locked=True), TlpType.CplLk, 2, 0x46),
    (Tlp.mem_read(0x4000, 4096), TlpType.Cpl, 4096, 0x00),
    # AtomicOps: the operand size; Lower Address is Reserved
    (Tlp.atomic(TlpType.FetchAdd, 0x88, bytes(8)), TlpType.Cpl, 8, 0x00),
    (Tlp.atomic(TlpType.CAS, 0x1F0, bytes(32)), TlpType.Cpl, 16, 0x00),
    # I/O and configuration: Byte Count 4, Lower Address 0
    (Tlp.io_read(0x3F9, 2), TlpType.Cpl, 4, 0x00),
    (Tlp.io_write(0x3F8, b"\x01"), TlpType.Cpl, 4, 0x00),
    (Tlp.cfg_read(GPU, 0x10), TlpType.Cpl, 4, 0x00),
    (Tlp.cfg_write(GPU, 0x10, bytes(4), type1=True), TlpType.Cpl, 4, 0x00),
], ids=str)
def test_ur_byte_count_and_lower_address_follow_the_request(request_, cpl_type, byte_count,
                                                              lower_address):
    t = tracker()
    t.request(request_, 0)
    [ur] = t.restart(0)
    assert (ur.type, ur.byte_count, ur.lower_address) == (cpl_type, byte_count, lower_address)


def test_expire_answers_the_oldest_request_first():
    t = tracker()
    for tag, sent in ((1, 30), (2, 10), (3, 20)):
        t.request(Tlp.mem_read(0x1000, 4, requester_id=REQ, tag=tag), sent)
    assert [ur.tag for ur in t.expire(10**9)] == [2, 3, 1]


def three_requests(t):
    for tag in (1, 2, 3):
        t.request(Tlp.mem_read(0x1000, 4, requester_id=REQ, tag=tag), 10 * tag)


def test_a_link_down_shorter_than_the_hold_time_completes_nothing():
    t = tracker(timeout_ns=50_000 * US, hold_ns=1_000 * US)
    three_requests(t)
    t.link_down(100)
    assert t.expire(100 + 1_000 * US - 1) == []
    t.link_up(100 + 1_000 * US - 1)
    assert t.expire(100 + 5_000 * US) == []
    assert t.outstanding == 3


def test_a_link_down_for_the_hold_time_completes_every_request():
    t = tracker(timeout_ns=50_000 * US, hold_ns=1_000 * US)
    three_requests(t)
    t.link_down(100)
    t.link_down(500 * US)                   # still down: the hold counts from the first
    assert [ur.tag for ur in t.expire(100 + 1_000 * US)] == [1, 2, 3]
    assert t.outstanding == 0
    assert t.counters()["link_down_completions"] == 3
    assert t.counters()["timeouts"] == 0


def test_a_restart_of_the_peer_completes_every_request():
    t = tracker()
    three_requests(t)
    urs = t.restart(100)
    assert [(ur.tag, ur.status) for ur in urs] == [(1, CplStatus.UR), (2, CplStatus.UR),
                                                    (3, CplStatus.UR)]
    assert t.outstanding == 0
    assert t.counters()["restart_completions"] == 3


def test_every_error_completion_packs_and_unpacks():
    rng = np.random.default_rng(20261207)
    non_posted = [t for t in TlpType if t.ordering_class is OrderingClass.NON_POSTED]
    t = tracker()
    for _ in range(400):
        t.request(random_tlp(rng, types=non_posted, max_payload=4096), 0)
    urs = t.restart(0)
    counts = t.counters()
    assert len(urs) == counts["tracked"] - counts["tag_reuse"] + counts["evicted"] > 300
    for ur in urs:
        assert Tlp.unpack(ur.pack()) == ur


# ---------------------------------------------------------------- parameters

@pytest.mark.parametrize("kw, name", [
    (dict(timeout_ns=0), "timeout_ns"),
    (dict(timeout_ns=-5), "timeout_ns"),
    (dict(timeout_ns="50us"), "timeout_ns"),
    (dict(tag_bits=9), "tag_bits"),
    (dict(tag_bits=5), "tag_bits"),
    (dict(hold_ns=-1), "hold_ns"),
    (dict(completer_id=0x1_0000), "completer_id"),
    (dict(completer_id="01:00.0"), "completer_id"),
])
def test_bad_parameters_raise_naming_them(kw, name):
    kw = dict(dict(completer_id=BRIDGE, timeout_ns=50 * US), **kw)
    with pytest.raises(ValueError, match=name):
        CompletionTracker(**kw)
