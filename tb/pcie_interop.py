"""cocotbext-pcie's PCIe models (Alex Forencich's, not ours) joined to the
bridges' TLP streams.

cocotbext-pcie models a PCIe hierarchy in Python: a
:class:`~cocotbext.pcie.core.RootComplex` with its root ports, devices and
endpoints, each link a pair of ``SimPort`` s with its own data link layer
(sequence numbers, ACK DLLPs, flow-control credits). This module lets such
a link end at the RTL instead of at another model:

* :func:`tlp_to_bytes` / :func:`bytes_to_tlp`: a cocotbext-pcie ``Tlp`` as
  the bytes a TLP stream carries (header DWs big-endian, then the payload in
  address order; no framing, sequence number or LCRC) and back;
* :class:`TlpBytesPort`: a ``SimPort`` (the link partner of a root port or
  a device) that terminates the link, as a real bridge's PCIe core does, and
  exposes its TLPs as bytes; only TLPs cross, never DLLPs;
* :class:`BridgeTlpPort`: joins a :class:`TlpBytesPort` to one bridge's
  ``tlp_in`` / ``tlp_out`` through the stream BFMs (:mod:`tlpoe.tb.bfm`),
  counting what crosses (:class:`TlpTally`); a :class:`Fault` there makes
  the bridge misbehave once, on purpose: corrupt one byte of one
  completion (:class:`CompletionCorruptor`) or let a posted write be
  passed (:class:`PostedWriteHold`).

Importing this module applies :func:`apply_cocotb2_shim` (see there).
"""

import collections
import hashlib
import logging

import cocotb
import cocotb.task
from cocotb.queue import Queue
from cocotb.triggers import RisingEdge, Timer
from cocotb.utils import get_sim_time
from cocotbext.pcie.core import port as _pcie_port
from cocotbext.pcie.core.port import SimPort
from cocotbext.pcie.core.tlp import Tlp as PcieTlp

from ..models.tlp import Tlp, TlpType
from .bfm import StreamDriver, StreamLayout, StreamMonitor

__all__ = ["apply_cocotb2_shim", "tlp_to_bytes", "bytes_to_tlp", "TlpBytesPort", "TlpTally",
           "Fault", "CompletionCorruptor", "PostedWriteHold", "BridgeTlpPort", "FC_INIT"]


# --- cocotb 2 shim ------------------------------------------------------------------------

def apply_cocotb2_shim():
    """Make cocotbext-pcie 0.2.16 (written for cocotb 1.x) call cocotb 2.x's
    API instead of two calls cocotb 2.0 deprecated. Without it the models
    work on cocotb 2.1 but warn (DeprecationWarning), and any run with
    warnings as errors fails:

    * ``Task.join()``: ``MemoryTlpRegion.read`` and the IO region's read and
      write ``await op.join()`` on every memory or IO read. In cocotb 2.x
      a Task is awaited directly and gives the same result, so ``join``
      returns the task itself. This is process-wide (cocotb's Task class);
      the project's own code never calls ``join``.
    * ``Task.kill()``: ``Port.stop_ack_latency_timer`` and
      ``Port.stop_fc_update_timer`` (on duplicate or out-of-sequence TLPs):
      replaced by the same methods calling ``cancel()``; cocotbext-pcie's
      own class only.

    Idempotent; applied when this module is imported, before any model is
    built."""
    cocotb.task.Task.join = _task_join
    _pcie_port.Port.stop_ack_latency_timer = _stop_ack_latency_timer
    _pcie_port.Port.stop_fc_update_timer = _stop_fc_update_timer


def _task_join(self):
    return self


def _stop_ack_latency_timer(self):
    if self._ack_latency_timer_cr is not None:
        self._ack_latency_timer_cr.cancel()
        self._ack_latency_timer_cr = None


def _stop_fc_update_timer(self):
    if self._fc_update_timer_cr is not None:
        self._fc_update_timer_cr.cancel()
        self._fc_update_timer_cr = None


apply_cocotb2_shim()


# --- TLPs as bytes ------------------------------------------------------------------------

def tlp_to_bytes(tlp):
    """A cocotbext-pcie ``Tlp`` as stream bytes: 3 or 4 header DWs
    big-endian, then the payload. (cocotbext-pcie 0.2.16 packs no Message
    TLPs, prefixes or digests; the models here send none.)"""
    return bytes(tlp.pack())


def bytes_to_tlp(raw):
    """The cocotbext-pcie ``Tlp`` of stream bytes (the inverse of :func:`tlp_to_bytes`)."""
    tlp = PcieTlp.unpack(bytearray(raw))
    tlp.data = bytearray(tlp.data)
    return tlp


