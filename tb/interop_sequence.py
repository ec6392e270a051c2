"""What the PCIe interoperability bench does with cocotbext-pcie's models,
the same in every mode (``tb/test_interop.py``).

A :class:`PcieSystem` is a cocotbext-pcie RootComplex, one of its root
ports, and an :class:`InteropEndpoint` (cocotbext-pcie's MemoryEndpoint
with the BARs of :data:`BARS` and MSI), the root port and the endpoint
joined by a function: straight (:func:`join_direct`, the reference) or
through the bridges (the bench's). :func:`run_operations` then plays the
phases of a :class:`Form` and logs every operation's result
(:class:`OperationLog`):

``enumerate``
    the RC scans its hierarchy (configuration reads and writes through the
    path), enables the endpoint, bus mastering and MRRS 512;
``bars``
    the sizes and addresses the enumeration found, against the endpoint's
    BARs; each BAR sized again by hand (all ones written, read back,
    restored);
``mmio``
    unloaded MMIO read latency (4-byte reads, one at a time); then the host
    writes ``n`` random bytes into BAR0 (32-bit) and BAR1 (64-bit,
    prefetchable) at each size and offset of the form and reads them back
    (a read must not pass the write before it); IO writes and reads of
    1..8 bytes;
``dma``
    for each (MPS, completion split) mode, the endpoint writes ``n`` bytes to
    host memory (MPS splits) and reads them back, then reads bytes the host
    wrote (MRRS 512 splits; the RC's completions cut at MPS or, with
    ``split_on_all_rcb``, at every 64-byte RCB);
``msi``
    every MSI vector back to back (each taken once, in order), then DMA
    writes each followed by an MSI: at the MSI's arrival the data must
    already be in host memory (PCIe ordering);
``final``
    digests of the whole host memory and of the endpoint's BARs.

MMIO, IO and DMA operations run in batches of ``Form.batch`` at once,
each on its own buffer, so several requests and their completions are in
flight together. Each logged result is a value or a digest of the bytes
read, and ``ok`` says whether it is what was written or configured. The
two modes consume the same random bytes in the same order and log in the
same order, so :func:`compare` can match the bridged run's log against
the reference operation by operation.
"""

import hashlib
import itertools
import random
import struct
import time
from dataclasses import dataclass, field

import cocotb
from cocotb.triggers import First, Timer
from cocotb.utils import get_sim_time
from cocotbext.pcie.core import Device, MemoryEndpoint, RootComplex
from cocotbext.pcie.core.caps import MsiCapability

__all__ = ["BARS", "MSI_VECTORS", "VENDOR_ID", "DEVICE_ID", "HOST_MEM_BYTES", "Form", "FORMS",
           "InteropEndpoint", "PcieSystem", "join_direct", "OperationLog", "run_operations",
           "compare", "digest", "PHASES"]

VENDOR_ID, DEVICE_ID = 0x1234, 0x5678
#: The endpoint's BARs: index -> (kind, bytes). BAR1 is 64-bit (BAR1 and BAR2).
BARS = {0: ("mem32", 64 << 10), 1: ("mem64-prefetchable", 1 << 20), 3: ("io", 256)}
MSI_VECTORS = 32
HOST_MEM_BYTES = 1 << 20
PHASES = ("enumerate", "bars", "mmio", "dma", "msi", "final")
MRRS = 512


def matrix(sizes, offsets):
    """Every size at every offset: ``(size, offset)`` pairs."""
    return tuple((n, off) for n in sizes for off in offsets)


def diagonal(sizes, offsets):
    """Each size once, the offsets taken in turn."""
    return tuple((n, offsets[i % len(offsets)]) for i, n in enumerate(sizes))


@dataclass(frozen=True)
class Form:
    """How much of each phase a run does (see the module doc): ``(size,
    offset)`` pairs for MMIO (each BAR), IO and DMA (each mode), and how
    many operations run at once (``batch``: each on its own buffer, so the
    requests of several are in flight together)."""
    mmio: tuple
    dma: tuple
    io: tuple = matrix((1, 2, 3, 4, 8), (0, 1, 2, 3))
    #: (MPS bytes, the RC splits its completions on every RCB)
    dma_modes: tuple = ((128, False), (256, False), (256, True))
    batch: int = 8
    latency_probes: int = 8
    ordering_checks: int = 4
    description: str = ""


