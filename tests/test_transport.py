"""The transports' model (models/transport.py, issue 20): the ``udp``
encapsulation against code written elsewhere (scapy's IPv4 and UDP, tshark's
dissectors with checksum validation on), its round trip through the frame
model, and what it refuses."""

import json
import os
import random
import subprocess

import pytest

from tlpoe.models import transport as tp
from tlpoe.models.frame import DropReason, FrameError, decode_frame, encode_frame
from tlpoe.models.pcap import write_pcap
from tlpoe.models.tlp import Tlp, TlpType
from tlpoe.models.wire import FrameType

from test_dissector import TSHARK, require_tshark

#: Wireshark's checksum status values (epan/proto.h, PROTO_CHECKSUM_E_*)
BAD, GOOD, UNVERIFIED, NOT_PRESENT = "0", "1", "2", "3"
CONFIG = tp.UdpConfig(src_ip=0x0A01_0203, dst_ip=0xC0A8_0A0B, src_port=0xC123, ttl=17,
                      dscp=(0, 8, 10, 18, 26, 34, 46, 48), dest_qp=0x4242)


@pytest.fixture
def tshark():
    """tshark's path; skips without it, fails without it in CI."""
    return require_tshark(TSHARK, os.environ)


def frames(seed=1, n=40):
    """``eth`` frames of every type: DATA with 1..6 random TLPs (the TLP's
    traffic class with each), ACK, NAK, CREDIT, KEEPALIVE."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        tc = rng.randrange(8)
        tlps = [Tlp(TlpType.MWr, address=4 * rng.randrange(1 << 20), tc=tc,
                    data=bytes(rng.randrange(256) for _ in range(4 * rng.randrange(1, 64)))).pack()
                for _ in range(rng.randrange(1, 7))]
        out.append((encode_frame(tlps, seq=i, ack=i // 2), tc))
    for kind in (FrameType.ACK, FrameType.NAK, FrameType.CREDIT, FrameType.KEEPALIVE):
        out.append((encode_frame([], frame_type=kind, seq=3, ack=2), 0))
    return out


def test_the_ipv4_checksum_of_a_known_header():
    # the worked example of Wikipedia's "Internet checksum" / "IPv4 header
    # checksum": 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert tp.ipv4_checksum(header) == 0xB861
    assert tp.ones_complement_sum(bytes.fromhex("45000073000040004011b861c0a80001c0a800c7")) \
        == 0xFFFF


def test_udp_round_trip_gives_back_the_frame_and_its_decode():
    for frame, tc in frames():
        udp = tp.to_udp(frame, CONFIG, tc)
        assert len(udp) == max(60, len(frame) + 28)
        back, ip = tp.from_udp(udp, CONFIG.peer())
        assert back == frame
        assert ip["dscp"] == CONFIG.dscp[tc] and ip["ecn"] == tp.ECT0 and ip["ttl"] == 17
        assert decode_frame(back) == decode_frame(frame)


def test_scapy_reads_our_headers_as_we_wrote_them():
    """scapy's IPv4 and UDP (code written elsewhere) parse every frame and,
    recomputing the IPv4 checksum itself, get ours."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    for frame, tc in frames(seed=2):
        udp = tp.to_udp(frame, CONFIG, tc)
        pkt = Ether(udp)
        ip = pkt[IP]
        assert (ip.version, ip.ihl, ip.tos >> 2, ip.tos & 3) == (4, 5, CONFIG.dscp[tc], 2)
        assert (ip.src, ip.dst, ip.ttl, ip.proto, ip.flags) == ("10.1.2.3", "192.168.10.11",
                                                               17, 17, "DF")
        assert ip.len == len(frame) - 14 + 28
        rebuilt = IP(bytes(ip))
        del rebuilt.chksum
        assert IP(bytes(rebuilt)).chksum == ip.chksum
        u = pkt[UDP]
        assert (u.sport, u.dport, u.len, u.chksum) == (0xC123, tp.UDP_PORT, ip.len - 20, 0)
        assert bytes(u.payload)[:u.len - 8] == frame[14:]


