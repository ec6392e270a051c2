"""The hostile-input bench: frames that lie in every field, fed into a
receive path whose every verdict the models predict, frame by frame.

:class:`ReceivePort` is the only code here that touches the DUT: it drives
``frame_in`` as a MAC does (one beat per cycle whenever ``ready`` allows,
never withdrawing ``valid``), collects the TLPs on the TLP output (always
ready), and after every frame's last beat is taken reads the counters in the
read-only phase of that very clock edge, so each frame's counter movements are
its own even when one-beat frames follow each other every cycle.

What is checked per frame (:class:`FrameJudge`):

* the verdict of the frame model (``decode_frame``: a
  :class:`~tlpoe.models.frame.DropReason`, or a good DATA or control frame)
  and, with a link layer, of the reference receiver
  (:class:`~tlpoe.models.link.LinkReceiver`: accepted, duplicate, out of
  order, held);
* exactly the counters that verdict names moved, by exactly one (a frame
  accepted in selective repeat moves ``frames_accepted`` by one plus the held
  frames it releases), and no other counter of the set moved;
* the TLPs delivered are exactly those the models deliver, in order, bit
  exact (none from a dropped, duplicate or out-of-order frame), each with the
  order stamp of its prefix;
* ``ready`` on ``frame_in`` never stays low for more than ``stall_bound``
  cycles while a beat waits, and at the end every TLP is out within
  ``drain_bound`` cycles.

The Bridge's transmit side and its peer are in :mod:`tlpoe.tb.fuzz_bridge`.
"""

import collections

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from ..models.frame import FrameError, decode_frame
from ..models.wire import FrameType
from ..rtl.framing.deframer import verdict_latency
from .bfm import StreamLayout, StreamProtocolError, frame_to_beats

__all__ = ["Prediction", "predict_frame", "ReceivePort", "FrameJudge", "FuzzFailure",
           "FATE_COUNTERS", "MAC_LINE", "WIRE_OVERHEAD", "MIN_FRAME"]

#: width -> (line rate in Gb/s, clock in MHz): the MAC each width is meant
#: for (issue 17): 10 GbE at 64 bits and 156.25 MHz, 100 GbE at 512 bits and
#: 322.27 MHz.
MAC_LINE = {64: (10, 156.25), 512: (100, 322.27)}
#: Bytes a frame occupies on the line besides its own: FCS, preamble, gap.
WIRE_OVERHEAD = 4 + 8 + 12
#: The smallest frame on the line, without its FCS.
MIN_FRAME = 60

#: The receive counters whose movements a frame's verdict names: the
#: deframer's (exactly one per frame) and the link receiver's (at most one).
FATE_COUNTERS = ("good_frames", "control_frames")
LINK_FATES = ("frames_accepted", "duplicates", "out_of_order", "out_of_order_buffered")


class FuzzFailure(AssertionError):
    """The RTL did something the models did not predict."""


class Prediction:
    """What the models say one frame does: ``moves`` (counter name ->
    increment) and ``tlps`` ((bytes, stamp) delivered, in order)."""

    __slots__ = ("moves", "tlps", "frame", "label")

    def __init__(self, label, moves, tlps=(), frame=None):
        self.label, self.moves, self.tlps, self.frame = label, moves, list(tlps), frame


def predict_frame(data, mtu):
    """The frame model's verdict on ``data``: (:class:`Prediction` of the
    deframer's counters, the decoded frame or None)."""
    try:
        frame = decode_frame(data, mtu=mtu)
    except FrameError as error:
        return Prediction(f"drop {error.reason.name}", {f"drops_{error.reason.name}": 1}), None
    if frame.frame_type is FrameType.DATA:
        return Prediction("data", {"good_frames": 1},
                          zip(frame.tlps, frame.stamps), frame), frame
    return Prediction(f"control {frame.frame_type.name}", {"control_frames": 1}), frame


