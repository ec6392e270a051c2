"""Address / ID translation and access control: the model's rules
(models/translate.py) and the RTL against them (rtl/translate.py, in
amaranth.sim at 64 and 256 bits)."""

import dataclasses
import gc
import random

import pytest
from amaranth.sim import Simulator

from tlpoe.models.tlp import PcieId, Tlp, TlpType
from tlpoe.models.translate import (AccessTable, Function, Reason, Window, route, to_device,
                                    to_host)
from tlpoe.rtl.translate import DeviceFabric, Translator
from tlpoe.tb.bfm import StreamLayout, beats_to_bytes, to_beats
from tlpoe.tb.stimulus import TRANSLATION_TABLE, translation_traffic

TABLE = TRANSLATION_TABLE
HOST_RID, LOCAL_RID = TABLE.host_rid, TABLE.local_rid
W32, W64 = TABLE.windows


def mrd(address, nbytes=64, **kw):
    return Tlp.mem_read(address, nbytes, requester_id=HOST_RID, tag=5, **kw)


# --- the model ----------------------------------------------------------------------

def test_memory_requests_inside_a_window_move_into_the_chassis():
    out, why = to_device(TABLE, mrd(W32.host_base + 0x1230, 64))
    assert why is Reason.FORWARDED
    assert out.address == W32.device_base + 0x1230
    assert int(out.requester_id) == LOCAL_RID and out.tag == 5
    out, why = to_device(TABLE, mrd(W64.host_base + W64.size - 64, 64))
    assert why is Reason.FORWARDED and out.address == W64.device_base + W64.size - 64


@pytest.mark.parametrize("address, nbytes", [
    (W32.host_base - 4, 4),                        # just below
    (W32.host_base + W32.size, 4),                 # just above
    (W32.host_base + W32.size - 4, 8),             # straddles the end
    (0x1000, 64),                                  # nowhere near
])
def test_memory_requests_outside_every_window_are_denied(address, nbytes):
    assert to_device(TABLE, mrd(address, nbytes)) == (None, Reason.ADDRESS)


def test_config_requests_reach_only_assigned_functions():
    cfg = Tlp.cfg_read(PcieId.from_int(0x0108), 4, requester_id=HOST_RID, tag=1)
    out, why = to_device(TABLE, cfg)
    assert why is Reason.FORWARDED and int(out.dest_id) == 0x0400
    assert int(out.requester_id) == LOCAL_RID
    other = dataclasses.replace(cfg, dest_id=PcieId.from_int(0x0200))
    assert to_device(TABLE, other) == (None, Reason.FUNCTION)


def test_completions_find_their_host_and_foreign_ones_are_denied():
    cpl = Tlp(TlpType.CplD, requester_id=LOCAL_RID, completer_id=0x0300, tag=5,
              byte_count=4, data=b"\x01\x02\x03\x04")
    out, why = to_host(TABLE, cpl)
    assert why is Reason.FORWARDED
    assert int(out.requester_id) == HOST_RID and int(out.completer_id) == 0x0100
    stray = dataclasses.replace(cpl, requester_id=PcieId.from_int(0x0020))   # another link's
    assert to_host(TABLE, stray) == (None, Reason.REQUESTER)
    unassigned = dataclasses.replace(cpl, completer_id=PcieId.from_int(0x0500))
    assert to_host(TABLE, unassigned) == (None, Reason.FUNCTION)


def test_host_completions_of_device_reads_get_the_real_requester_back():
    """The host completes a GPU's DMA read to the ID to_host gave the read
    (the function's host_id); into the chassis it must carry the GPU's own
    ID, or the GPU would not recognise it."""
    dma = Tlp.mem_read(0x1_2345_6000, 64, requester_id=0x0400, tag=9)
    seen, _ = to_host(TABLE, dma)
    cpl = Tlp.completion_for(seen, completer_id=HOST_RID, data=bytes(64))
    out, why = to_device(TABLE, cpl)
    assert why is Reason.FORWARDED
    assert int(out.requester_id) == 0x0400 and out.tag == 9
    foreign = dataclasses.replace(cpl, requester_id=PcieId.from_int(0x0400))   # a chassis ID
    assert to_device(TABLE, foreign) == (None, Reason.REQUESTER)


