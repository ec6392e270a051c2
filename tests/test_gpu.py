"""The GPU endpoint model (tlpoe.models.gpu), driven through its reactive
interface with TLPs built here: configuration, BARs, the DMA engine's
splitting, completion reassembly, the completer's RCB splitting, MSI-X and
the kernels."""

import struct

import numpy as np
import pytest

from tlpoe.models.events import Send, Timer
from tlpoe.models.gpu import (
    CQ_ENTRY, CQ_OFFSET, GPU_ID, MSIX_CAP, MSIX_PBA, MSIX_TABLE, PCIE_CAP, GpuEndpoint,
    Opcode, Reg, gemm_blocked, pack_command,
)
from tlpoe.models.pcie_txn import ReadTracker, completions_for_read, request_range
from tlpoe.models.system import GEMM_RTOL, gemm_tolerance
from tlpoe.models.tlp import CplStatus, PcieId, Tlp, TlpType

HOST = PcieId(0, 0, 0)
ME = PcieId(3, 0, 0)
BAR0 = 0xC000_0000
VRAM = 0x40_0000_0000
MSI_ADDR, MSI_DATA = 0xFEE0_0000, 0x4242


def cfg_write(gpu, offset, value, first_be=0xF, t=0.0):
    return gpu.receive(Tlp.cfg_write(ME, offset // 4, value.to_bytes(4, "little"),
                                     first_be=first_be, requester_id=HOST), t)


