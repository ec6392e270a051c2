"""The Translator's pipeline (rtl/fabric/translate.py) in amaranth.sim: the hazards
its stages bring, one behaviour per test: TLPs back to back, backpressure
in the middle of a TLP, ``ready`` never passed through, the latency."""

import pytest
from amaranth.sim import Simulator

from tlpoe.models.tlp import PcieId, Tlp
from tlpoe.models.translate import LinkTranslator
from tlpoe.rtl.fabric.translate import TABLE_WRITE_ENABLES, Translator, table_writes
from tlpoe.tb.bfm import StreamLayout, beats_to_bytes, to_beats
from tlpoe.tb.stimulus import TRANSLATION_TABLE as TABLE

HOST_RID = TABLE.host_rid
W32 = TABLE.windows[0]


def cfg_read(register, dest=0x0100, tag=9):
    return Tlp.cfg_read(PcieId.from_int(dest), register, requester_id=HOST_RID, tag=tag)


def cfg_write(register, value, dest=0x0100, tag=9):
    return Tlp.cfg_write(PcieId.from_int(dest), register, value.to_bytes(4, "little"),
                         requester_id=HOST_RID, tag=tag)


def mwr(offset, nbytes, tag=0):
    return Tlp.mem_write(W32.host_base + offset, bytes(range(nbytes)), requester_id=HOST_RID,
                         tag=tag)


def run(width, to_dev, *, dev_ready=lambda cycle: True, net_ready=lambda cycle: True,
        gap=lambda cycle: False, cycles=400):
    """``to_dev`` into ``net_in`` with ``valid`` held every cycle but those
    ``gap`` names;
    returns ({port: [(cycle of the first beat, Tlp)]}, [cycle of each TLP's
    first beat in], {cycle: (net_in.ready, dev_out.ready)})."""
    dut = Translator(width, windows=2, functions=2)
    layout = StreamLayout.tlp(width)
    out = {"dev_out": [], "net_out": []}
    starts, readies = [], {}

    async def bench(ctx):
        await load_table(ctx, dut)
        await ctx.tick()
        beats = [(beat, i == 0) for tlp in to_dev
                 for i, beat in enumerate(to_beats(tlp.pack(), layout))]
        partial = {name: [] for name in out}
        for cycle in range(cycles):
            ctx.set(dut.dev_out.ready, dev_ready(cycle))
            ctx.set(dut.net_out.ready, net_ready(cycle))
            if beats and not gap(cycle):
                ctx.set(dut.net_in.valid, 1)
                ctx.set(dut.net_in.payload.as_value(), layout.pack(beats[0][0]))
            else:
                ctx.set(dut.net_in.valid, 0)
            await ctx.delay(1e-9)
            readies[cycle] = (ctx.get(dut.net_in.ready), ctx.get(dut.dev_out.ready))
            if beats and not gap(cycle) and ctx.get(dut.net_in.ready):
                if beats.pop(0)[1]:
                    starts.append(cycle)
            for name in out:
                port = getattr(dut, name)
                if ctx.get(port.valid) and ctx.get(port.ready):
                    partial[name].append((cycle, layout.unpack(ctx.get(port.payload.as_value()))))
                    if partial[name][-1][1].last:
                        tlp = Tlp.unpack(beats_to_bytes([b for _, b in partial[name]], layout))
                        out[name].append((partial[name][0][0], tlp))
                        partial[name] = []
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out, starts, readies


def model(to_dev):
    lt = LinkTranslator(TABLE)
    dev, replies = [], []
    for tlp in to_dev:
        fwd, reply, _ = lt.from_host(tlp)
        dev += [fwd] if fwd else []
        replies += [reply] if reply else []
    return dev, replies


