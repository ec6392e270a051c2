"""Address and ID translation with access control, for a GPU chassis shared
by several hosts (the reference for :mod:`tlpoe.rtl.fabric.translate`).

The device-side bridge terminates one link per host. On each link a
:class:`AccessTable` says what that host may reach, as a non-transparent
bridge does:

* **windows**: ranges of the host's address space (its view of the GPU's
  BARs) and where each lands in the chassis (the GPU's real BAR addresses);
* **functions**: the device functions assigned to this host, each with the
  Bus/Device/Function number the host sees it at, its real one, and the
  host's view of its six BAR registers (:func:`virtual_bars`);
* ``host_rid``: the Requester ID the host's requests carry (its root
  complex) and ``local_rid``: the ID they carry inside the chassis, unique
  per link, so that completions find their way back to the right link.

Two pure verdicts, each a function of the table and a TLP, returning the
translated TLP or ``None`` with a :class:`Reason`:

:func:`to_device` (network to PCIe: what the host sends)
    memory requests inside a window are moved into the chassis' address
    space, their Requester ID replaced by ``local_rid``; configuration
    requests to an assigned function become Type 1 requests (the chassis'
    PCIe switch turns them into Type 0 at the port whose secondary bus is
    the function's) to its real Bus/Device/Function, except those to its
    BAR and Expansion ROM registers, which the bridge answers itself
    (``Reason.LOCAL``); completions (of a device's DMA reads of host
    memory) pass if their Requester ID is an assigned function's host ID,
    which becomes its device ID. Anything else is denied: a memory request
    outside every window, or whose translation would change its header
    format (a 32-bit address moved at or above 4 GiB, or a 64-bit one
    below), a configuration request to a function not assigned, I/O
    requests and messages.
:func:`to_host` (PCIe to network: what the chassis sends to this host)
    completions of the host's requests (Requester ID ``local_rid``) get
    ``host_rid`` back and the Completer ID the host knows; requests from an
    assigned function (DMA, MSI-X) pass with the Requester ID the host
    knows. Anything else is denied.

:class:`LinkTranslator` is one link's translator with its state: the BAR
shadows the host reads and writes, the completions the bridge makes
itself (answers to BAR accesses; Unsupported Request for every denied
non-posted request, so the host never waits for a completion that will not
come) and the counters, named as the RTL's.

A denied TLP is never delivered to the other side; it is counted by reason.
"""

from dataclasses import dataclass, replace
from enum import IntEnum
from typing import NamedTuple

from .tlp import CplStatus, OrderingClass, PcieId, Tlp, TlpType

__all__ = ["Reason", "Window", "Function", "VirtualBar", "virtual_bars", "AccessTable",
           "to_device", "to_host", "route", "LinkTranslator", "is_virtual_register",
           "MIN_WINDOW", "BAR_REGISTERS", "ROM_REGISTER", "COUNTERS"]

#: Smallest window: one 4 KiB page (BARs are at least that in practice).
MIN_WINDOW = 4096
#: The DW numbers of the six BAR registers (configuration offsets 0x10..0x24).
BAR_REGISTERS = range(4, 10)
#: The DW number of the Expansion ROM BAR (offset 0x30).
ROM_REGISTER = 12
#: The counters of one link, as the RTL names them (``*_denied`` are lists
#: indexed by :class:`Reason`; their FORWARDED and LOCAL entries stay 0).
COUNTERS = ("to_device_forwarded", "to_device_denied", "to_device_local",
            "to_device_unsupported", "to_host_forwarded", "to_host_denied")


class Reason(IntEnum):
    """What became of a TLP (the RTL's counter indices): FORWARDED, LOCAL,
    or why it was denied."""
    FORWARDED = 0
    ADDRESS = 1       #: a memory request outside every window (or changing format)
    FUNCTION = 2      #: a configuration request or completion to/from a function not assigned
    REQUESTER = 3     #: a completion or request whose Requester ID is not this link's
    TYPE = 4          #: a type never carried: I/O requests, messages
    LOCAL = 5         #: not a denial: a configuration access the bridge answers itself


