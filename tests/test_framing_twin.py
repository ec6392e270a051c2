"""The cycle models of the framing blocks (``models/framing_cycles.py``)
against the RTL's Framer and TlpPacker in amaranth.sim: random stimulus
(for the framer: descriptors of every frame type and length, a stream of
random body words, a MAC that takes beats at random, the configuration
changing under it; for the packer: TLPs of random kinds and sizes, some
oversize, some cut short or running long, with gaps, and consumers that
take words and descriptors at random), the same inputs to the model every
cycle, and in every cycle every output (``valid``, ``ready``, each payload
bit) and every counter compared: the models are cycle-exact."""

import random

import pytest

from tlpoe.models import transport as tp
from tlpoe.models import wire
from tlpoe.models.frame import decode_frame, encode_frame
from tlpoe.models.framing_cycles import WIDTHS, CycleFramer, CyclePacker, FramerConfig
from tlpoe.models.tlp import Tlp
from tlpoe.rtl.framing.framer import Framer
from tlpoe.rtl.framing.packer import TlpPacker
from tlpoe.rtl.framing.transport import udp_config_init
from tlpoe.tb.twin_sim import assert_same, simulate


# --- the Framer -------------------------------------------------------------------


class FramerStimulus:
    """One cycle's inputs to the framer, drawn fresh every cycle: a
    descriptor (any frame type, length 0 or a multiple of 4 up to a few
    beats or the MTU), a body word (zero where the framer writes its
    header, as the packer leaves it, or not), the MAC's ready and, now
    and then, a new configuration."""

    def __init__(self, rng, width, seq_bits, transport="eth"):
        self.rng, self.width, self.seq_bits = rng, width, seq_bits
        self.area_at = tp.area_offset(transport)
        self.udp = transport == "udp"
        self.config = self.new_config()
        self.word_rate, self.mac_rate = 0.8, 0.8

    def new_config(self):
        rng = self.rng
        udp = None if not self.udp else tp.UdpConfig(
            src_ip=rng.getrandbits(32), dst_ip=rng.getrandbits(32),
            src_port=rng.getrandbits(16), dst_port=rng.getrandbits(16), ttl=rng.getrandbits(8),
            dscp=tuple(rng.getrandbits(6) for _ in range(8)), control_dscp=rng.getrandbits(6))
        return FramerConfig(rng.getrandbits(48), rng.getrandbits(48), rng.getrandbits(16),
                            [(rng.getrandbits(8), rng.getrandbits(16)) for _ in range(3)],
                            rng.random() < 0.7, udp)

    def next(self, cycle):
        rng, W = self.rng, self.width
        if cycle % 300 == 0:        # phases: the MAC or the words slow, or neither
            self.word_rate, self.mac_rate = rng.choice(((1.0, 1.0), (0.8, 0.5), (0.3, 1.0),
                                                        (1.0, 0.2), (0.9, 0.95)))
        if rng.random() < 0.02:
            self.config = self.new_config()
        desc = None
        if rng.random() < 0.5:
            length = rng.choice((0, 0, 4 * rng.randint(3, 3 * W // 32),
                                 4 * rng.randint(3, 370), 1464))
            desc = dict(frame_type=rng.choice((0, 0, 0, 1, 2, 3, 4, rng.randrange(16))),
                        flags=rng.getrandbits(8), seq=rng.getrandbits(32),
                        ack=rng.getrandbits(32), count=rng.getrandbits(16), length=length,
                        tc=rng.randrange(8))
        word = None
        if rng.random() < self.word_rate:
            word = rng.getrandbits(W)
            if rng.random() < 0.9:       # the packer's: header bytes zero
                word &= ~((1 << 8 * min(self.area_at, W // 8)) - 1)
        return dict(desc=desc, word=word, frame_ready=rng.random() < self.mac_rate,
                    config=self.config)


def framer_drive(ctx, dut, inputs):
    config = inputs["config"]
    ctx.set(dut.dst_mac, config.dst_mac)
    ctx.set(dut.src_mac, config.src_mac)
    ctx.set(dut.channel, config.channel)
    ctx.set(dut.credits_valid, config.credits_valid)
    for k, (hdr, data) in enumerate(config.credits):
        ctx.set(dut.credits[k].hdr, hdr)
        ctx.set(dut.credits[k].data, data)
    if config.udp is not None:
        ctx.set(dut.udp, udp_config_init(config.udp))
    desc, word = inputs["desc"], inputs["word"]
    ctx.set(dut.desc.valid, desc is not None)
    if desc is not None:
        ctx.set(dut.desc.payload, desc)
    ctx.set(dut.words.valid, word is not None)
    if word is not None:
        ctx.set(dut.words.payload, word)
    ctx.set(dut.frame.ready, inputs["frame_ready"])


def framer_observe(ctx, dut):
    frame = None
    if ctx.get(dut.frame.valid):
        p = ctx.get(dut.frame.payload)
        frame = (p.data, p.keep, p.last)
    return dict(desc_ready=ctx.get(dut.desc.ready), words_ready=ctx.get(dut.words.ready),
                frame=frame, frames_sent=ctx.get(dut.frames_sent),
                data_sent=ctx.get(dut.data_sent_seq) if ctx.get(dut.data_sent) else None)


def framer_predict(model, inputs):
    step = model.step(**inputs)
    return dict(desc_ready=int(step.desc_ready), words_ready=int(step.words_ready),
                frame=tuple(step.frame) if step.frame else None, frames_sent=step.frames_sent,
                data_sent=step.data_sent_seq if inputs["frame_ready"] else None), step


def beat_bytes(beat, width):
    """The bytes a frame beat carries (``keep`` is contiguous from lane 0)."""
    return beat.data.to_bytes(width // 8, "little")[:bin(beat.keep).count("1")]


def run_framer_twin(width, seed, cycles, seq_bits=12, break_model=None, transport="eth"):
    """``cycles`` cycles of random stimulus into the Framer and its twin;
    fails at the first cycle where they differ. Returns the frames the
    model sent (bytes, as the MAC took them)."""
    rng = random.Random(seed)
    dut = Framer(width, seq_bits=seq_bits, transport=transport)
    model = CycleFramer(width, seq_bits=seq_bits, transport=transport)
    if break_model:
        break_model(model)
    stim = FramerStimulus(rng, width, seq_bits, transport)
    frames, current = [], []

    async def bench(ctx):
        for cycle in range(cycles):
            inputs = stim.next(cycle)
            framer_drive(ctx, dut, inputs)
            got = framer_observe(ctx, dut)
            want, step = framer_predict(model, inputs)
            assert_same(got, want, f"width {width}, seed {seed}, cycle {cycle}")
            if step.frame and inputs["frame_ready"]:
                current.append(beat_bytes(step.frame, width))
                if step.frame.last:
                    frames.append(b"".join(current))
                    current.clear()
            await ctx.tick()

    simulate(dut, bench)
    return frames


@pytest.mark.parametrize("width", WIDTHS)
def test_framer_twin_agrees_with_the_rtl_in_every_cycle(width):
    frames = []
    for seed in range(2):
        frames += run_framer_twin(width, seed, 1800)
    assert len(frames) > 20
    types = {f[wire.ETH_LEN] & 0xF for f in frames}
    assert {0, 1, 2} <= types


def test_the_framer_twin_s_frames_carry_the_wire_crc():
    """The model's CRC is the wire format's: the frames whose body words
    are a real TLP area decode, CRC checked, with the model of
    ``models/frame.py``."""
    width, rng = 128, random.Random(5)
    model = CycleFramer(width)
    tlps = [Tlp.mem_write(0x1000 * i, bytes(range(4 * i))).pack() for i in range(1, 6)]
    area = b"".join(wire.TLP_PREFIX.pack(tlp_length=len(t)) + t for t in tlps)
    body = bytes(wire.HEADER_LEN) + area
    wb = width // 8
    words = [int.from_bytes(body[i:i + wb].ljust(wb, b"\0"), "little")
             for i in range(wire.HEADER_LEN // wb * wb, len(body), wb)]
    desc = dict(frame_type=0, flags=1, seq=7, ack=3, count=len(tlps), length=len(area))
    beats, sent = [], False
    for _ in range(200):
        ready = rng.random() < 0.7
        step = model.step(desc=None if sent else desc, word=words[0] if words else None,
                          frame_ready=ready)
        sent = sent or step.desc_ready
        if step.words_ready and words:
            words.pop(0)
        if step.frame and ready:
            beats.append(beat_bytes(step.frame, width))
    decoded = decode_frame(b"".join(beats))
    assert decoded.tlps == tlps and (decoded.seq, decoded.ack) == (7, 3)
    assert model.frames_sent == 1


def test_the_bench_catches_a_framer_without_its_delay_line():
    """The comparison is not vacuous: a framer twin one stage short in its
    delay line (the CRC a cycle faster) shows its beats a cycle early."""
    def shorter(model):
        model.line = model.line[:-1]
    with pytest.raises(AssertionError, match="frame: RTL None model"):
        run_framer_twin(64, 0, 300, break_model=shorter)


@pytest.mark.parametrize("width", WIDTHS)
def test_udp_framer_twin_agrees_with_the_rtl_in_every_cycle(width):
    """The ``udp`` transport's Framer (its configuration changing under it,
    every DSCP and address random) against its twin in every cycle; every
    frame's IPv4 header checksum and lengths right, whatever the
    configuration was (checked with the one's-complement sum alone; the
    bridge's CRC over bytes 42 onwards is checked on real TLP areas below:
    the random body words here are ORed into its DW)."""
    frames = []
    for seed in range(2):
        frames += run_framer_twin(width, seed, 1800, transport="udp")
    assert len(frames) > 20
    for f in frames:
        assert f[12:14] == b"\x08\x00"
        ip, udp = tp.IPV4.unpack(f, 14), tp.UDP.unpack(f, 34)
        assert tp.ones_complement_sum(f[14:34]) == 0xFFFF
        length = wire.BRIDGE_HEADER.unpack(f, 42)["payload_length"]
        assert ip["total_length"] == 58 + length == udp["length"] + 20 == len(f) - 14
        assert (ip["version_ihl"], ip["ecn"], ip["protocol"], udp["checksum"]) == (0x45, 2, 17, 0)


def test_the_bench_catches_a_udp_framer_taking_its_configuration_a_cycle_early():
    """The ``udp`` configuration's lag is checked: a twin one cycle short of
    it sends some frame's addresses or DSCP from the wrong configuration."""
    def early(model):
        model.udp_seen.popleft()
    with pytest.raises(AssertionError, match="frame: RTL"):
        run_framer_twin(64, 0, 1800, break_model=early, transport="udp")


def test_the_udp_framer_twin_sends_the_transport_models_frames():
    """A real TLP area through the ``udp`` twin: the frame is
    ``to_udp(encode_frame(...))`` byte for byte (the DSCP of its first
    TLP's traffic class), and an ACK takes the control DSCP."""
    width = 128
    config = tp.UdpConfig(src_ip=0x0A000005, dst_ip=0x0A000106, src_port=0xD00D, ttl=9,
                          dscp=(1, 2, 3, 4, 5, 6, 7, 8), control_dscp=46)
    model = CycleFramer(width, transport="udp", udp_init=config)
    tlps = [Tlp.mem_write(0x1000 * i, bytes(range(4 * i)), tc=i).pack() for i in range(3, 6)]
    area = b"".join(wire.TLP_PREFIX.pack(tlp_length=len(t)) + t for t in tlps)
    body = bytes(68) + area
    wb = width // 8
    words = [int.from_bytes(body[i:i + wb].ljust(wb, b"\0"), "little")
             for i in range(68 // wb * wb, len(body), wb)]
    descs = [dict(frame_type=0, flags=1, seq=7, ack=3, count=len(tlps), length=len(area), tc=3),
             dict(frame_type=1, flags=1, seq=0, ack=5, count=0, length=0, tc=0)]
    beats, frames = [], []
    for _ in range(300):
        step = model.step(desc=descs[0] if descs else None, word=words[0] if words else None,
                          frame_ready=True, config=FramerConfig(udp=config))
        if step.desc_ready and descs:
            descs.pop(0)
        if step.words_ready and words:
            words.pop(0)
        if step.frame:
            beats.append(beat_bytes(step.frame, width))
            if step.frame.last:
                frames.append(b"".join(beats))
                beats = []
    data = encode_frame(tlps, seq=7, ack=3, flags=1)
    ack = encode_frame([], frame_type=wire.FrameType.ACK, ack=5, flags=1)
    assert frames[0] == tp.to_udp(data, config)
    assert tp.IPV4.unpack(frames[0], 14)["dscp"] == 4
    assert tp.pad_to_minimum(frames[1]) == tp.to_udp(ack, config)
    assert tp.IPV4.unpack(frames[1], 14)["dscp"] == 46
    assert tp.receive(frames[0], "udp", config.peer()).tlps == tlps


# --- the TlpPacker ----------------------------------------------------------------


def random_tlp(rng, width, small=False):
    """The DWs of one TLP as a stream carries it: a first DW with random
    Fmt, TD and Length (now and then too large for a frame, or 0: 1024
    DWs; ``small``: at most 4), random DWs after it; mostly as long as its
    header says, now and then cut short or running on."""
    fmt, td = rng.randrange(4), int(rng.random() < 0.2)
    if small:
        length = rng.randint(1, 4) if fmt & 2 else 0
    elif fmt & 2:
        length = rng.choice((rng.randint(1, 8), rng.randint(1, 64), rng.randint(1, 380),
                             rng.choice((0, 1023, 360, 362, 363))))
    else:
        length = rng.randrange(1024)
    dws = ((length or 1024) if fmt & 2 else 0) + (4 if fmt & 1 else 3) + td
    dw0 = fmt << 5 | td << 23 | (length & 0xFF) << 24 | (length >> 8) << 16
    dw0 |= rng.getrandbits(32) & 0x0000FF00 & ~(0x80 << 16)
    actual = dws
    roll = rng.random()
    if roll < 0.04:
        actual = rng.randint(1, dws)
    elif roll < 0.08:
        actual = dws + rng.randint(1, 2 * width // 32)
    if actual > 400:                        # an oversize TLP: its first beats are enough
        actual = rng.choice((actual, 3 * width // 32))
    return [dw0] + [rng.getrandbits(32) for _ in range(actual - 1)]


def tlp_beats(rng, dws, width):
    """``dws`` as stream beats ``(data, keep, last, stamp)``."""
    D = width // 32
    out = []
    for i in range(0, len(dws), D):
        chunk = dws[i:i + D]
        data = sum(dw << 32 * k for k, dw in enumerate(chunk))
        out.append((data, (1 << len(chunk)) - 1, int(i + D >= len(dws)), rng.getrandbits(16)))
    return out


class PackerStimulus:
    """One cycle's inputs to the packer: the next TLP beat offered (with
    gaps), the consumer's ``words.ready`` and ``desc.ready``; phases of
    back-to-back small TLPs, sparse TLPs (the flush timer), a slow consumer."""

    def __init__(self, rng, width):
        self.rng, self.width = rng, width
        self.beats = []
        self.rate, self.ready_rate, self.small = 0.9, 0.9, False

    def next(self, cycle):
        rng = self.rng
        if cycle % 400 == 0:
            self.rate, self.ready_rate, self.small = rng.choice((
                (1.0, 1.0, True), (1.0, 1.0, False), (0.9, 0.4, False), (0.05, 1.0, True),
                (0.7, 0.8, False), (1.0, 0.7, True)))
        if not self.beats:
            dws = random_tlp(self.rng, self.width, self.small)
            self.beats = tlp_beats(rng, dws, self.width)
        beat = self.beats[0] if rng.random() < self.rate else None
        return dict(beat=beat, words_ready=rng.random() < self.ready_rate,
                    desc_ready=rng.random() < self.ready_rate)

    def after(self, inputs, step):
        if inputs["beat"] is not None and step.tlp_ready:
            self.beats.pop(0)


def packer_drive(ctx, dut, inputs):
    beat = inputs["beat"]
    ctx.set(dut.tlp.valid, beat is not None)
    if beat is not None:
        ctx.set(dut.tlp.payload, dict(zip(("data", "keep", "last", "stamp"), beat)))
    ctx.set(dut.words.ready, inputs["words_ready"])
    ctx.set(dut.desc.ready, inputs["desc_ready"])


def packer_observe(ctx, dut):
    desc = None
    if ctx.get(dut.desc.valid):
        p = ctx.get(dut.desc.payload)
        desc = (p.count, p.length, p.tc)
    return dict(tlp_ready=ctx.get(dut.tlp.ready),
                word=ctx.get(dut.words.payload) if ctx.get(dut.words.valid) else None,
                desc=desc, oversize_drops=ctx.get(dut.oversize_drops),
                length_errors=ctx.get(dut.length_errors))


def packer_predict(model, inputs):
    step = model.step(**inputs)
    return dict(tlp_ready=int(step.tlp_ready), word=step.word, desc=step.desc,
                oversize_drops=step.oversize_drops, length_errors=step.length_errors), step


def run_packer_twin(width, seed, cycles, *, flush_timeout=None, max_tlps=None,
                    break_model=None, transport="eth"):
    """``cycles`` cycles of random stimulus into the TlpPacker and its twin;
    fails at the first cycle where they differ. Returns the descriptors
    the model gave and its counters."""
    rng = random.Random(seed)
    flush_timeout = flush_timeout or rng.choice((1, 5, 30, 64))
    dut = TlpPacker(width, flush_timeout=flush_timeout, max_tlps=max_tlps, transport=transport)
    model = CyclePacker(width, flush_timeout=flush_timeout, max_tlps=max_tlps,
                        transport=transport)
    if break_model:
        break_model(model)
    stim = PackerStimulus(rng, width)
    descs = []

    async def bench(ctx):
        for cycle in range(cycles):
            if cycle == cycles // 2:            # the run-time input changes
                model.flush_timeout = rng.randint(1, 80)
                ctx.set(dut.flush_timeout, model.flush_timeout)
            inputs = stim.next(cycle)
            packer_drive(ctx, dut, inputs)
            got = packer_observe(ctx, dut)
            want, step = packer_predict(model, inputs)
            assert_same(got, want, f"width {width}, seed {seed}, cycle {cycle}")
            if step.desc and inputs["desc_ready"]:
                descs.append(step.desc)
            stim.after(inputs, step)
            await ctx.tick()

    simulate(dut, bench)
    return descs, (model.oversize_drops, model.length_errors)


@pytest.mark.parametrize("width", WIDTHS)
def test_packer_twin_agrees_with_the_rtl_in_every_cycle(width):
    descs, drops, errors = [], 0, 0
    for seed in range(2):
        d, (o, e) = run_packer_twin(width, seed, 2000)
        descs += d
        drops, errors = drops + o, errors + e
    assert len(descs) > 20 and drops and errors
    assert any(count > 3 for count, _, _ in descs)
    assert len({tc for _, _, tc in descs}) > 1          # the first TLPs' traffic classes


@pytest.mark.parametrize("width", [64, 512])
def test_udp_packer_twin_agrees_with_the_rtl_in_every_cycle(width):
    """On ``udp`` the TLP area starts at byte 68 (at 64 bits, DW 1 of the
    frame's ninth word) and a frame holds 28 bytes less."""
    descs = run_packer_twin(width, 3, 2000, transport="udp")[0]
    assert len(descs) > 10
    assert max(length for _, length, _ in descs) <= tp.body_capacity(1500, "udp")


def test_packer_twin_agrees_with_frames_closed_by_max_tlps():
    descs, _ = run_packer_twin(128, 7, 1500, max_tlps=3, flush_timeout=40)
    assert max(count for count, _, _ in descs) == 3


def test_the_bench_catches_a_flush_timer_one_cycle_late():
    """The comparison is not vacuous: a twin whose flush timer expires a
    cycle late (``age >= flush_timeout`` for the RTL's ``age + 1``) closes
    its frames a cycle after the RTL does."""
    def late(model):
        model.flush_timeout += 1
    with pytest.raises(AssertionError, match="RTL .* model"):
        run_packer_twin(64, 1, 1500, flush_timeout=5, break_model=late)
