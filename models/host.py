"""Host model: root complex, host memory and a driver written as a generator.

:class:`Host` is reactive (see :mod:`tlpoe.models.events`) on one port (0,
the root port's link):

* it completes the devices' memory reads of host memory (``memory``, numpy
  bytes at physical address 0) after ``read_latency_ns`` (plus a seeded
  uniform jitter up to ``cpl_jitter_ns`` per request, which makes
  completions of different tags come back out of order), split at the Read
  Completion Boundary ``rcb`` and at most ``cpl_max`` bytes each;
* it stores device writes into host memory; writes to the MSI window
  (``msi_base`` .. +1 MiB) are interrupts (``interrupts``), not memory;
* it runs one driver: a generator that yields operations and receives their
  results, so the same driver runs under :class:`~tlpoe.models.events.Fabric`
  now and under a cocotb testbench later (which only has to execute the same
  operations).

Driver operations (yield one, get its result back)
    =====================  =======================================================
    ``Now()``              the current time in ns
    ``Sleep(ns)``          None, ``ns`` later
    ``CfgRead(id, off)``   the DW at byte offset ``off`` of function ``id``, or None
                           when the request got UR (no such function); Type 0 for the
                           bus below the root port (``root_bus``), Type 1 beyond
    ``CfgWrite(id, off, value, first_be)``  the completion status
    ``MemRead(addr, n)``   ``n`` bytes (MRd of at most ``read_max`` bytes each, all
                           outstanding at once); bytes of a UR read read as 0xFF
    ``MemWrite(addr, d)``  None at once (posted; MWr of at most ``write_max`` bytes)
    ``WaitInterrupt(data, timeout_ns=None)`` the time an MSI(-X) with that data
                           arrived (the oldest one not yet waited for; it may have
                           come before the wait), or None after ``timeout_ns``
    =====================  =======================================================

The driver library below (``enumerate_bus``, ``assign_resources``,
``setup_gpu``, ``run_command`` ...) is written with these operations only.
"""

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from .events import Send, Timer
from .gpu import (
    CQ_ENTRY, CQ_OFFSET, CQ_SIZE, MSIX_CAP, PCIE_CAP, Opcode, Reg, pack_command,
)
from .pcie_txn import (
    CompletionError, ReadTracker, completions_for_read, encode_size_field, split_requests,
    write_spans,
)
from .tlp import CplStatus, PcieId, Tlp, TlpType

__all__ = [
    "Host", "Now", "Sleep", "CfgRead", "CfgWrite", "MemRead", "MemWrite", "WaitInterrupt",
    "DriverError", "DeviceGone", "device_present", "recover", "Bar", "Function", "GpuHandle", "enumerate_bus", "assign_resources",
    "find_capability", "setup_gpu", "bring_up", "submit", "run_command", "dma_to_vram",
    "dma_from_vram", "mmio_write", "mmio_read", "mmio_read_latency", "walk", "MSI_BASE",
]

MSI_BASE = 0xFEE00000


# ---------------------------------------------------------------- operations

@dataclass(frozen=True)
class Now:
    pass


@dataclass(frozen=True)
class Sleep:
    ns: float


@dataclass(frozen=True)
class CfgRead:
    dest: PcieId
    offset: int


@dataclass(frozen=True)
class CfgWrite:
    dest: PcieId
    offset: int
    value: int
    first_be: int = 0xF


@dataclass(frozen=True)
class MemRead:
    address: int
    nbytes: int


@dataclass(frozen=True)
class MemWrite:
    address: int
    data: bytes


@dataclass(frozen=True)
class WaitInterrupt:
    data: int
    timeout_ns: float = None


class DriverError(RuntimeError):
    """The driver found the system not as it expects."""


class DeviceGone(DriverError):
    """The device answers with errors only (reads return all ones): its link
    is down or it was removed. :func:`recover` waits for it to come back."""


# ---------------------------------------------------------------- the root complex

