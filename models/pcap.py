"""Classic pcap files: a writer (:class:`PcapWriter`, nanosecond timestamps, for
the testbenches' link captures), a reader (:func:`read_pcap`), and the NetTLP
capture decoder: pcap -> Ethernet -> IPv4 -> UDP -> NetTLP -> TLP.

No capture library: the classic pcap format (microsecond magic 0xa1b2c3d4 or
nanosecond magic 0xa1b23c4d, either byte order) is read and written with
:mod:`struct`. The writer always writes the nanosecond magic, little-endian,
link type 1 (Ethernet).
Each packet must be Ethernet II (optionally 802.1Q / 802.1ad tagged), IPv4
(options allowed, no fragments), UDP, then the 6-byte NetTLP header
(16-bit sequence, 32-bit timestamp, big-endian) and exactly one TLP.

A packet whose capture length is shorter than its wire length keeps every
captured payload byte and no invented one: its TLP header is decoded fully,
``record.truncated`` (and ``record.tlp.truncated``) is True.

Errors are :class:`PcapError`, one line, naming the packet index (0-based;
Wireshark's frame number is index + 1).  They come in two kinds:

* file errors (not a pcap, bad global header, a record header cut short or
  claiming more captured bytes than the file's snaplen or
  :data:`MAX_RECORD_LEN`, a record cut by the end of the file): the records
  after them cannot be found, so reading ends there;
* packet errors, :class:`PacketError` (a frame that is not
  NetTLP-over-UDP/IPv4 or does not hold one well-formed TLP): the next record
  is still readable.  :func:`iter_nettlp` yields them and goes on;
  :func:`read_nettlp` raises the first one.

A record's captured length is checked before it is read, so a corrupt record
header never makes the reader allocate more than :data:`MAX_RECORD_LEN` bytes.
"""

import struct
from dataclasses import dataclass
from pathlib import Path

from tlpoe.models.tlp import Tlp, TlpError

__all__ = ["PcapError", "PacketError", "PcapPacket", "NetTlpRecord", "PcapWriter", "write_pcap",
           "read_pcap", "decode_nettlp", "iter_nettlp", "read_nettlp", "NETTLP_HEADER_LEN",
           "MAX_RECORD_LEN"]

#: pcap magic numbers as read in the file's byte order -> timestamp unit in ns.
_MAGIC_UNITS = {0xA1B2C3D4: 1000, 0xA1B23C4D: 1}
_MAGIC_NS = 0xA1B23C4D
_NS_PER_S = 1_000_000_000
_PCAPNG_MAGIC = 0x0A0D0D0A
_LINKTYPE_ETHERNET = 1
_GLOBAL_HEADER_LEN = 24
_RECORD_HEADER_LEN = 16
#: The largest captured length a record may claim, whatever the file's
#: snaplen says: libpcap's and Wireshark's maximum snapshot length.
MAX_RECORD_LEN = 262_144

_ETHERTYPE_IPV4 = 0x0800
_VLAN_ETHERTYPES = (0x8100, 0x88A8)   # 802.1Q tag, 802.1ad service tag
_IPPROTO_UDP = 17
_UDP_HEADER_LEN = 8
#: NetTLP header: 16-bit sequence number, 32-bit timestamp, big-endian.
NETTLP_HEADER_LEN = 6


class PcapError(ValueError):
    """A capture that cannot be read; the message is one line."""


class PacketError(PcapError):
    """One packet that does not decode; the records after it are still
    readable.  ``index`` is the packet's 0-based index in the file."""

    def __init__(self, index, reason):
        super().__init__(f"packet {index}: {reason}")
        self.index = index


@dataclass(frozen=True)
class PcapPacket:
    """One pcap record: ``data`` is the captured bytes, ``wire_length`` the
    length the packet had on the wire."""
    index: int
    timestamp_ns: int
    data: bytes
    wire_length: int

    @property
    def truncated(self):
        return len(self.data) < self.wire_length


@dataclass(frozen=True)
class NetTlpRecord:
    """One NetTLP packet decoded; ``truncated`` when the capture holds fewer
    TLP bytes than the packet carried (then ``tlp.data`` is the captured part).
    ``tlp_bytes`` are the TLP's bytes as captured (for replay and bit-exact checks)."""
    index: int
    timestamp_ns: int
    seq: int
    nettlp_timestamp: int
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    tlp: Tlp
    truncated: bool
    tlp_bytes: bytes


# ---------------------------------------------------------------- pcap

