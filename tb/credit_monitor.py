"""End-to-end credits checked on the wire: the receiver's buffers never overrun.

A bridge advertises, in every frame it sends, cumulative credit limits per
class (headers and 16-byte data credits, modulo ``2**8`` and ``2**16``): the
size of its receive buffers plus every credit it has freed. The peer may
send a TLP only while the limits it has received cover it. This monitor
checks exactly that from outside the RTL, for one direction: every TLP in a
first transmission of a DATA frame that the sender puts on the wire is
charged to its class, and the running totals must stay within the latest
limits the sender had been handed (frames from the receiver that reached
the sender intact, before the sending frame left). Were the totals ever
above the limits, the receiver's buffer would have had to hold more than
its size: an overrun. It is an assertion (``check_phase``), not a hope.
"""

from pyuvm import uvm_component

from ..models.frame import FrameError, FrameType, decode_frame
from ..models.link import seq_offset
from ..models.ordering import CREDIT_CLASSES, flow_control_need
from ..models.wire import BRIDGE_HEADER
from .scoreboard import AnalysisImp

__all__ = ["CreditMonitor"]

HDR_BITS = BRIDGE_HEADER["credit_p_hdr"].width
DATA_BITS = BRIDGE_HEADER["credit_p_data"].width
CLASS_NAMES = ("p", "np", "cpl")


class _Cumulative:
    """A cumulative counter received modulo ``2**bits``, unwrapped."""

    def __init__(self, bits):
        self.bits, self.value = bits, None

    def update(self, raw):
        if self.value is None:
            self.value = raw
            return
        ahead = (raw - self.value) % (1 << self.bits)
        if ahead < 1 << (self.bits - 1):     # never back to an older value
            self.value += ahead


class CreditMonitor(uvm_component):
    """One direction: ``limit_export`` takes the frames handed to the
    sender from the receiver (the credits it learns), ``sent_export`` the
    frames the sender puts on the wire. ``seq_bits`` tells first
    transmissions from retransmissions (a retransmission consumes nothing).

    ``enabled`` False (a run with the sender's credits switched off)
    still counts ``overruns`` but does not fail. Results: ``tlps_charged``,
    ``overruns`` (TLPs sent beyond the limits), ``min_headroom`` per class
    (the fewest header credits left after a TLP)."""

    def __init__(self, name, parent, seq_bits, enabled=True, decode_limit=decode_frame,
                 decode_sent=decode_frame):
        super().__init__(name, parent)
        # a frame's bytes to a Frame: the receivers' checks on the transport,
        # the sender's (whose credits it learns) and the receiver's (whose
        # credits the frames sent consume)
        self.decode_limit, self.decode_sent = decode_limit, decode_sent
        self.seq_bits = seq_bits
        self.enabled = enabled
        self.limit_export = AnalysisImp("limit_export", self, self.write_limit)
        self.sent_export = AnalysisImp("sent_export", self, self.write_sent)
        self.limits = [(_Cumulative(HDR_BITS), _Cumulative(DATA_BITS)) for _ in CLASS_NAMES]
        self.consumed = [[0, 0] for _ in CLASS_NAMES]
        self.next_new = 0
        self.tlps_charged = 0
        self.overruns = 0
        self.min_headroom = [None] * len(CLASS_NAMES)
        self.first_problem = None

    def write_limit(self, item):
        try:
            frame = self.decode_limit(item.data)
        except FrameError:
            return                          # the bridge drops it too
        if not frame.carries_credits:
            return
        for (hdr, data), name in zip(self.limits, CLASS_NAMES):
            hdr.update(getattr(frame, f"credit_{name}_hdr"))
            data.update(getattr(frame, f"credit_{name}_data"))

    def write_sent(self, item):
        try:
            frame = self.decode_sent(item.data)
        except FrameError:
            return
        if frame.frame_type is not FrameType.DATA:
            return
        modulus = 1 << self.seq_bits
        if seq_offset(frame.seq % modulus, self.next_new, self.seq_bits) >= modulus // 2:
            return                          # a retransmission: charged when first sent
        self.next_new = (frame.seq + 1) % modulus
        for tlp in frame.tlps:
            cls, credits = flow_control_need(tlp)
            k = CREDIT_CLASSES.index(cls)
            self.consumed[k][0] += 1
            self.consumed[k][1] += credits
            self.tlps_charged += 1
            hdr, data = self.limits[k]
            if hdr.value is None:
                self._overrun(f"a {CLASS_NAMES[k]} TLP sent before any credits were received")
                continue
            headroom = hdr.value - self.consumed[k][0]
            if self.min_headroom[k] is None or headroom < self.min_headroom[k]:
                self.min_headroom[k] = headroom
            if headroom < 0 or data.value < self.consumed[k][1]:
                self._overrun(f"{CLASS_NAMES[k]}: {self.consumed[k][0]} headers / "
                              f"{self.consumed[k][1]} data credits sent, limits "
                              f"{hdr.value} / {data.value} (frame seq {frame.seq})")

    def _overrun(self, message):
        self.overruns += 1
        if self.first_problem is None:
            self.first_problem = message
            log = self.logger.error if self.enabled else self.logger.info
            log(f"receiver buffer overrun: {message}")

    def check_phase(self):
        if self.enabled and self.overruns:
            raise AssertionError(f"{self.get_full_name()}: {self.overruns} TLP(s) sent beyond "
                                 f"the receiver's credits; first: {self.first_problem}")
        self.logger.info(f"{self.tlps_charged} TLPs within the receiver's credits; least "
                         f"header headroom per class {dict(zip(CLASS_NAMES, self.min_headroom))}")
