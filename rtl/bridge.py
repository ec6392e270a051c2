"""One bridge: the TLP path of both directions with the reliable link layer."""

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from ..models import wire
from ..models.frame import DropReason
from .decapsulator import Decapsulator
from .deframer import frame_words
from .framer import Framer
from .link_common import check_mode
from .link_rx import LinkReceiver
from .packer import TlpPacker
from .reorder import ReorderBuffer
from .replay import ReplayBuffer
from .streams import check_width, frame_stream, tlp_stream

__all__ = ["Bridge"]

#: Counters of the link layer, each ``Out(32)``: (block, name).
LINK_COUNTERS = (
    ("replay", "replays_nak"), ("replay", "replays_timeout"),
    ("replay", "frames_retransmitted"), ("replay", "link_down_events"),
    ("replay", "acks_sent"), ("replay", "naks_sent"), ("replay", "window_full_cycles"),
    ("link_rx", "frames_accepted"), ("link_rx", "duplicates"), ("link_rx", "out_of_order"),
    ("link_rx", "naks_repeated"),
)
#: Counters of selective repeat only (``mode="sr"``).
SR_COUNTERS = (("link_rx", "out_of_order_buffered"),)


class Bridge(wiring.Component):
    """The bridge's TLP path with a reliable link (see ``docs/``), go-back-N
    or selective repeat.

    Transmit: ``tlp_in`` → :class:`TlpPacker` → :class:`ReplayBuffer` (keeps
    each frame until acknowledged; replays on NAK or timeout) →
    :class:`Framer` → ``frame_out``.  Receive: ``frame_in`` →
    :class:`Decapsulator` (checks, drops by reason), with a
    :class:`LinkReceiver` on its verdicts (sequence check, duplicate discard,
    ACK/NAK requests) → ``tlp_out``.  Every frame sent carries the receive side's cumulative ack.

    ``mode`` (elaboration time): ``"gbn"`` (go-back-N: a NAK or the replay
    timer resends every unacknowledged frame from the one named; frames after
    a gap are discarded) or ``"sr"`` (selective repeat: only the frame named
    is resent; frames after a gap wait in a :class:`ReorderBuffer` of
    ``window`` frames between the Decapsulator's FIFOs and its unpacker, and
    the ``out_of_order_buffered`` counter counts them).

    Parameters: those of the blocks (``width``, ``mtu``, ``window``,
    ``seq_bits``, ``max_retries``, ``replay_timeout``, ``nak_timeout``,
    ``ack_every``, ``ack_delay``, ``flush_timeout``, ``ethertype``).  Run-time
    inputs: ``dst_mac``, ``src_mac``, ``channel``, ``flush_timeout``,
    ``replay_timeout``, ``nak_timeout``, ``ack_delay``.  ``link_down`` is the
    interrupt output.

    ``nak_timeout`` (cycles; 0: off) is the receiver's NAK timer: the NAK
    for a gap still open that long after it was sent goes out again.  It
    must exceed the time a NAK's replay takes to arrive (a round trip plus
    about four full frame times, ``linksim.default_nak_timeout_ns``), or
    NAKs are repeated for replays still on their way; and it is useful only
    well below ``replay_timeout``, which recovers otherwise.  The default,
    1024 cycles (a quarter of the default ``replay_timeout``; 4.1 us at
    250 MHz), covers round trips up to about 3.6 us at 100 Gb/s and MTU 1500.
    """

    def __init__(self, width=256, *, mtu=1500, window=16, seq_bits=12, max_retries=8,
                 replay_timeout=4096, nak_timeout=1024, ack_every=8, ack_delay=256,
                 flush_timeout=64, ethertype=wire.ETHERTYPE, mode="gbn"):
        check_mode(mode)
        check_width(width)
        self.width, self.mode = width, mode
        self.packer = TlpPacker(width, mtu=mtu, flush_timeout=flush_timeout)
        self.replay = ReplayBuffer(width, mtu=mtu, window=window, seq_bits=seq_bits,
                                   max_retries=max_retries, replay_timeout=replay_timeout,
                                   mode=mode)
        self.framer = Framer(width, ethertype=ethertype)
        max_words = frame_words(width, mtu)
        self.link_rx = LinkReceiver(max_words=max_words, seq_bits=seq_bits,
                                    ack_every=ack_every, ack_delay=ack_delay,
                                    nak_timeout=nak_timeout, mode=mode, window=window)
        reorder = ReorderBuffer(width, max_words=max_words, window=window) if mode == "sr" \
            else None
        self.decap = Decapsulator(width, mtu=mtu, ethertype=ethertype, verdict=self.link_rx,
                                  reorder=reorder)
        self.counters = LINK_COUNTERS + (SR_COUNTERS if mode == "sr" else ())
        super().__init__({
            "tlp_in": In(tlp_stream(width)),
            "frame_out": Out(frame_stream(width)),
            "frame_in": In(frame_stream(width)),
            "tlp_out": Out(tlp_stream(width)),
            "dst_mac": In(48),
            "src_mac": In(48),
            "channel": In(16),
            "flush_timeout": In(16, init=flush_timeout),
            "replay_timeout": In(24, init=replay_timeout),
            "nak_timeout": In(24, init=nak_timeout),
            "ack_delay": In(16, init=ack_delay),
            "link_down": Out(1),
            "frames_sent": Out(32),
            "oversize_drops": Out(32),
            "length_errors": Out(32),
            "drops": Out(data.ArrayLayout(32, len(DropReason))),
            "good_frames": Out(32),
            "control_frames": Out(32),
            "tlps_out": Out(32),
            **{name: Out(32) for _, name in self.counters},
        })

    def elaborate(self, platform):
        m = Module()
        packer, replay, framer = self.packer, self.replay, self.framer
        link_rx, decap = self.link_rx, self.decap
        for name in ("packer", "replay", "framer", "decap"):
            m.submodules[name] = getattr(self, name)

        connect(m, flipped(self.tlp_in), packer.tlp)
        connect(m, packer.words, replay.words)
        connect(m, packer.desc, replay.desc)
        connect(m, replay.tx_desc, framer.desc)
        connect(m, replay.tx_words, framer.words)
        connect(m, framer.frame, flipped(self.frame_out))
        connect(m, flipped(self.frame_in), decap.frame)
        connect(m, decap.tlp, flipped(self.tlp_out))

        m.d.comb += [
            # receive state and requests -> transmit side
            replay.rx_ack.eq(link_rx.rx_ack),
            replay.rx_ack_valid.eq(link_rx.rx_ack_valid),
            replay.ack_in.eq(link_rx.ack_in),
            replay.ack_seq.eq(link_rx.ack_seq),
            replay.nak_in.eq(link_rx.nak_in),
            replay.nak_seq.eq(link_rx.nak_seq),
            replay.send_ack.eq(link_rx.send_ack),
            replay.send_nak.eq(link_rx.send_nak),
            replay.nak_from.eq(link_rx.nak_from),
            link_rx.sent_ack.eq(replay.sent_ack),
            link_rx.sent_nak.eq(replay.sent_nak),
            # configuration
            framer.dst_mac.eq(self.dst_mac),
            framer.src_mac.eq(self.src_mac),
            framer.channel.eq(self.channel),
            packer.flush_timeout.eq(self.flush_timeout),
            replay.replay_timeout.eq(self.replay_timeout),
            link_rx.nak_timeout.eq(self.nak_timeout),
            link_rx.ack_delay.eq(self.ack_delay),
            # status
            self.link_down.eq(replay.link_down),
            self.frames_sent.eq(framer.frames_sent),
            self.oversize_drops.eq(packer.oversize_drops),
            self.length_errors.eq(packer.length_errors),
            self.drops.eq(decap.drops),
            self.good_frames.eq(decap.good_frames),
            self.control_frames.eq(decap.control_frames),
            self.tlps_out.eq(decap.tlps_out),
        ]
        for block, name in self.counters:
            m.d.comb += getattr(self, name).eq(getattr(getattr(self, block), name))
        return m
