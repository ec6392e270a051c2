"""amaranth.sim unit test of the LinkReceiver's NAK timer: the NAK for a gap
still open ``nak_timeout`` cycles after it was sent is requested again."""

from amaranth.sim import Simulator

from tlpoe.models.wire import FrameType
from tlpoe.rtl.link.link_rx import LinkReceiver

TIMEOUT = 12


def simulate(bench, nak_timeout=TIMEOUT):
    dut = LinkReceiver(max_words=4, seq_bits=6, nak_timeout=nak_timeout)

    async def testbench(ctx):
        ctx.set(dut.out.ready, 1)
        await bench(ctx, dut)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


async def data_frame(ctx, dut, seq):
    """One checked DATA frame with sequence number ``seq``, for one cycle."""
    ctx.set(dut.rx.payload, {"good": 1, "ok": 1, "frame_type": FrameType.DATA, "seq": seq})
    ctx.set(dut.rx.valid, 1)
    await ctx.tick()
    ctx.set(dut.rx.valid, 0)


async def nak_sent(ctx, dut):
    """The replay buffer sends the requested NAK (a one-cycle ``sent_nak``)."""
    assert ctx.get(dut.feedback.send_nak)
    ctx.set(dut.feedback.sent_nak, 1)
    await ctx.tick()
    ctx.set(dut.feedback.sent_nak, 0)


async def cycles_until_nak(ctx, dut, limit):
    """The cycle, counted from 1 for the current one, in which ``send_nak``
    is 1 (None if it stays 0 for ``limit`` cycles). Right after
    :func:`nak_sent` that is the number of cycles since the NAK was sent."""
    for cycles in range(1, limit + 1):
        if ctx.get(dut.feedback.send_nak):
            return cycles
        await ctx.tick()
    return None


async def open_gap(ctx, dut):
    """Frame 0 accepted, frame 2 arrives: a gap at 1, its NAK requested."""
    await data_frame(ctx, dut, 0)
    await data_frame(ctx, dut, 2)
    assert ctx.get(dut.feedback.send_nak) and ctx.get(dut.feedback.nak_from) == 1


def test_nak_repeated_while_the_gap_stays_open():
    async def bench(ctx, dut):
        await open_gap(ctx, dut)
        await nak_sent(ctx, dut)
        assert not ctx.get(dut.feedback.send_nak)
        await data_frame(ctx, dut, 3)       # outstanding NAK, timer running: no new NAK
        assert not ctx.get(dut.feedback.send_nak)
        assert await cycles_until_nak(ctx, dut, 100) == TIMEOUT    # 1 cycle gone above
        assert ctx.get(dut.feedback.nak_from) == 1 and ctx.get(dut.naks_repeated) == 0
        await nak_sent(ctx, dut)            # the repeat is counted when sent
        assert ctx.get(dut.naks_repeated) == 1
        assert await cycles_until_nak(ctx, dut, 100) == TIMEOUT + 1    # and repeats again
        await nak_sent(ctx, dut)
        assert ctx.get(dut.naks_repeated) == 2 and ctx.get(dut.out_of_order) == 2
    simulate(bench)


def test_gap_closed_stops_the_timer():
    async def bench(ctx, dut):
        await open_gap(ctx, dut)
        await nak_sent(ctx, dut)
        await data_frame(ctx, dut, 1)       # the replay arrives: the gap closes
        assert await cycles_until_nak(ctx, dut, 5 * TIMEOUT) is None
        await data_frame(ctx, dut, 4)       # a new gap: its first NAK at once ...
        assert ctx.get(dut.feedback.send_nak) and ctx.get(dut.feedback.nak_from) == 2
        await nak_sent(ctx, dut)
        assert ctx.get(dut.naks_repeated) == 0      # ... which is not a repeat
        assert await cycles_until_nak(ctx, dut, 100) == TIMEOUT + 1
    simulate(bench)


def test_repeat_not_yet_sent_is_cancelled_when_the_gap_closes():
    async def bench(ctx, dut):
        await open_gap(ctx, dut)
        await nak_sent(ctx, dut)
        assert await cycles_until_nak(ctx, dut, 100) == TIMEOUT + 1
        await data_frame(ctx, dut, 1)
        assert not ctx.get(dut.feedback.send_nak)
        assert await cycles_until_nak(ctx, dut, 5 * TIMEOUT) is None
        assert ctx.get(dut.naks_repeated) == 0
    simulate(bench)


def test_nak_timeout_is_a_run_time_input():
    async def bench(ctx, dut):
        assert ctx.get(dut.nak_timeout) == TIMEOUT      # reset value: the parameter
        ctx.set(dut.nak_timeout, 30)
        await open_gap(ctx, dut)
        await nak_sent(ctx, dut)
        assert await cycles_until_nak(ctx, dut, 100) == 31
    simulate(bench)


def test_nak_timeout_0_sends_one_nak_per_gap():
    async def bench(ctx, dut):
        await open_gap(ctx, dut)
        await nak_sent(ctx, dut)
        assert await cycles_until_nak(ctx, dut, 1000) is None
        assert ctx.get(dut.naks_repeated) == 0
    simulate(bench, nak_timeout=0)
