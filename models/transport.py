"""The bridge's transports (issue 20): what carries a bridge frame across the
network, the one Python definition the models, the RTL and the tests share.

* ``eth``: Ethernet II with the bridge's EtherType, the frame of
  :mod:`tlpoe.models.wire` unchanged;
* ``udp``: Ethernet II (EtherType IPv4), an IPv4 header without options, a
  UDP header, then the bridge header and TLP area as in ``eth``. The IPv4
  header checksum is computed (RFC 791, the one's-complement sum of RFC
  1071); the UDP checksum is zero, which IPv4 allows (RFC 768: "all zero
  ... means the transmitter generated no checksum"), as RoCEv2 and VXLAN
  (RFC 7348, 5) send it: the bridge writes the header before the payload
  streams through, a UDP checksum would need the whole datagram first, and
  the bridge's own CRC already covers its header and TLPs end to end. DSCP
  comes from the TLP's traffic class, ECN says ECN-capable (ECT(0)), and
  the UDP source port is the link's ECMP entropy.

* ``rocev2``: Ethernet + IPv4 + UDP port 4791 + the InfiniBand BTH (+ AETH
  in an Acknowledge) + payload + the ICRC: one reliable-connection queue
  pair per link, frames as RC SENDs and Acknowledges (:func:`to_rocev2`).

Addresses come from configuration (no ARP): :class:`UdpConfig`.
"""

import zlib
from dataclasses import dataclass, replace
from enum import Enum

from .frame import (FLAG_ACK_VALID, DropReason, FrameError, decode_frame, encode_frame,
                    frame_crc, pad_to_minimum, wire_bytes)
from .frame import frame_overhead_bytes as fm_frame_overhead_bytes
from .wire import (BRIDGE_HEADER, CRC_LEN, ETH_LEN, ETHERNET, ETHERTYPE, HEADER_LEN, PREFIX_LEN,
                   TLP_PREFIX, Field, FrameType, Layout)
from .wire import body_capacity as wire_body_capacity

__all__ = ["Transport", "IPV4", "UDP", "ETHERTYPE_IPV4", "UDP_PORT", "ECT0", "UdpConfig",
           "ipv4_checksum", "ones_complement_sum", "header_bytes", "udp_headers",
           "to_udp", "from_udp", "TransportError", "ROCEV2_PORT", "BTH", "AETH", "icrc",
           "rocev2_packet", "check_icrc", "to_rocev2", "from_rocev2", "mark_ce",
           "body_capacity", "frame_overhead_bytes", "wire_efficiency", "area_offset",
           "frame_traffic_class", "frame_dscp", "encode", "receive", "UDP_CHECK_ORDER"]

ETHERTYPE_IPV4 = 0x0800
IPPROTO_UDP = 17
#: The bridge's UDP destination port (the ``udp`` transport; configurable):
#: 0x88B5, the number of its EtherType, unassigned in IANA's registry.
UDP_PORT = 0x88B5
#: ECN codepoints (RFC 3168, 5): Not-ECT, ECT(1), ECT(0), CE.
NOT_ECT, ECT1, ECT0, CE = 0, 1, 2, 3


class Transport(str, Enum):
    """How a bridge frame crosses the network."""
    ETH = "eth"
    UDP = "udp"
    ROCEV2 = "rocev2"


IPV4 = Layout("ipv4", 20, [
    Field("version_ihl", 0, 1, "0x45: IPv4, a 20-byte header (no options)"),
    Field("dscp", 1, 1, "DSCP: from the TLP's traffic class (`UdpConfig.dscp`)",
          bits=6, shift=2),
    Field("ecn", 1, 1, "ECN: ECT(0) sent; CE set by a congested switch", bits=2, shift=0),
    Field("total_length", 2, 2, "IPv4 header, UDP header and payload, in bytes"),
    Field("identification", 4, 2, "0 (never fragmented)"),
    Field("flags_fragment", 6, 2, "0x4000: Don't Fragment, offset 0"),
    Field("ttl", 8, 1, "time to live (`UdpConfig.ttl`)"),
    Field("protocol", 9, 1, f"{IPPROTO_UDP}: UDP"),
    Field("checksum", 10, 2, "header checksum (RFC 791)"),
    Field("src_ip", 12, 4, "source address (configured)"),
    Field("dst_ip", 16, 4, "destination address (configured)"),
])