OFFSETS = (0x000, 0x101, 0x202, 0x303, 0xFFD)       # the 4 alignments, and across 4 KiB
FORMS = {
    "short": Form(
        mmio=matrix((1, 2, 3, 4), OFFSETS[:4])
        + diagonal((5, 7, 8, 63, 64, 65, 127, 128, 129, 255, 256, 257, 511, 512), OFFSETS),
        dma=diagonal((1, 3, 129, 513, 4100), (0x000, 0x003, 0xFF9)),
        dma_modes=((128, False), (256, True)),
        description="MMIO sizes 1-4 at every alignment and 14 sizes up to 512 at rotating "
                    "alignments (one across 4 KiB) per BAR; DMA 5 sizes up to 4100 (one "
                    "across 4 KiB) with MPS 128, and with MPS 256 and the RC's completions "
                    "split on every RCB"),
    "long": Form(
        mmio=matrix(range(1, 513), OFFSETS),
        dma=matrix((1, 2, 3, 4, 7, 8, 64, 127, 128, 129, 255, 256, 257, 511, 512, 513, 1000,
                    1024, 2048, 4095, 4096, 4097, 5000, 8192),
                   (0x000, 0x001, 0x003, 0x03C, 0x07E, 0xFF9)),
        dma_modes=((128, False), (128, True), (256, False), (256, True)),
        ordering_checks=32,
        description="every MMIO size 1-512 at the 4 alignments and across 4 KiB per BAR; DMA "
                    "24 sizes up to 8 KiB at 6 offsets per mode"),
}
#: Each MMIO operation of a batch has its own 8 KiB of the BAR (BAR0 holds 8).
MMIO_WINDOW = 0x2000
#: and each DMA operation its own 16 KiB of host memory.
DMA_WINDOW = 0x4000


class InteropEndpoint(MemoryEndpoint):
    """cocotbext-pcie's MemoryEndpoint with :data:`BARS` and a 64-bit MSI
    capability of :data:`MSI_VECTORS` vectors with per-vector masking."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.vendor_id, self.device_id = VENDOR_ID, DEVICE_ID
        self.msi_cap = MsiCapability()
        self.msi_cap.msi_multiple_message_capable = (MSI_VECTORS - 1).bit_length()
        self.msi_cap.msi_64bit_address_capable = 1
        self.msi_cap.msi_per_vector_mask_capable = 1
        self.register_capability(self.msi_cap)
        for index, (kind, size) in BARS.items():
            if kind == "mem32":
                self.add_mem_region(size)
            elif kind == "io":
                self.add_io_region(size)
            else:
                self.add_prefetchable_mem_region(size)


def join_direct(root_port, device):
    """The reference: the endpoint's link straight to the root port."""
    root_port.connect(device)


class PcieSystem:
    """A RootComplex, its root port and an :class:`InteropEndpoint` joined
    by ``join(root_port, device)``. Build it inside a running test (the
    models start coroutines). ``msi_log`` lists every MSI the RC took:
    ``(vector, data visible)``, where ``data visible`` answers
    :attr:`expect_at_msi` (``(host offset, bytes)`` or None) at the moment
    the MSI's write reached the RC."""

    def __init__(self, join):
        self.rc = RootComplex()
        self.rc.max_payload_size = 0                 # 128 bytes until the DMA phase sets it
        self.rc.max_read_request_size = (MRRS >> 8).bit_length()
        self.ep = InteropEndpoint()
        self.dev = Device(self.ep)
        self.dev.upstream_port.max_link_speed = 3    # Gen3 x16, set before connect()
        self.dev.upstream_port.max_link_width = 16
        self.root_port = self.rc.make_port()
        join(self.root_port, self.dev)
        self.mem = self.rc.mem_pool.alloc_region(HOST_MEM_BYTES)
        self.mem_base = self.mem.get_absolute_address(0)
        self.msi_log = []
        self.expect_at_msi = None
        self._watch_msi()

    def _watch_msi(self):
        region = self.rc.msi_region
        take = region.write

        async def write(addr, data, **kwargs):
            vector, = struct.unpack("<L", bytes(data))
            visible = None
            if self.expect_at_msi is not None:
                at, expected = self.expect_at_msi
                visible = bytes(self.mem[at:at + len(expected)]) == expected
            self.msi_log.append((vector, visible))
            await take(addr, data, **kwargs)

        region.write = write      # the RC's address space calls the region's write


