"""The cycle model of the link endpoint (``models/link_cycles.py``) against
the RTL's ReplayBuffer and LinkReceiver, joined as the Bridge joins them, in
amaranth.sim: random stimulus (frames from the peer with random type, seq,
ack and flags, in order, lost, duplicated, reordered; frames stored by a
packer; a framer and MAC taking frames at random), the same inputs to the
model every cycle, and in every cycle every output (the frame offered, its
fields, the verdict, the feedback, the packer's ready, the body reader) and
every counter compared: the model is cycle-exact."""

import dataclasses
import random

import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from tlpoe.models.frame import FLAG_ECN_ECHO
from tlpoe.models.link_cycles import CHOICES, WIDTHS, CycleConfig, CycleEndpoint, RxFrame, TxFrame
from tlpoe.models.wire import HEADER_LEN, FrameType
from tlpoe.rtl.link.link_rx import LinkReceiver
from tlpoe.rtl.link.replay import ReplayBuffer

MAX_WORDS = 4


class Endpoint(Elaboratable):
    """The smallest RTL top with both blocks: the LinkReceiver's feedback
    into the ReplayBuffer, as ``Bridge`` (``rtl/bridge/paths.py``) wires it;
    ``up`` from the TransmitPath's latch (``link_down``, set by the retry
    limit), or, with ``link_state``, driven by the bench as a link state
    machine would."""

    def __init__(self, config, link_state=False):
        c = config
        self.tx = ReplayBuffer(c.width, window=c.window, seq_bits=c.seq_bits,
                               max_retries=c.max_retries, replay_timeout=c.replay_timeout,
                               mode=c.mode)
        self.rx = LinkReceiver(max_words=MAX_WORDS, seq_bits=c.seq_bits, ack_every=c.ack_every,
                               ack_delay=c.ack_delay, nak_timeout=c.nak_timeout, mode=c.mode,
                               window=c.window)
        self.sr = c.mode == "sr"
        self.link_state = link_state
        self.link_down = Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx = self.tx, self.rx
        wiring.connect(m, self.rx.feedback, self.tx.feedback)
        with m.If(self.tx.retry_limit):
            m.d.sync += self.link_down.eq(1)
        if not self.link_state:
            m.d.comb += self.tx.up.eq(~self.link_down)
        return m


def random_config(rng, mode):
    seq_bits = rng.choice((4, 5, 6))
    windows = [w for w in (1, 2, 4, 8, 16) if w < 1 << (seq_bits - 1) and (w > 1 or mode == "gbn")]
    return CycleConfig(
        mode=mode, width=rng.choice(WIDTHS), window=rng.choice(windows), seq_bits=seq_bits,
        max_retries=rng.randint(2, 6), replay_timeout=rng.randint(20, 150),
        nak_timeout=rng.choice((0, rng.randint(4, 60))), ack_every=rng.randint(1, 8),
        ack_delay=rng.randint(1, 50))


