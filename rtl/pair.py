"""Two components side by side under one top, for testbenches."""

from amaranth.hdl import Module
from amaranth.lib import wiring

from .compose import exposed_members, forward

__all__ = ["Pair"]


class Pair(wiring.Component):
    """Components ``a`` and ``b`` (same signature) with every port exposed as
    ``a_<port>`` and ``b_<port>``: two bridges whose Ethernet sides the
    testbench connects through a network model."""

    def __init__(self, a, b):
        if a.signature != b.signature:
            raise ValueError("a and b must have the same signature")
        self.a, self.b = a, b
        super().__init__({
            **exposed_members(a, self._prefixed(a, "a")),
            **exposed_members(b, self._prefixed(b, "b")),
        })

    @staticmethod
    def _prefixed(component, side):
        return {name: f"{side}_{name}" for name in component.signature.members}

    def elaborate(self, platform):
        m = Module()
        for side in ("a", "b"):
            inner = getattr(self, side)
            m.submodules[side] = inner
            forward(m, self, inner, self._prefixed(inner, side))
        return m
