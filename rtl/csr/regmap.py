"""The register map of a SystemRDL description, as plain Python.

:func:`load` compiles ``rtl/csr/<name>.rdl`` with ``systemrdl-compiler``
(parameters overridable) and checks it against what the Amaranth generator
supports; the :class:`RegisterMap` it returns is what everything else reads
register addresses and field positions from (the register block, the pool
manager's :class:`~tlpoe.sim.pool.CsrWriter`, the tests): nobody writes an
offset twice.

Field kinds (``rtl/csr/common.rdl`` defines one field type per kind):

* ``config``: ``sw=rw`` (or ``w``), ``hw=r``: stored, an ``Out`` port;
* ``strobe``: as ``config`` with ``singlepulse``: writing 1 pulses the
  ``Out`` port for one cycle; reads 0;
* ``status``: ``sw=r``, ``hw=w``: an ``In`` port, read as it stands;
* ``constant``: ``sw=r``, ``hw=na``: reads its reset value; no port;
* ``write-only``: ``sw=w``, ``hw=r``: as ``config``, but reads 0.

Ports are named by the field's name prefixed by its regfiles' names
(``win.ENTRY.index`` is port ``win_index``); register names are not part of
it. Arrays of registers or regfiles on the path make the port an array
(outermost first): ``link[2].TO_DEVICE_DENIED[5].to_device_denied`` is port
``link_to_device_denied`` of 2 arrays of 5.
"""

import io
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CsrError", "Field", "Register", "Port", "RegisterMap", "RDL_DIR", "load",
           "compile_rdl"]

RDL_DIR = Path(__file__).resolve().parent
BUS_BITS = 32

#: Field properties whose behaviour the generator does not implement.
UNSUPPORTED = ("onread", "onwrite", "counter", "intr", "swmod", "swacc", "hwclr", "hwset",
               "we", "wel", "swwe", "swwel", "sticky", "stickybit", "paritycheck", "next")


class CsrError(ValueError):
    """A SystemRDL description the generator cannot take (the message names
    the register or field and says why)."""


@dataclass(frozen=True)
class Field:
    """One field instance: ``path`` (RDL, arrays unrolled), its ``port`` and
    ``index`` in that port's arrays, ``lsb`` and ``width`` in its register,
    ``kind`` (see the module doc) and ``reset``."""
    path: str
    port: str
    index: tuple
    lsb: int
    width: int
    kind: str
    reset: int
    desc: str = ""

    @property
    def readable(self):
        return self.kind in ("config", "strobe", "status", "constant")

    @property
    def writable(self):
        return self.kind in ("config", "strobe", "write-only")


@dataclass(frozen=True)
class Register:
    """One register instance: ``name`` (its RDL path below the top, arrays
    unrolled: ``link[1].RID``), byte ``address``, ``width`` (32 or 64 bits:
    ``width // 32`` bus words from ``address``) and ``fields``."""
    name: str
    address: int
    width: int
    fields: tuple
    desc: str = ""

    @property
    def readable(self):
        return any(f.kind != "write-only" for f in self.fields)

    @property
    def writable(self):
        return any(f.writable for f in self.fields)

    @property
    def words(self):
        return self.width // BUS_BITS

    def field(self, name):
        for f in self.fields:
            if f.path.rsplit(".", 1)[1] == name:
                return f
        raise KeyError(f"register {self.name} has no field {name!r}; "
                       f"it has {[f.path.rsplit('.', 1)[1] for f in self.fields]}")

    def encode(self, **values):
        """The register's value with the named fields set (others 0); a
        value too wide for its field raises."""
        word = 0
        for name, value in values.items():
            f = self.field(name)
            if not 0 <= value < 1 << f.width:
                raise ValueError(f"{self.name}.{name}: {value:#x} does not fit {f.width} bits")
            word |= value << f.lsb
        return word

    def decode(self, value):
        """``{field name: value}`` of a register value."""
        return {f.path.rsplit(".", 1)[1]: (value >> f.lsb) & ((1 << f.width) - 1)
                for f in self.fields}


