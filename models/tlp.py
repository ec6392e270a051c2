"""PCIe Transaction Layer Packets (TLPs): the base specification's common set.

A :class:`Tlp` is one TLP as the transaction layer sees it: header, payload and
optional digest (ECRC), no sequence number or LCRC.  ``Tlp.pack()`` gives the
bytes in PCIe order (byte 0 = Fmt/Type) and ``Tlp.unpack()`` reads them back;
the round trip is bit-exact for every type whose reserved bits are zero.

The header layouts below are data (:class:`~tlpoe.models.wire.Layout`): one
definition used by the encoder, the decoder, the RTL constants and the tests.

Conventions:

* ``length`` is the Length field in DW, decoded (1..1024; 1024 is encoded as
  0) for every TLP that carries data or reads data.  Cpl, CplLk and Msg have
  no use for it (the spec reserves it) and keep the raw 10-bit value, normally 0.
* ``byte_count`` is decoded too (1..4096; 4096 is encoded as 0).
* ``tag`` is 10 bits: Tag[7:0] in the header's Tag byte, Tag[8] in byte 1
  bit 3 (T8) and Tag[9] in byte 1 bit 7 (T9), as PCIe 4.0 places them.
* ``data`` holds the payload bytes in wire order: byte ``i`` of the payload is
  the byte at address ``(address & ~3) + i``, whatever the byte enables say.
* ``address`` is a byte address (DW aligned, the low 2 bits are PH) for
  memory, I/O and AtomicOp requests; for Msg/MsgD it holds header bytes 8..15
  raw (an address when routed by address, otherwise message specific).

Only :meth:`Tlp.pack`/:meth:`Tlp.unpack` encoding rules are enforced on the way
in and out (so testbenches can build and carry illegal TLPs);
:meth:`Tlp.validate` checks the spec's usage rules (byte enables, 4 KB
crossing, I/O and configuration sizes, AtomicOp operand sizes).
"""

from dataclasses import dataclass
from enum import Enum, IntEnum, IntFlag

import numpy as np

from tlpoe.models.wire import Field, Layout

__all__ = [
    "TlpError", "ReservedTypeError", "TruncatedTlpError", "TlpLengthError", "TlpRuleError",
    "Fmt", "TlpType", "OrderingClass", "Attr", "CplStatus", "MsgRouting", "PcieId", "Tlp",
    "HEADER_LAYOUTS", "tlp_size_from_header", "payload_size_from_header", "byte_enables",
    "byte_enable_violation",
    "random_tlp", "iter_random_tlps",
]


# ---------------------------------------------------------------- exceptions

class TlpError(ValueError):
    """Base of every malformed-TLP error; the message says what is wrong."""


class ReservedTypeError(TlpError):
    """The Fmt/Type combination is reserved (or a TLP prefix, not modelled)."""


class TruncatedTlpError(TlpError):
    """Fewer bytes than the header, or than Length and TD, call for."""


class TlpLengthError(TlpError):
    """Bytes beyond what Length and TD call for, or a field out of range on pack."""


class TlpRuleError(TlpError):
    """A well-encoded TLP that breaks a usage rule of the spec (see ``validate``)."""


# ---------------------------------------------------------------- enums

class Fmt(IntEnum):
    """Fmt[2:0]: header size and whether a payload follows."""
    THREE_DW = 0b000
    FOUR_DW = 0b001
    THREE_DW_DATA = 0b010
    FOUR_DW_DATA = 0b011
    PREFIX = 0b100


class OrderingClass(Enum):
    """The ordering / flow-control class of a TLP (Ordering Rules Summary rows).

    Not called TrafficClass: TC is a different header field (:attr:`Tlp.tc`)."""
    POSTED = "P"
    NON_POSTED = "NP"
    COMPLETION = "Cpl"

    def __str__(self):
        return self.value


class TlpType(Enum):
    """TLP types by their spec mnemonic; the 3-/4-DW choice is ``Tlp.addr64``."""
    MRd = "MRd"
    MRdLk = "MRdLk"
    MWr = "MWr"
    IORd = "IORd"
    IOWr = "IOWr"
    CfgRd0 = "CfgRd0"
    CfgWr0 = "CfgWr0"
    CfgRd1 = "CfgRd1"
    CfgWr1 = "CfgWr1"
    Msg = "Msg"
    MsgD = "MsgD"
    Cpl = "Cpl"
    CplD = "CplD"
    CplLk = "CplLk"
    CplDLk = "CplDLk"
    FetchAdd = "FetchAdd"
    Swap = "Swap"
    CAS = "CAS"

    def __str__(self):
        return self.value

    @property
    def type_code(self):
        """Type[4:0] (for Msg/MsgD, with routing r[2:0] = 000)."""
        return _ENCODING[self][0]

    @property
    def has_data(self):
        return _ENCODING[self][1]

    @property
    def header_dws(self):
        """Header sizes the type may use, in DW: (3,), (4,) or (3, 4)."""
        return _ENCODING[self][2]

    @property
    def ordering_class(self):
        return _ENCODING[self][3]

    @property
    def is_completion(self):
        return self.ordering_class is OrderingClass.COMPLETION

    @property
    def is_memory(self):
        """Memory requests and AtomicOps: the types with a 32/64-bit address."""
        return self.header_dws == (3, 4)

    @property
    def is_config(self):
        return self in (TlpType.CfgRd0, TlpType.CfgWr0, TlpType.CfgRd1, TlpType.CfgWr1)

    @property
    def is_io(self):
        return self in (TlpType.IORd, TlpType.IOWr)

    @property
    def is_message(self):
        return self in (TlpType.Msg, TlpType.MsgD)

    @property
    def is_atomic(self):
        return self in (TlpType.FetchAdd, TlpType.Swap, TlpType.CAS)

    @property
    def is_read(self):
        """Requests that ask for data back (their Length is the size asked for)."""
        return self in (TlpType.MRd, TlpType.MRdLk, TlpType.IORd, TlpType.CfgRd0, TlpType.CfgRd1)


