"""A small discrete-event kernel and PCIe links that join reactive models.

The reactive-model contract
    A model never owns the clock. It has

    * ``receive(tlp, t_ns, port) -> outputs``: a whole TLP arrived on ``port``
      at ``t_ns``;
    * ``timer(token, t_ns) -> outputs`` (optional): a timer it asked for fired;

    and ``outputs`` is a list of :class:`Send` (a TLP leaving on a port at a
    time >= ``t_ns``) and :class:`Timer` (call ``timer(token, t)`` at ``t``).
    Sends of one call at the same time leave in list order. Anything that
    honours this contract can drive a model: :class:`Fabric` below, or a
    cocotb testbench that feeds the TLPs it takes from an RTL bridge.

:class:`EventKernel`
    A heap of ``(time, seq, callback, args)``; ``seq`` keeps events of equal
    time in the order they were scheduled, so every run is deterministic. A
    callback may :meth:`~EventKernel.stop` the run. The one event kernel of
    the models: the system models (through :class:`Fabric`) and the link
    simulation (:mod:`tlpoe.models.linksim`) run on it.

:class:`PcieLink`
    One PCIe link, both directions: serialisation at the link's data rate
    (``gts`` GT/s per lane x ``lanes``, 8b/10b below 8 GT/s, 128b/130b from
    8 GT/s on) of the TLP plus ``TLP_OVERHEAD_BYTES`` of framing, one TLP
    after the other per direction, then a fixed ``latency_ns``. A TLP is
    delivered when its last byte has arrived.

:class:`Fabric`
    Joins model ports with channels. A channel is anything with
    ``transmit(end, tlp, t_ns)`` that later calls
    ``fabric.deliver(model, port, tlp, t_ns)``; :class:`PcieLink` does it
    through the kernel. To put bridge RTL between two models, replace that
    one link by a channel that drives the RTL and delivers what comes out.
"""

import heapq
import math
from collections import namedtuple

__all__ = ["Send", "Timer", "EventKernel", "PcieLink", "Fabric", "TLP_OVERHEAD_BYTES",
           "encoding_efficiency", "link_bytes_per_ns"]

#: A TLP leaving a model: at ``t_ns`` on ``port``.
Send = namedtuple("Send", "t_ns port tlp")
#: A model's request to have ``timer(token, t)`` called at ``t_ns``.
Timer = namedtuple("Timer", "t_ns token")

#: Link-layer bytes around each TLP: 2-byte sequence number + 4-byte LCRC,
#: plus framing (STP + END symbols at 2.5/5 GT/s; the 4-byte STP token, which
#: holds the sequence number, at 8 GT/s and above, then no END): 8 bytes in
#: either case (PCI Express Base Specification, Data Link Layer: TLP sequence
#: number and LCRC; Physical Layer: framing tokens). DLLPs (ACK, UpdateFC)
#: and SKP ordered sets are not modelled.
TLP_OVERHEAD_BYTES = 8


def encoding_efficiency(gts):
    """8b/10b for 2.5 and 5 GT/s, 128b/130b from 8 GT/s on."""
    return 128 / 130 if gts >= 8 else 8 / 10


def link_bytes_per_ns(gts, lanes):
    """Bytes per ns one direction of a link carries after line encoding."""
    return gts * lanes * encoding_efficiency(gts) / 8


class EventKernel:
    """Discrete-event kernel: ``schedule`` callbacks, ``run_until`` a time.

    ``now`` is the time of the event being run (after ``run_until(t_end)``
    with a finite ``t_end``: at least ``t_end``); ``last_ns`` the time of the
    last event run (0.0 before any); ``events_run`` how many have run."""

    def __init__(self):
        self.now = 0.0
        self.last_ns = 0.0
        self._heap = []
        self._seq = 0
        self._stop = False
        self.events_run = 0

    def schedule(self, t_ns, callback, *args):
        """Call ``callback(*args)`` at ``t_ns`` (after every event already
        scheduled for that time)."""
        if t_ns < self.now:
            raise ValueError(f"event at {t_ns} ns is in the past (now {self.now} ns)")
        heapq.heappush(self._heap, (t_ns, self._seq, callback, args))
        self._seq += 1

    def stop(self):
        """From inside a callback: end ``run_until`` after this event (it
        returns True, ``now`` stays this event's time)."""
        self._stop = True

    @property
    def pending(self):
        return len(self._heap)

    @property
    def next_ns(self):
        """The time of the next event (infinity when there is none)."""
        return self._heap[0][0] if self._heap else math.inf

    def run_until(self, t_end=math.inf, until=None):
        """Run events up to ``t_end`` (inclusive), or until a callback calls
        :meth:`stop` or ``until()`` is true after an event; returns True when
        one of those stopped it."""
        heap, pop = self._heap, heapq.heappop
        t = self.last_ns
        self._stop = False
        while heap and heap[0][0] <= t_end:
            t, _, callback, args = pop(heap)
            self.now = t
            callback(*args)
            self.events_run += 1
            if self._stop or until is not None and until():
                self._stop = False
                self.last_ns = t
                return True
        self.last_ns = t
        if t_end != math.inf:
            self.now = max(self.now, t_end)
        return False