def digest(data):
    """A short, comparable stand-in for bytes read: the bytes themselves up
    to 8, else their length and a 64-bit BLAKE2b."""
    data = bytes(data)
    if len(data) <= 8:
        return data.hex()
    return f"{len(data)}:{hashlib.blake2b(data, digest_size=8).hexdigest()}"


@dataclass
class OperationLog:
    """Every operation of a run: ``ops`` rows of ``phase``, ``op``, ``what``
    (its arguments), ``result`` (comparable), ``ok`` (the self-check),
    ``bytes`` (moved) and ``ns`` (the time it took, not compared)."""
    ops: list = field(default_factory=list)
    phases: dict = field(default_factory=dict)       # name -> {sim_ns, wall_s}
    errors: int = 0

    def add(self, phase, op, what, result, ok, nbytes=0, ns=0.0):
        self.ops.append(dict(phase=phase, op=op, what=what, result=result, ok=bool(ok),
                             bytes=nbytes, ns=round(ns, 1)))

    def failures(self):
        return [o for o in self.ops if not o["ok"]]

    def summary(self):
        counts, volume = {}, {}
        for o in self.ops:
            counts[o["op"]] = counts.get(o["op"], 0) + 1
            volume[o["op"]] = volume.get(o["op"], 0) + o["bytes"]

        def mean(op):
            ns = [o["ns"] for o in self.ops if o["op"] == op]
            return round(sum(ns) / len(ns), 1) if ns else None
        return dict(operations=len(self.ops), by_op=counts, bytes_by_op=volume,
                    bytes=sum(volume.values()), failures=len(self.failures()),
                    errors=self.errors, phases=self.phases,
                    mmio_read_ns_mean=mean("mmio_latency"),
                    mmio_read_ns_mean_in_batches=mean("mmio"))


def compare(reference, bridged):
    """The operations whose results differ between two logs, as
    ``(index, phase, op, what, reference result, bridged result)``; a log
    cut short or longer counts as a difference at the first missing row."""
    differences = []
    for i, (r, b) in enumerate(zip(reference.ops, bridged.ops)):
        if (r["phase"], r["op"], r["what"], r["result"]) != \
                (b["phase"], b["op"], b["what"], b["result"]):
            differences.append((i, b["phase"], b["op"], b["what"], r["result"], b["result"]))
    n, m = len(reference.ops), len(bridged.ops)
    if n != m:
        i = min(n, m)
        row = (reference.ops if n > m else bridged.ops)[i]
        differences.append((i, row["phase"], row["op"], row["what"],
                            f"{n} operations", f"{m} operations"))
    return differences