_P, _NP, _C = OrderingClass.POSTED, OrderingClass.NON_POSTED, OrderingClass.COMPLETION
#: mnemonic: (Type[4:0], carries data, header sizes in DW, ordering class)
_ENCODING = {
    TlpType.MRd: (0b00000, False, (3, 4), _NP),
    TlpType.MRdLk: (0b00001, False, (3, 4), _NP),
    TlpType.MWr: (0b00000, True, (3, 4), _P),
    TlpType.IORd: (0b00010, False, (3,), _NP),
    TlpType.IOWr: (0b00010, True, (3,), _NP),
    TlpType.CfgRd0: (0b00100, False, (3,), _NP),
    TlpType.CfgWr0: (0b00100, True, (3,), _NP),
    TlpType.CfgRd1: (0b00101, False, (3,), _NP),
    TlpType.CfgWr1: (0b00101, True, (3,), _NP),
    TlpType.Msg: (0b10000, False, (4,), _P),
    TlpType.MsgD: (0b10000, True, (4,), _P),
    TlpType.Cpl: (0b01010, False, (3,), _C),
    TlpType.CplD: (0b01010, True, (3,), _C),
    TlpType.CplLk: (0b01011, False, (3,), _C),
    TlpType.CplDLk: (0b01011, True, (3,), _C),
    TlpType.FetchAdd: (0b01100, True, (3, 4), _NP),
    TlpType.Swap: (0b01101, True, (3, 4), _NP),
    TlpType.CAS: (0b01110, True, (3, 4), _NP),
}


class Attr(IntFlag):
    """Attr[2:0]: No Snoop, Relaxed Ordering, ID-Based Ordering."""
    NS = 0b001
    RO = 0b010
    IDO = 0b100


class CplStatus(IntEnum):
    """Completion Status; other values are reserved (kept as plain ints)."""
    SC = 0b000   # Successful Completion
    UR = 0b001   # Unsupported Request
    CRS = 0b010  # Configuration Request Retry Status
    CA = 0b100   # Completer Abort


class MsgRouting(IntEnum):
    """Message routing subfield r[2:0] (Type[2:0] of Msg/MsgD); 110b, 111b reserved."""
    TO_ROOT_COMPLEX = 0b000
    BY_ADDRESS = 0b001
    BY_ID = 0b010
    BROADCAST_FROM_ROOT_COMPLEX = 0b011
    LOCAL = 0b100
    GATHERED_TO_ROOT_COMPLEX = 0b101


@dataclass(frozen=True, order=True)
class PcieId:
    """A Requester/Completer ID: Bus[7:0], Device[4:0], Function[2:0]."""
    bus: int = 0
    device: int = 0
    function: int = 0

    def __post_init__(self):
        for name, width in (("bus", 8), ("device", 5), ("function", 3)):
            if not 0 <= getattr(self, name) < (1 << width):
                raise ValueError(f"PcieId.{name}={getattr(self, name)} does not fit {width} bits")

    @classmethod
    def from_int(cls, value):
        """The ID whose 16-bit encoding is ``value``; accepts a PcieId as is."""
        if isinstance(value, PcieId):
            return value
        value = int(value)
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"PCIe ID 0x{value:x} does not fit 16 bits")
        return cls(value >> 8, (value >> 3) & 0x1F, value & 0x7)

    @classmethod
    def parse(cls, text):
        """Parse ``"bb:dd.f"`` (hex bus and device, as lspci prints them)."""
        try:
            bus, rest = text.split(":")
            device, function = rest.split(".")
            return cls(int(bus, 16), int(device, 16), int(function, 16))
        except ValueError as err:
            raise ValueError(f"bad PCIe ID {text!r}, expected bb:dd.f") from err

    def __int__(self):
        return self.bus << 8 | self.device << 3 | self.function

    def __index__(self):
        return int(self)

    def __str__(self):
        return f"{self.bus:02x}:{self.device:02x}.{self.function:x}"


# ---------------------------------------------------------------- header layouts

def _dw0_fields():
    return [
        Field("fmt", 0, 1, "Fmt[2:0]: header size, data present", bits=3, shift=5),
        Field("type", 0, 1, "Type[4:0]", bits=5, shift=0),
        Field("t9", 1, 1, "Tag[9] (PCIe 4.0+ 10-bit tags)", bits=1, shift=7),
        Field("tc", 1, 1, "Traffic Class", bits=3, shift=4),
        Field("t8", 1, 1, "Tag[8] (PCIe 4.0+ 10-bit tags)", bits=1, shift=3),
        Field("attr2", 1, 1, "Attr[2]: ID-Based Ordering", bits=1, shift=2),
        Field("ln", 1, 1, "Lightweight Notification (deprecated)", bits=1, shift=1),
        Field("th", 1, 1, "TLP Processing Hints present", bits=1, shift=0),
        Field("td", 2, 1, "TLP Digest (ECRC) present", bits=1, shift=7),
        Field("ep", 2, 1, "Poisoned", bits=1, shift=6),
        Field("attr", 2, 1, "Attr[1:0]: Relaxed Ordering, No Snoop", bits=2, shift=4),
        Field("at", 2, 1, "Address Type", bits=2, shift=2),
        Field("length", 2, 2, "Length in DW (0 = 1024)", bits=10, shift=0),
    ]