class Stimulus:
    """Random inputs for one cycle, from the past only (never from this
    cycle's outputs, so the model and the RTL see the same): the peer's
    frames, the packer, the framer and MAC, the credit loop. The peer's
    acknowledgements change every ``PHASE`` cycles between prompt, sparse
    and none (timeouts; the link goes down)."""

    PHASE = 500

    def __init__(self, rng, config, model, link_state=False):
        self.rng, self.config, self.model = rng, config, model
        # the link state, as a LinkStateMachine drives it: UP and DOWN in
        # turns; `rewind` in the first cycle UP; `drop` (a peer restart) in
        # the first cycle DOWN, with the UP, or (a hostile case) alone
        self.link_state, self.up = link_state, True
        self.left = rng.randint(100, 600) if link_state else 0
        self.mask = (1 << config.seq_bits) - 1
        self.cycle = 0
        self.progress = 0.5             # share of acks that name frames on the wire
        self.rx_frame = None            # offered to the receiver until taken
        self.packer = []                # words still to offer, then the desc
        self.body = []                  # DATA frames taken: [seq, body words left]
        self.on_wire = []               # ... whose last word left: data_sent to come
        self.echo, self.rate_ok = False, True

    def peer_frame(self):
        rng, cfg = self.rng, self.config
        rx, tx = self.model.receiver, self.model.sender
        kind = rng.choices((FrameType.DATA, FrameType.ACK, FrameType.NAK, FrameType.CREDIT),
                           (0.55, 0.3, 0.1, 0.05))[0]
        seq = 0
        if kind == FrameType.DATA:      # in order, after a gap (a loss), behind (a duplicate)
            seq = rx.expected + rng.choices((0, rng.randint(1, cfg.window + 1),
                                             -rng.randint(1, 3)), (0.5, 0.3, 0.2))[0]
        elif kind == FrameType.NAK:     # mostly frames stored; some not sent, some old
            seq = tx.head + rng.randint(-1, tx.unacked)
        ack = rng.choices((tx.on_wire - 1 - rng.randint(0, 2), tx.head - 1 - rng.randint(0, 2),
                           rng.randrange(1 << cfg.seq_bits)),
                          (self.progress, 0.95 - self.progress, 0.05))[0]
        if kind == FrameType.NAK and rng.random() < 0.5:
            ack = seq - 1               # a conforming NAK
        ok = int(rng.random() < 0.95)
        flags = int(rng.random() < 0.9) | (FLAG_ECN_ECHO if rng.random() < 0.1 else 0)
        return RxFrame(ok, int(ok and kind == FrameType.DATA), int(kind),
                       flags, seq & self.mask, ack & self.mask)

    def next(self):
        """This cycle's inputs: the frame offered to the receiver (or None),
        the receiver's downstream ready, and the rest as
        :meth:`CycleEndpoint.step`'s keyword arguments."""
        rng = self.rng
        if self.cycle % self.PHASE == 0:
            self.progress = rng.choice((0.7, 0.7, 0.15, 0.0))
        self.cycle += 1
        if self.rx_frame is None and rng.random() < 0.35:
            self.rx_frame = self.peer_frame()
        if not self.packer and rng.random() < 0.2:
            length = 4 * rng.randint(3, 24)
            wb = self.config.width // 8
            words = (HEADER_LEN + length + wb - 1) // wb - HEADER_LEN // wb
            self.packer = ["word"] * words + [(rng.randint(1, 3), length, rng.randrange(8))]
        data_sent = None
        if self.on_wire and rng.random() < 0.5:
            data_sent = self.on_wire.pop(0)
        offer = self.packer[0] if self.packer else None
        rx_ready = rng.random() < 0.8
        inputs = dict(
            desc=offer if isinstance(offer, tuple) else None, words_valid=offer == "word",
            tx_ready=rng.random() < 0.6, tx_words_ready=rng.random() < 0.7,
            data_sent=data_sent, send_credit=rng.random() < 0.02)
        # congestion control: an echo due now and then (until sent, mostly),
        # the rate limiter closing the gate in spells
        if rng.random() < 0.01:
            self.echo = True
        if rng.random() < 0.02:
            self.rate_ok = not self.rate_ok if self.rate_ok else True
        inputs.update(echo=self.echo, rate_ok=self.rate_ok)
        if self.link_state:
            inputs.update(self.link_inputs())
        return self.rx_frame, rx_ready, inputs

    def link_inputs(self):
        """The link state's inputs: UP and DOWN in turns; ``rewind`` in the
        first cycle UP, with ``adopt`` (a base the peer announced) half the
        time; ``drop`` (a peer restart) in the first cycle DOWN, with the UP,
        or (as a hostile peer could cause) alone."""
        rng = self.rng
        rewind = drop = adopt = False
        self.left -= 1
        if self.left == 0:
            self.up = not self.up
            self.left = rng.randint(100, 600) if self.up else rng.randint(20, 300)
            rewind = self.up
            drop = rng.random() < 0.3
            adopt = self.up and rng.random() < 0.5
        elif rng.random() < 0.002:
            drop = True
        return dict(up=self.up, rewind=rewind, drop=drop, adopt=adopt,
                    adopt_base=rng.randrange(1 << self.config.seq_bits),
                    keepalive_due=rng.random() < (0.03 if self.up else 0.2))

    def after(self, rx_ready, inputs, cycle):
        """Bookkeeping with what happened in the cycle (after the model's step)."""
        if rx_ready:
            self.rx_frame = None
        if cycle.echo_sent and self.rng.random() < 0.9:
            self.echo = False
        if self.packer and cycle.store_ready:
            self.packer.pop(0)
        if cycle.taken and cycle.tx.frame_type == FrameType.DATA:
            self.body.append([cycle.tx.seq, self.model.sender.words_left])
        if cycle.tx_words_valid and inputs["tx_words_ready"]:
            self.body[0][1] -= 1
        if self.body and self.body[0][1] == 0:
            self.on_wire.append(self.body.pop(0)[0])


