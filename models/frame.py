"""The tlpoe frame model: TLPs (raw ``bytes``) in, Ethernet frames out, and back.

Every offset comes from :mod:`tlpoe.models.wire`; this module adds the rules
around the layouts: how TLPs are prefixed and aggregated up to the MTU, how
the end-to-end CRC is computed, and which frames a receiver drops and why
(:class:`DropReason`, checked in the order of :data:`CHECK_ORDER`, which the
RTL decapsulator matches).

A TLP here is its PCIe bytes, header first, a whole number of DWs and at least
:data:`~tlpoe.models.wire.MIN_TLP` (12) bytes; nothing else of its contents is
looked at. Plain Python, no simulator.
"""

import zlib
from dataclasses import dataclass, field, fields
from enum import IntEnum

from .wire import (
    BRIDGE_HEADER, CRC_LEN, ETH_LEN, ETHERNET, ETHERTYPE, HEADER_LEN, KEEPALIVE_FIELDS,
    KEEPALIVE_OFFSET, MIN_FRAME, MIN_TLP, PREFIX_LEN, TLP_PREFIX, VERSION, FrameType,
    body_capacity, max_tlp_bytes,
)

__all__ = [
    "DropReason", "FrameError", "Frame", "CHECK_ORDER", "ETH_REASONS", "CREDIT_FIELDS",
    "FLAG_ACK_VALID", "FLAG_CREDITS_VALID", "FLAG_ECN_ECHO", "DEFAULT_DST_MAC", "DEFAULT_SRC_MAC",
    "PREAMBLE_SFD_LEN", "FCS_LEN", "IFG_LEN",
    "encode_frame", "decode_frame", "pad_to_minimum", "frame_crc", "keepalive_credits",
    "keepalive_fields", "carries_credits",
    "aggregate", "frames_for", "largest_tlp", "frame_overhead_bytes", "wire_bytes",
    "wire_efficiency", "FrameStats",
]

#: ``flags`` bit 0: the ``ack`` field is valid.
FLAG_ACK_VALID = 1 << 0
#: ``flags`` bit 1: the six credit fields are valid.
FLAG_CREDITS_VALID = 1 << 1
#: ``flags`` bit 2: congestion echo: frames of ours arrived marked ECN-CE (a
#: DCQCN CNP riding on the next frame to the peer; docs/transports.md).
FLAG_ECN_ECHO = 1 << 2
#: The credit fields of :data:`~tlpoe.models.wire.BRIDGE_HEADER`, in layout order.
CREDIT_FIELDS = tuple(f.name for f in BRIDGE_HEADER if f.name.startswith("credit_"))

#: Locally administered unicast addresses used when none are given.
DEFAULT_DST_MAC = bytes.fromhex("020000000002")
DEFAULT_SRC_MAC = bytes.fromhex("020000000001")

#: Bytes on the wire around every frame that the frame bytes do not show
#: (IEEE 802.3): preamble + start-of-frame delimiter, FCS, minimum inter-frame gap.
PREAMBLE_SFD_LEN = 8
FCS_LEN = 4
IFG_LEN = 12


class DropReason(IntEnum):
    """Why a receiver drops a frame. The values are the RTL's drop-counter
    indices; the order in which they are checked is :data:`CHECK_ORDER`."""
    TRUNCATED = 0
    ETHERTYPE = 1
    VERSION = 2
    CRC = 3
    PREFIX_OVERRUN = 4
    COUNT_MISMATCH = 5
    EMPTY_DATA = 6
    OVERSIZE = 7
    #: the ``udp`` and ``rocev2`` transports (:mod:`tlpoe.models.transport`)
    IP_HEADER = 8
    NOT_OURS = 9


