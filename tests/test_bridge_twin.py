"""The compositions of ``models/bridge.py`` against the RTL in amaranth.sim,
every output and counter in every cycle:

* :class:`CycleDecapsulator` against the Decapsulator (both ``hold``
  modes): frames good, control and hostile, back to back or with gaps,
  ``tlp.ready`` in phases that fill its FIFOs (``hold``: ``frame.ready``
  drops between frames; a MAC's side: frames dropped and counted in
  ``overflows``);
* :class:`BridgeModel` against ``LinkCore`` (below): the Bridge's link
  path both ways as ``rtl/bridge/paths.py`` wires it, without the class
  queues and the credit loop.
"""

import dataclasses
import random

import pytest

from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import wiring

from tlpoe.models.bridge import BridgeConfig, CycleDecapsulator
from tlpoe.models.bridge import LinkPath as BridgeModel      # the link path alone
from tlpoe.models.deframing_cycles import frame_words
from tlpoe.models.frame import CREDIT_FIELDS, encode_frame, keepalive_fields, pad_to_minimum
from tlpoe.models.framing_cycles import WIDTHS, FramerConfig
from tlpoe.models.link_cycles import CycleConfig
from tlpoe.models.wire import FrameType
from tlpoe.rtl.framing.decapsulator import Decapsulator
from tlpoe.rtl.framing.encapsulator import Encapsulator
from tlpoe.rtl.link.link_rx import LinkReceiver
from tlpoe.rtl.link.reorder import ReorderBuffer
from tlpoe.rtl.link.replay import ReplayBuffer
from tlpoe.rtl.tlp_header import CLASSES
from tlpoe.tb.bfm import frame_to_beats
from tlpoe.tb.hostile import good_frame, hostile_frame
from tlpoe.tb.twin_sim import assert_same, simulate

from test_deframing_twin import random_frame
from test_framing_twin import random_tlp, tlp_beats


# --- the Decapsulator -------------------------------------------------------------


class FrameSource:
    """Frames as beats with gaps between and inside them, and the TLP
    side's ready, in phases (a slow TLP side fills the FIFOs)."""

    def __init__(self, rng, width):
        self.rng, self.width = rng, width
        self.beats, self.gap, self.ready = [], 0.0, 1.0

    def next(self, cycle):
        rng = self.rng
        if cycle % 300 == 0:
            self.gap, self.ready = rng.choice(((0.0, 1.0), (0.0, 0.05), (0.3, 0.5),
                                               (0.02, 0.9), (0.0, 0.0)))
        if not self.beats:
            self.beats = [(b.data, b.keep, b.last)
                          for b in frame_to_beats(random_frame(rng), self.width)]
        beat = self.beats[0] if rng.random() >= self.gap else None
        return dict(beat=beat, tlp_ready=rng.random() < self.ready)

    def after(self, inputs, frame_ready):
        if inputs["beat"] is not None and frame_ready:
            self.beats.pop(0)


def decap_drive(ctx, dut, inputs):
    beat = inputs["beat"]
    ctx.set(dut.frame.valid, beat is not None)
    if beat is not None:
        ctx.set(dut.frame.payload, dict(zip(("data", "keep", "last"), beat)))
    ctx.set(dut.tlp.ready, inputs["tlp_ready"])


def decap_observe(ctx, dut):
    tlp = credits = None
    if ctx.get(dut.tlp.valid):
        p = ctx.get(dut.tlp.payload)
        tlp = (p.data, p.keep, p.last, p.stamp)
    if ctx.get(dut.credits_update):
        credits = {f"credit_{name}_{part}": getattr(ctx.get(dut.credits[k]), part)
                   for k, name in enumerate(CLASSES) for part in ("hdr", "data")}
    keepalive = None        # a KEEPALIVE that passed the checks: its fields
    if ctx.get(dut.checked) and ctx.get(dut.checked_type) == FrameType.KEEPALIVE:
        keepalive = keepalive_fields({
            f"credit_{name}_{part}": getattr(ctx.get(dut.credits[k]), part)
            for k, name in enumerate(CLASSES) for part in ("hdr", "data")})
    return dict(frame_ready=ctx.get(dut.frame.ready), tlp=tlp, credits=credits,
                drops=list(ctx.get(dut.drops)), good_frames=ctx.get(dut.good_frames),
                control_frames=ctx.get(dut.control_frames), overflows=ctx.get(dut.overflows),
                tlps_out=ctx.get(dut.tlps_out), keepalive=keepalive, ce=ctx.get(dut.ce))