class PcieLink:
    """One PCIe link: ``gts`` GT/s per lane, ``lanes`` lanes, ``latency_ns``
    from the last byte sent to the last byte received (PHY pipelines and
    flight). Direction 0 carries end A's TLPs to end B, direction 1 back."""

    def __init__(self, gts=8.0, lanes=16, latency_ns=20.0, *, name="link",
                 overhead_bytes=TLP_OVERHEAD_BYTES):
        if gts <= 0 or lanes not in (1, 2, 4, 8, 12, 16, 32):
            raise ValueError(f"link {name}: gts={gts}, lanes={lanes}")
        if latency_ns < 0:
            raise ValueError(f"link {name}: latency_ns={latency_ns} is negative")
        self.name = name
        self.gts, self.lanes, self.latency_ns = gts, lanes, latency_ns
        self.overhead_bytes = overhead_bytes
        self.bytes_per_ns = link_bytes_per_ns(gts, lanes)
        self.busy_until = [0.0, 0.0]
        self.tlps = [0, 0]
        self.bytes = [0, 0]
        self.fabric = None
        self.ends = None

    def wire_ns(self, tlp):
        """Serialisation time of one TLP with its link-layer overhead."""
        return (tlp.size + self.overhead_bytes) / self.bytes_per_ns

    def arrival_ns(self, direction, tlp, t_ns):
        """When the last byte of ``tlp``, handed over at ``t_ns``, arrives;
        advances the direction's transmitter."""
        start = max(t_ns, self.busy_until[direction])
        done = start + self.wire_ns(tlp)
        self.busy_until[direction] = done
        self.tlps[direction] += 1
        self.bytes[direction] += tlp.size + self.overhead_bytes
        return done + self.latency_ns

    def transmit(self, end, tlp, t_ns):
        """Channel interface: ``end`` 0 (A) or 1 (B) sends ``tlp`` at ``t_ns``."""
        arrival = self.arrival_ns(end, tlp, t_ns)
        model, port = self.ends[1 - end]
        self.fabric.kernel.schedule(arrival, self.fabric.deliver, model, port, tlp, arrival)


class Fabric:
    """Model ports joined by channels, driven by an :class:`EventKernel`."""

    def __init__(self, kernel=None):
        self.kernel = kernel or EventKernel()
        self._channels = {}                  # (id(model), port) -> (channel, end)
        self.unconnected = []                # Sends to a port with no channel

    def connect(self, a, a_port, b, b_port, channel):
        """Join ``a``'s ``a_port`` (end 0) to ``b``'s ``b_port`` (end 1)."""
        for model, port in ((a, a_port), (b, b_port)):
            if (id(model), port) in self._channels:
                raise ValueError(f"{model!r} port {port} is already connected")
        channel.fabric = self
        channel.ends = ((a, a_port), (b, b_port))
        self._channels[id(a), a_port] = (channel, 0)
        self._channels[id(b), b_port] = (channel, 1)
        return channel

    def deliver(self, model, port, tlp, t_ns):
        """A TLP arrived at ``model``'s ``port``: let the model react."""
        self.apply(model, model.receive(tlp, t_ns, port))

    def apply(self, model, outputs):
        """Schedule a model's outputs (Sends and Timers)."""
        for item in outputs or ():
            if isinstance(item, Send):
                self.kernel.schedule(item.t_ns, self._transmit, model, item.port, item.tlp,
                                     item.t_ns)
            else:
                self.kernel.schedule(item.t_ns, self._fire, model, item.token, item.t_ns)

    def _transmit(self, model, port, tlp, t_ns):
        entry = self._channels.get((id(model), port))
        if entry is None:
            self.unconnected.append((t_ns, model, port, tlp))
            return
        channel, end = entry
        channel.transmit(end, tlp, t_ns)

    def _fire(self, model, token, t_ns):
        self.apply(model, model.timer(token, t_ns))
