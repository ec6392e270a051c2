"""Transactions: a byte string on a stream, with where and when it was seen."""

from pyuvm import uvm_sequence_item

__all__ = ["StreamItem", "hex_preview"]


def hex_preview(data, limit=16):
    shown = data[:limit].hex(" ")
    return shown + (f" ... (+{len(data) - limit} bytes)" if len(data) > limit else "")


class StreamItem(uvm_sequence_item):
    """One packet (a TLP or a frame) as bytes.

    ``meta`` holds whatever the producer knows: a monitor adds
    ``first_cycle``, ``last_cycle`` and ``beats``; a sequence may add its own
    keys (e.g. ``index``, ``kind``). Two items are equal when their bytes are.
    """

    def __init__(self, name="stream_item", data=b"", **meta):
        super().__init__(name)
        self.data = bytes(data)
        self.meta = meta

    def __eq__(self, other):
        return isinstance(other, StreamItem) and self.data == other.data

    __hash__ = None

    def __len__(self):
        return len(self.data)

    def __str__(self):
        extra = "".join(f" {k}={v}" for k, v in self.meta.items())
        return f"{self.get_name()}: {len(self.data)} bytes [{hex_preview(self.data)}]{extra}"