@dataclass(frozen=True)
class Port:
    """A port of the register block: ``name``, ``kind``, field ``width`` and
    array ``dims`` (outermost first; empty for a single field)."""
    name: str
    kind: str
    width: int
    dims: tuple
    fields: tuple        # (index, Field) of every element

    def init(self):
        """The reset value, nested as the arrays are (an int when no array)."""
        resets = {index: f.reset for index, f in self.fields}

        def build(prefix, dims):
            if not dims:
                return resets[prefix]
            return [build(prefix + (i,), dims[1:]) for i in range(dims[0])]
        return build((), self.dims)


class RegisterMap:
    """The registers of one compiled addrmap: ``name``, ``size`` (bytes),
    ``registers`` by address, ``ports`` by name, ``addr_width`` of the bus."""

    def __init__(self, name, size, registers, desc=""):
        self.name, self.size, self.desc = name, size, desc
        self.registers = tuple(sorted(registers, key=lambda r: r.address))
        self._by_name = {r.name: r for r in self.registers}
        self.addr_width = max(2, (size - 1).bit_length())
        self.ports = _ports(self.registers)

    def __getitem__(self, name):
        """The register named ``name`` (``"win.ENTRY"``, ``"link[1].RID"``)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.name} has no register {name!r}") from None

    def __iter__(self):
        return iter(self.registers)

    def address(self, name):
        return self[name].address

    def port_field(self, port, *index):
        """(register, field) of element ``index`` of ``port``."""
        for reg in self.registers:
            for f in reg.fields:
                if f.port == port and f.index == tuple(index):
                    return reg, f
        raise KeyError(f"{self.name} has no port {port!r} element {index}")


def compile_rdl(path, top=None, parameters=None):
    """The elaborated root of the SystemRDL file ``path`` (``top``: the
    addrmap, default the last defined; ``parameters`` override its
    parameters). Errors raise :class:`CsrError` with the compiler's messages."""
    from systemrdl import RDLCompileError, RDLCompiler
    from systemrdl.messages import MessagePrinter

    out = io.StringIO()

    class Printer(MessagePrinter):
        def emit_message(self, lines):
            out.write("\n".join(lines) + "\n")

    rdlc = RDLCompiler(message_printer=Printer())
    try:
        rdlc.compile_file(str(path))
        return rdlc.elaborate(top, parameters=dict(parameters or {}))
    except RDLCompileError:
        raise CsrError(f"{path}: SystemRDL errors:\n{out.getvalue()}") from None


def load(name_or_path, *, top=None, **parameters):
    """The :class:`RegisterMap` of ``rtl/csr/<name>.rdl`` (or a path),
    with ``parameters`` overriding the addrmap's."""
    path = Path(name_or_path)
    if path.suffix != ".rdl":
        path = RDL_DIR / f"{name_or_path}.rdl"
    root = compile_rdl(path, top, parameters)
    return from_node(root.top)


def from_node(top):
    """A :class:`RegisterMap` from an elaborated addrmap node (checked)."""
    from systemrdl.node import AddrmapNode, FieldNode, MemNode, RegfileNode, RegNode

    registers = []
    for node in top.descendants(unroll=True):
        where = node.get_path()
        if isinstance(node, (AddrmapNode, MemNode)):
            raise CsrError(f"{where}: nested {type(node).__name__[:-4].lower()} not "
                           "supported (one addrmap of registers and regfiles)")
        if isinstance(node, (RegNode, RegfileNode)):
            if node.external:
                raise CsrError(f"{where}: external registers are not supported")
            if node.is_array and len(node.array_dimensions) > 1:
                raise CsrError(f"{where}: multi-dimensional arrays are not supported")
        if isinstance(node, RegNode):
            registers.append(_register(top, node))
        elif not isinstance(node, (FieldNode, RegfileNode)):
            raise CsrError(f"{where}: {type(node).__name__} not supported")
    if not registers:
        raise CsrError(f"{top.get_path()}: no registers")
    return RegisterMap(top.inst_name, top.size, registers, top.get_property("desc") or "")


