"""The tlpoe wire format: the one definition of every byte on the wire.

The frame model (:mod:`tlpoe.models.frame`), the RTL (constants and header
assembly in :mod:`tlpoe.rtl`), the tests and ``docs/wire-format.md`` all read
the layouts below; nothing else spells an offset.

A tlpoe frame, as handed to the MAC (no preamble, no Ethernet FCS)::

    +-------------------+------------------+---------------------------+---------+
    | Ethernet II (14)  | bridge header(26)| TLP area: (prefix, TLP)*  | CRC (4) |
    +-------------------+------------------+---------------------------+---------+
    0                   14                 40                          40+L

* Multi-byte header fields are big-endian (network order); TLP bytes are
  carried exactly as PCIe orders them (byte 0 = Fmt/Type).
* The bridge header is 26 bytes so that the TLP area starts at frame offset
  40: every prefix and every TLP then starts on a 4-byte (DW) boundary of the
  frame, which keeps the RTL's packing in whole DWs.
* Each TLP is preceded by a 4-byte prefix whose ``tlp_length`` is the TLP's
  size in bytes (header, payload and digest; a multiple of 4).
* The CRC is CRC-32 (the IEEE 802.3 polynomial, reflected, init and xorout
  0xFFFFFFFF: Python's ``zlib.crc32``) over the bridge header and the TLP area,
  frame bytes ``14 .. 40+L-1``, appended least-significant byte first (as the
  Ethernet FCS is). It is end to end: the Ethernet FCS only covers one hop.
* A frame shorter than the Ethernet minimum (60 bytes without FCS) is padded
  by the MAC after the CRC; ``payload_length`` tells the receiver where the
  TLP area ends, so the padding is ignored.
"""

from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "Field", "Layout", "FrameType", "LinkState", "ETHERNET", "BRIDGE_HEADER", "TLP_PREFIX",
    "KEEPALIVE_FIELDS", "KEEPALIVE_OFFSET",
    "ETHERTYPE", "VERSION", "ETH_LEN", "BRIDGE_LEN", "HEADER_LEN", "PREFIX_LEN",
    "CRC_LEN", "MIN_FRAME", "MTUS", "body_capacity", "max_tlp_bytes",
]

#: IEEE 802 local experimental EtherType 1; configurable per bridge.
ETHERTYPE = 0x88B5
#: Version carried in every bridge header; a receiver drops any other.
VERSION = 1
#: Ethernet payload sizes (MTU) the format is verified at.
MTUS = (1500, 9000)
#: Shortest frame a MAC sends, without FCS (IEEE 802.3 minimum of 64 with FCS).
MIN_FRAME = 60


class FrameType(IntEnum):
    """``frame_type`` field of the bridge header."""
    DATA = 0          #: carries one or more TLPs
    ACK = 1           #: cumulative acknowledgement, no TLPs
    NAK = 2           #: negative acknowledgement: resend from ``seq``, the first frame missing
    CREDIT = 3        #: credit update only
    KEEPALIVE = 4     #: liveness and the link-state handshake (:data:`KEEPALIVE_FIELDS`)


@dataclass(frozen=True)
class Field:
    """One field of a layout: ``bits`` wide, starting at bit ``shift`` of the
    big-endian word made of bytes ``offset .. offset+size-1``."""
    name: str
    offset: int   # byte offset within the layout
    size: int     # bytes spanned by the container word
    doc: str
    bits: int = 0     # 0: the whole container
    shift: int = 0    # bit position of the field's LSB within the container

    @property
    def width(self):
        return self.bits or 8 * self.size

    def get(self, buf, base=0):
        word = int.from_bytes(buf[base + self.offset:base + self.offset + self.size], "big")
        return (word >> self.shift) & ((1 << self.width) - 1)


class Layout:
    """An ordered, gap-free table of :class:`Field` (one definition, two directions)."""

    def __init__(self, name, length, fields):
        self.name = name
        self.length = length
        self.fields = tuple(fields)
        self._by_name = {f.name: f for f in self.fields}
        self._check()

    def _check(self):
        covered = [0] * (8 * self.length)      # per bit, counted from the last byte's LSB
        for f in self.fields:
            if f.offset + f.size > self.length or f.shift + f.width > 8 * f.size:
                raise ValueError(f"{self.name}.{f.name} does not fit the layout")
            for bit in range(f.shift, f.shift + f.width):
                covered[8 * (self.length - f.offset - f.size) + bit] += 1
        if any(c != 1 for c in covered):
            raise ValueError(f"{self.name}: fields must cover every bit exactly once")

    def __getitem__(self, name):
        return self._by_name[name]

    def __iter__(self):
        return iter(self.fields)

    def pack(self, **values):
        """Bytes of the layout; fields not named are zero. Raises on a value
        that does not fit its field, naming it."""
        unknown = set(values) - set(self._by_name)
        if unknown:
            raise KeyError(f"{self.name} has no field {sorted(unknown)}")
        buf = bytearray(self.length)
        for f in self.fields:
            value = int(values.get(f.name, 0))
            if not 0 <= value < (1 << f.width):
                raise ValueError(f"{self.name}.{f.name}={value} does not fit {f.width} bits")
            word = int.from_bytes(buf[f.offset:f.offset + f.size], "big") | (value << f.shift)
            buf[f.offset:f.offset + f.size] = word.to_bytes(f.size, "big")
        return bytes(buf)

    def unpack(self, buf, base=0):
        """Dict of every field of the layout read from ``buf[base:]``."""
        if len(buf) - base < self.length:
            raise ValueError(f"{self.name} needs {self.length} bytes, got {len(buf) - base}")
        return {f.name: f.get(buf, base) for f in self.fields}