# --- the BFM: the only code that touches the RTL's signals ------------------------


def drive(ctx, dut, frame, rx_ready, inputs):
    """Set one cycle's inputs on the RTL."""
    tx, rx = dut.tx, dut.rx
    ctx.set(rx.rx.valid, frame is not None)
    if frame is not None:
        ctx.set(rx.rx.payload, frame._asdict())
    ctx.set(rx.out.ready, rx_ready)
    ctx.set(tx.words.valid, inputs["words_valid"])
    ctx.set(tx.desc.valid, inputs["desc"] is not None)
    if inputs["desc"] is not None:
        ctx.set(tx.desc.payload, dict(zip(("count", "length", "tc"), inputs["desc"])))
    ctx.set(tx.tx_desc.ready, inputs["tx_ready"])
    ctx.set(tx.tx_words.ready, inputs["tx_words_ready"])
    ctx.set(tx.data_sent, inputs["data_sent"] is not None)
    ctx.set(tx.data_sent_seq, inputs["data_sent"] or 0)
    ctx.set(tx.send_credit, inputs["send_credit"])
    ctx.set(tx.echo, inputs["echo"])
    ctx.set(tx.rate_ok, inputs["rate_ok"])
    if dut.link_state:
        for name in ("up", "rewind", "drop", "keepalive_due"):
            ctx.set(getattr(tx, name), inputs[name])
        for name in ("up", "adopt", "adopt_base"):
            ctx.set(getattr(rx, name), inputs[name])


def observe(ctx, dut, counters, received):
    """What the RTL shows before the edge (:func:`predict`'s keys)."""
    tx, fb = dut.tx, dut.rx.feedback
    offered = None
    if ctx.get(tx.tx_desc.valid):
        p = ctx.get(tx.tx_desc.payload)
        offered = TxFrame(p.frame_type, p.flags, p.seq, p.ack, p.count, p.length, p.tc)
    got = dict(
        tx=offered, tx_words_valid=ctx.get(tx.tx_words.valid), store_ready=ctx.get(tx.desc.ready),
        link_down=ctx.get(dut.link_down), unacked=ctx.get(tx.unacked),
        rx_ack=(ctx.get(fb.rx_ack), ctx.get(fb.rx_ack_valid)), send_ack=ctx.get(fb.send_ack),
        send_nak=ctx.get(fb.nak_from) if ctx.get(fb.send_nak) else None,
        echo_in=ctx.get(fb.echo_in), echo_sent=ctx.get(tx.echo_sent),
        counters={name: ctx.get(getattr(block, name)) for name, block in counters.items()})
    if received:
        out = ctx.get(dut.rx.out.payload)
        got["verdict"] = ((out.frame.good, out.store, out.release) if dut.sr
                          else (out.good, 0, 0))
    return {key: _norm(value) for key, value in got.items()}


def _norm(value):
    if isinstance(value, tuple):
        return tuple(int(v) if isinstance(v, (bool, int)) else v for v in value)
    return int(value) if isinstance(value, bool) else value


