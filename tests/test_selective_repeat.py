"""amaranth.sim unit tests of selective repeat (the LinkReceiver's verdicts,
NAKs and NAK timer, the ReorderBuffer, and the ReplayBuffer's resend queue),
and of the ReplayBuffer in both modes with ACKs and NAKs that name frames not
sent."""

import gc
import random

import pytest
from amaranth.sim import Simulator

from tlpoe.models.wire import FrameType
from tlpoe.rtl.bridge.bridge import Bridge
from tlpoe.rtl.framing.decapsulator import Decapsulator
from tlpoe.rtl.link.link_rx import LinkReceiver
from tlpoe.rtl.link.reorder import ReorderBuffer
from tlpoe.rtl.link.replay import ReplayBuffer

TIMEOUT = 12


def simulate(dut, *benches, background=()):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in background:
        sim.add_testbench(bench, background=True)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run()


async def put(ctx, stream, payload):
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


# --- LinkReceiver -------------------------------------------------------------


def receiver(bench, nak_timeout=TIMEOUT):
    dut = LinkReceiver(max_words=4, seq_bits=6, nak_timeout=nak_timeout, mode="sr", window=8)

    async def testbench(ctx):
        ctx.set(dut.out.ready, 1)
        await bench(ctx, dut)

    simulate(dut, testbench)


async def data_frame(ctx, dut, seq):
    """One checked DATA frame ``seq`` for one cycle; returns its verdict
    (``good``, ``store``, ``release``)."""
    ctx.set(dut.rx.payload, {"good": 1, "ok": 1, "frame_type": FrameType.DATA, "seq": seq})
    ctx.set(dut.rx.valid, 1)
    verdict = (ctx.get(dut.out.payload.frame.good), ctx.get(dut.out.payload.store),
               ctx.get(dut.out.payload.release))
    await ctx.tick()
    ctx.set(dut.rx.valid, 0)
    return verdict


async def nak_sent(ctx, dut):
    """The replay buffer sends the requested NAK; returns its sequence number."""
    assert ctx.get(dut.feedback.send_nak)
    seq = ctx.get(dut.feedback.nak_from)
    ctx.set(dut.feedback.sent_nak, 1)
    await ctx.tick()
    ctx.set(dut.feedback.sent_nak, 0)
    return seq


async def cycles_until_nak(ctx, dut, limit):
    """As in test_link_rx: the cycle (from 1) in which ``send_nak`` is 1, or None."""
    for cycles in range(1, limit + 1):
        if ctx.get(dut.feedback.send_nak):
            return cycles
        await ctx.tick()
    return None


def test_frames_after_a_gap_are_held_and_released_in_order():
    async def bench(ctx, dut):
        assert await data_frame(ctx, dut, 0) == (1, 0, 0)
        assert await data_frame(ctx, dut, 3) == (0, 1, 0)       # held
        assert [await nak_sent(ctx, dut), await nak_sent(ctx, dut)] == [1, 2]   # one per number
        assert not ctx.get(dut.feedback.send_nak)
        assert await data_frame(ctx, dut, 2) == (0, 1, 0)
        assert await data_frame(ctx, dut, 2) == (0, 0, 0)       # held already: a duplicate
        assert ctx.get(dut.feedback.rx_ack) == 0
        assert await data_frame(ctx, dut, 1) == (1, 0, 2)       # delivered with 2 and 3
        assert ctx.get(dut.feedback.rx_ack) == 3 and ctx.get(dut.frames_accepted) == 4
        assert await data_frame(ctx, dut, 12) == (0, 0, 0)      # 8 ahead: beyond the window
        assert await data_frame(ctx, dut, 1) == (0, 0, 0)       # behind: a duplicate
        assert ctx.get(dut.out_of_order_buffered) == 2
        assert ctx.get(dut.duplicates) == 2 and ctx.get(dut.out_of_order) == 1
        assert await data_frame(ctx, dut, 4) == (1, 0, 0)
        assert ctx.get(dut.feedback.rx_ack) == 4 and not ctx.get(dut.feedback.send_nak)
    receiver(bench)