UDP = Layout("udp", 8, [
    Field("src_port", 0, 2, "source port: the link's ECMP entropy (configured)"),
    Field("dst_port", 2, 2, f"destination port, default {UDP_PORT} (configured)"),
    Field("length", 4, 2, "UDP header and payload, in bytes"),
    Field("checksum", 6, 2,
          "0: no checksum (RFC 768 allows it in IPv4; why: the transports' text)"),
])


#: RoCEv2's UDP destination port (IANA).
ROCEV2_PORT = 4791
#: InfiniBand BTH opcodes used (IBTA Vol. 1, 9.2; the RC transport, and the
#: RoCEv2 Congestion Notification Packet, Annex A17).
RC_SEND_ONLY, RC_ACKNOWLEDGE, CNP = 0x04, 0x11, 0x81
#: AETH syndromes: an ACK (credit count 0x1F: invalid, not used) and a NAK
#: "PSN sequence error" (IBTA Vol. 1, 9.7.5.2).
AETH_ACK, AETH_NAK_PSN = 0x1F, 0x60
ICRC_LEN = 4

BTH = Layout("bth", 12, [
    Field("opcode", 0, 1, "SEND only 0x04 (frames with a bridge header), ACKNOWLEDGE 0x11"),
    Field("solicited", 1, 1, "0", bits=1, shift=7),
    Field("migreq", 1, 1, "1 (as RoCEv2 NICs send)", bits=1, shift=6),
    Field("padcount", 1, 1, "bytes padding the payload to a multiple of 4", bits=2, shift=4),
    Field("tver", 1, 1, "transport header version, 0", bits=4, shift=0),
    Field("pkey", 2, 2, "partition key, 0xFFFF (default partition)"),
    Field("fecn", 4, 1, "forward ECN (masked in the ICRC)", bits=1, shift=7),
    Field("becn", 4, 1, "backward ECN (masked in the ICRC)", bits=1, shift=6),
    Field("resv6", 4, 1, "0 (masked in the ICRC)", bits=6, shift=0),
    Field("dest_qp", 5, 3, "the peer's queue pair (configured)"),
    Field("ackreq", 8, 1, "acknowledge requested: 1 on DATA frames' SENDs", bits=1, shift=7),
    Field("resv7", 8, 1, "0", bits=7, shift=0),
    Field("psn", 9, 3, "packet sequence number: the frame's sequence number, or the "
                       "acknowledged one in an ACKNOWLEDGE"),
])

AETH = Layout("aeth", 4, [
    Field("syndrome", 0, 1, f"ACK 0x{AETH_ACK:02X}, NAK PSN sequence error 0x{AETH_NAK_PSN:02X}"),
    Field("msn", 1, 3, "message sequence number: the PSN acknowledged"),
])


class TransportError(FrameError):
    """A frame that is not a well-formed datagram of the transport, or not
    one for this bridge; ``reason`` is the receiver's
    :class:`~tlpoe.models.frame.DropReason` (by default IP_HEADER)."""

    def __init__(self, message, reason=DropReason.IP_HEADER):
        super().__init__(reason, message)


def ones_complement_sum(data):
    """The 16-bit one's-complement sum of ``data`` (big-endian words, an odd
    byte padded with zero; RFC 1071)."""
    data = bytes(data) + b"\0" * (len(data) & 1)
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ipv4_checksum(header):
    """The IPv4 header checksum of ``header`` (its checksum field taken as
    0): the one's complement of the one's-complement sum."""
    header = bytearray(header)
    header[10:12] = b"\0\0"
    return ~ones_complement_sum(header) & 0xFFFF


