"""cocotb tests of the hostile-input bench (tb/fuzz.py): the Decapsulator
alone, fed seeded good and hostile frames back to back; a Bridge whose link
peer is the bench (tb/fuzz_bridge.py); and issue 16's two reproductions at
the Bridge. The pytest entry
points are tests/test_fuzz_sim.py (short form) and ``make fuzz`` (sim/fuzz.py).
"""

import json
import random
from pathlib import Path

import cocotb

from tlpoe.models import wire
from tlpoe.models.frame import (
    DEFAULT_DST_MAC, DEFAULT_SRC_MAC, FLAG_ACK_VALID, DropReason, decode_frame, encode_frame,
    pad_to_minimum,
)
from tlpoe.models.tlp import Tlp
from tlpoe.rtl.framing.deframer import frame_words
from tlpoe.tb.bfm import StreamDriver, StreamLayout, StreamMonitor, reset, start_clock, wait_cycles
from tlpoe.tb.fuzz import FATE_COUNTERS, FrameJudge, FuzzFailure, ReceivePort, predict_frame
from tlpoe.tb.fuzz_bridge import BridgeFuzz
from tlpoe.tb.hostile import good_frame, hostile_frame
from tlpoe.tb.link_env import configure_bridge
from tlpoe.tb.params import tb_params

P = tb_params(width=64, mtu=1500, seed=1, count=1000, good_share=0.35, report="", mode="gbn",
              window=16, seq_bits=12, replay_timeout=3000, nak_timeout=800, flush_timeout=64,
              ack_delay=256, credit_delay=256, credit_refresh=3000, tlps=300,
              lie_share=0.4, loss=0.03, mac_hold=64, burst_hold=1500, credits=1, drain_cycles=30_000)
CLOCK_NS = 4


def frame_stream(seed, count, mtu, good_share):
    """``count`` hostile frames with good ones mixed in (``good_share`` of
    all), as (kind, bytes); a pure function of its arguments."""
    rng = random.Random(f"fuzz:{seed}")
    hostile = 0
    while hostile < count:
        good = good_frame(rng, mtu=mtu, seq=rng.randrange(1 << 32))
        if rng.random() < good_share:
            yield "good", good
        else:
            frame = hostile_frame(rng, good, mtu=mtu)
            hostile += 1
            yield frame.kind, frame.data


def stall_bound(width, mtu, *, mode="gbn", window=0):
    """The longest ``frame_in`` may wait: the receive FIFOs (two frames at
    the MTU) drained by the unpacker, at one word and a few cycles per frame;
    in selective repeat also a release of up to ``window - 1`` kept frames
    from the reorder buffer, read back at one word per cycle while nothing
    else leaves the FIFOs."""
    words = frame_words(width, mtu)
    return 2 * words + 64 + (window * words if mode == "sr" else 0)


