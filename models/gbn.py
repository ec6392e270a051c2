"""Analytical models of the link layer: frame error probability, go-back-N and
selective-repeat efficiency, and replay-buffer sizing from the bandwidth-delay
product. The simulation (:mod:`tlpoe.models.linksim`) is checked against these.

Notation: ``p`` is the probability that one transmission of a DATA frame is
lost (dropped or failing the CRC); ``t_f`` is a DATA frame's wire time; ``a``
is the one-way propagation delay over ``t_f``.

Go-back-N, classic form (W. Stallings, *Data and Computer Communications*,
"Performance of data link control", and D. Bertsekas and R. Gallager, *Data
Networks*, 2nd ed., section 2.4): every failed transmission costs ``K = 1 + 2a``
frame times (the failed frame and the ones sent until the NAK returns) and the
frame is sent again under the same law, so the expected frame times per
delivered frame are ``E = (1 + (K - 1) p) / (1 - p)`` and the efficiency::

    U_gbn = (1 - p) / (1 + 2 a p)                      for W >= 1 + 2a
    U_gbn = W (1 - p) / ((1 + 2a)(1 - p + W p))        for W <  1 + 2a

The NAK-timer variant (:func:`gbn_efficiency_nak_timer`, derived here for
tlpoe link layer v1): the receiver sends one NAK per gap, so when the *replay*
of the frame the NAK named is lost too, nothing more happens until the NAK
timer (``T`` frame times) expires. A first transmission's failure costs ``K``;
a replay-head failure costs ``T``. With ``E_r`` the cost of a replay-head
attempt, ``E_r = (1 - p) + p (T + E_r)``, hence ``E_r = 1 + p T / (1 - p)``,
and ``E = (1 - p) + p (K + E_r)``::

    U = 1 / (1 + p K + p^2 T / (1 - p))

which is the classic form when ``T = K``. ``K`` for tlpoe counts the frames
that start between the lost frame's start and the NAK's arrival (the next
frame's arrival triggers the NAK, the NAK is serialised, then the sender
rewinds at its next frame boundary): ``K = ceil(2 + (2 L + t_nak) / t_f)``
(:func:`gbn_nak_cost_frames`).

Selective repeat (same references): only the lost frame is sent again,
``U_sr = 1 - p`` when ``W >= 1 + 2a``, else ``W (1 - p) / (1 + 2a)``.

Goodput (payload over line rate) is ``U`` times the framing efficiency of a
full DATA frame (:func:`tlpoe.models.frame.wire_efficiency` for TLP bytes;
:func:`framing_efficiency` here for MWr payload bytes).

Replay buffer: to keep the line busy the sender must hold every frame sent
during one frame time plus a round trip plus the time an ACK waits
(coalescing), ``W >= ceil((t_f + RTT + ack_delay) / t_f)`` frames of up to
``14 + MTU`` bytes each; the sequence space must be more than twice that
(``window <= 2**(seq_bits-1) - 1``). :func:`print_table` prints it for
100 Gb/s at 2 and 10 us round trip, MTU 1500 and 9000 (``python -m
tlpoe.models.gbn``).
"""

import math

from .frame import frame_overhead_bytes, wire_bytes
from .wire import ETH_LEN, PREFIX_LEN, body_capacity

__all__ = [
    "frame_error_probability", "frame_time_ns", "gbn_efficiency", "gbn_nak_cost_frames",
    "gbn_efficiency_nak_timer", "sr_efficiency", "framing_efficiency",
    "replay_buffer", "replay_buffer_table", "print_table",
]

#: Wire bytes of a NAK or ACK frame (44 bytes, padded to 60).
CONTROL_FRAME_BYTES = frame_overhead_bytes(0)


def frame_error_probability(ber, frame_bytes):
    """``1 - (1 - ber) ** (8 * frame_bytes)``: at least one of the frame's bits is
    in error (independent bit errors)."""
    if not 0.0 <= ber <= 1.0:
        raise ValueError(f"ber must be in 0..1, got {ber}")
    if ber == 1.0:
        return 1.0
    return -math.expm1(8 * frame_bytes * math.log1p(-ber))


def frame_time_ns(frame_len, rate_gbps):
    """Wire time (ns) of a frame of ``frame_len`` bytes as handed to the MAC
    (:func:`~tlpoe.models.frame.wire_bytes`: padding, FCS, preamble, IFG)."""
    return wire_bytes(frame_len) * 8.0 / rate_gbps


def _check_p(p):
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p must be in 0..1 (exclusive of 1), got {p}")


def gbn_efficiency(p, a, window=None):
    """Classic go-back-N efficiency (Stallings; Bertsekas-Gallager):
    ``(1 - p) / (1 + 2ap)``, or the window-limited form when ``window`` is
    given and smaller than ``1 + 2a``."""
    _check_p(p)
    k = 1 + 2 * a
    if window is not None and window < k:
        return window * (1 - p) / (k * (1 - p + window * p))
    return (1 - p) / (1 + 2 * a * p)