def cfg_read(gpu, offset):
    (send,) = gpu.receive(Tlp.cfg_read(ME, offset // 4, requester_id=HOST), 0.0)
    return int.from_bytes(send.tlp.data, "little")


def bring_up(gpu, *, mps=256, mrrs=512, rcb=64, ten_bit=False, msix=True):
    """What a driver does, by configuration writes and MMIO (no host model)."""
    cfg_write(gpu, 0x10, BAR0)
    if gpu.bar0_64bit:
        cfg_write(gpu, 0x14, 0)
    cfg_write(gpu, gpu.vram_bar, VRAM & 0xFFFFFFFF)
    cfg_write(gpu, gpu.vram_bar + 4, VRAM >> 32)
    cfg_write(gpu, 0x04, 0x6, first_be=0x3)
    devctl = {128: 0, 256: 1, 512: 2, 1024: 3}
    cfg_write(gpu, PCIE_CAP + 8, devctl[mps] << 5 | 1 << 8 | devctl[mrrs] << 12, first_be=0x3)
    cfg_write(gpu, PCIE_CAP + 0x10, 1 << 3 if rcb == 128 else 0, first_be=0x3)
    if ten_bit:
        cfg_write(gpu, PCIE_CAP + 0x28, 1 << 12, first_be=0x3)
    if msix:
        mmio_write(gpu, BAR0 + MSIX_TABLE, struct.pack("<QII", MSI_ADDR, MSI_DATA, 0))
        cfg_write(gpu, MSIX_CAP, 0x8000 << 16, first_be=0xC)
    return gpu


def mmio_write(gpu, address, data, t=0.0):
    return gpu.receive(Tlp.mem_write(address, data, requester_id=HOST), t)


def run(gpu, opcode, t=0.0, **fields):
    """Submit one command; returns the outputs up to the doorbell and the start timer's."""
    mmio_write(gpu, BAR0 + CQ_OFFSET + CQ_ENTRY * gpu.cq_tail,
               pack_command(opcode, **fields), t)
    out = mmio_write(gpu, BAR0 + Reg.CQ_TAIL, ((gpu.cq_tail + 1) % 32).to_bytes(4, "little"), t)
    (timer,) = out
    assert isinstance(timer, Timer)
    return gpu.timer(timer.token, timer.t_ns)


def answer(host_mem, mrd, rcb=64, cpl_max=256):
    """The completions a host would send for one of the GPU's MRds."""
    return completions_for_read(mrd, lambda a, n: host_mem[a:a + n].tobytes(),
                                completer_id=HOST, rcb=rcb, max_payload=cpl_max)


@pytest.fixture
def gpu():
    return bring_up(GpuEndpoint(vram_size=4 << 20))


# ---------------------------------------------------------------- configuration

def test_identity_and_class():
    g = GpuEndpoint(vendor_id=0x10DE, device_id=0x1DB4, vram_size=4 << 20)
    assert cfg_read(g, 0x00) == 0x1DB4 << 16 | 0x10DE
    assert cfg_read(g, 0x08) >> 8 == 0x030200
    assert cfg_read(g, 0x0C) >> 16 & 0x7F == 0


@pytest.mark.parametrize("bar0_64bit", [False, True])
def test_bar_sizing_by_writing_all_ones(bar0_64bit):
    g = GpuEndpoint(vram_size=8 << 20, bar0_size=64 << 10, bar0_64bit=bar0_64bit)
    cfg_write(g, 0x10, 0xFFFFFFFF)
    low = cfg_read(g, 0x10)
    assert low & 0xF == (0b0100 if bar0_64bit else 0)
    assert (~(low & ~0xF) & 0xFFFFFFFF) + 1 == 64 << 10
    vram = 0x18 if bar0_64bit else 0x14
    cfg_write(g, vram, 0xFFFFFFFF)
    cfg_write(g, vram + 4, 0xFFFFFFFF)
    mask = cfg_read(g, vram) | cfg_read(g, vram + 4) << 32
    assert mask & 0xF == 0b1100                      # 64-bit, prefetchable
    assert (~(mask & ~0xF) & (1 << 64) - 1) + 1 == 8 << 20


def test_capability_list_has_pcie_then_msix():
    g = GpuEndpoint(vram_size=4 << 20, msix_vectors=4)
    assert cfg_read(g, 0x04) >> 16 & 0x10
    first = cfg_read(g, 0x34) & 0xFC
    assert cfg_read(g, first) & 0xFF == 0x10
    second = cfg_read(g, first) >> 8 & 0xFC
    header = cfg_read(g, second)
    assert header & 0xFF == 0x11 and header >> 8 & 0xFF == 0
    assert header >> 16 & 0x7FF == 3                 # table size - 1
    assert cfg_read(g, second + 4) == MSIX_TABLE      # BIR 0


def test_bus_number_captured_from_type0_write(gpu):
    assert gpu.requester_id == ME


def test_bar0_register_read_and_write(gpu):
    (send,) = gpu.receive(Tlp.mem_read(BAR0 + Reg.ID, 4, requester_id=HOST, tag=9), 0.0)
    assert send.tlp.type is TlpType.CplD and send.tlp.tag == 9
    assert int.from_bytes(send.tlp.data, "little") == GPU_ID
    mmio_write(gpu, BAR0 + Reg.SCRATCH, b"\x78\x56\x34\x12")
    assert gpu.scratch == 0x12345678
    mmio_write(gpu, BAR0 + Reg.SCRATCH + 1, b"\xAA")     # one byte lane only
    assert gpu.scratch == 0x1234AA78


def test_memory_space_disabled_or_outside_bars_gets_ur(gpu):
    (send,) = gpu.receive(Tlp.mem_read(0xC800_0000, 4, requester_id=HOST), 0.0)
    assert send.tlp.status == CplStatus.UR
    cfg_write(gpu, 0x04, 0x4, first_be=0x3)               # Memory Space off
    (send,) = gpu.receive(Tlp.mem_read(BAR0, 4, requester_id=HOST), 0.0)
    assert send.tlp.status == CplStatus.UR


# ---------------------------------------------------------------- completer: RCB

@pytest.mark.parametrize("rcb", [64, 128])
def test_vram_read_completions_split_at_rcb(rcb):
    g = bring_up(GpuEndpoint(vram_size=4 << 20), mps=256, rcb=rcb)
    g.vram[:4096] = np.arange(4096) % 251
    start, nbytes = 0x0A6, 0x2F7                     # unaligned both ends
    mrd = Tlp.mem_read(VRAM + start, nbytes, requester_id=HOST, tag=0x33)
    sends = g.receive(mrd, 0.0)
    cpls = [s.tlp for s in sends]
    assert len(cpls) > 1
    address = VRAM + start
    for i, cpl in enumerate(cpls):
        assert cpl.lower_address == address & 0x7F
        assert cpl.byte_count == VRAM + start + nbytes - address
        assert len(cpl.data) <= 256
        n = min(cpl.byte_count, len(cpl.data) - (address & 3))
        address += n
        if i < len(cpls) - 1:
            assert address % rcb == 0, f"completion {i} ends at 0x{address:x}, not at the RCB"
    assert address == VRAM + start + nbytes
    tracker = ReadTracker([0x33])
    tracker.issue(VRAM + start, nbytes)
    done = [tracker.complete(c) for c in cpls][-1]
    assert bytes(done.data) == g.vram[start:start + nbytes].tobytes()


def test_completions_take_the_most_rcb_allows():
    """A 512-byte aligned read at MPS 256 is two 256-byte completions, not eight 64s."""
    g = bring_up(GpuEndpoint(vram_size=4 << 20), mps=256, rcb=64)
    sends = g.receive(Tlp.mem_read(VRAM, 512, requester_id=HOST), 0.0)
    assert [len(s.tlp.data) for s in sends] == [256, 256]


# ---------------------------------------------------------------- DMA engine

@pytest.mark.parametrize("mrrs", [128, 512, 1024])
def test_dma_reads_split_by_mrrs_and_never_cross_4k(mrrs):
    g = bring_up(GpuEndpoint(vram_size=4 << 20), mrrs=mrrs)
    host, size = 0x1F40, 0x2345
    out = run(g, Opcode.COPY_H2D, host=host, a=0, size=size)
    reads = [s.tlp for s in out]
    assert all(r.type is TlpType.MRd and r.requester_id == ME for r in reads)
    spans = [request_range(r) for r in reads]
    assert sum(n for _, n in spans) == size and spans[0][0] == host
    for (a, n), (b, _) in zip(spans, spans[1:]):
        assert a + n == b
    for r, (a, n) in zip(reads, spans):
        assert n <= mrrs and a // 4096 == (a + n - 1) // 4096
        assert r.rule_violation() is None
    assert max(n for _, n in spans) == mrrs


@pytest.mark.parametrize("mps", [128, 256])
def test_dma_writes_split_by_mps_and_never_cross_4k(mps):
    g = bring_up(GpuEndpoint(vram_size=4 << 20), mps=mps)
    g.vram[:0x3000] = np.arange(0x3000) % 253
    host, size = 0x10_0FA4, 0x1C30
    out = run(g, Opcode.COPY_D2H, host=host, a=0x100, size=size)
    writes = [s.tlp for s in out if s.tlp.address != MSI_ADDR]
    assert out[-1].tlp.address == MSI_ADDR              # the interrupt after the data
    got = bytearray()
    for w in writes:
        a, n = request_range(w)
        assert n <= mps and a // 4096 == (a + n - 1) // 4096 and w.rule_violation() is None
        assert a == host + len(got)
        got += w.data[a & 3:(a & 3) + n]
    assert bytes(got) == g.vram[0x100:0x100 + size].tobytes()


def test_dma_read_reassembles_completions_out_of_order_across_tags(gpu):
    rng = np.random.default_rng(5)
    host_mem = rng.integers(0, 256, 1 << 16, dtype=np.uint8)
    out = run(gpu, Opcode.COPY_H2D, host=0x2000, a=0x8000, size=0x4000)
    reads = [s.tlp for s in out]
    per_tag = [answer(host_mem, r) for r in reads]
    assert len({r.tag for r in reads}) == len(reads) == 32
    # interleave: at each step a random request sends its next completion
    order = np.concatenate([[i] * len(c) for i, c in enumerate(per_tag)])
    rng.shuffle(order)
    queues = [list(c) for c in per_tag]
    outputs = []
    for i in order:
        outputs += gpu.receive(queues[i].pop(0), 5000.0)
    assert gpu.errors == []
    tags = gpu.tracker.completion_tags[-len(order):]
    assert tags != sorted(tags)                         # really out of order
    assert gpu.vram[0x8000:0xC000].tobytes() == host_mem[0x2000:0x6000].tobytes()
    assert [s.tlp.data for s in outputs] == [MSI_DATA.to_bytes(4, "little")]


def test_completion_out_of_address_order_within_a_tag_is_an_error(gpu):
    host_mem = np.zeros(0x10000, dtype=np.uint8)
    (first, *_) = [s.tlp for s in run(gpu, Opcode.COPY_H2D, host=0, a=0, size=512)]
    cpls = answer(host_mem, first)
    gpu.receive(cpls[1], 0.0)
    assert gpu.counters["completion_errors"] == 1


def test_tag_pool_limits_outstanding_reads():
    g = bring_up(GpuEndpoint(vram_size=4 << 20, max_outstanding=4), mrrs=128)
    out = run(g, Opcode.COPY_H2D, host=0, a=0, size=4096)
    assert len(out) == 4
    host_mem = np.zeros(4096, dtype=np.uint8)
    more = []
    for c in answer(host_mem, out[2].tlp):
        more += g.receive(c, 1.0)
    assert len(more) == 1 and more[0].tlp.tag == out[2].tlp.tag     # the freed tag reused


def test_ten_bit_tags_when_enabled():
    g = bring_up(GpuEndpoint(vram_size=4 << 20), mrrs=128, ten_bit=True)
    out = run(g, Opcode.COPY_H2D, host=0, a=0, size=1 << 20)
    tags = [s.tlp.tag for s in out]
    assert len(tags) == 768 and min(tags) == 256 and max(tags) == 1023
    assert Tlp.unpack(out[-1].tlp.pack()).tag == 1023


def test_no_dma_without_bus_master(gpu):
    cfg_write(gpu, 0x04, 0x2, first_be=0x3)               # Memory Space only
    out = run(gpu, Opcode.COPY_H2D, host=0, a=0, size=4096)
    assert out == [] and gpu.error and gpu.counters["command_errors"] == 1


# ---------------------------------------------------------------- MSI-X

def test_msix_sent_on_completion(gpu):
    out = run(gpu, Opcode.NOP)
    (send,) = out
    assert send.tlp.type is TlpType.MWr and send.tlp.address == MSI_ADDR
    assert send.tlp.data == MSI_DATA.to_bytes(4, "little") and send.tlp.requester_id == ME


def test_msix_masked_vector_pends_then_fires_on_unmask(gpu):
    mmio_write(gpu, BAR0 + MSIX_TABLE + 12, b"\x01\0\0\0")          # mask vector 0
    assert run(gpu, Opcode.NOP) == []
    (pba,) = gpu.receive(Tlp.mem_read(BAR0 + MSIX_PBA, 4, requester_id=HOST), 0.0)
    assert pba.tlp.data[0] & 1
    (send,) = mmio_write(gpu, BAR0 + MSIX_TABLE + 12, b"\0\0\0\0")  # unmask
    assert send.tlp.address == MSI_ADDR
    (pba,) = gpu.receive(Tlp.mem_read(BAR0 + MSIX_PBA, 4, requester_id=HOST), 0.0)
    assert pba.tlp.data[0] & 1 == 0


def test_msix_function_mask_and_disable(gpu):
    cfg_write(gpu, MSIX_CAP, 0xC000 << 16, first_be=0xC)            # enabled, function masked
    assert run(gpu, Opcode.NOP) == []
    out = cfg_write(gpu, MSIX_CAP, 0x8000 << 16, first_be=0xC)      # function unmasked
    assert [s.tlp.type for s in out] == [TlpType.Cpl, TlpType.MWr]
    cfg_write(gpu, MSIX_CAP, 0, first_be=0xC)                       # MSI-X disabled
    assert run(gpu, Opcode.NOP) == [] and gpu.counters["msix_disabled"] == 1


# ---------------------------------------------------------------- kernels

def test_saxpy_bit_exact_to_numpy(gpu):
    rng = np.random.default_rng(11)
    n = 10_000
    x = rng.standard_normal(n, dtype=np.float32)
    y = rng.standard_normal(n, dtype=np.float32)
    alpha = np.float32(-1.7)
    gpu.vram[0:4 * n] = x.view(np.uint8)
    gpu.vram[0x10000:0x10000 + 4 * n] = y.view(np.uint8)
    (timer,) = run(gpu, Opcode.SAXPY, a=0, b=0x10000, size=n, alpha=float(alpha))
    assert timer.t_ns == pytest.approx(1000.0 + 2000.0 + 12 * n / 900.0)
    (irq,) = gpu.timer(timer.token, timer.t_ns)
    got = gpu.vram[0x10000:0x10000 + 4 * n].view(np.float32)
    assert np.array_equal(got.view(np.uint32), (alpha * x + y).view(np.uint32))
    assert gpu.vram[0:4 * n].view(np.float32).tobytes() == x.tobytes()


def test_gemm_256_within_tolerance_of_numpy(gpu):
    rng = np.random.default_rng(12)
    n = 256
    a = rng.uniform(-1, 1, (n, n)).astype(np.float32)
    b = rng.uniform(-1, 1, (n, n)).astype(np.float32)
    size = 4 * n * n
    gpu.vram[0:size] = a.view(np.uint8).ravel()
    gpu.vram[size:2 * size] = b.view(np.uint8).ravel()
    (timer,) = run(gpu, Opcode.GEMM, a=0, b=size, c=2 * size, size=n, n=n, k=n)
    gpu.timer(timer.token, timer.t_ns)
    c = gpu.vram[2 * size:3 * size].view(np.float32).reshape(n, n)
    ref = a @ b
    assert np.allclose(c, ref, rtol=GEMM_RTOL, atol=gemm_tolerance(a, b))
    assert not np.array_equal(c, np.zeros_like(c))


def test_gemm_tolerance_catches_a_wrong_product():
    rng = np.random.default_rng(13)
    a = rng.uniform(-1, 1, (64, 64)).astype(np.float32)
    b = rng.uniform(-1, 1, (64, 64)).astype(np.float32)
    assert not np.allclose(gemm_blocked(a, b.T), a @ b, rtol=GEMM_RTOL, atol=gemm_tolerance(a, b))


def test_gemm_rectangular_shapes(gpu):
    rng = np.random.default_rng(14)
    m, n, k = 48, 80, 100
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    gpu.vram[0:a.nbytes] = a.view(np.uint8).ravel()
    gpu.vram[0x10000:0x10000 + b.nbytes] = b.view(np.uint8).ravel()
    (timer,) = run(gpu, Opcode.GEMM, a=0, b=0x10000, c=0x20000, size=m, n=n, k=k)
    gpu.timer(timer.token, timer.t_ns)
    c = gpu.vram[0x20000:0x20000 + 4 * m * n].view(np.float32).reshape(m, n)
    assert np.allclose(c, a @ b, rtol=GEMM_RTOL, atol=gemm_tolerance(a, b))


def test_kernel_outside_vram_fails_the_command(gpu):
    out = run(gpu, Opcode.SAXPY, a=(4 << 20) - 8, b=0, size=16, alpha=1.0)
    assert gpu.error and "beyond VRAM" in gpu.errors[-1]
    assert [s.tlp.address for s in out if isinstance(s, Send)] == [MSI_ADDR]