@dataclass(frozen=True)
class UdpConfig:
    """The ``udp`` and ``rocev2`` transports' configuration registers:
    addresses (32-bit ints), ports, the TTL, the DSCP of each PCIe traffic
    class (TC0..TC7; default all 0, best effort) and, for ``rocev2``, the
    peer's queue pair (not 0 or 1: InfiniBand's management QPs, whose SENDs
    are read as management datagrams). A DATA frame's DSCP is that of its
    first TLP's traffic class; frames without TLPs (ACK, NAK, CREDIT,
    KEEPALIVE) take ``control_dscp``, so that a network can queue the
    link's acknowledgements apart from its bulk data.

    The receiver takes a datagram only from ``dst_ip`` to ``src_ip`` on
    port ``dst_port``: both ends use the same destination port, as VXLAN
    and RoCEv2 do."""
    src_ip: int = 0x0A00_0001
    dst_ip: int = 0x0A00_0002
    src_port: int = 0xC000
    dst_port: int = UDP_PORT
    ttl: int = 64
    dscp: tuple = (0,) * 8
    dest_qp: int = 0x100
    control_dscp: int = 0

    def __post_init__(self):
        for name, bits in (("src_ip", 32), ("dst_ip", 32), ("src_port", 16),
                           ("dst_port", 16), ("ttl", 8), ("control_dscp", 6)):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < 1 << bits:
                raise ValueError(f"{name} must be a {bits}-bit number, not {value!r}")
        if not isinstance(self.dest_qp, int) or not 2 <= self.dest_qp < 1 << 24:
            raise ValueError(f"dest_qp must be 2..2**24-1 (0 and 1 are InfiniBand's "
                             f"management queue pairs), not {self.dest_qp!r}")
        if len(self.dscp) != 8 or not all(isinstance(d, int) and 0 <= d < 64 for d in self.dscp):
            raise ValueError(f"dscp must be 8 values 0..63 (one per traffic class), "
                             f"not {self.dscp!r}")

    def peer(self):
        """The configuration of the bridge at the link's other end: the
        addresses swapped, the rest the same."""
        return replace(self, src_ip=self.dst_ip, dst_ip=self.src_ip)


def header_bytes(transport):
    """Bytes the transport puts before the bridge header (Ethernet
    included)."""
    udp = ETH_LEN + IPV4.length + UDP.length
    return {Transport.ETH: ETH_LEN, Transport.UDP: udp, Transport.ROCEV2: udp + BTH.length}[
        Transport(transport)]


def area_offset(transport):
    """Frame bytes before the TLP area: the transport's headers and the
    bridge header (40 on ``eth``, 68 on ``udp``, 80 on ``rocev2``: whole
    DWs on each)."""
    return header_bytes(transport) + BRIDGE_HEADER.length


def frame_traffic_class(eth_frame):
    """The traffic class of an ``eth`` frame's first TLP (a DATA frame's),
    or None when it carries none."""
    eth_frame = bytes(eth_frame)
    header = BRIDGE_HEADER.unpack(eth_frame, ETH_LEN)
    if header["frame_type"] != FrameType.DATA or header["payload_length"] < PREFIX_LEN + 4:
        return None
    return eth_frame[HEADER_LEN + TLP_PREFIX.length + 1] >> 4 & 7


def frame_dscp(eth_frame, config):
    """The DSCP an ``eth`` frame is sent with on ``config``: its first
    TLP's traffic class's, or ``config.control_dscp`` (:class:`UdpConfig`)."""
    tc = frame_traffic_class(eth_frame)
    return config.control_dscp if tc is None else config.dscp[tc]


