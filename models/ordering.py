"""PCIe transaction ordering: the base specification's ordering rules table
as data, :func:`legal_pass`, and a checker of an egress order against an
ingress order.

The table (PCI Express Base Specification, "Ordering Rules Summary"; the
cell names A2 .. D5 are the specification's) is read *row passes column*:
may a TLP that arrived **later** (the row) leave before one that arrived
**earlier** (the column), both in the same direction and traffic class?
Each cell holds one of three rules:

``MUST_NOT`` ("No")
    the later TLP must not pass: a bridge that lets it through breaks
    software (producer/consumer: data write, flag write, flag read);
``MAY`` ("Y/N")
    passing is permitted and not required;
``MUST`` ("Yes")
    the later TLP must be *able* to pass (deadlock avoidance: posted
    requests and completions must get past blocked non-posted requests).
    For a checker of one order, ``MUST`` and ``MAY`` are both legal; ``MUST``
    is a liveness requirement on the queues, tested separately.

Rows and columns here are the three ordering classes of
:class:`tlpoe.models.tlp.OrderingClass` (posted, non-posted, completion):
the specification's two non-posted columns (read requests, B/3; non-posted
requests with data, C/4) have the same rules and are merged. The sub-cells
(``a``/``b``) carry the conditions:

====  ==========  ==========  =========================================================
Cell  Later       Earlier     Rule
====  ==========  ==========  =========================================================
A2a   Posted      Posted      No
A2b   Posted      Posted      Y/N if the later has RO; or IDO and the Requester IDs differ
A3    Posted      Non-posted  Yes (A3, A4)
A5    Posted      Completion  Y/N
B2a   Non-posted  Posted      No (B2a, C2a)
B2b   Non-posted  Posted      Y/N if the later has IDO and the Requester IDs differ (B2b, C2b)
B3    Non-posted  Non-posted  Y/N (B3, B4, C3, C4)
B5    Non-posted  Completion  Y/N (B5, C5)
D2a   Completion  Posted      No
D2b   Completion  Posted      Y/N if the later has RO; or IDO and its Completer ID differs
                              from the posted request's Requester ID; or it completes an
                              I/O or Configuration Write
D3    Completion  Non-posted  Yes (D3, D4)
D5a   Completion  Completion  Y/N if the Transaction IDs (Requester ID, Tag) differ
D5b   Completion  Completion  No if the Transaction IDs are the same
====  ==========  ==========  =========================================================

Relaxed Ordering and ID-Based Ordering are looked at on the *later* TLP
only, as the specification states them. Not modelled: PASID TLP prefixes
(the IDO alternative "both carry different PASIDs"), the A5b exception of
PCI Express to PCI/PCI-X bridges, and traffic classes (the caller checks
one class at a time). A completion for an I/O or Configuration Write looks
like any completion without data: D2b applies only when the caller says so
(``completes`` in :func:`legal_pass`, ``completes_write`` in
:func:`check_order`).
"""

from bisect import bisect_left
from collections import defaultdict, deque
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from .tlp import OrderingClass, Tlp, TlpType, payload_size_from_header

__all__ = ["Rule", "Cell", "CELLS", "CELL_IDS", "cell_of", "legal_pass", "Violation",
           "OrderCheck", "check_order", "table_markdown", "STAMP_BITS", "order_stamps",
           "OrderFields", "CHECK_CELLS", "OrderMonitor", "queue_stamps", "monitor_events",
           "CREDIT_CLASSES", "flow_control_need", "take_credit_limit"]

P, NP, CPL = OrderingClass.POSTED, OrderingClass.NON_POSTED, OrderingClass.COMPLETION


class Rule(Enum):
    """What a cell allows the later TLP."""
    MUST_NOT = "No"
    MAY = "Y/N"
    MUST = "Yes"

    @property
    def legal(self):
        """Whether a pass under this rule is legal."""
        return self is not Rule.MUST_NOT


@dataclass(frozen=True)
class Cell:
    """One (sub-)cell of the table: ``id`` as in the specification."""
    id: str
    later: OrderingClass
    earlier: OrderingClass
    rule: Rule
    condition: str


