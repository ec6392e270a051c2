"""Address / ID translation and access control: the model's rules
(models/translate.py) and the RTL against them (rtl/fabric/translate.py, in
amaranth.sim at 64 and 256 bits, and briefly at 128 and 512)."""

import dataclasses
import gc
import random

import pytest
from amaranth.sim import Simulator

from tlpoe.models.tlp import CplStatus, PcieId, Tlp, TlpType
from tlpoe.models.translate import (AccessTable, Function, LinkTranslator, Reason, VirtualBar,
                                    Window, route, to_device, to_host, virtual_bars)
from tlpoe.rtl.fabric.translate import TABLE_WRITE_ENABLES, DeviceFabric, Translator, table_writes
from tlpoe.tb.bfm import StreamLayout, beats_to_bytes, to_beats
from tlpoe.tb.scoreboard import match_interleaved
from tlpoe.tb.stimulus import TRANSLATION_TABLE, translation_traffic

TABLE = TRANSLATION_TABLE
HOST_RID, LOCAL_RID = TABLE.host_rid, TABLE.local_rid
W32, W64 = TABLE.windows
GPU = TABLE.functions[0]          # host 0x0100, chassis 0x0300: BAR0 16 MiB, BAR1 64-bit 256 MiB


def mrd(address, nbytes=64, *, tag=5, **kw):
    return Tlp.mem_read(address, nbytes, requester_id=HOST_RID, tag=tag, **kw)


def cfg_read(register, dest=0x0100, *, tag=9, **kw):
    return Tlp.cfg_read(PcieId.from_int(dest), register, requester_id=HOST_RID, tag=tag, **kw)


def cfg_write(register, value, dest=0x0100, *, tag=9, **kw):
    return Tlp.cfg_write(PcieId.from_int(dest), register, value.to_bytes(4, "little"),
                         requester_id=HOST_RID, tag=tag, **kw)


def read_value(reply):
    assert reply.type is TlpType.CplD and reply.status == CplStatus.SC
    return int.from_bytes(reply.data, "little")


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


def test_config_requests_go_into_the_chassis_as_type_1_to_assigned_functions_only():
    for request in (cfg_read(0, dest=0x0108), cfg_read(0, dest=0x0108, type1=True)):
        out, why = to_device(TABLE, request)
        assert why is Reason.FORWARDED and out.type is TlpType.CfgRd1
        assert int(out.dest_id) == 0x0400 and int(out.requester_id) == LOCAL_RID
    out, _ = to_device(TABLE, cfg_write(1, 0x6, first_be=0x3))          # Command
    assert out.type is TlpType.CfgWr1 and out.data == b"\x06\0\0\0" and out.first_be == 0x3
    assert to_device(TABLE, cfg_read(0, dest=0x0200)) == (None, Reason.FUNCTION)


@pytest.mark.parametrize("register", [4, 5, 6, 7, 8, 9, 12])
def test_bar_and_rom_registers_are_answered_locally(register):
    assert to_device(TABLE, cfg_read(register)) == (None, Reason.LOCAL)
    assert to_device(TABLE, cfg_write(register, 0)) == (None, Reason.LOCAL)


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


def test_completions_of_device_reads_get_the_devices_own_id_back():
    """The host completes a DMA read with the Requester ID it saw (the
    function's host ID); the chassis routes the completion by the real one."""
    cpl = Tlp(TlpType.CplD, requester_id=0x0100, completer_id=HOST_RID, tag=7,
              byte_count=4, data=b"\x01\x02\x03\x04")
    out, why = to_device(TABLE, cpl)
    assert why is Reason.FORWARDED
    assert int(out.requester_id) == 0x0300 and out.completer_id == cpl.completer_id
    assert out.tag == 7 and out.data == cpl.data
    foreign = dataclasses.replace(cpl, requester_id=PcieId.from_int(0x0300))  # a chassis ID
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


