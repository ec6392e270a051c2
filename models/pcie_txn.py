"""PCIe transaction helpers shared by the device-side and host models.

* :func:`split_requests`: a DMA transfer cut into memory requests of at most
  ``max_size`` bytes, each aligned so that none crosses a ``max_size``
  boundary, hence no 4 KiB boundary (the sizes are powers of two <= 4096).
* :func:`request_range`: the bytes a memory request really touches, from
  Length and the byte enables.
* :func:`completions_for_read`: a completer's answer to a read, split at the
  Read Completion Boundary (RCB) and at most Max Payload Size per completion.
* :class:`ReadTracker`: a requester's tag pool and completion reassembly,
  which accepts completions of different tags in any order and checks Byte
  Count and Lower Address of each.
* :func:`write_spans`: the (address, bytes) runs a memory write stores, with
  its byte enables applied.
* :class:`ConfigSpace`: 4 KiB of configuration registers with write masks, so
  that BAR sizing (write all ones, read the mask back) falls out of the masks.

Plain Python, no simulator; used by :mod:`tlpoe.models.gpu`,
:mod:`tlpoe.models.host` and :mod:`tlpoe.models.pcie_switch`.
"""

from collections import deque
from dataclasses import dataclass, field

from .tlp import CplStatus, Tlp, TlpType

__all__ = [
    "PAGE", "split_requests", "request_range", "completions_for_read", "write_spans",
    "CompletionError", "PendingRead", "ReadTracker", "ConfigSpace", "decode_mps",
    "encode_size_field",
]

#: No memory request may cross this boundary.
PAGE = 4096


