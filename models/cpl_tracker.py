"""The completion tracker: each bridge answers, with an error, the non-posted
requests it carried to the peer when their completions cannot come
(docs/link-state.md, "Completion timeout and containment").

:class:`CompletionTracker` sees the TLPs going out to the peer
(:meth:`~CompletionTracker.request`) and the completions coming back
(:meth:`~CompletionTracker.completion`). Plain Python, no clock: every method
takes the time ``now`` in ns.

Tracked are the non-posted requests (MRd, MRdLk, IORd, IOWr, CfgRd0/1,
CfgWr0/1, FetchAdd, Swap, CAS), by Transaction ID (Requester ID, Tag). The
table is what the RTL will hold: one entry per tag slot, the low ``tag_bits``
of the Tag, keeping the Requester ID, the whole Tag, the time the request
left and what its error completion needs (the Byte Count and Lower Address
still to come, TC, Attr, locked). A request finding its slot taken replaces
the entry and counts ``tag_reuse``: the same Transaction ID twice is a
requester bug (the old request can no longer be answered apart from the new
one), and two requesters using the same tag at once, or two tags equal in
their low ``tag_bits``, share one slot as well; the old entry's completions
then match nothing and are late. An entry replaced by another transaction
(another requester, or another Tag with the same low bits) is answered at
once with its error completion (``evicted``; returned by the next
:meth:`~CompletionTracker.expire` or :meth:`~CompletionTracker.restart`),
so that its requester never waits; the same Transaction ID again is not
(an answer would complete the new request as well).

A completion matching an entry (its Requester ID and whole Tag) is
delivered and counts ``matched``. It retires the entry when it is final: a
status other than Successful Completion (UR, CA, CRS or reserved), no data
(a write's completion), or a Byte Count no larger than the bytes its payload
covers from its Lower Address (PCIe: Byte Count is the bytes remaining,
this completion's included). Otherwise the entry now expects the next
completion's Byte Count and Lower Address. A completion matching no entry
is late: dropped (False) and counted ``late_completions``. Other TLPs pass
(True). BCM (set only by PCI-X completers) is not looked at.

The tracker completes an entry itself, removing it (a completion arriving
later is late), with status Unsupported Request (docs/link-state.md says
why: a request the bridge cannot deliver is one its port does not support):

* :meth:`~CompletionTracker.expire`: every entry sent ``timeout_ns`` or
  longer ago (``timeouts``) and, while the link has been down for
  ``hold_ns`` or longer (:meth:`~CompletionTracker.link_down`,
  :meth:`~CompletionTracker.link_up`), every other entry
  (``link_down_completions``);
* :meth:`~CompletionTracker.restart` (the peer restarted): every entry
  (``restart_completions``).

Both return the error completions oldest request first. PCIe's default
Completion Timeout range is 50 us to 50 ms (:data:`PCIE_DEFAULT_TIMEOUT_NS`);
the tracker should answer before the host's own timeout fires.
"""

from dataclasses import dataclass
from numbers import Real

from .tlp import (Attr, CplStatus, OrderingClass, PcieId, Tlp, TlpType, _first_byte_offset,
                  _read_byte_count)

__all__ = ["PCIE_DEFAULT_TIMEOUT_NS", "DEFAULT_HOLD_NS", "CompletionTracker"]

#: PCIe's default Completion Timeout range (Device Control 2 value 0000b), in ns.
PCIE_DEFAULT_TIMEOUT_NS = (50_000, 50_000_000)
#: The longest flap docs/link-state.md lists (10 ms): a flap the link recovers
#: from completes nothing.
DEFAULT_HOLD_NS = 10_000_000

# PCIe Base Specification 6.0, 2.2.9.1: "Completion headers must supply the same
# values for the Attribute as were supplied in the header of the corresponding
# Request", IDO excepted (2.2.6.4: the Completer may set it, and need not copy
# it; 2.3.2: the Requester must not check it). We copy all three, as
# cocotbext-pcie's Tlp.create_completion_for_tlp and verilog-pcie's
# pcie_axil_master do. (Tlp.completion_for copies RO and IDO only.)
_CPL_ATTR = Attr.NS | Attr.RO | Attr.IDO
_COUNTERS = ("tracked", "matched", "tag_reuse", "evicted", "late_completions", "timeouts",
             "link_down_completions", "restart_completions")


@dataclass
class _Entry:
    """One tag slot: the Transaction ID, when the request left, and its error
    completion's fields."""
    requester_id: PcieId
    tag: int
    sent: float
    byte_count: int        # bytes still to come: the next completion's Byte Count
    lower_address: int     # the next completion's Lower Address
    tc: int
    attr: Attr
    locked: bool


def _first_completion(tlp):
    """(Byte Count, Lower Address) of the completion answering ``tlp`` whole.

    PCIe Base Specification 6.0, 2.2.9.1 and 2.3.1.1: a memory read's from its
    Length and byte enables (Tables 2-40, 2-41; a zero-length read asks for 1
    byte); an AtomicOp's Byte Count is its operand size and its Lower Address
    is Reserved (0); Byte Count 4 and Lower Address 0 for I/O and configuration
    requests. A completion with an error status carries the same two "as if the
    Completion Status were Successful Completion" (2.3.1.1). (cocotbext-pcie's
    create_ur_completion_for_tlp and verilog-pcie's pcie_axil_master send Byte
    Count 0, which is 4096, and Lower Address 0 instead: not followed.)"""
    t = tlp.type
    if t in (TlpType.MRd, TlpType.MRdLk):
        return (_read_byte_count(tlp.length, tlp.first_be, tlp.last_be),
                tlp.address & 0x7C | _first_byte_offset(tlp.first_be))
    if t.is_atomic:
        return 4 * tlp.length // (2 if t is TlpType.CAS else 1), 0
    return 4, 0