def udp_headers(payload_length, config, traffic_class=0, ecn=ECT0, *, dscp=None):
    """The IPv4 and UDP headers (28 bytes) of a datagram whose UDP payload
    (bridge header and TLP area) is ``payload_length`` bytes, with DSCP
    ``dscp``, by default ``traffic_class``'s."""
    udp_length = UDP.length + payload_length
    dscp = config.dscp[traffic_class] if dscp is None else dscp
    ip = IPV4.pack(version_ihl=0x45, dscp=dscp, ecn=ecn,
                   total_length=IPV4.length + udp_length, identification=0,
                   flags_fragment=0x4000, ttl=config.ttl, protocol=IPPROTO_UDP, checksum=0,
                   src_ip=config.src_ip, dst_ip=config.dst_ip)
    ip = bytearray(ip)
    ip[10:12] = ipv4_checksum(ip).to_bytes(2, "big")
    udp = UDP.pack(src_port=config.src_port, dst_port=config.dst_port, length=udp_length,
                   checksum=0)
    return bytes(ip) + udp


def _bridge_part(eth_frame):
    """The bridge header, TLP area and CRC of an ``eth`` frame (no padding)."""
    payload_length = BRIDGE_HEADER.unpack(eth_frame, ETH_LEN)["payload_length"]
    end = HEADER_LEN + payload_length + CRC_LEN
    if end > len(eth_frame):
        raise TransportError(f"payload_length {payload_length} runs past the frame's "
                             f"{len(eth_frame)} bytes")
    return eth_frame[ETH_LEN:end]


def to_udp(eth_frame, config, traffic_class=None, ecn=ECT0):
    """The ``udp`` frame carrying the ``eth`` frame ``eth_frame`` (as
    :func:`~tlpoe.models.frame.encode_frame` builds it, padded or not): its
    MACs, EtherType IPv4, the IPv4 and UDP headers, its bridge header, TLP
    area and CRC, padded to the Ethernet minimum. The DSCP is
    ``traffic_class``'s, by default the frame's (:func:`frame_dscp`)."""
    eth_frame = bytes(eth_frame)
    body = _bridge_part(eth_frame)
    eth = eth_frame[:ETH_LEN - 2] + ETHERTYPE_IPV4.to_bytes(2, "big")
    dscp = frame_dscp(eth_frame, config) if traffic_class is None else \
        config.dscp[traffic_class]
    return pad_to_minimum(eth + udp_headers(len(body), config, ecn=ecn, dscp=dscp) + body)


#: The ``udp`` transport's receive checks, in order, between the ``eth``
#: checks' ETHERTYPE (here: not IPv4) and VERSION (:data:`~tlpoe.models.frame.CHECK_ORDER`,
#: whose TRUNCATED counts 68 bytes of headers here). ``L`` is the bridge
#: header's ``payload_length``.
UDP_CHECK_ORDER = (
    (DropReason.IP_HEADER, "the IPv4 header is not version 4 without options (0x45), is a "
                           "fragment (MF or an offset), fails its checksum, or does not "
                           "carry UDP; or its total length is not 58 + L, or the UDP "
                           "length not the total length less 20"),
    (DropReason.NOT_OURS, "the datagram is not from the peer's address to ours, or not to "
                          "the configured UDP port (`UdpConfig`: `dst_ip`, `src_ip`, "
                          "`dst_port`)"),
)