@dataclass(frozen=True)
class Window:
    """``size`` bytes (a power of two, at least 4 KiB) of the host's address
    space from ``host_base`` (aligned to ``size``) land at ``device_base``
    (aligned likewise). Neither range crosses 4 GiB, and both lie on the
    same side of it: translation never changes a TLP's header format."""
    host_base: int
    size: int
    device_base: int

    def __post_init__(self):
        if self.size < MIN_WINDOW or self.size & (self.size - 1):
            raise ValueError(f"window size must be a power of two of at least {MIN_WINDOW}, "
                             f"not {self.size:#x}")
        for name in ("host_base", "device_base"):
            base = getattr(self, name)
            if base % self.size or not 0 <= base < 1 << 64:
                raise ValueError(f"window {name} {base:#x} must be a 64-bit address "
                                 f"aligned to its size {self.size:#x}")
        sides = {(base >= 1 << 32, base + self.size - 1 >= 1 << 32)
                 for base in (self.host_base, self.device_base)}
        if len(sides) != 1 or any(lo != hi for lo, hi in sides):
            raise ValueError("window host_base and device_base must both lie below 4 GiB or "
                             "both above it, neither range crossing it")

    def translate(self, address, nbytes):
        """The device address of ``nbytes`` at host ``address``, or None
        when they are not all inside the window."""
        if self.host_base <= address and address + nbytes <= self.host_base + self.size:
            return address - self.host_base + self.device_base
        return None


class VirtualBar(NamedTuple):
    """A memory BAR as the host sees it: register ``index`` (0..5; a 64-bit
    BAR also takes ``index + 1``), ``size`` (a power of two, at least 128
    bytes) and the address the host finds in it before it writes any."""
    index: int
    size: int
    host_base: int
    bits64: bool = False
    prefetchable: bool = False


def virtual_bars(bars):
    """``(values, masks)``: the initial value and the writable bits of each of
    the six BAR registers of a function with ``bars`` (:class:`VirtualBar` s);
    registers of no BAR are 0 and read-only (the host sees no BAR there)."""
    values, masks, owner = [0] * 6, [0] * 6, [None] * 6
    for bar in bars:
        bar = VirtualBar(*bar)
        if bar.size < 128 or bar.size & (bar.size - 1):
            raise ValueError(f"BAR{bar.index}: size {bar.size:#x} must be a power of two "
                             f"of at least 128 bytes")
        top = (1 << 64) if bar.bits64 else (1 << 32)
        if bar.host_base % bar.size or not 0 <= bar.host_base < top:
            raise ValueError(f"BAR{bar.index}: host_base {bar.host_base:#x} must be aligned to "
                             f"its size {bar.size:#x} and fit {64 if bar.bits64 else 32} bits")
        taken = [bar.index] + ([bar.index + 1] if bar.bits64 else [])
        if not all(0 <= i < 6 and owner[i] is None for i in taken):
            raise ValueError(f"BAR{bar.index}: registers {taken} are out of 0..5 or taken")
        mask = ~(bar.size - 1) & (top - 1)
        flags = (0b100 if bar.bits64 else 0) | (0x8 if bar.prefetchable else 0)
        values[bar.index] = flags | (bar.host_base & 0xFFFF_FFF0)
        masks[bar.index] = mask & 0xFFFF_FFF0
        if bar.bits64:
            values[bar.index + 1], masks[bar.index + 1] = bar.host_base >> 32, mask >> 32
        for i in taken:
            owner[i] = bar.index
    return tuple(values), tuple(masks)


@dataclass(frozen=True)
class Function:
    """A device function assigned to the host: ``host_id`` is where the host
    sees it, ``device_id`` where it is in the chassis (16-bit
    Bus/Device/Function); ``bar_values`` and ``bar_masks`` the host's view of
    its six BAR registers: the value it reads before it writes any, and the
    bits its writes change (:func:`virtual_bars`, :meth:`with_bars`)."""
    host_id: int
    device_id: int
    bar_values: tuple = (0,) * 6
    bar_masks: tuple = (0,) * 6

    def __post_init__(self):
        for name in ("bar_values", "bar_masks"):
            value = tuple(getattr(self, name))
            if len(value) != 6 or not all(0 <= v < 1 << 32 for v in value):
                raise ValueError(f"{name} must be six 32-bit register values, not {value!r}")
            object.__setattr__(self, name, value)

    @classmethod
    def with_bars(cls, host_id, device_id, bars):
        """The function with BAR registers for ``bars`` (:class:`VirtualBar` s)."""
        values, masks = virtual_bars(bars)
        return cls(host_id, device_id, values, masks)


