"""Address / ID translation and access control on one host's link
(the RTL of :mod:`tlpoe.models.translate`, which defines the rules).

:class:`Translator` sits in the device-side bridge between the link and
the GPU chassis' PCIe switch: ``net_in`` → ``dev_out`` applies
:meth:`LinkTranslator.from_host <tlpoe.models.translate.LinkTranslator.from_host>`
to what the host sends, ``dev_in`` → ``net_out`` applies ``from_chassis``
to what goes back, and the completions the bridge makes itself (answers to
the host's accesses of BAR registers, Unsupported Request for its denied
non-posted requests) join ``net_out``. Denied TLPs are consumed whole,
never delivered to the other side, and counted by
:class:`~tlpoe.models.translate.Reason`.

The table (``windows`` address windows, ``functions`` assigned functions
with their BAR shadows, ``host_rid``, ``local_rid``) is written one entry
at a time through the ``win_*``, ``fn_*`` and ``fn_bar_*`` ports (a CSR
block or the pool manager drives them; :func:`table_writes`).
Bases are expected aligned to their window's size, as
:class:`~tlpoe.models.translate.Window` checks; the RTL ignores the low bits.
"""

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from ...models.tlp import HEADER_LAYOUTS
from ...models.translate import BAR_REGISTERS, ROM_REGISTER, Reason
from ..streams import TlpBeat, check_width, tlp_stream
from ..tlp_header import TlpHeader
from ..wirefmt import pack_bytes

__all__ = ["Translator", "TlpMerge", "DeviceFabric", "table_writes", "TABLE_WRITE_ENABLES"]

HEADER_BYTES = 16
#: The table ports' write enables: each cycle of :func:`table_writes` sets
#: all of them; clear them all after the last.
TABLE_WRITE_ENABLES = ("win_we", "fn_we", "fn_bar_we")
#: Completions the bridge may hold for the host before it stalls ``net_in``.
REPLY_DEPTH = 2


class _Window(data.StructLayout):
    def __init__(self):
        super().__init__({"valid": 1, "host_base": 64, "mask": 64, "device_base": 64})


class _Function(data.StructLayout):
    def __init__(self):
        super().__init__({"valid": 1, "host_id": 16, "device_id": 16})


class _LocalReply(data.StructLayout):
    """What the to-device path's verdict asks of the completion generator
    and the BAR shadows."""

    def __init__(self, functions):
        super().__init__({
            "reply": 1,                  # the bridge completes this request itself
            "ur": 1,                     # ... with Unsupported Request
            "with_data": 1,              # ... with one DW of data (CplD)
            "header": 8 * HEADER_BYTES,  # the completion (3-DW header, then the DW)
            "shadow_we": 1,              # a BAR write: the shadow takes shadow_value
            "shadow_slot": range(max(2, functions)),
            "shadow_index": 3,
            "shadow_value": 32,
        })


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


def _pick(m, matches, values):
    """(any match, the value of the first match, its index)."""
    hit, value = Signal(), Signal.like(values[0])
    index = Signal(range(max(2, len(matches))))
    _first_match(m, [(match, [hit.eq(1), value.eq(v), index.eq(i)])
                     for i, (match, v) in enumerate(zip(matches, values))])
    return hit, value, index


def _set_bit(m, bits, *, highest):
    """The index of the lowest (or ``highest``) set bit of 4-bit ``bits``, 0 if none."""
    index = Signal(2)
    for i in (range(4) if highest else reversed(range(4))):
        with m.If(bits[i]):                 # the last that holds wins
            m.d.comb += index.eq(i)
    return index


class _Decode(TlpHeader):
    """A TLP header (a 16-byte vector, lane order) as the translator reads
    it: :class:`~tlpoe.rtl.tlp_header.TlpHeader`'s fields and the request
    kinds, the byte count, the configuration register and data, and the
    address as a signal of its own."""

    def __init__(self, m, hdr):
        super().__init__(hdr)
        typ = self.type
        self.atomic = (typ[2:5] == 0b011) & (typ[0:2] != 0b11)
        self.memory = (typ == 0b00000) | (typ == 0b00001) | self.atomic
        self.config = typ[1:5] == 0b0010
        self.read = (typ == 0b00000) & ~self.has_data     # MRd
        self.locked = typ == 0b00001                      # MRdLk
        self.cas = typ == 0b01110
        self.non_posted = (self.read | self.locked | (typ == 0b00010) | self.config
                           | self.atomic)                 # + IORd, IOWr
        self.nbytes = Signal(13)
        m.d.comb += self.nbytes.eq(self.length_dws << 2)
        self.register = self.config_register
        self.cfg_data = hdr[8 * 12:8 * 16]       # a CfgWr's data DW (little-endian)
        self._address = Signal(64, name="address")
        m.d.comb += self._address.eq(TlpHeader.address.fget(self))

    @property
    def address(self):
        return self._address


