"""Stream signatures and descriptor layouts shared by the tlpoe blocks:
each type that travels between two blocks has its home here.

Both streams are :class:`amaranth.lib.stream.Signature` s whose payload is a
struct; in emitted Verilog a port ``x`` of these becomes ``x__valid``,
``x__ready`` and one flat ``x__payload`` vector with ``data`` in the low bits,
then ``keep``, then ``last``.

Byte order: byte ``i`` of a beat is ``data[8*i+7 : 8*i]``; the first byte of
a TLP or a frame is in byte lane 0 of its first beat.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..models import wire
from ..models.framing_cycles import WIDTHS
from ..models.queues_cycles import DATA_BITS, HDR_BITS

__all__ = ["DATAPATH_WIDTHS", "check_width", "TlpBeat", "FrameBeat", "STAMP_BITS",
           "tlp_stream", "connect_tlp", "SkidBuffer", "frame_stream", "HDR_BITS", "DATA_BITS", "CreditLimit",
           "FrameDesc", "TxDesc", "RxDesc", "ReorderDesc", "KeptDesc"]

#: Datapath widths the blocks are verified at (bits): the models' (one definition).
DATAPATH_WIDTHS = WIDTHS


def check_width(width, name="width"):
    if width not in DATAPATH_WIDTHS:
        raise ValueError(f"{name} must be one of {DATAPATH_WIDTHS} bits, not {width!r}")
    return width


#: Bits of a TLP's order stamp, as its prefix carries it.
STAMP_BITS = wire.TLP_PREFIX["order_stamp"].width


class TlpBeat(data.StructLayout):
    """One beat of a TLP stream: ``width`` bits of TLP bytes, ``keep`` with one
    bit per DW (TLPs are whole DWs; valid DWs are contiguous from lane 0 and
    only the ``last`` beat may be partial), and ``last`` on the TLP's final beat.

    ``stamp_bits`` (inside the bridge only): a ``stamp`` field after
    ``last``, the TLP's order stamp (the order in which it entered the
    sending bridge, ``docs/ordering.md``), valid on the TLP's first beat."""

    def __init__(self, width, stamp_bits=0):
        check_width(width)
        fields = {"data": width, "keep": width // 32, "last": 1}
        if stamp_bits:
            fields["stamp"] = stamp_bits
        super().__init__(fields)


class FrameBeat(data.StructLayout):
    """One beat of an Ethernet frame stream (AXI-Stream style): ``keep`` has one
    bit per byte, contiguous from lane 0, and only the ``last`` beat may be partial."""

    def __init__(self, width):
        check_width(width)
        super().__init__({"data": width, "keep": width // 8, "last": 1})


def tlp_stream(width, stamp_bits=0):
    return stream.Signature(TlpBeat(width, stamp_bits))


def connect_tlp(m, source, sink):
    """Connect two TLP streams whose payloads differ only in a ``stamp``:
    ``valid``, ``ready``, ``data``, ``keep`` and ``last``. A stamp of the
    ``source`` is left behind; one of the ``sink`` is 0."""
    m.d.comb += [sink.valid.eq(source.valid), source.ready.eq(sink.ready),
                 sink.payload.data.eq(source.payload.data),
                 sink.payload.keep.eq(source.payload.keep),
                 sink.payload.last.eq(source.payload.last)]


class SkidBuffer(wiring.Component):
    """A register slice of a stream in both directions: ``o.valid`` and
    ``o.payload`` come from a register, and so does ``i.ready`` (a second
    register, the skid, takes the beat offered in the cycle ``o`` stalls).
    Put between two blocks, no combinational path crosses it, so the
    ``ready`` of a consumer's FIFOs does not reach into the producer's
    logic. One cycle of latency; a beat in and a beat out per cycle."""

    def __init__(self, payload_shape):
        super().__init__({"i": In(stream.Signature(payload_shape)),
                          "o": Out(stream.Signature(payload_shape))})

    def elaborate(self, platform):
        m = Module()
        skid_valid = Signal()
        skid = Signal.like(self.i.payload)
        m.d.comb += self.i.ready.eq(~skid_valid)
        with m.If(self.o.ready | ~self.o.valid):        # the output register is free
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~skid_valid):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m


def frame_stream(width):
    return stream.Signature(FrameBeat(width))


# --- descriptors between blocks ---------------------------------------------------

# HDR_BITS, DATA_BITS: credit counters, as the bridge header carries them (the models')


class CreditLimit(data.StructLayout):
    """A class's credit limit as the peer advertises it: cumulative header
    and data credits (16-byte units), modulo 2**8 and 2**16."""

    def __init__(self):
        super().__init__({"hdr": HDR_BITS, "data": DATA_BITS})


class FrameDesc(data.StructLayout):
    """One frame closed by the packer: how many TLPs, the bytes of its TLP
    area, and its first TLP's traffic class (the ``udp`` transport's DSCP)."""

    def __init__(self):
        super().__init__({"count": 16, "length": 16, "tc": 3})


class TxDesc(data.StructLayout):
    """One frame to send: the bridge-header fields the framer does not derive.
    ``length`` 0 (ACK, NAK, ...) means a header-only frame with no body words;
    ``tc`` is a DATA frame's first TLP's traffic class (its DSCP on ``udp``)."""

    def __init__(self):
        super().__init__({"frame_type": 4, "flags": 8, "seq": 32, "ack": 32,
                          "count": 16, "length": 16, "tc": 3})


class RxDesc(data.StructLayout):
    """Verdict on one received frame, pushed after its last beat."""

    def __init__(self, max_words):
        super().__init__({
            "good": 1,            # a DATA frame whose TLPs are to be delivered
            "count": 16,
            "words": range(max_words + 1),   # words of the frame stored in the FIFO
            "area": 12,           # DWs of its TLP area (prefixes and TLPs), 0 if not DATA
            "ok": 1,              # passed every check (any frame type)
            "frame_type": 4,
            "flags": 8,
            "seq": 32,
            "ack": 32,
        })


class ReorderDesc(data.StructLayout):
    """The link receiver's verdict on one received frame, for the reorder
    buffer: ``frame`` (its :class:`RxDesc`, ``good`` when
    it is delivered now), ``store`` (keep it, in slot ``seq mod window``,
    instead) and ``release`` (after it, deliver that many kept frames, from
    slot ``seq + 1`` on)."""

    def __init__(self, max_words, window):
        super().__init__({
            "frame": RxDesc(max_words),
            "store": 1,
            "release": range(window),
        })


class KeptDesc(data.StructLayout):
    """What the reorder buffer keeps of a stored frame's descriptor."""

    def __init__(self, max_words):
        super().__init__({"count": 16, "words": range(max_words + 1), "area": 12})