@cocotb.test()
async def decapsulator_fuzz(dut):
    """Seeded hostile frames into the Decapsulator: per frame the drop reason
    or verdict of the frame model, exactly one counter moved, the good
    frames' TLPs (and their order stamps) delivered once, in order."""
    width, mtu = P["width"], P["mtu"]
    start_clock(dut.clk, CLOCK_NS)
    await reset(dut.clk, dut.rst)
    judge = FrameJudge(FATE_COUNTERS + tuple(f"drops_{r.name}" for r in DropReason), dut._log)
    bound = stall_bound(width, mtu)
    port = ReceivePort(dut, dut.clk, width, frame_port="frame", tlp_port="tlp",
                       stall_bound=bound, counters=("drops", "good_frames", "control_frames", "tlps_out"),
                       drop_reasons=tuple(DropReason), stamped=True,
                       on_tlp=judge.tlp_out)
    judge.start(port.read_counters())
    for index, (kind, data) in enumerate(frame_stream(P["seed"], P["count"], mtu,
                                                      P["good_share"])):
        prediction, _ = predict_frame(data, mtu)
        port.send(data, lambda counters, i=index, k=kind, p=prediction:
                  judge.frame_done(i, k, p, counters))
        while port.pending > 64:        # keep the queue short; the bus stays busy
            await wait_cycles(dut.clk, 16)
    while port.pending:
        await wait_cycles(dut.clk, 16)
    for waited in range(0, 8 * bound, 16):
        if not judge.expected:
            break
        await wait_cycles(dut.clk, 16)
    await wait_cycles(dut.clk, 64)                  # nothing more may come out
    counters = port.read_counters()
    summary = judge.summary() | {"cycles": port.cycles, "max_stall": port.max_stall,
                                 "stall_bound": bound, "counters": counters}
    if P["report"]:
        Path(P["report"]).write_text(json.dumps(summary, indent=1))
    if judge.expected:
        judge.error(f"{len(judge.expected)} TLPs never delivered (first of frame "
                    f"{judge.expected[0][2]})")
    if port.max_stall > bound:
        judge.error(f"frame_in stalled {port.max_stall} cycles, over the bound of {bound}")
    if counters["tlps_out"] != judge.delivered:
        judge.error(f"tlps_out {counters['tlps_out']}, {judge.delivered} TLPs seen")
    if judge.errors:
        raise FuzzFailure("; ".join(judge.errors))
    dut._log.info(f"{judge.frames} frames, {judge.delivered} TLPs, max stall {port.max_stall}: "
                  f"{summary['verdicts']}")


@cocotb.test()
async def bridge_fuzz(dut):
    """A Bridge whose link peer is the bench: the peer's honest frames with
    hostile ones between them (byte-level and link-level lies), judged per
    frame against the frame model and the reference receiver; every TLP each
    way delivered exactly once, in order, and the link stays up."""
    start_clock(dut.clk, CLOCK_NS)
    params = dict(P, stall_bound=stall_bound(P["width"], P["mtu"], mode=P["mode"],
                                             window=P["window"]))
    bench = BridgeFuzz(dut, params, CLOCK_NS, dut._log)     # drives every input
    await reset(dut.clk, dut.rst)
    summary = await bench.run()
    if P["report"]:
        Path(P["report"]).write_text(json.dumps(summary, indent=1))
    if summary["errors"]:
        raise FuzzFailure("; ".join(summary["errors"][:5]))
    dut._log.info(f"{summary['frames']} frames ({summary['hostile_frames']} hostile), "
                  f"{summary['tlps_delivered']} TLPs out, {summary['tlps_to_peer']} to the peer, "
                  f"max stall {summary['max_stall']}: {summary['verdicts']}; lies {summary['lies']}")


#: Issue 16's reproductions of the trailing-bytes jam: (TLP bytes, bytes after
#: the frame, padded to the Ethernet minimum) per width.
TRAILING = {64: (12, 8), 256: (52, 32)}


def _tlp_of(size, tag):
    """A TLP of ``size`` bytes: a read (12) or a write with 32-bit address."""
    if size == 12:
        return Tlp.mem_read(0x1000 + 64 * tag, 4, requester_id=0x0100, tag=tag).pack()
    return Tlp.mem_write(0x1000 + 64 * tag, bytes(range(tag, tag + size - 12)),
                         requester_id=0x0100, tag=tag).pack()


async def _bridge_bench(dut, **overrides):
    """A Bridge with every input driven (``P`` and ``overrides``; both
    streams in idle: an undriven ``valid`` is X on Icarus), out of reset;
    returns its :class:`BridgePorts`."""
    start_clock(dut.clk, CLOCK_NS)
    ports = configure_bridge(dut, None, DEFAULT_DST_MAC, DEFAULT_SRC_MAC, dict(P, **overrides))
    for port in ("frame_in__valid", "tlp_in__valid", "frame_out__ready", "tlp_out__ready"):
        getattr(dut, port).value = 0
    await reset(dut.clk, dut.rst)
    return ports