def _read_global_header(stream):
    """(byte order, ns per timestamp unit, largest captured length a record
    may claim) from the 24-byte global header."""
    header = stream.read(_GLOBAL_HEADER_LEN)
    if len(header) < 4:
        raise PcapError(f"not a pcap file: only {len(header)} bytes")
    for order in ("<", ">"):
        (magic,) = struct.unpack(order + "I", header[:4])
        if magic in _MAGIC_UNITS:
            break
    else:
        if magic == _PCAPNG_MAGIC:
            raise PcapError("pcapng is not supported, only classic pcap")
        raise PcapError(f"not a pcap file: bad magic 0x{header[:4].hex()}")
    if len(header) < _GLOBAL_HEADER_LEN:
        raise PcapError(f"truncated pcap global header ({len(header)} of 24 bytes)")
    snaplen, linktype = struct.unpack(order + "II", header[16:24])
    if linktype & 0xFFFF != _LINKTYPE_ETHERNET:
        raise PcapError(f"link type {linktype & 0xFFFF} is not Ethernet (1)")
    return order, _MAGIC_UNITS[magic], _record_limit(snaplen)


def _record_limit(snaplen):
    """(limit, what it is) for a record's captured length.  A snaplen of 0
    says nothing (some writers leave it so): then only MAX_RECORD_LEN holds."""
    if 0 < snaplen < MAX_RECORD_LEN:
        return snaplen, "the file's snaplen"
    return MAX_RECORD_LEN, "the maximum"


def _read_records(stream):
    order, unit_ns, (limit, limit_name) = _read_global_header(stream)
    record = struct.Struct(order + "IIII")
    index = 0
    while True:
        header = stream.read(_RECORD_HEADER_LEN)
        if not header:
            return
        if len(header) < _RECORD_HEADER_LEN:
            raise PcapError(f"packet {index}: truncated record header "
                            f"({len(header)} of {_RECORD_HEADER_LEN} bytes)")
        ts_sec, ts_frac, caplen, wire_length = record.unpack(header)
        # Checked before reading: a buffered read allocates the size it is
        # asked for, so a corrupt header (0x7fffffff) would allocate 2 GiB.
        if caplen > limit:
            raise PcapError(f"packet {index}: record header claims {caplen} captured bytes "
                            f"(0x{caplen:x}), more than {limit_name} of {limit}")
        data = stream.read(caplen)
        if len(data) < caplen:
            raise PcapError(f"packet {index}: record of {caplen} bytes but the file "
                            f"ends after {len(data)}")
        yield PcapPacket(index, ts_sec * 1_000_000_000 + ts_frac * unit_ns, data,
                         max(wire_length, caplen))
        index += 1


class PcapWriter:
    """Writes a classic pcap with nanosecond timestamps (magic 0xA1B23C4D,
    little-endian, version 2.4, link type 1 = Ethernet) to ``dest``, a path
    (created with its folders) or a binary file object.

    :meth:`write` appends one packet at ``timestamp_ns`` (an int, 0 ..
    2**32 s); a packet longer than ``snaplen`` keeps its first ``snaplen``
    bytes and its full length as the wire length. Each packet is flushed, so
    the file is readable while the writer is open (a testbench that fails
    half way still leaves its capture). Use as a context manager or call
    :meth:`close`."""

    def __init__(self, dest, *, snaplen=262144):
        if not 0 < snaplen < 2**32:
            raise ValueError(f"snaplen must be in 1..2**32-1, not {snaplen}")
        self.snaplen = snaplen
        self.packets = 0
        if isinstance(dest, (str, Path)):
            Path(dest).parent.mkdir(parents=True, exist_ok=True)
            self._stream, self._owned = open(dest, "wb"), True
        else:
            self._stream, self._owned = dest, False
        self._stream.write(struct.pack("<IHHiIII", _MAGIC_NS, 2, 4, 0, 0, snaplen,
                                       _LINKTYPE_ETHERNET))
        self._stream.flush()

    def write(self, timestamp_ns, data):
        """Append ``data`` (bytes) captured at ``timestamp_ns`` (int ns)."""
        if not isinstance(timestamp_ns, int) or not 0 <= timestamp_ns < 2**32 * _NS_PER_S:
            raise ValueError(f"timestamp_ns must be an int in 0 .. 2**32 s, not {timestamp_ns!r}")
        data = bytes(data)
        captured = data[:self.snaplen]
        sec, ns = divmod(timestamp_ns, _NS_PER_S)
        self._stream.write(struct.pack("<IIII", sec, ns, len(captured), len(data)) + captured)
        self._stream.flush()
        self.packets += 1

    def close(self):
        if self._owned and not self._stream.closed:
            self._stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_pcap(dest, packets, **kw):
    """Write ``packets``, an iterable of ``(timestamp_ns, data)``, to ``dest``
    (see :class:`PcapWriter`); returns the number written."""
    with PcapWriter(dest, **kw) as writer:
        for timestamp_ns, data in packets:
            writer.write(timestamp_ns, data)
        return writer.packets


