"""Address / ID translation and access control on one host's link
(the RTL of :mod:`tlpoe.models.translate`, which defines the rules).

:class:`Translator` sits in the device-side bridge between the link and
the GPU chassis' PCIe switch: ``net_in`` → ``dev_out`` applies
:func:`~tlpoe.models.translate.to_device` to what the host sends,
``dev_in`` → ``net_out`` applies :func:`~tlpoe.models.translate.to_host` to
what goes back. Denied TLPs are consumed whole, never delivered, and
counted by :class:`~tlpoe.models.translate.Reason`.

The table (``windows`` address windows, ``functions`` assigned functions,
``host_rid``, ``local_rid``) is written one entry at a time through the
``win_*`` and ``fn_*`` ports (a CSR block or the pool manager drives them).
Bases are expected aligned to their window's size, as
:class:`~tlpoe.models.translate.Window` checks; the RTL ignores the low bits.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..models.translate import Reason
from .streams import TlpBeat, check_width, tlp_stream

__all__ = ["Translator"]

HEADER_BYTES = 16


class _Window(data.StructLayout):
    def __init__(self):
        super().__init__({"valid": 1, "host_base": 64, "mask": 64, "device_base": 64})


class _Function(data.StructLayout):
    def __init__(self):
        super().__init__({"valid": 1, "host_id": 16, "device_id": 16})


def _be(vector, first, size):
    """Bytes ``first .. first+size-1`` of byte vector ``vector`` as a big-endian value."""
    return Cat(*(vector[8 * (first + size - 1 - i):8 * (first + size - i)] for i in range(size)))


def _put_be(m, vector, first, size, value):
    """Statements writing ``value`` big-endian into bytes ``first ..`` of ``vector``."""
    for i in range(size):
        m.d.comb += vector[8 * (first + i):8 * (first + i + 1)].eq(
            value[8 * (size - 1 - i):8 * (size - i)])


def _first_match(m, cases):
    """The statements of the first ``(condition, statements)`` whose condition holds."""
    for i, (condition, statements) in enumerate(cases):
        with (m.If if i == 0 else m.Elif)(condition):
            m.d.comb += statements


class _Decode:
    """Fields of a TLP header (a 16-byte vector, byte 0 = Fmt/Type)."""

    def __init__(self, m, hdr):
        byte0 = hdr[0:8]
        self.fmt4 = byte0[5]                     # Fmt[0]: 4-DW header
        typ = byte0[0:5]
        self.memory = (typ == 0b00000) | (typ == 0b00001) | (typ[2:5] == 0b011) & (typ[0:2] != 0b11)
        self.config = typ[1:5] == 0b0010
        self.completion = typ[1:5] == 0b0101
        length = Cat(hdr[24:32], hdr[16:18])
        self.nbytes = Signal(13)
        m.d.comb += self.nbytes.eq(Mux(length == 0, 1024, length) << 2)
        self.id_4_5 = _be(hdr, 4, 2)             # Requester ID (requests), Completer ID (cpl)
        self.id_8_9 = _be(hdr, 8, 2)             # Cfg target, or a completion's Requester ID
        self.address = Signal(64)
        addr32 = _be(hdr, 8, 4)
        addr64 = _be(hdr, 8, 8)
        m.d.comb += self.address.eq(Mux(self.fmt4, addr64, addr32) & ~3)    # not the PH bits


class _HeaderPath(wiring.Component):
    """A TLP stream with each TLP's header judged and rewritten in flight.

    ``decide(m, hdr)`` returns ``(forward, reason, new_hdr)`` from the
    16-byte header vector, or ``(forward, reason, new_hdr, route)`` with
    ``routes`` > 1: ``route`` (an output, steady from a TLP's first beat
    to its last) then says where the TLP goes. The path holds a TLP's first beat until its whole
    header is in (the second beat too at 64 bits), then sends the rewritten
    beats or swallows the TLP. One beat per cycle, no bubble between TLPs.
    """

    def __init__(self, width, decide, *, routes=1, reasons=len(Reason)):
        check_width(width)
        self.width, self.decide, self.routes, self.reasons = width, decide, routes, reasons
        self.stages = 1 if width >= 8 * HEADER_BYTES else 2
        super().__init__({
            "tlp_in": In(tlp_stream(width)),
            "tlp_out": Out(tlp_stream(width)),
            "route": Out(range(max(2, routes))),
            "forwarded": Out(32),
            "denied": Out(data.ArrayLayout(32, reasons)),
        })

    def elaborate(self, platform):
        m = Module()
        W, Wb = self.width, self.width // 8
        layout = TlpBeat(W)
        n = self.stages
        valid = [Signal(name=f"s{i}_valid") for i in range(n)]      # n-1 is the output stage
        beat = [Signal(layout, name=f"s{i}_beat") for i in range(n)]
        out_v, out_b = valid[-1], beat[-1]

        first = Signal(init=1)          # the output stage holds a TLP's first beat
        index = Signal(range(n + 1))    # beat number within the TLP at the output (saturating)
        dropping = Signal()             # swallowing the rest of a denied TLP
        pending = Signal(8 * HEADER_BYTES)      # the rewritten header, for later beats

        # the header as it stands in the pipeline (output stage first)
        hdr = Signal(8 * HEADER_BYTES)
        if n == 1:
            m.d.comb += hdr.eq(out_b.data[:8 * HEADER_BYTES])
        else:
            m.d.comb += hdr.eq(Cat(out_b.data, beat[0].data))
        complete = Signal()             # every header byte there is is in
        m.d.comb += complete.eq(Const(1) if n == 1 else (valid[0] | out_b.last))
        decided = self.decide(m, hdr)
        forward, reason, new_hdr = decided[:3]
        route_held = Signal.like(self.route)
        if self.routes > 1:
            m.d.comb += self.route.eq(Mux(first, decided[3], route_held))

        judge = Signal()                # the first beat is judged this cycle
        m.d.comb += judge.eq(out_v & first & complete)
        swallow = Signal()
        m.d.comb += swallow.eq(out_v & ((judge & ~forward) | (~first & dropping)))
        header_now = Signal(8 * HEADER_BYTES)
        m.d.comb += header_now.eq(Mux(first, new_hdr, pending))
        lanes = Signal(W)
        m.d.comb += lanes.eq(out_b.data)
        for k in range(-(-HEADER_BYTES // Wb)):
            lo, hi = k * W, min((k + 1) * W, 8 * HEADER_BYTES)
            with m.If(index == k):
                m.d.comb += lanes[:hi - lo].eq(header_now[lo:hi])
        m.d.comb += [
            self.tlp_out.valid.eq(out_v & ~swallow & (~first | judge)),
            self.tlp_out.payload.data.eq(lanes),
            self.tlp_out.payload.keep.eq(out_b.keep),
            self.tlp_out.payload.last.eq(out_b.last),
        ]
        leave = Signal()                # the output stage's beat goes (sent or swallowed)
        m.d.comb += leave.eq(swallow | (self.tlp_out.valid & self.tlp_out.ready))
        with m.If(leave):
            m.d.sync += [first.eq(out_b.last), index.eq(Mux(out_b.last, 0,
                                                            Mux(index == n, n, index + 1)))]
            with m.If(judge):
                m.d.sync += [dropping.eq(~forward & ~out_b.last), pending.eq(new_hdr),
                             route_held.eq(self.route)]
                with m.If(forward):
                    m.d.sync += self.forwarded.eq(self.forwarded + 1)
                with m.Else():
                    with m.Switch(reason):
                        for why in range(self.reasons):
                            with m.Case(why):
                                m.d.sync += self.denied[why].eq(self.denied[why] + 1)
            with m.Elif(out_b.last):
                m.d.sync += dropping.eq(0)

        # the pipeline moves when the output stage empties
        take = [Signal(name=f"s{i}_take") for i in range(n)]
        m.d.comb += take[-1].eq(~out_v | leave)
        for i in range(n - 2, -1, -1):
            m.d.comb += take[i].eq(~valid[i] | take[i + 1])
        m.d.comb += self.tlp_in.ready.eq(take[0])
        sources = [(self.tlp_in.valid, self.tlp_in.payload)] + list(zip(valid, beat))[:-1]
        for i, (src_valid, src_beat) in enumerate(sources):
            with m.If(take[i]):
                m.d.sync += [valid[i].eq(src_valid), beat[i].eq(src_beat)]
        return m


class Translator(wiring.Component):
    """Both directions of one host's link (see the module doc).

    Ports: ``net_in`` → ``dev_out``, ``dev_in`` → ``net_out`` (TLP
    streams); the table writes ``win_we`` with ``win_index``, ``win_valid``,
    ``win_host_base``, ``win_size_log2`` (12..63), ``win_device_base``, and
    ``fn_we`` with ``fn_index``, ``fn_valid``, ``fn_host_id``,
    ``fn_device_id``; ``host_rid``, ``local_rid``; counters per direction
    ``to_device_forwarded``, ``to_device_denied`` (per Reason),
    ``to_host_forwarded``, ``to_host_denied``.
    """

    def __init__(self, width, *, windows=4, functions=4):
        check_width(width)
        for name, value in (("windows", windows), ("functions", functions)):
            if not isinstance(value, int) or not 1 <= value <= 64:
                raise ValueError(f"{name} must be 1..64 table entries, not {value!r}")
        self.width, self.n_windows, self.n_functions = width, windows, functions
        self.to_device = _HeaderPath(width, self._to_device)
        self.to_host = _HeaderPath(width, self._to_host)
        super().__init__({
            "net_in": In(tlp_stream(width)),
            "dev_out": Out(tlp_stream(width)),
            "dev_in": In(tlp_stream(width)),
            "net_out": Out(tlp_stream(width)),
            "win_we": In(1), "win_index": In(range(windows)), "win_valid": In(1),
            "win_host_base": In(64), "win_size_log2": In(6), "win_device_base": In(64),
            "fn_we": In(1), "fn_index": In(range(functions)), "fn_valid": In(1),
            "fn_host_id": In(16), "fn_device_id": In(16),
            "host_rid": In(16), "local_rid": In(16),
            "to_device_forwarded": Out(32),
            "to_device_denied": Out(data.ArrayLayout(32, len(Reason))),
            "to_host_forwarded": Out(32),
            "to_host_denied": Out(data.ArrayLayout(32, len(Reason))),
        })

    @staticmethod
    def table_writes(table):
        """The port values that program ``table`` (an
        :class:`~tlpoe.models.translate.AccessTable`): one dict of
        ``{port name: value}`` per clock cycle, windows then functions,
        each with its write enable; ``host_rid`` and ``local_rid`` are set
        with the first. Drive them in order, then clear ``win_we`` and
        ``fn_we``."""
        cycles = []
        for i, w in enumerate(table.windows):
            cycles.append({"win_index": i, "win_valid": 1, "win_host_base": w.host_base,
                           "win_size_log2": w.size.bit_length() - 1,
                           "win_device_base": w.device_base, "win_we": 1, "fn_we": 0})
        for i, f in enumerate(table.functions):
            cycles.append({"fn_index": i, "fn_valid": 1, "fn_host_id": f.host_id,
                           "fn_device_id": f.device_id, "fn_we": 1, "win_we": 0})
        if cycles:
            cycles[0].update(host_rid=table.host_rid, local_rid=table.local_rid)
        return cycles

    # --- the rules, as hardware -----------------------------------------------------
    def _to_device(self, m, hdr):
        d = _Decode(m, hdr)
        new = Signal(8 * HEADER_BYTES)
        m.d.comb += new.eq(hdr)
        forward, reason = Signal(), Signal(range(len(Reason)))
        last_byte = Signal(64)
        m.d.comb += last_byte.eq(d.address + d.nbytes - 1)
        hit, translated = Signal(), Signal(64)
        _first_match(m, [
            (w.valid & ((d.address & w.mask) == (w.host_base & w.mask)) &
             ((last_byte & w.mask) == (w.host_base & w.mask)),
             [hit.eq(1), translated.eq((d.address & ~w.mask) | (w.device_base & w.mask))])
            for w in self.windows])
        high = translated[32:] != 0
        fn_hit, fn_device = self._function(m, d.id_8_9, by_host=True)
        with m.If(d.memory):
            with m.If(hit & (high == d.fmt4)):
                m.d.comb += forward.eq(1)
                _put_be(m, new, 4, 2, self.local_rid)
                with m.If(d.fmt4):
                    _put_be(m, new, 8, 8, Cat(hdr[8 * 15:8 * 15 + 2], translated[2:]))
                with m.Else():
                    _put_be(m, new, 8, 4, Cat(hdr[8 * 11:8 * 11 + 2], translated[2:32]))
            with m.Else():
                m.d.comb += reason.eq(Reason.ADDRESS)
        with m.Elif(d.config):
            with m.If(fn_hit):
                m.d.comb += forward.eq(1)
                _put_be(m, new, 4, 2, self.local_rid)
                _put_be(m, new, 8, 2, fn_device)
            with m.Else():
                m.d.comb += reason.eq(Reason.FUNCTION)
        with m.Elif(d.completion):      # of a device's read: its requester back to the chassis ID
            with m.If(fn_hit):
                m.d.comb += forward.eq(1)
                _put_be(m, new, 8, 2, fn_device)
            with m.Else():
                m.d.comb += reason.eq(Reason.REQUESTER)
        with m.Else():
            m.d.comb += reason.eq(Reason.TYPE)
        return forward, reason, new

    def _to_host(self, m, hdr):
        d = _Decode(m, hdr)
        new = Signal(8 * HEADER_BYTES)
        m.d.comb += new.eq(hdr)
        forward, reason = Signal(), Signal(range(len(Reason)))
        with m.If(d.completion):
            completer_hit, completer_host = self._function(m, d.id_4_5, by_host=False)
            with m.If(d.id_8_9 != self.local_rid):
                m.d.comb += reason.eq(Reason.REQUESTER)
            with m.Elif(~completer_hit):
                m.d.comb += reason.eq(Reason.FUNCTION)
            with m.Else():
                m.d.comb += forward.eq(1)
                _put_be(m, new, 8, 2, self.host_rid)
                _put_be(m, new, 4, 2, completer_host)
        with m.Elif(d.memory):
            requester_hit, requester_host = self._function(m, d.id_4_5, by_host=False)
            with m.If(requester_hit):
                m.d.comb += forward.eq(1)
                _put_be(m, new, 4, 2, requester_host)
            with m.Else():
                m.d.comb += reason.eq(Reason.REQUESTER)
        with m.Else():
            m.d.comb += reason.eq(Reason.TYPE)
        return forward, reason, new

    def _function(self, m, ident, *, by_host):
        """(hit, the other ID) of the first valid function whose host ID
        (``by_host``) or device ID equals ``ident``."""
        hit, other = Signal(), Signal(16)
        cases = []
        for f in self.functions:
            key, value = (f.host_id, f.device_id) if by_host else (f.device_id, f.host_id)
            cases.append((f.valid & (key == ident), [hit.eq(1), other.eq(value)]))
        _first_match(m, cases)
        return hit, other

    def elaborate(self, platform):
        m = Module()
        # the table (built before the paths elaborate: their rules read it)
        for i, w in enumerate(self.windows):
            with m.If(self.win_we & (self.win_index == i)):
                mask = Signal(64, name=f"mask_{i}")
                m.d.comb += mask.eq(Const(2 ** 64 - 1, 64) << self.win_size_log2)
                m.d.sync += [w.valid.eq(self.win_valid), w.host_base.eq(self.win_host_base),
                             w.mask.eq(mask), w.device_base.eq(self.win_device_base)]
        for i, f in enumerate(self.functions):
            with m.If(self.fn_we & (self.fn_index == i)):
                m.d.sync += [f.valid.eq(self.fn_valid), f.host_id.eq(self.fn_host_id),
                             f.device_id.eq(self.fn_device_id)]
        m.submodules.to_device = self.to_device
        m.submodules.to_host = self.to_host
        wiring.connect(m, wiring.flipped(self.net_in), self.to_device.tlp_in)
        wiring.connect(m, self.to_device.tlp_out, wiring.flipped(self.dev_out))
        wiring.connect(m, wiring.flipped(self.dev_in), self.to_host.tlp_in)
        wiring.connect(m, self.to_host.tlp_out, wiring.flipped(self.net_out))
        m.d.comb += [
            self.to_device_forwarded.eq(self.to_device.forwarded),
            self.to_device_denied.eq(self.to_device.denied),
            self.to_host_forwarded.eq(self.to_host.forwarded),
            self.to_host_denied.eq(self.to_host.denied),
        ]
        return m

    @property
    def windows(self):
        if not hasattr(self, "_windows"):
            self._windows = [Signal(_Window(), name=f"window_{i}")
                             for i in range(self.n_windows)]
        return self._windows

    @property
    def functions(self):
        if not hasattr(self, "_functions"):
            self._functions = [Signal(_Function(), name=f"function_{i}")
                               for i in range(self.n_functions)]
        return self._functions


class TlpMerge(wiring.Component):
    """``n`` TLP streams (ports ``in0`` ...) into one, TLP by TLP, round
    robin: a TLP once offered goes out whole before another is offered;
    each input keeps its own order."""

    def __init__(self, width, n):
        check_width(width)
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be at least 1 input, not {n!r}")
        self.width, self.n = width, n
        super().__init__({**{f"in{i}": In(tlp_stream(width)) for i in range(n)},
                          "tlp_out": Out(tlp_stream(width))})

    def elaborate(self, platform):
        m = Module()
        inputs = [getattr(self, f"in{i}") for i in range(self.n)]
        busy = Signal()
        cur = Signal(range(max(2, self.n)))
        turn = Signal(range(max(2, self.n)))
        pick = Signal.like(cur)
        # the first valid input from `turn` on
        for t in range(self.n):
            with m.If(turn == t):
                order = [(t + k) % self.n for k in range(self.n)]
                for k, i in enumerate(reversed(order)):
                    with m.If(inputs[i].valid):
                        m.d.comb += pick.eq(i)
        sel = Signal.like(cur)
        m.d.comb += sel.eq(Mux(busy, cur, pick))
        out = self.tlp_out
        with m.Switch(sel):
            for i, inp in enumerate(inputs):
                with m.Case(i):
                    m.d.comb += [out.valid.eq(inp.valid), out.payload.eq(inp.payload),
                                 inp.ready.eq(out.ready)]
        # A TLP is granted when first offered, taken or not: the beat on offer
        # must not change under backpressure (the stream rule), so a later
        # arrival on another input cannot displace it.
        with m.If(~busy & out.valid):
            m.d.sync += [busy.eq(1), cur.eq(pick)]
        with m.If(out.valid & out.ready & out.payload.last):
            m.d.sync += [busy.eq(0), turn.eq(Mux(sel == self.n - 1, 0, sel + 1))]
        return m


class DeviceFabric(wiring.Component):
    """The GPU chassis' side of ``hosts`` links: one :class:`Translator`
    per link, their chassis-bound TLPs merged into ``pcie_out`` (to the
    PCIe switch's upstream port), and ``pcie_in`` routed to the link it is
    for:

    * a completion to the link whose ``local_rid`` is its Requester ID;
    * a request (DMA, MSI-X) to the link that has its requester among its
      assigned functions;
    * anything else (a GPU not assigned to any host, a completion for no
      link) is dropped and counted in ``unrouted``; never delivered.

    Ports: ``net{i}_in`` / ``net{i}_out`` (the TLP side of link *i*'s
    bridge), ``pcie_out`` / ``pcie_in``; ``tbl_link`` selects the link whose
    table the ``win_*`` / ``fn_*`` writes go to; ``link{i}_host_rid``,
    ``link{i}_local_rid``; counters ``link{i}_to_device_forwarded`` etc.
    (as :class:`Translator`'s), ``routed`` and ``unrouted``.
    """

    def __init__(self, width, *, hosts=2, windows=4, functions=4):
        check_width(width)
        if not isinstance(hosts, int) or not 1 <= hosts <= 16:
            raise ValueError(f"hosts must be 1..16 links, not {hosts!r}")
        self.width, self.hosts = width, hosts
        self.translators = [Translator(width, windows=windows, functions=functions)
                            for _ in range(hosts)]
        self.merge = TlpMerge(width, hosts)
        self.router = _HeaderPath(width, self._route, routes=hosts, reasons=1)
        table = {name: member for name, member in self.translators[0].signature.members.items()
                 if name.startswith(("win_", "fn_"))}
        per_link = {}
        for i in range(hosts):
            per_link.update({f"net{i}_in": In(tlp_stream(width)),
                             f"net{i}_out": Out(tlp_stream(width)),
                             f"link{i}_host_rid": In(16), f"link{i}_local_rid": In(16)})
            for name in ("to_device_forwarded", "to_device_denied", "to_host_forwarded",
                         "to_host_denied"):
                per_link[f"link{i}_{name}"] = self.translators[0].signature.members[name]
        super().__init__({
            "pcie_out": Out(tlp_stream(width)),
            "pcie_in": In(tlp_stream(width)),
            "tbl_link": In(range(max(2, hosts))),
            **table, **per_link,
            "routed": Out(32), "unrouted": Out(32),
        })

    def _route(self, m, hdr):
        d = _Decode(m, hdr)
        claims = []
        for t in self.translators:
            completion_for = d.completion & (d.id_8_9 == t.local_rid)
            hit, _ = t._function(m, d.id_4_5, by_host=False)
            claims.append(completion_for | (d.memory & hit))
        route, forward = Signal(range(max(2, self.hosts))), Signal()
        _first_match(m, [(claim, [route.eq(i), forward.eq(1)])
                         for i, claim in enumerate(claims)])
        return forward, Const(0, 1), hdr, route

    def elaborate(self, platform):
        m = Module()
        m.submodules.merge = self.merge
        m.submodules.router = router = self.router
        for i, t in enumerate(self.translators):
            m.submodules[f"translator{i}"] = t
            wiring.connect(m, wiring.flipped(getattr(self, f"net{i}_in")), t.net_in)
            wiring.connect(m, t.net_out, wiring.flipped(getattr(self, f"net{i}_out")))
            wiring.connect(m, t.dev_out, getattr(self.merge, f"in{i}"))
            m.d.comb += [t.host_rid.eq(getattr(self, f"link{i}_host_rid")),
                         t.local_rid.eq(getattr(self, f"link{i}_local_rid"))]
            for name in t.signature.members:
                if name.startswith(("win_", "fn_")):
                    value = getattr(self, name)
                    if name.endswith("_we"):
                        value = value & (self.tbl_link == i)
                    m.d.comb += getattr(t, name).eq(value)
                elif name.startswith(("to_device_", "to_host_")):
                    m.d.comb += getattr(self, f"link{i}_{name}").eq(getattr(t, name))
            # the router's output steered to this link
            m.d.comb += t.dev_in.payload.eq(router.tlp_out.payload)
            m.d.comb += t.dev_in.valid.eq(router.tlp_out.valid & (router.route == i))
        wiring.connect(m, self.merge.tlp_out, wiring.flipped(self.pcie_out))
        wiring.connect(m, wiring.flipped(self.pcie_in), router.tlp_in)
        ready = Array(t.dev_in.ready for t in self.translators)
        m.d.comb += [router.tlp_out.ready.eq(ready[router.route]),
                     self.routed.eq(router.forwarded), self.unrouted.eq(router.denied[0])]
        return m