def test_virtual_bars_give_flags_sizes_and_the_hosts_bases():
    values, masks = virtual_bars([VirtualBar(0, 1 << 16, 0x9000_0000),
                                  VirtualBar(1, 1 << 30, 0x50_4000_0000, True, True)])
    assert values == (0x9000_0000, 0x4000_000C, 0x50, 0, 0, 0)
    assert masks == (0xFFFF_0000, 0xC000_0000, 0xFFFF_FFFF, 0, 0, 0)


@pytest.mark.parametrize("bars, match", [
    ([VirtualBar(0, 100, 0)], "power of two"),
    ([VirtualBar(0, 4096, 0x800)], "aligned"),
    ([VirtualBar(5, 4096, 0, bits64=True)], "out of 0..5"),
    ([VirtualBar(0, 4096, 0, bits64=True), VirtualBar(1, 4096, 0)], "taken"),
])
def test_bad_virtual_bars_name_the_problem(bars, match):
    with pytest.raises(ValueError, match=match):
        virtual_bars(bars)


# --- the link's state: BAR shadows, local completions, counters ---------------------------

def test_bar_sizing_sees_the_shadow_and_never_the_chassis():
    """The driver's dance: read, write all ones, read the size mask, restore."""
    lt = LinkTranslator(TABLE)
    for register, size, flags in ((4, 1 << 24, 0x0), (5, 1 << 28, 0xC)):
        original = read_value(lt.from_host(cfg_read(register))[1])
        out, reply, why = lt.from_host(cfg_write(register, 0xFFFF_FFFF))
        assert (out, why) == (None, Reason.LOCAL)
        assert reply.type is TlpType.Cpl and reply.status == CplStatus.SC
        assert read_value(lt.from_host(cfg_read(register))[1]) == -size & 0xFFFF_FFF0 | flags
        lt.from_host(cfg_write(register, original))
        assert read_value(lt.from_host(cfg_read(register))[1]) == original
    assert lt.bars(0x0100) == GPU.bar_values
    assert lt.counters["to_device_local"] == 10 and lt.counters["to_device_forwarded"] == 0


def test_bar_writes_honour_the_mask_and_the_byte_enables():
    lt = LinkTranslator(TABLE)
    lt.from_host(cfg_write(4, 0x1234_5678, first_be=0b1000))          # the top byte only
    assert lt.bars(0x0100)[0] == 0x1200_0000           # 16 MiB: bits 31..24 writable
    lt.from_host(cfg_write(7, 0xFFFF_FFFF))                            # no BAR there
    assert lt.bars(0x0100)[3] == 0 and lt.bars(0x0108) == TABLE.functions[1].bar_values


def test_the_expansion_rom_reads_zero_and_keeps_no_write():
    lt = LinkTranslator(TABLE)
    out, reply, why = lt.from_host(cfg_write(12, 0xFFFF_F801))
    assert (out, why) == (None, Reason.LOCAL) and reply.status == CplStatus.SC
    assert read_value(lt.from_host(cfg_read(12))[1]) == 0


def test_local_completions_carry_the_requests_ids_and_the_functions_completer_id():
    lt = LinkTranslator(TABLE)
    request = cfg_read(4, dest=0x0108, type1=True, tag=0x2A5, attr=4)
    _, reply, _ = lt.from_host(request)
    assert reply == Tlp.completion_for(request, completer_id=PcieId.from_int(0x0108),
                                       data=(0x8100_0004).to_bytes(4, "little"))
    assert int(reply.requester_id) == HOST_RID and reply.tag == 0x2A5 and reply.attr == 4