def decap_predict(model, inputs):
    step = model.step(**inputs)
    want = step._asdict()
    del want["desc"]
    want["frame_ready"] = int(step.frame_ready)
    return want, step


def run_decap_twin(width, seed, cycles, *, hold, break_model=None):
    rng = random.Random(seed)
    dut = Decapsulator(width, hold=hold)
    model = CycleDecapsulator(width, hold=hold)
    if break_model:
        break_model(model)
    source = FrameSource(rng, width)

    async def bench(ctx):
        for cycle in range(cycles):
            inputs = source.next(cycle)
            decap_drive(ctx, dut, inputs)
            got = decap_observe(ctx, dut)
            want, step = decap_predict(model, inputs)
            assert_same(got, want, f"width {width}, hold {hold}, seed {seed}, cycle {cycle}")
            source.after(inputs, step.frame_ready)
            await ctx.tick()

    simulate(dut, bench)
    return model


@pytest.mark.parametrize("hold", [True, False])
@pytest.mark.parametrize("width", WIDTHS)
def test_decapsulator_twin_agrees_with_the_rtl_in_every_cycle(width, hold):
    model = run_decap_twin(width, 1, 3000, hold=hold)
    d = model.deframer
    assert model.unpacker.tlps_out > 20 and sum(d.drops) > 5
    assert bool(d.overflows) == (not hold)


def test_the_bench_catches_a_decapsulator_that_admits_a_frame_too_many():
    """The comparison is not vacuous: a twin whose room test allows a few
    words more than the RTL's admits a frame the RTL drops for room."""
    def roomier(model):
        model.depth += 8
    with pytest.raises(AssertionError, match="(control_frames|good_frames|drops|overflows): RTL"):
        run_decap_twin(128, 1, 3000, hold=False, break_model=roomier)


# --- the bridge's link path -------------------------------------------------------


class LinkCore(Elaboratable):
    """The Bridge between its class queues: the transmit path's
    Encapsulator with the ReplayBuffer as its store, and the receive path's
    Decapsulator with the LinkReceiver as its verdict stage (a MAC's side:
    ``hold=False``), joined as ``rtl/bridge/paths.py`` joins them: the
    receiver's feedback to the sender, the framer's ``data_sent`` to it,
    every frame carrying credits (``framer.credits`` and
    ``replay.send_credit`` are left to the bench: the credit loop's), the
    link down from the retry limit until reset (the TransmitPath's latch)."""

    def __init__(self, config):
        link = config.link
        self.replay = ReplayBuffer(link.width, mtu=config.mtu, window=link.window,
                                   seq_bits=link.seq_bits, max_retries=link.max_retries,
                                   replay_timeout=link.replay_timeout, mode=link.mode)
        self.encap = Encapsulator(link.width, mtu=config.mtu, flush_timeout=config.flush_timeout,
                                  ethertype=config.ethertype, link=self.replay, stamped=True)
        self.link_rx = LinkReceiver(max_words=frame_words(link.width, config.mtu),
                                    seq_bits=link.seq_bits, ack_every=link.ack_every,
                                    ack_delay=link.ack_delay, nak_timeout=link.nak_timeout,
                                    mode=link.mode, window=link.window)
        reorder = ReorderBuffer(link.width, max_words=frame_words(link.width, config.mtu),
                                window=link.window) if link.mode == "sr" else None
        self.decap = Decapsulator(link.width, mtu=config.mtu, ethertype=config.ethertype,
                                  verdict=self.link_rx, reorder=reorder, hold=False)
        self.framer = self.encap.framer
        self.link_down = Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.encap, m.submodules.decap = self.encap, self.decap
        wiring.connect(m, self.link_rx.feedback, self.replay.feedback)
        with m.If(self.replay.retry_limit):
            m.d.sync += self.link_down.eq(1)
        m.d.comb += [
            self.replay.up.eq(~self.link_down),
            self.framer.credits_valid.eq(1),
            self.replay.data_sent.eq(self.framer.data_sent),
            self.replay.data_sent_seq.eq(self.framer.data_sent_seq),
        ]
        return m


