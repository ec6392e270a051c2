"""The Ethernet switch model (tlpoe.models.ethswitch): learning, queues, latency, PFC.

Expected times are worked out by hand from the wire accounting in the
module docstring: a frame of n bytes is padded to 60 and carries FCS 4;
reception (first preamble bit to last FCS bit) is 8 + max(n, 60) + 4 byte
times; the egress holds the line for max(n, 60) + 4 + 8 + 12 byte times.
A byte time is 0.8 ns at 10 Gb/s, 0.32 ns at 25, 0.08 ns at 100.
"""

import heapq

import numpy as np
import pytest

from tlpoe.models.ethswitch import (
    MAC_CONTROL_ETHERTYPE, PAUSE_DST_MAC, EthernetSwitch, Fate, SwitchPath, cross_traffic,
    parse_pfc, pause_quantum_ns, pfc_frame,
)
from tlpoe.models.phy import Phy

A, B, C = (bytes.fromhex(f"0200000000{x:02x}") for x in (0x0A, 0x0B, 0x0C))
BCAST = b"\xff" * 6


def frame(dst, src, n=1514, fill=0):
    """An n-byte Ethernet frame (as handed to the MAC) from src to dst."""
    return dst + src + b"\x88\xb5" + bytes([fill]) * (n - 14)


def by_port(deliveries):
    return {d.out_port: d for d in deliveries if d.fate is not Fate.PAUSE}


# --- learning and flooding ------------------------------------------------------

def test_unknown_destination_is_flooded_then_learned_addresses_are_forwarded():
    sw = EthernetSwitch(4, latency_ns=0)
    out = by_port(sw.receive(0, frame(B, A), 0.0))                # B unknown
    assert sorted(out) == [1, 2, 3] and all(d.fate is Fate.FLOODED for d in out.values())
    out = by_port(sw.receive(2, frame(A, B), 1000.0))             # A learned on port 0
    assert list(out) == [0] and out[0].fate is Fate.FORWARDED
    out = by_port(sw.receive(0, frame(B, A), 2000.0))             # B learned on port 2
    assert list(out) == [2] and out[2].fate is Fate.FORWARDED
    c = sw.counters
    assert (c.learned, c.flooded, c.forwarded, c.moved) == (2, 1, 2, 0)


def test_broadcast_is_flooded_even_when_learned_and_never_learned_as_a_source():
    sw = EthernetSwitch(3, latency_ns=0)
    sw.add_static(BCAST, 1)
    assert sorted(by_port(sw.receive(0, frame(BCAST, A), 0.0))) == [1, 2]
    assert sw.receive(1, frame(C, BCAST), 0.0)                    # group source: not learned
    assert sw.lookup(BCAST, 0.0) == 1                             # the static entry stands


def test_frame_to_a_station_on_its_own_port_is_filtered():
    sw = EthernetSwitch(3, latency_ns=0)
    sw.receive(1, frame(C, A), 0.0)
    sw.receive(1, frame(C, B), 1000.0)                            # A and B both on port 1
    (d,) = sw.receive(1, frame(A, B), 2000.0)
    assert d.fate is Fate.FILTERED and d.lost and sw.counters.filtered == 1


def test_a_station_that_moves_is_followed():
    sw = EthernetSwitch(3, latency_ns=0)
    sw.receive(0, frame(C, A), 0.0)
    sw.receive(1, frame(C, A), 1000.0)
    assert sw.lookup(A, 1000.0) == 1 and sw.counters.moved == 1


def test_entries_age_out_after_ageing_ns_and_the_destination_is_flooded_again():
    sw = EthernetSwitch(3, latency_ns=0, ageing_ns=1000.0)
    sw.receive(0, frame(C, A), 0.0)                               # A seen at 0 on port 0
    assert list(by_port(sw.receive(1, frame(A, B), 999.0))) == [0]
    out = by_port(sw.receive(1, frame(A, B), 1500.0))             # 1500 - 0 >= 1000: aged
    assert sorted(out) == [0, 2] and sw.counters.aged == 1