#: Every cell, in table order (rows P, NP, Cpl; columns P, NP, Cpl).
CELLS = (
    Cell("A2a", P, P, Rule.MUST_NOT, "posted after posted (no RO, no IDO exception)"),
    Cell("A2b", P, P, Rule.MAY, "later has RO, or IDO with different Requester IDs"),
    Cell("A3", P, NP, Rule.MUST, "posted must be able to pass non-posted (deadlock)"),
    Cell("A5", P, CPL, Rule.MAY, "posted may pass a completion"),
    Cell("B2a", NP, P, Rule.MUST_NOT, "non-posted after posted (no IDO exception)"),
    Cell("B2b", NP, P, Rule.MAY, "later has IDO and the Requester IDs differ"),
    Cell("B3", NP, NP, Rule.MAY, "non-posted may pass non-posted"),
    Cell("B5", NP, CPL, Rule.MAY, "non-posted may pass a completion"),
    Cell("D2a", CPL, P, Rule.MUST_NOT, "completion after posted (no exception)"),
    Cell("D2b", CPL, P, Rule.MAY, "later has RO; or IDO with Completer ID != the posted "
         "Requester ID; or completes an I/O or Configuration Write"),
    Cell("D3", CPL, NP, Rule.MUST, "completion must be able to pass non-posted (deadlock)"),
    Cell("D5a", CPL, CPL, Rule.MAY, "completions of different transactions"),
    Cell("D5b", CPL, CPL, Rule.MUST_NOT, "completions of the same transaction (Requester ID, "
         "Tag): split completions stay in order"),
)
CELL_IDS = tuple(cell.id for cell in CELLS)
_BY_ID = {cell.id: cell for cell in CELLS}

#: Width of the order stamp a bridge carries in each TLP's prefix
#: (:data:`tlpoe.models.wire.TLP_PREFIX` ``order_stamp``).
STAMP_BITS = 16


def order_stamps(tlps, first=0):
    """Each TLP's order stamp: the number of posted TLPs before it in
    ``tlps`` (ingress order; :class:`~tlpoe.models.tlp.Tlp` objects), plus
    ``first``, modulo ``2**STAMP_BITS``. For a posted TLP this is its own
    index among the posted TLPs, which is what the ordering checker needs."""
    stamps, posted = [], first
    for tlp in tlps:
        stamps.append(posted % (1 << STAMP_BITS))
        posted += tlp.ordering_class is P
    return stamps


#: The flow-control classes in the order of the bridge header's credit fields.
CREDIT_CLASSES = (P, NP, CPL)


