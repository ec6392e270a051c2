"""Hostile frames for the receive path: seeded frames that lie in every field.

A buggy or malicious peer sends frames whose headers, prefixes, lengths and
CRC disagree with each other or with the bytes actually sent. This module
derives such frames from a valid one (:func:`hostile_frame`, :func:`mutate`)
for a bench that feeds them to the RTL receive path and predicts each verdict
with the frame model, ``decode_frame(frame, mtu=mtu)``: the generator never
predicts, it only lies. Every kind of lie is one small function, named in
:data:`MUTATIONS`.

Pure Python (no cocotb, no simulator); for a given :class:`random.Random`
state the frames are always the same. Every frame has between 1 and
``14 + mtu + 64`` bytes (:func:`max_hostile_len`): at most one 512-bit beat
longer than the longest legal frame, so an RTL that sizes its buffers for the
MTU still sees every overrun the MAC could deliver.

``crc_fixed`` of a :class:`Hostile` says how the end-to-end CRC was treated:
True when the CRC was (re)written over the mutated bytes where the (possibly
lying) ``payload_length`` places it, at ``40 + payload_length``, as a peer's
buggy encoder would (or the mutation did not touch what the CRC covers or
where it sits); False when bytes were changed, cut or moved after the CRC was
computed, as corruption on the way would.
"""

from dataclasses import dataclass

from ..models.frame import (
    FrameError, decode_frame, encode_frame, frame_crc, pad_to_minimum,
)
from ..models.wire import (
    BRIDGE_HEADER, CRC_LEN, ETH_LEN, ETHERNET, HEADER_LEN, MIN_FRAME, MIN_TLP, PREFIX_LEN,
    TLP_PREFIX, VERSION, FrameType, body_capacity,
)
from ..models import transport as tp
from .faults import _set

__all__ = [
    "MUTATIONS", "Hostile", "hostile_frame", "mutate", "good_frame", "random_tlp",
    "max_hostile_len", "crc_modes", "BEATS", "in_udp",
]

#: Bytes per beat of the RTL data paths the trailing-byte mutation aligns to
#: (64-bit and 512-bit): a frame must end at every byte lane of both.
BEATS = (8, 64)
#: Extra bytes beyond ``14 + mtu`` a hostile frame may have (one 512-bit beat).
SLACK = 64
#: Largest TLP :func:`random_tlp` draws: 1024 bytes of data, a 4-DW header and
#: a digest (the largest MPS a 1500-byte frame holds, see docs/wire-format.md).
MAX_RANDOM_TLP = 1024 + 16 + 4
#: Frame types that carry no TLPs.
CONTROL_TYPES = tuple(t for t in FrameType if t is not FrameType.DATA)
#: ``frame_type`` values version 1 reserves.
RESERVED_TYPES = tuple(range(len(FrameType), 16))


def max_hostile_len(mtu):
    """Longest frame this module produces at ``mtu``: ``14 + mtu + 64``."""
    return ETH_LEN + mtu + SLACK


@dataclass(frozen=True)
class Hostile:
    """One frame for the receive path.

    ``data``: the bytes as the MAC hands them over (FCS stripped), 1 to
    :func:`max_hostile_len` long. ``kind``: the mutation (one of
    :data:`MUTATIONS`, or ``"good"``). ``crc_fixed``: see the module doc.
    ``detail``: what exactly was done, for the log of a mismatch."""
    data: bytes
    kind: str
    crc_fixed: bool
    detail: str = ""


# --- the valid frame a mutation starts from ----------------------------------------

@dataclass(frozen=True)
class _Good:
    """A valid frame, parsed: ``raw`` as given (maybe MAC-padded), ``frame``
    the same without what follows the CRC, the decoded header, the TLPs and
    the frame offset of each TLP's prefix."""
    raw: bytes
    frame: bytes
    decoded: object
    prefixes: tuple

    @property
    def length(self):          # payload_length, L
        return self.decoded.payload_length

    @property
    def crc_at(self):          # frame offset of the CRC, 40 + L
        return HEADER_LEN + self.length

    @property
    def tlps(self):
        return self.decoded.tlps

    @property
    def ethertype(self):
        return self.decoded.ethertype


