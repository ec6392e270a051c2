"""The whole bridge in cycles (``models/bridge.py`` :class:`BridgeModel`)
against the RTL's :class:`~tlpoe.rtl.bridge.bridge.Bridge` in amaranth.sim,
at 64 bits, both link modes: every ``frame_out`` beat, ``tlp_out`` beat,
``tlp_in.ready``, ``link_down``, ``order_irq`` and every field of
``stats`` in every cycle, with the ``cfg`` inputs changed at run time.

The far end (:class:`BridgePeer`) sends DATA frames of random TLPs and of
real ones (writes, reads, split completions: the ordering checkers'
traffic), ACKs and NAKs naming our frames, credit frames (generous, stingy
or beyond half a counter), some hostile; our ``tlp_in`` gets random
TLPs and real ones; the MAC and the TLP side are ready or not, in phases.
"""

import inspect
import random

import pytest

from tlpoe.models.bridge import BridgeConfig, BridgeModel
from tlpoe.models.dcqcn import FULL
from tlpoe.models.frame import (CREDIT_FIELDS, FLAG_ECN_ECHO, DropReason, encode_frame,
                               keepalive_credits, pad_to_minimum)
from tlpoe.models.transport import mark_ce
from tlpoe.models.link_cycles import CycleConfig
from tlpoe.rtl.bridge.bridge import Bridge
from tlpoe.rtl.bridge.registers import CONFIG, decode_stats
from tlpoe.tb.bfm import frame_to_beats
from tlpoe.tb.bridge_twin import BRIDGE_PARAMETERS, bridge_model
from tlpoe.tb.hostile import good_frame, hostile_frame, in_udp
from tlpoe.tb.stimulus import ordering_traffic
from tlpoe.tb.twin_sim import assert_same, simulate

from test_framing_twin import random_tlp, tlp_beats
from test_queues_twin import beats_of

WIDTH = 64


def bridge_config(rng, mode, transport="eth"):
    seq_bits = rng.choice((5, 12))
    return BridgeConfig(CycleConfig(
        mode=mode, width=WIDTH, window=rng.choice((4, 8)), seq_bits=seq_bits,
        max_retries=rng.randint(3, 8), replay_timeout=rng.randint(200, 600),
        nak_timeout=rng.choice((0, rng.randint(40, 200))), ack_every=rng.randint(1, 8),
        ack_delay=rng.randint(5, 80), transport=transport),
        flush_timeout=rng.choice((4, 16, 64)))