def predict(model, received, inputs):
    """The model's cycle (it steps) as :func:`observe` gives the RTL's."""
    counters, unacked, down = model.counters(), model.sender.unacked, model.link_down
    step = model.step(received=received, **inputs)
    want = dict(
        tx=step.tx, tx_words_valid=step.tx_words_valid, store_ready=step.store_ready,
        link_down=down, unacked=unacked,
        rx_ack=(step.feedback.rx_ack, step.feedback.rx_ack_valid),
        send_ack=step.feedback.send_ack, send_nak=step.feedback.send_nak,
        echo_in=step.feedback.echo_in, echo_sent=step.echo_sent, counters=counters)
    if received is not None:
        want["verdict"] = tuple(step.verdict)
    return {key: _norm(value) for key, value in want.items()}, step


def run_twin(config, seed, cycles, break_model=None, link_state=False):
    """``cycles`` cycles of random stimulus into the RTL and the model
    (``break_model(model)`` first, if given; with ``link_state`` the link
    goes down and up, :meth:`Stimulus.link_inputs`); fails at the first
    cycle where they differ. Returns the events hit (:data:`COVER`)."""
    rng = random.Random(seed)
    events = set()
    dut = Endpoint(config, link_state)
    model = CycleEndpoint(config)
    if break_model:
        break_model(model)
    stim = Stimulus(rng, config, model, link_state)
    counters = {name: dut.tx if hasattr(dut.tx, name) else dut.rx for name in model.counters()}

    async def bench(ctx):
        for cycle_no in range(cycles):
            if cycle_no == cycles // 2:         # the run-time inputs change
                for block, name, value in (
                        (dut.tx, "replay_timeout", rng.randint(20, 150)),
                        (dut.rx, "nak_timeout", rng.choice((0, rng.randint(4, 60)))),
                        (dut.rx, "ack_delay", rng.randint(1, 50))):
                    ctx.set(getattr(block, name), value)
                    setattr(model, name, value)
            frame, rx_ready, inputs = stim.next()
            received = frame if rx_ready else None
            drive(ctx, dut, frame, rx_ready, inputs)
            got = observe(ctx, dut, counters, received is not None)
            committed = model.sender.committed
            want, step = predict(model, received, inputs)
            for key in want:
                assert got[key] == want[key], \
                    f"{config}, seed {seed}, cycle {cycle_no}: {key}: " \
                    f"RTL {got[key]} model {want[key]}"
            events.update(_events(model, committed, step, inputs))
            stim.after(rx_ready and frame is not None, inputs, step)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    events.update(name for name, value in model.counters().items() if value)
    return events


def _events(model, committed, step, inputs):
    """The events of one cycle that :data:`COVER` asks for."""
    if step.taken and step.tx.frame_type == FrameType.KEEPALIVE:
        yield "KEEPALIVE sent " + ("while up" if inputs.get("up", True) else "while down")
    if committed is not None and committed.frame_type != FrameType.KEEPALIVE \
            and not inputs.get("up", True) and model.sender.committed is None:
        yield "frame withdrawn as the link went down"
    if inputs.get("drop") and inputs.get("rewind"):
        yield "restart with the UP"
    if inputs.get("adopt") and step.feedback.send_nak is not None:
        yield "base adopted with a NAK due"
    if committed is not None and committed.frame_type == FrameType.NAK and step.taken \
            and step.tx.frame_type == FrameType.ACK:
        yield "stale NAK sent as an ACK"
    if committed is not None and committed.frame_type == FrameType.DATA and not step.taken \
            and model.sender.committed is None:
        yield "DATA frame withdrawn"
    if step.verdict is not None and step.verdict.release:
        yield "held frames released"
    if model.sender.tail < model.sender.head:
        yield "sequence numbers wrapped"
    if step.taken and step.tx.frame_type == FrameType.ACK and not step.feedback.send_ack:
        yield "ACK frame for the credit loop"
    if step.echo_sent:
        yield f"ECN echo on {step.tx.frame_type.name}"
    if step.feedback.echo_in:
        yield "ECN echo received"
    if committed is None and model.sender.committed is None and not inputs.get("rate_ok", True) \
            and model.sender.send_ptr != model.sender.tail:
        yield "DATA held by the rate limiter"


