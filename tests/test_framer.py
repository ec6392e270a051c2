"""amaranth.sim tests of the Framer: frames of every length class back to
back, checked byte for byte and by the model's decoder (CRC included), the
beat timing, MAC backpressure, and which ``ready`` depends on what."""

import random

import pytest
from amaranth.sim import Simulator

from tlpoe.models import wire
from tlpoe.models.frame import FLAG_CREDITS_VALID, FrameError, decode_frame, frame_crc
from tlpoe.models.wire import (BRIDGE_HEADER, ETHERNET, HEADER_LEN, PREFIX_LEN, TLP_PREFIX,
                               VERSION, FrameType, body_capacity)
from tlpoe.rtl.tlp_header import CLASSES
from tlpoe.rtl.framing.framer import Framer

PARTS = ("hdr", "data")


def _area(rng, length):
    """A TLP area of ``length`` bytes: whole TLPs with their prefixes when
    ``length`` allows one (16 bytes or more), else raw DWs. Returns (area, TLP count)."""
    if length < PREFIX_LEN + wire.MIN_TLP:
        return rng.randbytes(length), 1
    parts, left = [], length
    while left:
        size = left - PREFIX_LEN if left < 2 * (PREFIX_LEN + wire.MIN_TLP) else \
            4 * rng.randrange(3, (left - PREFIX_LEN - wire.MIN_TLP - PREFIX_LEN) // 4 + 1)
        parts += [TLP_PREFIX.pack(tlp_length=size, order_stamp=rng.getrandbits(16)),
                  rng.randbytes(size)]
        left -= PREFIX_LEN + size
    return b"".join(parts), len(parts) // 2


def _length_classes(width, mtu=1500):
    """TLP-area lengths: header-only, one DW, every DW position of the
    last beat for the CRC (a whole number of TLPs), and the largest at ``mtu``."""
    Wb = width // 8
    ends = [16 + 4 * k for k in range(Wb // 4)]          # data_end mod Wb: every DW
    full = body_capacity(mtu) // 4 * 4
    return [0, 4] + ends + [full]


def _config(rng):
    """Random MAC addresses, channel and credits, as they may change every cycle."""
    return {"dst_mac": rng.getrandbits(48), "src_mac": rng.getrandbits(48),
            "channel": rng.getrandbits(16), "credits_valid": rng.getrandbits(1),
            "credits": [{"hdr": rng.getrandbits(8), "data": rng.getrandbits(16)}
                        for _ in CLASSES]}


def _expected(desc, area, config, ethertype=wire.ETHERTYPE):
    """The frame the Framer must send for ``desc`` and ``area`` with the
    configuration sampled at its handshake, built by the model's packers."""
    flags = desc["flags"] | (FLAG_CREDITS_VALID if config["credits_valid"] else 0)
    credits = {f"credit_{name}_{part}": config["credits"][k][part]
               for k, name in enumerate(CLASSES) for part in PARTS}
    body = (ETHERNET.pack(dst_mac=config["dst_mac"], src_mac=config["src_mac"],
                          ethertype=ethertype) +
            BRIDGE_HEADER.pack(version=VERSION, frame_type=desc["frame_type"], flags=flags,
                               channel=config["channel"], seq=desc["seq"], ack=desc["ack"],
                               tlp_count=desc["count"], payload_length=len(area), **credits) +
            area)
    return body + frame_crc(body, len(area)).to_bytes(4, "little")


def _frames(width, lengths, rng):
    """(descriptor, TLP area, body words) per frame."""
    Wb = width // 8
    skip = HEADER_LEN // Wb * Wb               # header bytes before the first body word
    out = []
    for length in lengths:
        area, count = _area(rng, length)
        desc = {"frame_type": FrameType.DATA if length else FrameType.ACK,
                "flags": rng.getrandbits(8), "seq": rng.getrandbits(32),
                "ack": rng.getrandbits(32), "count": count if length else 0, "length": length}
        words = []
        if length:
            body = bytes(HEADER_LEN - skip) + area
            body += bytes(-len(body) % Wb)
            words = [int.from_bytes(body[i:i + Wb], "little") for i in range(0, len(body), Wb)]
        out.append((desc, area, words))
    return out


def _run(width, frames, *, mac_ready=1.0, desc_gap=0.0, word_gap=0.0, seed=0, cycles=None):
    """Drives ``frames`` through a Framer; returns (frames out as bytes,
    configuration sampled per frame, output-beat cycles, the cycle of each
    descriptor handshake)."""
    dut = Framer(width)
    rng = random.Random(seed)
    Wb = width // 8
    result = {"beats": [], "sampled": [], "desc_cycles": [], "word_cycles": [], "frames": [],
              "latency": dut.latency, "ends": [], "data_sent": []}
    descs = [desc for desc, _, _ in frames]
    words = [w for _, _, ws in frames for w in ws]
    limit = cycles or 50 + 2 * sum(len(ws) + 2 + (HEADER_LEN + 4 + len(area)) // Wb
                                   for _, area, ws in frames) * (2 if mac_ready < 1 else 1)

    def set_config(ctx, config):
        ctx.set(dut.dst_mac, config["dst_mac"])
        ctx.set(dut.src_mac, config["src_mac"])
        ctx.set(dut.channel, config["channel"])
        ctx.set(dut.credits_valid, config["credits_valid"])
        for k in range(3):
            for part in PARTS:
                ctx.set(getattr(dut.credits[k], part), config["credits"][k][part])

    async def bench(ctx):
        di = wi = 0
        current = []
        for cycle in range(limit):
            config = _config(rng)
            set_config(ctx, config)
            d_valid = di < len(descs) and rng.random() >= desc_gap
            ctx.set(dut.desc.valid, d_valid)
            if d_valid:
                for name, value in descs[di].items():
                    ctx.set(getattr(dut.desc.payload, name), value)
            w_valid = wi < len(words) and rng.random() >= word_gap
            ctx.set(dut.words.valid, w_valid)
            if w_valid:
                ctx.set(dut.words.payload, words[wi])
            ctx.set(dut.frame.ready, rng.random() < mac_ready)
            if d_valid and ctx.get(dut.desc.ready):
                result["sampled"].append(config)
                result["desc_cycles"].append(cycle)
                di += 1
            if w_valid and ctx.get(dut.words.ready):
                result["word_cycles"].append(cycle)
                wi += 1
            if ctx.get(dut.data_sent):
                result["data_sent"].append((cycle, ctx.get(dut.data_sent_seq)))
            if ctx.get(dut.frame.valid) and ctx.get(dut.frame.ready):
                beat = ctx.get(dut.frame.payload)
                keep = beat.keep
                assert keep & (keep + 1) == 0 and keep, f"keep {keep:#x} not contiguous"
                assert beat.last or keep == (1 << Wb) - 1, "a partial beat that is not last"
                nbytes = keep.bit_length()
                current.append(beat.data.to_bytes(Wb, "little")[:nbytes])
                result["beats"].append(cycle)
                if beat.last:
                    result["ends"].append(cycle)
                    result["frames"].append(b"".join(current))
                    current = []
            await ctx.tick()
        assert not current, "a frame was left unfinished"
        result["frames_sent"] = ctx.get(dut.frames_sent)
        result["words_left"] = len(words) - wi

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return result


def _check(width, frames, result):
    """Every frame byte for byte as the model builds it, decoded by the
    model where its TLP area is whole TLPs."""
    assert len(result["frames"]) == len(frames)
    assert result["frames_sent"] == len(frames)
    assert result["words_left"] == 0
    # data_sent: in the cycle the MAC takes a DATA frame's last beat, with its number
    assert result["data_sent"] == [(end, desc["seq"]) for (desc, _, _), end
                                   in zip(frames, result["ends"])
                                   if desc["frame_type"] == FrameType.DATA]
    for i, ((desc, area, _), got, config) in enumerate(zip(frames, result["frames"],
                                                          result["sampled"])):
        want = _expected(desc, area, config)
        assert got == want, f"frame {i} ({len(area)}-byte TLP area) differs"
        if len(area) >= PREFIX_LEN + wire.MIN_TLP or not area:
            decoded = decode_frame(got)
            assert decoded.seq == desc["seq"] and decoded.payload_length == len(area)
        else:
            with pytest.raises(FrameError) as err:      # past the CRC check
                decode_frame(got)
            assert err.value.reason.name != "CRC"


def _beats(width, area_len):
    return -(-(HEADER_LEN + area_len + 4) // (width // 8))


@pytest.mark.parametrize("width", [64, 512])
def test_back_to_back_frames_of_every_length_class(width):
    """Header-only, 1-DW, the CRC at every DW of the last beat, the MTU: with
    descriptors and words waiting, one beat per cycle and no gap between frames."""
    rng = random.Random(width)
    lengths = _length_classes(width)
    lengths = lengths + lengths[::-1] + [0, 0, 4, 0]
    frames = _frames(width, lengths, rng)
    result = _run(width, frames, seed=width)
    _check(width, frames, result)
    beats = result["beats"]
    assert len(beats) == sum(_beats(width, len(area)) for _, area, _ in frames)
    assert beats == list(range(beats[0], beats[0] + len(beats))), "a gap in the output"
    # the first beat, from an idle Framer, 2 cycles more than `latency` after its
    # descriptor; each body word `latency` cycles after its handshake
    assert beats[0] - result["desc_cycles"][0] == result["latency"] + 2
    body_first, start, word = HEADER_LEN // (width // 8), 0, 0
    for _, area, words in frames:
        for k in range(len(words)):
            assert beats[start + body_first + k] - result["word_cycles"][word] == result["latency"]
            word += 1
        start += _beats(width, len(area))


@pytest.mark.parametrize("width", [64, 512])
def test_mac_backpressure_and_gaps(width):
    """A MAC that drops ``ready`` at random, and descriptors and words that
    come with gaps: the same frames, nothing lost or repeated."""
    rng = random.Random(width + 7)
    lengths = _length_classes(width)[:-1] * 2
    rng.shuffle(lengths)
    frames = _frames(width, lengths, rng)
    result = _run(width, frames, mac_ready=0.6, desc_gap=0.3, word_gap=0.3, seed=width + 7)
    _check(width, frames, result)


@pytest.mark.parametrize("width", [64, 512])
def test_ready_does_not_follow_the_mac(width):
    """``desc.ready`` and ``words.ready`` are the same whatever the MAC's
    ``ready`` is in that cycle: no combinational path from the MAC through
    the Framer to the block that feeds it."""
    frames = _frames(width, [64, 0, 200], random.Random(3))
    dut = Framer(width)
    descs = [desc for desc, _, _ in frames]
    words = [w for _, _, ws in frames for w in ws]

    async def bench(ctx):
        di = wi = 0
        rng = random.Random(4)
        for _ in range(300):
            ctx.set(dut.desc.valid, di < len(descs))
            if di < len(descs):
                for name, value in descs[di].items():
                    ctx.set(getattr(dut.desc.payload, name), value)
            ctx.set(dut.words.valid, wi < len(words))
            if wi < len(words):
                ctx.set(dut.words.payload, words[wi])
            seen = set()
            for ready in (0, 1):
                ctx.set(dut.frame.ready, ready)
                seen.add((ctx.get(dut.desc.ready), ctx.get(dut.words.ready)))
            assert len(seen) == 1
            ctx.set(dut.frame.ready, rng.random() < 0.3)
            di += di < len(descs) and ctx.get(dut.desc.ready)
            wi += wi < len(words) and ctx.get(dut.words.ready)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