def test_mac_control_frames_are_consumed_not_forwarded():
    sw = EthernetSwitch(3, latency_ns=0)
    assert sw.receive(0, pfc_frame(A, 100), 0.0) == []
    assert sw.ports[0].mac_control_rx == 1 and sw.counters.flooded == 0


# --- FIFO order ------------------------------------------------------------------

def test_each_output_queue_sends_in_arrival_order_back_to_back_at_most():
    sw = EthernetSwitch(4, [100, 25, 100, 10], latency_ns=200.0, queue_bytes=10**7)
    sw.add_static(A, 0)
    rng = np.random.default_rng(1)
    events = []                  # (t, port, n): each sender back to back
    for port, rate in ((1, 25), (2, 100), (3, 10)):
        t = float(rng.uniform(0, 50))
        for n in rng.integers(14, 1515, 60):
            events.append((t, port, int(n)))
            t += (max(n, 60) + 24) * 8 / rate
    out = []
    for t, port, n in sorted(events):
        (d,) = sw.receive(port, frame(A, bytes([2, 0, 0, 0, 1, port]), n), t)
        out.append((d, n))
    assert all(d.fate is Fate.FORWARDED for d, _ in out)
    for (d0, n0), (d1, _) in zip(out, out[1:]):
        assert d1.start_ns >= d0.start_ns + (max(n0, 60) + 24) * 8 / 100 - 1e-9
    assert all(d.start_ns >= d.ready_ns for d, _ in out)


# --- latency ---------------------------------------------------------------------

@pytest.mark.parametrize("rate_in, rate_out, n, arrival", [
    # reception (8 + 1518) * 0.08 = 122.08, + 500, + line 1538 * 0.08 = 123.04, + link 200
    (100, 100, 1514, 122.08 + 500 + 123.04 + 200),
    # a minimum frame at 10G: reception 72 * 0.8 = 57.6, line 84 * 0.8 = 67.2
    (10, 10, 60, 57.6 + 500 + 67.2 + 200),
    # 42 bytes is padded to 60: the same as a minimum frame
    (10, 10, 42, 57.6 + 500 + 67.2 + 200),
    # 25G in (1526 * 0.32 = 488.32), 100G out
    (25, 100, 1514, 488.32 + 500 + 123.04 + 200),
])
def test_store_and_forward_latency(rate_in, rate_out, n, arrival):
    sw = EthernetSwitch(2, [rate_in, rate_out], latency_ns=500.0, link_latency_ns=200.0)
    (d,) = sw.receive(0, frame(B, A, n), 1000.0)
    assert not d.cut_through
    assert d.start_ns == pytest.approx(1000.0 + arrival - 200 - (max(n, 60) + 24) * 8 / rate_out)
    assert d.arrival_ns == pytest.approx(1000.0 + arrival)


@pytest.mark.parametrize("rate_in, rate_out, start, line, cut", [
    # the first 64 bytes after 8 of preamble: 72 * 0.08 = 5.76, + 500
    (100, 100, 5.76 + 500, 123.04, True),
    # fast to slow: still cut-through; the 10G line is 1538 * 0.8 = 1230.4
    (100, 10, 5.76 + 500, 1230.4, True),
    # slow to fast would underrun: store-and-forward, 1526 * 0.8 = 1220.8
    (10, 100, 1220.8 + 500, 123.04, False),
    (25, 25, 72 * 0.32 + 500, 1538 * 0.32, True),
])
def test_cut_through_latency(rate_in, rate_out, start, line, cut):
    sw = EthernetSwitch(2, [rate_in, rate_out], mode="cut-through", latency_ns=500.0)
    (d,) = sw.receive(0, frame(B, A, 1514), 0.0)
    assert d.cut_through is cut
    assert d.start_ns == pytest.approx(start)
    assert d.arrival_ns == pytest.approx(start + line)


