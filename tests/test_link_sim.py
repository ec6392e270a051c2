"""The reliable link (two bridges, go-back-N and selective repeat) on Icarus
and Verilator through the NIC/PHY model: loss, corruption, bursts,
wrap-around, window full, link down.

Each bridge's cycle twin (tb/bridge_twin.py) runs beside it: the model of
the whole Bridge (``BridgeModel``) compared with the RTL in every cycle,
every frame and TLP beat and every counter, so what the RTL delivers,
sends and counts is the model's. The link's functional coverage
(tb/link_coverage.py, from the counters) goes to ``coverage.yml`` in the
run directory, ``build/sim/<sim>/pair-w64-s6-win8[-sr]/runs/<scenario>/``.

The twins run in every scenario on Verilator and in those of up to about
12,000 cycles on Icarus (``twin=True``). They cost about 0.5 ms per cycle
under traffic on Verilator and 1.1 ms on Icarus (its signal reads cost
more): ``clean``, 7,700 cycles, took 4.6 s instead of 0.9 s on Verilator
and 24 s instead of 15 s on Icarus. So on Icarus the long scenarios (the
NAK timer's, 56,000 and 71,000 cycles, link down and the coverage runs)
check delivery with the scoreboards only; ``TWIN=1`` in the environment
turns the twins on there too."""

import functools
import json
import os

import pytest
import yaml

from tlpoe.rtl.bridge.bridge import Bridge
from tlpoe.tb.tops import Pair
from tlpoe.sim.runner import SimulationFailed, run_cocotb, simulators
from tlpoe.tb.link_coverage import COVER_POINT, EVENTS

MODULE = "tlpoe.tb.test_link"
SEED = 20261125
WIDTH, SEQ_BITS, WINDOW = 64, 6, 8


#: The Bridges' parameters besides width, window, seq_bits and mode: the
#: bench's twins (``twin=True``) are built from the same.
BRIDGE = {"max_retries": 6}


def pair(mode="gbn"):
    kw = dict(window=WINDOW, seq_bits=SEQ_BITS, mode=mode, **BRIDGE)
    return Pair(Bridge(WIDTH, **kw), Bridge(WIDTH, **kw))


def run(sim, name, mode="gbn", **params):
    if os.environ.get("TWIN", "0") not in ("", "0"):
        params["twin"] = True
    params.setdefault("twin", sim == "verilator")
    key = f"pair-w{WIDTH}-s{SEQ_BITS}-win{WINDOW}" + ("-sr" if mode == "sr" else "")
    return run_cocotb(sim, functools.partial(pair, mode), "pair", MODULE, build_key=key,
                      testcase="LinkRandomTest", seed=SEED, run_name=name,
                      params={"width": WIDTH, "seq_bits": SEQ_BITS, "window": WINDOW,
                              "mode": mode, "coverage_file": "coverage.yml", "bridge": BRIDGE,
                              **params})


pytestmark = [pytest.mark.sim]
SIMS = simulators()


@pytest.mark.parametrize("sim", SIMS)
def test_clean_link(sim):
    """No errors: everything delivered, no replay, ACKs coalesced, sequence
    wraps twice (700 TLPs: 600 gave 127 frames of the 128 two wraps need
    once the peer's credits were registered a cycle longer)."""
    run(sim, "clean", count=700, twin=True, min_wraps=2, expect_nonzero=["b.acks_sent"],
        expect_zero=["a.replays_nak", "a.replays_timeout", "a.frames_retransmitted",
                     "b.duplicates", "b.out_of_order", "b.naks_sent"])


@pytest.mark.parametrize("sim", SIMS)
def test_run_record(sim, tmp_path):
    """The per-run record (the unit of the BER sweep) adds up: every TLP
    sent is delivered once, intact, and the latency percentiles are ordered."""
    report = tmp_path / "record.json"
    run(sim, "record", count=200, twin=True, report=str(report),
        phy={"rate_gbps": 10, "latency_ns": 1000.0, "drop_rate": 0.02})
    record = json.loads(report.read_text())
    assert record["tlps_sent"] == record["tlps_delivered"] == 200
    assert record["lost"] == record["duplicated"] == record["corrupted"] == 0
    assert 0 < record["goodput_fraction"] <= 1
    assert 0 < record["latency_p50_cycles"] <= record["latency_p99_cycles"]
    assert record["latency_p99_ns"] == record["latency_p99_cycles"] * 10.0