def test_a_number_that_arrives_before_its_nak_is_not_nakked():
    async def bench(ctx, dut):
        await data_frame(ctx, dut, 0)
        await data_frame(ctx, dut, 4)
        assert await nak_sent(ctx, dut) == 1
        assert await data_frame(ctx, dut, 2) == (0, 1, 0)
        assert await cycles_until_nak(ctx, dut, 3) == 2         # a cycle to skip 2, held
        assert await nak_sent(ctx, dut) == 3
        assert await data_frame(ctx, dut, 6) == (0, 1, 0)       # 5 newly missing
        assert await nak_sent(ctx, dut) == 5
        assert await cycles_until_nak(ctx, dut, 3) is None
    receiver(bench, nak_timeout=0)


def test_nak_timer_repeats_the_lowest_missing_number():
    async def bench(ctx, dut):
        await data_frame(ctx, dut, 0)
        await data_frame(ctx, dut, 3)
        assert await nak_sent(ctx, dut) == 1                    # the timer starts
        assert await nak_sent(ctx, dut) == 2
        assert await cycles_until_nak(ctx, dut, 100) == TIMEOUT    # 1 cycle gone above
        assert ctx.get(dut.feedback.nak_from) == 1 and ctx.get(dut.naks_repeated) == 0
        assert await nak_sent(ctx, dut) == 1
        assert ctx.get(dut.naks_repeated) == 1
        await data_frame(ctx, dut, 1)       # expected moves on to 2, NAKed already:
        assert await cycles_until_nak(ctx, dut, 100) == TIMEOUT + 1    # the timer restarts
        assert await nak_sent(ctx, dut) == 2
        assert ctx.get(dut.naks_repeated) == 2
        await data_frame(ctx, dut, 2)       # no number missing: the timer stops
        assert ctx.get(dut.feedback.rx_ack) == 3
        assert await cycles_until_nak(ctx, dut, 5 * TIMEOUT) is None
    receiver(bench)


def test_repeat_not_yet_sent_is_cancelled_when_the_number_arrives():
    async def bench(ctx, dut):
        await data_frame(ctx, dut, 0)
        await data_frame(ctx, dut, 2)
        assert await nak_sent(ctx, dut) == 1
        assert await cycles_until_nak(ctx, dut, 100) == TIMEOUT + 1
        await data_frame(ctx, dut, 1)
        assert await cycles_until_nak(ctx, dut, 5 * TIMEOUT) is None
        assert ctx.get(dut.naks_repeated) == 0
    receiver(bench)


# --- ReorderBuffer ------------------------------------------------------------

MAX_WORDS, WINDOW = 4, 4

#: (seq, good, store, release, words): what the receive FIFOs hold, in order.
FRAMES = [
    (0, 1, 0, 0, 2),
    (2, 0, 1, 0, 3),        # held
    (3, 0, 1, 0, 1),        # held
    (3, 0, 0, 0, 2),        # a duplicate, passed on undelivered
    (1, 1, 0, 2, 4),        # fills the gap: 1, then 2 and 3
    (6, 0, 1, 0, 2),        # slot 2 again
    (5, 0, 1, 0, 4),
    (4, 1, 0, 2, 1),        # 4, 5, 6
    (7, 1, 0, 0, 3),
]
#: What goes to the unpacker: (index in FRAMES, good).
DELIVERED = [(0, 1), (3, 0), (4, 1), (1, 1), (2, 1), (7, 1), (6, 1), (5, 1), (8, 1)]


def word(tag, index):
    return (tag << 32) | (0xA000 + index)


