"""One view of a PCIe TLP header as it sits in a beat, for every block that
reads one (the class queues, the credit return, the ordering checker, the
translator, the packer).

Lane order (:mod:`tlpoe.rtl.streams`): header byte ``i`` is bits
``8*i+7 : 8*i`` of the vector, byte 0 (Fmt, Type) first. Every field is
read through :func:`~tlpoe.rtl.wirefmt.unpack_field` from the header
layouts of :mod:`tlpoe.models.tlp` (``HEADER_LAYOUTS``, the one definition
the models pack and unpack with): no bit position is written here. A field
is a slice or concatenation of the vector: reading one adds no logic; what
is computed from the fields (the ordering class, data credits) is written
once, here.
"""

from amaranth.hdl import Cat, Const, Mux, Value

from ..models.tlp import HEADER_LAYOUTS
from .wirefmt import be_field, unpack_field

__all__ = ["P", "NP", "CPL", "CLASSES", "TlpHeader", "be_field"]

#: Class numbers on the wires (the order of the bridge header's credit fields).
P, NP, CPL = 0, 1, 2
CLASSES = ("p", "np", "cpl")

_MEM3, _MEM4, _CFG, _CPL = (HEADER_LAYOUTS[k] for k in ("mem3", "mem4", "cfg", "cpl"))


class TlpHeader:
    """The fields of the TLP header in ``value`` (a vector in lane order, as
    long as the fields read need: DW 0 is bits 31:0, DW 1 bits 63:32, DW 2
    bits 95:64, DW 3 bits 127:96).

    DW 0 (every layout's): ``fmt``, ``type``, ``has_data`` (Fmt[1]),
    ``four_dw`` (Fmt[0]), ``tc``, ``td`` (a digest follows), ``ro``
    (Attr[1], Relaxed Ordering), ``ido`` (Attr[2], ID-Based Ordering),
    ``length`` (Length[9:0], 0 means 1024), ``length_dws`` (as a number);
    ``cls``, the ordering class, and predicates of the type. A request's
    (``mem3``): ``requester_id``, ``request_tag``, ``first_be``,
    ``last_be``, ``address`` (with ``four_dw``: ``mem4``'s). A
    completion's (``cpl``): ``completer_id``, ``byte_count``,
    ``completion_requester``, ``completion_tag``. A configuration
    request's (``cfg``): ``config_target``, ``config_register``. Tags are
    10 bits: Tag[7:0], then T8 and T9 from DW 0.
    """

    def __init__(self, value):
        self.value = Value.cast(value)

    def field(self, layout, name):
        """Field ``name`` of ``layout`` (one of ``HEADER_LAYOUTS``)."""
        return unpack_field(layout, name, self.value)

    def be(self, first, size):
        """Header bytes ``first ..`` as a big-endian value."""
        return be_field(self.value, first, size)

    # --- DW 0 ---------------------------------------------------------------------
    @property
    def type(self):
        return self.field(_MEM3, "type")

    @property
    def fmt(self):
        return self.field(_MEM3, "fmt")

    @property
    def four_dw(self):
        return self.fmt[0]

    @property
    def has_data(self):
        return self.fmt[1]

    @property
    def tc(self):
        return self.field(_MEM3, "tc")

    @property
    def td(self):
        return self.field(_MEM3, "td")

    @property
    def ido(self):
        return self.field(_MEM3, "attr2")

    @property
    def ro(self):
        return self.field(_MEM3, "attr")[1]

    @property
    def length(self):
        return self.field(_MEM3, "length")

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
        """T8 and T9."""
        return Cat(self.field(_MEM3, "t8"), self.field(_MEM3, "t9"))

    @property
    def is_completion(self):
        return self.type[1:5] == 0b0101

    @property
    def is_posted(self):
        """A memory write (Fmt with data, Type 00000) or a message (Type 10xxx)."""
        return ((self.type == 0) & self.has_data) | (self.type[3:5] == 0b10)

    @property
    def writes_io_or_config(self):
        """An I/O or Configuration Write (IOWr, CfgWr0, CfgWr1: Fmt 010b),
        whose completion may pass posted requests (D2b)."""
        return ((self.fmt == 0b010) &
                ((self.type == 0b00010) | (self.type == 0b00100) | (self.type == 0b00101)))

    @property
    def cls(self):
        """The ordering class: completions are Type 0101x, posted requests
        memory writes and messages, every other request is non-posted
        (reads, I/O, configuration, atomics)."""
        return Mux(self.is_completion, CPL, Mux(self.is_posted, P, NP))

    # --- a request's ----------------------------------------------------------------
    @property
    def requester_id(self):
        return self.field(_MEM3, "requester_id")

    @property
    def request_tag(self):
        return Cat(self.field(_MEM3, "tag"), self.tag_high)

    @property
    def first_be(self):
        return self.field(_MEM3, "first_be")

    @property
    def last_be(self):
        return self.field(_MEM3, "last_be")

    @property
    def address(self):
        """The address, its two low bits (the PH field) cleared: 64 bits."""
        return Mux(self.four_dw, Cat(Const(0, 2), self.field(_MEM4, "address")),
                   Cat(Const(0, 2), self.field(_MEM3, "address")))

    # --- a completion's ---------------------------------------------------------------
    @property
    def completer_id(self):
        return self.field(_CPL, "completer_id")

    @property
    def byte_count(self):
        return self.field(_CPL, "byte_count")

    @property
    def completion_requester(self):
        return self.field(_CPL, "requester_id")

    @property
    def completion_tag(self):
        return Cat(self.field(_CPL, "tag"), self.tag_high)

    # --- a configuration request's --------------------------------------------------
    @property
    def config_target(self):
        """The target's Bus, Device, Function."""
        return self.field(_CFG, "dest_id")

    @property
    def config_register(self):
        """Extended Register Number and Register Number: the DW index."""
        return self.field(_CFG, "register")
