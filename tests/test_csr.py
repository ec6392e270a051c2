"""The CSR register block generated from SystemRDL (rtl/csr), in amaranth.sim:
every field's reset, read and write through AXI4-Lite, counters, strobes,
errors, byte strobes, back-to-back traffic; bad RDL refused by name."""

import random

import pytest
from amaranth.sim import Simulator

from tlpoe.rtl.bridge.bridge_csr import BridgeCsr
from tlpoe.rtl.csr import CsrBlock, CsrError, Resp, load
from tlpoe.rtl.fabric.fabric_csr import FabricCsr

MAPS = {"fabric": dict(HOSTS=2), "bridge": {}}


class Axil:
    """An AXI4-Lite manager for amaranth.sim testbenches (``ctx``, ``bus``)."""

    def __init__(self, ctx, bus, rng=None, gaps=False):
        self.ctx, self.bus, self.rng, self.gaps = ctx, bus, rng or random.Random(1), gaps

    async def _idle(self):
        if self.gaps:
            for _ in range(self.rng.randrange(3)):
                await self.ctx.tick()

    async def write(self, address, value, strb=0xF):
        ctx, b = self.ctx, self.bus
        ctx.set(b.bready, 0)
        aw_first = self.rng.random() < 0.5
        pending = {"aw": True, "w": True}
        ctx.set(b.awaddr, address)
        ctx.set(b.wdata, value)
        ctx.set(b.wstrb, strb)
        ctx.set(b.awvalid, aw_first or not self.gaps)
        ctx.set(b.wvalid, not aw_first or not self.gaps)
        while any(pending.values()):
            aw_taken = ctx.get(b.awvalid) and ctx.get(b.awready)
            w_taken = ctx.get(b.wvalid) and ctx.get(b.wready)
            await ctx.tick()
            if aw_taken:
                pending["aw"] = False
                ctx.set(b.awvalid, 0)
            if w_taken:
                pending["w"] = False
                ctx.set(b.wvalid, 0)
            if pending["aw"]:
                ctx.set(b.awvalid, 1)
            if pending["w"]:
                ctx.set(b.wvalid, 1)
        await self._idle()
        ctx.set(b.bready, 1)
        while not ctx.get(b.bvalid):
            await ctx.tick()
        resp = ctx.get(b.bresp)
        await ctx.tick()
        ctx.set(b.bready, 0)
        return Resp(resp)

    async def read(self, address):
        ctx, b = self.ctx, self.bus
        ctx.set(b.araddr, address)
        ctx.set(b.arvalid, 1)
        ctx.set(b.rready, 0)
        while not ctx.get(b.arready):
            await ctx.tick()
        await ctx.tick()
        ctx.set(b.arvalid, 0)
        await self._idle()
        ctx.set(b.rready, 1)
        while not ctx.get(b.rvalid):
            await ctx.tick()
        value, resp = ctx.get(b.rdata), Resp(ctx.get(b.rresp))
        await ctx.tick()
        ctx.set(b.rready, 0)
        return value, resp


def run(dut, bench, bus=None, background=None):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    if background is not None:
        sim.add_testbench(background, background=True)

    async def testbench(ctx):
        await bench(ctx, Axil(ctx, bus if bus is not None else dut.bus))
    sim.add_testbench(testbench)
    sim.run()


def element(dut, field):
    port = getattr(dut, field.port)
    for i in field.index:
        port = port[i]
    return port


def words(reg):
    return [(reg.address + 4 * k, k) for k in range(reg.words)]


def mask(width):
    return (1 << width) - 1


@pytest.mark.parametrize("name", sorted(MAPS))
def test_reset_values_read_back_and_on_the_ports(name):
    dut = CsrBlock(name, **MAPS[name])

    async def bench(ctx, axil):
        for reg in dut.regmap:
            expected = sum(f.reset << f.lsb for f in reg.fields
                           if f.kind in ("config", "constant"))
            for address, k in words(reg):
                value, resp = await axil.read(address)
                assert resp == Resp.OKAY, reg.name
                assert value == (expected >> 32 * k) & mask(32), (reg.name, k, hex(value))
            for f in reg.fields:
                if f.kind == "config":
                    assert ctx.get(element(dut, f)) == f.reset, f.path
    run(dut, bench)