def _check_udp(frame, config, *, port, area_length=None):
    """The IPv4 and UDP fields of ``frame`` (at least the headers' bytes),
    checked in the order of :data:`UDP_CHECK_ORDER` (the total length
    against ``area_length``, the bytes after the UDP header, when given;
    the addresses when ``config`` is given, the port always)."""
    if ETHERNET.unpack(frame)["ethertype"] != ETHERTYPE_IPV4:
        raise TransportError(f"EtherType 0x{ETHERNET.unpack(frame)['ethertype']:04X}, not IPv4",
                             DropReason.ETHERTYPE)
    ip = IPV4.unpack(frame, ETH_LEN)
    udp = UDP.unpack(frame, ETH_LEN + IPV4.length)
    if ip["version_ihl"] != 0x45:
        raise TransportError(f"version/IHL 0x{ip['version_ihl']:02X}, not 0x45")
    if ip["flags_fragment"] & 0x3FFF:
        raise TransportError(f"a fragment (flags/offset 0x{ip['flags_fragment']:04X})")
    if ones_complement_sum(frame[ETH_LEN:ETH_LEN + IPV4.length]) != 0xFFFF:
        raise TransportError("bad IPv4 header checksum")
    if ip["protocol"] != IPPROTO_UDP:
        raise TransportError(f"IP protocol {ip['protocol']}, not UDP")
    if area_length is not None and ip["total_length"] != IPV4.length + UDP.length + area_length:
        raise TransportError(f"IPv4 length {ip['total_length']}, not {IPV4.length + UDP.length} "
                             f"+ the {area_length} bytes the bridge header gives")
    if udp["length"] + IPV4.length != ip["total_length"]:
        raise TransportError(f"IPv4 length {ip['total_length']}, UDP length {udp['length']}")
    if udp["dst_port"] != port:
        raise TransportError(f"UDP port {udp['dst_port']}, not {port}", DropReason.NOT_OURS)
    if config is not None and (ip["dst_ip"], ip["src_ip"]) != (config.src_ip, config.dst_ip):
        raise TransportError(f"from 0x{ip['src_ip']:08X} to 0x{ip['dst_ip']:08X}, not from the "
                             f"peer 0x{config.dst_ip:08X} to us 0x{config.src_ip:08X}",
                             DropReason.NOT_OURS)
    return ip


def from_udp(frame, config=None, ethertype=ETHERTYPE, *, port=None):
    """``(eth_frame, ip)``: the ``eth`` frame a ``udp`` frame carries (its
    EtherType ``ethertype`` again, no padding: what
    :func:`~tlpoe.models.frame.decode_frame` reads) and the IPv4 header's
    fields. Raises :class:`TransportError` naming what is wrong: not IPv4,
    options, a fragment, a bad header checksum, not UDP, lengths that
    disagree with each other or the frame, another port, or (``config``
    given) not from its peer to it. ``port``, when given, is the port
    expected (else ``config``'s, else :data:`UDP_PORT`)."""
    frame = bytes(frame)
    if len(frame) < header_bytes(Transport.UDP):
        raise TransportError(f"{len(frame)} bytes: shorter than the headers", DropReason.TRUNCATED)
    if port is None:
        port = UDP_PORT if config is None else config.dst_port
    ip = _check_udp(frame, config, port=port)
    if ETH_LEN + ip["total_length"] > len(frame):
        raise TransportError(f"IPv4 length {ip['total_length']}, {len(frame)} bytes on the wire",
                             DropReason.TRUNCATED)
    eth = frame[:ETH_LEN - 2] + ethertype.to_bytes(2, "big")
    return eth + frame[header_bytes(Transport.UDP):ETH_LEN + ip["total_length"]], ip


def encode(eth_frame, transport, config=None, *, ecn=ECT0):
    """``eth_frame`` (from :func:`~tlpoe.models.frame.encode_frame`) as
    ``transport`` sends it, with ``config`` (a :class:`UdpConfig`, by
    default the default one): unchanged on ``eth``."""
    transport = Transport(transport)
    config = UdpConfig() if config is None else config
    if transport is Transport.UDP:
        return to_udp(eth_frame, config, ecn=ecn)
    if transport is Transport.ROCEV2:
        return to_rocev2(eth_frame, config, ecn=ecn)
    return bytes(eth_frame)


