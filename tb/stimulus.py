"""Stimulus for the TLP path: lists of TLP byte strings, each list a pure
function of its parameters and seed (no simulator import), so the same list
can be replayed on any simulator or through the models alone."""

import dataclasses
import random
import zlib
from pathlib import Path

import numpy as np

from ..models import wire
from ..models.frame import body_capacity, largest_tlp
from ..models.pcap import read_nettlp
from ..models.tlp import (Attr, PcieId, Tlp, TlpType, iter_random_tlps, random_tlp,
                          tlp_size_from_header)
from ..models.translate import (BAR_REGISTERS, ROM_REGISTER, AccessTable, Function, VirtualBar,
                                Window)

__all__ = ["CAPTURES", "random_tlps", "size_extremes", "mtu_boundary", "capture_tlps",
           "ingress_errors", "mwr_stream", "ordering_traffic", "OrderTrace", "ordering_trace",
           "producer_consumer",
           "TRANSLATION_TABLE", "translation_traffic",
           "expected_after_ingress"]

#: The shared NetTLP captures, beside the repository (read in place).
CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "captures"


def random_tlps(seed, count, *, mtu=1500, max_payload=512):
    """``count`` random TLPs of every type (see :func:`~tlpoe.models.tlp.random_tlp`)."""
    return [t.pack() for t in iter_random_tlps(seed, count, max_payload=max_payload)
            if t.size <= largest_tlp(mtu)]


def _mwr(nbytes_total, seed, *, tag=0):
    """A 64-bit MWr whose whole TLP is ``nbytes_total`` bytes (4-DW header, no digest)."""
    payload = nbytes_total - 16
    if payload < 4 or payload % 4 or payload > 4096:
        raise ValueError(f"no MWr of {nbytes_total} bytes")
    data = np.random.default_rng(seed).integers(0, 256, payload, dtype=np.uint8).tobytes()
    return Tlp.mem_write(0x1_0000_0000, data, requester_id=0x0100, tag=tag).pack()


def _mrd_min(tag):
    """The smallest TLP: a 3-DW MRd of one DW (12 bytes)."""
    return Tlp.mem_read(0x1000 + 4 * tag, 4, requester_id=0x0100, tag=tag).pack()


def size_extremes(mtu, repeat=20):
    """Alternating smallest (12-byte MRd) and largest TLPs that one frame at
    ``mtu`` carries (a MWr of ``largest_tlp(mtu)`` bytes, capped at the PCIe
    maximum of 4 DW + 1024 DW)."""
    largest = min(largest_tlp(mtu), 16 + 4096)
    out = []
    for i in range(repeat):
        out += [_mrd_min(i % 256), _mwr(largest, i), _mwr(largest, i + 1000), _mrd_min((i + 7) % 256)]
    return out