@pytest.mark.parametrize("name", sorted(MAPS))
def test_every_config_field_written_and_read(name):
    """A random value into each writable register: each config field's port
    holds its bits, and it reads back (strobes and status read as they are)."""
    dut = CsrBlock(name, **MAPS[name])
    rng = random.Random(7)

    async def bench(ctx, axil):
        for reg in dut.regmap:
            if not reg.writable or all(f.kind == "strobe" for f in reg.fields):
                continue
            value = rng.getrandbits(reg.width)
            for address, k in words(reg):
                assert await axil.write(address, (value >> 32 * k) & mask(32)) == Resp.OKAY
            readable = 0
            for f in reg.fields:
                bits = (value >> f.lsb) & mask(f.width)
                if f.kind == "config":
                    assert ctx.get(element(dut, f)) == bits, f.path
                    readable |= bits << f.lsb
                elif f.kind == "constant":
                    readable |= f.reset << f.lsb
            for address, k in words(reg):
                got, resp = await axil.read(address)
                assert (got, resp) == ((readable >> 32 * k) & mask(32), Resp.OKAY), reg.name
    run(dut, bench)


@pytest.mark.parametrize("name", sorted(MAPS))
def test_counters_and_status_read_as_the_ports_hold_them(name):
    dut = CsrBlock(name, **MAPS[name])
    rng = random.Random(3)

    async def bench(ctx, axil):
        values = {}
        for reg in dut.regmap:
            for f in reg.fields:
                if f.kind == "status":
                    values[f.path] = rng.getrandbits(f.width)
                    ctx.set(element(dut, f), values[f.path])
        for reg in dut.regmap:
            if not any(f.kind == "status" for f in reg.fields):
                continue
            whole = 0
            for address, k in words(reg):
                got, resp = await axil.read(address)
                assert resp == Resp.OKAY
                whole |= got << 32 * k
            for f in reg.fields:
                if f.kind == "status":
                    assert (whole >> f.lsb) & mask(f.width) == values[f.path], f.path
    run(dut, bench)


def test_strobes_pulse_one_cycle_and_read_zero():
    dut = CsrBlock("fabric", HOSTS=2)
    strobes = [(reg, f) for reg in dut.regmap for f in reg.fields if f.kind == "strobe"]
    assert {f.port for _, f in strobes} == {"win_we", "fn_we", "fn_bar_we"}

    async def bench(ctx, axil):
        for reg, f in strobes:
            port = element(dut, f)
            seen = []

            async def watch():
                for _ in range(12):
                    seen.append(ctx.get(port))
                    await ctx.tick()
            ctx.set(dut.bus.awaddr, reg.address)
            ctx.set(dut.bus.wdata, 1 << f.lsb)
            ctx.set(dut.bus.wstrb, 0xF)
            ctx.set(dut.bus.awvalid, 1)
            ctx.set(dut.bus.wvalid, 1)
            ctx.set(dut.bus.bready, 1)
            for _ in range(12):
                seen.append(ctx.get(port))
                await ctx.tick()
                ctx.set(dut.bus.awvalid, 0)
                ctx.set(dut.bus.wvalid, 0)
            assert sum(seen) == 1, (f.port, seen)
            assert await axil.read(reg.address) == (0, Resp.OKAY)
            assert await axil.write(reg.address, 0) == Resp.OKAY     # writing 0: no pulse
            assert ctx.get(port) == 0
    run(dut, bench)