#: The receive checks, first to last: the first that applies names the drop.
#: Every condition is a function of the received bytes alone, so a
#: store-and-forward receiver computes all of them in one pass (the CRC and
#: the prefix walk while the frame streams in, the length at its end) and a
#: priority encoder picks the first. ``L`` is ``payload_length``.
CHECK_ORDER = (
    (DropReason.TRUNCATED, f"the frame has fewer than {HEADER_LEN + CRC_LEN} bytes "
                           f"({HEADER_LEN} of headers + {CRC_LEN} of CRC)"),
    (DropReason.ETHERTYPE, "the EtherType is not the one configured "
                           f"(default 0x{ETHERTYPE:04X})"),
    (DropReason.VERSION, f"the bridge header is not version {VERSION}: `version` != "
                         f"{VERSION}, or `frame_type` is not one version {VERSION} "
                         f"defines (values {len(FrameType)}..15 are reserved)"),
    (DropReason.TRUNCATED, f"the frame has fewer than {HEADER_LEN} + L + {CRC_LEN} bytes "
                           "(the TLP area or the CRC is cut off)"),
    (DropReason.PREFIX_OVERRUN, "L is not a multiple of 4: no sequence of whole-DW "
                                "prefixes and TLPs fills it, and the CRC that follows "
                                "it is not DW-aligned (checked before the CRC because "
                                "a receiver that works in DWs cannot place the CRC)"),
    (DropReason.CRC, f"CRC-32 of frame bytes {ETH_LEN} .. {HEADER_LEN}+L-1 differs from "
                     f"the little-endian word at {HEADER_LEN}+L"),
    (DropReason.PREFIX_OVERRUN, "walking the TLP area from its start, a prefix does not "
                                "fit in the L bytes, or its `tlp_length` is not a "
                                f"multiple of 4, is below {MIN_TLP}, or runs past L"),
    (DropReason.COUNT_MISMATCH, "`tlp_count` differs from the number of prefixes walked, "
                                "or a non-DATA frame has L != 0"),
    (DropReason.EMPTY_DATA, "a DATA frame carries no TLP (L = 0 and `tlp_count` = 0)"),
    (DropReason.OVERSIZE, f"an MTU is configured and the frame is longer than "
                          f"{ETH_LEN} + MTU bytes"),
)


#: The reasons the ``eth`` transport's checks give (those of
#: :data:`CHECK_ORDER`); IP_HEADER and NOT_OURS are the ``udp`` transport's.
ETH_REASONS = tuple(sorted({r for r, _ in CHECK_ORDER}))


