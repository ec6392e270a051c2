"""CSR blocks generated from SystemRDL (``rtl/csr/*.rdl``).

:class:`CsrBlock` is the whole generator: it takes a
:class:`~tlpoe.rtl.csr.regmap.RegisterMap` (from :func:`load`, which
compiles the RDL with ``systemrdl-compiler`` at elaboration time) and is an
Amaranth register block with an AXI4-Lite subordinate port ``bus`` and one
port per field, named as :mod:`.regmap` says (``win_index``, ``fn_we``,
``link_host_rid`` ...).

Bus contract (AXI4-Lite, 32-bit data, address width ``regmap.addr_width``):

* Writes: ``AW`` and ``W`` are each taken into a one-entry holding
  register (independently, in either order); the write happens the cycle
  both are held and no response is waiting, and ``B`` answers it the
  cycle after. Nothing is taken while its holding register is full, so
  back-to-back writes lose nothing under any ``BREADY`` pattern. One write
  per two cycles at best. ``WSTRB`` selects the bytes written; a field's
  bytes whose strobe is off keep their value (a strobe field pulses only
  for bits in enabled bytes).
* Reads: ``AR`` is taken when no read data waits (``ARREADY`` is
  ``~RVALID``); ``R`` carries the value sampled the cycle ``AR`` was taken,
  the cycle after.
* Address bits 1:0 are ignored (word access). A 64-bit register is two
  words, its low half first.
* ``SLVERR`` (data 0, nothing written) for an address with no register,
  a write to a register without a writable field, or a read of one
  without a readable field. ``AWPROT`` / ``ARPROT`` are ignored.

Ports: ``config`` fields are ``Out`` (reset to the field's reset value),
``strobe`` fields ``Out`` (high one cycle, the cycle after the write),
``status`` fields ``In`` (read as they stand); ``constant`` fields have no
port. Fields in arrays make array ports (``data.ArrayLayout``).
"""

from amaranth.hdl import Const, Module, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .axil import AxiLiteSignature, Resp
from .regmap import CsrError, RegisterMap, load

__all__ = ["CsrBlock", "CsrError", "RegisterMap", "load", "AxiLiteSignature", "Resp",
           "port_shape", "pairs", "driven", "bind"]

WORD_BITS = 32


def port_shape(port):
    """The Amaranth shape of a :class:`~tlpoe.rtl.csr.regmap.Port`."""
    shape = port.width
    for n in reversed(port.dims):
        shape = data.ArrayLayout(shape, n)
    return shape


