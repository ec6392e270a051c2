"""The cycle models of the receive side's framing blocks
(``models/deframing_cycles.py``) against the RTL's Deframer and TlpUnpacker
in amaranth.sim: random stimulus, the same inputs to the model every cycle,
and in every cycle every output and counter compared.

Deframer: good DATA frames, control frames (with and without credit
fields), the hostile mutations of ``tb/hostile.py``, padded frames, back to
back or with gaps between and inside them, and room that comes and goes
(frames dropped for it count in ``overflows``). Compared: each word pushed
(its cycle and bits), each descriptor (its cycle and fields; of a dropped
frame ``ok``, ``good`` and ``words`` only, see the model), the credit fields with
``credits_update``, and every counter, in every cycle."""

import random
from dataclasses import replace

import pytest

from tlpoe.models import transport as tp
from tlpoe.models import wire
from tlpoe.models.deframing_cycles import CycleDeframer, CycleUnpacker, RxDesc
from tlpoe.models.frame import (FLAG_CREDITS_VALID, CREDIT_FIELDS, DropReason, encode_frame,
                               keepalive_fields, pad_to_minimum)
from tlpoe.models.framing_cycles import WIDTHS
from tlpoe.rtl.framing.deframer import Deframer
from tlpoe.rtl.framing.transport import udp_config_init
from tlpoe.rtl.framing.unpacker import TlpUnpacker
from tlpoe.rtl.tlp_header import CLASSES
from tlpoe.tb.bfm import frame_to_beats
from tlpoe.tb.hostile import good_frame, hostile_frame, in_udp
from tlpoe.tb.twin_sim import assert_same, simulate


# --- the Deframer -----------------------------------------------------------------


#: The udp runs' configuration: frames come from PEER to US (its ``peer()``).
US = tp.UdpConfig(src_ip=0x0A00_0105, dst_ip=0x0A00_0207, dst_port=0x88B5)
PEER = US.peer()


def random_frame(rng, mtu=1500, transport="eth"):
    """A frame as a MAC delivers it: a good DATA frame, a control frame, or
    a hostile one; padded to the Ethernet minimum, or not; on ``udp`` in
    the peer's headers, some of them faulty (:func:`~tlpoe.tb.hostile.in_udp`)."""
    credits = {name: rng.getrandbits(16 if name.endswith("data") else 8)
               for name in CREDIT_FIELDS}
    flags = rng.choice((0, 1, FLAG_CREDITS_VALID, 1 | FLAG_CREDITS_VALID))
    roll = rng.random()
    if roll < 0.25:
        frame = encode_frame([], frame_type=rng.choice((1, 2, 3, 4)), seq=rng.getrandbits(32),
                             ack=rng.getrandbits(32), flags=flags, credits=credits)
    else:
        frame = good_frame(rng, seq=rng.getrandbits(32), ack=rng.getrandbits(32), flags=flags,
                           max_tlps=6, mtu=mtu)
        if roll > 0.6:
            frame = hostile_frame(rng, frame, mtu=mtu).data
    if transport == "udp":
        frame = in_udp(rng, frame, PEER)
        if rng.random() < 0.3:          # a congested switch on the way
            frame = tp.mark_ce(frame) or frame
    return pad_to_minimum(frame) if rng.random() < 0.5 else frame


class DeframerStimulus:
    """Frames as beats, with gaps between and (rarely) inside them; room
    high or low in phases."""

    def __init__(self, rng, width, transport="eth"):
        self.rng, self.width, self.transport = rng, width, transport
        self.beats, self.room, self.gap = [], True, 0.0
        self.udp = US if transport == "udp" else None

    def next(self, cycle):
        rng = self.rng
        if cycle % 200 == 0:
            self.gap = rng.choice((0.0, 0.0, 0.3, 0.05))
        if rng.random() < 0.03:
            self.room = rng.random() < 0.8
        if not self.beats:
            self.beats = [(b.data, b.keep, b.last)
                          for b in frame_to_beats(random_frame(rng, transport=self.transport),
                                                  self.width)]
        beat = None
        if rng.random() >= self.gap:
            beat = self.beats.pop(0)
        if self.udp is not None and rng.random() < 0.05:     # our addresses or port change
            self.udp = rng.choice((US, US, US, replace(US, src_ip=0x0A00_0106),
                                   replace(US, dst_port=4791)))
        return dict(beat=beat, room=self.room,
                    **({} if self.udp is None else {"udp": self.udp}))


def deframer_drive(ctx, dut, inputs):
    beat = inputs["beat"]
    ctx.set(dut.frame.valid, beat is not None)
    if beat is not None:
        ctx.set(dut.frame.payload, dict(zip(("data", "keep", "last"), beat)))
    ctx.set(dut.words.ready, inputs["room"])
    ctx.set(dut.desc.ready, inputs["room"])
    if "udp" in inputs:
        ctx.set(dut.udp, udp_config_init(inputs["udp"]))


