"""Test-only top-level designs: what the testbenches drive, built from the
RTL's blocks and never part of the product's Verilog.

* :class:`Pair`: two components with the same signature side by side (the
  link benches' two bridges, whose Ethernet sides the bench joins through a
  network model);
* :class:`Loopback`: an Encapsulator and a Decapsulator side by side (the
  link-less TLP path of both directions, its Ethernet side open);
* :class:`CheckedQueues`: ClassQueues with an OrderChecker on their egress
  (the ordering bench's unit).
"""

from amaranth.hdl import Module
from amaranth.lib import wiring

from ..models import wire
from ..rtl.queues.classq import ClassQueues
from ..rtl.compose import exposed_members, forward
from ..rtl.framing.decapsulator import Decapsulator
from ..rtl.framing.encapsulator import Encapsulator
from ..rtl.queues.order_check import OrderChecker
from ..rtl.streams import check_width

__all__ = ["Pair", "Loopback", "CheckedQueues"]


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


class CheckedQueues(wiring.Component):
    """:class:`~tlpoe.rtl.queues.classq.ClassQueues` with an :class:`OrderChecker`
    on its egress: the queues' ports, and the checker's ports prefixed
    ``check_`` (its ``irq_clear`` input and every output). The unit the
    ordering testbench proves, the test-only ``reorder_illegally`` arbiter
    included."""

    def __init__(self, width, **queue_kw):
        self.queues = ClassQueues(width, **queue_kw)
        self.checker = OrderChecker(width, stamp_bits=self.queues.stamp_bits)
        members = exposed_members(self.queues)
        members.update(exposed_members(self.checker, self._CHECK_NAMES))
        for name in ("valid", "beat", "stamp"):
            del members[name]
        super().__init__(members)

    _CHECK_NAMES = {name: f"check_{name}" for name in (
        "irq_clear", "violations", "by_cell", "first_stamp", "first_tag", "first_cell",
        "first_valid", "irq", "stamp_errors", "tlps_checked")}

    def elaborate(self, platform):
        m = Module()
        m.submodules.queues = queues = self.queues
        m.submodules.checker = checker = self.checker
        forward(m, self, queues)
        m.d.comb += [
            checker.valid.eq(queues.tlp_out.valid & queues.tlp_out.ready),
            checker.beat.eq(queues.tlp_out.payload.as_value()[:checker.beat.shape().size]),
            checker.stamp.eq(queues.tlp_out.payload.stamp),
            checker.irq_clear.eq(self.check_irq_clear),
        ]
        for name in self._CHECK_NAMES:
            if name != "irq_clear":
                m.d.comb += getattr(self, f"check_{name}").eq(getattr(checker, name))
        return m
