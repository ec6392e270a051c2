"""cocotb tests of the hostile-input bench (tb/fuzz.py): the Decapsulator
alone, fed seeded good and hostile frames back to back. The pytest entry
points are tests/test_fuzz_sim.py (short form) and ``make fuzz`` (sim/fuzz.py).
"""

import json
import random
from pathlib import Path

import cocotb

from tlpoe.models.frame import DropReason
from tlpoe.rtl.deframer import frame_words
from tlpoe.tb.bfm import reset, start_clock, wait_cycles
from tlpoe.tb.fuzz import FATE_COUNTERS, FrameJudge, FuzzFailure, ReceivePort, predict_frame
from tlpoe.tb.fuzz_bridge import BridgeFuzz
from tlpoe.tb.hostile import good_frame, hostile_frame
from tlpoe.tb.params import tb_params

P = tb_params(width=64, mtu=1500, seed=1, count=1000, good_share=0.35, report="", mode="gbn",
              window=16, seq_bits=12, replay_timeout=3000, nak_timeout=800, tlps=300,
              lie_share=0.4, mac_hold=64, credits=1, drain_cycles=200_000)
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


def stall_bound(width, mtu):
    """The longest ``frame_in`` may wait: the receive FIFOs (two frames at
    the MTU) drained by the unpacker, at one word and a few cycles per frame."""
    return 2 * frame_words(width, mtu) + 64


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
                       drop_reasons=tuple(DropReason), stamp_port="tlp_stamp",
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
    await reset(dut.clk, dut.rst)
    params = dict(P, stall_bound=stall_bound(P["width"], P["mtu"]))
    bench = BridgeFuzz(dut, params, CLOCK_NS, dut._log)
    summary = await bench.run()
    if P["report"]:
        Path(P["report"]).write_text(json.dumps(summary, indent=1))
    if summary["errors"]:
        raise FuzzFailure("; ".join(summary["errors"][:5]))
    dut._log.info(f"{summary['frames']} frames ({summary['hostile_frames']} hostile), "
                  f"{summary['tlps_delivered']} TLPs out, {summary['tlps_to_peer']} to the peer, "
                  f"max stall {summary['max_stall']}: {summary['verdicts']}; lies {summary['lies']}")
