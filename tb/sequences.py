"""Stimulus as transactions: sequences of byte strings for a :class:`StreamAgent`."""

from pyuvm import uvm_sequence

from .items import StreamItem

__all__ = ["StreamSequence", "random_payloads"]


class StreamSequence(uvm_sequence):
    """Sends ``payloads`` (byte strings) in order, one :class:`StreamItem` each."""

    def __init__(self, name="stream_seq", payloads=()):
        super().__init__(name)
        self.payloads = list(payloads)

    async def body(self):
        for index, data in enumerate(self.payloads):
            item = StreamItem(f"{self.get_name()}[{index}]", data, index=index)
            await self.start_item(item)
            await self.finish_item(item)


def random_payloads(rng, count, min_len, max_len, unit=4):
    """``count`` random byte strings of ``min_len``..``max_len`` bytes, each a
    whole number of ``unit`` bytes (4 for TLPs, 1 for frames)."""
    if min_len < unit or min_len % unit or max_len % unit or max_len < min_len:
        raise ValueError(f"lengths {min_len}..{max_len} must be multiples of {unit}, "
                         f"at least {unit}")
    return [rng.randbytes(rng.randrange(min_len, max_len + 1, unit)) for _ in range(count)]
