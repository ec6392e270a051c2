"""Stream signatures shared by every tlpoe block.

Both streams are :class:`amaranth.lib.stream.Signature` s whose payload is a
struct; in emitted Verilog a port ``x`` of these becomes ``x__valid``,
``x__ready`` and one flat ``x__payload`` vector with ``data`` in the low bits,
then ``keep``, then ``last``.

Byte order: byte ``i`` of a beat is ``data[8*i+7 : 8*i]``; the first byte of
a TLP or a frame is in byte lane 0 of its first beat.
"""

from amaranth.lib import data, stream

__all__ = ["DATAPATH_WIDTHS", "check_width", "TlpBeat", "FrameBeat",
           "tlp_stream", "frame_stream"]

#: Datapath widths the blocks are verified at (bits).
DATAPATH_WIDTHS = (64, 128, 256, 512)


def check_width(width, name="width"):
    if width not in DATAPATH_WIDTHS:
        raise ValueError(f"{name} must be one of {DATAPATH_WIDTHS} bits, not {width!r}")
    return width


class TlpBeat(data.StructLayout):
    """One beat of a TLP stream: ``width`` bits of TLP bytes, ``keep`` with one
    bit per DW (TLPs are whole DWs; valid DWs are contiguous from lane 0 and
    only the ``last`` beat may be partial), and ``last`` on the TLP's final beat."""

    def __init__(self, width):
        check_width(width)
        super().__init__({"data": width, "keep": width // 32, "last": 1})


class FrameBeat(data.StructLayout):
    """One beat of an Ethernet frame stream (AXI-Stream style): ``keep`` has one
    bit per byte, contiguous from lane 0, and only the ``last`` beat may be partial."""

    def __init__(self, width):
        check_width(width)
        super().__init__({"data": width, "keep": width // 8, "last": 1})


def tlp_stream(width):
    return stream.Signature(TlpBeat(width))


def frame_stream(width):
    return stream.Signature(FrameBeat(width))
