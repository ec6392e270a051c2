"""Encapsulator: TLP stream in, tlpoe frames out."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from ...models import wire
from ..streams import STAMP_BITS, FrameDesc, check_width, connect_tlp, frame_stream, tlp_stream
from .framer import Framer
from .transport import UdpConfigLayout, udp_config_init
from .packer import TlpPacker

__all__ = ["Encapsulator"]


class Encapsulator(wiring.Component):
    """Packs TLPs into tlpoe DATA frames (see ``docs/wire-format.md``): a
    :class:`~tlpoe.rtl.framing.packer.TlpPacker`, then a store that keeps
    closed frames, then a :class:`~tlpoe.rtl.framing.framer.Framer`.

    Parameters: ``width`` (datapath bits: 64, 128, 256, 512), ``mtu`` (1500 or
    9000), ``max_tlps`` per frame, ``flush_timeout`` (cycles a frame may wait
    for more TLPs after its first), ``ethertype``.

    ``link`` (optional): the store, a stage with ``words`` and ``desc``
    (:class:`~tlpoe.rtl.streams.FrameDesc`) in and ``tx_desc``
    (:class:`~tlpoe.rtl.streams.TxDesc`) and ``tx_words`` out, such as the
    link layer's :class:`~tlpoe.rtl.link.replay.ReplayBuffer`; its other
    ports, and the framer's ``credits`` and ``data_sent``, are its owner's
    to wire (the :class:`~tlpoe.rtl.bridge.paths.TransmitPath` does). Without
    one, a FIFO of two frames at the MTU stores them, and the sequence
    number simply counts frames: the link-less path. This mirrors the
    :class:`~tlpoe.rtl.framing.decapsulator.Decapsulator` and its
    ``verdict`` stage. ``stamped``: ``tlp`` carries each TLP's order stamp
    in its payload, for its prefix (otherwise the stamps are 0).

    Ports: ``tlp`` in (TLP stream), ``frame`` out (frame stream, no padding,
    no FCS: the MAC adds them); ``dst_mac``, ``src_mac``, ``channel``
    configuration; counters ``frames_sent``, ``oversize_drops`` and
    ``length_errors`` (see :class:`~tlpoe.rtl.framing.packer.TlpPacker`); ``flush_timeout``
    in cycles (reset value: the parameter).

    Store and forward: a frame starts leaving once it is closed (its header
    carries the TLP count and length), while the next one is being packed.
    ``frame`` backpressure stalls ``tlp`` once the store is full; nothing is
    ever dropped for it.
    """

    def __init__(self, width=256, *, mtu=1500, max_tlps=None, flush_timeout=64,
                 ethertype=wire.ETHERTYPE, link=None, stamped=False, transport="eth",
                 udp_init=None):
        check_width(width)
        self.packer = TlpPacker(width, mtu=mtu, max_tlps=max_tlps, flush_timeout=flush_timeout,
                                transport=transport)
        self.link = link
        if link is not None and link.area_at != self.packer.geo.area_at:
            raise ValueError(f"the link's transport (TLP area at {link.area_at}) is not the "
                             f"encapsulator's ({transport!r}, at {self.packer.geo.area_at})")
        self.framer = Framer(width, ethertype=ethertype, transport=transport, udp_init=udp_init,
                             **({} if link is None else {"seq_bits": link.seq_bits}))
        self.transport = self.framer.transport
        self.width = width
        self.mtu = mtu
        self.stamped = bool(stamped)
        frame_words = -(-(wire.ETH_LEN + mtu) // (width // 8))
        self.body_depth = 2 * frame_words + 2
        super().__init__({
            **({"udp": In(UdpConfigLayout(), init=udp_config_init(udp_init))}
               if "udp" in self.framer.signature.members else {}),
            "tlp": In(tlp_stream(width, STAMP_BITS if stamped else 0)),
            "frame": Out(frame_stream(width)),
            "dst_mac": In(48),
            "src_mac": In(48),
            "channel": In(16),
            "flush_timeout": In(16, init=flush_timeout),
            "frames_sent": Out(32),
            "oversize_drops": Out(32),
            "length_errors": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.packer = packer = self.packer
        m.submodules.framer = framer = self.framer
        if self.stamped:
            connect(m, flipped(self.tlp), packer.tlp)
        else:
            connect_tlp(m, self.tlp, packer.tlp)        # stamps 0
        if self.link is not None:
            m.submodules.link = link = self.link
            connect(m, packer.words, link.words)
            connect(m, packer.desc, link.desc)
            connect(m, link.tx_desc, framer.desc)
            connect(m, link.tx_words, framer.words)
        else:
            self._store(m, packer, framer)
        connect(m, framer.frame, flipped(self.frame))
        m.d.comb += [
            framer.dst_mac.eq(self.dst_mac),
            framer.src_mac.eq(self.src_mac),
            framer.channel.eq(self.channel),
            *([framer.udp.eq(self.udp)] if "udp" in self.signature.members else []),
            packer.flush_timeout.eq(self.flush_timeout),
            self.frames_sent.eq(framer.frames_sent),
            self.oversize_drops.eq(packer.oversize_drops),
            self.length_errors.eq(packer.length_errors),
        ]
        return m

    def _store(self, m, packer, framer):
        """Without a link: FIFOs of words and descriptors; the sequence
        number counts frames."""
        m.submodules.body = body = fifo.SyncFIFOBuffered(width=self.width, depth=self.body_depth)
        m.submodules.descs = descs = fifo.SyncFIFOBuffered(width=FrameDesc().size, depth=16)
        connect(m, packer.words, body.w_stream)
        connect(m, body.r_stream, framer.words)
        connect(m, packer.desc, descs.w_stream)
        seq = Signal(32)
        closed = data.View(FrameDesc(), descs.r_stream.payload)
        m.d.comb += [
            framer.desc.valid.eq(descs.r_stream.valid),
            descs.r_stream.ready.eq(framer.desc.ready),
            framer.desc.payload.frame_type.eq(wire.FrameType.DATA),
            framer.desc.payload.seq.eq(seq),
            framer.desc.payload.count.eq(closed.count),
            framer.desc.payload.length.eq(closed.length),
            framer.desc.payload.tc.eq(closed.tc),
        ]
        with m.If(framer.desc.valid & framer.desc.ready):
            m.d.sync += seq.eq(seq + 1)