def test_unmapped_and_wrong_direction_accesses_are_slverr():
    dut = CsrBlock("fabric", HOSTS=2)
    regmap = dut.regmap
    taken = {reg.address + 4 * k for reg in regmap for k in range(reg.words)}
    holes = [a for a in range(0, 1 << regmap.addr_width, 4) if a not in taken]
    assert holes

    async def bench(ctx, axil):
        before = {p: ctx.get(getattr(dut, p)) for p in ("tbl_link", "win_index")}
        for address in holes[:6] + holes[-3:]:
            assert await axil.read(address) == (0, Resp.SLVERR), hex(address)
            assert await axil.write(address, 0xFFFFFFFF) == Resp.SLVERR, hex(address)
        counter = regmap["ROUTED"]
        ctx.set(dut.routed, 5)
        assert await axil.write(counter.address, 0) == Resp.SLVERR
        assert await axil.read(counter.address) == (5, Resp.OKAY)
        assert {p: ctx.get(getattr(dut, p)) for p in before} == before
    run(dut, bench)


def test_byte_strobes_write_only_their_bytes():
    dut = CsrBlock("fabric", HOSTS=2)
    rid = dut.regmap["link[1].RID"]
    base = dut.regmap["win.HOST_BASE"]

    async def bench(ctx, axil):
        assert await axil.write(rid.address, 0x11223344) == Resp.OKAY
        assert await axil.write(rid.address, 0xAABBCCDD, strb=0b0100) == Resp.OKAY
        assert ctx.get(dut.link_local_rid[1]) == 0x11BB
        assert ctx.get(dut.link_host_rid[1]) == 0x3344
        assert await axil.write(rid.address, 0xAABBCCDD, strb=0b1001) == Resp.OKAY
        assert await axil.read(rid.address) == (0xAABB33DD, Resp.OKAY)
        # the high word of a 64-bit register, one byte
        assert await axil.write(base.address + 4, 0x5A000000, strb=0b1000) == Resp.OKAY
        assert ctx.get(dut.win_host_base) == 0x5A000000 << 32
    run(dut, bench)


@pytest.mark.parametrize("seed", [1, 2])
def test_back_to_back_writes_lose_nothing(seed):
    """AW and W in either order, gaps and a slow BREADY: every write lands."""
    dut = CsrBlock("bridge")
    rng = random.Random(seed)
    regs = [r for r in dut.regmap if r.writable and r.width == 32
            and all(f.kind == "config" for f in r.fields)]

    async def bench(ctx, axil):
        axil.gaps, axil.rng = True, rng
        expected = {}
        for _ in range(60):
            reg = rng.choice(regs)
            value = rng.getrandbits(32)
            assert await axil.write(reg.address, value) == Resp.OKAY
            expected[reg.name] = sum(((value >> f.lsb) & mask(f.width)) << f.lsb
                                     for f in reg.fields)
        for name, value in expected.items():
            assert await axil.read(dut.regmap[name].address) == (value, Resp.OKAY), name
    run(dut, bench)


def test_fabric_commit_reaches_only_the_named_link_and_slot():
    """FabricCsr: a window committed to link 1 slot 2 is in that table only;
    a commit naming a link or slot the fabric lacks writes nothing."""
    dut = FabricCsr(64, hosts=2, windows=3, functions=2)
    regmap = dut.regs.regmap

    async def bench(ctx, axil):
        t0, t1 = dut.fabric.translators

        async def window(link, slot, base):
            await axil.write(regmap["TBL_LINK"].address, link)
            await axil.write(regmap["win.HOST_BASE"].address, base)
            await axil.write(regmap["win.ENTRY"].address,
                             regmap["win.ENTRY"].encode(index=slot, valid=1, size_log2=12))
            await axil.write(regmap["win.COMMIT"].address, 1)
        await window(1, 2, 0x5000)
        assert ctx.get(t1.windows[2].valid) and ctx.get(t1.windows[2].host_base) == 0x5000
        assert not any(ctx.get(w.valid) for w in t0.windows)
        await window(2, 0, 0x6000)            # no link 2 (tbl_link would alias link 0)
        await window(0, 3, 0x7000)            # no slot 3 of 3
        assert not any(ctx.get(w.valid) for w in t0.windows)
        await axil.write(regmap["fn.IDS"].address, 0x0500_0100)
        await axil.write(regmap["fn.ENTRY"].address, regmap["fn.ENTRY"].encode(index=2, valid=1))
        await axil.write(regmap["fn.COMMIT"].address, 1)   # slot 2 of 2: nothing
        assert not any(ctx.get(f.valid) for t in (t0, t1) for f in t.functions)
        await axil.write(regmap["fn.ENTRY"].address, regmap["fn.ENTRY"].encode(index=1, valid=1))
        await axil.write(regmap["fn.COMMIT"].address, 1)
        assert ctx.get(t0.functions[1].host_id) == 0x0100
        assert ctx.get(t0.functions[1].device_id) == 0x0500
    run(dut, bench, dut.csr)


