"""OrderChecker's per-tag table read synchronously (rtl/queues/order_check.py): the
table is a block-RAM-shaped memory, and a completion whose read is issued in
the cycle the previous completion of the same tag is written (single-beat
TLPs back to back) sees that write."""

import pytest
from amaranth.back import rtlil

from tlpoe.models.tlp import Tlp, TlpType
from tlpoe.rtl.queues.order_check import OrderChecker

from test_order_check import GPU, HOST, run_checker


def split(tag, parts, chunk=4, requester=HOST):
    """One read's completions, in order: ``parts`` of ``chunk`` bytes, each
    with the bytes still to come (the last one final). ``chunk`` 4 makes each
    a single beat from 128 bits up, and two beats (the shortest TLP) at 64."""
    total = parts * chunk
    return [Tlp(TlpType.CplD, requester_id=requester, tag=tag, completer_id=GPU,
                byte_count=total - chunk * k, data=bytes([k]) * chunk) for k in range(parts)]


@pytest.mark.parametrize("width", [64, 128, 512])
def test_back_to_back_same_tag_out_of_order_is_d5b(width):
    """The later completion first, then the earlier one right behind it: the
    earlier one's read is issued while the later one is being written."""
    parts = split(tag=0x2A5, parts=3)
    flagged, out = run_checker(parts, [1, 0, 2], width)
    assert flagged == [1], flagged
    assert out["by_cell"] == [0, 0, 0, 1] and out["first"] == (1, 0, 0x2A5, "D5b")


@pytest.mark.parametrize("width", [64, 128, 512])
def test_back_to_back_same_tag_in_order_is_not_flagged(width):
    """Two reads reusing one tag, their completions back to back and in
    order: the second read's first completion follows the first read's final
    one, which closed the tag. Without the forwarded write it would be judged
    against the entry before that close (8 bytes left) and flagged."""
    tlps = split(tag=5, parts=3) + split(tag=5, parts=3)
    flagged, out = run_checker(tlps, list(range(len(tlps))), width)
    assert flagged == [] and out["violations"] == 0 and not out["irq"]
    assert out["checked"] == len(tlps)


@pytest.mark.parametrize("width", [128, 512])
def test_forwarding_keys_on_the_tag(width):
    """A write to another tag in the read's cycle is not forwarded."""
    tlps = split(tag=5, parts=3) + split(tag=6, parts=3)
    flagged, _ = run_checker(tlps, [1, 4, 0, 3, 2, 5], width)
    assert flagged == [2, 3]                 # each first completion after its second


@pytest.mark.parametrize("width", [64, 512])
def test_tag_table_is_read_synchronously(width):
    """One memory, ``txns``: its read port is clocked (``$memrd_v2`` with
    CLK_ENABLE), which block RAM (DP16KD, RAMB18) needs."""
    text = rtlil.convert(OrderChecker(width))
    reads = [cell for cell in text.split("  cell ")[1:] if cell.startswith("$memrd")]
    assert len(reads) == 1 and '\\MEMID "\\\\txns"' in reads[0]
    assert "parameter \\CLK_ENABLE 1\n" in reads[0], reads[0]