def dissect_expert(tshark, frames_, tmp_path):
    """tshark's JSON of ``frames_`` with IPv4 and UDP checksum validation on."""
    pcap = tmp_path / "udp.pcap"
    write_pcap(pcap, ((1000 * i, f) for i, f in enumerate(frames_)))
    out = subprocess.run([tshark, "-n", "-r", str(pcap), "-T", "json",
                          "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def experts(packet):
    """Every expert item and malformed mark in one packet's JSON tree."""
    found = []

    def walk(node, key=""):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("_ws.expert", "_ws.malformed"):
                    found.append((k, v))
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
    walk(packet)
    return found


def test_tshark_validates_every_udp_frame_with_no_expert_item(tshark, tmp_path):
    udp = [tp.to_udp(frame, CONFIG, tc) for frame, tc in frames(seed=3)]
    packets = dissect_expert(tshark, udp, tmp_path)
    assert len(packets) == len(udp)
    for i, packet in enumerate(packets):
        layers = packet["_source"]["layers"]
        assert layers["ip"]["ip.checksum.status"] == GOOD, (i, layers["ip"])
        assert int(layers["udp"]["udp.dstport"]) == tp.UDP_PORT
        assert layers["udp"]["udp.checksum_tree"]["udp.checksum.status"] == NOT_PRESENT, \
            (i, layers["udp"])
        assert not experts(packet), (i, experts(packet))


def test_tshark_flags_a_header_byte_broken(tshark, tmp_path):
    """The check is not vacuous: one byte of the IPv4 header changed (the
    TTL) and tshark reports the bad checksum, and from_udp refuses it."""
    frame, tc = frames(seed=4, n=1)[0]
    udp = bytearray(tp.to_udp(frame, CONFIG, tc))
    udp[14 + 8] ^= 0x01
    packet = dissect_expert(tshark, [bytes(udp)], tmp_path)[0]
    assert packet["_source"]["layers"]["ip"]["ip.checksum.status"] == BAD
    assert experts(packet)
    with pytest.raises(tp.TransportError, match="checksum"):
        tp.from_udp(bytes(udp))


@pytest.mark.parametrize("change, match", [
    (lambda b: b.__setitem__(slice(12, 14), b"\x88\xb5"), "not IPv4"),
    (lambda b: b.__setitem__(14, 0x46), "IHL"),
    (lambda b: b.__setitem__(slice(36, 38), b"\x12\x34"), "UDP port"),
    (lambda b: b.__setitem__(slice(38, 40), b"\x00\x09"), "length"),
    (lambda b: b.__setitem__(23, 6), "protocol"),
])
def test_from_udp_refuses_what_is_not_our_datagram(change, match):
    frame, tc = frames(seed=5, n=1)[0]
    udp = bytearray(tp.to_udp(frame, CONFIG, tc))
    change(udp)
    if match not in ("not IPv4", "IHL", "checksum"):       # keep the checksum right
        udp[24:26] = b"\0\0"
        udp[24:26] = tp.ipv4_checksum(udp[14:34]).to_bytes(2, "big")
    with pytest.raises(tp.TransportError, match=match):
        tp.from_udp(bytes(udp))
    with pytest.raises(tp.TransportError, match="shorter"):
        tp.from_udp(bytes(udp[:41]))


@pytest.mark.parametrize("kw, name", [
    ({"src_ip": 1 << 32}, "src_ip"), ({"dst_port": -1}, "dst_port"), ({"ttl": 256}, "ttl"),
    ({"dscp": (64,) * 8}, "dscp"), ({"dscp": (0,) * 7}, "dscp"), ({"dest_qp": 1}, "dest_qp"),
    ({"dest_qp": 1 << 24}, "dest_qp"),
])
def test_a_bad_configuration_raises_naming_it(kw, name):
    with pytest.raises(ValueError, match=name):
        tp.UdpConfig(**kw)


def test_header_bytes_per_transport():
    assert tp.header_bytes("eth") == 14 and tp.header_bytes(tp.Transport.UDP) == 42


# --- RoCEv2 ------------------------------------------------------------------------

MACS = bytes.fromhex("02746c700101" "02746c700001")


def roce_frames():
    """SENDs of payloads 26..39 bytes long (a bridge header and more; every
    padding) at assorted PSNs and queue pairs, and an ACK and a NAK (PSN
    sequence error)."""
    out = [(dict(opcode=tp.RC_SEND_ONLY, psn=(0x9E3779 * n) & 0xFFFFFF, dest_qp=0x10 + n,
                 traffic_class=n % 8), bytes((7 * k + n) & 0xFF for k in range(26 + n)))
           for n in range(14)]
    for syndrome in (tp.AETH_ACK, tp.AETH_NAK_PSN):
        out.append((dict(opcode=tp.RC_ACKNOWLEDGE, psn=0xFFFFFE, dest_qp=3,
                         aeth=dict(syndrome=syndrome, msn=0xFFFFFE)), b""))
    return [(kw, tp.rocev2_packet(MACS, payload, CONFIG, **kw), payload) for kw, payload in out]


def test_scapy_builds_the_same_rocev2_frame_icrc_included():
    """scapy's RoCE layer (scapy.contrib.roce, written elsewhere) given the
    same fields builds the same bytes, its own ICRC among them."""
    from scapy.contrib.roce import AETH, BTH
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    for kw, ours, payload in roce_frames():
        pad = -len(payload) % 4
        pkt = (Ether(dst="02:74:6c:70:01:01", src="02:74:6c:70:00:01") /
               IP(src="10.1.2.3", dst="192.168.10.11", ttl=17, flags="DF", id=0,
                  tos=CONFIG.dscp[kw.get("traffic_class", 0)] << 2 | tp.ECT0) /
               UDP(sport=CONFIG.src_port, dport=4791, chksum=0) /
               BTH(opcode=kw["opcode"], migreq=1, padcount=pad, dqpn=kw["dest_qp"],
                   ackreq=int(kw["opcode"] == tp.RC_SEND_ONLY), psn=kw["psn"]))
        if "aeth" in kw:
            pkt = pkt / AETH(**kw["aeth"])
        theirs = bytes(pkt / Raw(payload + bytes(pad)) if payload or pad else pkt)
        assert ours == theirs.ljust(60, b"\0"), kw
        assert tp.check_icrc(ours)


def test_the_icrc_survives_what_a_router_changes_and_nothing_else():
    kw, frame, _ = roce_frames()[9]
    routed = bytearray(frame)
    routed[14 + 8] -= 1                          # TTL decremented ...
    routed[14 + 1] |= tp.CE                      # ... ECN marked Congestion Experienced
    routed[14 + 10:14 + 12] = tp.ipv4_checksum(routed[14:34]).to_bytes(2, "big")
    routed[42 + 4] |= 0x80                       # FECN
    assert tp.check_icrc(bytes(routed))
    for at in (14 + 12, 42 + 0, 42 + 11, 54 + 3):   # source IP, opcode, PSN, payload
        broken = bytearray(frame)
        broken[at] ^= 0x10
        assert not tp.check_icrc(bytes(broken)), at


def test_tshark_decodes_every_rocev2_frame_as_infiniband(tshark, tmp_path):
    cases = roce_frames()
    packets = dissect_expert(tshark, [f for _, f, _ in cases], tmp_path)
    for (kw, frame, _), packet in zip(cases, packets):
        layers = packet["_source"]["layers"]
        assert layers["ip"]["ip.checksum.status"] == GOOD
        bth = layers["infiniband"]["infiniband.bth_tree"]
        assert (int(bth["infiniband.bth.opcode"]), int(bth["infiniband.bth.psn"]),
                int(bth["infiniband.bth.destqp"], 16)) == (kw["opcode"], kw["psn"], kw["dest_qp"])
        if "aeth" in kw:
            assert int(layers["infiniband"]["infiniband.aeth_tree"]["infiniband.aeth.syndrome"]) \
                == kw["aeth"]["syndrome"]
        # tshark shows the ICRC it read (it does not check it)
        assert int(layers["infiniband"]["infiniband.invariant.crc"], 16) == \
                int.from_bytes(frame[14 + int(layers["ip"]["ip.len"]) - 4:][:4], "big")
        assert not experts(packet), experts(packet)


def test_rocev2_round_trip_of_every_frame_type():
    """DATA, CREDIT and KEEPALIVE as RC SENDs (the ICRC in place of the
    bridge CRC), ACK and NAK as Acknowledges (PSN and MSN: what they say),
    and back to frames that decode as the originals (an Acknowledge without
    credits)."""
    from tlpoe.models.frame import FLAG_ACK_VALID, FLAG_CREDITS_VALID
    for frame, tc in frames(seed=6):
        kind = decode_frame(frame).frame_type
        roce = tp.to_rocev2(frame, CONFIG, traffic_class=tc)
        assert tp.check_icrc(roce)
        back, bth = tp.from_rocev2(roce)
        assert bth["dest_qp"] == CONFIG.dest_qp == 0x4242
        if kind in (FrameType.ACK, FrameType.NAK):
            assert bth["opcode"] == tp.RC_ACKNOWLEDGE and len(roce) == 14 + 20 + 8 + 12 + 4 + 4
            got = decode_frame(back)
            assert (got.frame_type, got.ack) == (kind, decode_frame(frame).ack)
            assert got.flags == FLAG_ACK_VALID
        else:
            assert bth["opcode"] == tp.RC_SEND_ONLY and bth["psn"] == decode_frame(frame).seq
            assert bth["ackreq"] == (kind == FrameType.DATA)
            assert back == frame
    # the NAK names the frame to resend from, apart from its ack
    nak = encode_frame([], frame_type=FrameType.NAK, seq=77, ack=70,
                       flags=FLAG_ACK_VALID | FLAG_CREDITS_VALID)
    back, bth = tp.from_rocev2(tp.to_rocev2(nak, CONFIG))
    assert (bth["psn"], decode_frame(back).seq, decode_frame(back).ack) == (77, 77, 70)


def test_from_rocev2_refuses_what_a_bridge_does_not_send():
    frame, tc = frames(seed=7, n=1)[0]
    roce = bytearray(tp.to_rocev2(frame, CONFIG))
    roce[60] ^= 1                                       # a payload byte
    with pytest.raises(tp.TransportError, match="ICRC"):
        tp.from_rocev2(bytes(roce))
    from tlpoe.models.frame import FLAG_ACK_VALID
    ack = tp.to_rocev2(encode_frame([], frame_type=FrameType.ACK, ack=5, flags=FLAG_ACK_VALID),
                       CONFIG)
    for opcode, aeth, match in ((0x0A, None, "opcode"),
                                (tp.RC_ACKNOWLEDGE, dict(syndrome=0x61, msn=5), "syndrome")):
        other = tp.rocev2_packet(ack[:12], b"", CONFIG, opcode=opcode, psn=5, aeth=aeth)
        with pytest.raises(tp.TransportError, match=match):
            tp.from_rocev2(other)
    with pytest.raises(tp.TransportError, match="UDP port"):
        tp.from_rocev2(tp.to_udp(frame, CONFIG, tc))


def test_header_bytes_of_rocev2():
    assert tp.header_bytes("rocev2") == 54


def test_tshark_reads_the_bridges_rocev2_frames_with_no_expert_item(tshark, tmp_path):
    cases = [(frame, tp.to_rocev2(frame, CONFIG, traffic_class=tc)) for frame, tc in frames(seed=8)]
    packets = dissect_expert(tshark, [roce for _, roce in cases], tmp_path)
    for (frame, _), packet in zip(cases, packets):
        layers = packet["_source"]["layers"]
        assert layers["ip"]["ip.checksum.status"] == GOOD
        opcode = int(layers["infiniband"]["infiniband.bth_tree"]["infiniband.bth.opcode"])
        kind = decode_frame(frame).frame_type
        assert opcode == (tp.RC_ACKNOWLEDGE if kind in (FrameType.ACK, FrameType.NAK)
                          else tp.RC_SEND_ONLY)
        assert not experts(packet), experts(packet)


def test_our_dissector_reads_a_udp_frame_as_the_eth_frame_it_carries(tshark, tmp_path):
    """tlpoe.lua is registered on the udp transport's port: every frame's
    tlpoe layer in a ``udp`` capture is what it shows for the ``eth`` frame
    inside (which tests/test_dissector.py holds to the models' decode); the
    port preference moves it."""
    from test_dissector import dissect, view
    cases = frames(seed=9)
    eth, udp = tmp_path / "eth.pcap", tmp_path / "udp.pcap"
    write_pcap(eth, ((1000 * i, f) for i, (f, _) in enumerate(cases)))
    write_pcap(udp, ((1000 * i, tp.to_udp(f, CONFIG, tc)) for i, (f, tc) in enumerate(cases)))
    plain, carried = dissect(tshark, eth), dissect(tshark, udp)
    assert all(layer is not None for layer in carried)
    assert [view(layer) for layer in carried] == [view(layer) for layer in plain]
    moved = dissect(tshark, udp, prefs=["tlpoe.udp_port:4000"])
    assert all(layer is None for layer in moved)


# --- ECN ---------------------------------------------------------------------------

def test_mark_ce_marks_ecn_capable_ipv4_only_and_keeps_every_check():
    frame, tc = frames(seed=10, n=1)[0]
    udp = tp.to_udp(frame, CONFIG, tc)
    marked = tp.mark_ce(udp)
    back, ip = tp.from_udp(marked, CONFIG.peer())                  # its checksum right again
    assert ip["ecn"] == tp.CE and back == frame
    roce = tp.mark_ce(tp.to_rocev2(frame, CONFIG))
    assert tp.check_icrc(roce) and tp.from_rocev2(roce)[0] == frame
    assert tp.mark_ce(marked) is None                       # CE already
    assert tp.mark_ce(tp.to_udp(frame, CONFIG, tc, ecn=tp.NOT_ECT)) is None
    assert tp.mark_ce(frame) is None                        # eth: not IPv4


def test_the_switch_marks_ce_above_its_threshold_under_incast():
    """Two senders at line rate into one output port: frames that find more
    than ``ecn_threshold_bytes`` queued leave marked CE (and only those);
    eth frames and a switch without a threshold mark nothing."""
    from tlpoe.models.ethswitch import EthernetSwitch
    eth, _ = frames(seed=11, n=1)[0]
    udp = tp.to_udp(eth, CONFIG)
    dst = eth[:6]

    def incast(threshold, data):
        sw = EthernetSwitch(3, 100, queue_bytes=64 << 10, ecn_threshold_bytes=threshold)
        sw.add_static(dst, 2)
        gap = 8 * (len(data) + 24) / 100                   # one sender's line rate
        out = [d for i in range(60) for port in (0, 1)
               for d in sw.receive(port, data, i * gap)]
        return sw, out
    sw, out = incast(4000, udp)
    marks = [tp.IPV4["ecn"].get(d.data, 14) == tp.CE for d in out]
    assert not any(marks[:4]) and all(marks[-20:]), marks
    assert sw.ports[2].ecn_marked == sum(marks) and 0 < sum(marks) < len(out)
    assert all(tp.from_udp(d.data, CONFIG.peer())[0] == eth for d in out)
    assert incast(4000, eth)[0].ports[2].ecn_marked == 0
    assert incast(None, udp)[0].ports[2].ecn_marked == 0
    with pytest.raises(ValueError, match="ecn_threshold_bytes"):
        EthernetSwitch(3, 100, queue_bytes=4096, ecn_threshold_bytes=4096)


# --- the MTU arithmetic -----------------------------------------------------------

def filling(area):
    """Memory writes (3-DW headers) whose prefixes and bytes make exactly
    ``area`` bytes (a multiple of 4, at least 20)."""
    tlps, rest = [], area
    while rest:
        payload = min(4096, rest - 16)
        if 0 < rest - 16 - payload < 20:        # leave enough for a last TLP
            payload -= 20
        tlps.append(Tlp(TlpType.MWr, address=0x1000, data=bytes(payload)).pack())
        rest -= 16 + payload
    return tlps


@pytest.mark.parametrize("transport", list(tp.Transport))
@pytest.mark.parametrize("mtu", [1500, 9000])
def test_a_frame_filled_to_the_capacity_fits_the_mtu(transport, mtu):
    """The largest TLP area each transport allows at each MTU (whole DWs):
    the frame it makes has an Ethernet payload of ``mtu`` bytes less the
    capacity's part DW (a DW more would not fit), and the overhead counted
    is the frame's length less its TLPs."""
    capacity = tp.body_capacity(mtu, transport)
    tlps = filling(capacity & ~3)
    wrap = {tp.Transport.ETH: lambda f: f, tp.Transport.UDP: lambda f: tp.to_udp(f, CONFIG),
            tp.Transport.ROCEV2: lambda f: tp.to_rocev2(f, CONFIG)}[transport]
    frame = wrap(encode_frame(tlps, mtu=mtu))
    assert len(frame) - 14 == mtu - capacity % 4
    tlp_bytes = sum(map(len, tlps))
    assert tp.frame_overhead_bytes(len(tlps), transport) == len(frame) - tlp_bytes
    assert tp.body_capacity(mtu, transport) <= tp.body_capacity(mtu)


def test_wire_efficiency_per_transport():
    from tlpoe.models.frame import wire_efficiency
    for size in (16, 140, 272, 1040):
        eth, udp, roce = (tp.wire_efficiency(size, 1500, t) for t in tp.Transport)
        assert eth == wire_efficiency(size, 1500)
        assert eth > udp > roce > 0.5 * eth
    with pytest.raises(ValueError, match="rocev2"):
        tp.wire_efficiency(4112, 1500, "rocev2")


# --- the udp transport's receiver (the RTL Deframer's order) -------------------------

def _udp_variant(change, *, fix_checksum=True):
    """A good udp DATA frame (sent by CONFIG) changed by ``change`` (on its
    bytes), the IPv4 checksum made right again unless told not to."""
    frame, tc = frames(seed=11, n=1)[0]
    udp = bytearray(tp.to_udp(frame, CONFIG))
    change(udp)
    if fix_checksum:
        udp[24:26] = tp.ipv4_checksum(udp[14:34]).to_bytes(2, "big")
    return bytes(udp)


def _set(at, value):
    return lambda b: b.__setitem__(slice(at, at + len(value)), value)


UDP_CRAFTED = {
    "shorter than 72 bytes": (_set(0, b""), lambda b: b[:71], DropReason.TRUNCATED),
    "not IPv4": (_set(12, b"\x88\xb5"), None, DropReason.ETHERTYPE),
    "IPv6 version": (_set(14, b"\x65"), None, DropReason.IP_HEADER),
    "IPv4 options": (_set(14, b"\x46"), None, DropReason.IP_HEADER),
    "a fragment": (_set(20, b"\x20\x00"), None, DropReason.IP_HEADER),
    "a fragment's offset": (_set(20, b"\x40\x08"), None, DropReason.IP_HEADER),
    "bad checksum": (_set(24, b"\x12\x34"), "raw", DropReason.IP_HEADER),
    "TCP": (_set(23, b"\x06"), None, DropReason.IP_HEADER),
    "IPv4 length past the bridge header's": (lambda b: b.__setitem__(
        slice(16, 18), (int.from_bytes(b[16:18], "big") + 4).to_bytes(2, "big")), None,
        DropReason.IP_HEADER),
    "UDP length off": (_set(38, b"\x00\x09"), None, DropReason.IP_HEADER),
    "another port": (_set(36, b"\x12\xb5"), None, DropReason.NOT_OURS),
    "to another address": (_set(30, b"\x0a\x01\x02\x04"), None, DropReason.NOT_OURS),
    "from another address": (_set(26, b"\xc0\xa8\x0a\x0c"), None, DropReason.NOT_OURS),
    "bridge version 2": (_set(42, b"\x20"), None, DropReason.VERSION),
    "a flipped TLP bit": (lambda b: b.__setitem__(80, b[80] ^ 1), None, DropReason.CRC),
    "CRC cut off": (_set(0, b""), lambda b: b[:-1], DropReason.TRUNCATED),
}


@pytest.mark.parametrize("name", UDP_CRAFTED)
def test_the_udp_receiver_drops_each_fault_for_its_reason(name):
    change, after, reason = UDP_CRAFTED[name]
    frame = _udp_variant(change, fix_checksum=after != "raw")
    if callable(after):
        frame = after(frame)
    with pytest.raises(FrameError) as e:
        tp.receive(frame, "udp", CONFIG.peer())
    assert e.value.reason == reason, e.value


def test_every_udp_reason_has_a_crafted_frame_and_a_good_frame_passes():
    assert {r for _, _, r in UDP_CRAFTED.values()} >= {
        DropReason.TRUNCATED, DropReason.ETHERTYPE, DropReason.IP_HEADER, DropReason.NOT_OURS}
    for frame, _ in frames(seed=12):
        got = tp.receive(tp.to_udp(frame, CONFIG), "udp", CONFIG.peer(), mtu=1500)
        assert got == decode_frame(frame)
    # the sender's own configuration is not the receiver's
    with pytest.raises(FrameError) as e:
        tp.receive(tp.to_udp(frame, CONFIG), "udp", CONFIG)
    assert e.value.reason == DropReason.NOT_OURS
    # a CE mark (a switch's, with the checksum updated) is received as before
    data, _ = frames(seed=12)[0]
    assert tp.receive(tp.mark_ce(tp.to_udp(data, CONFIG)), "udp", CONFIG.peer()) == \
        decode_frame(data)


def test_udp_oversize_counts_the_whole_frame_against_the_mtu():
    tlp = Tlp(TlpType.MWr, address=0, data=bytes(1000)).pack()
    frame = tp.to_udp(encode_frame([tlp]), CONFIG)            # 14 + 28 + 26 + (4 + 12 + 1000) + 4
    assert len(frame) == 1088
    assert tp.receive(frame, "udp", CONFIG.peer(), mtu=1074).tlps == [tlp]
    with pytest.raises(FrameError) as e:
        tp.receive(frame, "udp", CONFIG.peer(), mtu=1073)
    assert e.value.reason == DropReason.OVERSIZE


def test_a_data_frame_takes_its_first_tlps_dscp_and_control_frames_their_own():
    config = tp.UdpConfig(dscp=(0, 8, 10, 18, 26, 34, 46, 48), control_dscp=40)
    tlps = [Tlp(TlpType.MWr, address=0, tc=tc, data=bytes(4)).pack() for tc in (5, 2)]
    data = tp.encode(encode_frame(tlps), "udp", config)
    assert tp.IPV4.unpack(data, 14)["dscp"] == 34
    ack = tp.encode(encode_frame([], frame_type=FrameType.ACK, ack=3, flags=1), "udp", config)
    assert tp.IPV4.unpack(ack, 14)["dscp"] == 40
    assert tp.encode(encode_frame(tlps), "eth") == encode_frame(tlps)
    with pytest.raises(ValueError, match="control_dscp"):
        tp.UdpConfig(control_dscp=64)
    assert [tp.area_offset(t) for t in ("eth", "udp", "rocev2")] == [40, 68, 80]