def test_denied_non_posted_requests_get_unsupported_request_and_posted_ones_nothing():
    lt = LinkTranslator(TABLE)
    read = mrd(0x1004, 61, tag=0x155, tc=3)
    out, reply, why = lt.from_host(read)
    assert (out, why) == (None, Reason.ADDRESS)
    assert reply.type is TlpType.Cpl and reply.status == CplStatus.UR
    assert int(reply.completer_id) == HOST_RID and int(reply.requester_id) == HOST_RID
    assert (reply.tag, reply.tc, reply.byte_count, reply.lower_address) == (0x155, 3, 61, 0x04)
    scan = cfg_read(0, dest=0x0118)                          # an empty slot
    _, reply, why = lt.from_host(scan)
    assert why is Reason.FUNCTION and reply.status == CplStatus.UR and reply.byte_count == 4
    locked = mrd(0x1000, 4, locked=True)
    assert lt.from_host(locked)[1].type is TlpType.CplLk
    cas = Tlp.atomic(TlpType.CAS, 0x1010, bytes(16), requester_id=HOST_RID, tag=2)
    assert lt.from_host(cas)[1].byte_count == 8
    assert lt.from_host(Tlp.io_write(0x10, b"\1", requester_id=HOST_RID))[1].status == \
        CplStatus.UR
    for posted in (Tlp.mem_write(0x1000, b"\0" * 8, requester_id=HOST_RID),
                   Tlp(TlpType.Msg, message_code=0x20, requester_id=HOST_RID)):
        assert lt.from_host(posted)[:2] == (None, None)
    stray = Tlp(TlpType.Cpl, requester_id=0x0777, completer_id=HOST_RID, byte_count=4)
    assert lt.from_host(stray) == (None, None, Reason.REQUESTER)
    c = lt.counters
    assert c["to_device_unsupported"] == 5
    assert c["to_device_denied"] == [0, 4, 1, 1, 2, 0]     # MRd, MRdLk, CAS, MWr; cfg; cpl; IO, Msg


def test_a_new_table_keeps_the_shadows_of_unchanged_functions_only():
    lt = LinkTranslator(TABLE)
    lt.from_host(cfg_write(4, 0x8000_0000 | 0x0100_0000))
    lt.from_host(cfg_write(4, 0x8300_0000, dest=0x0108))
    moved = Function.with_bars(0x0108, 0x0400, [VirtualBar(0, 4096, 0x9000_0000)])
    lt.table = dataclasses.replace(TABLE, functions=(GPU, moved))
    assert lt.bars(0x0100)[0] == 0x8100_0000                # kept
    assert lt.bars(0x0108) == moved.bar_values              # rewritten: initial values


# --- the RTL against the model --------------------------------------------------------

async def program(ctx, dut, table, prefix=""):
    """Write ``table`` through the table ports (:func:`table_writes`;
    ``host_rid`` and ``local_rid`` named with ``prefix``)."""
    for cycle in table_writes(table):
        for port, value in cycle.items():
            name = prefix + port if port in ("host_rid", "local_rid") else port
            ctx.set(getattr(dut, name), value)
        await ctx.tick()
    for name in TABLE_WRITE_ENABLES:
        ctx.set(getattr(dut, name), 0)


def counters_of(ctx, dut, prefix=""):
    """The counter ports, as the model's ``counters``."""
    return {name: [ctx.get(getattr(dut, prefix + name)[r]) for r in Reason]
            if name.endswith("_denied") else ctx.get(getattr(dut, prefix + name))
            for name in LinkTranslator(TABLE).counters}