ETHERNET = Layout("ethernet", 14, [
    Field("dst_mac", 0, 6, "destination MAC address"),
    Field("src_mac", 6, 6, "source MAC address"),
    Field("ethertype", 12, 2, f"EtherType, default 0x{ETHERTYPE:04X} (configurable)"),
])

BRIDGE_HEADER = Layout("bridge", 26, [
    Field("version", 0, 1, f"format version, {VERSION}", bits=4, shift=4),
    Field("frame_type", 0, 1, "DATA 0, ACK 1, NAK 2, CREDIT 3, KEEPALIVE 4", bits=4, shift=0),
    Field("flags", 1, 1, "bit 0: `ack` valid; bit 1: credit fields valid; bit 2: ECN echo (a CNP); others 0"),
    Field("channel", 2, 2, "link / channel id: which bridge pair and which link"),
    Field("seq", 4, 4, "sequence number of this frame (DATA); the link layer "
                       "uses its low `seq_bits` bits and wraps"),
    Field("ack", 8, 4, "cumulative ACK: every frame up to this sequence was received"),
    Field("tlp_count", 12, 2, "TLPs in the TLP area (0 for non-DATA frames)"),
    Field("payload_length", 14, 2, "bytes in the TLP area (prefixes and TLPs)"),
    Field("credit_p_data", 16, 2, "posted data credits (16-byte units), cumulative"),
    Field("credit_np_data", 18, 2, "non-posted data credits, cumulative"),
    Field("credit_cpl_data", 20, 2, "completion data credits, cumulative"),
    Field("credit_p_hdr", 22, 1, "posted header credits, cumulative"),
    Field("credit_np_hdr", 23, 1, "non-posted header credits, cumulative"),
    Field("credit_cpl_hdr", 24, 1, "completion header credits, cumulative"),
    Field("reserved", 25, 1, "0 on send, ignored on receive"),
])

#: Where a KEEPALIVE frame's link-state fields sit in the bridge header: in
#: the bytes the credit fields use in other frames (``flags`` bit 1, credits
#: valid, is 0 in a KEEPALIVE). ``seq`` carries the sender's ``base``.
KEEPALIVE_OFFSET = 16


class LinkState(IntEnum):
    """A bridge's link state (after BFD's, RFC 5880 section 6.2), in a
    KEEPALIVE's ``state`` field."""
    DOWN = 0
    INIT = 1
    UP = 2


KEEPALIVE_FIELDS = Layout("keepalive", 9, [
    Field("incarnation", 0, 4, "the sender's incarnation: changes whenever it loses its "
                               "link state"),
    Field("peer_incarnation", 4, 4, "the incarnation the sender holds for us "
                                    "(valid with `peer_known`)"),
    Field("reserved_ka", 8, 1, "0 on send, ignored on receive", bits=5, shift=3),
    Field("peer_known", 8, 1, "`peer_incarnation` is valid", bits=1, shift=2),
    Field("state", 8, 1, "the sender's link state: DOWN 0, INIT 1, UP 2 (3 reserved)",
          bits=2, shift=0),
])

TLP_PREFIX = Layout("tlp_prefix", 4, [
    Field("tlp_length", 0, 2, "bytes of the TLP that follows (multiple of 4, 12 or more)"),
    Field("order_stamp", 2, 2, "posted TLPs that entered the sending bridge before this "
                               "one, modulo 2**16 (read by the receiver's ordering "
                               "checker; 0 from a sender that does not stamp)"),
])

ETH_LEN = ETHERNET.length                 # 14
BRIDGE_LEN = BRIDGE_HEADER.length         # 26
HEADER_LEN = ETH_LEN + BRIDGE_LEN         # 40: TLP area offset in the frame
PREFIX_LEN = TLP_PREFIX.length            # 4
CRC_LEN = 4
#: Smallest TLP: a 3-DW header with no payload.
MIN_TLP = 12

assert HEADER_LEN % 4 == 0, "the TLP area must start on a DW boundary"


def body_capacity(mtu):
    """Bytes of TLP area (prefixes and TLPs) one frame carries at ``mtu``
    (the Ethernet payload size, 1500 or 9000)."""
    return mtu - BRIDGE_LEN - CRC_LEN


def max_tlp_bytes(mtu):
    """Largest TLP (header, payload, digest) that fits one frame at ``mtu``."""
    return body_capacity(mtu) - PREFIX_LEN