def _request_dw1_fields():
    return [
        Field("requester_id", 4, 2, "Requester ID"),
        Field("tag", 6, 1, "Tag[7:0]"),
        Field("last_be", 7, 1, "Last DW Byte Enables", bits=4, shift=4),
        Field("first_be", 7, 1, "First DW Byte Enables", bits=4, shift=0),
    ]


#: Header layouts by kind; "mem3"/"mem4" also serve I/O and AtomicOp requests.
HEADER_LAYOUTS = {
    "mem3": Layout("tlp_mem3", 12, _dw0_fields() + _request_dw1_fields() + [
        Field("address", 8, 4, "Address[31:2]", bits=30, shift=2),
        Field("ph", 8, 4, "Processing Hint", bits=2, shift=0),
    ]),
    "mem4": Layout("tlp_mem4", 16, _dw0_fields() + _request_dw1_fields() + [
        Field("address", 8, 8, "Address[63:2]", bits=62, shift=2),
        Field("ph", 8, 8, "Processing Hint", bits=2, shift=0),
    ]),
    "cfg": Layout("tlp_cfg", 12, _dw0_fields() + _request_dw1_fields() + [
        Field("dest_id", 8, 2, "Bus, Device, Function Number of the target"),
        Field("reserved", 10, 1, "reserved", bits=4, shift=4),
        Field("register", 10, 2, "Extended Register Number, Register Number (DW index)",
              bits=10, shift=2),
        Field("reserved_lo", 11, 1, "reserved", bits=2, shift=0),
    ]),
    "msg": Layout("tlp_msg", 16, _dw0_fields() + [
        Field("requester_id", 4, 2, "Requester ID"),
        Field("tag", 6, 1, "Tag[7:0]"),
        Field("message_code", 7, 1, "Message Code"),
        Field("address", 8, 8, "bytes 8-15: address or message specific"),
    ]),
    "cpl": Layout("tlp_cpl", 12, _dw0_fields() + [
        Field("completer_id", 4, 2, "Completer ID"),
        Field("status", 6, 1, "Completion Status", bits=3, shift=5),
        Field("bcm", 6, 1, "Byte Count Modified", bits=1, shift=4),
        Field("byte_count", 6, 2, "Byte Count (0 = 4096)", bits=12, shift=0),
        Field("requester_id", 8, 2, "Requester ID"),
        Field("tag", 10, 1, "Tag[7:0]"),
        Field("reserved", 11, 1, "reserved", bits=1, shift=7),
        Field("lower_address", 11, 1, "Lower Address[6:0]", bits=7, shift=0),
    ]),
}


def _layout_kind(tlp_type, four_dw):
    if tlp_type.is_config:
        return "cfg"
    if tlp_type.is_message:
        return "msg"
    if tlp_type.is_completion:
        return "cpl"
    return "mem4" if four_dw else "mem3"


def _build_decode_table():
    table = {}
    for tlp_type, (code, has_data, sizes, _) in _ENCODING.items():
        for dws in sizes:
            fmt = (has_data << 1) | (dws == 4)
            if tlp_type.is_message:
                for routing in MsgRouting:
                    table[fmt, code | routing] = tlp_type
            else:
                table[fmt, code] = tlp_type
    return table


#: (Fmt, Type) -> TlpType for every combination the model accepts.
_DECODE = _build_decode_table()


def _decode_type(fmt, type_code):
    """TlpType of a Fmt/Type pair, or ReservedTypeError naming it."""
    if fmt == Fmt.PREFIX:
        raise ReservedTypeError(f"Fmt=100b is a TLP prefix (Type {type_code:05b}b), not modelled")
    if fmt > Fmt.PREFIX:
        raise ReservedTypeError(f"reserved Fmt {fmt:03b}b")
    try:
        return _DECODE[fmt, type_code]
    except KeyError:
        raise ReservedTypeError(f"reserved Fmt/Type {fmt:03b}b/{type_code:05b}b") from None


def _length_is_raw(tlp_type):
    """Types whose Length field the spec reserves: kept raw, not 0 -> 1024."""
    return tlp_type in (TlpType.Cpl, TlpType.CplLk, TlpType.Msg)


# ---------------------------------------------------------------- size helpers

def tlp_size_from_header(first_dw):
    """Total TLP size in bytes from its first 4 bytes only, as the RTL does it:
    header (12 or 16 by Fmt[0]) + Length*4 when Fmt[1] says data (Length 0 means
    1024 DW) + 4 when TD is set.  The Type field is not looked at.

    Raises TruncatedTlpError for fewer than 4 bytes and ReservedTypeError for a
    TLP prefix or reserved Fmt."""
    if len(first_dw) < 4:
        raise TruncatedTlpError(f"TLP size needs the first 4 bytes, got {len(first_dw)}")
    fmt = first_dw[0] >> 5
    if fmt >= Fmt.PREFIX:
        raise ReservedTypeError(f"Fmt {fmt:03b}b has no TLP size (prefix or reserved)")
    length = ((first_dw[2] & 0x3) << 8 | first_dw[3]) or 1024
    header = 16 if fmt & 1 else 12
    payload = 4 * length if fmt & 2 else 0
    digest = 4 if first_dw[2] & 0x80 else 0
    return header + payload + digest


def payload_size_from_header(first_dw):
    """Data payload bytes of a TLP from its first 4 bytes (Length*4 when Fmt
    says data, else 0), under the rules of :func:`tlp_size_from_header`."""
    tlp_size_from_header(first_dw)              # the same checks
    if not first_dw[0] & 0x40:
        return 0
    return 4 * (((first_dw[2] & 0x3) << 8 | first_dw[3]) or 1024)