def _desc_fields(desc):
    """The descriptor as compared: of a dropped frame only ``ok``, ``good``
    and ``words`` (its header may be another frame's: a frame cut short)."""
    if desc is None or desc.ok:
        return desc
    return RxDesc(desc.good, 0, desc.words, 0, desc.ok, 0, 0, 0, 0)


def deframer_observe(ctx, dut):
    desc = credits = None
    if ctx.get(dut.desc.valid):
        p = ctx.get(dut.desc.payload)
        desc = _desc_fields(RxDesc(*(getattr(p, name) for name in RxDesc._fields)))
    fields = {f"credit_{name}_{part}": getattr(ctx.get(dut.credits[k]), part)
              for k, name in enumerate(CLASSES) for part in ("hdr", "data")}
    if ctx.get(dut.credits_update):
        credits = fields
    # a KEEPALIVE's link-state fields: the same bytes, whatever its flags say
    keepalive = keepalive_fields(fields) if desc is not None and desc.ok and \
        desc.frame_type == wire.FrameType.KEEPALIVE else None
    return dict(word=ctx.get(dut.words.payload) if ctx.get(dut.words.valid) else None,
                desc=desc, credits=credits, drops=list(ctx.get(dut.drops)),
                good_frames=ctx.get(dut.good_frames), control_frames=ctx.get(dut.control_frames),
                overflows=ctx.get(dut.overflows), keepalive=keepalive, ce=ctx.get(dut.ce))


def deframer_predict(model, inputs):
    step = model.step(**inputs)
    return dict(step._asdict(), desc=_desc_fields(step.desc)), step


def run_deframer_twin(width, seed, cycles, break_model=None, transport="eth"):
    """``cycles`` cycles of random frames into the Deframer and its twin;
    fails at the first cycle where they differ. Returns the model."""
    rng = random.Random(seed)
    udp = {} if transport == "eth" else {"udp_init": US}
    dut = Deframer(width, transport=transport, **udp)
    model = CycleDeframer(width, transport=transport, **udp)
    if break_model:
        break_model(model)
    stim = DeframerStimulus(rng, width, transport)

    async def bench(ctx):
        for cycle in range(cycles):
            inputs = stim.next(cycle)
            deframer_drive(ctx, dut, inputs)
            got = deframer_observe(ctx, dut)
            want, _ = deframer_predict(model, inputs)
            assert_same(got, want, f"width {width}, seed {seed}, cycle {cycle}")
            await ctx.tick()

    simulate(dut, bench)
    return model


@pytest.mark.parametrize("width", WIDTHS)
def test_deframer_twin_agrees_with_the_rtl_in_every_cycle(width):
    drops = good = control = overflows = 0
    for seed in range(2):
        model = run_deframer_twin(width, seed, 2500)
        drops += sum(model.drops)
        good, control = good + model.good_frames, control + model.control_frames
        overflows += model.overflows
    assert drops > 10 and good > 10 and control > 5 and overflows


@pytest.mark.parametrize("width", WIDTHS)
def test_udp_deframer_twin_agrees_with_the_rtl_in_every_cycle(width):
    """The ``udp`` transport's receive checks (its IPv4 and UDP headers
    faulty now and then, our address and port changing under the frames)
    against the twin, which judges with the transport model."""
    model = run_deframer_twin(width, 5, 4000, transport="udp")
    drops = model.drops
    assert model.ce_frames > 3
    assert drops[DropReason.IP_HEADER] > 2 and drops[DropReason.NOT_OURS] > 2, drops
    assert drops[DropReason.ETHERTYPE] and model.good_frames > 5 and model.control_frames


def test_the_bench_catches_a_udp_deframer_judging_with_an_older_configuration():
    """The cycle at which our address and port are compared is checked: a
    twin that judges a cycle earlier (at the last beat's stage 2) differs."""
    def early(model):
        step = model.step

        def stepped(*, udp=None, **kw):
            if udp is not None:
                model.udp = udp
            if isinstance(model.line[1], tuple):            # judged a cycle early
                model.line[1] = model._judge(*model.line[1])
            return step(**kw)
        model.step = stepped
    with pytest.raises(AssertionError, match="RTL"):
        run_deframer_twin(64, 5, 4000, break_model=early, transport="udp")


def test_the_bench_catches_a_deframer_a_cycle_fast():
    """The comparison is not vacuous: a twin whose verdict comes a cycle
    early (one stage short) differs from the RTL at the first descriptor."""
    def fast(model):
        model.latency -= 1
        model.line = model.line[:-1]
    with pytest.raises(AssertionError, match="desc: RTL None model"):
        run_deframer_twin(64, 0, 300, break_model=fast)