class FrameError(ValueError):
    """A received frame is dropped; ``reason`` is its :class:`DropReason`."""

    def __init__(self, reason, message):
        super().__init__(f"{reason.name}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class Frame:
    """A decoded frame: the Ethernet fields, every bridge-header field, and the
    TLPs in wire order (empty for non-DATA frames)."""
    dst_mac: bytes
    src_mac: bytes
    ethertype: int
    version: int
    frame_type: FrameType
    flags: int
    channel: int
    seq: int
    ack: int
    tlp_count: int
    payload_length: int
    credit_p_data: int
    credit_np_data: int
    credit_cpl_data: int
    credit_p_hdr: int
    credit_np_hdr: int
    credit_cpl_hdr: int
    reserved: int
    crc: int
    tlps: list = field(default_factory=list)
    #: each TLP's prefix ``order_stamp``, in the order of ``tlps``
    stamps: list = field(default_factory=list)

    @property
    def credits(self):
        """The six credit fields as a dict (keys :data:`CREDIT_FIELDS`)."""
        return {name: getattr(self, name) for name in CREDIT_FIELDS}

    @property
    def carries_credits(self):
        """The credit fields are limits the receiver takes: ``flags`` bit 1
        set, and not a KEEPALIVE (whose bytes there are its link-state
        fields, whatever a peer set in its flags)."""
        return bool(carries_credits(self.frame_type, self.flags))

    @property
    def keepalive(self):
        """A KEEPALIVE's link-state fields (:data:`~tlpoe.models.wire.KEEPALIVE_FIELDS`),
        read from the bytes the credit fields occupy."""
        return keepalive_fields(self.credits)

    def encode(self):
        """The frame's bytes again (unpadded); ``reserved`` is sent as 0."""
        return encode_frame(
            self.tlps, seq=self.seq, ack=self.ack, channel=self.channel,
            frame_type=self.frame_type, flags=self.flags, credits=self.credits,
            dst_mac=self.dst_mac, src_mac=self.src_mac, ethertype=self.ethertype,
            stamps=self.stamps or None)


# --- encoding -------------------------------------------------------------------

def frame_crc(frame, payload_length):
    """The end-to-end CRC of ``frame``: ``zlib.crc32`` of bytes
    ``ETH_LEN .. HEADER_LEN + payload_length - 1`` (bridge header and TLP area)."""
    return zlib.crc32(memoryview(frame)[ETH_LEN:HEADER_LEN + payload_length])


def carries_credits(frame_type, flags):
    """Whether a frame of ``frame_type`` with ``flags`` carries credit
    limits (the rule of :attr:`Frame.carries_credits`, for a header not
    decoded into a :class:`Frame`)."""
    return flags & FLAG_CREDITS_VALID and frame_type != FrameType.KEEPALIVE


def keepalive_fields(credits):
    """The link-state fields (:data:`~tlpoe.models.wire.KEEPALIVE_FIELDS`,
    a dict) whose bytes are those of the six credit fields ``credits`` (a
    dict by :data:`CREDIT_FIELDS`): the inverse of :func:`keepalive_credits`."""
    raw = bytearray(KEEPALIVE_FIELDS.length)
    for name in CREDIT_FIELDS:
        f = BRIDGE_HEADER[name]
        at = f.offset - KEEPALIVE_OFFSET
        raw[at:at + f.size] = credits[name].to_bytes(f.size, "big")
    return KEEPALIVE_FIELDS.unpack(bytes(raw))


def keepalive_credits(**fields):
    """The credit-field values (for :func:`encode_frame`'s ``credits``) that
    carry a KEEPALIVE's link-state ``fields`` (names of
    :data:`~tlpoe.models.wire.KEEPALIVE_FIELDS`)."""
    raw = KEEPALIVE_FIELDS.pack(**fields)
    out = {}
    for name in CREDIT_FIELDS:
        f = BRIDGE_HEADER[name]
        at = f.offset - KEEPALIVE_OFFSET
        out[name] = int.from_bytes(raw[at:at + f.size], "big")
    return out



def _check_tlp(index, tlp):
    """Raise ValueError naming TLP ``index`` unless it is whole DWs of at least 12 bytes."""
    if len(tlp) % 4:
        raise ValueError(f"TLP {index} is {len(tlp)} bytes, not a multiple of 4 (whole DWs)")
    if len(tlp) < MIN_TLP:
        raise ValueError(f"TLP {index} is {len(tlp)} bytes, shorter than the "
                         f"{MIN_TLP}-byte minimum (a 3-DW header)")


def _mac_bytes(name, mac):
    """A MAC address given as 6 bytes or an int, as 6 bytes."""
    if isinstance(mac, int):
        return mac.to_bytes(6, "big")
    if len(mac) != 6:
        raise ValueError(f"{name} must be 6 bytes, got {len(mac)}")
    return bytes(mac)


def _credit_values(credits):
    """The credit fields from ``credits`` (None: all 0); unknown keys raise."""
    credits = dict(credits or {})
    unknown = set(credits) - set(CREDIT_FIELDS)
    if unknown:
        raise ValueError(f"unknown credit fields {sorted(unknown)}; known: {CREDIT_FIELDS}")
    return {name: credits.get(name, 0) for name in CREDIT_FIELDS}


def _tlp_area(tlps, stamps=None):
    """The TLP area: for each TLP its prefix (with its ``order_stamp`` from
    ``stamps``, default 0), then its bytes."""
    if stamps is None:
        stamps = [0] * len(tlps)
    if len(stamps) != len(tlps):
        raise ValueError(f"{len(stamps)} order stamps for {len(tlps)} TLPs")
    parts = []
    for index, (tlp, stamp) in enumerate(zip(tlps, stamps)):
        _check_tlp(index, tlp)
        parts += [TLP_PREFIX.pack(tlp_length=len(tlp), order_stamp=stamp), bytes(tlp)]
    return b"".join(parts)


def encode_frame(tlps, *, seq=0, ack=0, channel=0, frame_type=FrameType.DATA, flags=0,
                 credits=None, dst_mac=DEFAULT_DST_MAC, src_mac=DEFAULT_SRC_MAC,
                 ethertype=ETHERTYPE, mtu=None, stamps=None):
    """The frame carrying ``tlps`` (a sequence of TLP ``bytes``), as handed to the MAC.

    Ethernet header, bridge header (``version`` = VERSION, ``tlp_count`` and
    ``payload_length`` from ``tlps``, ``reserved`` 0), one prefix + TLP per TLP,
    then the CRC (:func:`frame_crc`) little-endian. Not padded to the Ethernet
    minimum (see :func:`pad_to_minimum`). ``flags`` is written as given:
    passing ``credits`` (a dict of some of :data:`CREDIT_FIELDS`, others 0) does
    not set :data:`FLAG_CREDITS_VALID`. ``stamps`` gives each TLP's prefix
    ``order_stamp`` (default 0; see :func:`tlpoe.models.ordering.order_stamps`).

    Raises ValueError, naming the problem, for a TLP that is not whole DWs or
    is under 12 bytes, a DATA frame with no TLPs, a non-DATA frame with TLPs,
    a frame longer than ``14 + mtu`` when ``mtu`` is given, or a field value
    that does not fit its field.
    """
    frame_type = FrameType(frame_type)
    if frame_type == FrameType.DATA and not tlps:
        raise ValueError("a DATA frame needs at least one TLP")
    if frame_type != FrameType.DATA and tlps:
        raise ValueError(f"a {frame_type.name} frame carries no TLPs, got {len(tlps)}")
    area = _tlp_area(tlps, stamps)
    if mtu is not None and len(area) > body_capacity(mtu):
        raise ValueError(f"{len(tlps)} TLPs need {len(area)} bytes of TLP area, more than "
                         f"the {body_capacity(mtu)} an MTU of {mtu} allows")
    eth = ETHERNET.pack(dst_mac=int.from_bytes(_mac_bytes("dst_mac", dst_mac), "big"),
                        src_mac=int.from_bytes(_mac_bytes("src_mac", src_mac), "big"),
                        ethertype=ethertype)
    bridge = BRIDGE_HEADER.pack(
        version=VERSION, frame_type=frame_type, flags=flags, channel=channel, seq=seq,
        ack=ack, tlp_count=len(tlps), payload_length=len(area), **_credit_values(credits))
    body = eth + bridge + area
    return body + frame_crc(body, len(area)).to_bytes(CRC_LEN, "little")


def pad_to_minimum(frame):
    """``frame`` zero-padded to the Ethernet minimum of 60 bytes (without FCS),
    as the MAC does; longer frames are returned unchanged."""
    return bytes(frame) + bytes(max(0, MIN_FRAME - len(frame)))


# --- decoding -------------------------------------------------------------------

def _walk_prefixes(frame, payload_length):
    """The TLPs of the TLP area, walked prefix by prefix; FrameError
    PREFIX_OVERRUN for a prefix or TLP that does not fit or a bad ``tlp_length``."""
    tlps, stamps, offset = [], [], 0
    while offset < payload_length:
        if payload_length - offset < PREFIX_LEN:
            raise FrameError(DropReason.PREFIX_OVERRUN,
                             f"prefix at TLP-area offset {offset} runs past "
                             f"payload_length {payload_length}")
        tlp_length = TLP_PREFIX["tlp_length"].get(frame, HEADER_LEN + offset)
        if tlp_length % 4 or tlp_length < MIN_TLP:
            raise FrameError(DropReason.PREFIX_OVERRUN,
                             f"tlp_length {tlp_length} at TLP-area offset {offset} is not "
                             f"a multiple of 4 of at least {MIN_TLP}")
        start = offset + PREFIX_LEN
        if start + tlp_length > payload_length:
            raise FrameError(DropReason.PREFIX_OVERRUN,
                             f"TLP of {tlp_length} bytes at TLP-area offset {start} runs "
                             f"past payload_length {payload_length}")
        tlps.append(bytes(frame[HEADER_LEN + start:HEADER_LEN + start + tlp_length]))
        stamps.append(TLP_PREFIX["order_stamp"].get(frame, HEADER_LEN + offset))
        offset = start + tlp_length
    return tlps, stamps


def _check_header(frame, ethertype):
    """Checks 1-3 of :data:`CHECK_ORDER`; returns (ethernet, bridge) field dicts."""
    if len(frame) < HEADER_LEN + CRC_LEN:
        raise FrameError(DropReason.TRUNCATED,
                         f"{len(frame)} bytes, fewer than {HEADER_LEN + CRC_LEN}")
    eth = ETHERNET.unpack(frame)
    if eth["ethertype"] != ethertype:
        raise FrameError(DropReason.ETHERTYPE,
                         f"EtherType 0x{eth['ethertype']:04X}, expected 0x{ethertype:04X}")
    bridge = BRIDGE_HEADER.unpack(frame, ETH_LEN)
    if bridge["version"] != VERSION:
        raise FrameError(DropReason.VERSION,
                         f"version {bridge['version']}, expected {VERSION}")
    if bridge["frame_type"] not in FrameType._value2member_map_:
        raise FrameError(DropReason.VERSION,
                         f"frame_type {bridge['frame_type']} is reserved in version {VERSION}")
    return eth, bridge


def _check_body(frame, bridge):
    """Checks 4-8 of :data:`CHECK_ORDER`; returns (crc, tlps, stamps)."""
    length = bridge["payload_length"]
    if len(frame) < HEADER_LEN + length + CRC_LEN:
        raise FrameError(DropReason.TRUNCATED,
                         f"{len(frame)} bytes, fewer than {HEADER_LEN} + payload_length "
                         f"{length} + {CRC_LEN}")
    if length % 4:
        raise FrameError(DropReason.PREFIX_OVERRUN,
                         f"payload_length {length} is not a whole number of DWs")
    crc = int.from_bytes(frame[HEADER_LEN + length:HEADER_LEN + length + CRC_LEN], "little")
    if crc != frame_crc(frame, length):
        raise FrameError(DropReason.CRC, f"CRC 0x{crc:08X} received, "
                                         f"0x{frame_crc(frame, length):08X} computed")
    tlps, stamps = _walk_prefixes(frame, length)
    is_data = bridge["frame_type"] == FrameType.DATA
    if bridge["tlp_count"] != len(tlps) or (tlps and not is_data):
        raise FrameError(DropReason.COUNT_MISMATCH,
                         f"tlp_count {bridge['tlp_count']}, {len(tlps)} TLPs in a "
                         f"{FrameType(bridge['frame_type']).name} frame")
    if is_data and not tlps:
        raise FrameError(DropReason.EMPTY_DATA, "DATA frame with no TLPs")
    return crc, tlps, stamps


def decode_frame(frame, *, ethertype=ETHERTYPE, mtu=None):
    """The :class:`Frame` in ``frame`` (the bytes the MAC delivers, FCS stripped).

    Raises :class:`FrameError` with the first :class:`DropReason` of
    :data:`CHECK_ORDER` that applies, so when several apply the earliest wins:
    TRUNCATED (< 44 bytes) > ETHERTYPE > VERSION (version or reserved
    frame_type) > TRUNCATED (< 40 + payload_length + 4 bytes) >
    PREFIX_OVERRUN (payload_length not whole DWs) > CRC >
    PREFIX_OVERRUN > COUNT_MISMATCH > EMPTY_DATA > OVERSIZE (only when ``mtu``
    is given; it compares ``len(frame)`` with ``14 + mtu``). Bytes after the
    CRC (Ethernet padding) are ignored; the Ethernet MAC addresses are not
    checked (the MAC filters them). ACK, NAK, CREDIT and KEEPALIVE frames
    decode with no TLPs.
    """
    frame = bytes(frame)
    eth, bridge = _check_header(frame, ethertype)
    crc, tlps, stamps = _check_body(frame, bridge)
    if mtu is not None and len(frame) > ETH_LEN + mtu:
        raise FrameError(DropReason.OVERSIZE,
                         f"{len(frame)} bytes, more than {ETH_LEN} + MTU {mtu}")
    return Frame(dst_mac=frame[0:6], src_mac=frame[6:12], ethertype=eth["ethertype"],
                 **{**bridge, "frame_type": FrameType(bridge["frame_type"])},
                 crc=crc, tlps=tlps, stamps=stamps)


# --- aggregation ----------------------------------------------------------------

def largest_tlp(mtu):
    """Largest TLP one frame carries at ``mtu``: ``max_tlp_bytes(mtu)`` rounded
    down to whole DWs (1464 at MTU 1500, 8964 at 9000)."""
    return max_tlp_bytes(mtu) // 4 * 4

def aggregate(tlps, *, mtu=1500, max_tlps=None):
    """``tlps`` split, in order, into the TLP lists of consecutive frames.

    Greedy: a frame is closed when the next TLP's prefix and bytes would take
    its TLP area past ``body_capacity(mtu)``, or when it holds ``max_tlps``
    TLPs. Raises ValueError naming the TLP's index and size for a TLP larger
    than :func:`largest_tlp` (or not whole DWs / under 12 bytes), and for
    ``max_tlps`` < 1.
    """
    if max_tlps is not None and max_tlps < 1:
        raise ValueError(f"max_tlps must be at least 1, got {max_tlps}")
    capacity, groups, used = body_capacity(mtu), [], 0
    for index, tlp in enumerate(tlps):
        _check_tlp(index, tlp)
        if len(tlp) > largest_tlp(mtu):
            raise ValueError(f"TLP {index} is {len(tlp)} bytes, larger than the "
                             f"{largest_tlp(mtu)} one frame carries at MTU {mtu}")
        need = PREFIX_LEN + len(tlp)
        full = groups and max_tlps is not None and len(groups[-1]) >= max_tlps
        if not groups or used + need > capacity or full:
            groups.append([])
            used = 0
        groups[-1].append(tlp)
        used += need
    return groups


def frames_for(tlps, *, mtu, first_seq=0, max_tlps=None, **header):
    """The DATA frames carrying ``tlps``: :func:`aggregate`, then
    :func:`encode_frame` each group with ``seq`` = ``first_seq``, ``first_seq``
    + 1, ... (mod 2**32) and the other header fields from ``header``."""
    return [encode_frame(group, seq=(first_seq + i) % 2**32, mtu=mtu, **header)
            for i, group in enumerate(aggregate(tlps, mtu=mtu, max_tlps=max_tlps))]


# --- overhead and efficiency ------------------------------------------------------

def frame_overhead_bytes(n_tlps):
    """Bytes a DATA frame adds to ``n_tlps`` TLPs, as handed to the MAC:
    Ethernet header 14, bridge header 26, one 4-byte prefix per TLP, CRC 4.
    Excludes MAC padding, preamble, FCS and IFG (see :func:`wire_bytes`)."""
    return HEADER_LEN + PREFIX_LEN * n_tlps + CRC_LEN


def wire_bytes(frame_len):
    """Byte times a frame of ``frame_len`` bytes (as handed to the MAC) takes on
    the wire: padded to 60, plus FCS 4, preamble + SFD 8 and IFG 12."""
    return max(frame_len, MIN_FRAME) + FCS_LEN + PREAMBLE_SFD_LEN + IFG_LEN


def wire_efficiency(tlp_bytes, mtu):
    """TLP bytes per byte time on the wire for an endless stream of
    ``tlp_bytes``-byte TLPs aggregated greedily at ``mtu`` (every frame full):
    ``n * tlp_bytes / wire_bytes(frame_overhead_bytes(n) + n * tlp_bytes)``
    with ``n`` the TLPs per frame. Counts Ethernet preamble+SFD 8, FCS 4, IFG
    12 and MAC padding; TLP headers count as TLP bytes."""
    if not MIN_TLP <= tlp_bytes <= largest_tlp(mtu):
        raise ValueError(f"tlp_bytes {tlp_bytes} outside {MIN_TLP}..{largest_tlp(mtu)} "
                         f"at MTU {mtu}")
    n = body_capacity(mtu) // (PREFIX_LEN + tlp_bytes)
    return n * tlp_bytes / wire_bytes(frame_overhead_bytes(n) + n * tlp_bytes)


@dataclass
class FrameStats:
    """Totals over a list of encoded frames (see :meth:`of`)."""
    frames: int = 0
    tlps: int = 0
    tlp_bytes: int = 0       # TLP bytes carried (headers included)
    frame_bytes: int = 0     # bytes handed to the MAC, unpadded
    wire_bytes: int = 0      # byte times on the wire (see wire_bytes())

    @classmethod
    def of(cls, frames):
        """Stats of ``frames`` (bytes each), decoded with :func:`decode_frame`."""
        stats = cls()
        for raw in frames:
            decoded = decode_frame(raw)
            stats.frames += 1
            stats.tlps += len(decoded.tlps)
            stats.tlp_bytes += sum(map(len, decoded.tlps))
            stats.frame_bytes += HEADER_LEN + decoded.payload_length + CRC_LEN
            stats.wire_bytes += wire_bytes(HEADER_LEN + decoded.payload_length + CRC_LEN)
        return stats

    @property
    def efficiency(self):
        """TLP bytes per wire byte time (0 for no frames)."""
        return self.tlp_bytes / self.wire_bytes if self.wire_bytes else 0.0

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)} | {
            "efficiency": self.efficiency}