SEEDS, CYCLES = 8, 3000
#: What the random runs of each mode must hit together.
COVER = {mode: {
    "replays_nak", "replays_timeout", "frames_retransmitted", "link_down_events", "acks_sent",
    "naks_sent", "window_full_cycles", "acks_invalid", "naks_invalid", "frames_accepted",
    "duplicates", "out_of_order", "naks_repeated", "stale NAK sent as an ACK",
    "DATA frame withdrawn", "sequence numbers wrapped", "ACK frame for the credit loop",
    "ECN echo on DATA", "ECN echo on ACK", "ECN echo received",
    "DATA held by the rate limiter",
    *(("out_of_order_buffered", "held frames released") if mode == "sr" else ()),
} for mode in ("gbn", "sr")}


#: ... with the link going down and up (``link_state``).
LINK_COVER = {"replays_link", "frames_dropped", "KEEPALIVE sent while up",
              "KEEPALIVE sent while down", "frame withdrawn as the link went down",
              "restart with the UP", "frames_retransmitted", "replays_nak", "acks_sent",
              "base adopted with a NAK due", "frames_accepted", "duplicates"}


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_model_and_rtl_agree_as_the_link_goes_down_and_up(mode):
    """The link state's inputs (docs/link-state.md): no DATA, ACK or NAK
    while down, KEEPALIVEs, the rewind on UP, the drop on a peer restart,
    every cycle equal."""
    hit = set()
    for seed in range(4):
        config = random_config(random.Random(f"link{mode}{seed}"), mode)
        hit |= run_twin(config, seed, CYCLES, link_state=True)
    assert LINK_COVER <= hit, f"not hit: {LINK_COVER - hit}"


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_model_and_rtl_agree_in_every_cycle(mode):
    hit = set()
    for seed in range(SEEDS):
        config = random_config(random.Random(f"{mode}{seed}"), mode)
        hit |= run_twin(config, seed, CYCLES)
    assert COVER[mode] <= hit, f"not hit: {COVER[mode] - hit}"


def test_the_bench_catches_a_window_that_counts_sent_frames():
    """The comparison is not vacuous: a model whose window counts frames
    sent and not acknowledged (the ns model's rule), not frames stored,
    lets the packer store while the RTL holds it off."""
    def window_counts_sent(model):
        sender = model.sender
        sender.store_ready = lambda: (sender.high - sender.head) % 2 ** sender.config.seq_bits \
            < sender.config.window
    config = random_config(random.Random("gbn0"), "gbn")
    with pytest.raises(AssertionError, match="store_ready: RTL 0 model 1"):
        run_twin(config, 0, CYCLES, break_model=window_counts_sent)


# --- the ns model's choices (CHOICES), selectable in the cycle model ---------------


def run_model(model, cycles, frames=()):
    """``cycles`` cycles of ``model`` with a framer and MAC that take
    everything at once (each DATA frame reported sent the cycle after its
    body) and ``frames``, {cycle: RxFrame} received; returns the Cycles."""
    out, body = [], []
    for cycle_no in range(cycles):
        sent = body.pop(0) if body and body[0][1] == 0 else None
        step = model.step(received=frames.get(cycle_no) if frames else None,
                          tx_ready=True, tx_words_ready=True,
                          data_sent=sent[0] if sent else None)
        if step.taken and step.tx.frame_type == FrameType.DATA:
            body.append([step.tx.seq, model.sender.words_left])
        if body and step.tx_words_valid:
            body[0][1] -= 1
        out.append(step)
    return out


def stored_frames(config, frames):
    """A model with ``frames`` DATA frames stored (nothing sent yet)."""
    model = CycleEndpoint(config)
    for _ in range(frames):
        model.step(desc=(1, 16))
    return model


@pytest.mark.parametrize("choice", ["restart", "keep"])
def test_a_nak_restarts_the_replay_timer_or_not(choice):
    config = CycleConfig(window=4, seq_bits=5, replay_timeout=60, nak_replay_timer=choice)
    model = stored_frames(config, 2)
    nak = RxFrame(1, 0, int(FrameType.NAK), 0, 1, 0)      # resend from 1
    run_model(model, 40, {30: nak})
    assert model.counters()["replays_nak"] == 1
    run_model(model, 40)            # 80 cycles after the first send, 50 after the NAK
    assert model.counters()["replays_timeout"] == (0 if choice == "restart" else 1)