def test_cut_through_falls_back_to_store_and_forward_when_the_egress_is_busy():
    sw = EthernetSwitch(3, mode="cut-through", latency_ns=500.0)
    sw.add_static(C, 2)
    (first,) = sw.receive(0, frame(C, A), 0.0)     # cut through: 505.76 .. 628.8
    (second,) = sw.receive(1, frame(C, B), 10.0)   # header in at 515.76: line busy
    assert first.cut_through and not second.cut_through
    assert second.start_ns == pytest.approx(10 + 122.08 + 500)           # 632.08 > 628.8
    assert sw.ports[2].cut_through == 1


def test_a_minimum_frame_gains_nothing_from_cut_through():
    # 60 + 4 = 64 bytes: the whole frame is the cut-through header
    ct = EthernetSwitch(2, mode="cut-through", latency_ns=0).receive(0, frame(B, A, 60), 0.0)
    sf = EthernetSwitch(2, latency_ns=0).receive(0, frame(B, A, 60), 0.0)
    assert ct[0].start_ns == pytest.approx(sf[0].start_ns) == pytest.approx(72 * 0.08)


# --- tail drop -------------------------------------------------------------------

def test_incast_tail_drop_matches_a_hand_count():
    """Ports 1, 2, 3 each send ROUNDS full frames back to back at 100G, all
    starting at 0, to port 0 at 100G; the queue holds 8 frames (1518 each).

    T = 123.04 ns is one frame on the line. In round k (t = kT) the three
    frames arrive in port order. The first departure starts at 122.08 (store
    and forward, no latency) and the line stays busy, so frame j frees the
    queue at 122.08 + (j + 1) T: by round k >= 1, k - 1 frames have left.
    Occupancy after the arrivals of rounds 0, 1, 2: 3, 6, 8 (5 + 3 fit
    exactly); from round 3 on, one frame leaves per round, one of three
    arrivals fits (port 1's, the first) and two are dropped. Admitted
    after the last round: 8 in the queue + ROUNDS - 2 gone.
    """
    rounds, size, t_frame = 20, 1518, 1538 * 0.08
    sw = EthernetSwitch(4, queue_bytes=8 * size + size - 1, latency_ns=0)
    sw.add_static(A, 0)
    out = []
    for k in range(rounds):
        for port in (1, 2, 3):
            out += sw.receive(port, frame(A, bytes([2, 0, 0, 0, 0, port])), k * t_frame)
    admitted = 8 + rounds - 2
    dropped = 3 * rounds - admitted                               # 34
    assert sum(d.fate is Fate.DROPPED for d in out) == dropped
    assert sum(d.fate is Fate.FORWARDED for d in out) == admitted
    per_sender = {p: sum(d.fate is Fate.DROPPED and d.in_port == p for d in out) for p in (1, 2, 3)}
    assert per_sender == {1: 0, 2: rounds - 3, 3: rounds - 3}
    c = sw.ports[0]
    assert (c.drop_frames, c.drop_bytes) == (dropped, dropped * size)
    assert (c.tx_frames, c.tx_bytes) == (admitted, admitted * size)
    assert c.max_occupancy_bytes == 8 * size
    assert sw.counters.dropped == dropped
    sent = [d for d in out if d.fate is Fate.FORWARDED]
    assert sent[-1].start_ns == pytest.approx(122.08 + (admitted - 1) * t_frame)


def test_a_frame_that_exactly_fits_is_kept():
    sw = EthernetSwitch(3, queue_bytes=2 * 1518, latency_ns=0)
    sw.add_static(A, 0)
    fates = [d.fate for p in (1, 2) for d in sw.receive(p, frame(A, B), 0.0)]
    fates += [d.fate for d in sw.receive(1, frame(A, C), 1538 * 0.08)]  # none left yet
    assert fates == [Fate.FORWARDED, Fate.FORWARDED, Fate.DROPPED]


# --- PFC -------------------------------------------------------------------------

