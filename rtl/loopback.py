"""The TLP path of one bridge, both directions, with its Ethernet side open."""

from amaranth.hdl import Module
from amaranth.lib import wiring

from ..models import wire
from .compose import exposed_members, forward
from .decapsulator import Decapsulator
from .encapsulator import Encapsulator
from .streams import check_width

__all__ = ["Loopback"]

ENCAP_PORTS = {"tlp": "tlp_in", "frame": "frame_out"}
DECAP_PORTS = {"frame": "frame_in", "tlp": "tlp_out"}


class Loopback(wiring.Component):
    """An :class:`Encapsulator` and a :class:`Decapsulator` side by side.

    ``tlp_in`` → encapsulator → ``frame_out``; ``frame_in`` → decapsulator →
    ``tlp_out``.  The testbench (or a network model) carries frames from
    ``frame_out`` to ``frame_in``, and can corrupt, drop or inject on the way.
    Every other port is the block's own, under its own name.  Parameters are
    those of the two blocks.
    """

    def __init__(self, width=256, *, mtu=1500, max_tlps=None, flush_timeout=64,
                 ethertype=wire.ETHERTYPE):
        check_width(width)
        self.encap = Encapsulator(width, mtu=mtu, max_tlps=max_tlps,
                                  flush_timeout=flush_timeout, ethertype=ethertype)
        self.decap = Decapsulator(width, mtu=mtu, ethertype=ethertype)
        super().__init__({**exposed_members(self.encap, ENCAP_PORTS),
                          **exposed_members(self.decap, DECAP_PORTS)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.encap = self.encap
        m.submodules.decap = self.decap
        forward(m, self, self.encap, ENCAP_PORTS)
        forward(m, self, self.decap, DECAP_PORTS)
        return m
