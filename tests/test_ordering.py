"""The ordering rules table (tlpoe.models.ordering): every cell, the
producer/consumer pattern, and the checker of an egress order."""

import random

import pytest

from tlpoe.models.ordering import (
    order_stamps,
    CELL_IDS, CELLS, Rule, cell_of, check_order, legal_pass, table_markdown,
)
from tlpoe.models.tlp import Attr, OrderingClass, Tlp, TlpType

HOST, GPU, OTHER = 0x0100, 0x0200, 0x0300


def mwr(address, attr=0, requester=HOST, data=b"\x00" * 4):
    return Tlp(TlpType.MWr, address=address, data=data, attr=attr, requester_id=requester,
               first_be=0xF)


def mrd(address, tag=0, attr=0, requester=HOST):
    return Tlp(TlpType.MRd, address=address, attr=attr, requester_id=requester, tag=tag,
               first_be=0xF)


def cpl(tag=0, attr=0, requester=HOST, completer=GPU, data=b"\x00" * 4, lower=0):
    return Tlp(TlpType.CplD if data else TlpType.Cpl, data=data, attr=attr, tag=tag,
               requester_id=requester, completer_id=completer, lower_address=lower)


# (later, earlier, completes) -> the cell, one case per cell
CASES = {
    "A2a": (mwr(0x2000), mwr(0x1000), None),
    "A2b": (mwr(0x2000, Attr.RO), mwr(0x1000), None),
    "A3": (mwr(0x2000), mrd(0x1000), None),
    "A5": (mwr(0x2000), cpl(), None),
    "B2a": (mrd(0x2000), mwr(0x1000), None),
    "B2b": (mrd(0x2000, attr=Attr.IDO, requester=OTHER), mwr(0x1000), None),
    "B3": (mrd(0x2000, tag=1), mrd(0x1000), None),
    "B5": (mrd(0x2000), cpl(), None),
    "D2a": (cpl(), mwr(0x1000), None),
    "D2b": (cpl(attr=Attr.RO), mwr(0x1000), None),
    "D3": (cpl(), mrd(0x1000), None),
    "D5a": (cpl(tag=2), cpl(tag=1), None),
    "D5b": (cpl(tag=1, lower=0x40), cpl(tag=1), None),
}


def test_the_table_has_every_class_pair_once_per_condition():
    pairs = {(c.later, c.earlier) for c in CELLS}
    assert pairs == {(a, b) for a in OrderingClass for b in OrderingClass}
    assert set(CASES) == set(CELL_IDS) and len(CELL_IDS) == len(set(CELL_IDS))
    # the specification's "No" cells, and its two deadlock-avoidance "Yes" cells
    assert {c.id for c in CELLS if c.rule is Rule.MUST_NOT} == {"A2a", "B2a", "D2a", "D5b"}
    assert {c.id for c in CELLS if c.rule is Rule.MUST} == {"A3", "D3"}


@pytest.mark.parametrize("cell_id", CELL_IDS)
def test_each_cell(cell_id):
    later, earlier, completes = CASES[cell_id]
    cell = cell_of(later, earlier, completes)
    assert cell.id == cell_id
    assert (later.ordering_class, earlier.ordering_class) == (cell.later, cell.earlier)
    assert legal_pass(later, earlier, completes) is (cell.rule is not Rule.MUST_NOT)


def test_ido_needs_different_ids():
    write = mwr(0x1000, requester=HOST)
    assert not legal_pass(mrd(0x2000, attr=Attr.IDO, requester=HOST), write)
    assert legal_pass(mrd(0x2000, attr=Attr.IDO, requester=OTHER), write)
    assert not legal_pass(mwr(0x2000, attr=Attr.IDO, requester=HOST), write)
    assert legal_pass(mwr(0x2000, attr=Attr.IDO, requester=OTHER), write)
    # a completion compares its Completer ID with the write's Requester ID
    assert not legal_pass(cpl(attr=Attr.IDO, completer=HOST), write)
    assert legal_pass(cpl(attr=Attr.IDO, completer=GPU), write)


def test_relaxed_ordering_lets_writes_and_completions_pass_writes_but_not_reads():
    write = mwr(0x1000)
    assert legal_pass(mwr(0x2000, Attr.RO), write)
    assert legal_pass(cpl(attr=Attr.RO), write)
    assert not legal_pass(mrd(0x2000, attr=Attr.RO), write)    # RO is no licence for reads
    assert not legal_pass(mwr(0x2000), mwr(0x1000, Attr.RO))    # only the later's RO counts


def test_completion_of_an_io_or_config_write_may_pass_posted():
    done = cpl(data=b"")
    assert not legal_pass(done, mwr(0x1000))
    assert legal_pass(done, mwr(0x1000), completes=TlpType.CfgWr0)
    assert legal_pass(done, mwr(0x1000), completes=TlpType.IOWr)
    assert not legal_pass(done, mwr(0x1000), completes=TlpType.MRd)


