"""The bridge's configuration and statistics, described once
(rtl/bridge/registers.py): the ports, the generated RDL and docs table, the
register block bound to the ports, and the benches' reader."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from tlpoe.rtl.bridge import registers
from tlpoe.rtl.bridge.bridge import Bridge
from tlpoe.rtl.bridge.registers import (CONFIG, MACS, STATS, config_layout, decode_stats,
                                        encode_config, stats_layout)
from tlpoe.rtl.csr import AxiLiteSignature, CsrBlock, Resp, load
from tlpoe.sim.csr import generated

from test_csr import run


pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def test_the_bridge_top_has_streams_cfg_stats_macs_and_interrupts_only():
    for mode in ("gbn", "sr"):
        members = Bridge(64, mode=mode).signature.members
        assert set(members) == {"tlp_in", "frame_out", "frame_in", "tlp_out", "dst_mac",
                                "src_mac", "cfg", "stats", "link_down", "order_irq", "containment"}
        assert members["cfg"].flow == In and members["stats"].flow == Out


def test_cfg_resets_to_the_bridge_parameters():
    init = Bridge(64, flush_timeout=99, replay_timeout=5000).signature.members["cfg"].init
    assert init["flush_timeout"] == 99 and init["replay_timeout"] == 5000
    assert init["credit_refresh"] == 5000         # it defaults to the replay timeout
    assert init["np_accept"] == init["ro_enable"] == init["credits_enable"] == 1


@pytest.mark.parametrize("path", ["rtl/csr/bridge.rdl", "docs/csr.md"])
def test_the_generated_files_are_up_to_date(path):
    for target, text in generated().items():
        if str(target).endswith(path):
            assert target.read_text() == text, f"{path} is stale: run `make rdl`"
            return
    raise AssertionError(f"{path} is not generated")


def test_every_field_has_one_register_and_every_register_a_field():
    regmap = load("bridge")
    ports = {name for f in CONFIG + MACS + STATS for name, _, _ in registers.csr_ports(f)}
    assert ports == set(regmap.ports)


class StandIn(wiring.Component):
    """The bridge's ``cfg``, ``stats`` and MAC ports behind its register
    block, bound as BridgeCsr binds them; ``stats`` an input the test sets."""

    def __init__(self):
        self.regs = CsrBlock(load("bridge"))
        super().__init__({"bus": In(AxiLiteSignature(self.regs.regmap.addr_width)),
                          "cfg": Out(config_layout()), "stats": In(stats_layout()),
                          "dst_mac": Out(48), "src_mac": Out(48)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.regs = self.regs
        connect(m, flipped(self.bus), self.regs.bus)
        registers.bind(m, self.regs, self)
        return m


@pytest.mark.parametrize("seed", [1, 2])
def test_every_register_reads_its_field_of_stats(seed):
    """A random ``stats`` value: each status and counter register reads,
    through the bus, the field the benches' reader decodes from it."""
    dut = StandIn()
    regmap = dut.regs.regmap
    value = random.Random(seed).getrandbits(stats_layout().size)
    want = decode_stats(value)

    async def bench(ctx, axil):
        ctx.set(dut.stats.as_value(), value)
        for f in STATS:
            for name, index, _ in registers.csr_ports(f):
                reg, field = regmap.port_field(name, *index)
                word, resp = await axil.read(reg.address)
                assert resp == Resp.OKAY
                got = (word >> field.lsb) & ((1 << field.width) - 1)
                expected = want[f.name]
                if index:                   # an entry; of credit limits, hdr or data
                    expected = expected[index[0]]
                if f.limits:
                    expected = expected[name.endswith("_data")]
                assert got == expected, (f.name, name, index)
    run(dut, bench)


def test_every_config_register_lands_in_its_field_of_cfg():
    """Each config register written through the bus is its field of
    ``cfg`` (or a MAC port); a write of 1 to the strobe pulses
    ``cfg.order_irq_clear`` for exactly one cycle."""
    dut = StandIn()
    regmap = dut.regs.regmap
    rng = random.Random(3)
    pulses = []

    async def watch(ctx):
        async for _clk, _rst, value in ctx.tick().sample(dut.cfg.order_irq_clear):
            pulses.append(value)

    async def bench(ctx, axil):
        for f in CONFIG + MACS:
            if f.kind == "strobe":
                continue
            for index in [(k,) for k in range(len(f.elements))] if f.elements else [()]:
                reg, field = regmap.port_field(f.name, *index)
                value = rng.getrandbits(f.width) | 1
                for k in range(reg.words):
                    word = (value << field.lsb) >> (32 * k) & 0xFFFFFFFF
                    assert await axil.write(reg.address + 4 * k, word) == Resp.OKAY
                port = getattr(dut, f.name) if f in MACS else dut.cfg[f.name]
                for k in index:                     # an array's entry
                    port = port[k]
                assert ctx.get(port) == value, (f.name, index)
        assert sum(pulses) == 0
        reg, field = regmap.port_field("order_irq_clear")
        assert await axil.write(reg.address, 1 << field.lsb) == Resp.OKAY
        await ctx.tick().repeat(4)
        assert sum(pulses) == 1
    run(dut, bench, background=watch)


def test_encode_config_names_what_is_wrong():
    with pytest.raises(ValueError, match="no_such"):
        encode_config(no_such=1)
    with pytest.raises(ValueError, match="flush_timeout"):
        encode_config(flush_timeout=1 << 16)
    value = encode_config(replay_timeout=1234, np_accept=1)
    view = config_layout().from_bits(value)
    assert view["replay_timeout"] == 1234 and view["np_accept"] == 1 and view["channel"] == 0


def test_decode_stats_names_every_entry():
    got = decode_stats(0)
    assert {"drops_CRC", "tlps_sent_np", "order_by_cell_D5b"} <= set(got)
    assert got["credit_limit"] == [(0, 0)] * 3