def receive(frame, transport, config=None, *, ethertype=ETHERTYPE, mtu=None):
    """What a bridge on ``transport`` receives in ``frame`` (the bytes the
    MAC delivers): the :class:`~tlpoe.models.frame.Frame`, or
    :class:`~tlpoe.models.frame.FrameError` with the first drop reason in
    the RTL's order: on ``eth``, :func:`~tlpoe.models.frame.decode_frame`'s;
    on ``udp``, TRUNCATED (fewer than 72 bytes), then the IPv4 and UDP
    checks (:data:`UDP_CHECK_ORDER`) in place of the EtherType's, then the
    bridge's own checks on what follows the UDP header (OVERSIZE still
    against the whole frame's 14 + ``mtu`` bytes)."""
    transport = Transport(transport)
    frame = bytes(frame)
    if transport is Transport.ETH:
        return decode_frame(frame, ethertype=ethertype, mtu=mtu)
    if transport is not Transport.UDP:
        raise NotImplementedError(f"receive on {transport.value}")
    config = UdpConfig() if config is None else config
    head = area_offset(transport)
    if len(frame) < head + CRC_LEN:
        raise FrameError(DropReason.TRUNCATED, f"{len(frame)} bytes, fewer than {head + CRC_LEN}")
    at = header_bytes(transport)
    area = BRIDGE_HEADER.length + BRIDGE_HEADER["payload_length"].get(frame, at) + CRC_LEN
    _check_udp(frame, config, port=config.dst_port, area_length=area)
    inner = frame[:ETH_LEN - 2] + ethertype.to_bytes(2, "big") + frame[at:]
    return decode_frame(inner, ethertype=ethertype, mtu=None if mtu is None else mtu - (at - ETH_LEN))


# --- RoCEv2 ------------------------------------------------------------------------

def icrc(datagram):
    """The RoCEv2 invariant CRC of ``datagram`` (from its IPv4 header to the
    end of the BTH's payload, the ICRC itself excluded), as sent: CRC-32
    (Ethernet's, zlib's) over 8 bytes of ones (the LRH a RoCEv2 packet
    lacks), then the datagram with the fields a router may change set to
    ones (IPv4 TOS, TTL and checksum; UDP checksum; the BTH's FECN, BECN
    and reserved bits), its 4 bytes least significant first (IBTA Vol. 1
    Annex A17.3)."""
    b = bytearray(datagram)
    b[1] = b[8] = 0xFF                        # TOS (DSCP, ECN), TTL
    b[10:12] = b"\xff\xff"                    # IPv4 header checksum
    b[IPV4.length + 6:IPV4.length + 8] = b"\xff\xff"       # UDP checksum
    b[IPV4.length + UDP.length + 4] = 0xFF    # FECN, BECN, resv6
    return zlib.crc32(b"\xff" * 8 + bytes(b)).to_bytes(ICRC_LEN, "little")


def rocev2_packet(macs, payload, config, *, opcode=RC_SEND_ONLY, psn=0, dest_qp=None, aeth=None,
                  traffic_class=0, ecn=ECT0, ackreq=None):
    """One RoCEv2 frame: ``macs`` (the 12 bytes of destination and source
    MAC), EtherType IPv4, IPv4 and UDP (port 4791, ``config``'s addresses,
    source port and DSCP), the BTH (``opcode``, ``psn``, ``dest_qp``, by
    default ``config``'s; the
    payload padded to a multiple of 4 bytes, ``padcount`` saying how many),
    ``aeth`` (a dict of :data:`AETH` fields, or None), ``payload``, the
    ICRC; padded to the Ethernet minimum. ``ackreq`` (default: on every
    packet but an ACKNOWLEDGE) sets the BTH's AckReq bit."""
    payload = bytes(payload)
    pad = -len(payload) % 4
    qp = config.dest_qp if dest_qp is None else dest_qp
    bth = BTH.pack(opcode=opcode, migreq=1, padcount=pad, pkey=0xFFFF, dest_qp=qp,
                   ackreq=int(opcode != RC_ACKNOWLEDGE if ackreq is None else ackreq), psn=psn)
    body = bth + (AETH.pack(**aeth) if aeth is not None else b"") + payload + bytes(pad)
    roce = replace(config, dst_port=ROCEV2_PORT)
    headers = udp_headers(len(body) + ICRC_LEN, roce, traffic_class, ecn)
    datagram = headers + body
    return pad_to_minimum(bytes(macs)[:12] + ETHERTYPE_IPV4.to_bytes(2, "big") + datagram +
                          icrc(datagram))


_PSN = (1 << 24) - 1