def run_rtl(width, to_dev, to_hst, *, seed, table=TABLE, ready=0.7):
    """Both directions through a Translator with ``table`` written through
    its ports; returns ({output port: TLPs out}, counters)."""
    dut = Translator(width, windows=2, functions=2)
    layout = StreamLayout.tlp(width)
    rng = random.Random(seed)
    sources = {"net_in": to_dev, "dev_in": to_hst}
    results = {"dev_out": [], "net_out": []}
    counters = {}
    setup = len(table_writes(table)) + 1

    async def table_(ctx):
        await program(ctx, dut, table)

    def driver(name):
        port, tlps = getattr(dut, name), sources[name]

        async def drive(ctx):
            await ctx.tick().repeat(setup)
            for tlp in tlps:
                for beat in to_beats(tlp.pack(), layout):
                    while rng.random() < 0.2:
                        await ctx.tick()
                    ctx.set(port.valid, 1)
                    ctx.set(port.payload.as_value(), layout.pack(beat))
                    await ctx.tick().until(port.ready)
                    ctx.set(port.valid, 0)
        return drive

    total = sum(len(t.pack()) // 4 + 4 for tlps in sources.values() for t in tlps)

    async def watch(ctx):
        beats = {name: [] for name in results}
        for _ in range(12 * total + 200):
            for name in results:
                ctx.set(getattr(dut, name).ready, rng.random() < ready)
            await ctx.delay(1e-9)
            for name in results:
                port = getattr(dut, name)
                if ctx.get(port.ready) and ctx.get(port.valid):
                    beats[name].append(layout.unpack(ctx.get(port.payload.as_value())))
                    if beats[name][-1].last:
                        results[name].append(Tlp.unpack(beats_to_bytes(beats[name], layout)))
                        beats[name] = []
            await ctx.tick()
        counters.update(counters_of(ctx, dut))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(table_)
    for name in sources:
        sim.add_testbench(driver(name))
    sim.add_testbench(watch)
    sim.run()
    return results, counters


def predicted(table, to_dev, to_hst):
    """The model's outputs: (dev_out, local completions, chassis TLPs to the
    host, counters)."""
    lt = LinkTranslator(table)
    dev_out, replies, net = [], [], []
    for tlp in to_dev:
        out, reply, _ = lt.from_host(tlp)
        dev_out += [out] if out is not None else []
        replies += [reply] if reply is not None else []
    for tlp in to_hst:
        out, _ = lt.from_chassis(tlp)
        net += [out] if out is not None else []
    return dev_out, replies, net, lt.counters


def check_against_model(results, counters, table, to_dev, to_hst):
    dev_out, replies, net, model = predicted(table, to_dev, to_hst)
    assert [t.pack() for t in results["dev_out"]] == [t.pack() for t in dev_out]
    problem = match_interleaved([[t.pack() for t in net], [t.pack() for t in replies]],
                                [t.pack() for t in results["net_out"]])
    assert problem is None, problem
    assert counters == model
    return model


@pytest.mark.parametrize("width", [64, 256])
def test_rtl_translates_denies_and_answers_as_the_model_does(width):
    """Random TLPs of every type, steered at the table (its windows, its
    functions' BAR registers, unassigned functions), both directions at once
    under random valid gaps and backpressure: dev_out is the model's
    translations bit for bit and in order; net_out is the chassis' TLPs as
    the model translates them and the model's own completions (BAR answers,
    URs), each in order, interleaved; the counters are the model's."""
    to_dev = translation_traffic(width, 250, "to_device")
    to_hst = translation_traffic(width + 1, 250, "to_host")
    results, counters = run_rtl(width, to_dev, to_hst, seed=width)
    model = check_against_model(results, counters, TABLE, to_dev, to_hst)
    # every rule met
    assert all(model["to_device_denied"][r] for r in (Reason.ADDRESS, Reason.FUNCTION,
                                                        Reason.REQUESTER, Reason.TYPE))
    assert all(model["to_host_denied"][r] for r in (Reason.FUNCTION, Reason.REQUESTER,
                                                      Reason.TYPE))
    assert model["to_device_local"] > 20 and model["to_device_unsupported"] > 20
    assert model["to_device_forwarded"] and model["to_host_forwarded"]


@pytest.mark.parametrize("width", [128, 512])
def test_rtl_at_the_other_widths(width):
    to_dev = translation_traffic(width, 100, "to_device")
    to_hst = translation_traffic(width + 1, 60, "to_host")
    results, counters = run_rtl(width, to_dev, to_hst, seed=width)
    check_against_model(results, counters, TABLE, to_dev, to_hst)


@pytest.mark.parametrize("width", [64, 256])
def test_rtl_sizes_bars_from_its_shadows(width):
    """The driver's BAR sizing, register by register, through the RTL, then
    writes of some bytes only: the answers are the model's; nothing reaches
    the chassis."""
    to_dev = []
    for dest in (0x0100, 0x0108):
        for register in range(4, 10):
            to_dev += [cfg_read(register, dest), cfg_write(register, 0xFFFF_FFFF, dest),
                       cfg_read(register, dest), cfg_write(register, 0x1234_5678, dest),
                       cfg_read(register, dest)]
            for first_be in (0b0001, 0b0110, 0b1000, 0b0000):
                to_dev += [cfg_write(register, 0xA5C3_F00F, dest, first_be=first_be),
                           cfg_read(register, dest)]
    results, counters = run_rtl(width, to_dev, [], seed=3)
    assert results["dev_out"] == []
    model = check_against_model(results, counters, TABLE, to_dev, [])
    assert model["to_device_local"] == len(to_dev)


@pytest.mark.parametrize("width", [64, 256])
def test_rtl_holds_net_in_while_completions_wait_and_loses_none(width):
    """net_out barely taken: a run of requests the bridge answers, with
    forwarded ones between, all come out, each path in order."""
    to_dev = [cfg_read(4 + i % 6) if i % 3 else mrd(W32.host_base + 64 * i, 8)
              for i in range(40)]
    to_dev += [mrd(0x10 * i, 4) for i in range(20)]                   # UR, all of them
    to_hst = translation_traffic(width + 7, 40, "to_host")
    results, counters = run_rtl(width, to_dev, to_hst, seed=11, ready=0.1)
    check_against_model(results, counters, TABLE, to_dev, to_hst)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("kw, name", [(dict(windows=0), "windows"),
                                      (dict(functions=65), "functions")])
def test_bad_parameters_name_themselves(kw, name):
    with pytest.raises(ValueError, match=name):
        Translator(64, **kw)
    gc.collect()


def test_table_writes_put_each_functions_shadows_before_its_entry():
    cycles = table_writes(TABLE)
    kinds = [next(we for we in TABLE_WRITE_ENABLES if c[we]) for c in cycles]
    assert kinds == ["win_we"] * 2 + (["fn_bar_we"] * 6 + ["fn_we"]) * 2
    assert all(set(TABLE_WRITE_ENABLES) <= set(c) for c in cycles)
    bars = [c for c in cycles if c["fn_bar_we"] and c["fn_index"] == 1]
    assert [(c["fn_bar_value"], c["fn_bar_mask"]) for c in bars] == list(
        zip(TABLE.functions[1].bar_values, TABLE.functions[1].bar_masks))


# --- the chassis side of several links -------------------------------------------------

TABLE_B = AccessTable(host_rid=0x0000, local_rid=0x0011, windows=TABLE.windows,
                      functions=(Function.with_bars(0x0100, 0x0500, [
                          VirtualBar(0, 1 << 20, 0x8000_0000)]),))


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
    setup_cycles = sum(len(table_writes(t)) for t in tables) + 2

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
            counters[i] = counters_of(ctx, dut, prefix=f"link{i}_")

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
    translated by its own table (each link's order kept in the merge), and
    the completions its translator makes go back on its own link; TLPs from
    the chassis go to the link the model routes them to and are judged by
    that link's table; what no link claims is counted, never delivered."""
    tables = [TABLE, TABLE_B]
    net = [translation_traffic(width + 10 * i, 120, "to_device", t) for i, t in enumerate(tables)]
    pcie = [t for pair in zip(*(translation_traffic(width + 20 + i, 120, "to_host", t)
                                for i, t in enumerate(tables))) for t in pair]
    outputs, counters = run_fabric(width, net, pcie, tables, seed=width)
    merged = [t.pack() for t in outputs["pcie_out"]]
    expected_total = 0
    for i, table in enumerate(tables):
        mine = [t for t in pcie if route(tables, t) == i]
        dev_out, replies, to_host_, model = predicted(table, net[i], mine)
        # chassis-bound: this link's translations, in order, among the others'
        want = [t.pack() for t in dev_out]
        assert [t for t in merged if t in set(want)] == want, i
        expected_total += len(want)
        # host-bound: routed by the model, judged by this link's table, with its own replies
        problem = match_interleaved([[t.pack() for t in to_host_], [t.pack() for t in replies]],
                                    [t.pack() for t in outputs[f"net{i}_out"]])
        assert problem is None, (i, problem)
        assert counters[i] == model, i
    assert len(merged) == expected_total
    unrouted = sum(route(tables, t) is None for t in pcie)
    assert unrouted and counters["unrouted"] == unrouted
    assert counters["routed"] == len(pcie) - unrouted