def test_producer_consumer():
    """Data write, flag write, flag read: the flag must not overtake the data,
    nor the read the flag."""
    data, flag, poll = mwr(0x1000, data=b"\x11" * 64), mwr(0x8000, data=b"\x01\x00\x00\x00"), mrd(0x8000)
    ingress = [data, flag, poll]
    assert check_order(ingress, ingress).ok
    flag_first = check_order(ingress, [flag, data, poll])
    assert [(v.later, v.earlier, v.cell) for v in flag_first.violations] == [(1, 0, "A2a")]
    read_first = check_order(ingress, [poll, data, flag])
    assert {(v.later, v.earlier, v.cell) for v in read_first.violations} == {(2, 0, "B2a"), (2, 1, "B2a")}
    # the producer marked the flag write relaxed: it may go first
    relaxed = [data, mwr(0x8000, Attr.RO, data=b"\x01\x00\x00\x00"), poll]
    assert check_order(relaxed, [relaxed[1], relaxed[0], relaxed[2]]).ok


def test_split_completions_stay_in_order():
    first, second = cpl(tag=5, data=b"\x00" * 64), cpl(tag=5, data=b"\x01" * 64, lower=0x40)
    other = cpl(tag=6)
    assert check_order([first, second], [second, first]).violations[0].cell == "D5b"
    assert check_order([first, other], [other, first]).ok


def test_checker_reports_missing_unexpected_and_matches_equal_tlps_in_order():
    a, b = mwr(0x1000), mwr(0x2000)
    result = check_order([a, a, b], [a, b, mwr(0x3000)])
    assert result.missing == [1] and result.unexpected == [2]
    # the second copy of `a` is missing, so `b` passed it: an A2a violation
    assert [(v.later, v.earlier) for v in result.violations] == [(2, 1)]
    assert not result.ok
    packed = check_order([t.pack() for t in (a, b)], [t.pack() for t in (a, b)])
    assert packed.ok and packed.passes == 0 and packed.cell_hits["A2a"] == 1


def random_tlp(rng, i):
    kind = rng.choice(["P", "P", "NP", "Cpl"])
    attr = Attr(rng.choice([0, 0, Attr.RO, Attr.IDO]))
    requester = rng.choice([HOST, OTHER])
    if kind == "P":
        return mwr(0x1000 * (i + 1), attr, requester)
    if kind == "NP":
        return mrd(0x1000 * (i + 1), tag=i % 256, attr=attr, requester=requester)
    return cpl(tag=rng.randrange(4), attr=attr, requester=requester,
               completer=rng.choice([GPU, HOST]), lower=4 * (i % 32))


def legal_shuffle(tlps, rng, depth=8):
    """An egress order that only makes legal passes: each step sends one of
    the first ``depth`` waiting TLPs that may pass every earlier waiting one."""
    waiting, out = list(range(len(tlps))), []
    while waiting:
        window = waiting[:depth]
        choices = [k for k, i in enumerate(window)
                   if all(legal_pass(tlps[i], tlps[j]) for j in window[:k])]
        k = rng.choice(choices)            # k = 0 is always a choice
        out.append(waiting.pop(k))
    return out


def test_legal_reordering_is_never_flagged_and_every_illegal_swap_is():
    rng = random.Random(2026)
    tlps = [random_tlp(rng, i) for i in range(3000)]
    order = legal_shuffle(tlps, rng)
    result = check_order(tlps, [tlps[i] for i in order])
    assert result.ok and result.passes > 300           # reordered, and legally
    assert all(result.cell_hits[c] for c in ("A2b", "A3", "A5", "B2b", "B3", "B5", "D2b",
                                              "D3", "D5a"))
    # inject illegal swaps of neighbours; each must be caught, with its cell
    injected = 0
    for at in range(0, len(order) - 1, 97):
        i, j = order[at], order[at + 1]
        if i < j and not legal_pass(tlps[j], tlps[i]):
            swapped = order[:at] + [j, i] + order[at + 2:]
            caught = check_order(tlps, [tlps[k] for k in swapped]).violations
            assert any((v.later, v.earlier) == (j, i) and v.cell == cell_of(tlps[j], tlps[i]).id
                       for v in caught)
            injected += 1
    assert injected >= 5


def test_table_markdown_lists_every_cell_with_hits():
    text = table_markdown({"A2a": 3})
    assert all(f"| {cell_id} |" in text for cell_id in CELL_IDS)
    assert "| 3 |" in text and "Hits" in text


def test_order_stamps_count_the_posted_tlps_before_each():
    tlps = [mwr(0), mrd(4), cpl(), mwr(8), mwr(12), mrd(16)]
    assert order_stamps(tlps) == [0, 1, 1, 1, 2, 3]
    assert order_stamps(tlps, first=0xFFFF) == [0xFFFF, 0, 0, 0, 1, 2]