def test_device_requests_pass_only_from_assigned_functions():
    dma = Tlp.mem_write(0x1_2345_6000, b"\x00" * 64, requester_id=0x0400, tag=3)
    out, why = to_host(TABLE, dma)
    assert why is Reason.FORWARDED and int(out.requester_id) == 0x0108
    assert out.address == dma.address
    gpu_b = dataclasses.replace(dma, requester_id=PcieId.from_int(0x0500))
    assert to_host(TABLE, gpu_b) == (None, Reason.REQUESTER)


def test_io_and_messages_are_never_carried():
    io = Tlp.io_read(0x100, requester_id=HOST_RID, tag=1)
    assert to_device(TABLE, io) == (None, Reason.TYPE)
    msg = Tlp(TlpType.Msg, message_code=0x20, requester_id=HOST_RID)
    assert to_device(TABLE, msg) == (None, Reason.TYPE)
    assert to_host(TABLE, msg) == (None, Reason.TYPE)


@pytest.mark.parametrize("kw, match", [
    (dict(host_base=0, size=1000, device_base=0), "power of two"),
    (dict(host_base=0x1800, size=0x1000, device_base=0), "aligned"),
    (dict(host_base=0x8000_0000, size=1 << 24, device_base=0x1_0000_0000), "4 GiB"),
    (dict(host_base=0, size=1 << 33, device_base=1 << 33), "4 GiB"),      # crosses it
])
def test_bad_windows_name_the_problem(kw, match):
    with pytest.raises(ValueError, match=match):
        Window(**kw)


# --- the RTL against the model --------------------------------------------------------

async def program(ctx, dut, table, prefix=""):
    """Write ``table`` through the table ports (``Translator.table_writes``;
    ``host_rid`` and ``local_rid`` named with ``prefix``)."""
    for cycle in Translator.table_writes(table):
        for port, value in cycle.items():
            name = prefix + port if port in ("host_rid", "local_rid") else port
            ctx.set(getattr(dut, name), value)
        await ctx.tick()
    ctx.set(dut.win_we, 0)
    ctx.set(dut.fn_we, 0)


