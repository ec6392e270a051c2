"""Register access on a DUT's AXI4-Lite port through cocotbext-axi's
:class:`~cocotbext.axi.AxiLiteMaster` (an independent bus model).

:class:`AxilCsr` gives plain-Python writers (the pool manager's
:class:`~tlpoe.sim.pool.CsrWriter`) a ``write(address, value)`` that queues
in order, and the testbench ``flush`` (every queued write answered, each
OKAY) and ``read`` / ``read_register``."""

from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

__all__ = ["AxilCsr", "CsrResponseError"]


class CsrResponseError(AssertionError):
    """A register access answered with something other than OKAY."""


class AxilCsr:
    """Register access on the AXI4-Lite port ``{prefix}__aw*`` ... of ``dut``."""

    def __init__(self, dut, prefix, clock, reset):
        self.master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, f"{prefix}_"), clock, reset)
        self._pending = []
        self.writes = 0

    def write(self, address, value):
        """Queue a 32-bit write (issued in the order queued)."""
        event = self.master.init_write(address, value.to_bytes(4, "little"))
        self._pending.append((address, event))
        self.writes += 1

    async def flush(self):
        """Wait until every queued write is answered; raise if one was not OKAY."""
        pending, self._pending = self._pending, []
        for address, event in pending:
            await event.wait()
            if event.data.resp != AxiResp.OKAY:
                raise CsrResponseError(f"write to {address:#x}: {event.data.resp!r}")

    async def read(self, address, *, expect=AxiResp.OKAY):
        result = await self.master.read(address, 4)
        if result.resp != expect:
            raise CsrResponseError(f"read of {address:#x}: {result.resp!r}, not {expect!r}")
        return int.from_bytes(result.data, "little")

    async def read_register(self, reg):
        """The value of ``reg`` (a :class:`~tlpoe.rtl.csr.regmap.Register`), all its words."""
        value = 0
        for k in range(reg.words):
            value |= await self.read(reg.address + 4 * k) << 32 * k
        return value