def byte_enables(address, nbytes):
    """(first_be, last_be, length_dw) of a request for ``nbytes`` bytes at byte
    ``address``; ``nbytes == 0`` gives the zero-length request (1 DW, BEs 0)."""
    if nbytes < 0:
        raise ValueError(f"nbytes={nbytes} is negative")
    if nbytes == 0:
        return 0, 0, 1
    end = address + nbytes
    length = (end + 3) // 4 - address // 4
    first_be = (0xF << (address & 3)) & 0xF
    last_be = 0xF >> (-end & 3)
    if length == 1:
        return first_be & last_be, 0, 1
    return first_be, last_be, length


_CONTIGUOUS_FIRST_BE = (0b1111, 0b1110, 0b1100, 0b1000)
_CONTIGUOUS_LAST_BE = (0b0001, 0b0011, 0b0111, 0b1111)


def byte_enable_violation(length, first_be, last_be, address=0):
    """The byte-enable rule a request breaks (a sentence), or None if legal.

    1 DW: Last DW BE must be 0000b (any First DW BE, 0000b is a zero-length
    access).  More than 1 DW: neither BE may be 0000b, and both must be
    contiguous with the data between them, except for a QW-aligned 2-DW
    request, which may have non-contiguous byte enables."""
    if length == 1:
        return "Last DW BE must be 0000b for a 1-DW request" if last_be else None
    if first_be == 0 or last_be == 0:
        return "First and Last DW BE must not be 0000b when Length > 1 DW"
    if length == 2 and address % 8 == 0:
        return None
    if first_be not in _CONTIGUOUS_FIRST_BE:
        return f"First DW BE {first_be:04b}b is not contiguous with the following data"
    if last_be not in _CONTIGUOUS_LAST_BE:
        return f"Last DW BE {last_be:04b}b is not contiguous with the preceding data"
    return None


def _first_byte_offset(first_be):
    """Offset of the first enabled byte in the first DW (0 when none)."""
    for offset in range(4):
        if first_be >> offset & 1:
            return offset
    return 0


def _read_byte_count(length, first_be, last_be):
    """Byte Count a completer reports for a whole read request (spec table
    "Calculating Byte Count from Length and Byte Enables")."""
    if length == 1:
        if first_be == 0:
            return 1
        enabled = [i for i in range(4) if first_be >> i & 1]
        return enabled[-1] - enabled[0] + 1
    # a Last DW BE of 0 with Length > 1 is malformed; read as 0 (the
    # completion tracker's RTL does the same)
    last_enabled = max((i for i in range(4) if last_be >> i & 1), default=0)
    return 4 * length - _first_byte_offset(first_be) - (3 - last_enabled)


# ---------------------------------------------------------------- the TLP