def test_reorder_buffer_releases_held_frames_after_the_gap():
    dut = ReorderBuffer(64, max_words=MAX_WORDS, window=WINDOW)
    rng = random.Random(5)

    async def descs(ctx):
        for tag, (seq, good, store, release, n) in enumerate(FRAMES):
            await put(ctx, dut.desc, {"frame": {"good": good, "count": 10 + tag, "words": n,
                                                "seq": seq}, "store": store, "release": release})

    async def body(ctx):
        for tag, (_, _, _, _, n) in enumerate(FRAMES):
            for i in range(n):
                await put(ctx, dut.words, word(tag, i))

    async def unpacker(ctx):
        got = []
        for tag, good in DELIVERED:
            n = FRAMES[tag][4]
            ctx.set(dut.out_desc.ready, 1)
            desc, = await ctx.tick().sample(dut.out_desc.payload).until(dut.out_desc.valid)
            ctx.set(dut.out_desc.ready, 0)
            assert (desc.good, desc.count, desc.words) == (good, 10 + tag, n), tag
            data = []
            while len(data) < n:
                ready = rng.random() < 0.6
                ctx.set(dut.out_words.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(dut.out_words.valid,
                                                               dut.out_words.payload)
                if ready and valid:
                    data.append(payload)
            ctx.set(dut.out_words.ready, 0)
            assert data == [word(tag, i) for i in range(n)], tag
            got.append((tag, good))
        assert got == DELIVERED
        for _ in range(20):                 # nothing more comes out
            assert not ctx.get(dut.out_desc.valid) and not ctx.get(dut.out_words.valid)
            await ctx.tick()

    simulate(dut, unpacker, background=(descs, body))


# --- ReplayBuffer -------------------------------------------------------------


def packer_and_framer(dut, frames, sends):
    """Background benches around a ReplayBuffer: a packer storing ``frames``
    frames of two words, and a framer taking every frame offered (unless the
    test lowers ``tx_desc.ready``) and reporting it sent (``data_sent``) in
    the next cycle, appending each DATA frame's sequence number to ``sends``."""
    async def packer(ctx):
        for seq in range(frames):
            for i in range(2):
                await put(ctx, dut.words, word(seq, i))
            await put(ctx, dut.desc, {"count": 1, "length": 16})

    async def framer(ctx):
        ctx.set(dut.tx_words.ready, 1)
        async for _, _, valid, ready, desc in ctx.tick().sample(
                dut.tx_desc.valid, dut.tx_desc.ready, dut.tx_desc.payload):
            ctx.set(dut.data_sent, 0)       # the MAC takes a frame the cycle after
            if valid and ready and desc.frame_type == FrameType.DATA:
                sends.append(desc.seq)
                ctx.set(dut.data_sent, 1)
                ctx.set(dut.data_sent_seq, desc.seq)

    return packer, framer


def replay(bench, frames=4):
    """A selective-repeat ReplayBuffer (window 4) holding ``frames`` frames of
    two words; ``bench(ctx, dut, sends)`` sees every DATA frame sent as its
    sequence number in ``sends`` (the framer takes everything at once unless
    the bench lowers ``tx_desc.ready``)."""
    dut = ReplayBuffer(64, window=4, seq_bits=4, replay_timeout=4000, mode="sr")
    sends = []
    packer, framer = packer_and_framer(dut, frames, sends)

    async def testbench(ctx):
        ctx.set(dut.tx_desc.ready, 1)
        await ctx.tick().repeat(100)
        assert sends == list(range(min(frames, 4)))
        await bench(ctx, dut, sends)

    simulate(dut, testbench, background=(packer, framer))


async def pulse(ctx, dut, kind, seq):
    """One ``ack_in`` or ``nak_in`` pulse for ``seq``."""
    valid, seq_port = (dut.feedback.ack_in, dut.feedback.ack_seq) if kind == "ack" else (dut.feedback.nak_in, dut.feedback.nak_seq)
    ctx.set(valid, 1)
    ctx.set(seq_port, seq)
    await ctx.tick()
    ctx.set(valid, 0)


def test_nak_resends_only_the_named_frame():
    async def bench(ctx, dut, sends):
        await pulse(ctx, dut, "nak", 1)
        await ctx.tick().repeat(100)
        assert sends[4:] == [1]
        assert ctx.get(dut.replays_nak) == 1 and ctx.get(dut.frames_retransmitted) == 1
    replay(bench)


def test_queued_resends_go_lowest_first_and_once():
    async def bench(ctx, dut, sends):
        ctx.set(dut.tx_desc.ready, 0)
        for seq in (3, 2, 3):
            await pulse(ctx, dut, "nak", seq)
        ctx.set(dut.tx_desc.ready, 1)
        await ctx.tick().repeat(100)
        assert sends[4:] == [2, 3]
        assert ctx.get(dut.frames_retransmitted) == 2
    replay(bench)


def test_a_resend_committed_goes_first_and_is_not_queued_again():
    """A resend committed while the framer is busy goes out before the
    frames NAKed after it (lowest first); a NAK for it while it waits does
    not queue it again."""
    async def bench(ctx, dut, sends):
        ctx.set(dut.tx_desc.ready, 0)
        await pulse(ctx, dut, "nak", 3)
        await ctx.tick().repeat(5)              # 3 is committed
        for seq in (2, 1, 3, 2):
            await pulse(ctx, dut, "nak", seq)
        await ctx.tick().repeat(5)
        ctx.set(dut.tx_desc.ready, 1)
        await ctx.tick().repeat(100)
        assert sends[4:] == [3, 1, 2]
        assert ctx.get(dut.frames_retransmitted) == 3
    replay(bench)


def test_acknowledged_frames_are_not_resent():
    async def bench(ctx, dut, sends):
        ctx.set(dut.tx_desc.ready, 0)
        await pulse(ctx, dut, "nak", 1)
        await pulse(ctx, dut, "nak", 3)
        await pulse(ctx, dut, "ack", 1)         # releases 0 and 1: 1 leaves the queue
        await ctx.tick()                        # (the ACK acts one cycle late)
        ctx.set(dut.tx_desc.ready, 1)
        await ctx.tick().repeat(100)
        assert sends[4:] == [3]
        assert ctx.get(dut.unacked) == 2
    replay(bench)


def test_timer_expiry_resends_the_oldest_only():
    async def bench(ctx, dut, sends):
        await pulse(ctx, dut, "ack", 0)
        await ctx.tick()                        # the ACK acts one cycle late
        ctx.set(dut.replay_timeout, 50)
        await ctx.tick().repeat(75)
        assert sends[4:] == [1]                 # the oldest unacknowledged
        assert ctx.get(dut.replays_timeout) == 1
        await ctx.tick().repeat(50)
        assert sends[4:] == [1, 1]
        assert ctx.get(dut.replays_timeout) == 2
    replay(bench)


def test_a_nak_for_a_frame_not_sent_yet_is_ignored():
    async def bench(ctx, dut, sends):
        ctx.set(dut.tx_desc.ready, 0)
        await pulse(ctx, dut, "ack", 1)         # 0, 1 released: frames 4, 5 stored
        await ctx.tick().repeat(20)
        assert ctx.get(dut.unacked) == 4
        await pulse(ctx, dut, "nak", 5)         # stored, not sent yet
        await pulse(ctx, dut, "nak", 2)
        await ctx.tick().repeat(2)              # (the replay comes two cycles late)
        ctx.set(dut.tx_desc.ready, 1)
        await ctx.tick().repeat(100)
        assert sends[4:] == [2, 4, 5]           # the resend first
        assert ctx.get(dut.replays_nak) == 1 and ctx.get(dut.frames_retransmitted) == 1
        assert ctx.get(dut.naks_invalid) == 1
    replay(bench, frames=6)


# --- parameters -----------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("make, name", [
    (lambda: Bridge(64, mode="sw"), "mode"),
    (lambda: ReplayBuffer(64, mode=None), "mode"),
    (lambda: LinkReceiver(max_words=8, mode="SR"), "mode"),
    (lambda: ReplayBuffer(64, window=1, mode="sr"), "window"),
    (lambda: LinkReceiver(max_words=8, window=6, mode="sr"), "window"),
    (lambda: LinkReceiver(max_words=8, seq_bits=4, window=8, mode="sr"), "window"),
    (lambda: ReorderBuffer(64, max_words=8, window=1), "window"),
    (lambda: Decapsulator(64, reorder=ReorderBuffer(64, max_words=8, window=2)), "reorder"),
])
def test_bad_parameter_names_itself(make, name):
    with pytest.raises(ValueError, match=name):
        make()
    gc.collect()        # the half-built components warn here, where it is filtered


