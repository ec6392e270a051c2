"""Parameter checks shared by the link layer's blocks."""

from ..models.link import MODES

__all__ = ["MODES", "check_mode", "check_window"]


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
