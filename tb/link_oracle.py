"""The reference link layer (:mod:`tlpoe.models.link`) beside the RTL: a
receiver oracle and a sender protocol checker per bridge.

:class:`ReceiverOracle` feeds every frame handed to a bridge's ``frame_in``
to the model's frame checks (:func:`~tlpoe.models.frame.decode_frame`) and
go-back-N :class:`~tlpoe.models.link.LinkReceiver`, which predict each
frame's fate. At the end of the run the bridge's counters must equal the
model's totals exactly, and the TLPs the model delivers are compared with
the bridge's ``tlp_out`` by a :class:`~tlpoe.tb.scoreboard.Scoreboard`.

:class:`SenderChecker` checks every frame a bridge sends against the
go-back-N sender's rules that do not depend on timing, with the state the
receiver oracle of the same bridge computes from what the bridge received.

Neither predicts timing: when an ACK or NAK frame goes out, how many NAKs
or replays there are, or which TLPs share a frame.
"""

import collections
import enum
from typing import NamedTuple

from cocotb.utils import get_sim_time
from pyuvm import uvm_analysis_port, uvm_component

from ..models.frame import FLAG_ACK_VALID, FLAG_CREDITS_VALID, DropReason, FrameError, decode_frame
from ..models.link import LinkCounters, LinkReceiver, seq_offset
from ..models.wire import FrameType
from .items import StreamItem
from .scoreboard import AnalysisImp

__all__ = ["Verdict", "Observation", "ReceiverOracle", "SenderChecker"]

#: Violations logged as they happen; check_phase lists this many.
LOGGED = 5


class Verdict(enum.Enum):
    """What a receiver does with a frame."""
    DROPPED = "dropped"              #: fails a frame check (``reason``)
    CONTROL = "control"              #: ACK, NAK, CREDIT or KEEPALIVE that passes them
    ACCEPTED = "accepted"            #: DATA in order: its TLPs are delivered
    DUPLICATE = "duplicate"          #: DATA behind the expected sequence number (or held)
    OUT_OF_ORDER = "out_of_order"    #: DATA ahead of it: after a gap (go-back-N), beyond
                                     #: the window (selective repeat)
    BUFFERED = "buffered"            #: selective repeat: DATA ahead of it, held


class Observation(NamedTuple):
    """The model receiver's verdict on the ``index``-th frame handed to a
    bridge. ``frame`` is the decoded frame (None when dropped); ``accepted``
    counts the frames accepted in order up to and including this one, and
    ``in_order`` those this one accepted (itself and, in selective repeat,
    the held frames it released)."""
    index: int
    verdict: Verdict
    reason: DropReason | None
    frame: object
    accepted: int
    in_order: int = 0


class _Violations:
    """Violations of one component: logged (the first :data:`LOGGED`), kept,
    and raised together by :meth:`check`."""

    def __init__(self, component):
        self.component = component
        self.found = []

    def add(self, message):
        self.found.append(message)
        if len(self.found) <= LOGGED:
            self.component.logger.error(message)

    def check(self):
        if self.found:
            raise AssertionError(f"{self.component.get_full_name()}: {len(self.found)} "
                                 f"violation(s); first: " + "; ".join(self.found[:LOGGED]))