# --- ACKs and NAKs naming frames not sent (issue 16, defect 2) -------------------


def held_replay(mode, bench):
    """A ReplayBuffer (window 4) holding three frames of two words that the
    MAC has not taken yet (``tx_desc.ready`` low); ``bench(ctx, dut, sends)``
    then drives it, ``sends`` being every DATA frame sent (sequence numbers)."""
    dut = ReplayBuffer(64, window=4, seq_bits=4, replay_timeout=60, max_retries=3, mode=mode)
    sends = []
    packer, framer = packer_and_framer(dut, 3, sends)

    async def testbench(ctx):
        await ctx.tick().repeat(30)
        assert ctx.get(dut.unacked) == 3 and sends == []
        await bench(ctx, dut, sends)

    simulate(dut, testbench, background=(packer, framer))


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_an_ack_for_frames_stored_but_not_sent_is_counted_and_ignored(mode):
    async def bench(ctx, dut, sends):
        await pulse(ctx, dut, "ack", 1)         # names frames 0 and 1: never sent
        await ctx.tick()
        assert ctx.get(dut.unacked) == 3 and ctx.get(dut.acks_invalid) == 1
        await pulse(ctx, dut, "ack", 6)         # beyond anything stored (ahead of head)
        await ctx.tick()                        # the ACK acts one cycle late
        assert ctx.get(dut.acks_invalid) == 2
        ctx.set(dut.tx_desc.ready, 1)
        await ctx.tick().repeat(40)
        assert sends == [0, 1, 2]               # every frame sent, once
        assert ctx.get(dut.frames_retransmitted) == 0
        await pulse(ctx, dut, "ack", 2)         # now they were sent: released
        await ctx.tick().repeat(5 * 60)         # an idle link: no timer runs
        assert ctx.get(dut.unacked) == 0
        assert ctx.get(dut.replays_timeout) == 0 and ctx.get(dut.link_down_events) == 0
        assert ctx.get(dut.acks_invalid) == 2
    held_replay(mode, bench)


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_an_old_ack_is_not_counted(mode):
    async def bench(ctx, dut, sends):
        ctx.set(dut.tx_desc.ready, 1)
        await ctx.tick().repeat(40)
        await pulse(ctx, dut, "ack", 1)
        await pulse(ctx, dut, "ack", 0)         # behind head: old, not invalid
        await pulse(ctx, dut, "ack", 15)
        await ctx.tick()
        assert ctx.get(dut.unacked) == 1 and ctx.get(dut.acks_invalid) == 0
    held_replay(mode, bench)


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_a_nak_for_a_frame_not_sent_is_counted_and_ignored(mode):
    async def bench(ctx, dut, sends):
        ctx.set(dut.tx_desc.ready, 1)
        await ctx.tick().until(dut.tx_desc.valid & dut.tx_desc.ready)
        ctx.set(dut.tx_desc.ready, 0)           # frame 0 sent; 1 and 2 wait
        await ctx.tick().repeat(5)
        await pulse(ctx, dut, "nak", 2)         # stored, not sent
        await pulse(ctx, dut, "nak", 7)         # never stored
        await ctx.tick()
        assert ctx.get(dut.naks_invalid) == 2 and ctx.get(dut.replays_nak) == 0
        ctx.set(dut.tx_desc.ready, 1)
        await pulse(ctx, dut, "ack", 0)
        await ctx.tick().repeat(40)
        assert sends == [0, 1, 2]               # no rewind, nothing skipped
        assert ctx.get(dut.frames_retransmitted) == 0
    held_replay(mode, bench)


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_a_slot_released_while_its_frame_is_read_is_not_overwritten(mode):
    """An ACK for the frame being read out (a resend after the timer, the
    original since acknowledged) frees its slot with the window full and the
    next frame waiting: that frame is written only after the last word was
    fetched, and the frame on ``tx_words`` is the one stored, word for word."""
    dut = ReplayBuffer(64, window=4, seq_bits=4, replay_timeout=4000, mode=mode)
    words, frames = 8, 6            # length 64: eight body words of 64 bits
    out = []                        # (seq, words) of every DATA frame sent

    async def packer(ctx):
        for seq in range(frames):
            for i in range(words):
                await put(ctx, dut.words, word(seq, i))
            await put(ctx, dut.desc, {"count": 1, "length": 8 * words})

    async def mac(ctx):             # a slow MAC: one word in four cycles
        cycle = 0
        async for _, _, valid, ready, desc, wvalid, wready, payload in ctx.tick().sample(
                dut.tx_desc.valid, dut.tx_desc.ready, dut.tx_desc.payload,
                dut.tx_words.valid, dut.tx_words.ready, dut.tx_words.payload):
            ctx.set(dut.data_sent, 0)
            if valid and ready and desc.frame_type == FrameType.DATA:
                out.append((desc.seq, []))
            if wvalid and wready:
                out[-1][1].append(payload)
                if len(out[-1][1]) == words:    # its last word: the frame is on the wire
                    ctx.set(dut.data_sent, 1)
                    ctx.set(dut.data_sent_seq, out[-1][0])
            cycle += 1
            ctx.set(dut.tx_words.ready, cycle % 4 == 0)

    async def testbench(ctx):
        ctx.set(dut.tx_desc.ready, 1)
        await ctx.tick().until(dut.unacked == 4)
        await ctx.tick().repeat(200)            # frames 0..3 sent; 4 waits for a slot
        assert [seq for seq, _ in out] == [0, 1, 2, 3]
        await pulse(ctx, dut, "nak", 0)         # frame 0 is read out again ...
        await ctx.tick().until(dut.tx_words.valid)
        await ctx.tick().repeat(3)
        await pulse(ctx, dut, "ack", 0)         # ... and acknowledged half way through
        await ctx.tick().repeat(400)
        await pulse(ctx, dut, "ack", 3)         # frees the rest: frame 5 goes too
        await ctx.tick().repeat(400)
        await pulse(ctx, dut, "ack", 5)
        await ctx.tick().repeat(50)
        assert [seq for seq, _ in out][:5] == [0, 1, 2, 3, 0]
        for seq, body in out:
            assert body == [word(seq, i) for i in range(words)], f"frame {seq} garbled"
        assert {seq for seq, _ in out} == set(range(frames))
        assert ctx.get(dut.unacked) == 0

    simulate(dut, testbench, background=(packer, mac))


