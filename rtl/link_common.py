"""What the link layer's blocks share: parameter checks and a priority
encoder."""

from amaranth.hdl import Mux

from ..models.link import MODES

__all__ = ["MODES", "check_mode", "check_window", "first_of"]


def check_mode(mode):
    """``mode``: "gbn" (go-back-N) or "sr" (selective repeat)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    return mode


def check_window(window, seq_bits, mode="gbn"):
    """``window``: a power of two below ``2**(seq_bits-1)``, so a frame in
    flight is never ambiguous across a wrap-around; at least 2 in selective
    repeat, where a window of 1 would leave nothing to reorder."""
    low = 2 if mode == "sr" else 1
    if window < low or window & (window - 1) or window >= 2 ** (seq_bits - 1):
        least = " (at least 2 in selective repeat)" if mode == "sr" else ""
        raise ValueError(f"window must be a power of two below 2**(seq_bits-1) = "
                         f"{2 ** (seq_bits - 1)}{least}, not {window!r}")
    return window


def first_of(bits, value, none):
    """The index of the lowest bit of ``bits`` that equals ``value`` (0 or
    1), or ``none`` when no bit does: a chain of multiplexers, so the
    emitted Verilog is continuous assignments (an ``always @*`` block whose
    inputs keep their initial values may never run in Icarus, leaving its
    output X)."""
    index = none
    for i in reversed(range(len(bits))):
        index = Mux(bits[i] == value, i, index)
    return index