@dataclass(frozen=True)
class AccessTable:
    """What one host may reach (see the module doc)."""
    host_rid: int
    local_rid: int
    windows: tuple = ()
    functions: tuple = ()

    def function_by_host(self, host_id):
        return next((f for f in self.functions if f.host_id == host_id), None)

    def function_by_device(self, device_id):
        return next((f for f in self.functions if f.device_id == device_id), None)


def is_virtual_register(register):
    """Whether configuration DW ``register`` is one the bridge answers itself:
    the six BARs and the Expansion ROM BAR."""
    return register in BAR_REGISTERS or register == ROM_REGISTER


def _request_bytes(tlp):
    """Bytes a memory request covers (atomics: their operand size)."""
    return 4 * tlp.length


_TYPE1 = {TlpType.CfgRd0: TlpType.CfgRd1, TlpType.CfgRd1: TlpType.CfgRd1,
          TlpType.CfgWr0: TlpType.CfgWr1, TlpType.CfgWr1: TlpType.CfgWr1}


def to_device(table, tlp):
    """``(translated TLP or None, Reason)`` for a TLP from the host. A
    configuration access to an assigned function's BAR or Expansion ROM
    register is ``(None, Reason.LOCAL)``: :class:`LinkTranslator` answers it."""
    t = tlp.type
    if t.is_memory:
        for window in table.windows:
            address = window.translate(tlp.address, _request_bytes(tlp))
            if address is not None:
                if (address >= 1 << 32) != bool(tlp.addr64):
                    return None, Reason.ADDRESS
                return replace(tlp, address=address,
                               requester_id=PcieId.from_int(table.local_rid)), Reason.FORWARDED
        return None, Reason.ADDRESS
    if t.is_config:
        function = table.function_by_host(int(tlp.dest_id))
        if function is None:
            return None, Reason.FUNCTION
        if is_virtual_register(tlp.register):
            return None, Reason.LOCAL
        return replace(tlp, type=_TYPE1[t], dest_id=PcieId.from_int(function.device_id),
                       requester_id=PcieId.from_int(table.local_rid)), Reason.FORWARDED
    if t.is_completion:
        # of a device's read of host memory: its Requester ID is the one the
        # host knows (to_host gave it); the chassis routes it by the real one
        function = table.function_by_host(int(tlp.requester_id))
        if function is None:
            return None, Reason.REQUESTER
        return replace(tlp, requester_id=PcieId.from_int(function.device_id)), Reason.FORWARDED
    return None, Reason.TYPE


def to_host(table, tlp):
    """``(translated TLP or None, Reason)`` for a TLP from the chassis to this host."""
    t = tlp.type
    if t.is_completion:
        if int(tlp.requester_id) != table.local_rid:
            return None, Reason.REQUESTER
        function = table.function_by_device(int(tlp.completer_id))
        if function is None:
            return None, Reason.FUNCTION
        return replace(tlp, requester_id=PcieId.from_int(table.host_rid),
                       completer_id=PcieId.from_int(function.host_id)), Reason.FORWARDED
    if t.is_memory:
        function = table.function_by_device(int(tlp.requester_id))
        if function is None:
            return None, Reason.REQUESTER
        return replace(tlp, requester_id=PcieId.from_int(function.host_id)), Reason.FORWARDED
    return None, Reason.TYPE


def route(tables, tlp):
    """The index of the link (its table in ``tables``) a TLP from the chassis
    goes to, or None (dropped, counted as unrouted): a completion goes to
    the link whose ``local_rid`` is its Requester ID; a memory request to
    the link that has its requester among its functions; the first such
    link wins. The link's :func:`to_host` then judges it."""
    requester = int(tlp.requester_id)
    for index, table in enumerate(tables):
        if tlp.type.is_completion and requester == table.local_rid:
            return index
        if tlp.type.is_memory and table.function_by_device(requester) is not None:
            return index
    return None


