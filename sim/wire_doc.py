"""Generate ``docs/wire-format.md`` from the wire-format definition.

Every table, capacity and the worked example come from
:mod:`tlpoe.models.wire`, :mod:`tlpoe.models.frame` and
:mod:`tlpoe.models.transport`, so the document
cannot drift from the code::

    python -m tlpoe.sim.wire_doc --write   # regenerate the document
    python -m tlpoe.sim.wire_doc --check   # exit 1 if it is out of date
"""

import argparse
import sys
from pathlib import Path

from tlpoe.models import frame as fm
from tlpoe.models import transport as tp
from tlpoe.models import wire

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "wire-format.md"
REGENERATE = "python -m tlpoe.sim.wire_doc --write"


# --- small formatting helpers ---------------------------------------------------

def _table(header, rows):
    """A Markdown table; ``|`` inside cells is escaped."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])


def _bits(f):
    """Bit range of field ``f`` within its big-endian container, ``msb:lsb``."""
    return f"{f.shift + f.width - 1}:{f.shift}"


def _span(offset, size):
    return f"{offset}" if size == 1 else f"{offset}..{offset + size - 1}"


def hexdump(data, width=16):
    """Lines of ``offset  hex bytes`` (offsets in decimal, as the tables use)."""
    return "\n".join(f"{i:4d}  " + " ".join(f"{b:02x}" for b in data[i:i + width])
                     for i in range(0, len(data), width))


# --- sections -------------------------------------------------------------------

def _diagram():
    """The frame as boxes with the offset of each box's first byte under it."""
    cells = [(f"Ethernet II ({wire.ETH_LEN})", "0"),
             (f"bridge header ({wire.BRIDGE_LEN})", f"{wire.ETH_LEN}"),
             ("TLP area (L bytes): (prefix, TLP)*", f"{wire.HEADER_LEN}"),
             (f"CRC ({wire.CRC_LEN})", f"{wire.HEADER_LEN}+L")]
    widths = [len(text) + 2 for text, _ in cells]
    rule = "+" + "+".join("-" * w for w in widths) + "+"
    boxes = "|" + "|".join(f" {text} " for text, _ in cells) + "|"
    offsets = "".join(f"{off:<{w + 1}}" for (_, off), w in zip(cells, widths)).rstrip()
    return "\n".join([rule, boxes, rule, offsets])


def _overview():
    return f"""## Overview

A frame as handed to the MAC (no preamble, no Ethernet FCS; the MAC pads it
to {wire.MIN_FRAME} bytes and appends the FCS):

```
{_diagram()}

TLP area:  | prefix ({wire.PREFIX_LEN}) | TLP 0 | prefix ({wire.PREFIX_LEN}) | TLP 1 | ... |    (L = payload_length bytes)
```

* Multi-byte header fields are big-endian (network order). TLP bytes are
  carried exactly as PCIe orders them (byte 0 = Fmt/Type).
* The bridge header is {wire.BRIDGE_LEN} bytes so that the TLP area starts at
  frame offset {wire.HEADER_LEN}: every prefix and every TLP starts on a DW
  (4-byte) boundary of the frame.
* `payload_length` (L) tells the receiver where the TLP area ends; anything
  after the CRC (Ethernet padding) is ignored."""


def _ethernet():
    rows = [(_span(f.offset, f.size), f.size, f"`{f.name}`", f.doc) for f in wire.ETHERNET]
    return ("## Ethernet II header (frame bytes 0..13)\n\n"
            + _table(["Frame offset", "Bytes", "Field", "Meaning"], rows))


def _bridge():
    rows = [(_span(wire.ETH_LEN + f.offset, f.size), _span(f.offset, f.size), _bits(f),
             f"`{f.name}`", f.doc) for f in wire.BRIDGE_HEADER]
    flags = (f"`flags` bits: `FLAG_ACK_VALID` = 0x{fm.FLAG_ACK_VALID:02X}, "
             f"`FLAG_CREDITS_VALID` = 0x{fm.FLAG_CREDITS_VALID:02X}. Frame types: "
             + ", ".join(f"{t.name} = {t.value}" for t in wire.FrameType) + ".")
    return (f"## Bridge header (frame bytes {wire.ETH_LEN}..{wire.HEADER_LEN - 1})\n\n"
            "Bits are numbered within the big-endian word made of the bytes listed "
            "(bit 0 = least significant).\n\n"
            + _table(["Frame offset", "Header offset", "Bits", "Field", "Meaning"], rows)
            + "\n\n" + flags)