#: Credits a :class:`TlpBytesPort` advertises, as cocotbext-pcie's own switch
#: and root ports do: [PH, PD, NPH, NPD, CPLH, CPLD] per VC (0: infinite).
FC_INIT = [[64, 1024, 64, 64, 64, 1024]] * 8


class TlpBytesPort(SimPort):
    """The link partner of a cocotbext-pcie port, its TLPs as bytes.

    A TLP received from the link is handed to ``await on_rx_bytes(raw)``;
    its flow-control credits return to the sender once that returns (so a
    slow consumer holds the sender back, as a full receive buffer does).
    ``await send_bytes(raw)`` sends a TLP over the link (waiting for the
    partner's credits). Set ``max_link_speed`` and ``max_link_width`` before
    ``connect``: the link trains to the lower of both ends."""

    def __init__(self, name, on_rx_bytes=None, fc_init=FC_INIT, max_link_speed=3,
                 max_link_width=16):
        super().__init__(fc_init=fc_init)
        self.name = name
        self.log = logging.getLogger(f"cocotb.pcie.{name}")
        self.max_link_speed, self.max_link_width = max_link_speed, max_link_width
        self.on_rx_bytes = on_rx_bytes
        self.rx_handler = self._rx_tlp

    async def _rx_tlp(self, tlp):
        if self.on_rx_bytes is None:
            raise RuntimeError(f"{self.name}: a TLP arrived and nothing takes it")
        await self.on_rx_bytes(tlp_to_bytes(tlp))
        tlp.release_fc()

    async def send_bytes(self, raw):
        tlp = bytes_to_tlp(raw)
        if not tlp.check():
            raise AssertionError(f"{self.name}: malformed TLP {bytes(raw).hex()}")
        await self.send(tlp)


# --- what crosses a bridge ----------------------------------------------------------------

def is_split_completion(tlp):
    """A completion with data that is not its request's last: more bytes
    remain (Byte Count) than its payload carries after Lower Address."""
    return (tlp.type.is_completion and tlp.type.has_data
            and tlp.byte_count > 4 * tlp.length - (tlp.lower_address & 3))


class TlpTally:
    """Counts the TLPs of one stream, each decoded by the project's TLP
    model (:class:`tlpoe.models.tlp.Tlp`, which raises on a malformed one):
    by type, bytes, completions with data and split completions."""

    def __init__(self):
        self.by_type = collections.Counter()
        self.tlps = self.bytes = self.payload_bytes = 0
        self.completions_with_data = self.split_completions = 0
        self.largest_payload = collections.Counter()     # type -> bytes

    def add(self, raw):
        tlp = Tlp.unpack(raw)
        name = tlp.type.value
        self.by_type[name] += 1
        self.tlps += 1
        self.bytes += len(raw)
        payload = 4 * tlp.length if tlp.type.has_data else 0
        self.payload_bytes += payload
        self.largest_payload[name] = max(self.largest_payload[name], payload)
        if tlp.type.is_completion and tlp.type.has_data:
            self.completions_with_data += 1
            self.split_completions += is_split_completion(tlp)
        return tlp

    def as_dict(self):
        return dict(tlps=self.tlps, bytes=self.bytes, payload_bytes=self.payload_bytes,
                    completions_with_data=self.completions_with_data,
                    split_completions=self.split_completions, by_type=dict(self.by_type),
                    largest_payload=dict(self.largest_payload))


def _now():
    return get_sim_time("ns")


class Fault:
    """A fault the bench puts in a bridge's output: once armed
    (:meth:`arm`), it acts on the first TLP that :meth:`matches`, once;
    ``fired`` then describes what it did. :meth:`__call__` gets each TLP
    leaving the bridge (``raw`` bytes, ``tlp`` decoded) and ``deliver`` (a
    function sending bytes on to the PCIe model) and returns the bytes to
    send now, or None when the fault delivers them itself."""

    def __init__(self, name):
        self.name = name
        self.armed = False
        self.fired = None

    def arm(self):
        if self.fired is None:
            self.armed = True

    def matches(self, tlp):
        raise NotImplementedError

    def __call__(self, raw, tlp, deliver):
        if not (self.armed and self.matches(tlp)):
            return raw
        self.armed = False
        self.fired = dict(fault=type(self).__name__, where=self.name, ns=_now(),
                          type=tlp.type.value, tag=tlp.tag, requester=str(tlp.requester_id))
        return self.act(bytearray(raw), tlp, deliver)

    def act(self, raw, tlp, deliver):
        raise NotImplementedError