def _completion_counts(m, d):
    """Byte Count and Lower Address of the completion answering the request
    decoded as ``d``, by the completion rules (as
    :meth:`~tlpoe.models.tlp.Tlp.completion_for` makes them)."""
    length = Signal(11)
    m.d.comb += length.eq(Mux(d.length == 0, 1024, d.length))
    first = _set_bit(m, d.first_be, highest=False)
    first_last = _set_bit(m, d.first_be, highest=True)
    last = _set_bit(m, d.last_be, highest=True)
    byte_count, lower = Signal(13), Signal(7)
    with m.If(d.read | d.locked):
        with m.If(length == 1):
            m.d.comb += byte_count.eq(Mux(d.first_be == 0, 1, first_last - first + 1))
        with m.Else():
            m.d.comb += byte_count.eq((length << 2) - first - (3 - last))
        m.d.comb += lower.eq(Cat(first, d.address[2:7]))
    with m.Elif(d.atomic):
        m.d.comb += [byte_count.eq(Mux(d.cas, length << 1, length << 2)),
                     lower.eq(Cat(Const(0, 2), d.address[2:7]))]
    with m.Else():
        m.d.comb += byte_count.eq(4)
    return byte_count, lower


def _completion_header(m, d, hdr, *, byte_count, lower, completer, ur, with_data, value):
    """The 16-byte completion (3-DW header, then ``value`` as its data DW)
    answering the request ``hdr`` decoded as ``d`` (``byte_count`` and
    ``lower`` from :func:`_completion_counts`): Requester ID, tag, TC and
    Attr (RO, IDO) the request's."""
    header = Signal(8 * HEADER_BYTES)
    completion = pack_bytes(
        HEADER_LAYOUTS["cpl"],
        fmt=Cat(Const(0, 1), with_data, Const(0, 1)),           # 3 DW, with data or not
        type=Cat(d.locked, Const(0b0101, 4)),                    # Cpl(D), or CplLk(D)
        t9=d.field(HEADER_LAYOUTS["mem3"], "t9"), tc=d.tc,
        t8=d.field(HEADER_LAYOUTS["mem3"], "t8"), attr2=d.ido,
        attr=Cat(Const(0, 1), d.ro),                             # RO kept, No Snoop not
        length=with_data, completer_id=completer, status=ur, byte_count=byte_count,
        requester_id=d.requester_id, tag=d.field(HEADER_LAYOUTS["mem3"], "tag"),
        lower_address=lower)
    m.d.comb += header.eq(Cat(completion, Mux(with_data, value, 0)))
    return header


class _Verdict:
    """A path's judgement of the TLP at its judging stage: ``forward`` it
    (with ``header``, None: unchanged) or not, the ``reason`` counted, and
    optionally its ``route`` and a ``stall`` (judge it later)."""

    def __init__(self, forward, reason, header, *, route=None, stall=None):
        self.forward, self.reason, self.header = forward, reason, header
        self.route, self.stall = route, stall


class _Stages:
    """The registers of a path's pipeline, as a rule (``decide``) builds them:
    :meth:`next` takes values of one stage and returns them registered, one
    stage on. Every stage loads when ``advance`` holds, so the values move
    in step with the beats; a rule's verdict is judged at the stage of its
    last :meth:`next` (``count`` stages after the header stage)."""

    def __init__(self, m, advance):
        self.m, self.advance, self.count = m, advance, 0

    def next(self, **values):
        self.count += 1
        regs = {}
        for name, value in values.items():
            if isinstance(value, (list, tuple)):
                regs[name] = [self.register(f"{name}{i}", v) for i, v in enumerate(value)]
            else:
                regs[name] = self.register(name, value)
        return SimpleNamespace(**regs)

    def register(self, name, value):
        if not isinstance(value, data.View):
            value = Value.cast(value)
        reg = Signal(value.shape(), name=f"p{self.count}_{name}")
        with self.m.If(self.advance):
            self.m.d.sync += reg.eq(value)
        return reg