class ReceiverOracle(uvm_component):
    """The model receiver beside one bridge's receive path.

    ``frame_export`` takes every frame the network hands to the bridge's
    ``frame_in`` (after the PHY: possibly corrupted), in the order handed,
    which is the order the bridge takes them in even while ``frame_in`` is
    backpressured, so the verdicts do not depend on timing. Each frame gets
    an :class:`Observation` on ``ap``; the TLPs an accepted frame delivers
    go, in order, to ``tlp_ap``.

    :meth:`settle` records the bridge's counters and ``driver.packets_sent``
    (the frames ``frame_in`` has taken, all of them counted by then).
    ``check_phase`` compares, exactly, ``frames_accepted``, ``duplicates``,
    ``out_of_order``, ``good_frames``, ``control_frames``, ``drops`` per
    :class:`~tlpoe.models.frame.DropReason` and ``tlps_out`` with the
    model's totals over those frames.
    """

    def __init__(self, name, parent, config, driver):
        super().__init__(name, parent)
        self.config = config
        self.driver = driver
        self.counters = LinkCounters()
        self.receiver = LinkReceiver(config, self.counters)
        self.frame_export = AnalysisImp("frame_export", self, self.write)
        self.ap = uvm_analysis_port("ap", self)
        self.tlp_ap = uvm_analysis_port("tlp_ap", self)
        self.verdicts = []           # (Verdict, DropReason or None) per frame handed
        self.accepted = [0]          # frames accepted in order after the first k handed
        self.delivered = [0]         # TLPs delivered after the first k handed
        self.rtl = None              # (counters, frames taken) from settle()

    def write(self, item):
        mask = self.config.modulus - 1
        reason, frame, tlps, in_order = None, None, [], 0
        try:
            frame = decode_frame(item.data, ethertype=self.config.ethertype, mtu=self.config.mtu)
        except FrameError as error:
            verdict, reason = Verdict.DROPPED, error.reason
        else:
            if frame.frame_type is FrameType.DATA:
                c, expected = self.counters, self.receiver.expected
                before = (c.duplicates_discarded, c.out_of_order_buffered)
                tlps = self.receiver.on_data(frame.seq & mask, frame.tlps, get_sim_time("ns"))
                in_order = (self.receiver.expected - expected) & mask   # 1 + frames released
                verdict = (Verdict.ACCEPTED if in_order else
                           Verdict.DUPLICATE if c.duplicates_discarded != before[0] else
                           Verdict.BUFFERED if c.out_of_order_buffered != before[1]
                           else Verdict.OUT_OF_ORDER)
            else:
                verdict = Verdict.CONTROL
        self.verdicts.append((verdict, reason))
        self.accepted.append(self.accepted[-1] + in_order)
        self.delivered.append(self.delivered[-1] + len(tlps))
        self.ap.write(Observation(len(self.verdicts) - 1, verdict, reason, frame,
                                  self.accepted[-1], in_order))
        for tlp in tlps:
            self.tlp_ap.write(StreamItem("model", tlp))

    @property
    def taken(self):
        """Frames the bridge's ``frame_in`` has taken in so far."""
        return self.driver.packets_sent

    def settle(self, counters):
        """The bridge's counters, read when every frame ``frame_in`` had
        taken was counted (in the read-only phase after a clock edge)."""
        self.rtl = (counters, self.taken)

    def totals(self, frames):
        """The model's counts over the first ``frames`` frames handed, by the
        RTL's counter names."""
        verdicts = collections.Counter(v for v, _ in self.verdicts[:frames])
        drops = collections.Counter(r for _, r in self.verdicts[:frames] if r is not None)
        totals = {
            # in selective repeat a frame in order also delivers the held ones it releases
            "frames_accepted": self.accepted[frames],
            "duplicates": verdicts[Verdict.DUPLICATE],
            "out_of_order": verdicts[Verdict.OUT_OF_ORDER],
            "good_frames": sum(verdicts[v] for v in (Verdict.ACCEPTED, Verdict.DUPLICATE,
                                                     Verdict.OUT_OF_ORDER, Verdict.BUFFERED)),
            "control_frames": verdicts[Verdict.CONTROL],
            **{f"drops_{r.name}": drops[r] for r in DropReason},
            "tlps_out": self.delivered[frames],
        }
        if self.config.mode == "sr":
            totals["out_of_order_buffered"] = verdicts[Verdict.BUFFERED]
        return totals

    def check_phase(self):
        if self.rtl is None:
            raise AssertionError(f"{self.get_full_name()}: no counters to compare (settle() "
                                 f"was not called)")
        counters, taken = self.rtl
        if counters.get("overflows"):
            raise AssertionError(f"{self.get_full_name()}: {counters['overflows']} frames found "
                                 f"no room at frame_in (overflows): the receive path fell "
                                 f"behind the MAC")
        model = self.totals(taken)
        differ = [f"{name}: RTL {counters[name]}, model {value}"
                  for name, value in model.items() if counters[name] != value]
        assert not differ, (f"{self.get_full_name()}: over the {taken} frames taken in, "
                            f"the counters differ from the model: " + "; ".join(differ))
        self.logger.info(f"{taken} frames taken ({len(self.verdicts)} handed): counters equal "
                         f"the model's: " + ", ".join(f"{k}={v}" for k, v in model.items() if v))