def flow_control_need(tlp):
    """``(class, data_credits)`` a TLP (``bytes``) consumes at its receiver:
    its ordering class and its payload in 16-byte units (PCIe flow control:
    one header credit per TLP, one data credit per 4 DW of payload)."""
    payload = payload_size_from_header(tlp[:4])
    return Tlp.unpack(tlp).ordering_class, -(-payload // 16)


def take_credit_limit(limit, advertised, consumed, bits, enforce=True):
    """The bridge's rule for one credit field of a received frame, as the RTL
    applies it (``rtl/queues/credits.py`` ``PeerCredits``): ``(new limit, invalid)``.

    All values are modulo ``2**bits``. An ``advertised`` limit behind the
    current ``limit`` (in the half of the counter before it) is an older
    value from a late frame and is ignored. One ahead of it is taken, unless
    (``enforce``: credits enabled) it runs more than half the counter past
    ``consumed``, the credits sent so far: no receiver's buffer gives that
    much, and PCIe's test ``(limit - consumed - need) mod 2**bits <=
    2**(bits-1)`` would read such a limit as exhausted and every later one as
    older. Such a limit is ignored and ``invalid`` is True."""
    half, mask = 1 << (bits - 1), (1 << bits) - 1
    if (advertised - limit) & mask >= half:
        return limit, False
    if enforce and (advertised - consumed) & mask > half:
        return limit, True
    return advertised, False


#: Request types whose completion may pass posted requests (D2b).
_WRITE_REQUESTS = frozenset({TlpType.IOWr, TlpType.CfgWr0, TlpType.CfgWr1})


def _ido_ids_differ(later: Tlp, earlier: Tlp):
    """IDO's condition: the later's own ID (Completer ID for a completion,
    else Requester ID) differs from the earlier request's Requester ID."""
    own = later.completer_id if later.ordering_class is CPL else later.requester_id
    return later.ido and int(own) != int(earlier.requester_id)


def cell_of(later: Tlp, earlier: Tlp, completes=None):
    """The :class:`Cell` that governs ``later`` passing ``earlier``.
    ``completes``: the request type that ``later`` completes, when known."""
    row, col = later.ordering_class, earlier.ordering_class
    if row is P:
        if col is P:
            return _BY_ID["A2b" if later.ro or _ido_ids_differ(later, earlier) else "A2a"]
        return _BY_ID["A3" if col is NP else "A5"]
    if row is NP:
        if col is P:
            return _BY_ID["B2b" if _ido_ids_differ(later, earlier) else "B2a"]
        return _BY_ID["B3" if col is NP else "B5"]
    if col is P:
        relaxed = later.ro or _ido_ids_differ(later, earlier) or completes in _WRITE_REQUESTS
        return _BY_ID["D2b" if relaxed else "D2a"]
    if col is NP:
        return _BY_ID["D3"]
    same = (int(later.requester_id), later.tag) == (int(earlier.requester_id), earlier.tag)
    return _BY_ID["D5b" if same else "D5a"]


def legal_pass(later: Tlp, earlier: Tlp, completes=None):
    """Whether ``later`` (arrived after ``earlier``) may leave before it."""
    return cell_of(later, earlier, completes).rule.legal


@dataclass(frozen=True)
class Violation:
    """``later`` (ingress index) left before ``earlier`` (ingress index)
    where ``cell`` forbids it; ``egress_index`` is where ``later`` left."""
    later: int
    earlier: int
    egress_index: int
    cell: str

    def describe(self, tlps):
        return (f"ingress #{self.later} ({tlps[self.later]}) passed ingress "
                f"#{self.earlier} ({tlps[self.earlier]}) at egress #{self.egress_index}: "
                f"cell {self.cell} forbids it")


@dataclass
class OrderCheck:
    """What :func:`check_order` found. ``cell_hits`` counts, per cell id,
    the pairs of TLPs that met in that cell: every pass, and for each
    egress TLP and each class, the last TLP of that class out before it if
    it also arrived before it (a pair that kept its order). ``missing`` lists ingress indices never seen at the
    egress, ``unexpected`` egress indices matching no ingress TLP."""
    violations: list
    passes: int
    cell_hits: dict
    missing: list
    unexpected: list

    @property
    def ok(self):
        return not (self.violations or self.missing or self.unexpected)


def check_order(ingress, egress, completes_write=None):
    """Check the ``egress`` order of TLPs against their ``ingress`` order.

    Both are sequences of TLPs (bytes, or :class:`~tlpoe.models.tlp.Tlp`
    objects, which are packed); an egress TLP is matched to the earliest
    unmatched equal ingress TLP. For every egress TLP, each earlier-ingress
    TLP still waiting is one it passed: the pass is judged by the table
    (:func:`cell_of`, on the fields of :class:`OrderFields`).
    A TLP that never leaves is ``missing``, not a pass: a loss is the
    scoreboard's finding, not an ordering violation.
    ``completes_write``: a set of ingress indices of completions that
    complete an I/O or Configuration Write (D2b). Returns an
    :class:`OrderCheck`. Cost: O(n) plus the passes and the TLPs missing."""
    ingress = [t.pack() if isinstance(t, Tlp) else bytes(t) for t in ingress]
    egress = [t.pack() if isinstance(t, Tlp) else bytes(t) for t in egress]
    completes_write = completes_write or set()
    by_bytes = defaultdict(deque)
    for i, tlp in enumerate(ingress):
        by_bytes[tlp].append(i)
    fields = {}
    skipped = []        # sorted ingress indices below `high` not out yet
    high = -1           # the highest ingress index out so far
    hits = dict.fromkeys(CELL_IDS, 0)
    violations, unexpected, passes = [], [], 0
    last_out = {}           # class -> ingress index of the last TLP of that class out

    def of(i):
        f = fields.get(i)
        if f is None:
            f = fields[i] = OrderFields.of(ingress[i])
        return f
    for k, tlp in enumerate(egress):
        queue = by_bytes.get(tlp)
        if not queue:
            unexpected.append(k)
            continue
        i = queue.popleft()
        if i > high:                        # everything waiting below i was passed
            passed = skipped + list(range(high + 1, i))
            skipped.extend(range(high + 1, i))
            high = i
        else:                               # i itself was waiting
            pos = bisect_left(skipped, i)
            passed = skipped[:pos]
            del skipped[pos]
        later = of(i)
        writes = i in completes_write
        for j in passed:
            cell = _cell_id(later, of(j), writes)
            hits[cell] += 1
            passes += 1
            if cell in _ILLEGAL:
                violations.append(Violation(i, j, k, cell))
        for j in last_out.values():
            if j < i:                       # kept its order behind j
                hits[_cell_id(later, of(j), writes)] += 1
        last_out[later.cls] = i
        fields.pop(i, None)
    missing = skipped + list(range(high + 1, len(ingress)))
    return OrderCheck(violations, passes, hits, missing, unexpected)


_ILLEGAL = frozenset(c.id for c in CELLS if not c.rule.legal)


def _cell_id(later, earlier, writes):
    """:func:`cell_of` on :class:`OrderFields` (``writes``: ``later``
    completes an I/O or Configuration Write)."""
    row, col = later.cls, earlier.cls
    differ = later.ido and later.own != earlier.requester
    if row == 0:
        if col == 0:
            return "A2b" if later.ro or differ else "A2a"
        return "A3" if col == 1 else "A5"
    if row == 1:
        if col == 0:
            return "B2b" if differ else "B2a"
        return "B3" if col == 1 else "B5"
    if col == 0:
        return "D2b" if later.ro or differ or writes else "D2a"
    if col == 1:
        return "D3"
    same = later.requester == earlier.requester and later.tag == earlier.tag
    return "D5b" if same else "D5a"


def table_markdown(hits=None):
    """The table as Markdown, one row per cell, with hit counts if given."""
    lines = ["| Cell | Later | Earlier | Rule | Condition |" + (" Hits |" if hits else ""),
             "|---|---|---|---|---|" + ("---|" if hits else "")]
    for c in CELLS:
        lines.append(f"| {c.id} | {c.later} | {c.earlier} | {c.rule.value} | {c.condition} |"
                     + (f" {hits.get(c.id, 0):,} |" if hits else ""))
    return "\n".join(lines)



# --- the exact checker of one queue: the RTL OrderChecker's twin ---------------------------

def _byte0_table():
    """Byte 0 of a TLP header (Fmt, Type) -> (class number: 0 posted, 1
    non-posted, 2 completion; an I/O or Configuration Write), decoded as
    the RTL does (``rtl/tlp_header.py``): completions are Type 0101x,
    posted requests memory writes and messages, every other byte is a
    non-posted request."""
    table = []
    for b in range(256):
        fmt, code = b >> 5, b & 0x1F
        cls = 2 if code >> 1 == 0b0101 else 0 if (code == 0 and fmt & 2) or code >> 3 == 0b10 \
            else 1
        table.append((cls, fmt == 0b010 and code in (0b00010, 0b00100, 0b00101)))
    return tuple(table)


_BYTE0 = _byte0_table()


class OrderFields(NamedTuple):
    """What the ordering checker judges a TLP by, from its first 12 header
    bytes: ``cls`` (0 posted, 1 non-posted, 2 completion), ``ro``, ``ido``,
    ``own`` (DW 1's ID: the Requester ID of a request, the Completer ID of a
    completion), ``requester`` and ``tag`` (the transaction: a completion's
    from DW 2, a request's from DW 1) and ``writes`` (an I/O or
    Configuration Write, whose completion may pass posted requests, D2b)."""
    cls: int
    ro: bool
    ido: bool
    own: int
    requester: int
    tag: int
    writes: bool

    @classmethod
    def of(cls, tlp):
        """The fields of a TLP (``bytes`` from its first DW, or a :class:`Tlp`)."""
        h = tlp.pack()[:12] if isinstance(tlp, Tlp) else bytes(tlp[:12])
        if len(h) < 12:
            h = h + bytes(12 - len(h))
        k, writes = _BYTE0[h[0]]
        t98 = (h[1] >> 7 & 1) << 9 | (h[1] >> 3 & 1) << 8
        own = h[4] << 8 | h[5]
        if k == 2:
            requester, tag = h[8] << 8 | h[9], t98 | h[10]
        else:
            requester, tag = own, t98 | h[6]
        return cls(k, bool(h[2] & 0x20), bool(h[1] & 0x04), own, requester, tag, writes)


#: The checker's cells, in the order of its ``by_cell`` counters (the illegal ones).
CHECK_CELLS = ("A2a", "B2a", "D2a", "D5b")


def queue_stamps(tlps):
    """Each TLP's stamps at a queue's egress, for its ordering checker:
    ``(posted, completions)`` that arrived before it (in ``tlps``, arrival
    order), as :class:`~tlpoe.rtl.queues.classq.ClassQueues` counts them."""
    out, counts = [], [0, 0, 0]
    for tlp in tlps:
        out.append((counts[0], counts[2]))
        counts[OrderFields.of(tlp).cls] += 1
    return out


class OrderMonitor:
    """The ordering checker of one queue (``rtl/queues/order_check.py``
    ``OrderChecker``), TLP by TLP: its verdicts and counters are the RTL's.

    :meth:`ingress` numbers the TLPs in arrival order and gives each its
    stamps (:meth:`stamps`: the posted TLPs and completions that arrived
    before it, as the queue carries them to its egress); :meth:`egress`
    judges a TLP leaving against every posted TLP and every completion
    that arrived before it and is still inside: those it passed. With the
    fields of both (:class:`OrderFields`) every cell of the table is
    decided exactly, IDO and D5b included. D2b's third case needs the
    request a completion answers: :meth:`request` is told the non-posted
    requests of the opposite direction, and a per-tag table (``2**tag_bits``
    entries, each a Requester ID and a bit) keeps which of them are I/O or
    Configuration Writes. A request of the same requester with the same
    tag replaces the entry (the earlier one is then complete); one of
    another requester replaces it only if it is a write itself
    (``write_collisions``: two writes of one tag from different requesters
    at once, which PCIe's single issuer of I/O and Configuration requests,
    the Root Complex, never makes).

    Posted TLPs and completions inside are kept in two rings of ``window``
    positions, at their index among their kind modulo ``window``; non-posted
    TLPs take none. An arrival onto a position still inside replaces it
    (``window_errors``); a posted TLP or completion leaving from a position
    with nothing inside is not judged (``stamp_errors``)."""

    def __init__(self, window=64, tag_bits=10):
        if not isinstance(window, int) or window < 2 or window & (window - 1):
            raise ValueError(f"window must be a power of two of at least 2, not {window!r}")
        if tag_bits not in (8, 10):
            raise ValueError(f"tag_bits must be 8 or 10, not {tag_bits!r}")
        self.window, self.tag_bits = window, tag_bits
        self.arrivals = 0
        self.counts = [0, 0, 0]           # posted, non-posted, completions in so far
        self.rings = ({}, None, {})       # per kind: index -> OrderFields, inside
        self.at = ({}, None, {})          # per kind: position -> the index inside there
        self.arrived = {}                 # arrival number -> (stamps, fields), not out yet
        self.writes = {}                  # tag -> (Requester ID, an I/O or Cfg write)
        self.tlps_checked = self.violations = 0
        self.by_cell = [0] * len(CHECK_CELLS)
        self.window_errors = self.stamp_errors = self.write_collisions = 0
        self.first = None                 # (cell, posted stamp, tag) of the first violation

    def ingress(self, tlp):
        """A TLP (bytes or :class:`Tlp`) arrives; returns its arrival number."""
        f = OrderFields.of(tlp)
        n = self.arrivals
        self.arrived[n] = ((self.counts[0], self.counts[2]), f)
        self.enter(f)
        self.arrivals = n + 1
        return n

    def enter(self, f):
        """A TLP of fields ``f`` arrives: :meth:`ingress` without the
        arrival's record (a checker that reads the queue's stamps)."""
        if f.cls != 1:
            index = self.counts[f.cls]
            pos = index % self.window
            old = self.at[f.cls].get(pos)
            if old is not None:
                self.window_errors += 1
                del self.rings[f.cls][old]
            self.at[f.cls][pos] = index
            self.rings[f.cls][index] = f
        self.counts[f.cls] += 1

    def stamps(self, arrival):
        """``(posted, completions)`` that arrived before TLP ``arrival`` (a
        posted TLP's own index, a completion's), as the queue stamps it."""
        return self.arrived[arrival][0]

    def request(self, tlp):
        """A non-posted request of the opposite direction (whose completions
        this queue carries)."""
        f = OrderFields.of(tlp)
        if f.cls != 1:
            return
        tag = f.tag % (1 << self.tag_bits)
        held = self.writes.get(tag)
        if f.writes:
            if held is not None and held[1] and held[0] != f.requester:
                self.write_collisions += 1
            self.writes[tag] = (f.requester, True)
        elif held is None or held[0] == f.requester:
            self.writes[tag] = (f.requester, False)

    def egress(self, arrival, tlp=None):
        """The TLP with ``arrival`` number leaves (``tlp``: its bytes as they
        leave; the fields recorded at its arrival when omitted). Returns the
        cells of :data:`CHECK_CELLS` it broke (an empty tuple: legal)."""
        stamps, f = self.arrived.pop(arrival)
        return self.leave(stamps, OrderFields.of(tlp) if tlp is not None else f)

    def leave(self, stamps, f, completes=None):
        """A TLP of fields ``f`` leaves with ``stamps`` (``(posted,
        completions)`` before it, as the queue carries them, in the
        monitor's count): :meth:`egress` without the arrival's record, for
        a checker that reads the queue's stamps. ``completes``: whether it
        answers an I/O or Configuration Write (D2b), if decided already
        (default: the table now). Returns the cells it broke."""
        sp, sc = stamps
        if f.cls != 1:
            own = (sp, None, sc)[f.cls]
            index = self.at[f.cls].pop(own % self.window, None)
            if index is None:
                self.stamp_errors += 1
                return ()
            del self.rings[f.cls][index]
        self.tlps_checked += 1
        posted = (e for i, e in self.rings[0].items() if i < sp)
        cpls = (e for i, e in self.rings[2].items() if i < sc) if f.cls == 2 else ()
        bad = self.judge(f, posted, cpls, completes)
        if bad:
            self.violations += 1
            for cell in bad:
                self.by_cell[CHECK_CELLS.index(cell)] += 1
            if self.first is None:
                self.first = (bad[0], sp, f.tag)
        return bad

    def completes_write(self, f):
        """Whether completion ``f`` answers an I/O or Configuration Write."""
        held = self.writes.get(f.tag % (1 << self.tag_bits))
        return held is not None and held[1] and held[0] == f.requester

    def judge(self, f, posted, cpls=(), completes=None):
        """The cells ``f`` breaks by leaving before the earlier ``posted``
        TLPs and ``cpls`` (completions); ``completes`` as :meth:`leave`'s."""
        if f.cls == 2:
            if completes is None:
                completes = self.completes_write(f)
            free, cell = f.ro or completes, "D2a"
        else:
            free, cell = f.cls == 0 and f.ro, ("A2a", "B2a")[f.cls]
        bad_posted = not free and any(not (f.ido and e.requester != f.own) for e in posted)
        d5b = any(e.requester == f.requester and e.tag == f.tag for e in cpls)
        return tuple(c for c, hit in ((cell, bad_posted), ("D5b", d5b)) if hit)


def monitor_events(events, window=64):
    """Run :class:`OrderMonitor` over a queue's ``events`` (``("in", tlp)``,
    ``("out", arrival)``, ``("req", tlp)``, as
    :func:`tlpoe.tb.stimulus.ordering_trace` makes them): returns
    ({arrival: the cells it broke}, the monitor)."""
    mon = OrderMonitor(window)
    verdicts = {}
    for kind, x in events:
        if kind == "in":
            mon.ingress(x)
        elif kind == "req":
            mon.request(x)
        else:
            verdicts[x] = set(mon.egress(x))
    return verdicts, mon