def run_senders(sw, ports, frames_each, *, respect_pause=True, n=1514):
    """Each sender in ``ports`` sends ``frames_each`` frames to A (port 0)
    back to back from t = 0, holding while the switch pauses it."""
    heap = [(0.0, p, 0) for p in ports]
    out = []
    while heap:
        t, port, k = heapq.heappop(heap)
        if respect_pause and sw.paused(port, t):
            heapq.heappush(heap, (sw.pause_until(port, t), port, k))
            continue
        out += sw.receive(port, frame(A, bytes([2, 0, 0, 0, 0, port]), n, fill=k % 256), t)
        if k + 1 < frames_each:
            heapq.heappush(heap, (t + (n + 24) * 8 / sw.rates[port], port, k + 1))
    return out + sw.finish()


# In the 500 ns a pause takes to act, a 100G sender starts at most
# floor(500 / 123.04) + 1 = 5 frames; three senders 15. The queue holds
# xoff, the frame that crossed it and those 15.
PFC = dict(pfc=True, xoff_bytes=12_000, xon_bytes=9_000, pfc_delay_ns=500.0, latency_ns=0)
HEADROOM = 12_000 + 1518 + 15 * 1518


def test_pfc_pauses_the_senders_and_no_frame_is_dropped():
    sw = EthernetSwitch(4, queue_bytes=HEADROOM, **PFC)
    sw.add_static(A, 0)
    out = run_senders(sw, (1, 2, 3), 200)
    sent = [d for d in out if d.fate is Fate.FORWARDED]
    assert len(sent) == 600 and not any(d.fate is Fate.DROPPED for d in out)
    assert all(sw.ports[p].pauses > 0 and sw.ports[p].rx_while_paused == 0 for p in (1, 2, 3))
    assert 12_000 < sw.ports[0].max_occupancy_bytes <= HEADROOM
    for p in (1, 2, 3):                                           # each sender's frames in order
        fills = [d.data[14] for d in sent if d.in_port == p]
        assert fills == [k % 256 for k in range(200)]


def test_without_pfc_the_same_incast_drops():
    params = {**PFC, "pfc": False}
    sw = EthernetSwitch(4, queue_bytes=HEADROOM, **params)
    sw.add_static(A, 0)
    out = run_senders(sw, (1, 2, 3), 200)
    assert sum(d.fate is Fate.DROPPED for d in out) > 100
    assert all(sw.ports[p].pauses == 0 for p in (1, 2, 3))


def test_pause_lasts_until_the_queue_drains_to_xon_and_real_pfc_frames_are_sent():
    """Ports 1 and 2 each send one full frame at 0 to port 0. The second
    takes the queue to 3036 > xoff 3000: both are paused at 0. Frame 1 leaves
    122.08 .. 245.12 (the line free after its IFG), then 1518 <= xon: the
    pause ends at 245.12. With pause_quanta 20 (20 * 5.12 = 102.4 ns) the
    pause is refreshed every 51.2 ns: at 51.2, 102.4, 153.6, 204.8."""
    sw = EthernetSwitch(3, pfc=True, xoff_bytes=3000, xon_bytes=1518, latency_ns=0,
                        pause_frames=True, pause_quanta=20, pfc_priority=3)
    sw.add_static(A, 0)
    xoff = [d for d in sw.receive(1, frame(A, B), 0.0) + sw.receive(2, frame(A, C), 0.0)
            if d.fate is Fate.PAUSE]
    assert sorted(d.out_port for d in xoff) == [1, 2]
    assert sw.paused(1, 245.0) and not sw.paused(1, 245.12)
    assert sw.pause_until(2, 100.0) == pytest.approx(245.12)
    later = sw.finish()
    for port in (1, 2):
        mine = [d for d in xoff + later if d.out_port == port]
        assert [d.t_ns for d in mine] == pytest.approx([0, 51.2, 102.4, 153.6, 204.8, 245.12])
        fields = [parse_pfc(d.data) for d in mine]
        assert [f["quanta3"] for f in fields] == [20] * 5 + [0]
        f = fields[0]
        assert len(mine[0].data) == 60 and mine[0].data[:6] == PAUSE_DST_MAC
        assert (f["ethertype"], f["opcode"], f["class_enable"]) == (MAC_CONTROL_ETHERTYPE, 0x0101, 8)
        assert f["src_mac"] == int.from_bytes(sw.port_mac(port), "big")
        assert sw.ports[port].pause_frames_sent == 6 and sw.ports[port].pauses == 1
    assert pause_quantum_ns(100) == pytest.approx(5.12) and pause_quantum_ns(10) == pytest.approx(51.2)