def to_rocev2(eth_frame, config, *, traffic_class=0, ecn=ECT0):
    """The ``rocev2`` frame carrying the ``eth`` frame ``eth_frame``: the
    bridge acts as one reliable-connection queue pair per link.

    * DATA: an RC SEND whose PSN is the frame's sequence number (its low 24
      bits: the link's ``seq_bits`` are at most 24 on this transport), AckReq
      set; CREDIT and KEEPALIVE: RC SENDs too (PSN the ``seq`` field, AckReq
      clear), told apart by the bridge header's type, which a SEND's payload
      begins with. The payload is the bridge header and TLP area; the ICRC
      replaces the bridge's CRC (the same CRC-32, over more).
    * ACK: an RC ACKNOWLEDGE, AETH syndrome ACK, PSN and MSN the cumulative
      ack; NAK: syndrome "PSN sequence error", PSN the number to resend
      from, MSN the cumulative ack (``PSN - 1`` in go-back-N; in selective
      repeat the number NAK'd may be later, which an RC NIC would read as
      an ACK of everything before it: only a tlpoe bridge reads MSN so).
      Acknowledges carry no payload, so no credits: credits ride on DATA
      and CREDIT frames on this transport."""
    eth_frame = bytes(eth_frame)
    header = BRIDGE_HEADER.unpack(eth_frame, ETH_LEN)
    kind, macs = FrameType(header["frame_type"]), eth_frame[:12]
    common = dict(traffic_class=traffic_class, ecn=ecn)
    if kind in (FrameType.ACK, FrameType.NAK):
        ack = kind == FrameType.ACK
        return rocev2_packet(macs, b"", config, opcode=RC_ACKNOWLEDGE,
                             psn=(header["ack"] if ack else header["seq"]) & _PSN,
                             aeth=dict(syndrome=AETH_ACK if ack else AETH_NAK_PSN,
                                       msn=header["ack"] & _PSN), **common)
    return rocev2_packet(macs, _bridge_part(eth_frame)[:-CRC_LEN], config, opcode=RC_SEND_ONLY,
                         psn=header["seq"] & _PSN, ackreq=kind == FrameType.DATA, **common)


def from_rocev2(frame, ethertype=ETHERTYPE):
    """``(eth_frame, bth)``: the ``eth`` frame a ``rocev2`` frame carries (as
    :func:`~tlpoe.models.frame.decode_frame` reads it: the bridge's CRC
    computed again; an ACKNOWLEDGE as an ACK or NAK frame without credits)
    and the BTH's fields. Raises :class:`TransportError` naming what is
    wrong: the IPv4/UDP checks of :func:`from_udp` (port 4791), a bad ICRC,
    an opcode or syndrome the bridge does not send."""
    inner, _ = from_udp(frame, None, ethertype, port=ROCEV2_PORT)
    if not check_icrc(frame):
        raise TransportError("bad ICRC")
    body = inner[ETH_LEN:-ICRC_LEN]
    if len(body) < BTH.length:
        raise TransportError(f"{len(body)} bytes after UDP: shorter than a BTH")
    bth = BTH.unpack(body)
    macs = inner[:ETH_LEN]
    if bth["opcode"] == RC_ACKNOWLEDGE:
        if len(body) < BTH.length + AETH.length:
            raise TransportError("an ACKNOWLEDGE without its AETH")
        aeth = AETH.unpack(body, BTH.length)
        if aeth["syndrome"] not in (AETH_ACK, AETH_NAK_PSN):
            raise TransportError(f"AETH syndrome 0x{aeth['syndrome']:02X} not sent by a bridge")
        nak = aeth["syndrome"] == AETH_NAK_PSN
        eth = encode_frame([], frame_type=FrameType.NAK if nak else FrameType.ACK,
                           seq=bth["psn"] if nak else 0, ack=aeth["msn"], flags=FLAG_ACK_VALID,
                           ethertype=ethertype)
        return inner[:12] + eth[12:], bth
    if bth["opcode"] != RC_SEND_ONLY:
        raise TransportError(f"BTH opcode 0x{bth['opcode']:02X} not sent by a bridge")
    payload = body[BTH.length:len(body) - bth["padcount"]]
    if len(payload) < BRIDGE_HEADER.length:
        raise TransportError(f"a SEND of {len(payload)} bytes: shorter than a bridge header")
    eth = macs + payload
    area = BRIDGE_HEADER.unpack(payload)["payload_length"]
    if BRIDGE_HEADER.length + area != len(payload):
        raise TransportError(f"payload_length {area} against a SEND of {len(payload)} bytes")
    return eth + frame_crc(eth, area).to_bytes(CRC_LEN, "little"), bth