class SenderChecker(uvm_component):
    """Checks every frame one bridge sends (``frame_export``: its
    ``frame_out``, before the PHY) against the go-back-N sender's rules, with
    the state that ``oracle`` (the :class:`ReceiverOracle` of the same
    bridge, whose observations come in on ``peer_export``) computes.

    * ``seq`` and ``ack`` are written zero-extended (no bits above ``seq_bits``).
    * The ack: with flag bit 0 set, ``ack`` names a frame the model receiver
      accepted, at most ``window`` in-order frames behind its last one (over
      the frames the bridge had taken in when the frame's last beat left);
      with the bit clear, ``ack`` is ``2**seq_bits - 1`` and the model
      accepted at most ``window``. The lag: the framer latches the ack when
      it takes the frame's descriptor, and frames keep arriving while the
      frame leaves (up to 190 cycles at 64 bits), but no more than
      ``window`` in order, because the peer cannot send past the window its
      last ack from this bridge (at most the latched one) opened. The
      largest lag measured is 5, in the bit-error scenario (short DATA
      frames arriving while a long one leaves); 1 in the one-way ones.
    * DATA: a new sequence number is the one after the highest sent (none is
      skipped) and less than ``window`` after the oldest frame not yet
      acknowledged by a frame the peer sent that reached this bridge intact;
      any other ``seq`` is a retransmission of one of the last ``window``
      frames sent, with byte-identical TLPs and order stamps.
    * NAK: ``seq`` is ``ack + 1``, the receiver's expected sequence number,
      and a DATA frame ahead of it reached the model receiver while it
      expected that number (a gap).
    * ACK: ``seq`` is 0 and flag bit 0 (ack valid) or bit 1 (credits
      valid: a credit update, possibly before anything was received) is set.

    An acknowledgement that reaches the bridge while a retransmission is on
    its way leaves that retransmission legal, so retransmissions are not
    checked against the oldest unacknowledged frame. ``max_lag`` is the
    largest ack lag seen.
    """

    def __init__(self, name, parent, config, oracle):
        super().__init__(name, parent)
        self.config = config
        self.oracle = oracle
        self.frame_export = AnalysisImp("frame_export", self, self.write)
        self.peer_export = AnalysisImp("peer_export", self, self.observe)
        self.violations = _Violations(self)
        self.next_new = 0            # the sequence number of the next new DATA frame
        self.oldest = 0              # the oldest one sent and not acknowledged
        self.bodies = {}             # seq -> TLPs of its first transmission
        self.gaps = set()            # in-order counts at which a frame arrived ahead
        self.sent = 0
        self.max_lag = 0

    def observe(self, obs):
        bits = self.config.seq_bits
        if obs.verdict is Verdict.OUT_OF_ORDER:
            self.gaps.add(obs.accepted)
        if obs.frame is not None and obs.frame.flags & FLAG_ACK_VALID:
            ack = obs.frame.ack & (self.config.modulus - 1)
            if seq_offset(ack, self.oldest, bits) < seq_offset(self.next_new, self.oldest, bits):
                self.oldest = (ack + 1) & (self.config.modulus - 1)

    def write(self, item):
        try:
            frame = decode_frame(item.data)
        except FrameError:
            return                  # the NetworkWire reports malformed frames
        where = (f"{frame.frame_type.name} frame {self.sent} (seq {frame.seq}, ack {frame.ack}, "
                 f"flags {frame.flags}) at {get_sim_time('ns')} ns")
        self.sent += 1
        if (frame.seq | frame.ack) >> self.config.seq_bits:
            self.violations.add(f"{where}: seq or ack has bits above seq_bits")
        named = self._ack_named(frame, where)
        if frame.frame_type is FrameType.DATA:
            self._check_data(frame, where)
        elif frame.frame_type is FrameType.NAK:
            self._check_nak(frame, named, where)
        elif frame.frame_type is FrameType.ACK and (
                frame.seq or not frame.flags & (FLAG_ACK_VALID | FLAG_CREDITS_VALID)):
            self.violations.add(f"{where}: an ACK frame must have seq 0 and flag bit 0 or 1 set")

    def _ack_named(self, frame, where):
        """The model's in-order count whose ack ``frame`` carries, or None
        (a violation) when it is none of the last ``window + 1``."""
        mask, bits, tolerance = self.config.modulus - 1, self.config.seq_bits, self.config.window
        accepted = self.oracle.accepted[self.oracle.taken]
        if frame.flags & FLAG_ACK_VALID:
            lag = seq_offset((accepted - 1) & mask, frame.ack & mask, bits)
            named = accepted - lag
            if named < 1 or lag > tolerance:
                self.violations.add(f"{where}: acknowledges {frame.ack & mask}; the model "
                                     f"receiver's ack is {(accepted - 1) & mask} after "
                                     f"{accepted} in-order frames (lag {lag} > {tolerance}, "
                                     f"or a frame not accepted)")
                return None
        else:
            lag, named = accepted, 0
            if frame.ack & mask != mask or lag > tolerance:
                self.violations.add(f"{where}: ack-valid clear with ack {frame.ack}, after the "
                                    f"model receiver accepted {accepted} frames")
                return None
        self.max_lag = max(self.max_lag, lag)
        return named

    def _check_data(self, frame, where):
        bits, window = self.config.seq_bits, self.config.window
        seq = frame.seq & (self.config.modulus - 1)
        if seq == self.next_new:
            if seq_offset(seq, self.oldest, bits) >= window:
                self.violations.add(f"{where}: new seq {seq} is not within the window of "
                                    f"{window} from the oldest unacknowledged {self.oldest}")
            self.bodies[seq] = (frame.tlps, frame.stamps)
            self.next_new = (seq + 1) & (self.config.modulus - 1)
        elif not 1 <= seq_offset(self.next_new, seq, bits) <= window or seq not in self.bodies:
            self.violations.add(f"{where}: seq {seq} is neither the next new one "
                                f"({self.next_new}) nor one of the last {window} sent")
        elif (frame.tlps, frame.stamps) != self.bodies[seq]:
            self.violations.add(f"{where}: the retransmission of seq {seq} carries other TLPs "
                                f"than its first transmission")

    def _check_nak(self, frame, named, where):
        mask = self.config.modulus - 1
        if self.config.mode == "sr":     # one NAK per missing number, within the window
            if seq_offset(frame.seq & mask, (frame.ack + 1) & mask,
                          self.config.seq_bits) >= self.config.window:
                self.violations.add(f"{where}: a NAK asks for seq {frame.seq}, beyond the window "
                                    f"of {self.config.window} above ack {frame.ack}")
        elif frame.seq & mask != (frame.ack + 1) & mask:
            self.violations.add(f"{where}: a NAK asks for seq {frame.seq}, not the expected "
                                f"{(frame.ack + 1) & mask} (ack + 1)")
        elif named is not None and named not in self.gaps:
            self.violations.add(f"{where}: no DATA frame arrived ahead of seq "
                                f"{frame.seq & mask} while the model receiver expected it")

    def check_phase(self):
        self.violations.check()
        self.logger.info(f"{self.sent} frames sent follow the {self.config.mode} rules (largest ack lag "
                         f"{self.max_lag}, tolerance {self.config.window})")