class _HeaderPath(wiring.Component):
    """A TLP stream with each TLP's header judged and rewritten in flight.

    ``decide(stages, hdr)`` builds the rule from the 16-byte header vector
    (registered: the header stage) in stages (:class:`_Stages`) and returns
    a :class:`_Verdict` of its last; with ``routes`` > 1, ``route`` (an
    output, steady from a TLP's first beat to its last) says where the TLP
    goes. The beats move through as many stages as the rule has, all
    together, then into a two-beat output queue; the pipeline advances when
    that queue has room and the verdict's ``stall`` does not hold at a
    TLP's first beat, so ``tlp_in.ready`` is that and never
    ``tlp_out.ready``. At the judging stage the path sends the rewritten
    beats or swallows the TLP, and pulses ``commit`` (the cycle a verdict
    takes effect). One beat per cycle, no bubble between TLPs; at 64 bits a
    TLP's first beat waits for its second (the rest of the header).

    Latency: a TLP's first beat leaves ``2 + stages`` cycles after it came
    (one more at 64 bits, counted from its second beat).
    """

    def __init__(self, width, decide, *, routes=1, reasons=len(Reason)):
        check_width(width)
        self.width, self.decide, self.routes, self.reasons = width, decide, routes, reasons
        super().__init__({
            "tlp_in": In(tlp_stream(width)),
            "tlp_out": Out(tlp_stream(width)),
            "route": Out(range(max(2, routes))),
            "commit": Out(1),
            "forwarded": Out(32),
            "denied": Out(data.ArrayLayout(32, reasons)),
        })

    def _header_stage(self, m, advance):
        """The first stage: (valid, beat, first, header vector), registered;
        at 64 bits a TLP's first beat is held in front until its second
        beat (the header's other half) comes."""
        W, layout = self.width, TlpBeat(self.width)
        inp = self.tlp_in
        valid, beat, first = Signal(), Signal(layout), Signal()
        in_first = Signal(init=1)           # the next beat in starts a TLP
        m.d.comb += inp.ready.eq(advance)
        with m.If(inp.valid & inp.ready):
            m.d.sync += in_first.eq(inp.payload.last)
        if W >= 8 * HEADER_BYTES:
            with m.If(advance):
                m.d.sync += [valid.eq(inp.valid), beat.eq(inp.payload), first.eq(in_first)]
            return valid, beat, first, beat.data[:8 * HEADER_BYTES]
        held_valid, held, held_first = Signal(), Signal(layout), Signal()
        rest = Signal(8 * HEADER_BYTES - W)
        waits = held_first & ~held.last     # the held beat's header is not all in
        push = Signal()
        m.d.comb += push.eq(held_valid & (~waits | inp.valid))
        with m.If(advance):
            m.d.sync += [valid.eq(push), beat.eq(held), first.eq(held_first),
                         rest.eq(inp.payload.data)]
            with m.If(~held_valid | push):
                m.d.sync += [held_valid.eq(inp.valid), held.eq(inp.payload),
                             held_first.eq(in_first)]
        return valid, beat, first, Cat(beat.data, rest)

    def elaborate(self, platform):
        m = Module()
        W, Wb, layout = self.width, self.width // 8, TlpBeat(self.width)
        advance = Signal()
        valid, beat, first, hdr = self._header_stage(m, advance)
        stages = _Stages(m, advance)
        verdict = self.decide(stages, hdr)
        for _ in range(stages.count):       # the beats, to the judging stage
            valid, beat, first = (stages.register(name, value) for name, value in
                                  (("valid", valid), ("beat", beat), ("first", first)))
        forward, reason = verdict.forward, verdict.reason
        new_hdr = hdr if verdict.header is None else verdict.header

        m.submodules.out = out = fifo.SyncFIFO(width=layout.size + len(self.route), depth=2)
        stall = Signal()
        if verdict.stall is not None:
            m.d.comb += stall.eq(valid & first & verdict.stall)
        m.d.comb += advance.eq(out.w_rdy & ~stall)
        judge = Signal()                    # the first beat is judged this cycle
        m.d.comb += [judge.eq(advance & valid & first), self.commit.eq(judge)]

        header_beats = -(-HEADER_BYTES // Wb)
        index = Signal(range(header_beats + 1))   # beat number in the TLP (saturating)
        dropping = Signal()                 # swallowing the rest of a denied TLP
        pending = Signal(8 * HEADER_BYTES)  # the rewritten header, for later beats
        route_held = Signal.like(self.route)
        sent = Signal(layout)
        m.d.comb += sent.eq(beat)
        if verdict.header is not None:
            header_now = Signal(8 * HEADER_BYTES)
            m.d.comb += header_now.eq(Mux(first, new_hdr, pending))
            for k in range(header_beats):
                lo, hi = k * W, min((k + 1) * W, 8 * HEADER_BYTES)
                with m.If(index == k):
                    m.d.comb += sent.data[:hi - lo].eq(header_now[lo:hi])
        route = Signal.like(self.route)
        if self.routes > 1:
            m.d.comb += route.eq(Mux(first, verdict.route, route_held))
        m.d.comb += [
            out.w_en.eq(advance & valid & Mux(first, forward, ~dropping)),
            out.w_data.eq(Cat(sent, route)),
            self.tlp_out.valid.eq(out.r_rdy),
            self.tlp_out.payload.eq(out.r_data[:layout.size]),
            self.route.eq(out.r_data[layout.size:]),
            out.r_en.eq(self.tlp_out.ready),
        ]
        with m.If(advance & valid):
            m.d.sync += index.eq(Mux(beat.last, 0, Mux(index == header_beats, index, index + 1)))
            with m.If(first):
                m.d.sync += [dropping.eq(~forward & ~beat.last), pending.eq(new_hdr),
                             route_held.eq(route)]
                with m.If(forward):
                    m.d.sync += self.forwarded.eq(self.forwarded + 1)
                with m.Else():
                    with m.Switch(reason):
                        for why in range(self.reasons):
                            with m.Case(why):
                                m.d.sync += self.denied[why].eq(self.denied[why] + 1)
            with m.Elif(beat.last):
                m.d.sync += dropping.eq(0)
        return m


class Translator(wiring.Component):
    """Both directions of one host's link (see the module doc and
    :class:`~tlpoe.models.translate.LinkTranslator`, its reference).

    Ports:

    * TLP streams ``net_in`` → ``dev_out`` and ``dev_in`` → ``net_out``;
      ``net_out`` also carries the bridge's own completions (merged TLP by
      TLP, round robin, with what comes from ``dev_in``; each keeps its
      order). ``net_in`` stalls while :data:`REPLY_DEPTH` completions wait
      for ``net_out`` and the next TLP needs one.
    * The table: ``win_we`` with ``win_index``, ``win_valid``,
      ``win_host_base``, ``win_size_log2`` (12..63), ``win_device_base``;
      ``fn_we`` with ``fn_index``, ``fn_valid``, ``fn_host_id``,
      ``fn_device_id``; ``fn_bar_we`` with ``fn_index`` (the function slot),
      ``fn_bar_index`` (0..5), ``fn_bar_value`` (the shadow's value from
      now on) and ``fn_bar_mask`` (its bits the host's writes change);
      ``host_rid``, ``local_rid``. :func:`table_writes` gives the cycles.
    * Counters: ``to_device_forwarded``, ``to_device_denied`` (per Reason;
      its FORWARDED and LOCAL entries stay 0), ``to_device_local`` (BAR and
      Expansion ROM accesses answered), ``to_device_unsupported`` (denied
      non-posted requests answered with UR), ``to_host_forwarded``,
      ``to_host_denied``.

    Latency (each path a pipeline, :class:`_HeaderPath`): a forwarded
    TLP's first beat leaves ``dev_out`` five cycles after it came in
    (header, decode and function lookup, windows, verdict, output queue),
    ``net_out`` four after it came in on ``dev_in``; a completion the bridge
    makes is offered to ``net_out``'s merge five cycles after its request.
    At 64 bits each is one more, counted from the first beat when the
    second follows it at once. ``net_in.ready`` and ``dev_in.ready`` come
    from registers, never from ``dev_out.ready`` or ``net_out.ready``.
    """

    def __init__(self, width, *, windows=4, functions=4):
        check_width(width)
        for name, value in (("windows", windows), ("functions", functions)):
            if not isinstance(value, int) or not 1 <= value <= 64:
                raise ValueError(f"{name} must be 1..64 table entries, not {value!r}")
        self.width, self.n_windows, self.n_functions = width, windows, functions
        self.local = Signal(_LocalReply(functions))
        self.replies = fifo.SyncFIFO(width=8 * HEADER_BYTES + 1, depth=REPLY_DEPTH)
        self.to_device = _HeaderPath(width, self._to_device)
        self.to_host = _HeaderPath(width, self._to_host)
        self.merge = TlpMerge(width, 2)
        super().__init__({
            "net_in": In(tlp_stream(width)),
            "dev_out": Out(tlp_stream(width)),
            "dev_in": In(tlp_stream(width)),
            "net_out": Out(tlp_stream(width)),
            "win_we": In(1), "win_index": In(range(windows)), "win_valid": In(1),
            "win_host_base": In(64), "win_size_log2": In(6), "win_device_base": In(64),
            "fn_we": In(1), "fn_index": In(range(functions)), "fn_valid": In(1),
            "fn_host_id": In(16), "fn_device_id": In(16),
            "fn_bar_we": In(1), "fn_bar_index": In(range(6)), "fn_bar_value": In(32),
            "fn_bar_mask": In(32),
            "host_rid": In(16), "local_rid": In(16),
            "to_device_forwarded": Out(32),
            "to_device_denied": Out(data.ArrayLayout(32, len(Reason))),
            "to_device_local": Out(32),
            "to_device_unsupported": Out(32),
            "to_host_forwarded": Out(32),
            "to_host_denied": Out(data.ArrayLayout(32, len(Reason))),
        })

    # --- the table's programming sequence ------------------------------------------
    @staticmethod
    def window_write(slot, window):
        """The port values writing ``window`` (None: clearing) into ``slot``."""
        cycle = dict.fromkeys(TABLE_WRITE_ENABLES, 0)
        cycle.update(win_we=1, win_index=slot, win_valid=int(window is not None))
        if window is not None:
            cycle.update(win_host_base=window.host_base, win_device_base=window.device_base,
                         win_size_log2=window.size.bit_length() - 1)
        return cycle

    @staticmethod
    def function_writes(slot, function):
        """The cycles writing ``function`` (None: clearing) into ``slot``: its
        six BAR shadows first (value and writable mask), then the entry with
        ``valid``, so the host never meets a half-written function."""
        cycles = []
        if function is not None:
            for index, (value, mask) in enumerate(zip(function.bar_values, function.bar_masks)):
                cycle = dict.fromkeys(TABLE_WRITE_ENABLES, 0)
                cycle.update(fn_bar_we=1, fn_index=slot, fn_bar_index=index,
                             fn_bar_value=value, fn_bar_mask=mask)
                cycles.append(cycle)
        cycle = dict.fromkeys(TABLE_WRITE_ENABLES, 0)
        cycle.update(fn_we=1, fn_index=slot, fn_valid=int(function is not None))
        if function is not None:
            cycle.update(fn_host_id=function.host_id, fn_device_id=function.device_id)
        return cycles + [cycle]

    @staticmethod
    def table_writes(table):
        """The port values that program ``table`` (an
        :class:`~tlpoe.models.translate.AccessTable`): one dict of
        ``{port name: value}`` per clock cycle, windows first, then each
        function (its BAR shadows, then its entry); every cycle sets all of
        :data:`TABLE_WRITE_ENABLES`, and ``host_rid`` and ``local_rid`` are
        set with the first. Drive them in order, then clear the enables.
        (Writing a function slot reloads its shadows: the host's earlier
        BAR writes to it are forgotten.)"""
        cycles = [Translator.window_write(i, w) for i, w in enumerate(table.windows)]
        for i, f in enumerate(table.functions):
            cycles += Translator.function_writes(i, f)
        if cycles:
            cycles[0].update(host_rid=table.host_rid, local_rid=table.local_rid)
        return cycles

    # --- the rules, as hardware -----------------------------------------------------
    # Each is a pipeline (_Stages): every table entry is read in one stage
    # only, so a TLP never meets half of an old entry and half of a new one.
    def _to_device(self, stages, hdr):
        m = stages.m
        d = _Decode(m, hdr)
        last_byte = Signal(64)
        m.d.comb += last_byte.eq(d.address + d.nbytes - 1)
        # a configuration request's target, or a completion's requester, as the host knows it
        fn_hit, fn_device, fn_slot = _pick(m, *self._matches(m, d.config_target, by_host=True))
        byte_count, lower = _completion_counts(m, d)
        s = stages.next(hdr=hdr, address=d.address, last_byte=last_byte, fn_hit=fn_hit,
                        fn_device=fn_device, fn_slot=fn_slot, byte_count=byte_count,
                        lower=lower)
        # each window: does it hold every byte, and the address it makes
        inside, translated, high = [], [], []
        for w in self.windows:
            base = w.host_base & w.mask
            inside.append(w.valid & ((s.address & w.mask) == base) &
                          ((s.last_byte & w.mask) == base))
            translated.append((s.address & ~w.mask) | (w.device_base & w.mask))
            high.append(translated[-1][32:] != 0)
        s = stages.next(hdr=s.hdr, fn_hit=s.fn_hit, fn_device=s.fn_device, fn_slot=s.fn_slot,
                        byte_count=s.byte_count, lower=s.lower, inside=inside,
                        translated=translated, high=high)
        # the verdict
        d = _Decode(m, s.hdr)
        hdr = s.hdr
        hit, address, high = Signal(), Signal(64), Signal()
        _first_match(m, [(inside, [hit.eq(1), address.eq(t), high.eq(h)])
                         for inside, t, h in zip(s.inside, s.translated, s.high)])
        new = Signal(8 * HEADER_BYTES)
        m.d.comb += new.eq(hdr)
        forward, reason = Signal(), Signal(range(len(Reason)))
        bar = (d.register >= BAR_REGISTERS.start) & (d.register < BAR_REGISTERS.stop)
        answer = Signal()
        m.d.comb += answer.eq(d.config & s.fn_hit & (bar | (d.register == ROM_REGISTER)))
        with m.If(d.memory):            # rewritten whatever the verdict: a denied TLP is not sent
            m.d.comb += forward.eq(hit & (high == d.four_dw))
            with m.If(~forward):
                m.d.comb += reason.eq(Reason.ADDRESS)
            _put_be(m, new, 4, 2, self.local_rid)
            with m.If(d.four_dw):
                _put_be(m, new, 8, 8, Cat(hdr[8 * 15:8 * 15 + 2], address[2:]))
            with m.Else():
                _put_be(m, new, 8, 4, Cat(hdr[8 * 11:8 * 11 + 2], address[2:32]))
        with m.Elif(d.config):
            with m.If(~s.fn_hit):
                m.d.comb += reason.eq(Reason.FUNCTION)
            with m.Elif(answer):
                m.d.comb += reason.eq(Reason.LOCAL)
            with m.Else():
                m.d.comb += forward.eq(1)
            m.d.comb += new[0].eq(1)    # Type 1 into the chassis
            _put_be(m, new, 4, 2, self.local_rid)
            _put_be(m, new, 8, 2, s.fn_device)
        with m.Elif(d.is_completion):      # of a device's read: its requester back to the chassis ID
            with m.If(s.fn_hit):
                m.d.comb += forward.eq(1)
            with m.Else():
                m.d.comb += reason.eq(Reason.REQUESTER)
            _put_be(m, new, 8, 2, s.fn_device)
        with m.Else():
            m.d.comb += reason.eq(Reason.TYPE)
        ur = ~forward & ~answer & d.non_posted
        # the BAR shadow addressed, read here so that the judging stage only
        # merges a write into it; a write landing as the TLP moves on is
        # taken over (the table's winning over the host's, as in the shadows)
        slot, index = s.fn_slot, Cat(d.register[:2], ~d.register[2])     # register - 4
        shadow, writable = self._shadow(m, slot, index)
        local, commit = self.local, self.to_device.commit
        table_hit = self.fn_bar_we & (self.fn_index == slot) & (self.fn_bar_index == index)
        host_hit = (commit & local.shadow_we & (local.shadow_slot == slot) &
                    (local.shadow_index == index))
        pend = self.shadow_pending
        pend_hit = pend.we & (pend.slot == slot) & (pend.index == index)
        s = stages.next(hdr=hdr, new=new, forward=forward, reason=reason, answer=answer,
                        bar=bar, ur=ur, with_data=answer & ~d.has_data, reply=answer | ur,
                        shadow_we=answer & bar & d.has_data, fn_slot=slot, index=index,
                        byte_count=s.byte_count, lower=s.lower)
        # judged: what a write makes of the shadow (kept up to date with the
        # table's writes while the TLP waits here)
        d = _Decode(m, s.hdr)
        shadow_j, writable_j = Signal(32), Signal(32)
        with m.If(stages.advance):
            m.d.sync += [shadow_j.eq(Mux(table_hit, self.fn_bar_value,
                                         Mux(host_hit, local.shadow_value,
                                             Mux(pend_hit, pend.value, shadow)))),
                         writable_j.eq(Mux(table_hit, self.fn_bar_mask, writable))]
        with m.Elif(self.fn_bar_we & (self.fn_index == s.fn_slot) &
                    (self.fn_bar_index == s.index)):
            m.d.sync += [shadow_j.eq(self.fn_bar_value), writable_j.eq(self.fn_bar_mask)]
        shadow, writable = shadow_j, writable_j
        enabled = Cat(*(d.first_be[i].replicate(8) for i in range(4)))
        written = Signal(32)
        m.d.comb += written.eq(shadow & ~(writable & enabled) | d.cfg_data & writable & enabled)
        m.d.comb += [
            local.reply.eq(s.reply),
            local.ur.eq(s.ur),
            local.with_data.eq(s.with_data),
            local.header.eq(_completion_header(
                m, d, s.hdr, byte_count=s.byte_count, lower=s.lower,
                completer=Mux(s.answer, d.config_target, self.host_rid), ur=s.ur,
                with_data=s.with_data, value=Mux(s.bar, shadow, 0))),
            local.shadow_we.eq(s.shadow_we),
            local.shadow_slot.eq(s.fn_slot),
            local.shadow_index.eq(s.index),
            local.shadow_value.eq(written),
        ]
        return _Verdict(s.forward, s.reason, s.new, stall=s.reply & ~self.replies.w_rdy)

    def _shadow(self, m, slot, index):
        """The BAR shadow ``index`` of function slot ``slot``: (value, writable bits)."""
        value, writable = Signal(32), Signal(32)
        with m.Switch(slot):
            for i in range(self.n_functions):
                with m.Case(i):
                    with m.Switch(index):
                        for bar in range(6):
                            with m.Case(bar):
                                m.d.comb += [value.eq(self.shadow_values[i][bar]),
                                             writable.eq(self.shadow_masks[i][bar])]
        return value, writable

    def _to_host(self, stages, hdr):
        m = stages.m
        d = _Decode(m, hdr)
        # a completion's completer, or a request's requester, as the chassis knows it
        matches, hosts = self._matches(m, d.requester_id, by_host=False)
        s = stages.next(hdr=hdr, matches=matches, hosts=hosts,
                        ours=d.completion_requester == self.local_rid)
        d = _Decode(m, s.hdr)
        hit, host, _ = _pick(m, s.matches, s.hosts)
        new = Signal(8 * HEADER_BYTES)
        m.d.comb += new.eq(s.hdr)
        forward, reason = Signal(), Signal(range(len(Reason)))
        with m.If(d.is_completion):
            with m.If(~s.ours):
                m.d.comb += reason.eq(Reason.REQUESTER)
            with m.Elif(~hit):
                m.d.comb += reason.eq(Reason.FUNCTION)
            with m.Else():
                m.d.comb += forward.eq(1)
            _put_be(m, new, 8, 2, self.host_rid)
            _put_be(m, new, 4, 2, host)
        with m.Elif(d.memory):
            with m.If(hit):
                m.d.comb += forward.eq(1)
            with m.Else():
                m.d.comb += reason.eq(Reason.REQUESTER)
            _put_be(m, new, 4, 2, host)
        with m.Else():
            m.d.comb += reason.eq(Reason.TYPE)
        s = stages.next(forward=forward, reason=reason, new=new)
        return _Verdict(s.forward, s.reason, s.new)

    def _matches(self, m, ident, *, by_host):
        """Per function slot: whether it is valid with host ID (``by_host``)
        or device ID ``ident``, and its other ID."""
        matches, others = [], []
        for f in self.functions:
            key, value = (f.host_id, f.device_id) if by_host else (f.device_id, f.host_id)
            matches.append(f.valid & (key == ident))
            others.append(value)
        return matches, others

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
        # BAR shadows: the host's writes, then the table's (which win). A
        # host's write lands the cycle after its commit, from a register
        # (`shadow_pending`), so that the commit does not fan out to every
        # shadow's flip-flops; a TLP reading the shadow meanwhile takes the
        # pending value over. A table write in the commit's cycle wins there
        # and cancels it.
        local, commit = self.local, self.to_device.commit
        pend = self.shadow_pending
        table_now = self.fn_bar_we & (self.fn_index == local.shadow_slot) & \
            (self.fn_bar_index == local.shadow_index)
        m.d.sync += [pend.we.eq(commit & local.shadow_we & ~table_now),
                     pend.slot.eq(local.shadow_slot), pend.index.eq(local.shadow_index),
                     pend.value.eq(local.shadow_value)]
        for slot in range(self.n_functions):
            for i in range(6):
                value, mask = self.shadow_values[slot][i], self.shadow_masks[slot][i]
                with m.If(pend.we & (pend.slot == slot) & (pend.index == i)):
                    m.d.sync += value.eq(pend.value)
                with m.If(self.fn_bar_we & (self.fn_index == slot) & (self.fn_bar_index == i)):
                    m.d.sync += [value.eq(self.fn_bar_value), mask.eq(self.fn_bar_mask)]
        m.submodules.to_device = self.to_device
        m.submodules.to_host = self.to_host
        m.submodules.replies = replies = self.replies
        m.submodules.merge = merge = self.merge
        wiring.connect(m, wiring.flipped(self.net_in), self.to_device.tlp_in)
        wiring.connect(m, self.to_device.tlp_out, wiring.flipped(self.dev_out))
        wiring.connect(m, wiring.flipped(self.dev_in), self.to_host.tlp_in)
        wiring.connect(m, self.to_host.tlp_out, merge.in0)
        wiring.connect(m, merge.tlp_out, wiring.flipped(self.net_out))
        # the completions the bridge makes, one TLP each, into the merge
        m.d.comb += [replies.w_data.eq(Cat(local.header, local.with_data)),
                     replies.w_en.eq(commit & local.reply)]
        header, with_data = replies.r_data[:8 * HEADER_BYTES], replies.r_data[-1]
        out = merge.in1
        sent = Signal()
        m.d.comb += [out.valid.eq(replies.r_rdy), sent.eq(out.valid & out.ready)]
        if self.width >= 8 * HEADER_BYTES:
            m.d.comb += [out.payload.data.eq(header), out.payload.last.eq(1),
                         out.payload.keep.eq(Cat(Const(0b111, 3), with_data)),
                         replies.r_en.eq(sent)]
        else:                           # 64 bits: two beats
            second = Signal()
            m.d.comb += [out.payload.data.eq(Mux(second, header[64:], header[:64])),
                         out.payload.keep.eq(Mux(second, Cat(Const(1, 1), with_data), 0b11)),
                         out.payload.last.eq(second),
                         replies.r_en.eq(sent & second)]
            with m.If(sent):
                m.d.sync += second.eq(~second)
        with m.If(commit & local.ur):
            m.d.sync += self.to_device_unsupported.eq(self.to_device_unsupported + 1)
        m.d.comb += [
            self.to_device_forwarded.eq(self.to_device.forwarded),
            self.to_device_denied.eq(self.to_device.denied),
            self.to_device_denied[Reason.LOCAL].eq(0),
            self.to_device_local.eq(self.to_device.denied[Reason.LOCAL]),
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

    @property
    def shadow_pending(self):
        """A host's BAR write committed last cycle, landing in the shadows now."""
        if not hasattr(self, "_shadow_pending"):
            self._shadow_pending = Signal(data.StructLayout({
                "we": 1, "slot": range(max(self.n_functions, 2)), "index": range(6),
                "value": 32}), name="shadow_pending")
        return self._shadow_pending

    @property
    def shadow_values(self):
        """``[slot][BAR]``: the BAR registers as the host reads them."""
        if not hasattr(self, "_shadow_values"):
            self._shadow_values = [[Signal(32, name=f"bar_{s}_{i}") for i in range(6)]
                                   for s in range(self.n_functions)]
        return self._shadow_values

    @property
    def shadow_masks(self):
        """``[slot][BAR]``: the bits of each the host's writes change."""
        if not hasattr(self, "_shadow_masks"):
            self._shadow_masks = [[Signal(32, name=f"bar_mask_{s}_{i}") for i in range(6)]
                                  for s in range(self.n_functions)]
        return self._shadow_masks


#: The cycles that program a table (see :meth:`Translator.table_writes`).
table_writes = Translator.table_writes


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
        # the first valid input from `turn` on (0 when none), as multiplexers:
        # an if-chain becomes an `always @*` block, which Icarus evaluates
        # only once an input changes, so `pick` stayed X after reset while
        # no input was valid, and X'd `sel`, `tlp_out.valid` and every ready
        first_valid = Const(0, pick.shape())
        for t in reversed(range(self.n)):
            order = [(t + k) % self.n for k in range(self.n)]
            choice = Const(0, pick.shape())
            for i in reversed(order):
                choice = Mux(inputs[i].valid, i, choice)
            first_valid = Mux(turn == t, choice, first_valid)
        m.d.comb += pick.eq(first_valid)
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
    bridge; it also carries the completions link *i*'s translator makes),
    ``pcie_out`` / ``pcie_in``; ``tbl_link`` selects the link whose
    table the ``win_*`` / ``fn_*`` / ``fn_bar_*`` writes go to; ``link{i}_host_rid``,
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
            for name in ("to_device_forwarded", "to_device_denied", "to_device_local",
                         "to_device_unsupported", "to_host_forwarded", "to_host_denied"):
                per_link[f"link{i}_{name}"] = self.translators[0].signature.members[name]
        super().__init__({
            "pcie_out": Out(tlp_stream(width)),
            "pcie_in": In(tlp_stream(width)),
            "tbl_link": In(range(max(2, hosts))),
            **table, **per_link,
            "routed": Out(32), "unrouted": Out(32),
        })

    def _route(self, stages, hdr):
        m = stages.m
        d = _Decode(m, hdr)
        claims = []
        for t in self.translators:
            matches, _ = t._matches(m, d.requester_id, by_host=False)
            claims.append(d.is_completion & (d.completion_requester == t.local_rid) |
                          d.memory & Cat(*matches).any())
        s = stages.next(claims=claims)
        route, forward = Signal(range(max(2, self.hosts))), Signal()
        _first_match(m, [(claim, [route.eq(i), forward.eq(1)])
                         for i, claim in enumerate(s.claims)])
        s = stages.next(route=route, forward=forward)
        return _Verdict(s.forward, Const(0, 1), None, route=s.route)

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