def _covered(cpl):
    """Bytes a completion's payload returns, from its Lower Address on."""
    return 4 * cpl.length - (cpl.lower_address & 3)


def _is_final(cpl):
    if cpl.status != CplStatus.SC or not cpl.type.has_data:
        return True
    return cpl.byte_count <= _covered(cpl)


def _is_time(value):
    return isinstance(value, Real) and not isinstance(value, bool)


class CompletionTracker:
    """The non-posted requests carried to the peer, completed with UR when
    their completions cannot come (see the module's docstring).

    ``completer_id``: the Completer ID of the error completions (the bridge's
    port). ``timeout_ns``: the completion timeout, > 0 (PCIe's default range
    is 50 us to 50 ms). ``tag_bits``: 8 or 10, the table has ``2**tag_bits``
    entries. ``hold_ns``: how long the link may be down before every entry is
    completed, >= 0. Each raises ValueError naming it when out of range.
    """

    def __init__(self, *, completer_id, timeout_ns, tag_bits=10, hold_ns=DEFAULT_HOLD_NS):
        try:
            self.completer_id = PcieId.from_int(completer_id)
        except (TypeError, ValueError) as err:
            raise ValueError(f"completer_id {completer_id!r} is not a PCIe ID ({err})") from None
        if not _is_time(timeout_ns) or timeout_ns <= 0:
            raise ValueError(f"timeout_ns must be > 0 ns (PCIe's default range is 50 us to "
                             f"50 ms), not {timeout_ns!r}")
        if type(tag_bits) is not int or tag_bits not in (8, 10):
            raise ValueError(f"tag_bits must be 8 or 10, not {tag_bits!r}")
        if not _is_time(hold_ns) or hold_ns < 0:
            raise ValueError(f"hold_ns must be >= 0 ns, not {hold_ns!r}")
        self.timeout_ns, self.tag_bits, self.hold_ns = timeout_ns, tag_bits, hold_ns
        self._slots = [None] * (1 << tag_bits)
        self._down_since = None
        self._answered = []         # error completions of evicted entries, not yet returned
        self._counts = dict.fromkeys(_COUNTERS, 0)

    @property
    def outstanding(self):
        """Entries in the table."""
        return sum(e is not None for e in self._slots)

    def counters(self):
        return dict(self._counts)

    def request(self, tlp, now):
        """``tlp`` goes out to the peer; True when tracked (non-posted)."""
        if tlp.ordering_class is not OrderingClass.NON_POSTED:
            return False
        slot = tlp.tag & (len(self._slots) - 1)
        old = self._slots[slot]
        if old is not None:
            self._counts["tag_reuse"] += 1
            if (old.requester_id, old.tag) != (tlp.requester_id, tlp.tag):
                # another transaction: answered now, so that it never waits
                # (the same Transaction ID again gets no answer of its own:
                # one would complete the new request too)
                self._answered.append(self._complete(slot, "evicted"))
        byte_count, lower_address = _first_completion(tlp)
        self._slots[slot] = _Entry(tlp.requester_id, tlp.tag, now, byte_count, lower_address,
                                   tlp.tc, tlp.attr & _CPL_ATTR, tlp.type is TlpType.MRdLk)
        self._counts["tracked"] += 1
        return True

    def completion(self, tlp, now):
        """``tlp`` comes back from the peer; True to deliver it."""
        if not tlp.type.is_completion:
            return True
        slot = tlp.tag & (len(self._slots) - 1)
        entry = self._slots[slot]
        if entry is None or (entry.requester_id, entry.tag) != (tlp.requester_id, tlp.tag):
            self._counts["late_completions"] += 1
            return False
        self._counts["matched"] += 1
        if _is_final(tlp):
            self._slots[slot] = None
        else:
            # 2.3.1.1: the next Byte Count is this one less the bytes returned,
            # and the next completion starts where this one ends.
            entry.byte_count = tlp.byte_count - _covered(tlp)
            entry.lower_address = (tlp.lower_address + _covered(tlp)) & 0x7F
        return True

    def link_down(self, now):
        """The link went DOWN (a second call while down changes nothing)."""
        if self._down_since is None:
            self._down_since = now

    def link_up(self, now):
        self._down_since = None

    def expire(self, now):
        """Error completions for the entries timed out, and for every entry once
        the link has been down ``hold_ns``; oldest request first, after those
        of entries evicted since the last call (``evicted``)."""
        held = self._down_since is not None and now - self._down_since >= self.hold_ns
        done, self._answered = self._answered, []
        for slot in self._by_age():
            if now - self._slots[slot].sent >= self.timeout_ns:
                done.append(self._complete(slot, "timeouts"))
            elif held:
                done.append(self._complete(slot, "link_down_completions"))
        return done

    def restart(self, now):
        """The peer restarted: error completions for every entry, oldest first."""
        done, self._answered = self._answered, []
        return done + [self._complete(slot, "restart_completions") for slot in self._by_age()]

    def _by_age(self):
        """Occupied slots, the oldest request first (ties: the lower slot)."""
        ages = sorted((e.sent, slot) for slot, e in enumerate(self._slots) if e is not None)
        return [slot for _, slot in ages]

    def _complete(self, slot, counter):
        entry, self._slots[slot] = self._slots[slot], None
        self._counts[counter] += 1
        return Tlp.completion(requester_id=entry.requester_id, tag=entry.tag,
                              completer_id=self.completer_id, status=CplStatus.UR,
                              byte_count=entry.byte_count, lower_address=entry.lower_address,
                              locked=entry.locked, tc=entry.tc, attr=entry.attr)