@pytest.mark.parametrize("mode", ["gbn", "sr"])
@pytest.mark.parametrize("closes", [False, True])
def test_a_nak_committed_goes_out_only_while_the_receiver_asks_for_it(mode, closes):
    """The receiver asks for a NAK of 5 (ack 4) while the framer is busy, so
    the NAK is committed and waits; then, with ``closes``, frame 5 arrives:
    the receiver withdraws its request and acknowledges 5. The NAK must not
    go out then (it would name 5 beside an ack of 5: the full `make ber`
    found one at BER 1e-4 and at 1% drop): the frame goes as an ACK of 5,
    and ``sent_nak`` does not pulse. Otherwise the NAK goes out once, with
    seq 5 and ack 4."""
    dut = ReplayBuffer(64, window=4, seq_bits=4, replay_timeout=4000, mode=mode)
    fb = dut.feedback
    taken = []

    async def framer(ctx):
        async for _, _, valid, ready, desc in ctx.tick().sample(
                dut.tx_desc.valid, dut.tx_desc.ready, dut.tx_desc.payload):
            if valid and ready:
                taken.append((desc.frame_type, desc.seq, desc.ack))

    async def bench(ctx):
        ctx.set(dut.tx_words.ready, 1)
        ctx.set(fb.rx_ack_valid, 1)
        ctx.set(fb.rx_ack, 4)
        ctx.set(fb.send_nak, 1)
        ctx.set(fb.nak_from, 5)
        await ctx.tick().repeat(5)              # committed, the framer busy
        assert not taken
        if closes:
            ctx.set(fb.send_nak, 0)
            ctx.set(fb.rx_ack, 5)
            ctx.set(fb.nak_from, 6)
        ctx.set(dut.tx_desc.ready, 1)
        naks = 0
        for _ in range(20):
            sent = ctx.get(fb.sent_nak)
            naks += sent
            await ctx.tick()
            if sent:
                ctx.set(fb.send_nak, 0)
        assert taken == ([(FrameType.ACK, 0, 5)] if closes else [(FrameType.NAK, 5, 4)]), taken
        assert naks == (0 if closes else 1)

    simulate(dut, bench, background=(framer,))