@pytest.mark.parametrize("width", [64, 256, 512])
def test_a_bar_write_then_a_read_back_to_back_reads_the_written_value(width):
    """A BAR write and reads of it with no gap between them: each read's
    answer is the value the write before it left (the shadow is read and
    written in the same stage, so no read overtakes a write)."""
    to_dev = []
    for i, value in enumerate((0xFFFF_FFFF, 0x1234_5678, 0xA5A5_0000)):
        to_dev += [cfg_write(4, value, tag=2 * i), cfg_read(4, tag=2 * i + 1)]
    out, starts, _ = run(width, to_dev)
    _, replies = model(to_dev)
    assert [t.pack() for _, t in out["net_out"]] == [t.pack() for t in replies]
    # back to back: one TLP in per cycle at 256 bits and up (one per two at 64)
    assert all(b - a == (2 if width == 64 else 1) for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("width", [64, 256])
def test_backpressure_in_the_middle_of_tlps_loses_and_reorders_no_beat(width):
    """dev_out's ready drops for a few cycles inside multi-beat TLPs, which
    come back to back, forwarded and denied mixed: dev_out is the model's."""
    to_dev = [mwr(64 * i, 64 + 32 * (i % 3), tag=i) if i % 4 else mwr(-64, 64, tag=i)
              for i in range(12)]
    out, _, _ = run(width, to_dev, dev_ready=lambda c: c % 7 not in (2, 3, 4))
    dev, _ = model(to_dev)
    assert [t.pack() for _, t in out["dev_out"]] == [t.pack() for t in dev]


async def load_table(ctx, dut):
    """Write ``TABLE`` through the Translator's table ports, then lower
    every write enable."""
    for cycle in table_writes(TABLE):
        for port, value in cycle.items():
            ctx.set(getattr(dut, port), value)
        await ctx.tick()
    for name in TABLE_WRITE_ENABLES:
        ctx.set(getattr(dut, name), 0)


def test_at_64_bits_a_tlps_first_beat_waits_for_its_second_through_a_gap():
    """valid drops between the two beats that hold a header: the TLP is
    still judged on its whole header (the address is in the second beat)."""
    to_dev = [mwr(64 * i, 32, tag=i) if i % 2 else mwr(-64, 32, tag=i) for i in range(8)]
    out, _, _ = run(64, to_dev, gap=lambda c: c % 5 in (1, 2))
    dev, _ = model(to_dev)
    assert [t.pack() for _, t in out["dev_out"]] == [t.pack() for t in dev]


def test_net_in_ready_never_follows_dev_out_ready_in_the_same_cycle():
    """With dev_out stalled, net_in still takes beats until the pipeline is
    full, then stops: its ready comes from the pipeline's own state."""
    to_dev = [mwr(64 * i, 64, tag=i) for i in range(8)]
    stalled = 40
    out, _, readies = run(256, to_dev, dev_ready=lambda c: c >= stalled)
    accepted_while_stalled = sum(r for c, (r, _) in readies.items() if c < stalled)
    assert 2 <= accepted_while_stalled < 3 * 8
    # ready never equal to dev_out.ready every cycle (it is not passed through)
    assert any(r != d for r, d in readies.values())
    dev, _ = model(to_dev)
    assert [t.pack() for _, t in out["dev_out"]] == [t.pack() for t in dev]


@pytest.mark.parametrize("width, cycles", [(64, 6), (256, 5), (512, 5)])
def test_a_forwarded_tlps_first_beat_leaves_after_its_pipeline(width, cycles):
    """The documented latency: at 128 bits and up a forwarded TLP's first
    beat, or the bridge's completion of a request, leaves five cycles after
    the request went in (header, lookup, windows, verdict, queue); at 64
    bits six (its second beat completes the header)."""
    out, starts, _ = run(width, [mwr(0, 64)])
    assert out["dev_out"][0][0] - starts[0] == cycles
    out, starts, _ = run(width, [cfg_read(4)])          # answered by the bridge
    assert out["net_out"][0][0] - starts[0] == cycles


@pytest.mark.parametrize("width", [64, 256])
def test_a_table_write_reaches_the_reads_not_yet_judged(width):
    """net_out stalled: two BAR reads are answered (the completion queue
    full), the next waits in the judging stage, two more behind it; the
    table then rewrites that BAR: the reads judged after it see the new
    value, the two before the old one."""
    dut = Translator(width, windows=2, functions=2)
    layout = StreamLayout.tlp(width)
    reads = [cfg_read(4, tag=i) for i in range(5)]
    beats = [b for t in reads for b in to_beats(t.pack(), layout)]
    answers, partial = [], []

    async def bench(ctx):
        await load_table(ctx, dut)
        ctx.set(dut.net_out.ready, 0)
        for cycle in range(120):
            if cycle == 40:                 # the new BAR0 of slot 0, mask kept
                ctx.set(dut.fn_bar_we, 1)
                ctx.set(dut.fn_index, 0)
                ctx.set(dut.fn_bar_index, 0)
                ctx.set(dut.fn_bar_value, 0x7700_0000)
                ctx.set(dut.fn_bar_mask, TABLE.functions[0].bar_masks[0])
            elif cycle == 41:
                ctx.set(dut.fn_bar_we, 0)
            ctx.set(dut.net_out.ready, cycle >= 60)
            ctx.set(dut.net_in.valid, bool(beats))
            if beats:
                ctx.set(dut.net_in.payload.as_value(), layout.pack(beats[0]))
            await ctx.delay(1e-9)
            if beats and ctx.get(dut.net_in.ready):
                beats.pop(0)
            if ctx.get(dut.net_out.valid) and ctx.get(dut.net_out.ready):
                partial.append(layout.unpack(ctx.get(dut.net_out.payload.as_value())))
                if partial[-1].last:
                    answers.append(Tlp.unpack(beats_to_bytes(partial, layout)))
                    partial.clear()
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    old = TABLE.functions[0].bar_values[0]
    assert [int.from_bytes(a.data, "little") for a in answers] == [old] * 2 + [0x7700_0000] * 3


def _write_race(width, table_at):
    """A host's BAR0 write, then reads of BAR0; the table rewrites BAR0 in
    cycle ``table_at`` (``None``: never). Returns (the write's commit
    cycle, the value the last read answers)."""
    dut = Translator(width, windows=2, functions=2)
    layout = StreamLayout.tlp(width)
    tlps = [cfg_write(4, 0x1234_5678, tag=1)] + [cfg_read(4, tag=2 + i) for i in range(8)]
    beats = [b for t in tlps for b in to_beats(t.pack(), layout)]
    commits, answers, partial = [], [], []

    async def bench(ctx):
        await load_table(ctx, dut)
        ctx.set(dut.net_out.ready, 1)
        for cycle in range(100):
            hit = cycle == table_at
            ctx.set(dut.fn_bar_we, hit)
            ctx.set(dut.fn_index, 0)
            ctx.set(dut.fn_bar_index, 0)
            ctx.set(dut.fn_bar_value, 0x7700_0000)
            ctx.set(dut.fn_bar_mask, TABLE.functions[0].bar_masks[0])
            ctx.set(dut.net_in.valid, bool(beats))
            if beats:
                ctx.set(dut.net_in.payload.as_value(), layout.pack(beats[0]))
            await ctx.delay(1e-9)
            if ctx.get(dut.to_device.commit):
                commits.append(cycle)
            if beats and ctx.get(dut.net_in.ready):
                beats.pop(0)
            if ctx.get(dut.net_out.valid) and ctx.get(dut.net_out.ready):
                partial.append(layout.unpack(ctx.get(dut.net_out.payload.as_value())))
                if partial[-1].last:
                    answers.append(Tlp.unpack(beats_to_bytes(partial, layout)))
                    partial.clear()
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    reads = [int.from_bytes(a.data, "little") for a in answers if a.data]
    return commits[0], reads[-1]


@pytest.mark.parametrize("width", [64, 256])
@pytest.mark.parametrize("offset", [-2, -1, 0, 1, 2])
def test_a_table_write_and_a_hosts_write_to_one_bar_in_any_order(width, offset):
    """The table's write wins when both land in one cycle (the host's lands
    a cycle after its commit, and is cancelled then); otherwise the later
    one stands, and a host's write after the table's merges into its value."""
    mask = TABLE.functions[0].bar_masks[0]
    table, host = 0x7700_0000, 0x1234_5678
    commit, _ = _write_race(width, None)
    assert _write_race(width, commit + offset)[0] == commit
    _, last = _write_race(width, commit + offset)
    expect = table if offset >= 0 else (table & ~mask | host & mask) & 0xFFFF_FFFF
    assert last == expect, (hex(last), hex(expect))