def _register(top, node):
    where = node.get_path()
    width = node.get_property("regwidth")
    if width not in (32, 64) or node.get_property("accesswidth") != BUS_BITS:
        raise CsrError(f"{where}: regwidth must be 32 or 64 with accesswidth 32 "
                       f"(the bus is 32 bits), not {width}/{node.get_property('accesswidth')}")
    if node.absolute_address % (width // 8):
        raise CsrError(f"{where}: address {node.absolute_address:#x} not aligned to its width")
    # regfile names and array indices from the top down to the register
    chain, prefix, index = [], [], []
    parent = node
    while parent is not top:
        chain.append(parent)
        parent = parent.parent
    for n in reversed(chain):
        if n.is_array:
            index.extend(n.current_idx)
        if n is not node:
            prefix.append(n.inst_name.lower())
    fields = tuple(_field(f, "_".join(prefix + [f.inst_name.lower()]), tuple(index))
                   for f in node.fields())
    name = node.get_path()[len(top.get_path()) + 1:]
    return Register(name, node.absolute_address, width, fields, node.get_property("desc") or "")


def _field(node, port, index):
    where = node.get_path()
    for prop in UNSUPPORTED:
        try:
            value = node.get_property(prop)
        except LookupError:
            continue
        if value:
            raise CsrError(f"{where}: property {prop}={value} is not supported by the "
                           f"register block generator (rtl/csr/__init__.py)")
    sw, hw = node.get_property("sw").name, node.get_property("hw").name
    reset = node.get_property("reset")
    if not isinstance(reset, (int, type(None))):
        raise CsrError(f"{where}: a reset value must be a constant, not {reset!r}")
    if sw in ("rw", "w") and hw in ("r", "na"):
        kind = "strobe" if node.get_property("singlepulse") else "config"
        if sw == "w" and kind == "config":
            kind = "write-only"
    elif sw == "r" and hw == "w":
        kind = "status"
    elif sw == "r" and hw == "na":
        kind = "constant"
        if reset is None:
            raise CsrError(f"{where}: a constant (sw=r, hw=na) needs a reset value")
    else:
        raise CsrError(f"{where}: sw={sw}, hw={hw} is not supported (config: sw=rw hw=r; "
                       "strobe: the same with singlepulse; status: sw=r hw=w; "
                       "constant: sw=r hw=na)")
    if port == "bus":
        raise CsrError(f"{where}: port name 'bus' is the register block's bus")
    return Field(where, port, index, node.lsb, node.width, kind, reset or 0,
                 node.get_property("desc") or "")


def _ports(registers):
    groups = {}
    for reg in registers:
        for f in reg.fields:
            groups.setdefault(f.port, []).append((reg, f))
    ports = {}
    for name, members in groups.items():
        # every element of a port is one field of one (array of) register(s)
        template = {(_strip(f.path), f.width, f.kind) for _, f in members}
        if len(template) > 1:
            paths = sorted({t[0] for t in template})
            raise CsrError(f"port {name!r} would come from several fields: {paths}; "
                           "rename one field (port names are regfile + field names)")
        (_, width, kind), = template
        depth = {len(f.index) for _, f in members}
        dims = tuple(max(f.index[k] for _, f in members) + 1 for k in range(depth.pop()))
        if kind == "write-only":
            kind = "config"
        ports[name] = Port(name, kind, width, dims, tuple((f.index, f) for _, f in members))
    return ports


def _strip(path):
    """An RDL path without its array indices."""
    import re
    return re.sub(r"\[\d+\]", "", path)
