"""Link capture (``PCAP=1``): the runner hands each run an absolute capture
folder, and the link and loopback testbenches write every frame at each
capture point to a nanosecond pcap, as it was at that point (dropped frames
missing downstream, corrupted ones corrupted, injected ones present)."""


import pytest

from tlpoe.models.frame import decode_frame
from tlpoe.models.pcap import read_pcap
from tlpoe.rtl.bridge.bridge import Bridge
from tlpoe.tb.tops import Loopback
from tlpoe.tb.tops import Pair
from tlpoe.sim import runner
from tlpoe.sim.runner import run_cocotb, simulators
from tlpoe.tb.faults import model_verdict
from tlpoe.tb.params import PCAP_DIR_ENV

SEED = 20261125
CLOCK_NS = 10
LATENCY_NS = 1000.0


def pair():        # the configuration (and build) of tests/test_link_sim.py
    kw = dict(window=8, seq_bits=6, max_retries=6)
    return Pair(Bridge(64, **kw), Bridge(64, **kw))


def run_link(sim, name, **params):
    return run_cocotb(sim, pair, "pair", "tlpoe.tb.test_link", build_key="pair-w64-s6-win8",
                      testcase="LinkRandomTest", seed=SEED, run_name=name,
                      params={"width": 64, "seq_bits": 6, "window": 8, **params})


def with_pcap(monkeypatch, root):
    monkeypatch.setenv("PCAP", "1")
    monkeypatch.setenv("PCAP_DIR", str(root))
    monkeypatch.delenv(PCAP_DIR_ENV, raising=False)


# --- the runner's part, no simulator --------------------------------------------

def test_no_capture_folder_unless_pcap_is_set(monkeypatch):
    monkeypatch.delenv("PCAP", raising=False)
    monkeypatch.delenv(PCAP_DIR_ENV, raising=False)
    assert runner.pcap_dir("icarus", "key", "run") is None
    monkeypatch.setenv("PCAP", "0")
    assert runner.pcap_dir("icarus", "key", "run") is None


def test_capture_folder_is_absolute_and_per_run(monkeypatch, tmp_path):
    monkeypatch.delenv(PCAP_DIR_ENV, raising=False)
    monkeypatch.setenv("PCAP", "1")
    monkeypatch.delenv("PCAP_DIR", raising=False)
    assert runner.pcap_dir("icarus", "k", "r") == runner.PCAP_ROOT / "icarus" / "k" / "r"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PCAP_DIR", "caps")          # relative to where make/pytest runs
    where = runner.pcap_dir("verilator", "pair w64", "r")
    assert where.is_absolute() and where == tmp_path / "caps" / "verilator" / "pair_w64" / "r"


def test_an_exported_runner_variable_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv(PCAP_DIR_ENV, str(tmp_path))
    with pytest.raises(ValueError, match=PCAP_DIR_ENV):
        runner.pcap_dir("icarus", "k", "r")


# --- the testbenches ---------------------------------------------------------------

def _hamming(a, b):
    return sum(bin(x ^ y).count("1") for x, y in zip(a, b))


def _padded(frame):
    return frame.ljust(60, b"\0")


def check_direction(sent, delivered):
    """``delivered`` is ``sent`` in order with some frames missing and some
    corrupted by a few bits; returns (dropped, corrupted)."""
    assert sent and delivered
    for packets in (sent, delivered):
        times = [p.timestamp_ns for p in packets]
        assert times == sorted(times) and all(t % CLOCK_NS == 0 for t in times)
    for p in sent:
        decode_frame(p.data)                     # a bridge only sends well-formed frames
    corrupted = 0
    i = 0
    for d in delivered:
        while len(d.data) != len(_padded(sent[i].data)) or _hamming(d.data, _padded(sent[i].data)) > 8:
            i += 1                               # lost in the network
        assert d.timestamp_ns >= sent[i].timestamp_ns + LATENCY_NS
        corrupted += d.data != _padded(sent[i].data)
        i += 1
    return len(sent) - len(delivered), corrupted


@pytest.mark.sim
@pytest.mark.parametrize("sim", simulators())
def test_link_capture_shows_drops_and_corruption_where_they_happen(sim, monkeypatch, tmp_path):
    with_pcap(monkeypatch, tmp_path)
    results = run_link(sim, "pcap-ber-drop", count=200, bidirectional=True,
                       phy={"rate_gbps": 10, "latency_ns": LATENCY_NS, "ber": 3e-5,
                            "deliver_bad_fcs": True, "drop_rate": 0.03})
    folder = tmp_path / sim / "pair-w64-s6-win8" / "pcap-ber-drop"
    assert sorted(p.name for p in folder.iterdir()) == [
        "a_to_b.delivered.pcap", "a_to_b.sent.pcap", "b_to_a.delivered.pcap", "b_to_a.sent.pcap"]
    assert str(folder) in (results.parent / "sim.log").read_text()    # reported, absolute
    dropped = corrupted = 0
    for direction in ("a_to_b", "b_to_a"):
        d, c = check_direction(list(read_pcap(folder / f"{direction}.sent.pcap")),
                               list(read_pcap(folder / f"{direction}.delivered.pcap")))
        dropped, corrupted = dropped + d, corrupted + c
    assert dropped and corrupted


@pytest.mark.sim
@pytest.mark.parametrize("sim", simulators())
def test_loopback_capture_holds_the_injected_frames(sim, monkeypatch, tmp_path):
    with_pcap(monkeypatch, tmp_path)
    run_cocotb(sim, lambda: Loopback(64, mtu=1500), "loopback", "tlpoe.tb.test_loopback",
               build_key="loopback-w64", testcase="RandomTlpTest", seed=SEED,
               params={"width": 64, "mtu": 1500, "count": 200, "inject_every": 3},
               run_name="pcap-loopback")
    folder = tmp_path / sim / "loopback-w64" / "pcap-loopback"
    sent = list(read_pcap(folder / "sent.pcap"))
    delivered = list(read_pcap(folder / "delivered.pcap"))
    good, control, malformed = [], [], []
    for p in delivered:
        if model_verdict(p.data, 1500) is not None:
            malformed.append(p)
        elif decode_frame(p.data).frame_type:
            control.append(p)
        else:
            good.append(p)
    assert [p.data for p in good] == [p.data for p in sent]   # forwarded as sent
    assert malformed and control                  # and what was injected between them
    assert len(malformed) + len(control) == len(sent) // 3   # before every third frame


@pytest.mark.sim
def test_no_pcap_without_pcap_set(monkeypatch, tmp_path):
    monkeypatch.delenv("PCAP", raising=False)
    monkeypatch.setenv("PCAP_DIR", str(tmp_path))
    run_link(simulators()[0], "pcap-off", count=20)
    assert not list(tmp_path.rglob("*.pcap"))
