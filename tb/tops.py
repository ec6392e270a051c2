"""Test-only top-level designs: what the testbenches drive, built from the
RTL's blocks and never part of the product's Verilog.

* :class:`Pair`: two components with the same signature side by side (the
  link benches' two bridges, whose Ethernet sides the bench joins through a
  network model);
* :class:`Loopback`: an Encapsulator and a Decapsulator side by side (the
  link-less TLP path of both directions, its Ethernet side open);
* :class:`CheckedQueues`: ClassQueues with an OrderChecker on their egress
  (the ordering bench's unit);
* :class:`Tapped`: any component with internal streams shown as outputs
  (the end-to-end bench's device bridges, for their cycle twins).
"""

from amaranth.hdl import Module, ResetInserter
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..models import wire
from ..rtl.queues.classq import ClassQueues
from ..rtl.compose import exposed_members, forward
from ..rtl.framing.decapsulator import Decapsulator
from ..rtl.framing.encapsulator import Encapsulator
from ..rtl.bridge.paths import ORDER_OUTPUTS, order_window
from ..rtl.queues.order_check import OrderChecker
from ..rtl.streams import check_width

__all__ = ["Pair", "Loopback", "CheckedQueues", "Tapped"]


class Pair(wiring.Component):
    """Components ``a`` and ``b`` (same signature) with every port exposed as
    ``a_<port>`` and ``b_<port>``: two bridges whose Ethernet sides the
    testbench connects through a network model. With ``peer_reset``: an
    input ``b_reset`` resets ``b`` alone (a peer bridge restarting)."""

    def __init__(self, a, b, *, peer_reset=False):
        if a.signature != b.signature:
            raise ValueError("a and b must have the same signature")
        self.a, self.b = a, b
        self.peer_reset = peer_reset
        extra = {"b_reset": In(1)} if peer_reset else {}
        super().__init__({
            **exposed_members(a, self._prefixed(a, "a")),
            **exposed_members(b, self._prefixed(b, "b")),
            **extra,
        })

    @staticmethod
    def _prefixed(component, side):
        return {name: f"{side}_{name}" for name in component.signature.members}

    def elaborate(self, platform):
        m = Module()
        for side in ("a", "b"):
            inner = getattr(self, side)
            if side == "b" and self.peer_reset:
                # b alone reset too: a peer bridge's restart. (Not a domain of
                # its own: a clock assigned from clk races the bench's inputs
                # in Icarus. Its ResetSignal stays rst: the bench pulses
                # b_reset for one cycle, after which the link state machine
                # counts one reset, as after rst.)
                inner = ResetInserter(self.b_reset)(inner)
            m.submodules[side] = inner
            component = getattr(self, side)
            forward(m, self, component, self._prefixed(component, side))
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
    on them (their ingress, their egress with its stamps): the
    queues' ports, and the checker's prefixed ``check_`` (its
    ``irq_clear``, its ``req_*`` inputs: the opposite direction's requests,
    and every output). The unit the ordering testbench proves, the
    test-only ``reorder_illegally`` arbiter included."""

    def __init__(self, width, **queue_kw):
        self.queues = ClassQueues(width, **queue_kw)
        self.checker = OrderChecker(width, window=order_window(self.queues.tlps),
                                    stamp_bits=self.queues.stamp_bits)
        members = exposed_members(self.queues)
        members.update({f"check_{name}": member
                        for name, member in self.checker.signature.members.items()
                        if name in self._CHECK_NAMES})
        super().__init__(members)

    _CHECK_NAMES = ("irq_clear", "req_valid", "req_beat", "verdict_valid",
                    "verdict") + ORDER_OUTPUTS

    def elaborate(self, platform):
        m = Module()
        m.submodules.queues = queues = self.queues
        m.submodules.checker = checker = self.checker
        forward(m, self, queues)
        size = checker.in_beat.shape().size
        tin, tout = queues.tlp_in, queues.tlp_out
        m.d.comb += [
            checker.in_valid.eq(tin.valid & tin.ready),
            checker.in_beat.eq(tin.payload.as_value()[:size]),
            checker.out_valid.eq(tout.valid & tout.ready),
            checker.out_beat.eq(tout.payload.as_value()[:size]),
            checker.out_posted.eq(queues.out_posted),
            checker.out_cpls.eq(queues.out_cpls),
        ]
        for name in self._CHECK_NAMES:
            if name in ("irq_clear", "req_valid", "req_beat"):
                m.d.comb += getattr(checker, name).eq(getattr(self, f"check_{name}"))
            else:
                m.d.comb += getattr(self, f"check_{name}").eq(getattr(checker, name))
        return m


class Tapped(wiring.Component):
    """``inner`` with every port under its own name, and each stream of
    ``taps`` (``{name: function(inner) -> stream interface}``, read after
    ``inner`` is built) shown as three outputs ``{name}__valid``,
    ``{name}__payload`` and ``{name}__ready``: the stream's wires as they
    are, read only. For a bench that must watch a stream the design wires
    inside (a device bridge's TLP ports meet the fabric inside
    ``DisaggregatedTop``); a simulator then needs no access below the top."""

    def __init__(self, inner, taps):
        self.inner = inner
        self._taps = {name: get(inner) for name, get in taps.items()}
        members = exposed_members(inner)
        for name, stream in self._taps.items():
            for part in ("valid", "payload", "ready"):
                port = f"{name}__{part}"
                if port in members:
                    raise ValueError(f"tap {name!r}: {port} is already a port of the design")
                members[port] = Out(getattr(stream, part).shape())
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = self.inner
        forward(m, self, self.inner)
        for name, stream in self._taps.items():
            for part in ("valid", "payload", "ready"):
                m.d.comb += getattr(self, f"{name}__{part}").eq(getattr(stream, part))
        return m