def _keepalive():
    base = wire.ETH_LEN + wire.KEEPALIVE_OFFSET
    rows = [(_span(base + f.offset, f.size), _span(wire.KEEPALIVE_OFFSET + f.offset, f.size),
             _bits(f), f"`{f.name}`", f.doc) for f in wire.KEEPALIVE_FIELDS]
    return ("## KEEPALIVE frames: the link-state handshake\n\n"
            "A KEEPALIVE carries the link state machine's handshake "
            "([link-state.md](link-state.md)) in the bytes the credit fields use in "
            "other frames; its `flags` bit 1 (credits valid) is 0, `tlp_count` and "
            "`payload_length` are 0, so every receive check applies unchanged. Its "
            "`seq` is the sender's `base` (the oldest DATA frame not acknowledged, or "
            "the next one to send), its `ack` as in every frame. States: "
            + ", ".join(f"{s.name} = {s.value}" for s in wire.LinkState) + ".\n\n"
            + _table(["Frame offset", "Header offset", "Bits", "Field", "Meaning"], rows))


def _prefix():
    rows = [(_span(f.offset, f.size), _bits(f), f"`{f.name}`", f.doc) for f in wire.TLP_PREFIX]
    return ("## TLP prefix (before every TLP)\n\n"
            "The first prefix is at frame offset "
            f"{wire.HEADER_LEN}; each next one follows the previous TLP's last byte.\n\n"
            + _table(["Prefix offset", "Bits", "Field", "Meaning"], rows)
            + f"\n\n`tlp_length` counts the TLP's header, payload and digest (ECRC); "
              f"it is a multiple of 4 and at least {wire.MIN_TLP} (a 3-DW header)."
              " The TLP's own Length field is not read by the frame layer.")


def _crc():
    return f"""## End-to-end CRC

CRC-32 as used by the IEEE 802.3 FCS: generator polynomial 0x04C11DB7
(reflected 0xEDB88320), initial value 0xFFFFFFFF, input and output reflected,
final XOR 0xFFFFFFFF; this is Python's `zlib.crc32` (check value
`zlib.crc32(b"123456789")` = 0xCBF43926). It covers frame bytes
{wire.ETH_LEN} .. {wire.HEADER_LEN}+L-1 (bridge header and TLP area, not the
Ethernet header) and is appended at frame offset {wire.HEADER_LEN}+L least
significant byte first, the byte order of the Ethernet FCS. The Ethernet FCS
protects one hop and is recomputed by every switch; this CRC protects the TLPs
from bridge to bridge, so a frame corrupted inside a switch is still caught."""


def _largest_mps(mtu):
    """Largest power-of-two TLP payload (<= 4096) that fits with a 4-DW header and digest."""
    mps = 4096
    while 16 + mps + 4 > fm.largest_tlp(mtu):
        mps //= 2
    return mps