# --- the TlpUnpacker --------------------------------------------------------------


def stored_frame(rng, width, max_words):
    """A frame as the Deframer hands it on: its :class:`RxDesc` and its words."""
    frame = random_frame(rng)
    model = CycleDeframer(width)
    desc = model._judge(frame, True, 0).desc
    words = [b.data for b in frame_to_beats(frame, width)][:max_words]
    return desc._replace(words=len(words)), words


class UnpackerStimulus:
    """Descriptors and words of frames (good, control, hostile), each
    stream with its own gaps, and ``tlp.ready`` at random, in phases."""

    def __init__(self, rng, width, max_words):
        self.rng, self.width, self.max_words = rng, width, max_words
        self.descs, self.words = [], []
        self.rates = (1.0, 1.0, 1.0)

    def next(self, cycle):
        rng = self.rng
        if cycle % 250 == 0:
            self.rates = rng.choice(((1.0, 1.0, 1.0), (1.0, 1.0, 0.5), (0.3, 0.8, 1.0),
                                     (1.0, 0.6, 0.9), (1.0, 1.0, 0.1)))
        while len(self.descs) < 3:
            desc, words = stored_frame(rng, self.width, self.max_words)
            self.descs.append(desc)
            self.words += words
        return dict(desc=self.descs[0] if rng.random() < self.rates[0] else None,
                    word=self.words[0] if rng.random() < self.rates[1] else None,
                    tlp_ready=rng.random() < self.rates[2])

    def after(self, inputs, step):
        if inputs["desc"] is not None and step.desc_ready:
            self.descs.pop(0)
        if inputs["word"] is not None and step.words_ready:
            self.words.pop(0)


def unpacker_drive(ctx, dut, inputs):
    desc, word = inputs["desc"], inputs["word"]
    ctx.set(dut.desc.valid, desc is not None)
    if desc is not None:
        ctx.set(dut.desc.payload, desc._asdict())
    ctx.set(dut.words.valid, word is not None)
    if word is not None:
        ctx.set(dut.words.payload, word)
    ctx.set(dut.tlp.ready, inputs["tlp_ready"])


def unpacker_observe(ctx, dut):
    tlp = None
    if ctx.get(dut.tlp.valid):
        p = ctx.get(dut.tlp.payload)
        tlp = (p.data, p.keep, p.last, p.stamp)
    return dict(desc_ready=ctx.get(dut.desc.ready), words_ready=ctx.get(dut.words.ready),
                tlp=tlp, tlps_out=ctx.get(dut.tlps_out))


def unpacker_predict(model, inputs):
    step = model.step(**inputs)
    return dict(desc_ready=int(step.desc_ready), words_ready=int(step.words_ready),
                tlp=step.tlp, tlps_out=step.tlps_out), step


def run_unpacker_twin(width, seed, cycles, break_model=None):
    """``cycles`` cycles of random frames into the TlpUnpacker and its twin;
    fails at the first cycle where they differ. Returns the model."""
    rng = random.Random(seed)
    max_words = -(-(wire.ETH_LEN + 1500) // (width // 8))
    dut = TlpUnpacker(width, max_words=max_words)
    model = CycleUnpacker(width, max_words=max_words)
    if break_model:
        break_model(model)
    stim = UnpackerStimulus(rng, width, max_words)

    async def bench(ctx):
        for cycle in range(cycles):
            inputs = stim.next(cycle)
            unpacker_drive(ctx, dut, inputs)
            got = unpacker_observe(ctx, dut)
            want, step = unpacker_predict(model, inputs)
            assert_same(got, want, f"width {width}, seed {seed}, cycle {cycle}")
            stim.after(inputs, step)
            await ctx.tick()

    simulate(dut, bench)
    return model


@pytest.mark.parametrize("width", WIDTHS)
def test_unpacker_twin_agrees_with_the_rtl_in_every_cycle(width):
    tlps = 0
    for seed in range(2):
        tlps += run_unpacker_twin(width, seed, 2500).tlps_out
    assert tlps > 50


def test_the_bench_catches_an_unpacker_that_waits_for_a_whole_frame():
    """The comparison is not vacuous: a twin that never sends a beat before
    its frame's area is all in (it ignores ``held >= need``) is late."""
    def sealed_only(model):
        model.need = 1 << 20
        original = model.step

        def step(**inputs):
            shown = original(**inputs)
            model.need = 1 << 20
            return shown
        model.step = step
    with pytest.raises(AssertionError, match="RTL .* model"):
        run_unpacker_twin(64, 0, 500, break_model=sealed_only)