class CompletionCorruptor(Fault):
    """Flips every bit of the first valid payload byte (at Lower
    Address[1:0]) of a completion with data: the bridge corrupting one
    byte of one completion."""

    def matches(self, tlp):
        return tlp.type.is_completion and tlp.type.has_data

    def act(self, raw, tlp, deliver):
        at = 12 + (tlp.lower_address & 3)       # a completion's header is 3 DWs
        before = raw[at]
        raw[at] ^= 0xFF
        self.fired.update(byte_count=tlp.byte_count, lower_address=tlp.lower_address,
                          payload_byte=at - 12, before=before, after=raw[at])
        logging.getLogger("cocotb.pcie.fault").warning(
            "%s: corrupted a completion, tag %d, payload byte %d %#04x -> %#04x",
            self.name, tlp.tag, at - 12, before, raw[at])
        return bytes(raw)


class PostedWriteHold(Fault):
    """Holds a memory write of at least ``min_payload`` bytes for
    ``hold_ns`` while the TLPs behind it go on: the bridge letting posted
    writes pass each other (an MSI after a DMA write then arrives first)."""

    def __init__(self, name, min_payload=64, hold_ns=2000):
        super().__init__(name)
        self.min_payload, self.hold_ns = min_payload, hold_ns

    def matches(self, tlp):
        return tlp.type is TlpType.MWr and 4 * tlp.length >= self.min_payload

    def act(self, raw, tlp, deliver):
        self.fired.update(address=hex(tlp.address), payload=4 * tlp.length, held_ns=self.hold_ns)
        logging.getLogger("cocotb.pcie.fault").warning(
            "%s: holding a %d-byte memory write to %#x for %d ns", self.name, 4 * tlp.length,
            tlp.address, self.hold_ns)

        async def later():
            await Timer(self.hold_ns, "ns")
            deliver(bytes(raw))
        cocotb.start_soon(later())
        return None


def _digest(raw):
    return hashlib.blake2b(raw, digest_size=12).digest()


class BridgeTlpPort:
    """``port`` (a :class:`TlpBytesPort`) joined to the TLP streams of the
    bridge whose ports are ``{prefix}_tlp_in`` and ``{prefix}_tlp_out``.

    A TLP from the PCIe model is driven into ``tlp_in`` on a clock edge, and
    its credits go back to the model once the bridge has taken its last
    beat (the bridge's backpressure reaches the model's flow control).
    ``tlp_out`` is always ready; each TLP is decoded and counted
    (``tally_in`` / ``tally_out``), passed through the :class:`Fault` s in
    ``faults`` (none: the bridge's output as it is), and sent to the model
    in order. ``taken`` and ``delivered``
    count the digests of the TLPs taken into ``tlp_in`` and sent on to the
    model (after any corruption)."""

    def __init__(self, dut, clock, width, prefix, port, faults=()):
        layout = StreamLayout.tlp(width)
        self.clock, self.port, self.faults = clock, port, list(faults)
        self.driver = StreamDriver(dut, f"{prefix}_tlp_in", clock, layout,
                                   name=f"{prefix}_tlp_in")
        self.monitor = StreamMonitor(dut, f"{prefix}_tlp_out", clock, layout, drive_ready=True,
                                     callback=self._out, name=f"{prefix}_tlp_out")
        self.tally_in, self.tally_out = TlpTally(), TlpTally()
        self.taken, self.delivered = collections.Counter(), collections.Counter()
        self.pending = 0                 # TLPs out of the bridge not yet sent to the model
        self._to_model = Queue()
        port.on_rx_bytes = self._in
        self._task = cocotb.start_soon(self._deliver())

    async def _in(self, raw):
        self.tally_in.add(raw)
        self.taken[_digest(raw)] += 1
        await RisingEdge(self.clock)     # act on a clock edge, as every BFM does
        await self.driver.send(raw)

    def _out(self, packet):
        tlp = self.tally_out.add(packet.data)
        raw = packet.data
        self.pending += 1
        for fault in self.faults:
            raw = fault(raw, tlp, self._to_model_later)
            if raw is None:
                return
        self._to_model_later(raw)

    def _to_model_later(self, raw):
        self.delivered[_digest(raw)] += 1
        self._to_model.put_nowait(raw)

    async def _deliver(self):
        while True:
            raw = await self._to_model.get()
            await self.port.send_bytes(raw)
            self.pending -= 1