def random_link_config(rng, mode="gbn"):
    seq_bits = rng.choice((4, 5, 12))
    window = rng.choice([w for w in (2, 4, 8) if w < 1 << (seq_bits - 1)])
    return BridgeConfig(CycleConfig(
        mode=mode, width=rng.choice(WIDTHS), window=window, seq_bits=seq_bits,
        max_retries=rng.randint(2, 8),
        replay_timeout=rng.choice((rng.randint(40, 80), rng.randint(150, 600))),
        nak_timeout=rng.choice((0, rng.randint(20, 200))), ack_every=rng.randint(1, 8),
        ack_delay=rng.randint(5, 80)), flush_timeout=rng.choice((4, 16, 64)))


class Peer:
    """The far end, from the model's state (the past only): DATA frames
    for our receiver (in order mostly; after a gap; duplicates), ACKs and
    NAKs for our sender (naming frames on the wire mostly), credit and
    keep-alive frames, some of them hostile; our TLPs in (the packer's
    random TLPs); the MAC and the TLP side ready or not, in phases."""

    def __init__(self, rng, config, model):
        self.rng, self.config, self.model = rng, config, model
        self.mask = (1 << config.link.seq_bits) - 1
        self.width = config.link.width
        self.beats, self.tlp = [], []
        self.rates = (0.5, 1.0, 1.0, 1.0, 0.7, 0.7)

    def frame(self):
        rng, ep = self.rng, self.model.endpoint
        rx, tx = ep.receiver, ep.sender
        kind = rng.choices((0, 1, 2, 3, 4), (0.55, 0.25, 0.08, 0.07, 0.05))[0]
        progress = self.rates[4]
        ack = rng.choices((tx.on_wire - 1 - rng.randint(0, 2), tx.head - 1,
                           rng.randrange(1 << 32)), (progress, 0.95 - progress, 0.05))[0]
        ack &= self.mask
        flags = rng.choice((1, 1, 3, 3, 0, 2))
        credits = {name: rng.getrandbits(16 if name.endswith("data") else 8)
                   for name in CREDIT_FIELDS}
        if kind == 0:
            in_order = self.rates[5]
            seq = (rx.expected + rng.choices((0, rng.randint(1, 4), -rng.randint(1, 3)),
                                             (in_order, 0.85 - in_order, 0.15))[0]) & self.mask
            frame = good_frame(rng, seq=seq, ack=ack, flags=flags, max_tlps=4)
        else:
            seq = (tx.head + rng.randint(-1, tx.unacked)) & self.mask if kind == 2 else 0
            frame = encode_frame([], frame_type=kind, seq=seq, ack=ack, flags=flags,
                                 credits=credits)
        if rng.random() < 0.1:
            frame = hostile_frame(rng, frame, mtu=1500).data if kind == 0 else frame[:-1]
        return pad_to_minimum(frame)

    def next(self, cycle):
        rng = self.rng
        if cycle % 300 == 0:    # frame_in, tlp_in, frame_out ready, tlp_out ready, the
            # share of ACKs naming frames on the wire, of DATA frames in order
            self.rates = rng.choice(((0.5, 0.5, 1.0, 1.0, 0.7, 0.7), (0.9, 0.9, 0.7, 0.3, 0.7, 0.7),
                                     (0.1, 1.0, 1.0, 1.0, 0.5, 0.7), (0.7, 0.3, 0.2, 1.0, 0.7, 0.7),
                                     (0.0, 0.8, 1.0, 1.0, 0.0, 0.7), (0.5, 0.5, 1.0, 1.0, 0.0, 0.7),
                                     (0.6, 0.5, 1.0, 1.0, 0.7, 0.0),
                                     (1.0, 0.5, 1.0, 0.0, 0.7, 0.7)))
        frame_in = None
        if self.beats or rng.random() < self.rates[0]:
            if not self.beats:
                self.beats = [(b.data, b.keep, b.last)
                              for b in frame_to_beats(self.frame(), self.width)]
            if rng.random() < 0.95:
                frame_in = self.beats.pop(0)
        if not self.tlp:
            self.tlp = tlp_beats(rng, random_tlp(rng, self.width, rng.random() < 0.5),
                                 self.width)
        tlp_in = self.tlp[0] if rng.random() < self.rates[1] else None
        return dict(tlp_in=tlp_in, frame_out_ready=rng.random() < self.rates[2],
                    frame_in=frame_in, tlp_out_ready=rng.random() < self.rates[3],
                    send_credit=rng.random() < 0.01)

    def after(self, inputs, step):
        if inputs["tlp_in"] is not None and step.tlp_in_ready:
            self.tlp.pop(0)