def run_rtl(width, to_dev, to_hst, *, seed):
    """Both directions through a Translator with TABLE written through its
    ports; returns ({direction: TLPs out}, {direction: counters})."""
    dut = Translator(width, windows=2, functions=2)
    layout = StreamLayout.tlp(width)
    rng = random.Random(seed)
    paths = {"to_device": (dut.net_in, dut.dev_out, to_dev),
             "to_host": (dut.dev_in, dut.net_out, to_hst)}
    results = {name: [] for name in paths}
    counters = {}

    async def table(ctx):
        await program(ctx, dut, TABLE)

    def driver(name):
        source, _, tlps = paths[name]

        async def drive(ctx):
            await ctx.tick().repeat(len(TABLE.windows) + len(TABLE.functions) + 1)
            for tlp in tlps:
                for beat in to_beats(tlp.pack(), layout):
                    while rng.random() < 0.2:
                        await ctx.tick()
                    ctx.set(source.valid, 1)
                    ctx.set(source.payload.as_value(), layout.pack(beat))
                    await ctx.tick().until(source.ready)
                    ctx.set(source.valid, 0)
        return drive

    def monitor(name):
        _, sink, tlps = paths[name]

        async def watch(ctx):
            beats = []
            for _ in range(40 * sum(len(t.pack()) // 4 + 4 for t in tlps) + 200):
                ready = rng.random() < 0.7
                ctx.set(sink.ready, ready)
                await ctx.delay(1e-9)
                if ready and ctx.get(sink.valid):
                    beats.append(layout.unpack(ctx.get(sink.payload.as_value())))
                    if beats[-1].last:
                        results[name].append(Tlp.unpack(beats_to_bytes(beats, layout)))
                        beats = []
                await ctx.tick()
            counters[name] = (ctx.get(getattr(dut, f"{name}_forwarded")),
                              [ctx.get(getattr(dut, f"{name}_denied")[r]) for r in Reason])
        return watch

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(table)
    for name in paths:
        sim.add_testbench(driver(name))
        sim.add_testbench(monitor(name))
    sim.run()
    return results, counters


def expected(rule, tlps):
    out, reasons = [], [0] * len(Reason)
    for tlp in tlps:
        translated, why = rule(TABLE, tlp)
        reasons[why] += 1
        if translated is not None:
            out.append(translated)
    return out, reasons


@pytest.mark.parametrize("width", [64, 256])
def test_rtl_translates_and_denies_as_the_model_does(width):
    """Random TLPs of every type, steered at the table, both directions at
    once under random valid gaps and backpressure: the TLPs out are the
    model's translations, bit for bit and in order, and the counters are
    the model's reasons."""
    to_dev = translation_traffic(width, 250, "to_device")
    to_hst = translation_traffic(width + 1, 250, "to_host")
    results, counters = run_rtl(width, to_dev, to_hst, seed=width)
    for name, rule, tlps in (("to_device", to_device, to_dev), ("to_host", to_host, to_hst)):
        want, reasons = expected(rule, tlps)
        got = results[name]
        assert [t.pack() for t in got] == [t.pack() for t in want], name
        forwarded, denied = counters[name]
        assert forwarded == reasons[Reason.FORWARDED] == len(want)
        assert denied[1:] == reasons[1:], (name, denied, reasons)
        possible = set(Reason) - ({Reason.ADDRESS} if name == "to_host" else set())
        assert all(reasons[r] for r in possible), (name, reasons)    # every rule met


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("kw, name", [(dict(windows=0), "windows"),
                                      (dict(functions=65), "functions")])
def test_bad_parameters_name_themselves(kw, name):
    with pytest.raises(ValueError, match=name):
        Translator(64, **kw)
    gc.collect()


# --- the chassis side of several links -------------------------------------------------

TABLE_B = AccessTable(host_rid=0x0000, local_rid=0x0011, windows=TABLE.windows,
                      functions=(Function(host_id=0x0100, device_id=0x0500),))


def test_route_sends_each_tlp_to_its_link():
    cpl = Tlp(TlpType.Cpl, requester_id=0x0011, completer_id=0x0500, tag=1, byte_count=4)
    assert route([TABLE, TABLE_B], cpl) == 1
    dma = Tlp.mem_write(0x1000, b"\0" * 4, requester_id=0x0300, tag=1)
    assert route([TABLE, TABLE_B], dma) == 0
    stray = Tlp.mem_write(0x1000, b"\0" * 4, requester_id=0x0600, tag=1)
    assert route([TABLE, TABLE_B], stray) is None


def run_fabric(width, net_traffic, pcie_traffic, tables, *, seed):
    """A DeviceFabric with ``tables`` written through its ports; returns
    (TLPs out of pcie_out, [TLPs out of net{i}_out], counters)."""
    dut = DeviceFabric(width, hosts=len(tables), windows=2, functions=2)
    layout = StreamLayout.tlp(width)
    rng = random.Random(seed)
    outputs = {"pcie_out": [], **{f"net{i}_out": [] for i in range(len(tables))}}
    counters = {}
    sources = {f"net{i}_in": tlps for i, tlps in enumerate(net_traffic)}
    sources["pcie_in"] = pcie_traffic
    setup_cycles = 2 * len(tables) * 4 + 2

    async def table(ctx):
        for i, t in enumerate(tables):
            ctx.set(dut.tbl_link, i)
            await program(ctx, dut, t, prefix=f"link{i}_")

    def driver(name, tlps):
        port = getattr(dut, name)

        async def drive(ctx):
            await ctx.tick().repeat(setup_cycles)
            for tlp in tlps:
                for beat in to_beats(tlp.pack(), layout):
                    while rng.random() < 0.3:
                        await ctx.tick()
                    ctx.set(port.valid, 1)
                    ctx.set(port.payload.as_value(), layout.pack(beat))
                    await ctx.tick().until(port.ready)
                    ctx.set(port.valid, 0)
        return drive

    total = sum(len(t.pack()) // 4 + 4 for tlps in sources.values() for t in tlps)

    async def watch(ctx):
        beats = {name: [] for name in outputs}
        for _ in range(6 * total + 500):
            for name in outputs:
                port = getattr(dut, name)
                ready = rng.random() < 0.7
                ctx.set(port.ready, ready)
            await ctx.delay(1e-9)
            for name in outputs:
                port = getattr(dut, name)
                if ctx.get(port.ready) and ctx.get(port.valid):
                    beats[name].append(layout.unpack(ctx.get(port.payload.as_value())))
                    if beats[name][-1].last:
                        outputs[name].append(Tlp.unpack(beats_to_bytes(beats[name], layout)))
                        beats[name] = []
            await ctx.tick()
        counters["routed"], counters["unrouted"] = ctx.get(dut.routed), ctx.get(dut.unrouted)
        for i in range(len(tables)):
            for d in ("to_device", "to_host"):
                counters[(i, d)] = (ctx.get(getattr(dut, f"link{i}_{d}_forwarded")),
                                    [ctx.get(getattr(dut, f"link{i}_{d}_denied")[r])
                                     for r in Reason])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(table)
    for name, tlps in sources.items():
        sim.add_testbench(driver(name, tlps))
    sim.add_testbench(watch)
    sim.run()
    return outputs, counters


@pytest.mark.parametrize("width", [64, 256])
def test_fabric_merges_routes_and_judges_each_link_as_the_model_does(width):
    """Two links with their own tables: each host's TLPs reach the chassis
    translated by its own table (each link's order kept in the merge); TLPs
    from the chassis go to the link the model routes them to and are judged
    by that link's table; what no link claims is counted, never delivered."""
    tables = [TABLE, TABLE_B]
    net = [translation_traffic(width + 10 * i, 120, "to_device", t) for i, t in enumerate(tables)]
    pcie = [t for pair in zip(*(translation_traffic(width + 20 + i, 120, "to_host", t)
                                for i, t in enumerate(tables))) for t in pair]
    outputs, counters = run_fabric(width, net, pcie, tables, seed=width)
    # chassis-bound: per link, the model's translations in order
    merged = [t.pack() for t in outputs["pcie_out"]]
    for i, (table, tlps) in enumerate(zip(tables, net)):
        want, reasons = expected_with(table, to_device, tlps)
        mine = {t.pack() for t in want}
        assert [t for t in merged if t in mine] == [t.pack() for t in want], i
        assert counters[(i, "to_device")] == (reasons[0], [0] + reasons[1:]), i
    assert len(merged) == sum(len(expected_with(t, to_device, n)[0])
                              for t, n in zip(tables, net))
    # host-bound: routed by the model, then judged by that link's table
    unrouted = 0
    for i, table in enumerate(tables):
        mine = [t for t in pcie if route(tables, t) == i]
        want, reasons = expected_with(table, to_host, mine)
        assert [t.pack() for t in outputs[f"net{i}_out"]] == [t.pack() for t in want], i
        assert counters[(i, "to_host")] == (reasons[0], [0] + reasons[1:]), i
    unrouted = sum(route(tables, t) is None for t in pcie)
    assert unrouted and counters["unrouted"] == unrouted
    assert counters["routed"] == len(pcie) - unrouted


def expected_with(table, rule, tlps):
    out, reasons = [], [0] * len(Reason)
    for tlp in tlps:
        translated, why = rule(table, tlp)
        reasons[why] += 1
        if translated is not None:
            out.append(translated)
    return out, reasons