def test_bridge_csr_resets_to_the_bridge_parameters():
    dut = BridgeCsr(64, flush_timeout=99, replay_timeout=5000)
    regmap = dut.regs.regmap

    async def bench(ctx, axil):
        assert await axil.read(regmap["FLUSH_TIMEOUT"].address) == (99, Resp.OKAY)
        assert ctx.get(dut.bridge.cfg.flush_timeout) == 99
        assert ctx.get(dut.bridge.cfg.replay_timeout) == 5000
        assert await axil.write(regmap["CONTROL"].address, 0b010) == Resp.OKAY
        cfg = dut.bridge.cfg
        assert (ctx.get(cfg.np_accept), ctx.get(cfg.ro_enable),
                ctx.get(cfg.credits_enable)) == (0, 1, 0)
    run(dut, bench, dut.csr)


# --- descriptions the generator refuses, by name ----------------------------------------

BAD = {
    "rclr": ("field { sw = r; hw = w; onread = rclr; } cnt[32];", "A.cnt", "onread"),
    "hw_rw": ("field { sw = rw; hw = rw; } both[8];", "A.both", "hw=rw"),
    "counter": ("field { sw = r; hw = r; counter; } c[8];", "A.c", "counter"),
    "regwidth": ("regwidth = 16; field { sw = rw; hw = r; } narrow[8];", "top.A", "regwidth"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_unsupported_rdl_raises_naming_the_field(tmp_path, case):
    body, where, why = BAD[case]
    path = tmp_path / "bad.rdl"
    path.write_text(f"addrmap top {{ reg {{ {body} }} A; }};")
    with pytest.raises(CsrError) as err:
        CsrBlock(load(path))
    assert where in str(err.value) and why in str(err.value)


def test_two_fields_on_one_port_raise_naming_both(tmp_path):
    path = tmp_path / "dup.rdl"
    path.write_text("addrmap top { reg { field { sw = rw; hw = r; } x[4]; } A;"
                    " reg { field { sw = rw; hw = r; } x[4]; } B; };")
    with pytest.raises(CsrError, match=r"top\.A\.x.*top\.B\.x"):
        load(path)


def test_rdl_syntax_errors_raise_with_the_compilers_message(tmp_path):
    path = tmp_path / "syntax.rdl"
    path.write_text("addrmap top { reg { field { sw = rw; } x[4] } A; };")
    with pytest.raises(CsrError, match="syntax.rdl"):
        load(path)


def test_a_field_driving_no_port_raises(tmp_path):
    from amaranth.hdl import Module
    from tlpoe.rtl.csr import bind
    from tlpoe.rtl.fabric.translate import Translator
    path = tmp_path / "extra.rdl"
    path.write_text("addrmap top { reg { field { sw = rw; hw = r; } no_such_port[4]; } A; };")
    with pytest.raises(CsrError, match="no_such_port"):
        bind(Module(), CsrBlock(load(path)), Translator(64))


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_disaggregated_top_can_put_the_fabric_and_bridges_behind_csrs():
    from tlpoe.rtl.bridge.system import DisaggregatedTop
    plain = DisaggregatedTop(64, hosts=2).signature.members
    top = DisaggregatedTop(64, hosts=2, fabric_csr=True, bridge_csr=True).signature.members
    assert {"fabric_csr", "h0_csr", "d1_csr"} <= set(top)
    gone = {"fabric_win_we", "fabric_tbl_link", "fabric_link1_local_rid", "h0_dst_mac",
            "d1_cfg"}
    assert gone <= set(plain) and not gone & set(top)
    kept = {"fabric_pcie_out", "fabric_link0_to_device_denied", "h0_frame_out", "d0_stats"}
    assert kept <= set(top)
