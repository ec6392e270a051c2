"""GPU endpoint model: configuration space, BAR0 registers, BAR1 VRAM, a DMA
engine, MSI-X and two kernels (SAXPY, GEMM), reactive (see
:mod:`tlpoe.models.events`).

Configuration space (Type 0 header)
    Vendor/Device ID, Class Code 0x030200 (3D controller), Command (Memory
    Space, Bus Master, INTx Disable writable), BAR0 (registers, 32-bit or
    64-bit, non-prefetchable) and the VRAM BAR (64-bit prefetchable, the
    size of VRAM) right after it: at 0x14 when BAR0 is 32-bit, at 0x18 when
    BAR0 is 64-bit. Capability list: PCI Express (0x60: Device Control with
    Max_Payload_Size, Extended Tag, Max_Read_Request_Size; Link Control with
    the Read Completion Boundary; Device Control 2 with the 10-bit Tag
    Requester Enable) then MSI-X (0xB0: table at BAR0 + 0x2000, PBA at
    BAR0 + 0x3000). The bus and device number are captured from Type 0
    configuration writes, as the spec requires.

BAR0 registers (little-endian DWs)
    ====== ============ ==================================================
    0x000  ID           RO 0x47505530 ("GPU0")
    0x008  STATUS       RO bit 0 busy, bit 1 error (last command failed)
    0x00C  CQ_HEAD      RO index of the next command to run
    0x010  CQ_TAIL      RW doorbell: the host writes the index after its last entry
    0x014  CQ_SIZE      RO entries in the command queue (32)
    0x018  COMPLETED    RO commands completed
    0x01C  INT_STATUS   RW1C bit 0: a command completed
    0x020  SCRATCH      RW (MMIO probes)
    0x1000 command queue, CQ_SIZE entries of 64 bytes
    0x2000 MSI-X table, 16 bytes per vector; 0x3000 MSI-X PBA
    ====== ============ ==================================================

Command entry (64 bytes, little-endian, :data:`COMMAND`)
    ``opcode`` u32, ``flags`` u32 (bit 0: MSI-X on completion, bits 15:8 the
    vector), ``host`` u64, ``a`` ``b`` ``c`` u64 VRAM offsets, ``size``
    ``n`` ``k`` u32, ``alpha`` f32, 8 reserved bytes. Opcodes
    (:class:`Opcode`): NOP; COPY_H2D (``size`` bytes host -> VRAM ``a``);
    COPY_D2H (VRAM ``a`` -> host); SAXPY (``size`` elements, y at ``b`` =
    alpha * x at ``a`` + y); GEMM (C at ``c`` = A at ``a`` (``size`` x ``k``)
    times B at ``b`` (``k`` x ``n``), row-major fp32).

DMA engine
    Host -> VRAM: MRd of at most Max_Read_Request_Size, aligned to it (so
    never across 4 KiB), as many outstanding as there are free tags (32,
    256 with Extended Tag, 768 with 10-bit tags: values 256..1023), the
    completions reassembled per tag in any order across tags.
    VRAM -> host: MWr of at most Max_Payload_Size, aligned the same way.
    No DMA and no MSI-X without Bus Master Enable (the command fails).

Completer
    MRd to BAR0/BAR1 answered after ``mmio_read_ns`` / ``vram_read_ns`` with
    CplDs split at the RCB (Link Control) and at most Max_Payload_Size;
    CfgRd/CfgWr with CplD/Cpl after ``cfg_ns``; anything outside the BARs,
    or with Memory Space disabled, gets UR (non-posted) or is dropped.

Timing (assumptions, see docs/models-device.md): command processor latency
``command_ns``, kernel launch ``kernel_launch_ns``, kernels take the larger of
their FLOPs at ``fp32_gflops`` and their VRAM bytes at ``vram_gbps``
(defaults from the Tesla V100 PCIe datasheet: 14 TFLOP/s fp32, 900 GB/s).
"""

import struct
from collections import Counter
from enum import IntEnum

import numpy as np

from .events import Send, Timer
from .pcie_txn import (
    CompletionError, ConfigSpace, ReadTracker, completions_for_read, decode_mps,
    encode_size_field, split_requests, write_spans,
)
from .tlp import CplStatus, OrderingClass, PcieId, Tlp, TlpType