@pytest.mark.parametrize("sim", SIMS)
def test_frame_drop_both_directions(sim):
    """5% of frames dropped each way (ACKs too): NAK and timeout replays,
    duplicates discarded, exactly once in order, across sequence wrap-arounds."""
    run(sim, "drop5", count=720, twin=True,
        phy={"rate_gbps": 10, "latency_ns": 1000.0, "drop_rate": 0.05},
        min_wraps=2, expect_nonzero=["a.replays_nak", "a.frames_retransmitted", "b.out_of_order",
                                      "b.naks_sent"])


@pytest.mark.parametrize("sim", SIMS)
def test_nak_timer_repeats_lost_naks(sim):
    """20% of frames dropped each way, so NAKs and the replays they ask for
    get lost, and a replay timer far longer than the NAK timer: the receiver
    sends the NAK of a gap still open again, and delivery stays exactly once
    in order."""
    run(sim, "naktimer", count=300, replay_timeout=20000,
        phy={"rate_gbps": 10, "latency_ns": 1000.0, "drop_rate": 0.2},
        expect_nonzero=["b.naks_repeated", "a.replays_nak", "b.out_of_order"])


@pytest.mark.parametrize("sim", SIMS)
def test_lost_acks_cause_duplicates_that_are_discarded(sim):
    """Most ACKs lost (80% of B->A frames dropped): A's replay timer resends
    frames B already has; B discards the duplicates (and re-acknowledges), so
    nothing is delivered twice."""
    run(sim, "dup", count=300, twin=True, phy_b_to_a={"drop_rate": 0.8}, replay_timeout=600,
        expect_nonzero=["b.duplicates", "a.replays_timeout", "a.frames_retransmitted"])


@pytest.mark.parametrize("sim", SIMS)
def test_bit_errors_reach_the_crc(sim):
    """Bit errors (BER 5e-5) on NICs that deliver frames with a bad FCS, both
    directions loaded: the end-to-end CRC drops every corrupted frame (data,
    ACK or NAK) and the link replays what was lost."""
    run(sim, "ber", count=300, twin=True, bidirectional=True,
        phy={"rate_gbps": 10, "latency_ns": 1000.0, "ber": 5e-5, "deliver_bad_fcs": True},
        expect_nonzero=["a.drops_CRC", "b.drops_CRC", "a.frames_retransmitted",
                        "b.frames_retransmitted"])


@pytest.mark.parametrize("sim", SIMS)
def test_small_window_fills(sim):
    """A long round trip and no gaps: the replay buffer fills and backpressures."""
    run(sim, "window", count=200, twin=True, valid_gap=0.0,
        phy={"rate_gbps": 10, "latency_ns": 5000.0},
        expect_nonzero=["a.window_full_cycles"])


@pytest.mark.parametrize("sim", SIMS)
def test_link_down(sim):
    """The link goes down for good: after max_retries timeouts the bridge
    declares it down (interrupt and counter) instead of sending forever."""
    run(sim, "down", count=100, drain_us=200, expect_link_down=["a"],
        phy={"rate_gbps": 10, "latency_ns": 1000.0, "down": [(5000.0, 1e12)]},
        expect_nonzero=["a.link_down_events", "a.replays_timeout"])


#: The coverage runs' seeds. One seed alone is at the mercy of the bridge's
#: cycle timing: which frames and ACKs the 10% and 30% drops hit moves with
#: it, and with them whether an already-delivered frame comes again. Seed 1
#: stopped producing a duplicate once the class queues forwarded a TLP when
#: it was all in, seed 2 once the unpacker's counts lagged and the packer
#: gained its register slice (issue 17); seeds 6, 7 and 8 each hit every
#: bin on that code. Each run must also see A declare the link down (some
#: seeds deliver everything before the network fails, and are not used).
#: The bins are judged on the union of the runs, which stop once it is whole.
COVERAGE_SEEDS = (6, 8)


@pytest.mark.parametrize("sim", SIMS)
def test_coverage_hits_every_replay_cause(sim):
    """Runs that together hit every bin of the link's cover point: 10% of
    frames dropped A->B and 30% B->A, replay and NAK timers short enough to
    fire (800 and 500 cycles), a sequence wrap-around and a full window
    before the network goes down for good at 120 us, with frames still
    unacknowledged, so that A declares the link down."""
    total = {}
    for seed in COVERAGE_SEEDS:
        results = run(sim, f"coverage-s{seed}", count=600, replay_timeout=800, nak_timeout=500,
                      drain_us=200, seed=seed,
                      phy={"rate_gbps": 10, "latency_ns": 1000.0, "drop_rate": 0.1,
                           "down": [(120000.0, 1e12)]},
                      phy_b_to_a={"drop_rate": 0.3}, expect_link_down=["a"])
        hits = yaml.safe_load((results.parent / "coverage.yml").read_text())[COVER_POINT]
        hits = hits["bins:_hits"]
        assert set(hits) == set(EVENTS)
        for event, count in hits.items():
            total[event] = total.get(event, 0) + count
        if all(total.values()):
            return
    missed = [event for event, count in total.items() if not count]
    assert not missed, f"bins not hit: {missed} (hits: {total})"


