"""The ``udp`` transport on the RTL (issue 20): two Bridges built with
``transport="udp"`` across the NIC/PHY model, on Icarus and Verilator, each
with its cycle twin; bit errors and dropped frames both ways; the link
captured (``PCAP=1``) and every frame a bridge sent decoded by tshark's own
Ethernet, IPv4 and UDP dissectors with checksum validation on, and by our
dissector registered on the transport's port: no malformed frame, no bad
checksum, no expert item; scapy's IPv4 computes every header checksum
again and gets the RTL's. The
bridges' receive checks drop what the corruption breaks, by the reasons of
the transport's model (the twins hold the counts to the RTL's)."""

import json
import os
import subprocess

import pytest
from scapy.layers.inet import IP

from tlpoe.models import transport as tp
from tlpoe.models.pcap import read_pcap
from tlpoe.rtl.bridge.bridge import Bridge
from tlpoe.sim.runner import run_cocotb, simulators
from tlpoe.sim import wireshark
from tlpoe.tb.tops import Pair

from test_capture_sim import with_pcap
from test_dissector import TSHARK, require_tshark
from test_transport import GOOD, NOT_PRESENT, experts

SEED = 20261207
WIDTH, SEQ_BITS, WINDOW = 64, 6, 8
#: One build for every run here: congestion control built in (without
#: marks on the wire it never acts: the rate stays the line's).
BRIDGE = {"max_retries": 6, "transport": "udp", "ecn": True}
BUILD_KEY = f"pair-w{WIDTH}-s{SEQ_BITS}-win{WINDOW}-udp-ecn"


def pair():
    kw = dict(window=WINDOW, seq_bits=SEQ_BITS, **BRIDGE)
    return Pair(Bridge(WIDTH, **kw), Bridge(WIDTH, **kw))


def run_udp_link(sim, name, **params):
    params.setdefault("twin", True)
    return run_cocotb(sim, pair, "pair", "tlpoe.tb.test_link", build_key=BUILD_KEY,
                      testcase="LinkRandomTest", seed=SEED, run_name=name,
                      params={"width": WIDTH, "seq_bits": SEQ_BITS, "window": WINDOW,
                              "bridge": BRIDGE, **params})


#: Congestion control on the udp link: a line of 10 Gb/s under a datapath of
#: 16 Gb/s (64 bits at 250 MHz), so the sending MAC's FIFO (the bottleneck
#: queue) fills and the wire marks CE above 400 bytes; each bridge's rate
#: limiter knows the line (5 bytes a cycle) and runs DCQCN with timers of
#: microseconds (the run is a few hundred).
ECN_CFG = {"line_bytes": 5 << 8, "cnp_interval": 500, "alpha_timer": 2000,
           "increase_timer": 2000, "byte_counter": 30000, "ai_rate": 1300, "hai_rate": 6500,
           "min_rate": 1024}


def tshark_json(tshark, pcap):
    """tshark's JSON of ``pcap``: IPv4 and UDP checksums validated, our
    dissector loaded (on the udp transport's port)."""
    out = subprocess.run([tshark, "-n", "-X", f"lua_script:{wireshark.LUA_PATH}",
                          "-r", str(pcap), "-T", "json",
                          "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


pytestmark = [pytest.mark.sim]


@pytest.mark.parametrize("sim", simulators())
def test_a_udp_link_under_errors_and_its_captures_in_tshark(sim, monkeypatch, tmp_path):
    tshark = require_tshark(TSHARK, os.environ)
    with_pcap(monkeypatch, tmp_path)
    run_udp_link(sim, "udp-ber-drop", count=300, bidirectional=True,
                 phy={"rate_gbps": 10, "latency_ns": 1000.0, "ber": 2e-5,
                      "deliver_bad_fcs": True, "drop_rate": 0.02},
                 expect_nonzero=["a.replays_nak", "b.drops_CRC"])
    folder = tmp_path / sim / BUILD_KEY / "udp-ber-drop"
    ours = {"a_to_b": tp.UdpConfig(), "b_to_a": tp.UdpConfig().peer()}
    kinds = set()
    for direction, sender in ours.items():
        sent = [p.data for p in read_pcap(folder / f"{direction}.sent.pcap")]
        assert len(sent) > 20
        # every frame the bridge sent: the transport model's receiver (the
        # peer's configuration) takes it, and it is the udp form of its decode
        for frame in sent:
            got = tp.receive(frame, "udp", sender.peer())
            kinds.add(got.frame_type)
            assert tp.pad_to_minimum(tp.to_udp(got.encode(), sender)) == frame
            ip = IP(frame[14:])                 # scapy computes the checksum again
            written = ip.chksum
            del ip.chksum
            assert IP(bytes(ip)).chksum == written
        packets = tshark_json(tshark, folder / f"{direction}.sent.pcap")
        assert len(packets) == len(sent)
        for i, packet in enumerate(packets):
            layers = packet["_source"]["layers"]
            assert layers["ip"]["ip.checksum.status"] == GOOD, (direction, i, layers["ip"])
            assert layers["udp"]["udp.checksum_tree"]["udp.checksum.status"] == NOT_PRESENT
            assert int(layers["udp"]["udp.dstport"]) == tp.UDP_PORT
            assert "tlpoe" in layers, (direction, i)
            assert not experts(packet), (direction, i, experts(packet))
        # what arrived decodes too (a corrupted header now and then shows
        # a bad checksum: the bridge dropped that frame as IP_HEADER)
        delivered = tshark_json(tshark, folder / f"{direction}.delivered.pcap")
        statuses = [p["_source"]["layers"].get("ip", {}).get("ip.checksum.status")
                    for p in delivered]
        assert statuses.count(GOOD) >= len(statuses) - 5, statuses
    assert {0, 1} <= {int(k) for k in kinds}            # DATA and ACK frames both ways


@pytest.mark.parametrize("sim", simulators())
def test_ecn_marks_are_echoed_and_the_sender_slows(sim, tmp_path):
    """Two udp Bridges with ``ecn`` and their twins (every cycle), the wire
    marking CE at its bottleneck queue: the receiver counts the marks and
    echoes them, the sender's rate limiter cuts its rate and holds DATA
    frames back, and every TLP still arrives once, in order."""
    report = tmp_path / "ecn.json"
    # (the twins on Verilator: on Icarus they would take most of the run's
    # time, and the RTL they check is the same Verilog)
    twin = sim == "verilator"
    run_udp_link(sim, "udp-ecn", count=250 if twin else 100, twin=twin, bidirectional=True,
                 workload="mwr", cfg=ECN_CFG,
                 tlp_payload=256, ecn_threshold_bytes=400, clock_ns=4.0,
                 phy={"rate_gbps": 10, "latency_ns": 1000.0}, report=str(report),
                 expect_nonzero=["b.ce_frames", "b.cnps_sent", "a.cnps_received",
                                 "a.throttled_cycles", "a.ce_frames", "b.cnps_received"])
    ecn = json.loads(report.read_text())["ecn"]
    # every echo the receiver sent was a CNP the sender took (no frame lost)
    assert ecn["a"]["cnps_received"] == ecn["b"]["cnps_sent"], ecn
    assert ecn["b"]["ce_frames"] == ecn["ce_marked"]["ab"], ecn