def core_drive(ctx, dut, inputs, model):
    encap, decap = dut.encap, dut.decap
    tlp, beat = inputs["tlp_in"], inputs["frame_in"]
    ctx.set(encap.tlp.valid, tlp is not None)
    if tlp is not None:
        ctx.set(encap.tlp.payload, dict(zip(("data", "keep", "last", "stamp"), tlp)))
    ctx.set(encap.frame.ready, inputs["frame_out_ready"])
    ctx.set(decap.frame.valid, beat is not None)
    if beat is not None:
        ctx.set(decap.frame.payload, dict(zip(("data", "keep", "last"), beat)))
    ctx.set(decap.tlp.ready, inputs["tlp_out_ready"])
    ctx.set(dut.replay.send_credit, inputs["send_credit"])


def core_configure(ctx, dut, model):
    """The run-time inputs: the model's, onto the RTL."""
    cfg = model.framer_config
    encap = dut.encap
    ctx.set(encap.dst_mac, cfg.dst_mac)
    ctx.set(encap.src_mac, cfg.src_mac)
    ctx.set(encap.channel, cfg.channel)
    for k, (hdr, data) in enumerate(cfg.credits):
        ctx.set(dut.framer.credits[k].hdr, hdr)
        ctx.set(dut.framer.credits[k].data, data)
    ctx.set(encap.flush_timeout, model.flush_timeout)
    ctx.set(dut.replay.replay_timeout, model.replay_timeout)
    ctx.set(dut.link_rx.nak_timeout, model.nak_timeout)
    ctx.set(dut.link_rx.ack_delay, model.ack_delay)


def core_observe(ctx, dut, names):
    encap, decap = dut.encap, dut.decap
    frame = tlp = credits = None
    if ctx.get(encap.frame.valid):
        p = ctx.get(encap.frame.payload)
        frame = (p.data, p.keep, p.last)
    if ctx.get(decap.tlp.valid):
        p = ctx.get(decap.tlp.payload)
        tlp = (p.data, p.keep, p.last, p.stamp)
    if ctx.get(decap.credits_update):
        credits = {f"credit_{name}_{part}": getattr(ctx.get(decap.credits[k]), part)
                   for k, name in enumerate(CLASSES) for part in ("hdr", "data")}
    counters = {name: ctx.get(getattr(block, name)) for name, block in names.items()}
    counters["drops"] = list(counters["drops"])
    return dict(tlp_in_ready=ctx.get(encap.tlp.ready), frame_out=frame, tlp_out=tlp,
                peer_credits=credits, link_down=ctx.get(dut.link_down),
                unacked=ctx.get(dut.replay.unacked), counters=counters)


#: The LinkPath's link-state values, which LinkCore (no state machine)
#: does not have (tests/test_bridge_model.py compares them in the Bridge).
LINK_STATE_ONLY = ("link_status", "link_up_events", "peer_restarts", "keepalives_sent",
                   "keepalives_received")


def core_predict(model, inputs):
    step = model.step(**inputs)
    counters = {k: v for k, v in step.counters.items() if k not in LINK_STATE_ONLY}
    want = dict(step._asdict(), tlp_in_ready=int(step.tlp_in_ready),
                link_down=int(step.link_down), counters=counters)
    if step.frame_out is not None:
        want["frame_out"] = tuple(step.frame_out)
    return want, step