def _parse(good, mtu):
    """``good`` as a :class:`_Good`; ValueError unless it is a valid frame at ``mtu``
    (with its own EtherType: the bench may configure another than the default)."""
    good = bytes(good)
    try:
        decoded = decode_frame(good, ethertype=ETHERNET["ethertype"].get(good), mtu=mtu)
    except (FrameError, ValueError) as e:
        raise ValueError(f"`good` must be a valid frame at MTU {mtu}: {e}") from None
    prefixes, offset = [], HEADER_LEN
    for tlp in decoded.tlps:
        prefixes.append(offset)
        offset += PREFIX_LEN + len(tlp)
    end = HEADER_LEN + decoded.payload_length + CRC_LEN
    return _Good(raw=good, frame=good[:end], decoded=decoded, prefixes=tuple(prefixes))


def _encode(src, tlps, stamps=None, *, frame_type=FrameType.DATA):
    """A frame with ``src``'s header fields (MACs, EtherType, seq, ack, flags,
    channel, credits) carrying ``tlps``; no MTU check (oversize is wanted)."""
    d = src.decoded
    return encode_frame(tlps, seq=d.seq, ack=d.ack, channel=d.channel, frame_type=frame_type,
                        flags=d.flags, credits=d.credits, dst_mac=d.dst_mac,
                        src_mac=d.src_mac, ethertype=d.ethertype, stamps=stamps)


def _as_data(rng, src, mtu, min_tlps=1):
    """``src`` if it carries at least ``min_tlps`` TLPs; otherwise a DATA frame
    with ``src``'s header and random TLPs (the lies about prefixes need some)."""
    if len(src.tlps) >= min_tlps:
        return src
    tlps = _random_tlps(rng, body_capacity(mtu), rng.randint(min_tlps, min_tlps + 3))
    stamps = [rng.randrange(1 << 16) for _ in tlps]
    return _parse(_encode(src, tlps, stamps), mtu)


# --- valid frames -----------------------------------------------------------------