def split_requests(address, nbytes, max_size):
    """[(address, nbytes)] covering ``nbytes`` from ``address``, each at most
    ``max_size`` bytes and ending at a ``max_size``-aligned address (or the
    end), so no request crosses a ``max_size`` or a 4 KiB boundary."""
    if max_size <= 0 or max_size & (max_size - 1) or max_size > PAGE:
        raise ValueError(f"max_size={max_size} must be a power of two <= {PAGE}")
    chunks = []
    end = address + nbytes
    while address < end:
        stop = min(end, (address // max_size + 1) * max_size)
        chunks.append((address, stop - address))
        address = stop
    return chunks


def _first_enabled(be):
    for i in range(4):
        if be >> i & 1:
            return i
    return 0


def request_range(tlp):
    """(first byte address, byte count) a memory request touches: the span
    from the first enabled byte to the last (the completer's Byte Count)."""
    start = tlp.address + _first_enabled(tlp.first_be)
    if tlp.length == 1:
        if tlp.first_be == 0:
            return tlp.address, 1           # zero-length read: one byte of Byte Count
        last = max(i for i in range(4) if tlp.first_be >> i & 1)
        return start, last - _first_enabled(tlp.first_be) + 1
    last = max(i for i in range(4) if tlp.last_be >> i & 1)
    end = tlp.address + 4 * (tlp.length - 1) + last + 1
    return start, end - start


def completions_for_read(request, read, *, completer_id, rcb, max_payload):
    """The CplDs answering MRd ``request``, data from ``read(address, n)``
    (bytes at a DW-aligned address).

    Each completion but the last ends on an RCB-aligned address; each carries
    at most ``max_payload`` bytes of whole DWs. Byte Count is the bytes left
    including this completion, Lower Address the low 7 bits of its first
    byte's address (spec: "Completion Rules")."""
    if rcb not in (64, 128):
        raise ValueError(f"rcb={rcb} must be 64 or 128")
    if max_payload < rcb:
        raise ValueError(f"max_payload={max_payload} is below rcb={rcb}")
    start, count = request_range(request)
    end = start + count
    dw_end = request.address + 4 * request.length
    cpls = []
    a = start
    while a < end:
        limit = (a & ~3) + max_payload          # the most one completion can carry
        stop = end if dw_end <= limit else limit & ~(rcb - 1)
        lo, hi = a & ~3, min(dw_end, (stop + 3) & ~3)
        cpls.append(Tlp.completion(
            requester_id=request.requester_id, tag=request.tag, completer_id=completer_id,
            data=read(lo, hi - lo), byte_count=end - a, lower_address=a & 0x7F,
            tc=request.tc, attr=request.attr & 0b110))
        a = stop
    return cpls


def write_spans(tlp):
    """[(address, bytes)] a MWr stores: whole DWs between the first and last
    DW, the first and last DW by their byte enables."""
    data, base = tlp.data, tlp.address
    n = 4 * tlp.length
    if tlp.length == 1:
        return _merge([(base + i, data[i:i + 1]) for i in range(4) if tlp.first_be >> i & 1])
    spans = [(base + i, data[i:i + 1]) for i in range(4) if tlp.first_be >> i & 1]
    if tlp.length > 2:
        spans.append((base + 4, data[4:n - 4]))
    spans += [(base + n - 4 + i, data[n - 4 + i:n - 3 + i]) for i in range(4)
              if tlp.last_be >> i & 1]
    return _merge(spans)


def _merge(spans):
    merged = []
    for address, chunk in spans:
        if merged and merged[-1][0] + len(merged[-1][1]) == address:
            merged[-1] = (merged[-1][0], merged[-1][1] + chunk)
        else:
            merged.append((address, chunk))
    return merged


class CompletionError(ValueError):
    """A completion that does not fit any outstanding request."""


@dataclass
class PendingRead:
    """One outstanding read request and the data received so far."""
    tag: int
    address: int
    nbytes: int
    context: object = None
    data: bytearray = field(default=None)
    received: int = 0
    status: CplStatus = CplStatus.SC
    completions: int = 0

    def __post_init__(self):
        if self.data is None:
            self.data = bytearray(self.nbytes)

    @property
    def done(self):
        return self.received >= self.nbytes or self.status != CplStatus.SC


class ReadTracker:
    """A requester's tag pool and completion reassembly.

    ``issue`` takes a free tag (None when none is free); ``complete`` takes one
    completion and returns the :class:`PendingRead` when it finished the
    request (its tag is then free again), else None. Completions of different
    tags may come in any order; within one tag they must come in address order
    (Byte Count says how much is left, Lower Address where this one starts),
    else :class:`CompletionError`."""

    def __init__(self, tags):
        self._free = deque(tags)
        self.capacity = len(self._free)
        self.outstanding = {}
        self.completion_tags = []           # tag of every completion, in arrival order

    @property
    def free(self):
        return len(self._free)

    def issue(self, address, nbytes, context=None):
        if not self._free:
            return None
        tag = self._free.popleft()
        self.outstanding[tag] = PendingRead(tag, address, nbytes, context)
        return tag

    def complete(self, cpl):
        pending = self.outstanding.get(cpl.tag)
        if pending is None:
            raise CompletionError(f"unexpected completion, tag 0x{cpl.tag:x}: {cpl}")
        self.completion_tags.append(cpl.tag)
        pending.completions += 1
        if cpl.status != CplStatus.SC:
            pending.status = cpl.status
        elif not cpl.type.has_data:         # the Cpl of a write (configuration, I/O)
            pending.received = pending.nbytes
        else:
            self._take_data(pending, cpl)
        if pending.done:
            del self.outstanding[cpl.tag]
            self._free.append(cpl.tag)
            return pending
        return None

    @staticmethod
    def _take_data(pending, cpl):
        left = pending.nbytes - pending.received
        if cpl.byte_count != left:
            raise CompletionError(f"tag 0x{cpl.tag:x}: Byte Count {cpl.byte_count}, "
                                  f"expected {left} (completions out of address order?)")
        address = pending.address + pending.received
        if cpl.lower_address != address & 0x7F:
            raise CompletionError(f"tag 0x{cpl.tag:x}: Lower Address 0x{cpl.lower_address:02x},"
                                  f" expected 0x{address & 0x7F:02x}")
        skip = address & 3
        n = min(left, len(cpl.data) - skip)
        if n <= 0:
            raise CompletionError(f"tag 0x{cpl.tag:x}: completion without data")
        pending.data[pending.received:pending.received + n] = cpl.data[skip:skip + n]
        pending.received += n


def decode_mps(code):
    """Max_Payload_Size / Max_Read_Request_Size bytes of a 3-bit field."""
    return 128 << code


def encode_size_field(nbytes):
    """The 3-bit field for 128..4096 bytes."""
    code = (nbytes // 128).bit_length() - 1
    if nbytes not in (128, 256, 512, 1024, 2048, 4096):
        raise ValueError(f"{nbytes} is not a PCIe payload/read size (128..4096)")
    return code


class ConfigSpace:
    """Configuration space: bytes, a write mask per byte (1 = software may
    write the bit) and a write-1-to-clear mask; ``on_write(offset, old, new)``
    (DW offset) lets the owner react to writes."""

    def __init__(self, size=4096):
        self.data = bytearray(size)
        self.wmask = bytearray(size)
        self.w1c = bytearray(size)
        self.on_write = None

    def get(self, offset, n):
        return int.from_bytes(self.data[offset:offset + n], "little")

    def set(self, offset, n, value, wmask=None):
        """Set a field as hardware does (ignores the masks); ``wmask`` also
        sets which of its bits software may write."""
        self.data[offset:offset + n] = (value & ((1 << 8 * n) - 1)).to_bytes(n, "little")
        if wmask is not None:
            self.wmask[offset:offset + n] = wmask.to_bytes(n, "little")

    def read_dw(self, register):
        return self.get(4 * register, 4)

    def write_dw(self, register, value, first_be=0xF):
        """A CfgWr: each enabled byte takes the writable bits of ``value``."""
        offset = 4 * register
        old = self.get(offset, 4)
        for i in range(4):
            if not first_be >> i & 1:
                continue
            b = value >> 8 * i & 0xFF
            cur, wm, wc = self.data[offset + i], self.wmask[offset + i], self.w1c[offset + i]
            cur = (cur & ~wm) | (b & wm)
            cur &= ~(b & wc)
            self.data[offset + i] = cur & 0xFF
        if self.on_write:
            self.on_write(offset, old, self.get(offset, 4))

    def add_capability(self, offset, cap_id, body_len, prev=None):
        """Link a capability at ``offset`` into the list (after ``prev`` or
        as the first one, pointed to by 0x34)."""
        self.set(offset, 1, cap_id)
        self.set(offset + 1, 1, 0)
        if prev is None:
            self.set(0x34, 1, offset)
            self.set(0x06, 2, self.get(0x06, 2) | 0x10)    # Status: Capabilities List
        else:
            self.set(prev + 1, 1, offset)
        return offset

    def setup_bar(self, offset, size, *, bits64=False, prefetchable=False):
        """A memory BAR of ``size`` bytes (a power of two >= 128)."""
        if size & (size - 1) or size < 128:
            raise ValueError(f"BAR size {size} must be a power of two >= 128")
        flags = (0b10 << 1 if bits64 else 0) | (0x8 if prefetchable else 0)
        mask = ~(size - 1) & ((1 << 64) - 1 if bits64 else 0xFFFFFFFF)
        self.set(offset, 4, flags, wmask=mask & 0xFFFFFFF0)
        if bits64:
            self.set(offset + 4, 4, 0, wmask=mask >> 32)

    def bar_address(self, offset, bits64):
        low = self.get(offset, 4) & ~0xF
        return low | (self.get(offset + 4, 4) << 32 if bits64 else 0)


def is_read_request(tlp):
    return tlp.type in (TlpType.MRd, TlpType.MRdLk)