def test_a_sender_that_ignores_pause_is_counted_and_extends_the_pause():
    sw = EthernetSwitch(3, pfc=True, xoff_bytes=3000, xon_bytes=1518, latency_ns=0)
    sw.add_static(A, 0)
    sw.receive(1, frame(A, B), 0.0)
    sw.receive(2, frame(A, C), 0.0)
    sw.receive(1, frame(A, B), 123.04)      # paused until 245.12, sends anyway
    assert sw.ports[1].rx_while_paused == 1
    # three frames queued; 1518 left once the second is gone: 245.12 + 123.04
    assert sw.pause_until(1, 200.0) == pytest.approx(245.12 + 123.04)


# --- parameters ------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, name", [
    (dict(n_ports=1), "n_ports"),
    (dict(rate_gbps=40), "rate_gbps"),
    (dict(rate_gbps=[100, 25]), "rate_gbps"),
    (dict(queue_bytes=1000), "queue_bytes"),
    (dict(mode="wormhole"), "mode"),
    (dict(latency_ns=-1), "latency_ns"),
    (dict(cut_through_bytes=10), "cut_through_bytes"),
    (dict(link_latency_ns=-5), "link_latency_ns"),
    (dict(ageing_ns=0), "ageing_ns"),
    (dict(pfc=True, xoff_bytes=None, xon_bytes=100), "xoff_bytes"),
    (dict(pfc=True, xoff_bytes=10**9, xon_bytes=100), "xoff_bytes"),
    (dict(pfc=True, xoff_bytes=5000, xon_bytes=5000), "xon_bytes"),
    (dict(pfc_delay_ns=-1), "pfc_delay_ns"),
    (dict(pause_quanta=0), "pause_quanta"),
    (dict(pfc_priority=8), "pfc_priority"),
    (dict(mac=1 << 48), "mac"),
])
def test_bad_parameters_raise_value_error_naming_them(kwargs, name):
    kwargs = {"n_ports": 3, **kwargs}
    with pytest.raises(ValueError, match=name):
        EthernetSwitch(**kwargs)


def test_bad_calls_raise_value_error():
    sw = EthernetSwitch(3)
    with pytest.raises(ValueError, match="in_port"):
        sw.receive(3, frame(B, A), 0.0)
    sw.receive(0, frame(B, A), 100.0)
    with pytest.raises(ValueError, match="time order"):
        sw.receive(1, frame(B, A), 50.0)
    with pytest.raises(ValueError, match="overlaps"):      # port 0 is busy until 223.04
        sw.receive(0, frame(B, A), 200.0)
    with pytest.raises(ValueError, match="Ethernet header"):
        sw.receive(1, b"\0" * 13, 300.0)
    with pytest.raises(ValueError, match="egress"):
        SwitchPath(sw, 0, 1, egress=Phy(rate_gbps=10))


# --- the channel adapter ---------------------------------------------------------

def test_a_path_adds_ingress_switch_and_egress_times():
    sw = EthernetSwitch(3, latency_ns=400.0)
    path = SwitchPath(sw, 0, 2, ingress=Phy(latency_ns=30.0), egress=Phy(latency_ns=50.0))
    d = path.transmit(frame(B, A), 1000.0)
    # out at 1000, at the switch 1030, received 122.08 later, + 400, line 123.04, + 50
    assert d.fate == "delivered" and d.start_ns == 1000.0
    assert d.arrival_ns == pytest.approx(1030 + 122.08 + 400 + 123.04 + 50)
    assert d.data == frame(B, A)