# --- selective repeat --------------------------------------------------------

NETWORK = {"rate_gbps": 10, "latency_ns": 1000.0}

#: The most SR may retransmit, as a fraction of what GBN retransmits for the
#: same seed and 5% drops both ways. Measured: 7 / 57 = 0.12. GBN resends
#: everything after the lost frame (here the window's worth in flight), SR
#: the lost frame (and a timeout's oldest frame).
SR_OVER_GBN_RETRANSMITTED = 0.3


@pytest.mark.parametrize("sim", SIMS)
def test_sr_clean_link(sim):
    """Selective repeat, no errors: nothing held, NAKed or resent; ACKs
    coalesced; the sequence wraps twice (800 TLPs: about 165 frames of the
    128 two wraps need; 600 gave 125 once the transmit path's register
    slice let the packer fill frames further)."""
    run(sim, "sr-clean", mode="sr", count=800, twin=True, min_wraps=2,
        expect_nonzero=["b.acks_sent"],
        expect_zero=["a.replays_nak", "a.replays_timeout", "a.frames_retransmitted",
                     "b.duplicates", "b.out_of_order", "b.out_of_order_buffered",
                     "b.naks_sent"])


@pytest.mark.parametrize("sim", SIMS)
def test_sr_frame_drop_resends_only_what_was_lost(sim, tmp_path):
    """5% of frames dropped each way (ACKs and NAKs too): frames after a gap
    are held and delivered in order once it fills, exactly once, across
    wrap-arounds; none is ever beyond the window (``out_of_order`` 0). For the
    same seed and network, go-back-N retransmits several times as many frames."""
    records = {}
    for mode in ("sr", "gbn"):
        report = tmp_path / f"{mode}.json"
        # the twins in SR only (GBN with 5% drops is test_frame_drop_both_directions),
        # on Verilator (and with TWIN=1): on Icarus the SR twin runs in sr-clean
        run(sim, f"drop5-{mode}-record", mode=mode, count=700,
            twin=mode == "sr" and sim == "verilator",
            phy={**NETWORK, "drop_rate": 0.05}, min_wraps=2, report=str(report),
            **({"expect_nonzero": ["a.replays_nak", "a.frames_retransmitted",
                                   "b.out_of_order_buffered", "b.naks_sent"],
                "expect_zero": ["b.out_of_order"]} if mode == "sr" else {}))
        records[mode] = json.loads(report.read_text())
    sr, gbn = (records[m]["frames_retransmitted"] for m in ("sr", "gbn"))
    assert sr <= SR_OVER_GBN_RETRANSMITTED * gbn, f"SR retransmitted {sr}, GBN {gbn}"


@pytest.mark.parametrize("sim", SIMS)
def test_sr_nak_timer_repeats_lost_naks(sim):
    """Selective repeat with 20% drops each way and a long replay timer: the
    NAK of the lowest missing number is sent again by the NAK timer."""
    run(sim, "sr-naktimer", mode="sr", count=300, replay_timeout=20000,
        phy={**NETWORK, "drop_rate": 0.2},
        expect_nonzero=["b.naks_repeated", "a.replays_nak", "b.out_of_order_buffered"])


@pytest.mark.parametrize("sim", SIMS)
def test_sr_lost_acks_cause_duplicates_that_are_discarded(sim):
    """Selective repeat, most ACKs lost: the replay timer resends the oldest
    frame, which B already has; B discards the duplicates."""
    run(sim, "sr-dup", mode="sr", count=300, twin=True, phy_b_to_a={"drop_rate": 0.8},
        replay_timeout=600,
        expect_nonzero=["b.duplicates", "a.replays_timeout", "a.frames_retransmitted"])


@pytest.mark.parametrize("sim", SIMS)
def test_sr_bit_errors_reach_the_crc(sim):
    """Selective repeat, BER 5e-5 on cut-through NICs, both directions loaded:
    every corrupted frame is dropped by the CRC, the frames after it are held,
    and what was lost is resent."""
    run(sim, "sr-ber", mode="sr", count=300, twin=True, bidirectional=True,
        phy={**NETWORK, "ber": 5e-5, "deliver_bad_fcs": True},
        expect_nonzero=["a.drops_CRC", "b.drops_CRC", "a.frames_retransmitted",
                        "b.frames_retransmitted", "a.out_of_order_buffered",
                        "b.out_of_order_buffered"])