def gbn_nak_cost_frames(latency_ns, frame_ns, rate_gbps):
    """``K`` for tlpoe: frames started from a lost frame's start until its NAK
    arrives and the sender rewinds, ``ceil(2 + (2 L + t_nak) / t_f)`` with
    ``t_nak`` the NAK frame's wire time at ``rate_gbps``."""
    nak_ns = frame_time_ns(CONTROL_FRAME_BYTES, rate_gbps)
    return math.ceil(2 + (2 * latency_ns + nak_ns) / frame_ns)


def gbn_efficiency_nak_timer(p, k, t):
    """Go-back-N with one NAK per gap and a NAK timer (see the module text):
    ``1 / (1 + p K + p^2 T / (1 - p))``; ``k`` and ``t`` in frame times."""
    _check_p(p)
    return 1.0 / (1 + p * k + p * p * t / (1 - p))


def sr_efficiency(p, a=0.0, window=None):
    """Selective-repeat efficiency: ``1 - p``, or ``W (1 - p) / (1 + 2a)`` when
    ``window`` is given and smaller than ``1 + 2a``."""
    _check_p(p)
    k = 1 + 2 * a
    if window is not None and window < k:
        return window * (1 - p) / k
    return 1 - p


def framing_efficiency(payload_bytes, mtu, tlp_header_bytes=16):
    """Payload bytes per wire byte time of full DATA frames of MWr TLPs with
    ``payload_bytes`` each (a ``tlp_header_bytes`` header): the
    framing-limited goodput maximum. Returns ``(efficiency, tlps_per_frame,
    frame_bytes)``."""
    tlp = tlp_header_bytes + payload_bytes
    n = body_capacity(mtu) // (PREFIX_LEN + tlp)
    if n < 1:
        raise ValueError(f"a {tlp}-byte TLP does not fit MTU {mtu}")
    frame = frame_overhead_bytes(n) + n * tlp
    return n * payload_bytes / wire_bytes(frame), n, frame


def replay_buffer(rate_gbps, rtt_ns, mtu, ack_delay_ns=0.0):
    """Replay-buffer sizing for full frames at ``mtu``: a dict with the frame
    time, the bandwidth-delay product (bytes), the ``window`` (frames) that
    keeps the line busy, the buffer bytes (``window * (14 + mtu)``), and the
    smallest ``seq_bits`` that allows that window."""
    frame_len = ETH_LEN + mtu
    tf = frame_time_ns(frame_len, rate_gbps)
    window = math.ceil((tf + rtt_ns + ack_delay_ns) / tf)
    return {
        "rate_gbps": rate_gbps, "rtt_ns": rtt_ns, "mtu": mtu, "ack_delay_ns": ack_delay_ns,
        "frame_ns": tf,
        "bdp_bytes": rate_gbps * rtt_ns / 8.0,
        "window": window,
        "buffer_bytes": window * frame_len,
        "seq_bits": max(2, math.ceil(math.log2(window + 1)) + 1),
    }


def replay_buffer_table(rate_gbps=100.0, rtts_ns=(2_000.0, 10_000.0), mtus=(1500, 9000),
                        ack_delay_ns=0.0):
    """:func:`replay_buffer` for every round trip and MTU."""
    return [replay_buffer(rate_gbps, rtt, mtu, ack_delay_ns) for rtt in rtts_ns for mtu in mtus]


def print_table(rate_gbps=100.0, rtts_ns=(2_000.0, 10_000.0), mtus=(1500, 9000),
                ack_delay_ns=0.0, bers=(1e-12, 1e-8, 1e-6, 1e-5), file=None):
    """Print the replay-buffer table and GBN/SR efficiencies at some BERs (Markdown)."""
    rows = replay_buffer_table(rate_gbps, rtts_ns, mtus, ack_delay_ns)
    out = [f"Replay buffer at {rate_gbps:g} Gb/s (ack delay {ack_delay_ns:g} ns)", "",
           "| RTT (us) | MTU | frame (ns) | BDP (bytes) | window (frames) | buffer (bytes) "
           "| min seq_bits |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['rtt_ns'] / 1000:g} | {r['mtu']} | {r['frame_ns']:.1f} | "
                   f"{r['bdp_bytes']:.0f} | {r['window']} | {r['buffer_bytes']} | "
                   f"{r['seq_bits']} |")
    out += ["", "| RTT (us) | MTU | BER | p(frame) | GBN U | SR U |", "|---|---|---|---|---|---|"]
    for r in rows:
        a = (r["rtt_ns"] / 2) / r["frame_ns"]
        for ber in bers:
            p = frame_error_probability(ber, ETH_LEN + r["mtu"])
            out.append(f"| {r['rtt_ns'] / 1000:g} | {r['mtu']} | {ber:g} | {p:.3g} | "
                       f"{gbn_efficiency(p, a):.3f} | {sr_efficiency(p):.3f} |")
    print("\n".join(out), file=file)
    return rows


if __name__ == "__main__":
    print_table()