def check_icrc(frame):
    """Whether a RoCEv2 ``frame`` (Ethernet padding allowed) carries the
    right ICRC."""
    frame = bytes(frame)
    end = ETH_LEN + IPV4.unpack(frame, ETH_LEN)["total_length"]
    return icrc(frame[ETH_LEN:end - ICRC_LEN]) == frame[end - ICRC_LEN:end]


def mark_ce(frame):
    """``frame`` with its IPv4 ECN field set to CE (Congestion Experienced),
    the header checksum updated, as a switch marks a frame it queues above
    its threshold (RFC 3168, 5); None when the frame is not an ECN-capable
    IPv4 packet (not IPv4, Not-ECT, or CE already), which a switch leaves
    alone. RoCEv2's ICRC does not cover the ECN bits."""
    frame = bytes(frame)
    if len(frame) < ETH_LEN + IPV4.length or \
            ETHERNET.unpack(frame)["ethertype"] != ETHERTYPE_IPV4:
        return None
    if IPV4["ecn"].get(frame, ETH_LEN) in (NOT_ECT, CE):
        return None
    out = bytearray(frame)
    out[ETH_LEN + 1] |= CE
    out[ETH_LEN + 10:ETH_LEN + 12] = ipv4_checksum(out[ETH_LEN:ETH_LEN + IPV4.length]).to_bytes(
        2, "big")
    return bytes(out)


# --- the MTU arithmetic per transport --------------------------------------------

def _extra(transport):
    """Bytes a transport adds within the MTU (the Ethernet payload) beyond
    the ``eth`` transport's, with the RoCEv2 padding of a bridge header
    (26 bytes) plus a TLP area (whole DWs): 2, and its ICRC in place of
    the CRC."""
    return {Transport.ETH: 0, Transport.UDP: IPV4.length + UDP.length,
            Transport.ROCEV2: IPV4.length + UDP.length + BTH.length + 2}[Transport(transport)]


def body_capacity(mtu, transport=Transport.ETH):
    """Bytes of TLP area (prefixes and TLPs) one frame carries at ``mtu``
    (the Ethernet payload size) on ``transport``."""
    return wire_body_capacity(mtu) - _extra(transport)


def frame_overhead_bytes(n_tlps, transport=Transport.ETH):
    """Bytes a DATA frame adds to ``n_tlps`` TLPs on ``transport``, as handed
    to the MAC (the ``eth`` figure of
    :func:`~tlpoe.models.frame.frame_overhead_bytes` plus the transport's
    headers: 28 for ``udp``, 42 for ``rocev2`` with its padding)."""
    return fm_frame_overhead_bytes(n_tlps) + _extra(transport)


def wire_efficiency(tlp_bytes, mtu, transport=Transport.ETH):
    """TLP bytes per byte time on the wire for an endless stream of
    ``tlp_bytes``-byte TLPs, every frame full, on ``transport`` (as
    :func:`~tlpoe.models.frame.wire_efficiency`, which is the ``eth`` case)."""
    n = body_capacity(mtu, transport) // (PREFIX_LEN + tlp_bytes)
    if n < 1:
        raise ValueError(f"a {tlp_bytes}-byte TLP does not fit a frame at MTU {mtu} on "
                         f"{Transport(transport).value}")
    return n * tlp_bytes / wire_bytes(frame_overhead_bytes(n, transport) + n * tlp_bytes)
