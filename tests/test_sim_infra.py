"""The simulation infrastructure itself: stream beat helpers, the scoreboard's
diff, and a FIFO testbench run through sim/runner.py on every simulator, both
passing and failing when the DUT corrupts one bit."""

import pytest

from tlpoe.sim.runner import SimulationFailed, run_cocotb, simulators
from tlpoe.tb.bfm import (Beat, StreamLayout, StreamProtocolError, beats_to_bytes,
                          frame_to_beats, tlp_to_beats, to_beats)
from tlpoe.tb.params import PARAMS_ENV, tb_params
from tlpoe.tb.scoreboard import hex_diff
from tlpoe.tb.stream_fifo import StreamFifo

FIFO_MODULE = "tlpoe.tb.test_stream_fifo"
SEED = 1234


# --- beats <-> bytes, no simulator --------------------------------------------------

@pytest.mark.parametrize("width", [64, 128, 256, 512])
def test_tlp_beats_round_trip(width):
    layout = StreamLayout.tlp(width)
    for n_dw in range(1, 3 * width // 32 + 2):
        payload = bytes((7 * i + n_dw) & 0xFF for i in range(4 * n_dw))
        beats = tlp_to_beats(payload, width)
        assert [b.last for b in beats] == [0] * (len(beats) - 1) + [1]
        assert all(b.keep == layout.full_keep for b in beats[:-1])
        assert beats_to_bytes(beats, layout) == payload
        assert beats_to_bytes([layout.pack(b) for b in beats], layout) == payload


@pytest.mark.parametrize("width", [64, 512])
def test_frame_beats_use_byte_keep(width):
    layout = StreamLayout.frame(width)
    payload = bytes(range(width // 8 + 3))
    beats = frame_to_beats(payload, width)
    assert beats[-1].keep == 0b111
    assert beats_to_bytes(beats, layout) == payload


def test_byte_zero_is_lane_zero():
    beats = tlp_to_beats(bytes([0x11, 0x22, 0x33, 0x44]), 64)
    assert beats == [Beat(0x44332211, 0b01, 1)]


def test_payload_packs_data_then_keep_then_last():
    layout = StreamLayout.tlp(64)
    assert layout.width == 67
    packed = layout.pack(Beat(0xAB, 0b10, 1))
    assert packed == 0xAB | 0b10 << 64 | 1 << 66
    assert layout.unpack(packed) == Beat(0xAB, 0b10, 1)


def test_tlp_must_be_whole_dws():
    with pytest.raises(ValueError, match="4-byte"):
        to_beats(b"\x00" * 6, StreamLayout.tlp(64))


@pytest.mark.parametrize("beats, message", [
    ([Beat(0, 0b10, 1)], "not contiguous"),
    ([Beat(0, 0b00, 1)], "not contiguous"),
    ([Beat(0, 0b01, 0), Beat(0, 0b11, 1)], "partial .* but not last"),
    ([Beat(0, 0b11, 0)], "last=0 on beat 0 of 1"),
    ([Beat(0, 0b11, 1), Beat(0, 0b11, 1)], "last=1 on beat 0 of 2"),
])
def test_keep_and_last_violations_are_errors(beats, message):
    with pytest.raises(StreamProtocolError, match=message):
        beats_to_bytes(beats, StreamLayout.tlp(64))


def test_hex_diff_points_at_first_difference():
    diff = hex_diff(bytes(range(40)), bytes(range(20)) + b"\xff" + bytes(range(21, 40)))
    assert "first difference at byte 20" in diff
    assert "ff" in diff
    assert hex_diff(b"ab", b"ab") is None
    assert "expected 3 bytes, got 2" in hex_diff(b"abc", b"ab")


def test_tb_params_override_defaults_and_reject_unknown(monkeypatch):
    monkeypatch.setenv(PARAMS_ENV, '{"count": 7}')
    assert tb_params(count=300, width=64) == {"count": 7, "width": 64}
    monkeypatch.setenv(PARAMS_ENV, '{"cuont": 7}')
    with pytest.raises(ValueError, match="cuont"):
        tb_params(count=300)


def test_simulators_come_from_tlpoe_sims(monkeypatch):
    monkeypatch.setenv("TLPOE_SIMS", "verilator")
    assert simulators() == ["verilator"]
    monkeypatch.setenv("TLPOE_SIMS", "modelsim")
    with pytest.raises(ValueError, match="modelsim"):
        simulators()


# --- the FIFO testbench on each simulator ------------------------------------------

@pytest.mark.sim
@pytest.mark.parametrize("sim", simulators())
def test_stream_fifo_testbench_passes(sim):
    run_cocotb(sim, lambda: StreamFifo(64), "stream_fifo", FIFO_MODULE,
               build_key="stream_fifo-w64", seed=SEED)


@pytest.mark.sim
@pytest.mark.parametrize("sim", simulators())
def test_scoreboard_fails_on_one_flipped_bit(sim):
    with pytest.raises(SimulationFailed) as failure:
        run_cocotb(sim, lambda: StreamFifo(64, corrupt_beat=100), "stream_fifo",
                   FIFO_MODULE, build_key="stream_fifo-w64-corrupt100",
                   testcase="StreamFifoRandomTest", seed=SEED)
    assert failure.value.failed == ["StreamFifoRandomTest"]
    log = failure.value.log.read_text()
    assert "1 of 300 compared items mismatched" in log
    assert "first difference at byte" in log


@pytest.mark.sim
@pytest.mark.parametrize("sim", simulators())
def test_runner_fails_when_no_test_ran(sim):
    with pytest.raises(SimulationFailed, match="no test ran"):
        run_cocotb(sim, lambda: StreamFifo(64), "stream_fifo", FIFO_MODULE,
                   build_key="stream_fifo-w64", testcase="NoSuchTest")
