"""The RTL's view of the models' layouts (rtl/wirefmt.py, rtl/tlp_header.py)
evaluated in amaranth.sim against the models: ``pack_bytes`` of random field
values equals ``Layout.pack`` for every layout, the completion's overlapping
containers included; ``TlpHeader``'s fields of random TLPs equal the models'
decode."""

import random

import numpy as np
import pytest
from amaranth.hdl import Const, Module
from amaranth.sim import Simulator

from tlpoe.models import wire
from tlpoe.models.tlp import HEADER_LAYOUTS, Tlp, random_tlp
from tlpoe.rtl.tlp_header import CPL, NP, P, TlpHeader
from tlpoe.rtl.wirefmt import pack_bytes, unpack_field

LAYOUTS = {**HEADER_LAYOUTS, "bridge": wire.BRIDGE_HEADER, "prefix": wire.TLP_PREFIX}


def evaluate(*values):
    """The values of constant Amaranth expressions."""
    out = []

    async def bench(ctx):
        out.extend(ctx.get(v) for v in values)

    sim = Simulator(Module())
    sim.add_testbench(bench)
    sim.run()
    return out


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_pack_bytes_is_the_models_pack(name):
    layout = LAYOUTS[name]
    rng = random.Random(name)
    cases = [{f.name: rng.getrandbits(f.width) for f in layout} for _ in range(20)]
    packed = evaluate(*(pack_bytes(layout, **c) for c in cases))
    for values, got in zip(cases, packed):
        want = layout.pack(**values)
        assert got.to_bytes(layout.length, "little") == want, values
        vector = Const(got, 8 * layout.length)
        fields = evaluate(*(unpack_field(layout, f.name, vector) for f in layout))
        assert dict(zip((f.name for f in layout), fields)) == values


def test_the_header_view_reads_what_the_models_wrote():
    rng = np.random.default_rng(7)
    for _ in range(200):
        tlp = random_tlp(rng)
        raw = tlp.pack()
        hdr = TlpHeader(Const(int.from_bytes(raw[:16].ljust(16, b"\0"), "little"), 128))
        cls, length, ro, ido, tc = evaluate(hdr.cls, hdr.length, hdr.ro, hdr.ido, hdr.tc)
        back = Tlp.unpack(raw)
        assert cls == {"POSTED": P, "NON_POSTED": NP, "COMPLETION": CPL}[
            back.ordering_class.name], back
        assert length == (back.length_field if hasattr(back, "length_field") else
                          int.from_bytes(raw[2:4], "big") & 0x3FF)
        assert (ro, ido, tc) == (raw[2] >> 5 & 1, raw[1] >> 2 & 1, raw[1] >> 4 & 7)
        if back.type.is_completion:
            bc, req, tag = evaluate(hdr.byte_count, hdr.completion_requester, hdr.completion_tag)
            assert req == int(back.requester_id) and tag == back.tag
            assert bc == int.from_bytes(raw[6:8], "big") & 0xFFF
        else:
            req, tag = evaluate(hdr.requester_id, hdr.request_tag)
            assert req == int(back.requester_id) and tag == back.tag