def read_pcap(source):
    """Iterate the :class:`PcapPacket` records of a classic pcap file
    (a path or a binary file object), one at a time.  Raises PcapError on a
    bad magic, a link type other than Ethernet, a record header claiming
    more captured bytes than the file's snaplen or MAX_RECORD_LEN (before
    reading them), or a record cut short by the file's end."""
    if isinstance(source, (str, Path)):
        with open(source, "rb") as stream:
            yield from _read_records(stream)
    else:
        yield from _read_records(source)


# ---------------------------------------------------------------- NetTLP

class _Cursor:
    """Reads headers off a captured frame; a short read names the header."""

    def __init__(self, data, index):
        self.data, self.index, self.offset = data, index, 0

    def take(self, n, what):
        if self.offset + n > len(self.data):
            raise PacketError(self.index, f"capture ends inside the {what}")
        chunk = self.data[self.offset:self.offset + n]
        self.offset += n
        return chunk

    def fail(self, reason):
        raise PacketError(self.index, reason)


def _ethernet(cur):
    """Skip Ethernet II and any VLAN tags; require IPv4."""
    ethertype = struct.unpack("!H", cur.take(14, "Ethernet header")[12:14])[0]
    while ethertype in _VLAN_ETHERTYPES:
        ethertype = struct.unpack("!H", cur.take(4, "VLAN tag")[2:4])[0]
    if ethertype != _ETHERTYPE_IPV4:
        cur.fail(f"EtherType 0x{ethertype:04x} is not IPv4")


def _ipv4(cur):
    """(src, dst, bytes of IP payload) after honouring IHL; require UDP."""
    start = cur.offset
    fixed = cur.take(20, "IPv4 header")
    version, ihl = fixed[0] >> 4, fixed[0] & 0xF
    if version != 4 or ihl < 5:
        cur.fail(f"bad IPv4 version/IHL {version}/{ihl}")
    cur.take(4 * ihl - 20, "IPv4 options")
    total_length, flags_fragment, protocol = struct.unpack("!H2xHxB", fixed[2:10])
    if flags_fragment & 0x3FFF:
        cur.fail("fragmented IPv4 is not supported")
    if protocol != _IPPROTO_UDP:
        cur.fail(f"IP protocol {protocol} is not UDP")
    if total_length < 4 * ihl:
        cur.fail(f"IPv4 total length {total_length} shorter than its header")
    src, dst = (".".join(map(str, fixed[i:i + 4])) for i in (12, 16))
    return src, dst, total_length - (cur.offset - start)


def _udp(cur, ip_payload):
    """(src port, dst port, bytes of UDP payload)."""
    src_port, dst_port, length = struct.unpack("!HHH", cur.take(8, "UDP header")[:6])
    if not _UDP_HEADER_LEN + NETTLP_HEADER_LEN <= length <= ip_payload:
        cur.fail(f"UDP length {length} does not fit a NetTLP packet "
                 f"(IP payload {ip_payload} bytes)")
    return src_port, dst_port, length - _UDP_HEADER_LEN


def decode_nettlp(packet):
    """The :class:`NetTlpRecord` of one :class:`PcapPacket`, or PacketError
    saying why it is not one.  The TLP's wire size comes from the UDP length
    (Ethernet padding is ignored)."""
    cur = _Cursor(packet.data, packet.index)
    _ethernet(cur)
    src_ip, dst_ip, ip_payload = _ipv4(cur)
    src_port, dst_port, udp_payload = _udp(cur, ip_payload)
    seq, nettlp_ts = struct.unpack("!HI", cur.take(NETTLP_HEADER_LEN, "NetTLP header"))
    tlp_wire = udp_payload - NETTLP_HEADER_LEN
    tlp_bytes = packet.data[cur.offset:cur.offset + tlp_wire]
    truncated = len(tlp_bytes) < tlp_wire
    try:
        tlp = Tlp.unpack(tlp_bytes, allow_truncated=truncated)
    except TlpError as err:
        cur.fail(f"bad TLP ({type(err).__name__}): {err}")
    return NetTlpRecord(packet.index, packet.timestamp_ns, seq, nettlp_ts, src_ip, dst_ip,
                        src_port, dst_port, tlp, truncated, tlp_bytes)


def iter_nettlp(source):
    """For every packet of a NetTLP capture (a path or a binary file object),
    in file order, yield its :class:`NetTlpRecord`, or the :class:`PacketError`
    saying why it does not decode, and go on with the next packet.  A file
    error raises PcapError and ends the iteration."""
    for packet in read_pcap(source):
        try:
            yield decode_nettlp(packet)
        except PacketError as err:
            yield err


def read_nettlp(source):
    """Iterate the :class:`NetTlpRecord` of every packet of a NetTLP capture
    (a path or a binary file object); raises PcapError on a file error and
    PacketError on the first packet that is not NetTLP-over-UDP/IPv4 or does
    not hold one well-formed TLP."""
    for packet in read_pcap(source):
        yield decode_nettlp(packet)