class BridgePeer:
    """The far end and the host, from the model's state (the past only)."""

    def __init__(self, rng, model):
        self.rng, self.model = rng, model
        self.mask = (1 << model.config.link.seq_bits) - 1
        self.beats, self.tlp = [], []
        self.real = [bytes(t) for t in ordering_traffic(rng.getrandbits(16), 400)]
        self.rates = (0.3, 0.5, 1.0, 1.0, 0.8, 0.8)
        self.credit_mode = "generous"
        # with the link state machine: the peer's incarnation (it restarts
        # now and then) and KEEPALIVEs that mostly name ours
        self.link_state = model.link.state is not None
        self.incarnation = rng.getrandbits(32) if self.link_state else 0
        self.ce_rate = self.echo_rate = 0.2             # congestion both ways (ecn)

    def credits(self):
        rng, q = self.rng, self.model.tx_queues
        if self.credit_mode == "random" or rng.random() < 0.03:
            return {name: rng.getrandbits(16 if name.endswith("data") else 8)
                    for name in CREDIT_FIELDS}
        grow = (40, 4000) if self.credit_mode == "generous" else (1, 30)
        out = {}
        for k, cls in enumerate(("p", "np", "cpl")):
            h, d = q.consumed[k]
            out[f"credit_{cls}_hdr"] = (h + rng.randint(0, grow[0] // 4 + 1)) & 0xFF
            out[f"credit_{cls}_data"] = (d + rng.randint(0, grow[1])) & 0xFFFF
        return out

    def frame(self):
        rng, ep = self.rng, self.model.link.endpoint
        rx, tx = ep.receiver, ep.sender
        kind = rng.choices((0, 1, 2, 3, 4),
                           (0.55, 0.25, 0.06, 0.1, 0.15 if self.link_state else 0.04))[0]
        progress = self.rates[4]
        ack = rng.choices((tx.on_wire - 1 - rng.randint(0, 2), tx.head - 1,
                           rng.randrange(1 << 32)), (progress, 0.97 - progress, 0.03))[0]
        ack &= self.mask
        flags = rng.choice((3, 3, 3, 1, 2))
        if self.model.link.rate is not None and rng.random() < self.echo_rate:
            flags |= FLAG_ECN_ECHO                      # the peer saw our frames marked
        credits = self.credits()
        if kind == 0:
            in_order = self.rates[5]
            seq = (rx.expected + rng.choices((0, rng.randint(1, 4), -rng.randint(1, 3)),
                                             (in_order, 0.9 - in_order, 0.1))[0]) & self.mask
            if rng.random() < 0.5:
                tlps = [self.real.pop(0) for _ in range(rng.randint(1, 4)) if self.real]
                if not tlps:
                    self.real = [bytes(t) for t in ordering_traffic(rng.getrandbits(16), 400)]
                    tlps = [self.real.pop(0)]
                frame = encode_frame(tlps, seq=seq, ack=ack, flags=flags,
                                     stamps=[rng.randrange(1 << 16) for _ in tlps],
                                     credits=credits)
            else:
                frame = good_frame(rng, seq=seq, ack=ack, flags=flags, max_tlps=4)
        elif kind == 4 and self.link_state:
            frame = self.keepalive(ack, flags)
        else:
            seq = (tx.head + rng.randint(-1, tx.unacked)) & self.mask if kind == 2 else 0
            frame = encode_frame([], frame_type=kind, seq=seq, ack=ack, flags=flags,
                                 credits=credits)
        if rng.random() < 0.05:
            frame = hostile_frame(rng, frame, mtu=1500).data if kind == 0 else frame[:-1]
        if self.model.config.link.transport == "udp":     # from the peer, now and then faulty
            frame = in_udp(rng, frame, self.model._udp_config().peer(), faults=0.05)
            if self.model.link.rate is not None and rng.random() < self.ce_rate:
                frame = mark_ce(frame) or frame         # a congested switch on the way
        return pad_to_minimum(frame)

    def keepalive(self, ack, flags):
        """A KEEPALIVE of the peer: its incarnation (a new one now and
        then: a restart), a state (DOWN, INIT, UP, now and then the
        reserved 3), ours named or not, a base near what we expect."""
        rng, state = self.rng, self.model.link.state
        if rng.random() < 0.1:
            self.incarnation = rng.getrandbits(32)
        fields = dict(incarnation=self.incarnation,
                      peer_incarnation=state.mine if rng.random() < 0.9 else rng.getrandbits(32),
                      peer_known=int(rng.random() < 0.9),
                      state=rng.choices((0, 1, 2, 3), (0.15, 0.35, 0.45, 0.05))[0])
        base = self.model.link.endpoint.receiver.expected + rng.choice((0, 0, 0, 1, -1))
        return encode_frame([], frame_type=4, seq=base & self.mask, ack=ack, flags=flags,
                            credits=keepalive_credits(**fields))

    def host_tlp(self):
        rng = self.rng
        if rng.random() < 0.6:
            if not self.real:
                self.real = [bytes(t) for t in ordering_traffic(rng.getrandbits(16), 400)]
            return beats_of(self.real.pop(0), WIDTH)
        dws = random_tlp(rng, WIDTH, rng.random() < 0.7)
        while len(dws) > 400:       # no larger than the transmit queues (they would wedge)
            dws = random_tlp(rng, WIDTH)
        return [b[:3] for b in tlp_beats(rng, dws, WIDTH)]

    def next(self, cycle):
        rng, model = self.rng, self.model
        if cycle % 300 == 0:    # frame_in, tlp_in, frame_out ready, tlp_out ready, ACKs
            # naming frames on the wire, DATA frames in order
            self.rates = rng.choice(((0.1, 0.5, 1.0, 1.0, 0.8, 0.8), (0.2, 0.9, 0.7, 0.3, 0.7, 0.8),
                                     (0.03, 1.0, 1.0, 1.0, 0.5, 0.8), (0.15, 0.3, 0.2, 1.0, 0.7, 0.7),
                                     (0.1, 0.8, 1.0, 1.0, 0.0, 0.8), (0.15, 0.5, 1.0, 0.05, 0.8, 0.8),
                                     (0.1, 0.5, 1.0, 1.0, 0.8, 0.0), (1.0, 0.5, 1.0, 0.0, 0.8, 0.9)))
            self.credit_mode = rng.choice(("generous", "generous", "stingy", "random"))
        if cycle % 400 == 200:  # the run-time configuration changes
            cfg = model.cfg
            cfg.update(np_accept=int(rng.random() < 0.8), ro_enable=int(rng.random() < 0.8),
                       credits_enable=int(rng.random() < 0.8), channel=rng.getrandbits(16),
                       flush_timeout=rng.randint(1, 80), credit_delay=rng.choice((4, 50, 256)),
                       credit_refresh=rng.choice((0, 100, 700)), ack_delay=rng.randint(5, 80),
                       nak_timeout=rng.choice((0, rng.randint(40, 200))),
                       replay_timeout=rng.randint(200, 600))
            if model.tracker is not None:
                cfg.update(cpl_timeout=rng.choice((0, 1, 2)), hold_time=rng.choice((0, 1)),
                           completer_id=rng.getrandbits(16))
            if model.link.rate is not None:
                cfg.update(dcqcn_registers(rng))
                self.ce_rate, self.echo_rate = rng.choice(((0.2, 0.2), (0.0, 0.0), (0.5, 0.05),
                                                           (0.05, 0.5)))
            if model.config.link.transport == "udp":
                cfg.update(ttl=rng.getrandbits(8), control_dscp=rng.getrandbits(6),
                           dscp=[rng.getrandbits(6) for _ in range(8)],
                           src_port=rng.getrandbits(16))
        frame_in = None
        if self.beats or rng.random() < self.rates[0]:
            if not self.beats:
                self.beats = [(b.data, b.keep, b.last)
                              for b in frame_to_beats(self.frame(), WIDTH)]
            if rng.random() < 0.95:
                frame_in = self.beats.pop(0)
        if not self.tlp:
            self.tlp = self.host_tlp()
        tlp_in = self.tlp[0] if rng.random() < self.rates[1] else None
        return dict(tlp_in=tlp_in, frame_out_ready=rng.random() < self.rates[2],
                    frame_in=frame_in, tlp_out_ready=rng.random() < self.rates[3],
                    order_irq_clear=rng.random() < 0.01)

    def after(self, inputs, out):
        if inputs["tlp_in"] is not None and out.tlp_in_ready:
            self.tlp.pop(0)


def dcqcn_registers(rng):
    """DCQCN's registers for a short run: timers of tens of cycles, a byte
    counter of a few frames, the gate on now and then off."""
    return dict(ecn_enable=int(rng.random() < 0.9), g_shift=rng.randint(1, 10),
                fast_recovery=rng.randint(1, 5), cnp_interval=rng.choice((0, 30, 300)),
                alpha_timer=rng.randint(20, 300), increase_timer=rng.randint(20, 300),
                byte_counter=rng.randint(2000, 20000), ai_rate=rng.randint(0, 3000),
                hai_rate=rng.randint(0, 9000), min_rate=rng.randint(1, 4000),
                line_bytes=rng.choice((8 << 8, 3 << 8, 200)), burst=rng.choice((1538, 300, 9000)))


def configure(ctx, dut, model, inputs):
    cfg = dict(model.cfg)
    ctx.set(dut.dst_mac, cfg.pop("dst_mac"))
    ctx.set(dut.src_mac, cfg.pop("src_mac"))
    cfg["order_irq_clear"] = int(inputs["order_irq_clear"])
    assert set(cfg) == {f.name for f in CONFIG}
    ctx.set(dut.cfg, cfg)


def drive(ctx, dut, inputs):
    tlp, beat = inputs["tlp_in"], inputs["frame_in"]
    ctx.set(dut.tlp_in.valid, tlp is not None)
    if tlp is not None:
        ctx.set(dut.tlp_in.payload, dict(zip(("data", "keep", "last"), tlp)))
    ctx.set(dut.frame_out.ready, inputs["frame_out_ready"])
    ctx.set(dut.frame_in.valid, beat is not None)
    if beat is not None:
        ctx.set(dut.frame_in.payload, dict(zip(("data", "keep", "last"), beat)))
    ctx.set(dut.tlp_out.ready, inputs["tlp_out_ready"])


def observe(ctx, dut, names):
    frame = tlp = None
    if ctx.get(dut.frame_out.valid):
        p = ctx.get(dut.frame_out.payload)
        frame = (p.data, p.keep, p.last)
    if ctx.get(dut.tlp_out.valid):
        p = ctx.get(dut.tlp_out.payload)
        tlp = (p.data, p.keep, p.last)
    stats = decode_stats(ctx.get(dut.stats.as_value()))
    return dict(tlp_in_ready=ctx.get(dut.tlp_in.ready), frame_out=frame, tlp_out=tlp,
                link_down=ctx.get(dut.link_down), order_irq=ctx.get(dut.order_irq),
                **{f"stats.{name}": stats[name] for name in names})


def predict(model, inputs):
    out = model.step(**inputs)
    want = dict(out._asdict(), frame_out=None if out.frame_out is None else tuple(out.frame_out))
    del want["stats"]
    want.update({f"stats.{name}": value for name, value in out.stats.items()})
    return want, out


def run_bridge_model(mode, seed, cycles, *, break_model=None, transport="eth", **params):
    rng = random.Random(f"{mode}{seed}")
    config = bridge_config(rng, mode, transport)
    params = dict(dict(queue_tlps=rng.choice((4, 8)), credit_delay=rng.choice((16, 256))),
                  **params)
    params["queue_depth"] = params.get("queue_depth") or 300 + params["queue_tlps"] * 2
    link = config.link
    dut = Bridge(WIDTH, mtu=config.mtu, window=link.window, seq_bits=link.seq_bits,
                 max_retries=link.max_retries, replay_timeout=link.replay_timeout,
                 nak_timeout=link.nak_timeout, ack_every=link.ack_every,
                 ack_delay=link.ack_delay, flush_timeout=config.flush_timeout, mode=mode,
                 transport=transport, **params)
    model = BridgeModel(config, **params)
    model.cfg.update(dst_mac=rng.getrandbits(48), src_mac=rng.getrandbits(48))
    if params.get("ecn"):
        model.cfg.update(dcqcn_registers(rng), ecn_enable=1)
    if break_model:
        break_model(model)
    peer = BridgePeer(rng, model)
    names = list(BridgeModel(config, **params).step().stats)

    async def bench(ctx):
        for cycle in range(cycles):
            inputs = peer.next(cycle)
            configure(ctx, dut, model, inputs)
            drive(ctx, dut, inputs)
            got = observe(ctx, dut, names)
            want, out = predict(model, inputs)
            assert_same(got, want, f"{mode}, seed {seed}, {config}, {params}, cycle {cycle}")
            peer.after(inputs, out)
            await ctx.tick()

    simulate(dut, bench)
    return model


#: Random runs per mode, 3,000 cycles each: seeds 0 and 1 already move every
#: field of COVER in both modes; a third keeps a margin (4 took 7 s more per mode).
SEEDS = 3
#: The stats fields that the random runs of a mode must move together.
COVER = {"np_room", "order_tlps_checked", "tx_order_tlps_checked", "frames_sent",
         "oversize_drops", "length_errors", "replays_nak", "replays_timeout",
         "frames_retransmitted", "acks_sent", "naks_sent", "window_full_cycles",
         "frames_accepted", "duplicates", "naks_repeated", "drops", "good_frames",
         "control_frames", "tlps_out", "credit_frames", "credits_invalid",
         "credit_stall_cycles", "tlps_sent", "credit_limit", "credits_consumed",
         "credits_advertised"}


def moved(stats):
    return {name for name, value in stats.items()
            if any(v for v in (value if isinstance(value, list) else [value])
                   for v in (v if isinstance(v, tuple) else [v]))}


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_bridge_model_agrees_with_the_rtl_bridge_in_every_cycle(mode):
    hit = set()
    for seed in range(SEEDS):
        model = run_bridge_model(mode, seed, 3000)
        hit |= moved(model.step().stats)
    cover = COVER | ({"out_of_order_buffered"} if mode == "sr" else {"out_of_order"})
    assert cover <= hit, f"not moved: {cover - hit}"


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_bridge_model_agrees_on_the_udp_transport(mode):
    """``transport="udp"``: the frames both ways in IPv4 and UDP (the
    peer's now and then with a header fault), the DSCPs, TTL and source
    port changing under the traffic; every cycle equal."""
    hit, transport_drops = set(), 0
    for seed in range(2):
        model = run_bridge_model(mode, seed, 3000, transport="udp")
        stats = model.step().stats
        hit |= moved(stats)
        transport_drops += stats["drops"][DropReason.IP_HEADER] + \
            stats["drops"][DropReason.NOT_OURS]
    assert {"frames_sent", "good_frames", "tlps_out", "replays_nak", "drops"} <= hit
    assert transport_drops > 0


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_bridge_model_agrees_with_congestion_control(mode):
    """``ecn``: frames from the peer marked CE and carrying its echo, the
    DCQCN registers rewritten under the traffic (the gate on and off);
    every cycle equal, and the rate cut, throttled and echoed."""
    hit, lowest = set(), FULL
    for seed in range(2):
        model = run_bridge_model(mode, seed, 3000, transport="udp", ecn=True)
        stats = model.step().stats
        hit |= moved(stats)
        lowest = min(lowest, model.link.rate.rc)
    assert {"ce_frames", "cnps_sent", "cnps_received", "throttled_cycles", "tlps_out",
            "frames_sent"} <= hit, hit
    assert lowest < FULL


def test_the_bench_catches_a_rate_limiter_that_spends_no_tokens():
    def free(model):
        step = model.link.rate.step
        model.link.rate.step = lambda *, cnp=False, sent_bytes=None: step(cnp=cnp)
    with pytest.raises(AssertionError, match="RTL"):
        run_bridge_model("gbn", 0, 3000, transport="udp", ecn=True, break_model=free)


#: ... with the link state machine (its own counters and the replay
#: buffer's link ones).
LINK_COVER = {"link_up_events", "link_down_events", "peer_restarts", "keepalives_sent",
              "keepalives_received", "replays_link", "frames_dropped", "frames_accepted",
              "tlps_out"}


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_bridge_model_agrees_with_the_link_state_machine(mode):
    """``link_state``: the peer's KEEPALIVEs (restarts, every state, ours
    named or not) take the link up and down; the KEEPALIVEs we send, the
    rewinds, drops and adopted bases, every cycle equal."""
    hit = set()
    for seed in (0, 1) if mode == "gbn" else (1, 2):
        model = run_bridge_model(mode, seed, 3000, link_state=True, keepalive=80, dead=300)
        hit |= moved(model.step().stats)
    assert LINK_COVER <= hit, f"not moved: {LINK_COVER - hit}"


#: ... with the completion tracker (and the link state machine, whose
#: downs and peer restarts it answers).
TRACKER_COVER = {"tracked", "matched", "late_completions", "timeouts", "link_down_completions",
                 "restart_completions", "posted_dropped", "np_contained",
                 "outstanding"}


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_bridge_model_agrees_with_the_completion_tracker(mode):
    """``tracker``: the request tap, the completion gate, the tracker and the
    UR completions merged into ``tlp_out``, the hold timer and containment,
    every cycle equal, with ``cpl_timeout``, ``hold_time`` and
    ``completer_id`` changed at run time."""
    hit = set()
    for seed in (0, 1) if mode == "gbn" else (0, 2):
        model = run_bridge_model(mode, seed, 5000, link_state=True, keepalive=80, dead=300,
                                 tracker=True, tag_bits=8, cpl_timeout=1, hold_time=0,
                                 completer_id=0x0108)
        hit |= moved(model.step().stats)
    assert TRACKER_COVER <= hit, f"not moved: {TRACKER_COVER - hit}"


def test_bridge_model_agrees_when_the_transmit_queues_reorder_illegally():
    """The transmit checker's violations and first violation (and, in this
    run, frames dropped for room: ``overflows``)."""
    model = run_bridge_model("gbn", 5, 3000, reorder_illegally=True)
    stats = model.step().stats
    assert stats["tx_order_violations"] and stats["tx_order_first_valid"]
    assert stats["overflows"]


def test_the_bench_catches_receive_queues_that_ignore_np_accept():
    """The comparison is not vacuous: a model whose receive queues hand
    out non-posted TLPs while ``np_accept`` is clear is seen."""
    def eager(model):
        step = model.rx_queues.step
        model.rx_queues.step = lambda **inputs: step(**{**inputs, "class_enable": 0b111})
    with pytest.raises(AssertionError, match="RTL .* model"):
        for seed in range(SEEDS):
            run_bridge_model("gbn", seed, 3000, break_model=eager)


def test_the_benches_twin_is_built_from_every_bridge_parameter():
    """``tb/bridge_twin.py`` :func:`bridge_model` takes each of the Bridge's
    parameters by its name, to the model's place for it (a parameter the
    Bridge gains fails here until the twin takes it)."""
    assert set(BRIDGE_PARAMETERS) == set(inspect.signature(Bridge).parameters) - {"width"}
    params = dict(mode="sr", window=4, seq_bits=7, max_retries=3, replay_timeout=999,
                  nak_timeout=77, ack_every=5, ack_delay=33, mtu=9000, flush_timeout=9,
                  ethertype=0x88B6, queue_depth=1300, queue_tlps=8, tx_queue_depth=1200,
                  credit_delay=12, credit_refresh=500, reorder_illegally=True)
    model = bridge_model(64, **params)
    link = model.config.link
    assert (link.width, link.mode, link.window, link.seq_bits, link.max_retries,
            link.replay_timeout, link.nak_timeout, link.ack_every, link.ack_delay) == \
        (64, "sr", 4, 7, 3, 999, 77, 5, 33)
    assert (model.config.mtu, model.config.flush_timeout, model.config.ethertype) == \
        (9000, 9, 0x88B6)
    assert model.sizes[:3] == (1300, 8, 1200) and model.sizes.credit_refresh == 500
    assert model.cfg["credit_delay"] == 12 and model.tx_queues.reorder_illegally
    with pytest.raises(ValueError, match="ack_evry"):
        bridge_model(64, ack_evry=2)
