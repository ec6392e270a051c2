"""One view of a PCIe TLP header as it sits in a beat, for every block that
reads one (the class queues, the credit return, the ordering checker, the
translator).

Lane order (:mod:`tlpoe.rtl.streams`): header byte ``i`` is bits
``8*i+7 : 8*i`` of the vector, byte 0 (Fmt, Type) first; multi-byte fields
are big-endian across those bytes, as PCIe sends them (PCIe Base
Specification, "Transaction Layer Protocol": the common header fields of
DW 0, the request header's Requester ID and Tag in DW 1, the completion
header's Completer ID, Byte Count, Requester ID and Tag in DWs 1 and 2).
The fields are plain Amaranth values (slices and concatenations of the
vector): reading one adds no logic.
"""

from amaranth.hdl import Cat, Mux, Value

__all__ = ["P", "NP", "CPL", "CLASSES", "TlpHeader", "be_field"]

#: Class numbers on the wires (the order of the bridge header's credit fields).
P, NP, CPL = 0, 1, 2
CLASSES = ("p", "np", "cpl")


def be_field(vector, first, size):
    """Bytes ``first .. first+size-1`` of byte vector ``vector`` as a big-endian value."""
    return Cat(*(vector[8 * (first + size - 1 - i):8 * (first + size - i)] for i in range(size)))


class TlpHeader:
    """The fields of the TLP header in ``value`` (a vector in lane order, as
    long as the fields read need: DW 0 is bits 31:0, DW 1 bits 63:32, DW 2
    bits 95:64, DW 3 bits 127:96).

    DW 0: ``fmt``, ``type``, ``has_data`` (Fmt[1]), ``four_dw`` (Fmt[0]),
    ``tc``, ``ro`` (Attr[1], Relaxed Ordering), ``ido`` (Attr[2],
    ID-Based Ordering), ``length`` (Length[9:0], 0 means 1024),
    ``length_dws`` (as a number); ``cls``, the ordering class, and
    predicates of the type. DW 1: ``requester_id`` (a request's),
    ``completer_id`` (a completion's), ``byte_count`` (a completion's
    Byte Count[11:0]), ``request_tag``, ``first_be``, ``last_be``. DW 2:
    ``completion_requester`` and ``completion_tag`` (a completion's),
    ``config_target`` (a configuration request's Bus/Device/Function). Tags
    are 10 bits: Tag[7:0], then T8 and T9 from DW 0.
    """

    def __init__(self, value):
        self.value = Value.cast(value)

    def byte(self, i):
        return self.value[8 * i:8 * (i + 1)]

    def be(self, first, size):
        """Header bytes ``first ..`` as a big-endian value."""
        return be_field(self.value, first, size)

    # --- DW 0 ---------------------------------------------------------------------
    @property
    def type(self):
        return self.value[0:5]

    @property
    def fmt(self):
        return self.value[5:8]

    @property
    def four_dw(self):
        return self.value[5]

    @property
    def has_data(self):
        return self.value[6]

    @property
    def tc(self):
        return self.value[12:15]

    @property
    def ido(self):
        return self.value[10]

    @property
    def ro(self):
        return self.value[21]

    @property
    def length(self):
        return Cat(self.value[24:32], self.value[16:18])

    @property
    def length_dws(self):
        """The payload length in DWs, 1..1024."""
        return Mux(self.length == 0, 1024, self.length)

    @property
    def data_credits(self):
        """The 16-byte data credits the TLP takes (0 without data)."""
        return Mux(self.has_data, (self.length_dws + 3) >> 2, 0)

    @property
    def tag_high(self):
        """T8 and T9 (byte 1 bits 3 and 7)."""
        return Cat(self.value[11], self.value[15])

    @property
    def is_completion(self):
        return self.type[1:5] == 0b0101

    @property
    def is_posted(self):
        """A memory write (Fmt with data, Type 00000) or a message (Type 10xxx)."""
        return ((self.type == 0) & self.has_data) | (self.type[3:5] == 0b10)

    @property
    def cls(self):
        """The ordering class: completions are Type 0101x, posted requests
        memory writes and messages, every other request is non-posted
        (reads, I/O, configuration, atomics)."""
        return Mux(self.is_completion, CPL, Mux(self.is_posted, P, NP))

    # --- DW 1 ---------------------------------------------------------------------
    @property
    def requester_id(self):
        return self.be(4, 2)

    completer_id = requester_id

    @property
    def request_tag(self):
        return Cat(self.byte(6), self.tag_high)

    @property
    def byte_count(self):
        return Cat(self.byte(7), self.value[48:52])

    @property
    def first_be(self):
        return self.value[56:60]

    @property
    def last_be(self):
        return self.value[60:64]

    # --- DW 2 ---------------------------------------------------------------------
    @property
    def completion_requester(self):
        return self.be(8, 2)

    #: The same bytes in a configuration request: the target's Bus, Device, Function.
    config_target = completion_requester

    @property
    def completion_tag(self):
        return Cat(self.byte(10), self.tag_high)
