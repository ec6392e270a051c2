"""amaranth.sim regression tests of the receive path with bytes after the
end-to-end CRC (issue 16, defect 1).

docs/wire-format.md: bytes after the CRC are ignored, so such a frame is valid.
The TlpUnpacker discards a frame's words after its last TLP in one step; with
``2·D`` DWs left (``D`` = DWs per beat) its step count used to truncate to 0
and the unpacker waited for ever: the frame's TLPs were delivered, then no
later frame ever was.
"""

import pytest
from amaranth.sim import Simulator

from tlpoe.models.frame import decode_frame, encode_frame
from tlpoe.rtl.framing.decapsulator import Decapsulator
from tlpoe.tb.bfm import put_frame

#: (width, TLP bytes, bytes after the CRC): the two reproductions of the issue.
REPRODUCTIONS = [(64, 12, 8), (256, 52, 32)]


def tlp(nbytes, tag):
    """A TLP of ``nbytes`` bytes (whole DWs), its bytes marked with ``tag``."""
    return bytes((tag * 7 + i) & 0xFF for i in range(nbytes))


def run_decap(width, frames, *, limit=4000):
    """Feed ``frames`` (bytes each) back to back into a Decapsulator and return
    the TLPs it delivers within ``limit`` cycles after the last one."""
    dut = Decapsulator(width)
    out = []

    async def driver(ctx):
        for frame in frames:
            await put_frame(ctx, dut.frame, frame, width)

    async def monitor(ctx):
        ctx.set(dut.tlp.ready, 1)
        beats = []
        for _ in range(limit + 30 * sum(len(f) for f in frames) // (width // 8)):
            await ctx.tick()
            if ctx.get(dut.tlp.valid):
                beat = ctx.get(dut.tlp.payload)
                keep = beat["keep"]
                beats.append(int(beat["data"]).to_bytes(width // 8, "little")
                             [:4 * bin(keep).count("1")])
                if beat["last"]:
                    out.append(b"".join(beats))
                    beats = []

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver, background=True)
    sim.add_testbench(monitor)
    sim.run()
    return out


def frames_with_trailer(nbytes, trailer):
    """A DATA frame with one ``nbytes`` TLP and ``trailer`` bytes after its CRC,
    then three ordinary frames; returns (frames, the TLPs they carry)."""
    first = encode_frame([tlp(nbytes, 1)], seq=0) + bytes(range(0xA0, 0xA0 + trailer))
    later = [encode_frame([tlp(16 + 4 * k, 2 + k)], seq=1 + k) for k in range(3)]
    frames = [first] + later
    tlps = [t for f in frames for t in decode_frame(f).tlps]
    return frames, tlps


@pytest.mark.parametrize("width,nbytes,trailer", REPRODUCTIONS)
def test_bytes_after_the_crc_do_not_jam_the_receive_path(width, nbytes, trailer):
    frames, tlps = frames_with_trailer(nbytes, trailer)
    if width == 64:
        assert len(frames[0]) - trailer == 60        # the 60-byte frame
    assert run_decap(width, frames) == tlps


@pytest.mark.parametrize("width", [64, 256, 512])
def test_every_trailer_length(width):
    """Every TLP size that ends a frame at each DW of a beat, with 0..68 bytes
    after the CRC, in one stream: every TLP is delivered, in order."""
    frames, tlps = [], []
    for nbytes in range(12, 12 + width // 8 + 4, 4):
        for trailer in range(0, 72, 4):
            more, carried = frames_with_trailer(nbytes, trailer)
            frames += more[:2]
            tlps += carried[:2]
    assert run_decap(width, frames) == tlps