def random_tlp(rng, max_bytes):
    """A TLP of random bytes, whole DWs, 12 to ``min(max_bytes, 1044)`` bytes,
    biased to small sizes (half of them 12..64). ValueError if ``max_bytes`` < 12.

    The frame layer does not look inside a TLP, so its contents are random."""
    most = min(max_bytes, MAX_RANDOM_TLP) // 4
    if most < MIN_TLP // 4:
        raise ValueError(f"no TLP fits in {max_bytes} bytes (the minimum is {MIN_TLP})")
    roll = rng.random()
    cap = 16 if roll < 0.5 else 64 if roll < 0.8 else most
    return rng.randbytes(4 * rng.randint(MIN_TLP // 4, max(MIN_TLP // 4, min(cap, most))))


def _random_tlps(rng, capacity, count):
    """Up to ``count`` random TLPs whose prefixes and bytes fit ``capacity``
    (at least one: ``capacity`` must hold a 12-byte TLP)."""
    tlps, used = [], 0
    for _ in range(count):
        room = capacity - used - PREFIX_LEN
        if room < MIN_TLP:
            break
        tlps.append(random_tlp(rng, room))
        used += PREFIX_LEN + len(tlps[-1])
    return tlps


def good_frame(rng, *, mtu=1500, seq=0, ack=0, flags=0, max_tlps=8):
    """A valid DATA frame (unpadded) of 1..``max_tlps`` random TLPs
    (:func:`random_tlp`) with random order stamps, fitting ``body_capacity(mtu)``.

    One TLP in 40 % of the frames, so the short single-TLP frames whose end
    falls inside the first beats (60 bytes with a 12-byte TLP, ...) are common."""
    count = 1 if max_tlps < 2 or rng.random() < 0.4 else rng.randint(2, max_tlps)
    tlps = _random_tlps(rng, body_capacity(mtu), count)
    stamps = [rng.randrange(1 << 16) for _ in tlps]
    return encode_frame(tlps, seq=seq, ack=ack, flags=flags, stamps=stamps, mtu=mtu)


# --- small helpers ----------------------------------------------------------------

def _header(frame, name, value):
    """``frame`` with bridge-header field ``name`` set to ``value``."""
    return _set(frame, BRIDGE_HEADER[name], value)


def _tlp_length(frame, prefix_at, value):
    """``frame`` with the ``tlp_length`` of the prefix at frame offset ``prefix_at``."""
    return _set(frame, TLP_PREFIX["tlp_length"], value, base=prefix_at)


def _write_crc(frame):
    """``frame`` with the CRC recomputed and written where its own
    ``payload_length`` places it (``40 + L``), as a peer's encoder does; the
    frame's bytes there are overwritten. When the frame is too short to hold
    it there, it is returned unchanged (the receiver finds it TRUNCATED)."""
    at = HEADER_LEN + BRIDGE_HEADER["payload_length"].get(frame, ETH_LEN)
    if at + CRC_LEN > len(frame):
        return frame
    return frame[:at] + frame_crc(frame, at - HEADER_LEN).to_bytes(CRC_LEN, "little") + \
        frame[at + CRC_LEN:]


def _maybe_crc(frame, crc_fixed):
    """``frame`` with its CRC rewritten when ``crc_fixed``, else as it is."""
    return _write_crc(frame) if crc_fixed else frame


def _flip_bits(rng, frame, positions, count):
    """``frame`` with ``count`` distinct bits flipped, drawn from the byte
    offsets ``positions`` (distinct, so two flips never cancel)."""
    out = bytearray(frame)
    bits = rng.sample(range(8 * len(positions)), min(count, 8 * len(positions)))
    for bit in sorted(bits):
        out[positions[bit // 8]] ^= 1 << (bit % 8)
    return bytes(out), sorted(positions[b // 8] for b in bits)


def _fill(rng, n, src, mtu):
    """``n`` bytes for after a frame's end: zeros, random, or the start of a
    frame (this one or another), which looks like a header to a receiver that
    restarts its parse too early."""
    roll = rng.randrange(4)
    if roll == 0:
        return bytes(n), "zeros"
    if roll == 1:
        return rng.randbytes(n), "random"
    other = src.frame if roll == 2 else good_frame(rng, mtu=mtu)
    return (other * (n // len(other) + 1))[:n], "frame start"


def _maybe_pad(rng, data):
    """``data`` zero-padded to 60 bytes half the time when shorter, as a MAC
    pads a short frame; the second value says whether it was."""
    if len(data) < MIN_FRAME and rng.random() < 0.5:
        return pad_to_minimum(data), True
    return data, False


def _cut(rng, src, at, where):
    """``src`` truncated to ``at`` bytes (maybe padded to 60 again)."""
    data, padded = _maybe_pad(rng, src.raw[:at])
    return data, f"cut at {at} ({where})" + (", padded to 60" if padded else "")


def _pick(rng, values, avoid=None):
    """One of ``values`` (duplicates and ``avoid`` dropped, order kept)."""
    values = [v for v in dict.fromkeys(values) if v != avoid]
    return rng.choice(values)


def _mul4(n):
    return n // 4 * 4


# --- mutations: truncation --------------------------------------------------------
# A mutation takes (rng, src: _Good, mtu, crc_fixed) and returns (bytes, detail).

def truncate_eth(rng, src, mtu, crc_fixed):
    """Cut inside the Ethernet header (1..13 bytes kept)."""
    return _cut(rng, src, rng.randrange(1, ETH_LEN), "Ethernet header")


def truncate_bridge(rng, src, mtu, crc_fixed):
    """Cut inside the bridge header (15..39 bytes kept)."""
    return _cut(rng, src, rng.randrange(ETH_LEN + 1, HEADER_LEN), "bridge header")


def truncate_prefix(rng, src, mtu, crc_fixed):
    """Cut inside a TLP prefix (1..3 of its bytes kept)."""
    src = _as_data(rng, src, mtu)
    index = rng.randrange(len(src.prefixes))
    at = src.prefixes[index] + rng.randrange(1, PREFIX_LEN)
    return _cut(rng, src, at, f"prefix {index}")


def truncate_tlp(rng, src, mtu, crc_fixed):
    """Cut inside a TLP (1..len-1 of its bytes kept)."""
    src = _as_data(rng, src, mtu)
    index = rng.randrange(len(src.prefixes))
    at = src.prefixes[index] + PREFIX_LEN + rng.randrange(1, len(src.tlps[index]))
    return _cut(rng, src, at, f"TLP {index}")


def truncate_crc(rng, src, mtu, crc_fixed):
    """Cut inside the CRC (1..3 of its bytes kept)."""
    return _cut(rng, src, src.crc_at + rng.randrange(1, CRC_LEN), "CRC")


def truncate_boundary(rng, src, mtu, crc_fixed):
    """Cut exactly at a boundary or one byte either side of it: the end of the
    Ethernet header, of the bridge header, each prefix start, each TLP start,
    the CRC start and the frame end. Always shorter than ``good`` (a cut at or
    after the frame end of a padded ``good`` leaves a valid frame)."""
    marks = [ETH_LEN, HEADER_LEN, src.crc_at, src.crc_at + CRC_LEN]
    marks += [p for p in src.prefixes] + [p + PREFIX_LEN for p in src.prefixes]
    cuts = sorted({m + d for m in marks for d in (-1, 0, 1) if 1 <= m + d < len(src.raw)})
    return _cut(rng, src, rng.choice(cuts), "boundary")


# --- mutations: payload_length -----------------------------------------------------

def length_overrun(rng, src, mtu, crc_fixed):
    """``payload_length`` larger than the TLP area sent: by 4, by a few DWs, by
    a lot, past the bytes present, up to 0xFFFC (always whole DWs).

    CRC fixed: when the claimed area fits the size bound, the peer sends it,
    filled past the real TLPs with stale bytes (zeros, random, a frame start),
    and its CRC after it; when it does not, the peer sends its real bytes and
    a CRC over them under the lying header. Not fixed: only the field
    changes, sometimes with bytes appended so the CRC is looked for there."""
    length, limit = src.length, max_hostile_len(mtu)
    present = _mul4(len(src.raw) - HEADER_LEN - CRC_LEN)
    new = _pick(rng, [length + 4, length + 4 * rng.randint(2, 16), present + 4,
                      present + 4 * rng.randint(1, 64), 0xFFFC,
                      _mul4(rng.randint(length + 4, 0xFFFC))])
    frame = _header(src.frame, "payload_length", new)
    if not crc_fixed:
        data = _header(src.raw, "payload_length", new)
        room = limit - len(data)
        if rng.random() < 0.5 and room > 0:
            tail, how = _fill(rng, rng.randint(1, min(SLACK, room)), src, mtu)
            return data + tail, f"payload_length {length} -> {new}, {len(tail)} {how} appended"
        return data, f"payload_length {length} -> {new}"
    if HEADER_LEN + new + CRC_LEN <= limit:
        stale, how = _fill(rng, new - length, src, mtu)
        body = frame[:src.crc_at] + stale + bytes(CRC_LEN)
        return _write_crc(body), f"payload_length {length} -> {new}, area filled with {how}"
    crc = frame_crc(frame, length).to_bytes(CRC_LEN, "little")
    return frame[:src.crc_at] + crc, f"payload_length {length} -> {new}, CRC over the {length} sent"


def length_underrun(rng, src, mtu, crc_fixed):
    """``payload_length`` smaller than the TLP area: 0, ending inside a prefix,
    right after a prefix, inside a TLP (on a DW or not), at a TLP boundary,
    one to three bytes short; ``tlp_count`` unchanged. CRC fixed: written at
    the new ``40 + L`` over the TLP bytes there, the rest left as trailing bytes."""
    src = _as_data(rng, src, mtu)
    length = src.length
    index = rng.randrange(len(src.prefixes))
    prefix = src.prefixes[index] - HEADER_LEN            # TLP-area offsets
    tlp_len = len(src.tlps[index])
    new = _pick(rng, [
        0, prefix, prefix + rng.randrange(1, PREFIX_LEN), prefix + PREFIX_LEN,
        prefix + PREFIX_LEN + 4 * rng.randrange(1, tlp_len // 4),
        prefix + PREFIX_LEN + rng.randrange(1, tlp_len), length - rng.randint(1, 3),
        rng.randrange(length)], avoid=length)
    data = _maybe_crc(_header(src.raw, "payload_length", new), crc_fixed)
    return data, f"payload_length {length} -> {new} (TLP {index} at {prefix})"


def length_short_consistent(rng, src, mtu, crc_fixed):
    """A consistent lie: ``payload_length`` and ``tlp_count`` cover only the
    first TLPs, the CRC is written after them, and the other TLPs and the old
    CRC follow as trailing bytes that look like more prefixes. Valid."""
    src = _as_data(rng, src, mtu, min_tlps=2)
    keep = rng.randrange(1, len(src.tlps))
    new = src.prefixes[keep] - HEADER_LEN
    frame = _header(_header(src.raw, "tlp_count", keep), "payload_length", new)
    return _write_crc(frame), f"first {keep} of {len(src.tlps)} TLPs, payload_length {new}"


# --- mutations: tlp_count ----------------------------------------------------------

def count_lie(rng, src, mtu, crc_fixed):
    """``tlp_count`` off by one either way, by a lot, 0 or 0xFFFF."""
    count = src.decoded.tlp_count
    new = _pick(rng, [v for v in (count + 1, count - 1, count + rng.randint(2, 1000),
                                  count - rng.randint(2, 1000), 0, 0xFFFF,
                                  rng.randrange(1 << 16)) if 0 <= v <= 0xFFFF], avoid=count)
    data = _maybe_crc(_header(src.raw, "tlp_count", new), crc_fixed)
    return data, f"tlp_count {count} -> {new}"


# --- mutations: a prefix's tlp_length -----------------------------------------------

def _prefix_index(rng, src):
    """The first, a middle or the last TLP."""
    return _pick(rng, [0, len(src.tlps) // 2, len(src.tlps) - 1])


def _lie_in_prefix(rng, src, crc_fixed, choices):
    index = _prefix_index(rng, src)
    old = len(src.tlps[index])
    new = _pick(rng, choices(rng, src, index, old), avoid=old)
    data = _maybe_crc(_tlp_length(src.raw, src.prefixes[index], new), crc_fixed)
    return data, f"TLP {index} of {len(src.tlps)}: tlp_length {old} -> {new}"


def _longer(rng, src, index, old):
    to_end = src.crc_at - src.prefixes[index] - PREFIX_LEN        # swallows the rest
    return [old + 4, old + 4 * rng.randint(2, 64), to_end, to_end + 4, 0xFFFC,
            _mul4(rng.randint(old + 4, 0xFFFC))]


def _shorter(rng, src, index, old):
    if old > MIN_TLP:          # whole DWs, at least 12: the walk lands inside the TLP
        return [old - 4, MIN_TLP, 4 * rng.randrange(MIN_TLP // 4, old // 4)]
    return [0, 4, 8]           # a 12-byte TLP can only be under-run below the minimum


def _malformed(rng, src, index, old):
    return [old + rng.choice((-3, -2, -1, 1, 2, 3)), 0, 4, 8, 0xFFFF,
            rng.randrange(MIN_TLP), rng.randrange(1 << 14) * 4 + rng.randint(1, 3)]


def prefix_long(rng, src, mtu, crc_fixed):
    """A prefix's ``tlp_length`` over-runs its TLP (whole DWs): by 4, by a few
    DWs, exactly to the end of the TLP area (swallowing the TLPs after it),
    past it, up to 0xFFFC; on the first, a middle or the last TLP."""
    return _lie_in_prefix(rng, _as_data(rng, src, mtu), crc_fixed, _longer)


def prefix_short(rng, src, mtu, crc_fixed):
    """A prefix's ``tlp_length`` under-runs its TLP (whole DWs, 12 or more when
    the TLP is longer than 12): the walk lands inside the TLP and reads its
    bytes as the next prefix (which may by chance look valid)."""
    return _lie_in_prefix(rng, _as_data(rng, src, mtu), crc_fixed, _shorter)


def prefix_malformed(rng, src, mtu, crc_fixed):
    """A prefix's ``tlp_length`` that no TLP has: not a multiple of 4, below
    12, 0, 0xFFFF."""
    return _lie_in_prefix(rng, _as_data(rng, src, mtu), crc_fixed, _malformed)


# --- mutations: after the CRC -------------------------------------------------------

def trailing_bytes(rng, src, mtu, crc_fixed):
    """1..64 bytes after the CRC (zeros, random, a frame's start), the count
    often chosen so the frame ends at a given byte lane of an 8- or 64-byte
    beat (the case that jammed the RTL: a 60-byte frame and 8 bytes more).
    Appended to the unpadded frame, or after the MAC padding."""
    base = src.frame if rng.random() < 0.75 else src.raw
    if rng.random() < 0.75:
        beat = rng.choice(BEATS)
        lane = rng.randrange(beat)
        count = (lane - len(base)) % beat or beat
    else:
        count = rng.randint(1, SLACK)
    count = min(count, max_hostile_len(mtu) - len(base))
    tail, how = _fill(rng, count, src, mtu)
    return base + tail, f"{count} {how} bytes after {len(base)}, ends at {len(base) + count}"


# --- mutations: header fields ------------------------------------------------------

def wrong_ethertype(rng, src, mtu, crc_fixed):
    """An EtherType other than the configured one (IPv4, IPv6, VLAN, the
    other local experimental one, 0, 0xFFFF, random). Outside the CRC."""
    new = _pick(rng, [0x0800, 0x86DD, 0x8100, 0x88B6, 0x0000, 0xFFFF,
                      src.ethertype ^ 1, rng.randrange(1 << 16)], avoid=src.ethertype)
    return _set(src.raw, ETHERNET["ethertype"], new, base=0), f"EtherType 0x{new:04X}"


def wrong_version(rng, src, mtu, crc_fixed):
    """A ``version`` other than 1 (0, 2..15)."""
    new = _pick(rng, [v for v in range(16) if v != VERSION])
    return _maybe_crc(_header(src.raw, "version", new), crc_fixed), f"version {new}"


def reserved_frame_type(rng, src, mtu, crc_fixed):
    """A ``frame_type`` version 1 reserves (5..15)."""
    new = rng.choice(RESERVED_TYPES)
    return _maybe_crc(_header(src.raw, "frame_type", new), crc_fixed), f"frame_type {new}"


def control_with_tlps(rng, src, mtu, crc_fixed):
    """A DATA frame's TLPs under a control ``frame_type`` (ACK, NAK, CREDIT,
    KEEPALIVE), with its ``tlp_count`` or with 0."""
    src = _as_data(rng, src, mtu)
    kind = rng.choice(CONTROL_TYPES)
    frame = _header(src.raw, "frame_type", kind)
    count = len(src.tlps) if rng.random() < 0.5 else 0
    frame = _maybe_crc(_header(frame, "tlp_count", count), crc_fixed)
    return frame, f"{kind.name} with {len(src.tlps)} TLPs, tlp_count {count}"


def control_with_count(rng, src, mtu, crc_fixed):
    """A control frame (no TLP area) whose ``tlp_count`` is not 0, MAC-padded
    or not."""
    kind = rng.choice(CONTROL_TYPES)
    frame = _encode(src, [], frame_type=kind)
    count = _pick(rng, [1, 2, rng.randint(3, 100), 0xFFFF, rng.randrange(1, 1 << 16)])
    frame = _maybe_crc(_header(frame, "tlp_count", count), crc_fixed)
    frame, padded = _maybe_pad(rng, frame)
    return frame, f"{kind.name} with tlp_count {count}" + (", padded" if padded else "")


def data_empty(rng, src, mtu, crc_fixed):
    """A DATA frame with no TLP (``payload_length`` 0, ``tlp_count`` 0), then
    nothing, MAC padding, or the old frame's bytes after its CRC. Not fixed:
    the old bytes at offset 40 are taken for the CRC."""
    frame = _header(_header(_header(src.raw, "frame_type", FrameType.DATA),
                            "tlp_count", 0), "payload_length", 0)
    frame = _maybe_crc(frame, crc_fixed)
    end = HEADER_LEN + CRC_LEN
    tail = rng.choice(["none", "padding", "old bytes"])
    if tail == "none":
        return frame[:end], "empty DATA"
    if tail == "padding":
        return pad_to_minimum(frame[:end]), "empty DATA, padded"
    return frame, "empty DATA, old bytes after"


# --- mutations: oversize ------------------------------------------------------------

def oversize_padding(rng, src, mtu, crc_fixed):
    """A valid frame followed by enough bytes to be longer than ``14 + mtu``
    (by 1 to 64)."""
    limit = max_hostile_len(mtu)
    size = rng.randint(ETH_LEN + mtu + 1, limit)
    tail, how = _fill(rng, size - len(src.raw), src, mtu)
    return src.raw + tail, f"{len(tail)} {how} bytes after {len(src.raw)}, {size} bytes"


def oversize_area(rng, src, mtu, crc_fixed):
    """A consistent frame (lengths, count, CRC all right) whose TLP area is
    larger than ``body_capacity(mtu)``, so the frame is 1..64 bytes longer
    than ``14 + mtu``; ``good``'s TLPs first, then random ones."""
    lowest = _mul4(mtu - 30) + 4                 # 44 + L > 14 + mtu
    area = 4 * rng.randint(lowest // 4, (mtu + SLACK - 30) // 4)   # 44 + L <= 14 + mtu + 64
    tlps, stamps, used = [], [], 0
    for tlp, stamp in zip(src.tlps, src.decoded.stamps):
        if used + PREFIX_LEN + len(tlp) > area - PREFIX_LEN - MIN_TLP:
            break
        tlps.append(tlp)
        stamps.append(stamp)
        used += PREFIX_LEN + len(tlp)
    while used < area:
        room = area - used - PREFIX_LEN
        size = room if room <= MAX_RANDOM_TLP else \
            min(len(random_tlp(rng, room)), room - PREFIX_LEN - MIN_TLP)
        tlps.append(rng.randbytes(size))
        stamps.append(rng.randrange(1 << 16))
        used += PREFIX_LEN + size
    frame = _encode(src, tlps, stamps)
    return frame, f"{len(tlps)} TLPs in {area} bytes, {len(frame)} bytes"


# --- mutations: random bytes and bit flips -------------------------------------------

def _random_length(rng, lowest, limit):
    """A length in ``lowest..limit``: small, any, or at a boundary of the checks."""
    roll = rng.random()
    if roll < 0.4:
        return rng.randint(lowest, min(limit, 128))
    if roll < 0.7:
        return rng.randint(lowest, limit)
    return _pick(rng, [v for v in (lowest, 13, 14, 39, 40, 43, 44, 45, 59, 60, 61, limit)
                       if lowest <= v <= limit])


def random_bytes(rng, src, mtu, crc_fixed):
    """Random bytes of a random length (1 to the bound)."""
    size = _random_length(rng, 1, max_hostile_len(mtu))
    return rng.randbytes(size), f"{size} random bytes"


def random_with_header(rng, src, mtu, crc_fixed):
    """Random bytes (44 or more) with the right EtherType and version and a
    defined frame_type (mostly), so the checks go past the header; half the
    time a ``payload_length`` that fits (whole DWs). CRC fixed: a right CRC
    where that length places it, so the prefix walk reads random bytes."""
    size = _random_length(rng, HEADER_LEN + CRC_LEN, max_hostile_len(mtu))
    frame = _set(rng.randbytes(size), ETHERNET["ethertype"], src.ethertype, base=0)
    kind = rng.choice(list(FrameType)) if rng.random() < 0.9 else rng.choice(RESERVED_TYPES)
    frame = _header(_header(frame, "version", VERSION), "frame_type", kind)
    fits = crc_fixed or rng.random() < 0.5
    if fits:
        most = _mul4(size - HEADER_LEN - CRC_LEN)
        length = rng.choice([0, min(most, 4 * rng.randint(0, 8)), _mul4(rng.randint(0, most))])
        frame = _header(_header(frame, "payload_length", length), "tlp_count",
                        rng.choice([0, 1, rng.randint(0, 8), rng.randrange(1 << 16)]))
    return _maybe_crc(frame, crc_fixed), f"{size} random bytes, frame_type {int(kind)}" + \
        (", payload_length fits" if fits else "")


def bit_flips(rng, src, mtu, crc_fixed):
    """1..8 distinct bits flipped anywhere (headers, TLPs, CRC, padding)."""
    data, where = _flip_bits(rng, src.raw, range(len(src.raw)), rng.randint(1, 8))
    return data, f"bits flipped in bytes {where}"


def bit_flips_covered(rng, src, mtu, crc_fixed):
    """1..8 distinct bits flipped in what the CRC protects, except the fields
    checked before it (version, frame_type, payload_length): the other header
    fields, the TLP area, the CRC itself. The receiver must say CRC."""
    checked_first = {ETH_LEN + BRIDGE_HEADER["version"].offset} | {
        ETH_LEN + BRIDGE_HEADER["payload_length"].offset + i for i in range(2)}
    span = [i for i in range(ETH_LEN, src.crc_at + CRC_LEN) if i not in checked_first]
    data, where = _flip_bits(rng, src.raw, span, rng.randint(1, 8))
    return data, f"bits flipped in bytes {where}"


def header_flips(rng, src, mtu, crc_fixed):
    """1..8 distinct bits flipped in the Ethernet and bridge headers, then the
    CRC rewritten where the (maybe changed) ``payload_length`` places it: a
    peer's encoder that fills header fields wrongly."""
    data, where = _flip_bits(rng, src.raw, range(HEADER_LEN), rng.randint(1, 8))
    return _write_crc(data), f"bits flipped in bytes {where}, CRC rewritten"


# --- the table ----------------------------------------------------------------------

_BOTH, _FIXED, _BROKEN = (False, True), (True,), (False,)

#: kind -> (mutation, the crc_fixed values it produces)
_KINDS = {
    "truncate_eth": (truncate_eth, _BROKEN),
    "truncate_bridge": (truncate_bridge, _BROKEN),
    "truncate_prefix": (truncate_prefix, _BROKEN),
    "truncate_tlp": (truncate_tlp, _BROKEN),
    "truncate_crc": (truncate_crc, _BROKEN),
    "truncate_boundary": (truncate_boundary, _BROKEN),
    "length_overrun": (length_overrun, _BOTH),
    "length_underrun": (length_underrun, _BOTH),
    "length_short_consistent": (length_short_consistent, _FIXED),
    "count_lie": (count_lie, _BOTH),
    "prefix_long": (prefix_long, _BOTH),
    "prefix_short": (prefix_short, _BOTH),
    "prefix_malformed": (prefix_malformed, _BOTH),
    "trailing_bytes": (trailing_bytes, _FIXED),
    "wrong_ethertype": (wrong_ethertype, _FIXED),
    "wrong_version": (wrong_version, _BOTH),
    "reserved_frame_type": (reserved_frame_type, _BOTH),
    "control_with_tlps": (control_with_tlps, _BOTH),
    "control_with_count": (control_with_count, _BOTH),
    "data_empty": (data_empty, _BOTH),
    "oversize_padding": (oversize_padding, _FIXED),
    "oversize_area": (oversize_area, _FIXED),
    "random_bytes": (random_bytes, _BROKEN),
    "random_with_header": (random_with_header, _BOTH),
    "bit_flips": (bit_flips, _BROKEN),
    "bit_flips_covered": (bit_flips_covered, _BROKEN),
    "header_flips": (header_flips, _FIXED),
}

#: Every mutation kind, in a stable order ("good" is not one of them).
MUTATIONS = tuple(_KINDS)


def crc_modes(kind):
    """The ``crc_fixed`` values ``kind`` produces (both, or only one)."""
    if kind == "good":
        return _FIXED
    return _KINDS[kind][1]


def mutate(kind, rng, good, *, mtu=1500, crc_fixed=None):
    """``good`` (a valid frame at ``mtu``, from encode_frame, DATA or control,
    MAC-padded or not) with the mutation ``kind`` applied, as a :class:`Hostile`
    of that kind. ``kind`` "good" returns ``good`` unchanged.

    ``crc_fixed`` None draws it from ``rng`` when the kind does both; a value
    the kind cannot do (say, a truncation with the CRC fixed) raises
    ValueError, as do an unknown kind and a ``good`` that is not valid. Kinds
    that lie about prefixes replace a control ``good`` by a DATA frame with its
    header and random TLPs."""
    if kind != "good" and kind not in _KINDS:
        raise ValueError(f"unknown mutation {kind!r}; known: {MUTATIONS}")
    modes = crc_modes(kind)
    if crc_fixed is None:
        crc_fixed = modes[0] if len(modes) == 1 else rng.random() < 0.5
    elif bool(crc_fixed) not in modes:
        raise ValueError(f"{kind} cannot be made with crc_fixed={crc_fixed}")
    src = _parse(good, mtu)
    if kind == "good":
        return Hostile(src.raw, "good", True, "unchanged")
    data, detail = _KINDS[kind][0](rng, src, mtu, bool(crc_fixed))
    assert 1 <= len(data) <= max_hostile_len(mtu), (kind, len(data), detail)
    return Hostile(bytes(data), kind, bool(crc_fixed), detail)


def hostile_frame(rng, good, *, mtu=1500):
    """One hostile frame derived from ``good`` (a valid frame at ``mtu``), the
    kind drawn uniformly from :data:`MUTATIONS` (never "good": the bench mixes
    good frames in itself)."""
    return mutate(rng.choice(MUTATIONS), rng, good, mtu=mtu)


def in_udp(rng, frame, config, *, faults=0.25):
    """``frame`` (the bytes of an ``eth`` frame, good or hostile, padded or
    not) in the IPv4 and UDP headers ``config`` (the sender's
    :class:`~tlpoe.models.transport.UdpConfig`) sends, their lengths from
    its bridge header's ``payload_length`` as a sender's would be; then,
    with probability ``faults``, one header fault: a flipped bit in the
    IPv4 or UDP header (the checksum made right again, or not), a
    fragment, another port or address, a length off, another EtherType."""
    frame = bytes(frame)
    head = frame.ljust(HEADER_LEN, b"\0")
    length = BRIDGE_HEADER.length + BRIDGE_HEADER["payload_length"].get(head, ETH_LEN) + CRC_LEN
    b = bytearray(frame[:12] + tp.ETHERTYPE_IPV4.to_bytes(2, "big") +
                  tp.udp_headers(length & 0xFFFF, config,
                                 dscp=tp.frame_dscp(frame.ljust(HEADER_LEN + 8, b"\0"),
                                                    config)) +
                  frame[ETH_LEN:])
    if rng.random() < faults:
        at, fix = rng.choice(((rng.randrange(14, 42), rng.random() < 0.7), (20, True),
                              (36, True), (rng.randrange(26, 34), True), (17, True), (39, True),
                              (12, False)))
        b[at] ^= 1 << rng.randrange(8)
        if fix:
            b[24:26] = tp.ipv4_checksum(b[14:34]).to_bytes(2, "big")
    return bytes(b)
