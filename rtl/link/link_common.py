"""What the link layer's blocks share: the feedback signature from the
receiver to the sender, parameter checks and a priority encoder."""

from amaranth.hdl import Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...models.link import MODES
from ...models.wire import KEEPALIVE_FIELDS
from ...models.link_cycles import FEEDBACK_LATENCY

__all__ = ["MODES", "FEEDBACK_LATENCY", "FEEDBACK_COUNTERS", "LinkFeedback", "LinkStatePort",
           "check_mode", "check_window", "first_of"]


#: FEEDBACK_LATENCY (the model's, :mod:`tlpoe.models.link_cycles`): cycles
#: from the edge where the receiver takes a frame's verdict to the edge
#: where its ACK or NAK acts in the sender (the feedback register).
#: The sender's counters that a received frame moves, FEEDBACK_LATENCY late.
FEEDBACK_COUNTERS = ("acks_invalid", "naks_invalid", "replays_nak")


class LinkFeedback(wiring.Signature):
    """What one end's receiver tells its own sender (the
    :class:`~tlpoe.rtl.link.link_rx.LinkReceiver` drives it, the
    :class:`~tlpoe.rtl.link.replay.ReplayBuffer` takes it flipped).

    * ``rx_ack`` / ``rx_ack_valid``: the cumulative ack every frame sent
      carries (the receiver's state, read when a frame is taken);
    * ``ack_in`` / ``ack_seq``, ``nak_in`` / ``nak_seq``: one-cycle pulses
      from each checked frame of the peer: its cumulative ack, its NAK;
    * ``echo_in``: a one-cycle pulse from each checked frame of the peer
      carrying ``FLAG_ECN_ECHO`` (congestion on our frames: a CNP for the
      rate limiter, docs/transports.md);
    * ``send_ack``, ``send_nak`` / ``nak_from``: requests for an ACK frame
      (when no DATA frame carries the ack) and for a NAK frame, held until
      ``sent_ack`` / ``sent_nak`` pulse back (a frame carrying the ack, or
      the NAK, was taken by the framer).

    The sender registers every input but ``rx_ack`` / ``rx_ack_valid``
    (``echo_in`` goes to the rate limiter): an
    ACK or NAK acts one cycle after the frame that carried it, and the
    receive path's checks never chain into the transmit path's choices.
    """

    def __init__(self, seq_bits):
        n = seq_bits
        super().__init__({
            "rx_ack": Out(n), "rx_ack_valid": Out(1),
            "ack_in": Out(1), "ack_seq": Out(n),
            "nak_in": Out(1), "nak_seq": Out(n),
            "echo_in": Out(1),
            "send_ack": Out(1), "send_nak": Out(1), "nak_from": Out(n),
            "sent_ack": In(1), "sent_nak": In(1),
        })


class LinkStatePort(wiring.Signature):
    """Between the receive path and the link state machine (docs/link-state.md),
    as the receive path sees it.

    Out, each from a frame's verdict (one cycle): ``good`` (it passed every
    check), ``keepalive`` (... and it is a KEEPALIVE: its link-state
    ``fields``, :data:`~tlpoe.models.wire.KEEPALIVE_FIELDS` as a byte
    vector, and its ``base``, the ``seq`` field). In: ``up`` (the link is
    UP; 1 without a state machine), ``adopt`` with ``adopt_base`` (the
    receiver's next expected number after a peer restart) and ``restart``
    (the peer restarted), pulses.
    """

    def __init__(self, seq_bits):
        super().__init__({
            "good": Out(1), "keepalive": Out(1), "fields": Out(8 * KEEPALIVE_FIELDS.length),
            "base": Out(32),
            "up": In(1, init=1), "adopt": In(1), "adopt_base": In(seq_bits), "restart": In(1),
        })


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