@dataclass
class Tlp:
    """One TLP.  Fields that a type does not carry keep their defaults.

    Leaving ``length``, ``td``, ``addr64`` or ``byte_count`` as None derives
    them: length from ``data`` (1 for reads, 0 for Cpl/CplLk/Msg), td from
    ``digest``, addr64 from ``address >= 2**32`` (fixed by the type for
    non-memory TLPs: False, Msg True), byte_count from ``data`` (4 when empty).
    """
    type: TlpType
    length: int | None = None
    data: bytes = b""
    tc: int = 0
    attr: Attr = Attr(0)
    th: bool = False
    ln: bool = False
    td: bool | None = None
    ep: bool = False
    at: int = 0
    requester_id: PcieId = PcieId()
    tag: int = 0
    first_be: int = 0
    last_be: int = 0
    address: int = 0
    addr64: bool | None = None
    ph: int = 0
    dest_id: PcieId = PcieId()          # Cfg requests: the target's Bus/Device/Function
    register: int = 0                   # Cfg requests: Extended Register, Register Number
    message_code: int = 0
    routing: MsgRouting = MsgRouting.TO_ROOT_COMPLEX  # Msg/MsgD: r[2:0] of Type
    completer_id: PcieId = PcieId()
    status: CplStatus = CplStatus.SC
    bcm: bool = False
    byte_count: int | None = None
    lower_address: int = 0
    digest: bytes | None = None

    def __post_init__(self):
        self.type = TlpType(self.type)
        self.data = bytes(self.data)
        self.attr = Attr(self.attr)
        for name in ("requester_id", "dest_id", "completer_id"):
            setattr(self, name, PcieId.from_int(getattr(self, name)))
        self.status = _status(self.status)
        if self.routing in MsgRouting._value2member_map_:
            self.routing = MsgRouting(self.routing)
        if self.digest is not None:
            self.digest = bytes(self.digest)
        if self.td is None:
            self.td = self.digest is not None
        if self.length is None:
            self.length = self._default_length()
        if self.addr64 is None:
            self.addr64 = self.address >= 1 << 32 if self.type.is_memory else self.type.is_message
        if self.byte_count is None and self.type.is_completion:
            self.byte_count = len(self.data) or 4

    def _default_length(self):
        if self.type.has_data:
            return -(-len(self.data) // 4)
        return 0 if _length_is_raw(self.type) else 1

    # -- derived properties

    @property
    def fmt(self):
        return Fmt((self.type.has_data << 1) | self.addr64)

    @property
    def type_code(self):
        """Type[4:0] as sent (Msg/MsgD: 10b followed by routing r[2:0])."""
        return self.type.type_code | (self.routing if self.type.is_message else 0)

    @property
    def ordering_class(self):
        """POSTED, NON_POSTED or COMPLETION, from the type."""
        return self.type.ordering_class

    @property
    def header_size(self):
        return 16 if self.addr64 else 12

    @property
    def size(self):
        """Bytes of the whole TLP: header, payload (per Length) and digest."""
        payload = 4 * self.length if self.type.has_data else 0
        return self.header_size + payload + 4 * bool(self.td)

    @property
    def truncated(self):
        """True when ``data`` or ``digest`` holds fewer bytes than the header
        calls for (a TLP read from a capture cut short)."""
        short_data = self.type.has_data and len(self.data) < 4 * self.length
        return short_data or (self.td and self.digest is None)

    @property
    def ro(self):
        return Attr.RO in self.attr

    @property
    def ns(self):
        return Attr.NS in self.attr

    @property
    def ido(self):
        return Attr.IDO in self.attr

    @property
    def register_offset(self):
        """Byte offset in configuration space of a Cfg request."""
        return 4 * self.register

    # -- pack / unpack

    def pack(self):
        """The TLP's bytes in PCIe order.  Raises TlpLengthError naming the
        field when one does not fit or ``data``/``digest`` disagree with the
        header (including a truncated TLP)."""
        self._check_for_pack()
        kind = _layout_kind(self.type, self.addr64)
        try:
            header = HEADER_LAYOUTS[kind].pack(**self._header_values(kind))
        except ValueError as err:
            raise TlpLengthError(str(err)) from None
        return header + self.data + (self.digest or b"")

    def _check_for_pack(self):
        if self.addr64 not in self._allowed_addr64():
            raise TlpLengthError(f"{self.type} cannot use a {self.header_size // 4}-DW header")
        if not self.addr64 and self.type.is_memory and self.address >= 1 << 32:
            raise TlpLengthError(f"address 0x{self.address:x} needs a 4-DW header (addr64)")
        if (self.type.is_memory or self.type.is_io) and self.address & 3:
            raise TlpLengthError(f"address 0x{self.address:x} is not DW aligned")
        low = 0 if _length_is_raw(self.type) else 1
        top = 1023 if _length_is_raw(self.type) else 1024
        if not low <= self.length <= top:
            raise TlpLengthError(f"{self.type} length={self.length} DW out of range {low}..{top}")
        if self.type.has_data and len(self.data) != 4 * self.length:
            raise TlpLengthError(f"{self.type} length={self.length} DW but "
                                 f"{len(self.data)} payload bytes")
        if self.td != (self.digest is not None) or (self.td and len(self.digest) != 4):
            raise TlpLengthError("TD must be set exactly when a 4-byte digest is present")
        if self.type.is_message and self.routing not in MsgRouting._value2member_map_:
            raise ReservedTypeError(f"reserved message routing r={self.routing:03b}b")
        if self.type.is_completion and not 1 <= self.byte_count <= 4096:
            raise TlpLengthError(f"byte_count={self.byte_count} out of range 1..4096")

    def _allowed_addr64(self):
        return tuple(dws == 4 for dws in self.type.header_dws)

    def _header_values(self, kind):
        """Field values of ``HEADER_LAYOUTS[kind]`` for this TLP."""
        if not 0 <= self.tag < 1 << 10:
            raise TlpLengthError(f"tag={self.tag} does not fit 10 bits")
        values = dict(
            fmt=self.fmt, type=self.type_code, tc=self.tc, th=self.th, ln=self.ln,
            td=self.td, ep=self.ep, at=self.at, attr=self.attr & 0b11, attr2=self.attr >> 2,
            length=self.length % 1024 if not _length_is_raw(self.type) else self.length,
            t9=self.tag >> 9 & 1, t8=self.tag >> 8 & 1, tag=self.tag & 0xFF,
            requester_id=int(self.requester_id),
        )
        if kind in ("mem3", "mem4", "cfg"):
            values.update(first_be=self.first_be, last_be=self.last_be)
        if kind in ("mem3", "mem4"):
            values.update(address=self.address >> 2, ph=self.ph)
        elif kind == "cfg":
            values.update(dest_id=int(self.dest_id), register=self.register)
        elif kind == "msg":
            values.update(message_code=self.message_code, address=self.address)
        elif kind == "cpl":
            values.update(completer_id=int(self.completer_id), status=self.status,
                          bcm=self.bcm, byte_count=self.byte_count % 4096,
                          lower_address=self.lower_address)
        return values

    @classmethod
    def unpack(cls, data, *, allow_truncated=False):
        """The Tlp in ``data`` (exactly one TLP, header first).

        Raises ReservedTypeError (reserved Fmt/Type), TruncatedTlpError (fewer
        bytes than the header or than Length/TD call for) or TlpLengthError
        (bytes left over).  With ``allow_truncated`` a short payload or digest
        is kept as captured (``.truncated`` is then True); the header must
        still be whole."""
        data = bytes(data)
        if len(data) < 4:
            raise TruncatedTlpError(f"TLP of {len(data)} bytes has no complete first DW")
        tlp_type = _decode_type(data[0] >> 5, data[0] & 0x1F)
        header_size = 16 if data[0] >> 5 & 1 else 12
        if len(data) < header_size:
            raise TruncatedTlpError(f"{tlp_type} needs a {header_size}-byte header, "
                                    f"got {len(data)} bytes")
        layout = HEADER_LAYOUTS[_layout_kind(tlp_type, header_size == 16)]
        tlp = cls._from_header(tlp_type, layout.unpack(data))
        cls._take_payload(tlp, data, header_size, allow_truncated)
        return tlp

    @classmethod
    def _from_header(cls, tlp_type, h):
        raw_length = _length_is_raw(tlp_type)
        tlp = cls(
            type=tlp_type, length=h["length"] if raw_length else h["length"] or 1024,
            tc=h["tc"], attr=Attr(h["attr2"] << 2 | h["attr"]), th=bool(h["th"]),
            ln=bool(h["ln"]), td=bool(h["td"]), ep=bool(h["ep"]), at=h["at"],
            requester_id=h["requester_id"], tag=h["t9"] << 9 | h["t8"] << 8 | h["tag"],
            addr64=bool(h["fmt"] & 1),
        )
        if tlp_type.is_memory or tlp_type.is_io:
            tlp.first_be, tlp.last_be = h["first_be"], h["last_be"]
            tlp.address, tlp.ph = h["address"] << 2, h["ph"]
        elif tlp_type.is_config:
            tlp.first_be, tlp.last_be = h["first_be"], h["last_be"]
            tlp.dest_id, tlp.register = PcieId.from_int(h["dest_id"]), h["register"]
        elif tlp_type.is_message:
            tlp.routing = MsgRouting(h["type"] & 0b111)
            tlp.message_code, tlp.address = h["message_code"], h["address"]
        else:
            tlp.completer_id = PcieId.from_int(h["completer_id"])
            tlp.status = _status(h["status"])
            tlp.bcm, tlp.byte_count = bool(h["bcm"]), h["byte_count"] or 4096
            tlp.lower_address = h["lower_address"]
        return tlp

    @staticmethod
    def _take_payload(tlp, data, header_size, allow_truncated):
        payload_size = 4 * tlp.length if tlp.type.has_data else 0
        expected = header_size + payload_size + 4 * tlp.td
        if len(data) > expected:
            raise TlpLengthError(f"{tlp.type} length={tlp.length} DW td={int(tlp.td)} is "
                                 f"{expected} bytes, got {len(data) - expected} more")
        if len(data) < expected and not allow_truncated:
            raise TruncatedTlpError(f"{tlp.type} length={tlp.length} DW td={int(tlp.td)} "
                                    f"needs {expected} bytes, got {len(data)}")
        tlp.data = data[header_size:header_size + payload_size]
        digest = data[header_size + payload_size:expected]
        tlp.digest = digest if tlp.td and len(digest) == 4 else None

    # -- rules

    def validate(self):
        """Check the spec's usage rules; raise TlpRuleError naming the first
        broken one.  Encoding rules are :meth:`pack`'s job."""
        problem = self.rule_violation()
        if problem:
            raise TlpRuleError(f"{self.type}: {problem}")
        return self

    def rule_violation(self):
        """The first usage rule this TLP breaks (a sentence), or None."""
        t = self.type
        if t in (TlpType.MRd, TlpType.MRdLk, TlpType.MWr):
            if (self.address & 0xFFF) + 4 * self.length > 4096:
                return "a memory request must not cross a 4 KB boundary"
            return byte_enable_violation(self.length, self.first_be, self.last_be, self.address)
        if t.is_io or t.is_config:
            if self.length != 1 or self.last_be:
                return "I/O and configuration requests are 1 DW with Last DW BE 0000b"
            if self.tc or self.attr & (Attr.RO | Attr.NS) or self.th:
                return "I/O and configuration requests use TC0, no RO/NS and no TH"
        if t.is_atomic:
            return self._atomic_violation()
        if t is TlpType.Msg and self.length:
            return "Msg without data has Length 0"
        return None

    def _atomic_violation(self):
        operand = 4 * self.length // (2 if self.type is TlpType.CAS else 1)
        sizes = (4, 8, 16) if self.type is TlpType.CAS else (4, 8)
        if operand not in sizes:
            return f"operand of {operand} bytes, expected one of {sizes}"
        if self.address % operand:
            return f"address 0x{self.address:x} not aligned to the {operand}-byte operand"
        return None

    # -- constructors

    @classmethod
    def mem_read(cls, address, nbytes, *, requester_id=0, tag=0, locked=False, **fields):
        """MRd (MRdLk if ``locked``) for ``nbytes`` bytes at byte ``address``;
        byte enables and Length are derived, 4-DW header above 4 GB."""
        first_be, last_be, length = byte_enables(address, nbytes)
        return cls(TlpType.MRdLk if locked else TlpType.MRd, length=length,
                   address=address & ~3, first_be=first_be, last_be=last_be,
                   requester_id=requester_id, tag=tag, **fields)

    @classmethod
    def mem_write(cls, address, data, *, requester_id=0, tag=0, **fields):
        """MWr of ``data`` at byte ``address``: the payload is padded to whole
        DWs with zero bytes, which the byte enables disable."""
        first_be, last_be, length = byte_enables(address, len(data))
        pad_front = address & 3 if data else 0
        payload = bytes(pad_front) + bytes(data)
        payload += bytes(4 * length - len(payload))
        return cls(TlpType.MWr, data=payload, address=address & ~3, first_be=first_be,
                   last_be=last_be, requester_id=requester_id, tag=tag, **fields)

    @classmethod
    def io_read(cls, address, nbytes=4, *, requester_id=0, tag=0, **fields):
        """IORd of 1..4 bytes within one DW."""
        first_be, _, length = byte_enables(address, nbytes)
        if length != 1:
            raise ValueError("an I/O read stays within one DW")
        return cls(TlpType.IORd, address=address & ~3, first_be=first_be,
                   requester_id=requester_id, tag=tag, **fields)

    @classmethod
    def io_write(cls, address, data, *, requester_id=0, tag=0, **fields):
        """IOWr of 1..4 bytes within one DW."""
        first_be, _, length = byte_enables(address, len(data))
        if length != 1:
            raise ValueError("an I/O write stays within one DW")
        pad = address & 3
        payload = (bytes(pad) + bytes(data)).ljust(4, b"\0")
        return cls(TlpType.IOWr, data=payload, address=address & ~3, first_be=first_be,
                   requester_id=requester_id, tag=tag, **fields)

    @classmethod
    def cfg_read(cls, dest_id, register, *, type1=False, first_be=0xF, requester_id=0,
                 tag=0, **fields):
        """CfgRd0 (CfgRd1 if ``type1``) of DW ``register`` of function ``dest_id``."""
        return cls(TlpType.CfgRd1 if type1 else TlpType.CfgRd0, dest_id=dest_id,
                   register=register, first_be=first_be, requester_id=requester_id,
                   tag=tag, **fields)

    @classmethod
    def cfg_write(cls, dest_id, register, data, *, type1=False, first_be=0xF,
                  requester_id=0, tag=0, **fields):
        """CfgWr0 (CfgWr1 if ``type1``) of the 4 bytes ``data``."""
        return cls(TlpType.CfgWr1 if type1 else TlpType.CfgWr0, data=data, dest_id=dest_id,
                   register=register, first_be=first_be, requester_id=requester_id,
                   tag=tag, **fields)

    @classmethod
    def completion(cls, *, requester_id, tag, completer_id, data=b"",
                   status=CplStatus.SC, byte_count=None, lower_address=0, locked=False,
                   **fields):
        """Cpl/CplD (CplLk/CplDLk if ``locked``); CplD when ``data`` is given."""
        if locked:
            tlp_type = TlpType.CplDLk if data else TlpType.CplLk
        else:
            tlp_type = TlpType.CplD if data else TlpType.Cpl
        return cls(tlp_type, data=data, requester_id=requester_id, tag=tag,
                   completer_id=completer_id, status=status, byte_count=byte_count,
                   lower_address=lower_address, **fields)

    @classmethod
    def completion_for(cls, request, *, completer_id, data=b"", status=CplStatus.SC):
        """The single completion answering ``request`` whole: Byte Count and
        Lower Address from its Length and byte enables, TC and Attr copied."""
        t = request.type
        if t.ordering_class is not OrderingClass.NON_POSTED:
            raise ValueError(f"{t} is not a non-posted request")
        if t in (TlpType.MRd, TlpType.MRdLk):
            byte_count = _read_byte_count(request.length, request.first_be, request.last_be)
            lower = (request.address & 0x7C) | _first_byte_offset(request.first_be)
        elif t.is_atomic:
            byte_count = 4 * request.length // (2 if t is TlpType.CAS else 1)
            lower = request.address & 0x7F
        else:
            byte_count, lower = 4, 0
        return cls.completion(requester_id=request.requester_id, tag=request.tag,
                              completer_id=completer_id, data=data, status=status,
                              byte_count=byte_count, lower_address=lower,
                              locked=t is TlpType.MRdLk, tc=request.tc,
                              attr=request.attr & (Attr.RO | Attr.IDO))

    @classmethod
    def message(cls, message_code, *, routing=MsgRouting.LOCAL, data=b"", address=0,
                requester_id=0, tag=0, **fields):
        """Msg (MsgD when ``data`` is given) with routing r[2:0] = ``routing``."""
        return cls(TlpType.MsgD if data else TlpType.Msg, data=data, routing=routing,
                   message_code=message_code, address=address, requester_id=requester_id,
                   tag=tag, **fields)

    @classmethod
    def atomic(cls, op, address, operands, *, requester_id=0, tag=0, **fields):
        """FetchAdd/Swap (one operand) or CAS (compare then swap value) with
        ``operands`` as the payload bytes; a 4-DW header above 4 GB."""
        op = TlpType(op)
        if not op.is_atomic:
            raise ValueError(f"{op} is not an AtomicOp")
        length = len(operands) // 4
        return cls(op, data=operands, address=address, first_be=0xF,
                   last_be=0xF if length > 1 else 0, requester_id=requester_id,
                   tag=tag, **fields)

    # -- display

    def __str__(self):
        """One line in the style of a protocol analyser."""
        parts = [f"{self.type}{'64' if self.addr64 and self.type.is_memory else ''}",
                 f"len {self.length}"]
        if self.type.is_completion:
            parts += [f"cpl {self.completer_id}", f"req {self.requester_id}",
                      f"tag 0x{self.tag:02x}", f"status {_status_name(self.status)}",
                      f"bc {self.byte_count}", f"la 0x{self.lower_address:02x}"]
        else:
            parts += [f"req {self.requester_id}", f"tag 0x{self.tag:02x}"]
        if self.type.is_memory or self.type.is_io:
            parts.append(f"addr 0x{self.address:x}")
        if self.type.is_config:
            parts.append(f"dest {self.dest_id} reg 0x{self.register_offset:03x}")
        if self.type.is_message:
            parts.append(f"code 0x{self.message_code:02x} r {self.routing:03b}")
        if not (self.type.is_completion or self.type.is_message):
            parts.append(f"be 0x{self.first_be:x}/0x{self.last_be:x}")
        return " ".join(parts)


def _status(value):
    return CplStatus(value) if value in CplStatus._value2member_map_ else value


def _status_name(status):
    return status.name if isinstance(status, CplStatus) else f"0b{status:03b}"


# ---------------------------------------------------------------- random TLPs

def _bits(rng, n):
    """A uniform random int of ``n`` bits."""
    return int.from_bytes(rng.bytes((n + 7) // 8), "big") & ((1 << n) - 1)


def _rand_id(rng):
    return PcieId.from_int(_bits(rng, 16))


def _rand_common(rng):
    digest = rng.bytes(4) if rng.random() < 0.5 else None
    return dict(tc=_bits(rng, 3), attr=_bits(rng, 3), ep=rng.random() < 0.1,
                requester_id=_rand_id(rng), tag=_bits(rng, 10), digest=digest)


def _rand_address(rng, addr64, align=4):
    if addr64:
        address = (1 << 32) + _bits(rng, 64) % ((1 << 64) - (1 << 32))
    else:
        address = _bits(rng, 32)
    return address - address % align


def _rand_dws(rng, max_payload):
    return int(rng.integers(1, max(1, max_payload // 4) + 1))


def _rand_memory(rng, tlp_type, max_payload):
    addr64 = bool(rng.random() < 0.5)
    address = _rand_address(rng, addr64, align=1)
    room = min(4096 - (address & 0xFFF),     # no 4 KB crossing
               max(4, max_payload) - (address & 3))   # whole DWs within max_payload
    least = 1 if tlp_type.has_data else 0
    nbytes = int(rng.integers(least, room + 1))
    first_be, last_be, length = byte_enables(address, nbytes)
    if length == 1 and rng.random() < 0.3:
        first_be = _bits(rng, 4)              # 1-DW requests may be non-contiguous
    if length == 2 and rng.random() < 0.3:
        address -= address % 8                # QW-aligned 2-DW: non-contiguous allowed
        first_be, last_be = int(rng.integers(1, 16)), int(rng.integers(1, 16))
    fields = _rand_common(rng)
    th = bool(rng.random() < 0.2)
    data = rng.bytes(4 * length) if tlp_type.has_data else b""
    return Tlp(tlp_type, length=length, data=data, address=address & ~3, addr64=addr64,
               first_be=first_be, last_be=last_be, th=th, ph=_bits(rng, 2) if th else 0,
               at=int(rng.integers(0, 3)), **fields)


def _rand_io_or_cfg(rng, tlp_type, max_payload):
    fields = _rand_common(rng)
    fields.update(tc=0, attr=fields["attr"] & Attr.IDO if tlp_type.is_config else 0)
    data = rng.bytes(4) if tlp_type.has_data else b""
    first_be = _bits(rng, 4)
    if tlp_type.is_io:
        return Tlp(tlp_type, data=data, address=_rand_address(rng, False),
                   first_be=first_be, **fields)
    return Tlp(tlp_type, data=data, dest_id=_rand_id(rng), register=_bits(rng, 10),
               first_be=first_be, **fields)


def _rand_message(rng, tlp_type, max_payload):
    data = rng.bytes(4 * _rand_dws(rng, max_payload)) if tlp_type.has_data else b""
    return Tlp(tlp_type, data=data, message_code=_bits(rng, 8), address=_bits(rng, 64),
               routing=int(rng.integers(0, 6)), **_rand_common(rng))


def _rand_completion(rng, tlp_type, max_payload):
    lower_address = _bits(rng, 7)
    if tlp_type.has_data:
        data = rng.bytes(4 * _rand_dws(rng, max_payload))
        least = max(1, len(data) - (lower_address & 3) - 3)
        status = CplStatus.SC
    else:
        data, least = b"", 1
        status = CplStatus(int(rng.choice([s.value for s in CplStatus])))
    return Tlp(tlp_type, data=data, completer_id=_rand_id(rng), status=status,
               bcm=bool(rng.random() < 0.1), byte_count=int(rng.integers(least, 4097)),
               lower_address=lower_address, **_rand_common(rng))


def _rand_atomic(rng, tlp_type, max_payload):
    sizes = (4, 8, 16) if tlp_type is TlpType.CAS else (4, 8)
    operand = int(rng.choice(sizes))
    payload = 2 * operand if tlp_type is TlpType.CAS else operand
    addr64 = bool(rng.random() < 0.5)
    return Tlp.atomic(tlp_type, _rand_address(rng, addr64, align=operand), rng.bytes(payload),
                      addr64=addr64, at=int(rng.integers(0, 3)), **_rand_common(rng))


def _random_maker(tlp_type):
    if tlp_type.is_atomic:
        return _rand_atomic
    if tlp_type.is_memory:
        return _rand_memory
    if tlp_type.is_io or tlp_type.is_config:
        return _rand_io_or_cfg
    if tlp_type.is_message:
        return _rand_message
    return _rand_completion


def random_tlp(rng: np.random.Generator, *, max_payload=256, types=None) -> Tlp:
    """A random TLP that passes :meth:`Tlp.validate`: type drawn uniformly from
    ``types`` (default every TlpType), random header fields, 32/64-bit
    addresses, a random digest half the time.  Memory, message and completion
    payloads (and memory read sizes) are 1..``max_payload`` bytes in whole DWs
    (at least one DW; memory requests also stay within a 4 KB page); I/O,
    configuration and AtomicOp payloads have the sizes their rules fix."""
    choices = list(TlpType) if types is None else [TlpType(t) for t in types]
    if not choices:
        raise ValueError("types is empty")
    tlp_type = choices[int(rng.integers(len(choices)))]
    return _random_maker(tlp_type)(rng, tlp_type, max_payload)


def iter_random_tlps(seed, n, **kw):
    """``n`` TLPs from :func:`random_tlp` with ``numpy.random.default_rng(seed)``:
    the same seed always gives the same sequence."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield random_tlp(rng, **kw)