class ReceivePort:
    """Drives ``frame_in`` (``frame_port``) and watches the TLP output
    (``tlp_port``, held ready) of ``dut``; ``counters`` are the names read
    after each frame (``drops`` is split into ``drops_<REASON>``), each from
    the port of its name, or from ``reader()`` (a dict of every counter, as
    :meth:`~tlpoe.tb.bridge_ports.BridgePorts.stats` gives a bridge's).

    A beat that waits more than ``stall_bound`` cycles fails the test at
    once (a jammed receive path). :meth:`send` queues a frame with a callback ``on_done(counters)`` called
    in the read-only phase of the edge ``counter_lag`` edges after the one
    that took its last beat (default: the Deframer's verdict latency at
    ``width``, when its counters move). Delivered TLPs
    go to ``on_tlp(bytes, stamp)``. ``stamped``: the TLP stream's payload
    carries each TLP's order stamp after ``last`` (read with its first beat;
    otherwise the stamp given is 0).  ``latency`` (optional: name -> cycles) gives the
    counters that move that many edges later still (the link feedback's):
    each is read then, and ``on_done`` is called once all are read.

    ``mac_line``: ``(Gb/s, MHz)``, frames no faster than an Ethernet MAC of
    that line rate delivers them at that clock (:data:`MAC_LINE`): a
    frame's beats come one per cycle, and the next frame starts at the
    first cycle its line allows, each frame taking its bytes (padded to the
    60-byte minimum) plus FCS, preamble and inter-frame gap (24 bytes) of
    line time. Without it frames follow each other with no gap, runts
    included (for a receive path that may hold ``frame_in``)."""

    def __init__(self, dut, clock, width, *, frame_port, tlp_port, counters, on_tlp,
                 stall_bound, stamped=False, drop_reasons=(), counter_lag=None,
                 latency=None, mac_line=None, reader=None):
        self.dut, self.clock, self.width = dut, clock, width
        self.counter_lag = verdict_latency(width) if counter_lag is None else counter_lag
        self.latency = dict(latency or {})
        unknown = set(self.latency) - set(counters)
        if unknown:
            raise ValueError(f"latency names counters not read: {sorted(unknown)}")
        self.lags = sorted({self.counter_lag + extra for extra in self.latency.values()} |
                           {self.counter_lag})
        self.waiting = collections.deque()    # [cycle of the last beat, on_done, counters]
        self.frame_layout = StreamLayout.frame(width)
        self.tlp_layout = StreamLayout.tlp(width)
        self.f_valid = getattr(dut, f"{frame_port}__valid")
        self.f_ready = getattr(dut, f"{frame_port}__ready")
        self.f_payload = getattr(dut, f"{frame_port}__payload")
        self.t_valid = getattr(dut, f"{tlp_port}__valid")
        self.t_payload = getattr(dut, f"{tlp_port}__payload")
        getattr(dut, f"{tlp_port}__ready").value = 1
        self.stamped = stamped
        self.counter_names = counters
        self.drop_reasons = drop_reasons
        self.reader = reader
        self.on_tlp = on_tlp
        self.queue = collections.deque()      # [beats, on_done, line cycles]
        self.bytes_per_cycle = None if mac_line is None else \
            mac_line[0] * 1e3 / 8 / mac_line[1]
        self.cycles = 0
        self.stall = 0                        # cycles the current beat has waited
        self.max_stall = 0
        self.stall_bound = stall_bound
        self.frames_taken = 0
        self.f_valid.value = 0
        self._wake = cocotb.triggers.Event()
        self._task = cocotb.start_soon(self._run())

    def send(self, data, on_done=None):
        beats = [self.frame_layout.pack(b) for b in frame_to_beats(data, self.width)]
        line = 0.0
        if self.bytes_per_cycle:
            line = (max(len(data), MIN_FRAME) + WIRE_OVERHEAD) / self.bytes_per_cycle
        self.queue.append((beats, on_done, line))
        self._wake.set()

    @property
    def pending(self):
        return len(self.queue) + len(self.waiting)

    def read_counters(self):
        out = {}
        full = self.reader() if self.reader is not None else None
        for name in self.counter_names:
            if full is not None:
                if name == "drops":
                    out.update({f"drops_{r.name}": full["drops"][r] for r in self.drop_reasons})
                else:
                    out[name] = full[name]
                continue
            value = int(getattr(self.dut, name).value)
            if name == "drops":
                for reason in self.drop_reasons:
                    out[f"drops_{reason.name}"] = (value >> (32 * reason)) & 0xFFFFFFFF
            else:
                out[name] = value
        return out

    async def _run(self):
        edge, read_only = RisingEdge(self.clock), ReadOnly()
        f_valid, f_ready, f_payload = self.f_valid, self.f_ready, self.f_payload
        t_valid, t_payload, unpack = self.t_valid, self.t_payload, self.tlp_layout.unpack
        beat_bytes = self.width // 8
        queue = self.queue
        index = 0                   # next beat of queue[0] to offer
        offered = False
        line_free = 0.0             # when the MAC's line is free for the next frame
        next_start = 0              # the first cycle the next frame may start
        started = False             # queue[0]'s first beat was offered
        tlp, stamp = bytearray(), 0
        while True:
            await edge
            self.cycles += 1
            if offered and f_ready.value:
                self.stall = 0
                index += 1
                if index == len(queue[0][0]):
                    _, done, _ = queue.popleft()
                    started = False
                    self.waiting.append([self.cycles, done, {}])
                    self.frames_taken += 1
                    index = 0
            elif offered:
                self.stall += 1
                self.max_stall = max(self.max_stall, self.stall)
                if self.stall > self.stall_bound:
                    raise FuzzFailure(f"frame_in stalled for over {self.stall_bound} cycles "
                                      f"(frame {self.frames_taken}, beat {index}): the "
                                      f"receive path is jammed")
            if t_valid.value:
                data, keep, last = unpack(int(t_payload.value))
                if not tlp and self.stamped:
                    stamp = int(t_payload.value) >> self.tlp_layout.width
                if keep == 0 or keep & (keep + 1):
                    raise StreamProtocolError(f"TLP beat keep={keep:#x} not contiguous")
                tlp += data.to_bytes(beat_bytes, "little")[:4 * keep.bit_length()]
                if last:
                    self.on_tlp(bytes(tlp), stamp)
                    tlp = bytearray()
            if queue and not started and self.cycles < next_start:
                offered = False
            else:
                offered = bool(queue)
                if offered and not started:
                    started = True
                    line_free = max(line_free, self.cycles) + queue[0][2]
                    next_start = max(-int(-line_free // 1), self.cycles + len(queue[0][0]))
            if offered:
                f_payload.value = queue[0][0][index]
            f_valid.value = int(offered)
            if any(cycle + lag == self.cycles for cycle, _, _ in self.waiting
                   for lag in self.lags):
                await read_only
                self._settle(self.read_counters())

    def _settle(self, now):
        """Counters read at this edge: each waiting frame takes those whose
        lag ends here; a frame with all of them is done (in order)."""
        for cycle, _, got in self.waiting:
            for name, value in now.items():
                base = "drops" if name.startswith("drops_") else name
                if cycle + self.counter_lag + self.latency.get(base, 0) == self.cycles:
                    got[name] = value
        while self.waiting and len(self.waiting[0][2]) == len(now):
            _, done, got = self.waiting.popleft()
            if done is not None:
                done(got)


class FrameJudge:
    """Compares each frame's counter movements and the TLPs delivered with
    the predictions. ``watched``: the counter names whose movements must be
    exactly the predicted ones (others are read but not judged per frame)."""

    def __init__(self, watched, log, *, max_errors=5):
        self.watched = tuple(watched)
        self.log = log
        self.before = None
        self.expected = collections.deque()   # (bytes, stamp, frame index)
        self.delivered = 0
        self.errors = []
        self.max_errors = max_errors
        self.verdicts = collections.Counter()
        self.kinds = collections.Counter()
        self.frames = 0

    def start(self, counters):
        self.before = counters

    def error(self, message):
        self.errors.append(message)
        self.log.error(message)
        if len(self.errors) >= self.max_errors:
            raise FuzzFailure("; ".join(self.errors))

    def frame_done(self, index, kind, prediction, counters):
        """Frame ``index`` (``kind``) finished: its counter movements."""
        self.frames += 1
        self.kinds[kind] += 1
        self.verdicts[prediction.label] += 1
        moved = {n: (counters[n] - self.before[n]) & 0xFFFFFFFF for n in self.watched}
        moved = {n: v for n, v in moved.items() if v}
        want = {n: v for n, v in prediction.moves.items() if v}
        if moved != want:
            self.error(f"frame {index} ({kind}, {prediction.label}): counters moved {moved}, "
                       f"the models say {want}")
        self.before = counters
        for tlp, stamp in prediction.tlps:
            self.expected.append((tlp, stamp, index))

    def tlp_out(self, data, stamp):
        if not self.expected:
            self.error(f"TLP {self.delivered} delivered that no good frame carried: "
                       f"{data[:16].hex()}... ({len(data)} bytes)")
            return
        want, want_stamp, index = self.expected.popleft()
        if data != want or stamp != want_stamp:
            self.error(f"TLP {self.delivered} (of frame {index}): delivered {len(data)} bytes "
                       f"{data[:16].hex()}... stamp {stamp}, expected {len(want)} bytes "
                       f"{want[:16].hex()}... stamp {want_stamp}")
        self.delivered += 1

    def summary(self):
        return {"frames": self.frames, "tlps_delivered": self.delivered,
                "verdicts": dict(sorted(self.verdicts.items())),
                "kinds": dict(sorted(self.kinds.items())), "errors": list(self.errors)}