def run_core_twin(config, seed, cycles, break_model=None):
    """``cycles`` cycles of the peer's stimulus into ``LinkCore`` and the
    :class:`BridgeModel`; fails at the first cycle where they differ.
    Returns the model."""
    rng = random.Random(seed)
    dut = LinkCore(config)
    model = BridgeModel(config)
    model.framer_config = FramerConfig(rng.getrandbits(48), rng.getrandbits(48),
                                       rng.getrandbits(16),
                                       [(rng.getrandbits(8), rng.getrandbits(16))] * 3, True)
    if break_model:
        break_model(model)
    peer = Peer(rng, config, model)
    blocks = {"oversize_drops": dut.encap, "length_errors": dut.encap,
              "frames_sent": dut.encap, "drops": dut.decap, "good_frames": dut.decap,
              "control_frames": dut.decap, "overflows": dut.decap, "tlps_out": dut.decap}
    for name in model.endpoint.counters():     # (link_down_events: the retry limits)
        blocks[name] = dut.replay if hasattr(dut.replay, name) else dut.link_rx

    async def bench(ctx):
        for cycle in range(cycles):
            if cycle == cycles // 2:            # the run-time inputs change
                model.flush_timeout = rng.randint(1, 80)
                model.replay_timeout = rng.randint(150, 600)
                model.nak_timeout = rng.choice((0, rng.randint(40, 200)))
                model.ack_delay = rng.randint(5, 80)
                model.framer_config = model.framer_config._replace(
                    channel=rng.getrandbits(16), credits=[(1, 2), (3, 4), (5, 6)])
            core_configure(ctx, dut, model)
            inputs = peer.next(cycle)
            core_drive(ctx, dut, inputs, model)
            got = core_observe(ctx, dut, blocks)
            want, step = core_predict(model, inputs)
            assert_same(got, want, f"{config}, seed {seed}, cycle {cycle}")
            peer.after(inputs, step)
            await ctx.tick()

    simulate(dut, bench)
    return model


SEEDS = 6
#: What the random runs must hit together: every counter of the link path.
COVER = {"oversize_drops", "length_errors", "frames_sent", "replays_nak", "replays_timeout",
         "frames_retransmitted", "link_down_events", "acks_sent", "naks_sent",
         "window_full_cycles", "acks_invalid", "naks_invalid", "frames_accepted", "duplicates",
         "out_of_order", "naks_repeated", "drops", "good_frames", "control_frames",
         "overflows", "tlps_out", "every width"}


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_bridge_model_agrees_with_the_link_path_in_every_cycle(mode):
    hit, widths = set(), set()
    for seed in range(SEEDS):
        config = random_link_config(random.Random(f"core{mode}{seed}"), mode)
        config = config._replace(link=dataclasses.replace(config.link,
                                                          width=WIDTHS[seed % len(WIDTHS)]))
        model = run_core_twin(config, seed, 2500)
        hit |= {name for name, value in model.counters().items() if value and any(
            value if isinstance(value, list) else [value])}
        widths.add(config.link.width)
    if widths == set(WIDTHS):
        hit.add("every width")
    cover = COVER | ({"out_of_order_buffered"} if mode == "sr" else set())
    assert cover <= hit, f"not hit: {cover - hit}"


def test_the_bench_catches_a_bridge_that_delivers_without_the_link_verdict():
    """The comparison is not vacuous: a model whose decapsulator stores the
    deframer's ``good`` (not the link receiver's, which withdraws it from
    duplicates and frames after a gap) delivers TLPs the RTL discards."""
    def no_verdict(model):
        step = model.decap.step
        model.decap.step = lambda **inputs: step(**{**inputs, "verdict": None})
    config = random_link_config(random.Random("core0"))
    with pytest.raises(AssertionError, match="tlp_out: RTL None model"):
        run_core_twin(config, 0, 2500, break_model=no_verdict)


def test_the_bench_catches_a_reorder_buffer_that_forgets_its_releases():
    """Selective repeat's reorder buffer is proven here: a twin that drops
    the ``release`` of each verdict (kept frames never delivered) differs."""
    def no_release(model):
        reorder = model.decap.reorder
        step = reorder.step

        def forgetful(*, desc=None, **inputs):
            return step(desc=desc and desc._replace(release=0), **inputs)
        reorder.step = forgetful
    config = random_link_config(random.Random("coresr0"), "sr")
    with pytest.raises(AssertionError, match="RTL .* model"):
        run_core_twin(config, 0, 2500, break_model=no_release)