@pytest.mark.parametrize("sim", SIMS)
def test_sr_link_down(sim):
    """Selective repeat: a link that stays down is declared down after
    max_retries timeouts."""
    run(sim, "sr-down", mode="sr", count=100, drain_us=200,
        expect_link_down=["a"],
        phy={**NETWORK, "down": [(5000.0, 1e12)]},
        expect_nonzero=["a.link_down_events", "a.replays_timeout"])


# --- the link state machine (docs/link-state.md) ----------------------------------

#: Both bridges with the link state machine: KEEPALIVEs every 5 us at the
#: bench's 100 MHz, down after 15 us of silence.
LINK_STATE = {**BRIDGE, "link_state": True, "keepalive": 500, "dead": 1500}


def pair_with(bridge, mode="gbn"):
    """Two Bridges of parameters ``bridge``, B with its own reset."""
    kw = dict(window=WINDOW, seq_bits=SEQ_BITS, mode=mode, **bridge)
    return Pair(Bridge(WIDTH, **kw), Bridge(WIDTH, **kw), peer_reset=True)


def run_with_link_state(sim, name, mode="gbn", bridge=LINK_STATE, suffix="-ls", **params):
    params.setdefault("twin", sim == "verilator")
    key = f"pair-w{WIDTH}-s{SEQ_BITS}-win{WINDOW}{suffix}" + ("-sr" if mode == "sr" else "")
    return run_cocotb(sim, functools.partial(pair_with, bridge, mode), "pair", MODULE,
                      build_key=key, testcase="LinkRandomTest", seed=SEED, run_name=name,
                      params={"width": WIDTH, "seq_bits": SEQ_BITS, "window": WINDOW,
                              "mode": mode, "bridge": bridge, **params})


#: A flap's length (us) and what it does: one shorter than the dead time
#: (15 us) leaves both ends UP (the replay timer and NAKs resend what the
#: cable lost); a longer one takes both DOWN and UP again without ``rst``.
FLAPS = {
    1: dict(expect_nonzero=["a.keepalives_sent", "b.keepalives_received"],
            expect_zero=["a.link_down_events", "b.link_down_events"]),
    100: dict(expect_nonzero=["a.link_down_events", "b.link_down_events", "a.link_up_events",
                              "b.link_up_events", "a.keepalives_sent", "b.keepalives_received",
                              "a.replays_link"]),
}


#: (simulator, mode) of the flap benches: go-back-N on both simulators,
#: selective repeat on Verilator, where the cycle twins run beside it (the
#: link state machine's part is the same in both modes; the peer reset runs
#: every pair).
FLAP_RUNS = [(sim, mode) for sim in SIMS for mode in ("gbn", "sr")
             if mode == "gbn" or sim == "verilator"]


@pytest.mark.parametrize("flap_us", sorted(FLAPS))
@pytest.mark.parametrize("sim, mode", FLAP_RUNS)
def test_a_flap_mid_traffic_is_ridden_out(sim, mode, flap_us):
    """The cable is out mid-traffic, both ways, 20 us into the run, for
    ``flap_us``. After 100 us each bridge has heard nothing for longer than
    its dead time and goes DOWN, sends only KEEPALIVEs, comes UP again when
    the cable is back and resends what was lost. Every TLP is delivered
    exactly once, in order, bit exact (the scoreboards); no peer restart is
    seen and no stored frame dropped."""
    expect = FLAPS[flap_us]
    run_with_link_state(sim, f"flap{flap_us}-{mode}", mode=mode, count=200, bidirectional=True,
                        drain_us=3000, progress_us=10,
                        phy={**NETWORK, "down": [(20_000.0, 20_000.0 + 1000.0 * flap_us)]},
                        expect_nonzero=expect["expect_nonzero"],
                        expect_zero=["a.peer_restarts", "b.peer_restarts", "a.frames_dropped",
                                     "b.frames_dropped"] + expect.get("expect_zero", []))


