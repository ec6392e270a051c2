"""Decapsulator: tlpoe frames in, TLP stream out."""

from amaranth.hdl import Module
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from ..models import wire
from ..models.frame import DropReason
from .classq import CreditLimit
from .deframer import Deframer, RxDesc
from .streams import check_width, frame_stream, tlp_stream
from .unpacker import TlpUnpacker

__all__ = ["Decapsulator"]


class Decapsulator(wiring.Component):
    """Checks tlpoe frames and delivers the TLPs of the good DATA frames.

    Parameters: ``width`` (64, 128, 256, 512), ``mtu`` (1500 or 9000),
    ``ethertype``.

    Ports: ``frame`` in (frame stream from the MAC, FCS stripped, padding
    allowed), ``tlp`` out (TLP stream); counters ``drops`` (one 32-bit
    counter per :class:`~tlpoe.models.frame.DropReason`, indexed by its
    value), ``good_frames``, ``control_frames``, ``tlps_out``.  Side
    outputs: ``tlp_stamp``, the prefix's ``order_stamp`` of the TLP whose
    first beat is on ``tlp``; ``credits`` and a ``credits_update`` pulse
    from every frame that passed the checks with valid credit fields.

    ``verdict`` (optional): a stage on each frame's verdict between the checks
    and delivery, such as the link layer's
    :class:`~tlpoe.rtl.link_rx.LinkReceiver`.  ``reorder`` (optional, with a
    ``verdict``): a stage between the receive FIFOs and the unpacker that
    acts on the verdict's descriptors, such as the selective-repeat link's
    :class:`~tlpoe.rtl.reorder.ReorderBuffer`.

    Store and forward: a frame's TLPs leave only after its CRC and structure
    are checked; a malformed frame is counted and dropped, and the frame after
    it is unaffected.  ``tlp`` backpressure fills the frame FIFO (two frames
    at the MTU) and then backpressures ``frame``.
    """

    def __init__(self, width=256, *, mtu=1500, ethertype=wire.ETHERTYPE, verdict=None,
                 reorder=None):
        check_width(width)
        if reorder is not None and verdict is None:
            raise ValueError("reorder needs a verdict stage")
        self.deframer = Deframer(width, mtu=mtu, ethertype=ethertype)
        # An optional stage between the checks and delivery that may withdraw a
        # frame's ``good`` (the link layer's sequence check): a component with
        # ``rx`` in and ``out`` out, both RxDesc streams.
        self.verdict = verdict
        # An optional stage between the FIFOs and the unpacker: ``desc`` (the
        # verdict's descriptors) and ``words`` in, ``out_desc`` (RxDesc) and
        # ``out_words`` out.
        self.reorder = reorder
        self.unpacker = TlpUnpacker(width, max_words=self.deframer.max_words)
        self.width = width
        self.mtu = mtu
        super().__init__({
            "frame": In(frame_stream(width)),
            "tlp": Out(tlp_stream(width)),
            "drops": Out(data.ArrayLayout(32, len(DropReason))),
            "good_frames": Out(32),
            "control_frames": Out(32),
            "tlps_out": Out(32),
            "tlp_stamp": Out(wire.TLP_PREFIX["order_stamp"].width),
            "credits": Out(data.ArrayLayout(CreditLimit(), 3)),
            "credits_update": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.deframer = deframer = self.deframer
        m.submodules.unpacker = unpacker = self.unpacker
        depth = 2 * deframer.max_words + 2
        m.submodules.body = body = fifo.SyncFIFOBuffered(width=self.width, depth=depth)
        layout = RxDesc(deframer.max_words) if self.verdict is None else \
            self.verdict.out.payload.shape()
        m.submodules.descs = descs = fifo.SyncFIFOBuffered(width=layout.size, depth=16)
        connect(m, flipped(self.frame), deframer.frame)
        connect(m, deframer.words, body.w_stream)
        sink = unpacker if self.reorder is None else self.reorder    # what the FIFOs feed
        connect(m, body.r_stream, sink.words)
        if self.verdict is None:
            connect(m, deframer.desc, descs.w_stream)
        else:
            m.submodules.verdict = self.verdict
            connect(m, deframer.desc, self.verdict.rx)
            connect(m, self.verdict.out, descs.w_stream)
        connect(m, descs.r_stream, sink.desc)
        if self.reorder is not None:
            m.submodules.reorder = self.reorder
            connect(m, self.reorder.out_desc, unpacker.desc)
            connect(m, self.reorder.out_words, unpacker.words)
        connect(m, unpacker.tlp, flipped(self.tlp))
        m.d.comb += [
            self.drops.eq(deframer.drops),
            self.good_frames.eq(deframer.good_frames),
            self.control_frames.eq(deframer.control_frames),
            self.tlps_out.eq(unpacker.tlps_out),
            self.tlp_stamp.eq(unpacker.tlp_stamp),
            self.credits.eq(deframer.credits),
            self.credits_update.eq(deframer.credits_update),
        ]
        return m