@pytest.mark.parametrize("choice, counted", [("counted", 3), ("not_counted", 2)])
def test_the_expiry_that_puts_the_link_down_is_counted_or_not(choice, counted):
    config = CycleConfig(replay_timeout=20, max_retries=3, final_expiry=choice)
    model = stored_frames(config, 1)
    run_model(model, 200)
    assert model.link_down
    assert model.counters()["replays_timeout"] == counted


@pytest.mark.parametrize("choice, ack_due", [("ack", True), ("ignore", False)])
def test_a_duplicate_before_ack_valid_makes_an_ack_due_or_not(choice, ack_due):
    config = CycleConfig(seq_bits=4, window=4, early_duplicate=choice)
    model = CycleEndpoint(config)
    data = RxFrame(1, 1, int(FrameType.DATA), 0, 15, 0)    # behind expected 0: a duplicate
    model.step(received=data)
    model.step(received=data._replace(seq=0))             # accepted: ack-valid
    assert model.step().feedback.send_ack == ack_due
    assert model.counters()["duplicates"] == 1


@pytest.mark.parametrize("name", list(CHOICES))
def test_the_ns_models_choices_differ_from_the_rtl(name):
    """Each choice of the ns model, selected, makes the twin differ from the
    RTL on the random stimulus (the setting is live, and the RTL's is the
    default)."""
    config = CycleConfig(mode="gbn", width=64, window=4, seq_bits=5, max_retries=2,
                         replay_timeout=40, nak_timeout=20, ack_every=2, ack_delay=10,
                         **{name: CHOICES[name][1]})
    with pytest.raises(AssertionError, match="RTL .* model"):
        run_twin(config, 13, CYCLES)      # a seed on which all three show


def test_reset_returns_to_the_initial_state():
    config = CycleConfig(seq_bits=4, window=4, replay_timeout=20, max_retries=2)
    model = stored_frames(config, 3)
    run_model(model, 100, {5: RxFrame(1, 1, int(FrameType.DATA), 0, 0, 0)})
    assert model.link_down and model.counters()["frames_accepted"] == 1
    model.replay_timeout = 30
    model.reset()
    fresh = CycleEndpoint(dataclasses.replace(config, replay_timeout=30))
    assert model.counters() == fresh.counters() and not model.link_down
    assert run_model(model, 50) == run_model(fresh, 50)
    assert model.replay_timeout == 30       # a run-time input keeps its value


# --- found by the twin ------------------------------------------------------------


def test_a_stale_nak_sent_as_an_ack_frame_counts_as_an_ack():
    """The receiver asks for a NAK while the framer is busy; the gap closes
    before the framer takes it, so it goes out as an ACK frame: that frame
    is an ACK on the wire and counts in ``acks_sent`` (the RTL counted it
    in ``naks_sent`` until the twin found it)."""
    dut = ReplayBuffer(64, window=4, seq_bits=4, mode="gbn")
    fb = dut.feedback

    async def bench(ctx):
        ctx.set(fb.rx_ack_valid, 1)
        ctx.set(fb.rx_ack, 4)
        ctx.set(fb.send_nak, 1)
        ctx.set(fb.nak_from, 5)
        await ctx.tick().repeat(5)              # the NAK committed, the framer busy
        ctx.set(fb.send_nak, 0)                 # frame 5 arrived: the gap closed
        ctx.set(fb.rx_ack, 5)
        ctx.set(fb.nak_from, 6)
        ctx.set(dut.tx_desc.ready, 1)
        await ctx.tick().until(dut.tx_desc.valid)
        assert ctx.get(dut.tx_desc.payload.frame_type) == FrameType.ACK
        await ctx.tick()
        assert (ctx.get(dut.acks_sent), ctx.get(dut.naks_sent)) == (1, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