__all__ = ["GpuEndpoint", "Opcode", "COMMAND", "pack_command", "Reg", "CQ_OFFSET",
           "CQ_ENTRY", "CQ_SIZE", "MSIX_TABLE", "MSIX_PBA", "PCIE_CAP", "MSIX_CAP",
           "gemm_blocked", "GPU_ID", "FLAG_IRQ"]

GPU_ID = 0x47505530
PCIE_CAP, MSIX_CAP = 0x60, 0xB0
CQ_OFFSET, CQ_ENTRY, CQ_SIZE = 0x1000, 64, 32
MSIX_TABLE, MSIX_PBA = 0x2000, 0x3000
FLAG_IRQ = 1
#: The command entry: opcode, flags, host, a, b, c, size, n, k, alpha, reserved.
COMMAND = struct.Struct("<IIQQQQIIIf8x")
assert COMMAND.size == CQ_ENTRY
#: GEMM accumulates over K in tiles of this many (a GPU's order, not numpy's).
GEMM_TILE_K = 32


class Reg(IntEnum):
    """BAR0 register offsets."""
    ID = 0x000
    STATUS = 0x008
    CQ_HEAD = 0x00C
    CQ_TAIL = 0x010
    CQ_SIZE = 0x014
    COMPLETED = 0x018
    INT_STATUS = 0x01C
    SCRATCH = 0x020


class Opcode(IntEnum):
    NOP = 0
    COPY_H2D = 1
    COPY_D2H = 2
    SAXPY = 3
    GEMM = 4


def pack_command(opcode, *, host=0, a=0, b=0, c=0, size=0, n=0, k=0, alpha=0.0,
                 irq=True, vector=0):
    """The 64 bytes of one command entry."""
    flags = (FLAG_IRQ if irq else 0) | (vector & 0xFF) << 8
    return COMMAND.pack(int(opcode), flags, host, a, b, c, size, n, k, alpha)


def gemm_blocked(a, b, tile=GEMM_TILE_K):
    """C = A @ B in fp32, accumulated over K tile by tile, as a GPU kernel
    sums (a different order from numpy's, hence a tolerance, not bit-exact)."""
    c = np.zeros((a.shape[0], b.shape[1]), dtype=np.float32)
    for k0 in range(0, a.shape[1], tile):
        c += a[:, k0:k0 + tile] @ b[k0:k0 + tile, :]
    return c