@pytest.mark.parametrize("mode", ["gbn", "sr"])
@pytest.mark.parametrize("sim", SIMS)
def test_a_peer_reset_mid_traffic(sim, mode):
    """B alone is reset 20 us into the run, traffic both ways. A hears a
    new incarnation: a restart. It drops the frames it stored (B forgot
    them: resending could deliver a TLP twice), both credit states start
    again, A takes B's new sequence base, and the link comes UP without
    ``rst`` on A. What B held and what A dropped is lost (counted by the
    scoreboards, to be answered by the completion tracker); every TLP taken
    in after the restart arrives; none twice, none corrupted, none in an
    illegal order."""
    run_with_link_state(sim, f"peer-reset-{mode}", mode=mode, count=200, bidirectional=True,
                        drain_us=3000, progress_us=20, peer_reset_us=20,
                        expect_nonzero=["a.peer_restarts", "a.link_up_events",
                                        "b.link_up_events", "a.link_down_events",
                                        "a.frames_dropped"],
                        expect_zero=["b.peer_restarts"])


# --- the completion tracker (docs/link-state.md) ------------------------------------

#: ... and the completion tracker: 10-bit tags; at the bench's 100 MHz a
#: tick is 10.24 us: containment after 5 ticks down (51 us), the
#: completion timeout 20 ticks (205 us).
TRACKER = {**LINK_STATE, "tracker": True, "cpl_timeout": 20, "hold_time": 5}


def run_with_tracker(sim, name, mode="gbn", **params):
    """The transactions workload both ways between two bridges with the tracker."""
    return run_with_link_state(sim, name, mode, bridge=TRACKER, suffix="-trk",
                               workload="transactions", bidirectional=True, **params)


@pytest.mark.parametrize("sim", SIMS)
def test_reads_both_ways_are_answered_by_the_peer(sim):
    """Each side reads from the other and writes to it (the transactions
    workload): every read is answered once, with the right data, by the
    peer's completer; the tracker matches every completion and answers
    none itself."""
    run_with_tracker(sim, "transactions", count=120, drain_us=3000,
                     expect_nonzero=["a.tracked", "a.matched", "b.tracked", "b.matched"],
                     expect_zero=["a.timeouts", "b.timeouts", "a.late_completions",
                                  "b.late_completions", "a.restart_completions",
                                  "b.restart_completions", "a.link_down_completions",
                                  "b.link_down_completions", "a.outstanding",
                                  "b.outstanding"])


@pytest.mark.parametrize("sim", SIMS)
def test_a_peer_reset_answers_every_read(sim):
    """B alone is reset 20 us in, reads and writes both ways: A's reads
    that B lost are answered with UR by A's tracker at the restart
    (``restart_completions``), none twice (a late completion is dropped),
    none left waiting; B's reads from before its reset are forgotten with
    it; the link comes back and traffic resumes."""
    run_with_tracker(sim, "tracker-peer-reset", count=200, drain_us=3000, peer_reset_us=20,
                     expect_nonzero=["a.peer_restarts", "a.restart_completions",
                                     "a.link_up_events", "b.matched"],
                     expect_zero=["a.timeouts", "b.timeouts", "a.link_down_completions",
                                  "a.outstanding", "b.outstanding"])


@pytest.mark.parametrize("sim", SIMS)
def test_a_cable_cut_for_good_answers_every_read(sim):
    """The cable is cut 20 us in, for good: both links go DOWN, and after
    ``hold_time`` (5 ticks, 51 us) each bridge contains: every read
    outstanding or still to send is answered with UR
    (``link_down_completions``), posted writes and completions to send are
    dropped and counted (those granted before the hold too, their credits
    refunded), the ``containment`` status is up; no read is left waiting."""
    run_with_tracker(sim, "tracker-cut", count=200, drain_us=150,
                     phy={**NETWORK, "down": [(20_000.0, 1e12)]}, expect_link_down=["a", "b"],
                     expect_nonzero=["a.link_down_completions", "b.link_down_completions",
                                     "a.containment", "b.containment", "a.posted_dropped",
                                     "b.posted_dropped", "a.np_contained", "b.np_contained"],
                     expect_zero=["a.outstanding", "b.outstanding"])


# --- the cycle twin -----------------------------------------------------------


@pytest.mark.parametrize("sim", SIMS)
def test_the_twin_catches_a_model_configured_apart_from_the_rtl(sim):
    """The twins' comparison is not vacuous: models built with 16 receive
    TLPs per class where the Bridges have 32 (so 16 header credits
    advertised, not 32) fail the run at the first credits advertised,
    naming the cycle, the field and both values."""
    with pytest.raises(SimulationFailed) as failed:
        run(sim, "twin-break", count=30, twin=True, twin_break={"queue_tlps": 16})
    log = failed.value.log.read_text()
    assert "TwinDifference: twin_a: cycle " in log
    assert "stats.credits_advertised: RTL [(32, " in log and "model [(16, " in log
