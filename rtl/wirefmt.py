"""RTL view of the wire format: byte vectors assembled from, and fields read
out of, the layouts in :mod:`tlpoe.models.wire` (the one definition).

A "byte vector" is an Amaranth value whose byte ``i`` (``[8*i+7 : 8*i]``) is
byte ``i`` of the layout on the wire, matching the stream byte-lane order.
"""

from amaranth.hdl import Cat, Const

__all__ = ["pack_bytes", "unpack_field", "be_bytes", "be_field"]


def be_bytes(value, nbytes):
    """``value`` as ``nbytes`` big-endian bytes in stream lane order."""
    return Cat(*(value.as_unsigned()[8 * (nbytes - 1 - i):8 * (nbytes - i)]
                 if hasattr(value, "as_unsigned") else
                 Const((value >> (8 * (nbytes - 1 - i))) & 0xFF, 8)
                 for i in range(nbytes)))


def be_field(vector, first, size):
    """Bytes ``first .. first+size-1`` of byte vector ``vector`` as a big-endian value."""
    return Cat(*(vector[8 * (first + size - 1 - i):8 * (first + size - i)] for i in range(size)))


def pack_bytes(layout, **values):
    """Byte vector of ``layout`` with the given fields (Amaranth values or ints);
    fields not named are zero."""
    unknown = set(values) - {f.name for f in layout}
    if unknown:
        raise KeyError(f"{layout.name} has no field {sorted(unknown)}")
    # Each field's bits go to their byte of the layout: bit k of a field is
    # bit (shift + k) of its big-endian container word. Fields whose
    # containers overlap (a completion's Status in byte 6, its Byte Count in
    # bytes 6-7) share bytes bit by bit.
    bits = [[Const(0, 1)] * 8 for _ in range(layout.length)]
    for f in layout:
        value = values.get(f.name, 0)
        value = Const(value, f.width) if isinstance(value, int) else value.as_unsigned()[:f.width]
        for b in range(min(f.width, len(value))):
            pos = f.shift + b
            bits[f.offset + f.size - 1 - pos // 8][pos % 8] = value[b]
    return Cat(*(Cat(*byte) for byte in bits))


def unpack_field(layout, name, vector, base=0):
    """Field ``name`` of ``layout`` read from byte vector ``vector`` whose byte
    ``base`` is the layout's byte 0."""
    f = layout[name]
    first = base + f.offset
    word = Cat(*(vector[8 * (first + f.size - 1 - i):8 * (first + f.size - i)]
                 for i in range(f.size)))
    return word[f.shift:f.shift + f.width]