class GpuEndpoint:
    """A GPU on one PCIe port (port 0). See the module docstring."""

    def __init__(self, *, name="gpu", vendor_id=0x10DE, device_id=0x1DB4,
                 vram_size=64 << 20, bar0_size=64 << 10, bar0_64bit=False,
                 msix_vectors=8, max_payload_supported=512, ten_bit_tags=True,
                 max_outstanding=None, cfg_ns=100.0, mmio_read_ns=300.0,
                 vram_read_ns=500.0, command_ns=1000.0, kernel_launch_ns=2000.0,
                 fp32_gflops=14000.0, vram_gbps=900.0):
        for pname, size, least in (("vram_size", vram_size, 1 << 20),
                                   ("bar0_size", bar0_size, 16 << 10)):
            if size & (size - 1) or size < least:
                raise ValueError(f"{pname}={size} must be a power of two >= {least}")
        if not 1 <= msix_vectors <= 256:
            raise ValueError(f"msix_vectors={msix_vectors} must be 1..256")
        self.name = name
        self.vram = np.zeros(vram_size, dtype=np.uint8)
        self.bar0_size, self.bar0_64bit = bar0_size, bar0_64bit
        self.vram_bar = 0x18 if bar0_64bit else 0x14
        self.msix_vectors = msix_vectors
        self.max_outstanding = max_outstanding
        self.cfg_ns, self.mmio_read_ns, self.vram_read_ns = cfg_ns, mmio_read_ns, vram_read_ns
        self.command_ns, self.kernel_launch_ns = command_ns, kernel_launch_ns
        self.fp32_flops_per_ns, self.vram_bytes_per_ns = fp32_gflops, vram_gbps
        self.regs = bytearray(bar0_size)          # queue, MSI-X table (PBA is computed)
        self.cfg = self._config_space(vendor_id, device_id, max_payload_supported,
                                      ten_bit_tags)
        self.bus = self.device = 0
        self.cq_head = self.cq_tail = 0
        self.completed = 0
        self.busy = False
        self.error = False
        self.int_status = 0
        self.scratch = 0
        self.pending_vectors = set()
        self.current, self.current_start = None, 0.0
        self._now, self._deferred = 0.0, []
        self.counters = Counter()
        self.errors = []
        self.dma = None                           # the running COPY_H2D
        self.tracker = None
        self.command_log = []                     # (opcode, t_start, t_end)

    # ---------------------------------------------------------------- config

    def _config_space(self, vendor_id, device_id, mps_supported, ten_bit_tags):
        cfg = ConfigSpace()
        cfg.set(0x00, 2, vendor_id)
        cfg.set(0x02, 2, device_id)
        cfg.set(0x04, 2, 0, wmask=0x0406)             # Memory, Bus Master, INTx Disable
        cfg.set(0x08, 4, 0x03020000 | 0xA1)           # 3D controller, revision a1
        cfg.set(0x0E, 1, 0x00)
        cfg.setup_bar(0x10, self.bar0_size, bits64=self.bar0_64bit)
        cfg.setup_bar(self.vram_bar, len(self.vram), bits64=True, prefetchable=True)
        cfg.set(0x2C, 4, device_id << 16 | vendor_id)
        cfg.set(0x3C, 2, 0x0100, wmask=0x00FF)        # INTA, Interrupt Line
        cfg.add_capability(PCIE_CAP, 0x10, 0x3C)
        cfg.set(PCIE_CAP + 0x02, 2, 0x0002)           # version 2, Endpoint
        cfg.set(PCIE_CAP + 0x04, 4, encode_size_field(mps_supported) | 1 << 5 | 1 << 15)
        # Device Control: MPS 128, Extended Tag on, MRRS 512 (the reset values)
        cfg.set(PCIE_CAP + 0x08, 2, 0x2 << 12 | 1 << 8, wmask=0x7FF0)
        cfg.set(PCIE_CAP + 0x0C, 4, 0x3 | 16 << 4)    # Link Cap: 8 GT/s, x16
        cfg.set(PCIE_CAP + 0x10, 2, 0, wmask=1 << 3)  # Link Control: RCB
        cfg.set(PCIE_CAP + 0x12, 2, 0x3 | 16 << 4)    # Link Status
        cfg.set(PCIE_CAP + 0x24, 4, (0x3 << 16) if ten_bit_tags else 0)
        cfg.set(PCIE_CAP + 0x28, 2, 0, wmask=(1 << 12) if ten_bit_tags else 0)
        cfg.add_capability(MSIX_CAP, 0x11, 12, prev=PCIE_CAP)
        cfg.set(MSIX_CAP + 0x02, 2, self.msix_vectors - 1, wmask=0xC000)
        cfg.set(MSIX_CAP + 0x04, 4, MSIX_TABLE | 0)  # BIR 0: BAR0
        cfg.set(MSIX_CAP + 0x08, 4, MSIX_PBA | 0)
        for v in range(self.msix_vectors):            # vectors start masked
            self.regs[MSIX_TABLE + 16 * v + 12] = 1
        cfg.on_write = self._config_written
        return cfg

    def _config_written(self, offset, old, new):
        self._deferred = self._deliver_pending(self._now) if offset == MSIX_CAP else []

    @property
    def requester_id(self):
        return PcieId(self.bus, self.device, 0)

    @property
    def command_register(self):
        return self.cfg.get(0x04, 2)

    @property
    def memory_enabled(self):
        return bool(self.command_register & 0x2)

    @property
    def bus_master(self):
        return bool(self.command_register & 0x4)

    @property
    def max_payload(self):
        return decode_mps(self.cfg.get(PCIE_CAP + 0x08, 2) >> 5 & 0x7)

    @property
    def max_read_request(self):
        return decode_mps(self.cfg.get(PCIE_CAP + 0x08, 2) >> 12 & 0x7)

    @property
    def rcb(self):
        return 128 if self.cfg.get(PCIE_CAP + 0x10, 2) & 1 << 3 else 64

    def tag_pool(self):
        """The tags the DMA engine may use, by Device Control (2)."""
        if self.cfg.get(PCIE_CAP + 0x28, 2) & 1 << 12:
            tags = range(256, 1024)
        elif self.cfg.get(PCIE_CAP + 0x08, 2) & 1 << 8:
            tags = range(256)
        else:
            tags = range(32)
        return list(tags)[:self.max_outstanding] if self.max_outstanding else list(tags)

    def bar0_base(self):
        return self.cfg.bar_address(0x10, self.bar0_64bit)

    def vram_base(self):
        return self.cfg.bar_address(self.vram_bar, True)

    # ---------------------------------------------------------------- reactive interface

    def receive(self, tlp, t_ns, port=0):
        self._now = t_ns
        self.counters[f"rx_{tlp.type}"] += 1
        t = tlp.type
        if t in (TlpType.CfgRd0, TlpType.CfgWr0):
            return self._config(tlp, t_ns)
        if t is TlpType.MRd:
            return self._mem_read(tlp, t_ns)
        if t is TlpType.MWr:
            return self._mem_write(tlp, t_ns)
        if t in (TlpType.CplD, TlpType.Cpl):
            return self._completion(tlp, t_ns)
        self.counters["unsupported"] += 1
        if tlp.ordering_class is OrderingClass.NON_POSTED:
            return [Send(t_ns + self.cfg_ns, 0, Tlp.completion_for(
                tlp, completer_id=self.requester_id, status=CplStatus.UR))]
        return []

    def timer(self, token, t_ns):
        self._now = t_ns
        kind = token[0]
        if kind == "start":
            return self._start_command(t_ns)
        if kind == "done":
            return self._finish(t_ns)
        raise ValueError(f"unknown timer {token!r}")

    # ---------------------------------------------------------------- completer

    def _config(self, tlp, t_ns):
        if tlp.dest_id.function:
            return [Send(t_ns + self.cfg_ns, 0, Tlp.completion_for(
                tlp, completer_id=self.requester_id, status=CplStatus.UR))]
        if tlp.type is TlpType.CfgWr0:
            self.bus, self.device = tlp.dest_id.bus, tlp.dest_id.device
            self._deferred = []
            self.cfg.write_dw(tlp.register, int.from_bytes(tlp.data[:4], "little"),
                              tlp.first_be)
            cpl = Tlp.completion_for(tlp, completer_id=self.requester_id)
            return [Send(t_ns + self.cfg_ns, 0, cpl)] + self._deferred
        data = self.cfg.read_dw(tlp.register).to_bytes(4, "little")
        return [Send(t_ns + self.cfg_ns, 0,
                     Tlp.completion_for(tlp, completer_id=self.requester_id, data=data))]

    def _decode(self, address):
        """('bar0' | 'vram', offset) or None."""
        if not self.memory_enabled:
            return None
        base = self.bar0_base()
        if base and base <= address < base + self.bar0_size:
            return "bar0", address - base
        base = self.vram_base()
        if base and base <= address < base + len(self.vram):
            return "vram", address - base
        return None

    def _mem_read(self, tlp, t_ns):
        hit = self._decode(tlp.address)
        if hit is None:
            self.counters["ur_reads"] += 1
            return [Send(t_ns + self.cfg_ns, 0, Tlp.completion_for(
                tlp, completer_id=self.requester_id, status=CplStatus.UR))]
        space, offset = hit
        base = tlp.address - offset
        if space == "bar0":
            read, delay = (lambda a, n: self._bar0_read(a - base, n)), self.mmio_read_ns
        else:
            read, delay = (lambda a, n: self.vram[a - base:a - base + n].tobytes()), \
                self.vram_read_ns
        cpls = completions_for_read(tlp, read, completer_id=self.requester_id, rcb=self.rcb,
                                    max_payload=self.max_payload)
        self.counters["completions_sent"] += len(cpls)
        return [Send(t_ns + delay, 0, c) for c in cpls]

    def _mem_write(self, tlp, t_ns):
        hit = self._decode(tlp.address)
        if hit is None:
            self.counters["writes_dropped"] += 1
            return []
        space, offset = hit
        base = tlp.address - offset
        out = []
        for address, chunk in write_spans(tlp):
            if space == "vram":
                o = address - base
                self.vram[o:o + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            else:
                out += self._bar0_write(address - base, chunk, t_ns)
        return out

    # ---------------------------------------------------------------- BAR0

    def _bar0_read(self, offset, n):
        return b"".join(self._bar0_dw(o).to_bytes(4, "little")
                        for o in range(offset, offset + n, 4))

    def _bar0_dw(self, offset):
        if offset >= CQ_OFFSET:
            if MSIX_PBA <= offset < MSIX_PBA + 32:
                bits = sum(1 << v for v in self.pending_vectors)
                return bits >> 8 * (offset - MSIX_PBA) & 0xFFFFFFFF
            return int.from_bytes(self.regs[offset:offset + 4], "little")
        return {
            Reg.ID: GPU_ID, Reg.STATUS: int(self.busy) | int(self.error) << 1,
            Reg.CQ_HEAD: self.cq_head, Reg.CQ_TAIL: self.cq_tail, Reg.CQ_SIZE: CQ_SIZE,
            Reg.COMPLETED: self.completed, Reg.INT_STATUS: self.int_status,
            Reg.SCRATCH: self.scratch,
        }.get(offset, 0)

    def _bar0_write(self, offset, chunk, t_ns):
        if offset >= CQ_OFFSET:
            self.regs[offset:offset + len(chunk)] = chunk
            in_table = MSIX_TABLE <= offset < MSIX_TABLE + 16 * self.msix_vectors
            return self._deliver_pending(t_ns) if in_table else []
        out = []
        for o in range(offset & ~3, offset + len(chunk), 4):
            word = bytearray(self._bar0_dw(o).to_bytes(4, "little"))
            lo, hi = max(o, offset), min(o + 4, offset + len(chunk))
            word[lo - o:hi - o] = chunk[lo - offset:hi - offset]
            out += self._register_write(o, int.from_bytes(word, "little"), t_ns)
        return out

    def _register_write(self, offset, value, t_ns):
        if offset == Reg.CQ_TAIL:
            self.cq_tail = value % CQ_SIZE
            self.counters["doorbells"] += 1
            return self._kick(t_ns)
        if offset == Reg.INT_STATUS:
            self.int_status &= ~value
        elif offset == Reg.SCRATCH:
            self.scratch = value
        return []

    # ---------------------------------------------------------------- MSI-X

    def _vector_entry(self, v):
        e = MSIX_TABLE + 16 * v
        address, data, control = struct.unpack_from("<QII", self.regs, e)
        return address, data, control

    def _msix_state(self):
        control = self.cfg.get(MSIX_CAP + 0x02, 2)
        return bool(control & 0x8000), bool(control & 0x4000)

    def _signal(self, vector, t_ns):
        enabled, function_masked = self._msix_state()
        if not enabled:
            self.counters["msix_disabled"] += 1
            return []
        if vector >= self.msix_vectors:
            self.counters["msix_bad_vector"] += 1
            return []
        address, data, control = self._vector_entry(vector)
        if function_masked or control & 1:
            self.pending_vectors.add(vector)
            self.counters["msix_masked"] += 1
            return []
        return self._msix_write(address, data, t_ns)

    def _msix_write(self, address, data, t_ns):
        if not self.bus_master:
            self.counters["msix_no_bus_master"] += 1
            return []
        self.counters["msix_sent"] += 1
        return [Send(t_ns, 0, Tlp.mem_write(address, data.to_bytes(4, "little"),
                                            requester_id=self.requester_id))]

    def _deliver_pending(self, t_ns):
        enabled, function_masked = self._msix_state()
        if not enabled or function_masked:
            return []
        out = []
        for v in sorted(self.pending_vectors):
            address, data, control = self._vector_entry(v)
            if not control & 1:
                self.pending_vectors.discard(v)
                out += self._msix_write(address, data, t_ns)
        return out

    # ---------------------------------------------------------------- command engine

    def _kick(self, t_ns):
        if self.busy or self.cq_head == self.cq_tail:
            return []
        self.busy = True
        return [Timer(t_ns + self.command_ns, ("start",))]

    def _entry(self):
        o = CQ_OFFSET + CQ_ENTRY * self.cq_head
        fields = COMMAND.unpack_from(self.regs, o)
        return dict(zip(("opcode", "flags", "host", "a", "b", "c", "size", "n", "k", "alpha"),
                        fields))

    def _start_command(self, t_ns):
        cmd = self._entry()
        self.current = cmd
        self.current_start = t_ns
        self.error = False
        try:
            op = Opcode(cmd["opcode"])
        except ValueError:
            return self._fail(f"unknown opcode {cmd['opcode']}", t_ns)
        if op is Opcode.NOP:
            return self._finish(t_ns)
        if op in (Opcode.COPY_H2D, Opcode.COPY_D2H):
            if not self.bus_master:
                return self._fail("DMA without Bus Master Enable", t_ns)
            if cmd["a"] + cmd["size"] > len(self.vram):
                return self._fail("DMA beyond VRAM", t_ns)
            if op is Opcode.COPY_H2D:
                return self._start_h2d(cmd, t_ns)
            return self._d2h(cmd, t_ns)
        try:
            ns = self._kernel(op, cmd)
        except (ValueError, IndexError) as err:
            return self._fail(str(err), t_ns)
        return [Timer(t_ns + self.kernel_launch_ns + ns, ("done",))]

    def _fail(self, why, t_ns):
        self.errors.append(why)
        self.counters["command_errors"] += 1
        self.error = True
        return self._finish(t_ns)

    def _finish(self, t_ns):
        cmd = self.current
        self.command_log.append((Opcode(cmd["opcode"]) if cmd["opcode"] in Opcode._value2member_map_
                                 else cmd["opcode"], self.current_start, t_ns))
        self.cq_head = (self.cq_head + 1) % CQ_SIZE
        self.completed += 1
        self.int_status |= 1
        self.busy = False
        out = self._signal(cmd["flags"] >> 8 & 0xFF, t_ns) if cmd["flags"] & FLAG_IRQ else []
        return out + self._kick(t_ns)

    # -- DMA

    def _start_h2d(self, cmd, t_ns):
        self.tracker = ReadTracker(self.tag_pool())
        self.dma = dict(chunks=split_requests(cmd["host"], cmd["size"], self.max_read_request),
                        next=0, done=0, vram=cmd["a"] - cmd["host"])
        if not self.dma["chunks"]:
            return self._finish(t_ns)
        return self._issue_reads(t_ns)

    def _issue_reads(self, t_ns):
        dma, out = self.dma, []
        while dma["next"] < len(dma["chunks"]) and self.tracker.free:
            address, n = dma["chunks"][dma["next"]]
            tag = self.tracker.issue(address, n)
            out.append(Send(t_ns, 0, Tlp.mem_read(address, n, requester_id=self.requester_id,
                                                  tag=tag)))
            dma["next"] += 1
        self.counters["dma_reads"] += len(out)
        return out

    def _completion(self, tlp, t_ns):
        if self.dma is None:
            self.counters["unexpected_completions"] += 1
            return []
        try:
            pending = self.tracker.complete(tlp)
        except CompletionError as err:
            self.errors.append(str(err))
            self.counters["completion_errors"] += 1
            return []
        if pending is None:
            return []
        if pending.status != CplStatus.SC:
            self.errors.append(f"DMA read 0x{pending.address:x} got {pending.status!r}")
            self.error = True
        else:
            o = pending.address + self.dma["vram"]
            self.vram[o:o + pending.nbytes] = np.frombuffer(pending.data, dtype=np.uint8)
        self.dma["done"] += 1
        if self.dma["done"] == len(self.dma["chunks"]):
            self.dma = None
            return self._finish(t_ns)
        return self._issue_reads(t_ns)

    def _d2h(self, cmd, t_ns):
        out = []
        offset = cmd["a"] - cmd["host"]
        for address, n in split_requests(cmd["host"], cmd["size"], self.max_payload):
            data = self.vram[address + offset:address + offset + n].tobytes()
            out.append(Send(t_ns, 0, Tlp.mem_write(address, data,
                                                   requester_id=self.requester_id)))
        self.counters["dma_writes"] += len(out)
        return out + self._finish(t_ns)

    # -- kernels

    def _f32(self, offset, count):
        if offset % 4 or offset + 4 * count > len(self.vram):
            raise ValueError(f"fp32 array at VRAM 0x{offset:x} x {count} is misaligned "
                             f"or beyond VRAM")
        return self.vram[offset:offset + 4 * count].view(np.float32)

    def _kernel(self, op, cmd):
        """Run the kernel on VRAM now; return its execution time in ns."""
        if op is Opcode.SAXPY:
            n = cmd["size"]
            x, y = self._f32(cmd["a"], n), self._f32(cmd["b"], n)
            y[:] = np.float32(cmd["alpha"]) * x + y
            return 12 * n / self.vram_bytes_per_ns
        if op is Opcode.GEMM:
            m, n, k = cmd["size"], cmd["n"], cmd["k"]
            a = self._f32(cmd["a"], m * k).reshape(m, k)
            b = self._f32(cmd["b"], k * n).reshape(k, n)
            c = self._f32(cmd["c"], m * n).reshape(m, n)
            c[:] = gemm_blocked(a, b)
            flops_ns = 2 * m * n * k / self.fp32_flops_per_ns
            bytes_ns = 4 * (m * k + k * n + m * n) / self.vram_bytes_per_ns
            return max(flops_ns, bytes_ns)
        raise ValueError(f"opcode {op!r} is not a kernel")
