"""Decapsulator: tlpoe frames in, TLP stream out."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from ...models import wire
from ...models.bridge import decap_depths
from ...models.deframing_cycles import frame_words, verdict_latency
from ...models.frame import DropReason
from ..streams import (STAMP_BITS, CreditLimit, RxDesc, SkidBuffer, check_width, frame_stream,
                       tlp_stream)
from .deframer import Deframer
from .transport import UdpConfigLayout, udp_config_init
from .unpacker import TlpUnpacker

__all__ = ["Decapsulator"]


class Decapsulator(wiring.Component):
    """Checks tlpoe frames and delivers the TLPs of the good DATA frames.

    Parameters: ``width`` (64, 128, 256, 512), ``mtu`` (1500 or 9000),
    ``ethertype``.

    Ports: ``frame`` in (frame stream from the MAC, FCS stripped, padding
    allowed), ``tlp`` out (TLP stream, each TLP's order stamp from its
    prefix in the payload's ``stamp``); counters ``drops`` (one 32-bit
    counter per :class:`~tlpoe.models.frame.DropReason`, indexed by its
    value), ``good_frames``, ``control_frames``, ``tlps_out``.  Side
    outputs: ``credits`` and a ``credits_update`` pulse
    from every frame that passed the checks with valid credit fields;
    ``checked`` (a pulse per frame that passed the checks, of any type),
    with its ``checked_type`` and ``checked_seq``, in the same cycle.

    ``verdict`` (optional): a stage on each frame's verdict between the checks
    and delivery, such as the link layer's
    :class:`~tlpoe.rtl.link.link_rx.LinkReceiver`.  ``reorder`` (optional, with a
    ``verdict``): a stage between the receive FIFOs and the unpacker that
    acts on the verdict's descriptors, such as the selective-repeat link's
    :class:`~tlpoe.rtl.link.reorder.ReorderBuffer`.

    Store and forward: a frame's TLPs leave only after its CRC and structure
    are checked; a malformed frame is counted and dropped, and the frame after
    it is unaffected.  Frames are taken back to back, a beat every cycle,
    while the FIFOs have room; the verdict, the descriptor and the counters
    follow a frame's last beat by the Deframer's ``latency`` cycles.

    Room: a frame is admitted at its first beat only when the body FIFO has
    room for the largest frame at the MTU and the descriptor FIFO for one
    more descriptor than can be in flight in the Deframer (registered from
    the FIFO levels: no ``ready`` runs through the Decapsulator).  ``hold``
    (default) holds ``frame`` between frames until there is room (``tlp``
    backpressure fills the FIFOs, about two frames at the MTU, then holds
    ``frame``): ``frame.ready`` is a register, and low only between
    frames.  ``hold=False`` is for a MAC, which cannot wait: ``frame.ready``
    is always 1 and a frame that finds no room is dropped whole and counted
    in ``overflows``.
    """

    def __init__(self, width=256, *, mtu=1500, ethertype=wire.ETHERTYPE, verdict=None,
                 reorder=None, hold=True, transport="eth", udp_init=None):
        check_width(width)
        if reorder is not None and verdict is None:
            raise ValueError("reorder needs a verdict stage")
        self.deframer = Deframer(width, mtu=mtu, ethertype=ethertype, transport=transport,
                                 udp_init=udp_init)
        self.transport = self.deframer.transport
        # An optional stage between the checks and delivery that may withdraw a
        # frame's ``good`` (the link layer's sequence check): a component with
        # ``rx`` in and ``out`` out, both RxDesc streams.
        self.verdict = verdict
        # An optional stage between the FIFOs and the unpacker: ``desc`` (the
        # verdict's descriptors) and ``words`` in, ``out_desc`` (RxDesc) and
        # ``out_words`` out.
        self.reorder = reorder
        self.unpacker = TlpUnpacker(width, max_words=self.deframer.max_words,
                                    area_at=self.deframer.geo.area_at)
        self.width = width
        self.mtu = mtu
        self.hold = hold
        super().__init__({
            **({"udp": In(UdpConfigLayout(), init=udp_config_init(udp_init))}
               if "udp" in self.deframer.signature.members else {}),
            "frame": In(frame_stream(width)),
            "tlp": Out(tlp_stream(width, STAMP_BITS)),
            "drops": Out(data.ArrayLayout(32, len(DropReason))),
            "good_frames": Out(32),
            "control_frames": Out(32),
            "overflows": Out(32),
            "tlps_out": Out(32),
            "credits": Out(data.ArrayLayout(CreditLimit(), 3)),
            "credits_update": Out(1),
            "ce": Out(1),               # a frame that passed arrived marked ECN-CE
            # every verdict on a frame that passed the checks (one cycle), for
            # the link state: its type and seq (``credits`` holds the bytes a
            # KEEPALIVE's link-state fields use)
            "checked": Out(1),
            "checked_type": Out(4),
            "checked_seq": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.deframer = deframer = self.deframer
        m.submodules.unpacker = unpacker = self.unpacker
        words = deframer.max_words
        # The FIFOs' sizing (the model's decap_depths, one definition):
        # room for the frame arriving and the one before it, the smallest
        # frames behind the largest while it is delivered, and in selective
        # repeat what arrives during a release; ``in_flight`` descriptors
        # may be on their way when admission reads the registered levels.
        window = None if self.reorder is None else self.reorder.window
        depth, desc_depth, in_flight = decap_depths(self.width, self.mtu, window)
        # the model's restated frame size and verdict latency are the Deframer's
        assert (frame_words(self.width, self.mtu), verdict_latency(self.width)) == \
            (words, deframer.latency), "models/deframing_cycles.py disagrees with the Deframer"
        m.submodules.body = body = fifo.SyncFIFOBuffered(width=self.width, depth=depth)
        layout = RxDesc(deframer.max_words) if self.verdict is None else \
            self.verdict.out.payload.shape()
        m.submodules.descs = descs = fifo.SyncFIFOBuffered(width=layout.size, depth=desc_depth)
        room = Signal(init=1)                   # the FIFOs are empty after reset
        m.d.sync += room.eq((body.level <= depth - 1 - 2 - words) &
                            (descs.level <= desc_depth - 1 - in_flight))
        # The Deframer pushes without waiting; its `ready`s promise room for a frame.
        m.d.comb += [
            *([deframer.udp.eq(self.udp)] if "udp" in self.signature.members else []),
            deframer.words.ready.eq(room),
            deframer.desc.ready.eq(room),
            body.w_stream.valid.eq(deframer.words.valid),
            body.w_stream.payload.eq(deframer.words.payload),
        ]
        if self.hold:
            # Between frames, hold `frame` until there is room: a register's
            # worth of decision, and a frame once started is taken whole.
            in_frame = Signal()
            with m.If(self.frame.valid & self.frame.ready):
                m.d.sync += in_frame.eq(~self.frame.payload.last)
            m.d.comb += [
                self.frame.ready.eq(in_frame | room),
                deframer.frame.valid.eq(self.frame.valid & self.frame.ready),
                deframer.frame.payload.eq(self.frame.payload),
            ]
        else:
            connect(m, flipped(self.frame), deframer.frame)
        sink = unpacker if self.reorder is None else self.reorder    # what the FIFOs feed
        # The body FIFO's read data comes straight from block RAM (its
        # clock-to-out is most of a cycle at 256 bits on ECP5): a register
        # slice before the sink's load logic.
        m.submodules.body_slice = body_slice = SkidBuffer(self.width)
        connect(m, body.r_stream, body_slice.i)
        connect(m, body_slice.o, sink.words)
        if self.verdict is None:
            m.d.comb += [descs.w_stream.valid.eq(deframer.desc.valid),
                         descs.w_stream.payload.eq(deframer.desc.payload)]
        else:
            m.submodules.verdict = self.verdict
            m.d.comb += [self.verdict.rx.valid.eq(deframer.desc.valid),
                         self.verdict.rx.payload.eq(deframer.desc.payload)]
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
            self.overflows.eq(deframer.overflows),
            self.tlps_out.eq(unpacker.tlps_out),
            self.credits.eq(deframer.credits),
            self.credits_update.eq(deframer.credits_update),
            self.ce.eq(deframer.ce),
            self.checked.eq(deframer.desc.valid & deframer.desc.payload.ok),
            self.checked_type.eq(deframer.desc.payload.frame_type),
            self.checked_seq.eq(deframer.desc.payload.seq),
        ]
        return m
