"""Malformed frames for the receive path, one per drop reason, each checked
against the frame model: the model is the oracle of what the RTL must count."""

import zlib

from ..models import wire
from ..models.frame import DropReason, FrameError, decode_frame, encode_frame

__all__ = ["malformed_frame", "model_verdict", "control_frame"]


def _refresh_crc(frame):
    """``frame`` with its CRC recomputed for its (possibly edited) payload_length."""
    length = wire.BRIDGE_HEADER["payload_length"].get(frame, wire.ETH_LEN)
    end = wire.HEADER_LEN + length
    frame = bytearray(frame)
    frame[end:end + 4] = zlib.crc32(bytes(frame[wire.ETH_LEN:end])).to_bytes(4, "little")
    return bytes(frame)


def _set(frame, layout_field, value, base=wire.ETH_LEN):
    f = layout_field
    frame = bytearray(frame)
    word = int.from_bytes(frame[base + f.offset:base + f.offset + f.size], "big")
    mask = ((1 << f.width) - 1) << f.shift
    word = (word & ~mask) | ((value << f.shift) & mask)
    frame[base + f.offset:base + f.offset + f.size] = word.to_bytes(f.size, "big")
    return bytes(frame)


def _candidate(reason, good, rng, mtu):
    header = wire.BRIDGE_HEADER
    n = len(good)
    length = header["payload_length"].get(good, wire.ETH_LEN)
    if reason is DropReason.TRUNCATED:
        return good[:rng.randrange(1, n)]
    if reason is DropReason.ETHERTYPE:
        return good[:12] + rng.choice([0x0800, 0x86DD, 0x88B6]).to_bytes(2, "big") + good[14:]
    if reason is DropReason.VERSION:
        if rng.random() < 0.5:
            return _set(good, header["version"], rng.choice([0, 2, 15]))
        return _set(good, header["frame_type"], rng.randrange(len(wire.FrameType), 16))
    if reason is DropReason.CRC:
        bit = rng.randrange(8 * (wire.HEADER_LEN + 4 - 16), 8 * (wire.HEADER_LEN + length + 4))
        frame = bytearray(good)
        frame[bit // 8] ^= 1 << (bit % 8)
        return bytes(frame)
    if reason is DropReason.PREFIX_OVERRUN:
        frame = _set(good, wire.TLP_PREFIX["tlp_length"],
                     rng.choice([length, length + 4, 8, 14, 0xFFFC]), base=wire.HEADER_LEN)
        return _refresh_crc(frame)
    if reason is DropReason.COUNT_MISMATCH:
        count = header["tlp_count"].get(good, wire.ETH_LEN)
        return _refresh_crc(_set(good, header["tlp_count"], count + rng.choice([1, -1])))
    if reason is DropReason.EMPTY_DATA:
        frame = _set(_set(good[:wire.HEADER_LEN], header["tlp_count"], 0),
                     header["payload_length"], 0)
        return _refresh_crc(frame + bytes(4)) + bytes(16)        # padded to 64
    if reason is DropReason.OVERSIZE:
        tlp = bytes(range(256)) * 4
        tlp = bytes([0x60, 0, 1, 0]) + tlp[4:16] + tlp      # MWr 64-bit, 256 DW
        count = (wire.ETH_LEN + mtu) // (len(tlp) + 4) + 1
        return encode_frame([tlp] * count)
    raise ValueError(f"no fault for {reason!r}")


def model_verdict(frame, mtu, decode=None):
    """The :class:`DropReason` the frame model gives ``frame``, or None if it
    is good; ``decode``: the receiver's decoder (a function of the frame and
    ``mtu``), by default the ``eth`` transport's."""
    try:
        (decode or decode_frame)(frame, mtu=mtu)
    except FrameError as e:
        return e.reason
    return None


def malformed_frame(reason, good, rng, *, mtu=1500, tries=50):
    """A frame derived from the valid frame ``good`` that the model drops for
    ``reason``; ``rng`` is a :class:`random.Random`."""
    for _ in range(tries):
        frame = _candidate(reason, good, rng, mtu)
        if model_verdict(frame, mtu) is reason:
            return frame
    raise RuntimeError(f"could not build a {reason.name} frame from a {len(good)}-byte frame")


def control_frame(rng, seq=0):
    """A well-formed ACK/NAK/CREDIT/KEEPALIVE frame, padded by the MAC to 60 bytes."""
    kind = rng.choice([t for t in wire.FrameType if t is not wire.FrameType.DATA])
    frame = encode_frame([], frame_type=kind, seq=seq, ack=rng.randrange(1 << 32), flags=1)
    return frame + bytes(wire.MIN_FRAME - len(frame))