class _Run:
    """One run of the phases on one system (see :func:`run_operations`)."""

    def __init__(self, system, form, seed, timeout_us, max_errors, on_phase, log):
        self.s, self.form = system, form
        self.rng = random.Random(seed)
        self.to = dict(timeout=timeout_us, timeout_unit="us")
        self.max_errors, self.on_phase = max_errors, on_phase
        self.log = log
        self.phase = None
        self.dev_pci = None

    def rbytes(self, n):
        return self.rng.randbytes(n)

    def start(self, phase):
        now, wall = get_sim_time("ns"), time.monotonic()
        if self.phase is not None:
            p = self.log.phases[self.phase]
            p.update(sim_ns=round(now - p.pop("_t0"), 1), wall_s=round(wall - p.pop("_w0"), 2))
        self.phase = phase
        if phase is not None:
            self.log.phases[phase] = {"_t0": now, "_w0": wall}
            if self.on_phase:
                self.on_phase(phase)

    async def _attempt(self, action):
        """``action()`` gives ``(result, ok)`` or ``(result, ok, ns)``;
        an exception (a completion timeout, an unsuccessful completion) is
        the result. Returns ``(result, ok, ns, failed with an exception)``."""
        t0 = get_sim_time("ns")
        try:
            result, ok, *ns = await action()
        except Exception as e:              # the models raise plain Exception on a timeout
            return f"error: {type(e).__name__}: {e}", False, get_sim_time("ns") - t0, True
        return result, ok, (ns[0] if ns else get_sim_time("ns") - t0), False

    def _log(self, op, what, nbytes, outcome):
        result, ok, ns, raised = outcome
        self.log.add(self.phase, op, what, result, ok, nbytes, ns)
        if raised:
            self.log.errors += 1
            if self.log.errors > self.max_errors:
                raise AssertionError(f"more than {self.max_errors} operations failed with an "
                                     f"exception; the last: {op} {what}: {result}")

    async def op(self, op, what, action, nbytes=0):
        """Run one operation and log it; too many exceptions end the run."""
        self._log(op, what, nbytes, await self._attempt(action))

    async def batch(self, ops):
        """Run ``ops`` (``(op, what, action, nbytes)``) at once; log them in
        their order."""
        tasks = [cocotb.start_soon(self._attempt(action)) for _, _, action, _ in ops]
        for (op, what, _, nbytes), task in zip(ops, tasks):
            self._log(op, what, nbytes, await task)

    async def batches(self, ops):
        """Run ``ops`` (an iterator) ``Form.batch`` at a time, each batch
        made only when the one before has finished (making an operation
        may set up its buffer)."""
        ops = iter(ops)
        while chunk := list(itertools.islice(ops, self.form.batch)):
            await self.batch(chunk)

    # ------------------------------------------------------------------ phases
    async def enumerate(self):
        s = self.s
        # each configuration request may take a round trip through the
        # bridges: far more than enumerate()'s default timeout of 1 us
        await s.rc.enumerate(timeout=self.to["timeout"], timeout_unit="us")
        self.dev_pci = dev = s.rc.find_device(s.ep.pcie_id)
        found = [] if dev is None else [(str(dev.pcie_id), dev.vendor_id, dev.device_id)]

        async def scan():
            return repr(found), found == [(str(s.ep.pcie_id), VENDOR_ID, DEVICE_ID)]
        await self.op("enumerate", "endpoint found", scan)
        if dev is None:
            raise AssertionError("enumeration did not find the endpoint")

        async def enable():
            await dev.enable_device()
            await dev.set_master()
            await dev.set_readrq(self.s.rc.max_read_request_size)
            command = await dev.config_read_word(0x04, **self.to)
            ok = (s.ep.bus_master_enable and s.ep.memory_space_enable
                  and 128 << s.ep.pcie_cap.max_read_request_size == MRRS and command & 0x6 == 0x6)
            return f"command {command:#06x} mrrs {128 << s.ep.pcie_cap.max_read_request_size}", ok
        await self.op("config", "enable memory, bus master, MRRS", enable)

    async def bars(self):
        dev = self.dev_pci
        for index in range(6):
            size = dev.bar_size[index]
            addr = dev.bar_addr[index]
            # a BAR the endpoint does not have reads as size 0; BAR2 is
            # BAR1's upper half, no BAR of its own
            expected = None if index == 2 else BARS.get(index, (None, 0))[1]

            async def found(size=size, addr=addr, expected=expected):
                aligned = addr is None or size is None or addr % size == 0
                return f"size {size} at {addr if addr is None else hex(addr)}", \
                    size == expected and aligned
            await self.op("bar", f"BAR{index} from enumeration", found)
        above_4g = dev.bar_addr[1] is not None and dev.bar_addr[1] > 0xFFFF_FFFF

        async def placed():
            return f"BAR1 above 4 GiB: {above_4g}", above_4g
        await self.op("bar", "64-bit BAR placed above 4 GiB", placed)
        for index, (kind, size) in BARS.items():
            async def sized(index=index, kind=kind, size=size):
                return await self._size_bar(index, kind, size)
            await self.op("bar_sizing", f"BAR{index} sized by hand", sized, 8)

    async def _size_bar(self, index, kind, size):
        """All ones written to the BAR (both halves of a 64-bit one), the
        mask read back, the BAR restored: the size decoded, and the BAR
        readable again at its address."""
        dev, to = self.dev_pci, self.to
        regs = [0x10 + 4 * index] + ([0x14 + 4 * index] if kind.startswith("mem64") else [])
        saved = [await dev.config_read_dword(r, **to) for r in regs]
        for r in regs:
            await dev.config_write_dword(r, 0xFFFF_FFFF, **to)
        masks = [await dev.config_read_dword(r, **to) for r in regs]
        for r, v in zip(regs, saved):
            await dev.config_write_dword(r, v, **to)
        restored = [await dev.config_read_dword(r, **to) for r in regs]
        low_bits = 0x3 if kind == "io" else 0xF
        mask = masks[0] & ~low_bits | (masks[1] << 32 if len(masks) > 1 else 0)
        width = 32 * len(masks)
        decoded = (~mask + 1) & ((1 << width) - 1)
        result = f"mask {' '.join(f'{m:#010x}' for m in masks)} size {decoded}"
        return result, decoded == size and restored == saved

    async def mmio(self):
        dev, to = self.dev_pci, self.to
        window = dev.bar_window[0]

        region = self.s.ep.regions[0]

        async def probe(addr):
            t0 = get_sim_time("ns")
            back = await window.read(addr, 4, **to)
            return digest(back), back == bytes(region[addr:addr + 4]), get_sim_time("ns") - t0
        for i in range(self.form.latency_probes):      # one at a time: the unloaded latency
            await self.op("mmio_latency", f"BAR0 +{4 * i:#x} len 4", lambda i=i: probe(4 * i), 4)
        for bar in (0, 1):
            await self.batches(self._mmio_op(bar, k, n, off)
                               for k, (n, off) in enumerate(self.form.mmio))
        await self.batches(self._io_op(k, n, off) for k, (n, off) in enumerate(self.form.io))

    def _mmio_op(self, bar, k, n, off):
        """Write ``n`` random bytes at ``off`` in the operation's window of
        BAR ``bar``, read them back."""
        window, region, to = self.dev_pci.bar_window[bar], self.s.ep.regions[bar], self.to
        addr = (k % self.form.batch) * MMIO_WINDOW + off
        data = self.rbytes(n)

        async def write_read():
            await window.write(addr, data, **to)
            t0 = get_sim_time("ns")
            back = await window.read(addr, n, **to)
            return (digest(back), back == data and bytes(region[addr:addr + n]) == data,
                    get_sim_time("ns") - t0)
        return "mmio", f"BAR{bar} +{addr:#x} len {n}", write_read, 2 * n

    def _io_op(self, k, n, off):
        window, to = self.dev_pci.bar_window[3], self.to
        addr = (k % self.form.batch) * 0x20 + off
        data = self.rbytes(n)

        async def write_read():
            await window.write(addr, data, **to)
            back = await window.read(addr, n, **to)
            return digest(back), back == data
        return "io", f"BAR3 +{addr:#x} len {n}", write_read, 2 * n

    async def dma(self):
        s = self.s
        for mps, all_rcb in self.form.dma_modes:
            async def set_mps(mps=mps, all_rcb=all_rcb):
                code = (mps >> 8).bit_length()
                s.rc.max_payload_size = code          # the RC's completions
                s.rc.split_on_all_rcb = all_rcb
                await self.dev_pci.upstream_bridge().set_mps(code)
                await self.dev_pci.set_mps(code)
                got = await self.dev_pci.get_mps()
                return f"mps {128 << got}", got == code == s.ep.pcie_cap.max_payload_size
            mode = f"MPS {mps}{' split on every RCB' if all_rcb else ''}"
            await self.op("config", f"set {mode}", set_mps)
            cases = [(k % self.form.batch * DMA_WINDOW + off, n)
                     for k, (n, off) in enumerate(self.form.dma)]
            await self.batches(self._to_host(mode, a, n) for a, n in cases)
            await self.batches(self._from_host(mode, a, n) for a, n in cases)

    def _to_host(self, mode, a, n):
        """The endpoint writes ``n`` bytes to host memory at ``a`` and reads
        them back: a read does not pass the writes before it, so once it
        completes the data must be in host memory."""
        s, data = self.s, self.rbytes(n)

        async def write_read():
            await s.ep.mem_write(s.mem_base + a, data)
            back = await s.ep.mem_read(s.mem_base + a, n, **self.to)
            return digest(back), back == data and bytes(s.mem[a:a + n]) == data
        return "dma_to_host", f"{mode}: +{a:#x} len {n}", write_read, 2 * n

    def _from_host(self, mode, a, n):
        """The host puts ``n`` bytes at ``a``; the endpoint reads them."""
        s, data = self.s, self.rbytes(n)
        s.mem[a:a + n] = data

        async def read():
            back = await s.ep.mem_read(s.mem_base + a, n, **self.to)
            return digest(back), back == data
        return "dma_from_host", f"{mode}: +{a:#x} len {n}", read, n

    async def msi(self):
        s, dev = self.s, self.dev_pci

        async def alloc():
            got = await dev.alloc_irq_vectors(MSI_VECTORS, MSI_VECTORS)
            return f"{got} vectors", got == MSI_VECTORS and s.ep.msi_cap.msi_enable
        await self.op("msi_setup", f"{MSI_VECTORS} vectors", alloc)

        async def burst():
            """Every vector, back to back: each must arrive once, in order."""
            events = [dev.msi_vectors[v].event for v in range(MSI_VECTORS)]
            for event in events:
                event.clear()
            start = len(s.msi_log)
            for vector in range(MSI_VECTORS):
                await s.ep.msi_cap.issue_msi_interrupt(vector)
            deadline = get_sim_time("ns") + 1000 * self.to["timeout"]
            while not all(e.is_set() for e in events) and get_sim_time("ns") < deadline:
                await First(*(e.wait() for e in events if not e.is_set()),
                            Timer(self.to["timeout"], "us"))
            vectors = [v for v, _ in s.msi_log[start:]]
            return f"vectors {vectors}", vectors == list(range(MSI_VECTORS))
        await self.op("msi", f"vectors 0..{MSI_VECTORS - 1} back to back", burst,
                      4 * MSI_VECTORS)
        for i in range(self.form.ordering_checks):
            n = (64, 256, 1024, 4096)[i % 4] + i
            a = 0x8_0000 + i * 0x2000
            data = self.rbytes(n)
            vector = (7 * i) % MSI_VECTORS

            async def write_then_interrupt(a=a, data=data, vector=vector):
                await s.ep.mem_write(s.mem_base + a, data)
                return await self._interrupt(vector, (a, data))
            await self.op("dma_then_msi", f"+{a:#x} len {n}, vector {vector}",
                          write_then_interrupt, n + 4)

    async def _interrupt(self, vector, expect):
        """Issue MSI ``vector``; the result names the vectors the RC took
        and, with ``expect``, whether the data was in host memory then."""
        s = self.s
        event = self.dev_pci.msi_vectors[vector].event
        event.clear()
        s.expect_at_msi = expect
        start = len(s.msi_log)
        await s.ep.msi_cap.issue_msi_interrupt(vector)
        await First(event.wait(), Timer(self.to["timeout"], "us"))
        seen = s.msi_log[start:]
        s.expect_at_msi = None
        vectors = [v for v, _ in seen]
        ok = event.is_set() and vectors == [vector]
        result = f"vectors {vectors}"
        if expect is not None:
            visible = [v for _, v in seen]
            result += f", data in memory at the interrupt: {visible}"
            ok = ok and visible == [True]
        return result, ok

    async def final(self):
        s = self.s

        async def memories():
            state = [digest(bytes(s.mem[:HOST_MEM_BYTES]))]
            state += [digest(bytes(s.ep.regions[i][:BARS[i][1]])) for i in BARS]
            return " ".join(state), True
        await self.op("final", "host memory and BAR contents", memories)


async def run_operations(system, form, seed, *, timeout_us=200, max_errors=10, on_phase=None):
    """Play every phase (:data:`PHASES`) on ``system`` with the random
    bytes of ``seed``; return the :class:`OperationLog`. ``timeout_us``:
    each request's completion timeout (and each MSI's); ``on_phase(name)``
    is called as each phase starts. Raises AssertionError when the endpoint
    is not found or more than ``max_errors`` operations raised."""
    log = OperationLog()
    run = _Run(system, form, seed, timeout_us, max_errors, on_phase, log)
    try:
        for phase in PHASES:
            run.start(phase)
            await getattr(run, phase)()
    finally:
        run.start(None)
    return log