def _fill(total, rng, largest=16 + 4096):
    """Two or more MWr sizes (whole TLPs) that, each behind its prefix, add up
    to ``total`` bytes."""
    sizes = []
    while total:
        if sizes and total - wire.PREFIX_LEN <= largest:
            size = total - wire.PREFIX_LEN
        else:
            # leave room for at least one more TLP of 20..largest bytes
            high = min(largest, total - wire.PREFIX_LEN - (wire.PREFIX_LEN + 20))
            size = 4 * int(rng.integers(5, high // 4 + 1))
        sizes.append(size)
        total -= wire.PREFIX_LEN + size
    return sizes


def mtu_boundary(mtu, seed=0):
    """TLP sets that fill a frame's TLP area exactly, and one DW more.

    With a long flush timeout and no gaps, the encapsulator's frames must match
    :func:`tlpoe.models.frame.aggregate`'s greedy split of this list."""
    full = body_capacity(mtu) // 4 * 4                   # whole-DW capacity
    rng = np.random.default_rng(seed)
    out = []
    for k in range(8):
        exact = _fill(full, rng)                          # exactly one frame
        over = _fill(full, rng)
        over[0] += 4                                      # one DW too many: two frames
        out += [_mwr(size, 1000 * k + i) for i, size in enumerate(exact + over)]
    return out


def capture_tlps(captures=CAPTURES):
    """Every TLP of every shared capture, in file then packet order.

    The p4600 captures are cut at 128 bytes, so their payloads are
    incomplete; the bridge carries bytes, not meaning, so the missing payload
    bytes are filled with a pattern derived from the capture (CRC-32 of the
    file name and packet index), keeping every captured byte and header as is."""
    out = []
    for path in sorted(Path(captures).glob("*.pcap")):
        for record in read_nettlp(path):
            data = record.tlp_bytes
            size = tlp_size_from_header(data[:4])
            if len(data) < size:
                fill = zlib.crc32(f"{path.name}:{record.index}".encode())
                pattern = fill.to_bytes(4, "little") * ((size - len(data)) // 4 + 1)
                data = data + pattern[:size - len(data)]
            out.append(bytes(data[:size]))
    return out


def ingress_errors(mtu, seed=0):
    """Good TLPs mixed with ingress errors: an oversize TLP (dropped), TLPs
    whose stream is longer than their Length says (cut: by 4 DWs, and by one
    DW that shares the final beat), one shorter (padded)."""
    good = random_tlps(seed, 30, mtu=mtu, max_payload=128)
    over = Tlp.mem_write(0x2000, bytes(range(256)) * 16, requester_id=0x0100).pack()
    long_ = Tlp.mem_write(0x3000, bytes(16), requester_id=0x0100).pack() + bytes(range(16))
    one_dw_long = Tlp.mem_write(0x3800, bytes(12), requester_id=0x0100).pack() + bytes(4)
    short = Tlp.mem_write(0x4000, bytes(range(64)), requester_id=0x0100).pack()[:-48]
    out = []
    for i, tlp in enumerate(good):
        out.append(tlp)
        if i % 10 == 3:
            if largest_tlp(mtu) < len(over):
                out.append(over)
            out += [long_, one_dw_long, short]
    return out


def mwr_stream(count, payload=256):
    """``count`` 64-bit memory writes of ``payload`` bytes: the bulk DMA case."""
    return [_mwr(16 + payload, i, tag=i % 256) for i in range(count)]


def ordering_traffic(seed, count, *, ro=0.2, ido=0.1):
    """``count`` TLPs (bytes) for the ordering rules: posted writes, reads,
    and the split completions of earlier reads (up to three parts each,
    their Byte Count falling to the final part; at most 64 reads are
    outstanding and a tag is not reused while its read is), from two
    requesters, with
    Relaxed Ordering and ID-Based Ordering on a fraction ``ro`` / ``ido``
    of the writes and completions. Every cell of the ordering table occurs
    between neighbours."""
    rng = np.random.default_rng(seed)
    requesters, completer = (0x0100, 0x0300), 0x0200
    out, open_reads, tag = [], [], 0

    def attr():
        r = rng.random()
        return Attr.RO if r < ro else Attr.IDO if r < ro + ido else Attr(0)

    while len(out) < count:
        kind = rng.random()
        if kind < 0.45:
            out.append(Tlp(TlpType.MWr, address=0x1000 * len(out), first_be=0xF, last_be=0xF,
                           attr=attr(), requester_id=int(rng.choice(requesters)),
                           data=rng.bytes(4 * int(rng.integers(1, 9)))))
        elif (kind < 0.65 and len(open_reads) < 64) or not open_reads:
            requester, parts = int(rng.choice(requesters)), int(rng.integers(1, 4))
            busy = {t for r, t, _ in open_reads if r == requester}
            tag = (tag + 1) % 1024
            while tag in busy:          # a requester never reuses a tag still outstanding
                tag = (tag + 1) % 1024
            out.append(Tlp(TlpType.MRd, address=0x8000 * tag, tag=tag, requester_id=requester,
                           attr=Attr.IDO if rng.random() < ido else Attr(0),
                           first_be=0xF, last_be=0xF, length=16 * parts))
            open_reads.append([requester, tag, parts])
        else:
            read = open_reads[int(rng.integers(len(open_reads)))]
            requester, t, parts = read
            out.append(Tlp(TlpType.CplD, requester_id=requester, tag=t, completer_id=completer,
                           attr=attr(), byte_count=64 * parts, data=rng.bytes(64)))
            read[2] -= 1
            if not read[2]:
                open_reads.remove(read)
    return [t.pack() for t in out]


@dataclasses.dataclass
class OrderTrace:
    """One queue's ingress and egress for an ordering checker.

    ``events``: in time order, ``("in", tlp)`` (a TLP arrives; numbered in
    order from 0), ``("out", n)`` (arrival ``n`` leaves) and ``("req",
    tlp)`` (a non-posted request of the opposite direction, which a later
    completion may answer); ``ingress`` lists the TLPs (bytes) in arrival
    order, ``egress`` the arrival numbers in leaving order and
    ``completes_write`` the arrival numbers of completions of I/O and
    Configuration Writes (for :func:`~tlpoe.models.ordering.check_order`)."""
    events: list
    ingress: list
    egress: list
    completes_write: set


def ordering_trace(seed, count, *, keep=8, inside=40, span=48, ro=0.2, ido=0.2):
    """``count`` TLPs through a queue that lets any of its ``keep`` oldest
    TLPs leave next, legal or not, holding at most ``inside`` and none that
    arrived ``span`` or more TLPs before the latest (so that a checker's
    window of more than ``span`` positions holds them all): random
    writes, reads and split completions from two requesters
    (:func:`ordering_traffic`), with Relaxed Ordering and ID-Based Ordering,
    and the completions of the Root Complex's own requests (Configuration
    and I/O Writes, and reads, told to the checker as requests of the
    opposite direction), so that every cell of the table, its exceptions
    included, is met in both its legal and its illegal form. A pure
    function of its arguments."""
    rng = random.Random(seed)
    base = [Tlp.unpack(t) for t in ordering_traffic(seed, count, ro=ro, ido=ido)]
    root, gpu, tag = 0x0000, 0x0200, 0
    events, ingress, egress, completes_write = [], [], [], set()
    waiting, pending = [], []          # arrival numbers inside; our own requests unanswered
    for tlp in base:
        if rng.random() < 0.1:          # the Root Complex asks the far side
            tag = (tag + 1) % 1024
            kind = rng.choice((TlpType.CfgWr0, TlpType.IOWr, TlpType.MRd))
            if kind is TlpType.CfgWr0:
                req = Tlp.cfg_write(PcieId.from_int(gpu), 0x10, b"\x01\0\0\0", tag=tag,
                                    requester_id=root)
            elif kind is TlpType.IOWr:
                req = Tlp.io_write(0x100, b"\x02\0\0\0", tag=tag, requester_id=root)
            else:
                req = Tlp.mem_read(0x4000, 4, tag=tag, requester_id=root)
            events.append(("req", req.pack()))
            pending.append((req, kind is not TlpType.MRd))
        if pending and rng.random() < 0.1:
            req, writes = pending.pop(rng.randrange(len(pending)))
            cpl = Tlp.completion_for(req, completer_id=gpu,
                                     data=b"" if writes else b"\xaa\xbb\xcc\xdd")
            cpl.attr = Attr.IDO if rng.random() < ido else Attr(0)
            if writes:
                completes_write.add(len(ingress))
            tlp_in = [cpl, tlp]
        else:
            tlp_in = [tlp]
        for t in tlp_in:
            events.append(("in", t.pack()))
            waiting.append(len(ingress))
            ingress.append(t.pack())
            while len(waiting) >= inside or (waiting and rng.random() < 0.5):
                old = len(ingress) - waiting[0] >= span
                n = waiting.pop(0 if old else rng.randrange(min(keep, len(waiting))))
                events.append(("out", n))
                egress.append(n)
    for n in waiting:
        events.append(("out", n))
        egress.append(n)
    return OrderTrace(events, ingress, egress, completes_write)


def producer_consumer(seed, count, *, data_writes=(1, 6), ro=0.25):
    """About ``count`` TLPs (bytes) of the producer/consumer pattern that
    PCIe ordering exists for: a producer writes a buffer (``data_writes``
    MWr of 64..256 bytes), then a flag (a 4-byte MWr), and reads the flag
    back (MRd); between rounds the consumer's earlier reads complete
    (CplD, some with Relaxed Ordering, which may pass the writes). The data
    writes never carry RO here: the flag must not pass them."""
    rng = np.random.default_rng(seed)
    producer, consumer = 0x0100, 0x0200
    out, reads, tag = [], [], 0
    while len(out) < count:
        base = 0x10_0000 * (len(out) + 1)
        for i in range(int(rng.integers(*data_writes))):
            out.append(Tlp(TlpType.MWr, address=base + 0x100 * i, requester_id=producer,
                           first_be=0xF, last_be=0xF,
                           data=rng.bytes(64 * int(rng.integers(1, 5)))))
        out.append(Tlp(TlpType.MWr, address=0x1000, requester_id=producer, first_be=0xF,
                       data=int(len(out)).to_bytes(4, "little")))          # the flag
        tag = (tag + 1) % 256
        out.append(Tlp(TlpType.MRd, address=0x1000, requester_id=producer, tag=tag,
                       first_be=0xF, length=1))                            # poll it
        reads.append(tag)
        if len(reads) > 2:                  # a consumer's read of ours completes
            done = reads.pop(0)
            out.append(Tlp(TlpType.CplD, requester_id=consumer, tag=done,
                           completer_id=producer, byte_count=4,
                           attr=Attr.RO if rng.random() < ro else Attr(0),
                           data=rng.bytes(4)))
    return [t.pack() for t in out]


#: A host's table for the translation benches: a 16 MiB window below 4 GiB,
#: a 256 MiB one above, two assigned functions with BARs of every kind
#: (32- and 64-bit, prefetchable or not, 128 bytes to 256 MiB, gaps between).
TRANSLATION_TABLE = AccessTable(
    host_rid=0x0000, local_rid=0x0010,
    windows=(Window(host_base=0x8000_0000, size=1 << 24, device_base=0xC000_0000),
             Window(host_base=0x40_0000_0000, size=1 << 28, device_base=0x380_0000_0000)),
    functions=(Function.with_bars(0x0100, 0x0300, [
                   VirtualBar(0, 1 << 24, 0x8000_0000),
                   VirtualBar(1, 1 << 28, 0x40_0000_0000, bits64=True, prefetchable=True)]),
               Function.with_bars(0x0108, 0x0400, [
                   VirtualBar(0, 1 << 16, 0x8100_0000, bits64=True),
                   VirtualBar(3, 4096, 0x8200_0000),
                   VirtualBar(5, 128, 0x8300_0000, prefetchable=True)])))


def _steer(rng, tlp, direction, table):
    """``tlp`` with its addresses and IDs pointed at ``table`` most of the
    time, so that every rule is exercised both ways."""
    w32, w64 = table.windows
    functions = table.functions
    r = rng.random()
    if tlp.type.is_memory and direction == "to_device":
        window = w64 if tlp.addr64 else w32
        nbytes = 4 * tlp.length
        if r < 0.6:
            page = rng.randrange(window.size // 4096 - 1)
            offset = rng.randrange(0, 4096 - nbytes + 1, 4) if nbytes <= 4096 else 0
            return dataclasses.replace(tlp, address=window.host_base + 4096 * page + offset)
        if r < 0.7:                         # straddles the window's end
            return dataclasses.replace(tlp, address=window.host_base + window.size - 4)
        return tlp
    if tlp.type.is_config and r < 0.75:
        # an assigned function: its BARs (sized with all ones at times), its
        # Expansion ROM BAR, or another register (forwarded)
        fields = dict(dest_id=PcieId.from_int(rng.choice(functions).host_id))
        k = rng.random()
        if k < 0.55:
            fields["register"] = rng.choice(BAR_REGISTERS)
            if tlp.type.has_data and rng.random() < 0.3:
                fields.update(data=b"\xff" * 4, first_be=0xF)
        elif k < 0.65:
            fields["register"] = ROM_REGISTER
        return dataclasses.replace(tlp, **fields)
    if tlp.type.is_completion:
        if direction == "to_device":
            ids = {"requester_id": rng.choice(functions).host_id} if r < 0.6 else {}
        else:
            ids = {"requester_id": table.local_rid} if r < 0.7 else {}
            if rng.random() < 0.7:
                ids["completer_id"] = rng.choice(functions).device_id
        return dataclasses.replace(tlp, **{k: PcieId.from_int(v) for k, v in ids.items()})
    if tlp.type.is_memory and r < 0.6:
        return dataclasses.replace(
            tlp, requester_id=PcieId.from_int(rng.choice(functions).device_id))
    return tlp


_CONFIG = [TlpType.CfgRd0, TlpType.CfgWr0, TlpType.CfgRd1, TlpType.CfgWr1]


def translation_traffic(seed, n, direction, table=TRANSLATION_TABLE):
    """``n`` random TLPs of every type (:class:`~tlpoe.models.tlp.Tlp`) for
    ``direction`` ("to_device" or "to_host") of a Translator holding
    ``table`` (two windows, one each side of 4 GiB), steered at the table
    so that every rule meets TLPs it passes and TLPs it denies. A fifth
    more configuration requests go to the device than chance gives, most
    of them at the assigned functions' BAR registers."""
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    out = []
    while len(out) < n:
        types = _CONFIG if direction == "to_device" and rng.random() < 0.2 else None
        tlp = _steer(rng, random_tlp(nrng, max_payload=128, types=types), direction, table)
        try:
            tlp.pack()
        except ValueError:
            continue                        # a steered address the TLP rules reject
        out.append(tlp)
    return out



def expected_after_ingress(tlp, mtu):
    """What the bridge delivers for ``tlp`` offered at its TLP ingress: None
    for a TLP too large for a frame; otherwise the TLP at the size its header
    declares (cut, or zero-padded when the stream ended early)."""
    size = tlp_size_from_header(tlp[:4])
    if size > largest_tlp(mtu):
        return None
    return tlp[:size] + bytes(max(0, size - len(tlp)))