class Host:
    """Root complex + host memory + one driver. See the module docstring."""

    def __init__(self, *, mem_size=64 << 20, requester_id=PcieId(0, 0, 0), root_bus=1,
                 read_latency_ns=600.0, cpl_jitter_ns=0.0, seed=0, rcb=64, cpl_max=256,
                 read_max=64, write_max=64, msi_base=MSI_BASE, name="host"):
        if rcb not in (64, 128):
            raise ValueError(f"rcb={rcb} must be 64 or 128")
        if cpl_max < rcb or cpl_max % rcb:
            raise ValueError(f"cpl_max={cpl_max} must be a multiple of rcb={rcb}")
        self.name = name
        self.memory = np.zeros(mem_size, dtype=np.uint8)
        self.requester_id = PcieId.from_int(requester_id)
        self.root_bus = root_bus
        self.read_latency_ns, self.cpl_jitter_ns = read_latency_ns, cpl_jitter_ns
        self.rng = np.random.default_rng(seed)
        self.rcb, self.cpl_max = rcb, cpl_max
        self.read_max, self.write_max = read_max, write_max
        self.msi_base = msi_base
        self.tracker = ReadTracker(range(256))
        self.interrupts = []                 # (t_ns, address, data), every one received
        self._unclaimed = deque()            # interrupts no WaitInterrupt has taken yet
        self.counters = Counter()
        self.completions_seen = []           # (t_ns, completion) for the host's requests
        self.errors = []
        self._driver = None
        self._waiting = None                 # what the driver waits for
        self._wait_serial = 0                # which WaitInterrupt (for its timeout)
        self.driver_done = False
        self.driver_result = None

    # -- the reactive interface

    def receive(self, tlp, t_ns, port=0):
        self.counters[f"rx_{tlp.type}"] += 1
        t = tlp.type
        if t is TlpType.MWr:
            return self._write(tlp, t_ns)
        if t is TlpType.MRd:
            return self._read(tlp, t_ns)
        if t.is_completion:
            return self._completion(tlp, t_ns)
        self.counters["unsupported"] += 1
        return []

    def timer(self, token, t_ns):
        if token == ("wake",):
            self._waiting = None
            return self._resume(None, t_ns)
        if token[0] == "irq_timeout":
            if self._waiting is not None and self._wait_serial == token[1]:
                self._waiting = None
                self.counters["interrupt_timeouts"] += 1
                return self._resume(None, t_ns)
            return []
        raise ValueError(f"unknown timer {token!r}")

    def start(self, driver, t_ns=0.0):
        """Start ``driver`` (a generator); returns the outputs of its first steps."""
        if self._driver is not None and not self.driver_done:
            raise DriverError("a driver is already running")
        self._driver, self.driver_done, self.driver_result = driver, False, None
        return self._resume(None, t_ns, first=True)

    # -- the completer side

    def _write(self, tlp, t_ns):
        if self.msi_base <= tlp.address < self.msi_base + (1 << 20):
            data = int.from_bytes(tlp.data[:4], "little")
            self.interrupts.append((t_ns, tlp.address, data))
            self._unclaimed.append((t_ns, data))
            self.counters["interrupts"] += 1
            return self._check_interrupt_wait(t_ns)
        for address, chunk in write_spans(tlp):
            if address + len(chunk) > len(self.memory):
                self.counters["writes_outside_memory"] += 1
                continue
            self.memory[address:address + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
        return []

    def _read(self, tlp, t_ns):
        delay = self.read_latency_ns
        if self.cpl_jitter_ns:
            delay += float(self.rng.uniform(0, self.cpl_jitter_ns))
        end = tlp.address + 4 * tlp.length
        if end > len(self.memory):
            self.counters["ur_reads"] += 1
            return [Send(t_ns + delay, 0, Tlp.completion_for(
                tlp, completer_id=self.requester_id, status=CplStatus.UR))]
        mem = self.memory
        cpls = completions_for_read(tlp, lambda a, n: mem[a:a + n].tobytes(),
                                    completer_id=self.requester_id, rcb=self.rcb,
                                    max_payload=self.cpl_max)
        self.counters["completions_sent"] += len(cpls)
        return [Send(t_ns + delay, 0, c) for c in cpls]

    # -- the requester side (driver operations)

    def _completion(self, tlp, t_ns):
        self.completions_seen.append((t_ns, tlp))
        try:
            pending = self.tracker.complete(tlp)
        except CompletionError as err:
            self.errors.append(str(err))
            self.counters["completion_errors"] += 1
            return []
        if pending is None:
            return []
        state, offset = pending.context
        if pending.status != CplStatus.SC:
            state["status"] = pending.status
            state["data"][offset:offset + pending.nbytes] = b"\xff" * pending.nbytes
        else:
            state["data"][offset:offset + pending.nbytes] = pending.data
        state["left"] -= 1
        if state["left"]:
            return []
        self._waiting = None
        return self._resume(state["finish"](state), t_ns)

    def _issue(self, tlp_for_tag, address, nbytes, state, offset, t_ns):
        tag = self.tracker.issue(address, nbytes, (state, offset))
        if tag is None:
            raise DriverError("the root complex ran out of tags")
        return Send(t_ns, 0, tlp_for_tag(tag))

    def _config_tlp(self, op, tag):
        type1 = op.dest.bus != self.root_bus
        if isinstance(op, CfgRead):
            return Tlp.cfg_read(op.dest, op.offset // 4, type1=type1,
                                requester_id=self.requester_id, tag=tag)
        return Tlp.cfg_write(op.dest, op.offset // 4, op.value.to_bytes(4, "little"),
                             type1=type1, first_be=op.first_be,
                             requester_id=self.requester_id, tag=tag)

    def _execute(self, op, t_ns):
        """(result, waits, outputs) of one driver operation."""
        if isinstance(op, Now):
            return t_ns, False, []
        if isinstance(op, Sleep):
            self._waiting = op
            return None, True, [Timer(t_ns + op.ns, ("wake",))]
        if isinstance(op, MemWrite):
            out = []
            for address, n in split_requests(op.address, len(op.data), self.write_max):
                chunk = op.data[address - op.address:address - op.address + n]
                out.append(Send(t_ns, 0, Tlp.mem_write(address, chunk,
                                                       requester_id=self.requester_id)))
            self.counters["mmio_writes"] += len(out)
            return None, False, out
        if isinstance(op, (CfgRead, CfgWrite)):
            state = dict(left=1, data=bytearray(4), status=CplStatus.SC,
                         finish=_finish_cfg_read if isinstance(op, CfgRead) else
                         _finish_cfg_write)
            self._waiting = op
            send = self._issue(lambda tag: self._config_tlp(op, tag), 0, 4, state, 0, t_ns)
            return None, True, [send]
        if isinstance(op, MemRead):
            chunks = split_requests(op.address, op.nbytes, self.read_max)
            state = dict(left=len(chunks), data=bytearray(op.nbytes), status=CplStatus.SC,
                         finish=lambda s: bytes(s["data"]))
            self._waiting = op
            out = [self._issue(lambda tag, a=a, n=n: Tlp.mem_read(
                a, n, requester_id=self.requester_id, tag=tag), a, n, state,
                a - op.address, t_ns) for a, n in chunks]
            self.counters["mmio_reads"] += len(out)
            return None, True, out
        if isinstance(op, WaitInterrupt):
            for i, (t_irq, data) in enumerate(self._unclaimed):
                if data == op.data:
                    del self._unclaimed[i]
                    return t_irq, False, []
            self._waiting = op
            self._wait_serial += 1
            if op.timeout_ns is None:
                return None, True, []
            return None, True, [Timer(t_ns + op.timeout_ns, ("irq_timeout", self._wait_serial))]
        raise DriverError(f"unknown driver operation {op!r}")

    def _check_interrupt_wait(self, t_ns):
        op = self._waiting
        if not isinstance(op, WaitInterrupt):
            return []
        for i, (t_irq, data) in enumerate(self._unclaimed):
            if data == op.data:
                del self._unclaimed[i]
                self._waiting = None
                return self._resume(t_irq, t_ns)
        return []

    def _resume(self, value, t_ns, first=False):
        outputs = []
        while True:
            try:
                op = next(self._driver) if first else self._driver.send(value)
            except StopIteration as stop:
                self.driver_done, self.driver_result = True, stop.value
                return outputs
            first = False
            value, waits, out = self._execute(op, t_ns)
            outputs += out
            if waits:
                return outputs


def _cfg(fid, offset):
    """Driver: a configuration read that must succeed; a UR (the device
    gone: its link down) raises :class:`DeviceGone`."""
    value = yield CfgRead(fid, offset)
    if value is None:
        raise DeviceGone(f"{fid}: configuration read of 0x{offset:02x} got UR")
    return value


def _finish_cfg_read(state):
    if state["status"] != CplStatus.SC:
        return None
    return int.from_bytes(state["data"], "little")


def _finish_cfg_write(state):
    return state["status"]


# ---------------------------------------------------------------- driver: enumeration

@dataclass
class Bar:
    offset: int                  # configuration-space offset of the BAR register
    size: int
    bits64: bool
    prefetchable: bool
    address: int = 0


@dataclass
class Function:
    id: PcieId
    vendor_id: int
    device_id: int
    class_code: int
    header_type: int
    bars: list = field(default_factory=list)
    children: list = field(default_factory=list)
    secondary: int = 0
    subordinate: int = 0

    @property
    def is_bridge(self):
        return self.header_type == 1


def walk(functions):
    """Every function of an enumeration tree, depth first."""
    for f in functions:
        yield f
        yield from walk(f.children)


def enumerate_bus(root_bus=1):
    """Driver: scan ``root_bus`` and every bus behind a bridge found on it
    (devices 0..31, function 0), numbering buses depth first. Returns the
    tree of :class:`Function`, BARs sized."""
    state = dict(next_bus=root_bus + 1)
    return (yield from _scan(root_bus, state))


def _scan(bus, state):
    found = []
    for device in range(32):
        fid = PcieId(bus, device, 0)
        ids = yield CfgRead(fid, 0x00)
        if ids is None or ids & 0xFFFF == 0xFFFF:
            continue
        class_rev = yield from _cfg(fid, 0x08)
        header = (yield from _cfg(fid, 0x0C)) >> 16 & 0x7F
        f = Function(fid, ids & 0xFFFF, ids >> 16, class_rev >> 8, header)
        if f.is_bridge:
            f.secondary = state["next_bus"]
            state["next_bus"] += 1
            yield CfgWrite(fid, 0x18, bus | f.secondary << 8 | 0xFF << 16)
            f.children = yield from _scan(f.secondary, state)
            f.subordinate = state["next_bus"] - 1
            yield CfgWrite(fid, 0x18, bus | f.secondary << 8 | f.subordinate << 16)
        else:
            f.bars = yield from _size_bars(fid, 6)
        found.append(f)
    return found


def _size_bars(fid, count):
    """Write all ones to each BAR, read back the size mask, restore."""
    bars, index = [], 0
    while index < count:
        offset = 0x10 + 4 * index
        original = yield from _cfg(fid, offset)
        yield CfgWrite(fid, offset, 0xFFFFFFFF)
        mask = yield from _cfg(fid, offset)
        yield CfgWrite(fid, offset, original)
        index += 1
        if not mask or mask & 1:             # unimplemented, or I/O (not modelled)
            continue
        bits64 = (mask >> 1 & 0b11) == 0b10
        mask &= ~0xF
        if bits64:
            upper_original = yield from _cfg(fid, offset + 4)
            yield CfgWrite(fid, offset + 4, 0xFFFFFFFF)
            upper = yield from _cfg(fid, offset + 4)
            yield CfgWrite(fid, offset + 4, upper_original)
            mask |= upper << 32
            index += 1
        width = 64 if bits64 else 32
        size = ((~mask) & ((1 << width) - 1)) + 1
        bars.append(Bar(offset, size, bits64, bool(mask & 0x8) or bool(original & 0x8)))
    return bars


def _align(value, alignment):
    return -(-value // alignment) * alignment


def assign_resources(functions, *, mem32_base=0xC0000000, pref_base=0x40_0000_0000):
    """Driver: place every BAR (non-prefetchable in the 32-bit window,
    prefetchable 64-bit ones above 4 GiB), program each bridge's windows
    (1 MiB granularity; empty windows disabled) and enable Memory Space and
    Bus Master on every function. Returns the cursors' final values."""
    cursors = dict(mem=mem32_base, pref=pref_base)
    yield from _assign(functions, cursors)
    return cursors


def _assign(functions, cursors):
    for f in functions:
        if f.is_bridge:
            start = {k: _align(v, 1 << 20) for k, v in cursors.items()}
            cursors.update(start)
            yield from _assign(f.children, cursors)
            end = {k: _align(v, 1 << 20) for k, v in cursors.items()}
            cursors.update(end)
            yield from _program_windows(f.id, start, end)
        else:
            for bar in f.bars:
                pool = "pref" if bar.prefetchable and bar.bits64 else "mem"
                bar.address = _align(cursors[pool], bar.size)
                cursors[pool] = bar.address + bar.size
                yield CfgWrite(f.id, bar.offset, bar.address & 0xFFFFFFFF)
                if bar.bits64:
                    yield CfgWrite(f.id, bar.offset + 4, bar.address >> 32)
        command = yield from _cfg(f.id, 0x04)
        yield CfgWrite(f.id, 0x04, (command & 0xFFFF) | 0x6, first_be=0x3)


def _program_windows(fid, start, end):
    if end["mem"] > start["mem"]:
        base, limit = start["mem"], end["mem"] - 1
        yield CfgWrite(fid, 0x20, (base >> 16 & 0xFFF0) | (limit >> 16 & 0xFFF0) << 16)
    else:
        yield CfgWrite(fid, 0x20, 0x0000FFF0)            # base > limit: disabled
    if end["pref"] > start["pref"]:
        base, limit = start["pref"], end["pref"] - 1
        yield CfgWrite(fid, 0x24, (base >> 16 & 0xFFF0) | (limit >> 16 & 0xFFF0) << 16)
        yield CfgWrite(fid, 0x28, base >> 32)
        yield CfgWrite(fid, 0x2C, limit >> 32)
    else:
        yield CfgWrite(fid, 0x24, 0x0000FFF0)
        yield CfgWrite(fid, 0x28, 0)
        yield CfgWrite(fid, 0x2C, 0)


def find_capability(fid, cap_id):
    """Driver: the offset of capability ``cap_id`` in the list, or None."""
    status = (yield from _cfg(fid, 0x04)) >> 16
    if not status & 0x10:
        return None
    pointer = (yield from _cfg(fid, 0x34)) & 0xFC
    seen = set()
    while pointer and pointer not in seen:
        seen.add(pointer)
        header = yield from _cfg(fid, pointer)
        if header & 0xFF == cap_id:
            return pointer
        pointer = header >> 8 & 0xFC
    return None


# ---------------------------------------------------------------- driver: the GPU

@dataclass
class GpuHandle:
    """What the driver knows about one GPU after bring-up."""
    id: PcieId
    bar0: int
    bar0_size: int
    vram: int
    vram_size: int
    msix_table: int
    msi_data: int
    tail: int = 0


def setup_gpu(f, *, max_payload=256, max_read_request=512, rcb=64, ten_bit_tags=False,
              msi_data=0x4000, msi_address=MSI_BASE):
    """Driver: program Device Control (MPS, MRRS, Extended Tag), Link Control
    (RCB), Device Control 2 (10-bit tags) and MSI-X vector 0 of GPU ``f``."""
    if len(f.bars) < 2:
        raise DriverError(f"{f.id}: expected a register BAR and a VRAM BAR, got {f.bars}")
    fid = f.id
    pcie = yield from find_capability(fid, 0x10)
    msix = yield from find_capability(fid, 0x11)
    if pcie != PCIE_CAP or msix != MSIX_CAP:
        raise DriverError(f"{fid}: PCIe capability at {pcie}, MSI-X at {msix}")
    devctl = (yield from _cfg(fid, pcie + 0x08)) & 0xFFFF
    devctl &= ~(0x7 << 5 | 0x7 << 12)
    devctl |= encode_size_field(max_payload) << 5 | encode_size_field(max_read_request) << 12
    devctl |= 1 << 8
    yield CfgWrite(fid, pcie + 0x08, devctl, first_be=0x3)
    yield CfgWrite(fid, pcie + 0x10, 1 << 3 if rcb == 128 else 0, first_be=0x3)
    if ten_bit_tags:
        cap2 = yield from _cfg(fid, pcie + 0x24)
        if not cap2 & 1 << 17:
            raise DriverError(f"{fid}: no 10-bit tag requester support")
        yield CfgWrite(fid, pcie + 0x28, 1 << 12, first_be=0x3)
    table = yield from _cfg(fid, msix + 0x04)
    register_bar, vram_bar = f.bars[0], f.bars[1]
    if table & 0x7:
        raise DriverError(f"{fid}: MSI-X table in BAR index {table & 7}, expected 0")
    gpu = GpuHandle(fid, register_bar.address, register_bar.size, vram_bar.address,
                    vram_bar.size, register_bar.address + (table & ~0x7), msi_data)
    entry = (msi_address.to_bytes(8, "little") + msi_data.to_bytes(4, "little")
             + (0).to_bytes(4, "little"))
    yield MemWrite(gpu.msix_table, entry)
    control = (yield from _cfg(fid, msix)) >> 16
    yield CfgWrite(fid, msix, (control | 0x8000) << 16, first_be=0xC)
    gpu.tail = (yield MemRead(gpu.bar0 + Reg.CQ_TAIL, 4))[0]
    return gpu


def bring_up(root_bus=1, *, vendor_id=None, mem32_base=0xC0000000, pref_base=0x40_0000_0000,
             **gpu_settings):
    """Driver: enumerate, assign (``mem32_base``, ``pref_base``: see
    :func:`assign_resources`), and set up every display/3D controller
    (class 0x03xxxx) found; each GPU gets MSI data 0x4000 + its index.
    Returns (tree, [GpuHandle])."""
    tree = yield from enumerate_bus(root_bus)
    yield from assign_resources(tree, mem32_base=mem32_base, pref_base=pref_base)
    gpus = []
    for f in walk(tree):
        if f.class_code >> 16 == 0x03 and (vendor_id is None or f.vendor_id == vendor_id):
            gpus.append((yield from setup_gpu(f, msi_data=0x4000 + len(gpus),
                                              **gpu_settings)))
    return tree, gpus


def submit(gpu, entry):
    """Driver: write one 64-byte command entry by MMIO, then ring the doorbell."""
    yield MemWrite(gpu.bar0 + CQ_OFFSET + CQ_ENTRY * gpu.tail, entry)
    gpu.tail = (gpu.tail + 1) % CQ_SIZE
    yield MemWrite(gpu.bar0 + Reg.CQ_TAIL, gpu.tail.to_bytes(4, "little"))


def run_command(gpu, opcode, timeout_ns=None, **fields):
    """Driver: submit one command with an interrupt, wait for the MSI-X
    (at most ``timeout_ns``: a watchdog). Returns (t_submit, t_interrupt).
    Raises :class:`DeviceGone` when the status register reads all ones (a
    UR: the link is down), :class:`DriverError` when the command failed or
    its interrupt never came."""
    t0 = yield Now()
    yield from submit(gpu, pack_command(opcode, irq=True, vector=0, **fields))
    t1 = yield WaitInterrupt(gpu.msi_data, timeout_ns)
    status = yield MemRead(gpu.bar0 + Reg.STATUS, 4)
    if status == b"\xff" * 4:
        raise DeviceGone(f"{gpu.id}: the device is gone (its status reads all ones)")
    if t1 is None:
        raise DriverError(f"{gpu.id}: command {Opcode(opcode).name}: no interrupt within "
                          f"{timeout_ns} ns")
    if status[0] & 0x2:
        raise DriverError(f"{gpu.id}: command {Opcode(opcode).name} failed")
    return t0, t1


def device_present(fid):
    """Driver: whether function ``fid`` answers a configuration read of its
    Vendor ID (not a UR, not all ones)."""
    value = yield CfgRead(fid, 0x00)
    return value is not None and value & 0xFFFF != 0xFFFF


def recover(gpu, *, poll_ns=10_000.0, give_up_ns=100_000_000.0, root_bus=1, **bring_up_kw):
    """Driver: after :class:`DeviceGone`, poll ``gpu``'s Vendor ID every
    ``poll_ns`` until it answers again, then rescan and set the GPUs up
    again (:func:`bring_up`; the new handles returned with the tree and
    the time the device came back). Raises :class:`DeviceGone` after
    ``give_up_ns``."""
    start = yield Now()
    polls = 0
    while not (yield from device_present(gpu.id)):
        polls += 1
        if (yield Now()) - start >= give_up_ns:
            raise DeviceGone(f"{gpu.id}: still gone after {give_up_ns} ns ({polls} polls)")
        yield Sleep(poll_ns)
    back = yield Now()
    tree, gpus = yield from bring_up(root_bus, **bring_up_kw)
    return tree, gpus, back


def dma_to_vram(gpu, host_address, vram_offset, nbytes):
    """Driver: copy host memory to VRAM by the GPU's DMA (it reads the host)."""
    return (yield from run_command(gpu, Opcode.COPY_H2D, host=host_address, a=vram_offset,
                                   size=nbytes))


def dma_from_vram(gpu, vram_offset, host_address, nbytes):
    """Driver: copy VRAM to host memory by the GPU's DMA (it writes the host)."""
    return (yield from run_command(gpu, Opcode.COPY_D2H, host=host_address, a=vram_offset,
                                   size=nbytes))


def mmio_write(gpu, vram_offset, data):
    """Driver: store ``data`` into VRAM through the VRAM BAR (small buffers)."""
    yield MemWrite(gpu.vram + vram_offset, bytes(data))


def mmio_read(gpu, vram_offset, nbytes):
    """Driver: load bytes of VRAM through the VRAM BAR."""
    return (yield MemRead(gpu.vram + vram_offset, nbytes))


def mmio_read_latency(gpu, count=8, register=Reg.SCRATCH):
    """Driver: ``count`` 4-byte reads of a BAR0 register, one at a time;
    returns their round-trip times in ns."""
    times = []
    for _ in range(count):
        t0 = yield Now()
        yield MemRead(gpu.bar0 + register, 4)
        times.append((yield Now()) - t0)
    return times
