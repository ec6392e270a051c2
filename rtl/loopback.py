"""The TLP path of one bridge, both directions, with its Ethernet side open."""

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from ..models import wire
from ..models.frame import DropReason
from .decapsulator import Decapsulator
from .encapsulator import Encapsulator
from .streams import check_width, frame_stream, tlp_stream

__all__ = ["Loopback"]


class Loopback(wiring.Component):
    """An :class:`Encapsulator` and a :class:`Decapsulator` side by side.

    ``tlp_in`` → encapsulator → ``frame_out``; ``frame_in`` → decapsulator →
    ``tlp_out``.  The testbench (or a network model) carries frames from
    ``frame_out`` to ``frame_in``, and can corrupt, drop or inject on the way.
    Parameters are those of the two blocks.
    """

    def __init__(self, width=256, *, mtu=1500, max_tlps=None, flush_timeout=64,
                 ethertype=wire.ETHERTYPE):
        check_width(width)
        self.encap = Encapsulator(width, mtu=mtu, max_tlps=max_tlps,
                                  flush_timeout=flush_timeout, ethertype=ethertype)
        self.decap = Decapsulator(width, mtu=mtu, ethertype=ethertype)
        super().__init__({
            "tlp_in": In(tlp_stream(width)),
            "frame_out": Out(frame_stream(width)),
            "frame_in": In(frame_stream(width)),
            "tlp_out": Out(tlp_stream(width)),
            "dst_mac": In(48),
            "src_mac": In(48),
            "channel": In(16),
            "flush_timeout": In(16, init=flush_timeout),
            "frames_sent": Out(32),
            "oversize_drops": Out(32),
            "length_errors": Out(32),
            "drops": Out(data.ArrayLayout(32, len(DropReason))),
            "good_frames": Out(32),
            "control_frames": Out(32),
            "tlps_out": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.encap = encap = self.encap
        m.submodules.decap = decap = self.decap
        connect(m, flipped(self.tlp_in), encap.tlp)
        connect(m, encap.frame, flipped(self.frame_out))
        connect(m, flipped(self.frame_in), decap.frame)
        connect(m, decap.tlp, flipped(self.tlp_out))
        m.d.comb += [
            encap.dst_mac.eq(self.dst_mac),
            encap.src_mac.eq(self.src_mac),
            encap.channel.eq(self.channel),
            encap.flush_timeout.eq(self.flush_timeout),
            self.frames_sent.eq(encap.frames_sent),
            self.oversize_drops.eq(encap.oversize_drops),
            self.length_errors.eq(encap.length_errors),
            self.drops.eq(decap.drops),
            self.good_frames.eq(decap.good_frames),
            self.control_frames.eq(decap.control_frames),
            self.tlps_out.eq(decap.tlps_out),
        ]
        return m