@pytest.mark.parametrize("deliver_bad_fcs", [True, False])
def test_bit_errors_through_a_path_are_exactly_the_phys(deliver_bad_fcs):
    """The same Phys, seeds and calls outside the switch give the same
    fates and bytes: the switch hands each frame on unchanged, at the time
    worked out by hand (frames 10 us apart never queue)."""
    phy = dict(rate_gbps=25, ber=1e-4, deliver_bad_fcs=deliver_bad_fcs)
    sw = EthernetSwitch(4, 25, latency_ns=400.0)
    sw.add_static(B, 3)
    path = SwitchPath(sw, 1, 3, ingress=Phy(**phy, latency_ns=30.0, seed=8),
                      egress=Phy(**phy, latency_ns=50.0, seed=7))
    ref_in, ref_out = Phy(**phy, latency_ns=30.0, seed=8), Phy(**phy, latency_ns=50.0, seed=7)
    rng = np.random.default_rng(3)
    fates = set()
    for i in range(300):
        f = frame(B, A, 1514)[:14] + rng.bytes(1500)
        t = i * 10_000.0
        got = path.transmit(f, t)
        first = ref_in.transmit(f, t)
        if first.frame is None:
            assert got.fate == first.fate.value and got.data is None
            fates.add(got.fate)
            continue
        # at the switch t + 30; received 1526 * 0.32 = 488.32 later; + 400
        second = ref_out.transmit(first.frame, t + 30 + 488.32 + 400)
        assert got.data == second.frame
        assert got.fate == ("corrupted" if "corrupted" in (first.fate.value, second.fate.value)
                            else second.fate.value)
        if got.data is not None:
            assert got.arrival_ns == pytest.approx(t + 30 + 488.32 + 400 + 1538 * 0.32 + 50)
        fates.add(got.fate)
    assert {"delivered", "corrupted" if deliver_bad_fcs else "fcs_drop"} <= fates


# --- cross traffic ---------------------------------------------------------------

def test_cross_traffic_is_a_pure_function_of_its_parameters_at_its_load():
    kw = dict(rate_gbps=100, dst_mac=B, src_mac=C, load=0.5, stop_ns=1e6, burst_frames=4)
    one, two = cross_traffic(2, **kw, seed=5), cross_traffic(2, **kw, seed=5)
    assert one == two and one != cross_traffic(2, **kw, seed=6)
    times = [t for t, _, _ in one]
    assert times == sorted(times) and times[-1] < 1e6
    # 1538 * 0.08 ns per frame; about 1e6 * 0.5 / 123.04 = 4064 frames
    busy = len(one) * 123.04 / 1e6
    assert busy == pytest.approx(0.5, rel=0.06)
    assert all(f[:12] == B + C and len(f) == 1514 for _, _, f in one)


def test_cross_traffic_congests_a_path_drops_without_pfc_and_pfc_holds_it():
    cross = cross_traffic(2, rate_gbps=100, dst_mac=B, src_mac=C, load=1.0, stop_ns=200_000)
    results = {}
    for pfc in (False, True):
        sw = EthernetSwitch(3, latency_ns=0, queue_bytes=40_000, pfc=pfc, xoff_bytes=20_000,
                            xon_bytes=10_000, pfc_delay_ns=300.0)
        sw.add_static(B, 0)
        path = SwitchPath(sw, 1, 0, cross=cross)
        out = [path.transmit(frame(B, A, fill=i % 256), 0.0) for i in range(1000)]
        results[pfc] = (out, sw, path)
    out, sw, _ = results[False]
    assert sum(d.fate == "switch_drop" for d in out) > 100 and sw.ports[0].drop_frames > 200
    out, sw, path = results[True]
    assert all(d.fate == "delivered" for d in out) and sw.ports[0].drop_frames == 0
    assert sw.ports[1].pauses > 0 and sw.ports[2].pauses > 0
    assert [d.data[14] for d in out] == [i % 256 for i in range(1000)]
    path.finish()
    assert sum(d.fate is Fate.FORWARDED for d in path.cross_deliveries) == len(cross)