@cocotb.test()
async def bridge_trailing_bytes(dut):
    """Defect 1 of issue 16 at the Bridge: a DATA frame followed by bytes
    after its CRC (which the wire format ignores) and three ordinary frames:
    all four accepted, their TLPs delivered once and in order."""
    width = P["width"]
    size, trailing = TRAILING[width]
    ports = await _bridge_bench(dut, credits=0)
    dut.frame_out__ready.value = 1
    got = []
    port = ReceivePort(dut, dut.clk, width, frame_port="frame_in", tlp_port="tlp_out",
                       counters=("drops", "good_frames", "frames_accepted", "tlps_out"),
                       drop_reasons=tuple(DropReason), stall_bound=stall_bound(width, P["mtu"]),
                       on_tlp=lambda tlp, stamp: got.append(bytes(tlp)), reader=ports.stats)
    first = pad_to_minimum(encode_frame([_tlp_of(size, 0)], seq=0))
    port.send(first + bytes(range(0x80, 0x80 + trailing)))
    tlps = [_tlp_of(size, 0)] + [_tlp_of(max(size, 16), tag) for tag in (1, 2, 3)]
    for seq, tlp in enumerate(tlps[1:], start=1):
        port.send(encode_frame([tlp], seq=seq))
    for _ in range(200):
        await wait_cycles(dut.clk, 10)
        if len(got) == len(tlps):
            break
    await wait_cycles(dut.clk, 50)
    counters = port.read_counters()
    assert counters["frames_accepted"] == 4 and counters["good_frames"] == 4, counters
    assert not any(v for k, v in counters.items() if k.startswith("drops_")), counters
    assert got == tlps, f"{len(got)} of {len(tlps)} TLPs delivered, or garbled"


@cocotb.test()
async def bridge_unsent_ack(dut):
    """Defect 2 of issue 16 at the Bridge: with the MAC holding ``frame_out``
    and three DATA frames stored, a CRC-valid ACK naming frame 1 (never sent)
    is counted in ``acks_invalid`` and ignored; every frame then goes out once
    with its TLP, and after a valid ACK the idle link stays up."""
    width = P["width"]
    ports = await _bridge_bench(dut, credits=0)
    mac_ready = [False]
    out = []
    StreamMonitor(dut, "frame_out", dut.clk, StreamLayout.frame(width), drive_ready=True,
                  ready_fn=lambda: mac_ready[0], callback=lambda p: out.append(p.data))
    driver = StreamDriver(dut, "tlp_in", dut.clk, StreamLayout.tlp(width))
    tlps = [_tlp_of(64, tag) for tag in range(3)]
    for tlp in tlps:        # each alone in its frame: the packer's flush timer in between
        await driver.send(tlp)
        await wait_cycles(dut.clk, 4 * P["flush_timeout"])
    port = ReceivePort(dut, dut.clk, width, frame_port="frame_in", tlp_port="tlp_out",
                       counters=("acks_invalid", "frames_sent", "frames_retransmitted",
                                 "replays_timeout", "link_down"),
                       stall_bound=stall_bound(width, P["mtu"]), on_tlp=lambda *_: None,
                       reader=ports.stats)
    port.send(encode_frame([], frame_type=wire.FrameType.ACK, ack=1, flags=FLAG_ACK_VALID))
    while port.pending:
        await wait_cycles(dut.clk, 4)
    await wait_cycles(dut.clk, 4)
    taken = port.read_counters()["acks_invalid"]
    assert taken == 1, f"acks_invalid {taken}: the ACK naming frames never sent was taken"
    mac_ready[0] = True
    await wait_cycles(dut.clk, 400)
    data = [decode_frame(f) for f in out]
    sent = [(f.seq, f.tlps) for f in data if f.frame_type is wire.FrameType.DATA]
    assert sent == [(seq, [tlp]) for seq, tlp in enumerate(tlps)], sent
    port.send(encode_frame([], frame_type=wire.FrameType.ACK, ack=2, flags=FLAG_ACK_VALID))
    await wait_cycles(dut.clk, 4 * P["replay_timeout"])
    counters = port.read_counters()
    assert counters["acks_invalid"] == 1 and counters["frames_retransmitted"] == 0, counters
    assert counters["replays_timeout"] == 0 and counters["link_down"] == 0, counters
