"""Two components side by side under one top, for testbenches."""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, connect, flipped

__all__ = ["Pair"]


class Pair(wiring.Component):
    """Components ``a`` and ``b`` (same signature) with every port exposed as
    ``a_<port>`` and ``b_<port>``: two bridges whose Ethernet sides the
    testbench connects through a network model."""

    def __init__(self, a, b):
        if a.signature != b.signature:
            raise ValueError("a and b must have the same signature")
        self.a, self.b = a, b
        super().__init__({f"{side}_{name}": member
                          for side in ("a", "b")
                          for name, member in a.signature.members.items()})

    def elaborate(self, platform):
        m = Module()
        for side in ("a", "b"):
            inner = getattr(self, side)
            m.submodules[side] = inner
            for name, member in inner.signature.members.items():
                outer = getattr(self, f"{side}_{name}")
                port = getattr(inner, name)
                if member.is_signature:
                    if member.flow == In:
                        connect(m, flipped(outer), port)
                    else:
                        connect(m, port, flipped(outer))
                elif member.flow == In:
                    m.d.comb += port.eq(outer)
                else:
                    m.d.comb += outer.eq(port)
        return m