class CsrBlock(wiring.Component):
    """The register block of ``regmap`` (a :class:`RegisterMap`, or the
    name of an ``rtl/csr`` description with ``parameters``). See the module
    doc for the bus and the ports."""

    def __init__(self, regmap, **parameters):
        if not isinstance(regmap, RegisterMap):
            regmap = load(regmap, **parameters)
        elif parameters:
            raise TypeError("parameters apply to an RDL name, not to a RegisterMap")
        self.regmap = regmap
        members = {"bus": In(AxiLiteSignature(regmap.addr_width))}
        for port in regmap.ports.values():
            if port.kind == "config":
                members[port.name] = Out(port_shape(port), init=port.init())
            elif port.kind == "strobe":
                members[port.name] = Out(port_shape(port))
            elif port.kind == "status":
                members[port.name] = In(port_shape(port))
        super().__init__(members)

    def _target(self, field):
        value = getattr(self, field.port)
        for i in field.index:
            value = value[i]
        return Value.cast(value)

    def _value(self, m, reg):
        """The register's value as software reads it."""
        value = Signal(reg.width, name=_name(reg.name))
        for f in reg.fields:
            if f.kind in ("config", "status"):
                m.d.comb += value[f.lsb:f.lsb + f.width].eq(self._target(f))
            elif f.kind == "constant":
                m.d.comb += value[f.lsb:f.lsb + f.width].eq(Const(f.reset, f.width))
        return value

    def elaborate(self, platform):
        m = Module()
        bus = self.bus

        # --- write channel ---
        aw_held, w_held, bvalid = Signal(), Signal(), Signal()
        aw_word = Signal(self.regmap.addr_width - 2)
        w_data, w_strb = Signal(WORD_BITS), Signal(WORD_BITS // 8)
        bresp = Signal(2)
        m.d.comb += [bus.awready.eq(~aw_held), bus.wready.eq(~w_held),
                     bus.bvalid.eq(bvalid), bus.bresp.eq(bresp)]
        with m.If(bus.awvalid & ~aw_held):
            m.d.sync += [aw_held.eq(1), aw_word.eq(bus.awaddr[2:])]
        with m.If(bus.wvalid & ~w_held):
            m.d.sync += [w_held.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        with m.If(bvalid & bus.bready):
            m.d.sync += bvalid.eq(0)
        for port in self.regmap.ports.values():
            if port.kind == "strobe":           # high for one cycle only
                m.d.sync += Value.cast(getattr(self, port.name)).eq(0)
        do_write = Signal()
        m.d.comb += do_write.eq(aw_held & w_held & ~bvalid)
        with m.If(do_write):
            m.d.sync += [aw_held.eq(0), w_held.eq(0), bvalid.eq(1), bresp.eq(Resp.SLVERR)]
            with m.Switch(aw_word):
                for reg in self.regmap:
                    if not reg.writable:
                        continue
                    for k in range(reg.words):
                        with m.Case(reg.address // 4 + k):
                            m.d.sync += bresp.eq(Resp.OKAY)
                            self._write_word(m, reg, k, w_data, w_strb)

        # --- read channel ---
        rvalid, rdata, rresp = Signal(), Signal(WORD_BITS), Signal(2)
        m.d.comb += [bus.arready.eq(~rvalid), bus.rvalid.eq(rvalid), bus.rdata.eq(rdata),
                     bus.rresp.eq(rresp)]
        values = {reg.name: self._value(m, reg) for reg in self.regmap if reg.readable}
        with m.If(bus.arvalid & ~rvalid):
            m.d.sync += [rvalid.eq(1), rdata.eq(0), rresp.eq(Resp.SLVERR)]
            with m.Switch(bus.araddr[2:]):
                for reg in self.regmap:
                    if not reg.readable:
                        continue
                    for k in range(reg.words):
                        with m.Case(reg.address // 4 + k):
                            m.d.sync += [rdata.eq(values[reg.name][WORD_BITS * k:
                                                                   WORD_BITS * (k + 1)]),
                                         rresp.eq(Resp.OKAY)]
        with m.Elif(rvalid & bus.rready):
            m.d.sync += rvalid.eq(0)
        return m

    def _write_word(self, m, reg, k, w_data, w_strb):
        """Word ``k`` of ``reg`` from ``w_data``, byte by byte as ``w_strb`` enables."""
        base = WORD_BITS * k
        for f in reg.fields:
            if not f.writable:
                continue
            target = self._target(f)
            for lane in range(WORD_BITS // 8):
                lo = max(f.lsb, base + 8 * lane)
                hi = min(f.lsb + f.width, base + 8 * lane + 8)
                if lo >= hi:
                    continue
                with m.If(w_strb[lane]):
                    m.d.sync += target[lo - f.lsb:hi - f.lsb].eq(w_data[lo - base:hi - base])


def _name(path):
    return "reg_" + path.replace("[", "_").replace("]", "").replace(".", "_").lower()


def pairs(csr, inner, *, skip=()):
    """How :func:`bind` joins ``csr``'s field ports to ``inner``'s ports:
    ``[(port, csr value, inner port name)]`` (see :func:`bind`)."""
    out = []
    members = inner.signature.members
    for port in csr.regmap.ports.values():
        if port.kind == "constant" or port.name in skip:
            continue
        ours = getattr(csr, port.name)
        found = []
        if port.name in members:
            found.append((port, ours, port.name))
        elif port.dims:
            head, _, rest = port.name.partition("_")
            names = [f"{head}{i}_{rest}" for i in range(port.dims[0])]
            if rest and all(n in members for n in names):
                found.extend((port, ours[i], n) for i, n in enumerate(names))
        if not found and port.kind in ("config", "strobe"):
            raise CsrError(f"{csr.regmap.name}: field port {port.name!r} drives nothing: "
                           f"{type(inner).__name__} has no port of that name")
        out.extend(found)
    return out


def driven(csr, inner, *, skip=()):
    """The names of ``inner``'s inputs that :func:`bind` drives from ``csr``."""
    return {name for port, _, name in pairs(csr, inner, skip=skip) if port.kind != "status"}


def bind(m, csr, inner, *, skip=(), guards=None):
    """Connect each field port of ``csr`` (a :class:`CsrBlock`) to the port
    of ``inner`` of the same name: config and strobe ports drive ``inner``'s
    inputs, status ports read its outputs. A port under an array of regfiles
    (``link_host_rid``, array of N) goes element by element to
    ``link0_host_rid`` ... . ``guards`` (``{port: Value}``) gate strobes.
    Status ports with no counterpart read 0; a config or strobe port with
    none raises. Widths are checked: a status field narrower than its
    port, or arrays of different sizes, raise :class:`CsrError` naming both."""
    guards = guards or {}
    inner_members = inner.signature.members
    who = type(inner).__name__
    for port, value, name in pairs(csr, inner, skip=skip):
        theirs = getattr(inner, name)
        ours_v, theirs_v = Value.cast(value), Value.cast(theirs)
        member = inner_members[name]
        if isinstance(member.shape, data.Layout) and len(theirs_v) != len(ours_v):
            raise CsrError(f"{csr.regmap.name}: field port {port.name!r} ({len(ours_v)} "
                           f"bits) and {who}.{name} ({len(theirs_v)} bits) are arrays of "
                           "different sizes")
        if port.kind == "status":
            if member.flow != Out:
                raise CsrError(f"{port.name}: {who}.{name} is not an output")
            if len(theirs_v) > len(ours_v):
                raise CsrError(f"{csr.regmap.name}: field port {port.name!r} has "
                               f"{len(ours_v)} bits, {who}.{name} {len(theirs_v)}")
            m.d.comb += ours_v.eq(theirs_v)
        else:
            if member.flow != In:
                raise CsrError(f"{port.name}: {who}.{name} is not an input")
            if port.kind == "strobe" and port.name in guards:
                ours_v = ours_v & guards[port.name]
            m.d.comb += theirs_v.eq(ours_v)