def _byte_mask(first_be):
    return sum(0xFF << 8 * i for i in range(4) if first_be >> i & 1)


class LinkTranslator:
    """One host link's translator: :func:`to_device` and :func:`to_host`
    with the state the RTL keeps.

    * :meth:`from_host` returns ``(TLP to the chassis or None, completion
      to the host or None, Reason)``. The bridge completes, itself:

      - configuration reads and writes of an assigned function's BAR
        registers (0x10..0x24): a read gets its shadow (CplD), a write
        changes the shadow's writable bits in the enabled bytes (Cpl);
        the Expansion ROM BAR (0x30) reads as 0 and takes no writes (Cpl
        all the same: a configuration write is non-posted). The Completer
        ID is the function's host ID; nothing reaches the chassis;
      - every denied non-posted request (memory read, AtomicOp, I/O,
        configuration request to a function not assigned: how the host's
        scan sees an empty slot) with Unsupported Request. The Completer ID
        is ``host_rid``: the host's root port answers for what lies beyond
        its link, as a root port does for a request no device claims.

      Requester ID, tag, TC and Attr of a completion are the request's;
      Byte Count and Lower Address follow the completion rules
      (:meth:`~tlpoe.models.tlp.Tlp.completion_for`). Denied posted
      requests and denied completions are dropped.
    * :meth:`from_chassis` returns ``(TLP to the host or None, Reason)``.
    * ``counters``: :data:`COUNTERS`, as the RTL's ports.
    * ``table`` can be replaced (the pool manager reassigns): a function
      entry that is unchanged keeps its shadows (what the host wrote); a new
      or changed entry starts from its ``bar_values``. The RTL does the
      same: a function slot's shadows are loaded when the slot is written.
    """

    def __init__(self, table):
        self.counters = {name: [0] * len(Reason) if name.endswith("_denied") else 0
                         for name in COUNTERS}
        self.shadows = {}
        self._table = None
        self.table = table

    @property
    def table(self):
        return self._table

    @table.setter
    def table(self, table):
        old = self.shadows
        self.shadows = {f: old[f] if f in old else list(f.bar_values) for f in table.functions}
        self._table = table

    def bars(self, host_id):
        """The six BAR registers of function ``host_id`` as the host reads them now."""
        return tuple(self.shadows[self._table.function_by_host(host_id)])

    def from_host(self, tlp):
        out, why = to_device(self._table, tlp)
        counters = self.counters
        if why is Reason.FORWARDED:
            counters["to_device_forwarded"] += 1
            return out, None, why
        if why is Reason.LOCAL:
            counters["to_device_local"] += 1
            return None, self._answer(tlp), why
        counters["to_device_denied"][why] += 1
        if tlp.ordering_class is OrderingClass.NON_POSTED:
            counters["to_device_unsupported"] += 1
            return None, Tlp.completion_for(tlp, completer_id=self._table.host_rid,
                                            status=CplStatus.UR), why
        return None, None, why

    def from_chassis(self, tlp):
        out, why = to_host(self._table, tlp)
        if why is Reason.FORWARDED:
            self.counters["to_host_forwarded"] += 1
        else:
            self.counters["to_host_denied"][why] += 1
        return out, why

    def _answer(self, tlp):
        function = self._table.function_by_host(int(tlp.dest_id))
        shadow = self.shadows[function]
        bar = tlp.register - BAR_REGISTERS.start if tlp.register in BAR_REGISTERS else None
        if tlp.type.has_data:
            if bar is not None:
                writable = function.bar_masks[bar] & _byte_mask(tlp.first_be)
                value = int.from_bytes(tlp.data[:4], "little")
                shadow[bar] = shadow[bar] & ~writable | value & writable
            return Tlp.completion_for(tlp, completer_id=tlp.dest_id)
        value = 0 if bar is None else shadow[bar]
        return Tlp.completion_for(tlp, completer_id=tlp.dest_id,
                                  data=value.to_bytes(4, "little"))
