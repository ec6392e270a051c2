"""Address and ID translation with access control, for a GPU chassis shared
by several hosts (the reference for :mod:`tlpoe.rtl.translate`).

The device-side bridge terminates one link per host. On each link a
:class:`AccessTable` says what that host may reach, as a non-transparent
bridge does:

* **windows**: ranges of the host's address space (its view of the GPU's
  BARs) and where each lands in the chassis (the GPU's real BAR addresses);
* **functions**: the device functions assigned to this host, each with the
  Bus/Device/Function number the host sees it at and its real one;
* ``host_rid``: the Requester ID the host's requests carry (its root
  complex) and ``local_rid``: the ID they carry inside the chassis, unique
  per link, so that completions find their way back to the right link.

Two directions, each a pure function of the table and a TLP, returning the
translated TLP or ``None`` with a :class:`Reason`:

:func:`to_device` (network to PCIe: what the host sends)
    memory requests inside a window are moved into the chassis' address
    space, their Requester ID replaced by ``local_rid``; configuration
    requests to an assigned function are re-addressed to its real
    Bus/Device/Function; completions (of a device's DMA reads of host
    memory) pass if their Requester ID is an assigned function as the host
    knows it (:func:`to_host` gave the device's requests that ID), and get
    the function's real ID back. Anything
    else is denied: a memory request outside every window, or whose
    translation would change its header format (a 32-bit address moved at
    or above 4 GiB, or a 64-bit one below), a configuration request to a
    function not assigned, I/O requests and messages.
:func:`to_host` (PCIe to network: what the chassis sends to this host)
    completions of the host's requests (Requester ID ``local_rid``) get
    ``host_rid`` back and the Completer ID the host knows; requests from an
    assigned function (DMA, MSI-X) pass with the Requester ID the host
    knows. Anything else is denied.

A denied TLP is never delivered; the RTL counts it by reason.
"""

from dataclasses import dataclass, replace
from enum import IntEnum

from .tlp import PcieId, Tlp, TlpType

__all__ = ["Reason", "Window", "Function", "AccessTable", "to_device", "to_host", "route",
           "MIN_WINDOW"]

#: Smallest window: one 4 KiB page (BARs are at least that in practice).
MIN_WINDOW = 4096


class Reason(IntEnum):
    """Why a TLP was denied (the RTL's counter indices); FORWARDED when not."""
    FORWARDED = 0
    ADDRESS = 1       #: a memory request outside every window (or changing format)
    FUNCTION = 2      #: a configuration request or completion to/from a function not assigned
    REQUESTER = 3     #: a completion or request whose Requester ID is not this link's
    TYPE = 4          #: a type never carried: I/O requests, messages


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


@dataclass(frozen=True)
class Function:
    """A device function assigned to the host: ``host_id`` is where the host
    sees it, ``device_id`` where it is in the chassis (16-bit Bus/Device/Function)."""
    host_id: int
    device_id: int


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


def _request_bytes(tlp):
    """Bytes a memory request covers (atomics: their operand size)."""
    return 4 * tlp.length


def to_device(table, tlp):
    """``(translated TLP or None, Reason)`` for a TLP from the host."""
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
        return replace(tlp, dest_id=PcieId.from_int(function.device_id),
                       requester_id=PcieId.from_int(table.local_rid)), Reason.FORWARDED
    if t.is_completion:
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