def _aggregation():
    rows = [(mtu, wire.body_capacity(mtu), wire.body_capacity(mtu) // 4 * 4,
             fm.largest_tlp(mtu), _largest_mps(mtu),
             wire.body_capacity(mtu) // (wire.PREFIX_LEN + wire.MIN_TLP))
            for mtu in wire.MTUS]
    sizes = (12, 16 + 64, 16 + 256, 16 + 1024, 16 + 4096)
    eff_rows = [(f"{s} bytes", *(f"{100 * fm.wire_efficiency(s, mtu):.1f} %"
                                 if s <= fm.largest_tlp(mtu) else "does not fit"
                                 for mtu in wire.MTUS)) for s in sizes]
    return (f"""## Aggregation

TLPs are packed into frames in order, greedily: a frame is closed when the
next TLP's prefix and bytes would take its TLP area past the body capacity,
`MTU - {wire.BRIDGE_LEN} - {wire.CRC_LEN}` (the MTU is the Ethernet payload size,
so it holds the bridge header, the TLP area and the CRC), or when it already
holds the configured maximum number of TLPs. A TLP never spans two frames, so
the largest TLP is the capacity minus one prefix (`max_tlp_bytes`). As
prefixes and TLPs are whole DWs, a TLP area that fills a frame is the capacity
rounded down to a multiple of 4, and the largest TLP is `max_tlp_bytes`
rounded down likewise.

"""
            + _table(["MTU", "TLP area capacity", "Fillable (whole DWs)", "Largest TLP",
                      "Largest MPS that fits "
                      "(4-DW header + digest)", "Most TLPs per frame (12-byte TLPs)"], rows)
            + """

Wire efficiency for an endless stream of equal TLPs (TLP bytes, headers
included, per byte time on the wire; every frame full; counting Ethernet
preamble + SFD 8, FCS 4, inter-frame gap 12 and padding to the 60-byte
minimum):

"""
            + _table(["TLP size", *(f"MTU {mtu}" for mtu in wire.MTUS)], eff_rows))


def _drops():
    meanings = {}
    for reason, condition in fm.CHECK_ORDER + tp.UDP_CHECK_ORDER:
        meanings.setdefault(reason, []).append(condition)
    enum_rows = [(r.value, f"`{r.name}`", "; or ".join(meanings[r])) for r in fm.DropReason]
    order_rows = [(i, f"`{r.name}`", c) for i, (r, c) in enumerate(fm.CHECK_ORDER, 1)]
    return ("""## Receive checks and drop reasons

A receiver drops a frame that fails any check below and counts it under one
reason. The values are the RTL decapsulator's drop-counter indices:

"""
            + _table(["Value", "Reason", "Meaning"], enum_rows)
            + """

When several checks fail, the first in this order names the drop. Every
condition depends on the received bytes alone, so a store-and-forward receiver
computes all of them in one pass (header compares as the header arrives, the
CRC and the prefix walk while the TLP area streams in, the lengths at the end
of the frame) and a priority encoder picks the first (`L` = `payload_length`):

"""
            + _table(["#", "Reason", "Condition"], order_rows)
            + """

Frames of type ACK, NAK, CREDIT and KEEPALIVE pass with no TLPs; a DATA frame
with no TLPs is `EMPTY_DATA`. Reserved fields and reserved `flags` bits are
ignored on receive; the MAC addresses are filtered by the MAC, not here.

On the `udp` transport (below) the headers before the TLP area are 68
bytes, so check 1 asks for 72; check 2 asks for EtherType 0x0800 (IPv4);
and between checks 2 and 3 come the IPv4 and UDP checks
(`models/transport.py` `receive`, which the RTL Deframer matches):

"""
            + _table(["#", "Reason", "Condition"],
                     [(f"2.{i}", f"`{r.name}`", c)
                      for i, (r, c) in enumerate(tp.UDP_CHECK_ORDER, 1)])
            + """

`OVERSIZE` still compares the whole frame with 14 + MTU bytes.""")


def example_tlps():
    """The worked example's TLPs, built by hand from the PCIe header layout:
    a 3-DW MRd of 1 DW and a 3-DW MWr of 2 DWs (8 bytes)."""
    mrd = bytes([0x00, 0x00, 0x00, 0x01,      # Fmt 000 Type 00000 (MRd 3DW), Length 1
                 0x01, 0x00, 0x05, 0x0F,      # Requester 01:00.0, Tag 5, BE last 0 first F
                 0x00, 0x00, 0x10, 0x00])     # Address 0x00001000
    mwr = bytes([0x40, 0x00, 0x00, 0x02,      # Fmt 010 Type 00000 (MWr 3DW), Length 2
                 0x01, 0x00, 0x00, 0xFF,      # Requester 01:00.0, Tag 0, BE last F first F
                 0x00, 0x00, 0x20, 0x00,      # Address 0x00002000
                 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88])
    return [mrd, mwr]


EXAMPLE_HEADER = dict(seq=7, ack=3, flags=fm.FLAG_ACK_VALID, channel=1)


def _example_value(name, value):
    """A field value as the example table shows it."""
    if name.endswith("_mac"):
        return value.to_bytes(6, "big").hex(":")
    if name == "ethertype":
        return f"0x{value:04X}"
    if name == "frame_type":
        return f"{value} ({wire.FrameType(value).name})"
    return value


def _example_fields(frame, decoded):
    """Rows (offsets, field, hex bytes, value) walking the example frame."""
    rows = []
    for layout, base in ((wire.ETHERNET, 0), (wire.BRIDGE_HEADER, wire.ETH_LEN)):
        for f in layout:
            raw = frame[base + f.offset:base + f.offset + f.size].hex(" ")
            rows.append((_span(base + f.offset, f.size), f"`{f.name}`", raw,
                         _example_value(f.name, f.get(frame, base))))
    offset = wire.HEADER_LEN
    for i, tlp in enumerate(decoded.tlps):
        rows.append((_span(offset, wire.PREFIX_LEN), f"prefix {i}: `tlp_length`",
                     frame[offset:offset + wire.PREFIX_LEN].hex(" "), len(tlp)))
        offset += wire.PREFIX_LEN
        rows.append((_span(offset, len(tlp)), f"TLP {i}", tlp.hex(" "), ""))
        offset += len(tlp)
    rows.append((_span(offset, wire.CRC_LEN), "CRC (little-endian)",
                 frame[offset:offset + wire.CRC_LEN].hex(" "), f"0x{decoded.crc:08X}"))
    return rows


def _example():
    frame = fm.encode_frame(example_tlps(), **EXAMPLE_HEADER)
    decoded = fm.decode_frame(frame)
    args = ", ".join(f"{k}={v}" for k, v in EXAMPLE_HEADER.items())
    return (f"""## Worked example

A DATA frame with `{args}` (flags = `FLAG_ACK_VALID`) carrying a 3-DW memory
read of 1 DW (MRd, requester 01:00.0, tag 5, address 0x1000) and a 3-DW memory
write of 8 bytes (MWr, address 0x2000, data 11 22 .. 88), as produced by
`encode_frame` with the default MAC addresses: {len(frame)} bytes (no MAC
padding, as that is at least {wire.MIN_FRAME}).

```
{hexdump(frame)}
```

"""
            + _table(["Frame offset", "Field", "Bytes", "Value"], _example_fields(frame, decoded)))


def _layout_table(layout, base):
    rows = [(_span(base + f.offset, f.size), _span(f.offset, f.size), _bits(f), f"`{f.name}`",
             f.doc) for f in layout]
    return _table(["Frame offset", "Header offset", "Bits", "Field", "Meaning"], rows)


def _transports():
    ip_at, udp_at = wire.ETH_LEN, wire.ETH_LEN + tp.IPV4.length
    bth_at = udp_at + tp.UDP.length
    sizes = ", ".join(f"`{t.value}` {tp.header_bytes(t)}" for t in tp.Transport)
    return f"""## Transports: `eth`, `udp`, `rocev2` (models/transport.py)

The tables above are the `eth` transport. The bridge's `transport`
parameter chooses what carries the bridge header and TLP area across the
network; the bytes before the bridge header, Ethernet included: {sizes}.
Addresses, ports and the queue pair come from configuration registers (no
ARP): `UdpConfig`.

**`udp`**: Ethernet II with EtherType 0x{tp.ETHERTYPE_IPV4:04X} (IPv4), then
an IPv4 header without options, a UDP header to port {tp.UDP_PORT}
(configurable), then the bridge header, TLP area and CRC exactly as in
`eth`. The IPv4 header checksum is computed (RFC 791). The UDP checksum is
zero, which IPv4 allows (RFC 768): the bridge writes the header before the
payload streams through, a UDP checksum would need the whole datagram
first, and the bridge's own CRC already covers its header and TLPs end to
end (RoCEv2 and VXLAN, RFC 7348, send zero too). A DATA frame's DSCP is
that of its first TLP's traffic class (`UdpConfig.dscp`, one per TC);
frames without TLPs (ACK, NAK, CREDIT, KEEPALIVE) take `control_dscp`, so
that a network can queue the link's acknowledgements apart from bulk data.
ECN is sent as ECT(0) (ECN-capable, RFC 3168) and a switch may mark CE; the
UDP source port is the link's ECMP entropy. The TLP area starts at byte 68
(whole DWs, as on `eth`) and a frame carries 28 bytes less of it at the
same MTU. The receiver takes a datagram only from the peer's address to its
own on the configured port (`NOT_OURS` otherwise).

In the RTL, `Bridge(transport="udp")`: the addresses, ports, TTL and DSCPs
are `cfg` fields (`docs/csr.md`: `src_ip`, `dst_ip`, `src_port`,
`dst_port`, `ttl`, `control_dscp`, `dscp[8]`); the framer takes a change
7 cycles later (it works the IPv4 checksum's per-class bases out of them in
a pipeline of one adder per stage, and adds the frame's length at the
descriptor's handshake), and the deframer sums the received header's ten
words over four stages.

{_layout_table(tp.IPV4, ip_at)}

{_layout_table(tp.UDP, udp_at)}

**`rocev2`**: Ethernet II + IPv4 + UDP to port {tp.ROCEV2_PORT} + the
InfiniBand Base Transport Header, one reliable-connection queue pair per
link (`UdpConfig.dest_qp`, never 0 or 1, InfiniBand's management queue
pairs):

* DATA frames are RC SEND Only packets (opcode 0x{tp.RC_SEND_ONLY:02X}) whose
  PSN is the frame's sequence number (its low 24 bits: `seq_bits` is at most
  24 on this transport), AckReq set; CREDIT and KEEPALIVE frames are RC
  SENDs too, AckReq clear, told apart by the bridge header their payload
  begins with. The payload is the bridge header and TLP area, padded to a
  multiple of 4 bytes (`padcount`); the ICRC replaces the bridge's CRC.
* ACK and NAK frames are RC Acknowledge packets (opcode
  0x{tp.RC_ACKNOWLEDGE:02X}) with an AETH: syndrome 0x{tp.AETH_ACK:02X}
  (ACK) with PSN and MSN the cumulative ack, or 0x{tp.AETH_NAK_PSN:02X} (NAK,
  PSN sequence error) with PSN the number to resend from and MSN the
  cumulative ack. In go-back-N that is PSN - 1, as an RC NIC reads a NAK; in
  selective repeat the number NAK'd can be later than the ack + 1, which
  only a tlpoe bridge reads (from MSN). Acknowledges carry no payload, so no
  credits: on this transport credits ride on DATA and CREDIT frames.

{_layout_table(tp.BTH, bth_at)}

{_layout_table(tp.AETH, bth_at + tp.BTH.length)}

The ICRC (4 bytes after the payload, least significant byte first) is the
CRC-32 of the end-to-end CRC above over 8 bytes of 0xFF (the InfiniBand
local route header a RoCEv2 packet lacks) and the datagram from the IPv4
header to the end of the payload, with the fields a router or switch may
change set to ones: the IPv4 TOS (DSCP and ECN), TTL and header checksum,
the UDP checksum, and the BTH's FECN, BECN and reserved bits (InfiniBand
Architecture Specification, Annex A17, RoCEv2). `tests/test_transport.py`
checks every frame against scapy's RoCE layer (its own ICRC), tshark's IPv4,
UDP and InfiniBand dissectors, and a changed byte against each."""


def _references():
    return """## References and contrast

* EtherType 0x88B5 is "Local Experimental EtherType 1" of IEEE Std 802
  (0x88B6 is Local Experimental EtherType 2), reserved for experiments and
  private protocols, so it is only the default: the EtherType is configurable
  per bridge.
* The CRC is the CRC-32 of IEEE Std 802.3 (the Ethernet FCS), computed by
  `zlib.crc32`.
* NetTLP (Kuga et al., "NetTLP: A Development Platform for PCIe devices in
  Software Interacting with Hardware", NSDI 2020) carries one TLP per UDP
  datagram behind a 6-byte header (16-bit sequence number and 32-bit
  timestamp, `struct nettlp_hdr`) with no acknowledgement or retransmission.
  tlpoe instead aggregates many TLPs per Ethernet frame, each behind a 4-byte
  length prefix, and its bridge header carries the cumulative ACK, the link
  credits and a 32-bit sequence number for a reliable link layer, with an
  end-to-end CRC. NetTLP captures are read by the TLP model, not by this
  format."""


def render():
    """The whole of ``docs/wire-format.md``."""
    sections = [
        "# tlpoe wire format",
        f"<!-- Generated from models/wire.py and models/frame.py by `{REGENERATE}`; "
        "do not edit by hand. -->",
        _overview(), _ethernet(), _bridge(), _keepalive(), _prefix(), _crc(), _aggregation(),
        _drops(), _example(), _transports(), _references(),
    ]
    return "\n\n".join(sections) + "\n"


def check(path=DOC_PATH):
    """True when ``path`` holds exactly :func:`render`'s text."""
    path = Path(path)
    return path.is_file() and path.read_text(encoding="utf-8") == render()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tlpoe.sim.wire_doc", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if the document is out of date")
    mode.add_argument("--write", action="store_true", help="(re)write the document")
    parser.add_argument("--path", type=Path, default=DOC_PATH, help=f"default: {DOC_PATH}")
    args = parser.parse_args(argv)
    if args.write:
        args.path.parent.mkdir(parents=True, exist_ok=True)
        args.path.write_text(render(), encoding="utf-8")
        print(f"wrote {args.path}")
        return 0
    if check(args.path):
        return 0
    print(f"{args.path} is out of date with models/wire.py; regenerate it with:\n"
          f"    {REGENERATE}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
