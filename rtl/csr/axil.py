"""AXI4-Lite: the register blocks' bus (AMBA AXI4-Lite, 32-bit data)."""

from enum import IntEnum

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AxiLiteSignature", "Resp"]


class Resp(IntEnum):
    """``BRESP`` / ``RRESP``."""
    OKAY = 0b00
    EXOKAY = 0b01
    SLVERR = 0b10
    DECERR = 0b11


class AxiLiteSignature(wiring.Signature):
    """An AXI4-Lite interface as its manager drives it (a subordinate takes
    it ``In``): the five channels with AXI's own signal names, so the
    Verilog ports read ``<port>__awaddr`` ... ``<port>__rready``."""

    def __init__(self, addr_width, data_width=32):
        if data_width not in (32, 64):
            raise ValueError(f"data_width must be 32 or 64 (AXI4-Lite), not {data_width!r}")
        if not isinstance(addr_width, int) or not 2 <= addr_width <= 64:
            raise ValueError(f"addr_width must be 2..64 bits, not {addr_width!r}")
        self.addr_width, self.data_width = addr_width, data_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    def __repr__(self):
        return f"AxiLiteSignature({self.addr_width}, {self.data_width})"
