"""The pool manager: assigns the GPUs of a chassis to hosts at run time and
programs the device-side bridge's translation tables to match.

The chassis has GPUs (each a PCIe function with memory BARs at fixed
addresses in the chassis) and one link per host. Assigning a GPU to a host:

* gives the GPU a place in that host's view: a Bus/Device/Function number
  (``host_bdf``) and, for each BAR, an address range in the host's
  aperture for remote GPUs, aligned to the BAR's size;
* writes the link's table (:class:`~tlpoe.models.translate.AccessTable`):
  one window per BAR, one function entry with the host's view of its BAR
  registers (their sizes and flags, and the host addresses chosen here, as
  the shadows' initial values), through a *writer* (the RTL's table ports
  in a testbench, :class:`CsrWriter` through the device fabric's CSRs, or
  :class:`ModelWriter`, which keeps the tables as the translation model
  uses them; :class:`TeeWriter` writes to several).

The host must place each BAR where the pool did, since the windows are
fixed by the pool: its driver's resource assignment is given the link's
apertures (:meth:`HostLink.resources`) and, placing BARs in the same way
(each at the lowest address of its aperture aligned to its size, 64-bit
prefetchable BARs in the 64-bit aperture, the rest in the 32-bit one), it
picks the same addresses as long as it places the link's GPUs in the order
the pool assigned them. A host that programs a BAR elsewhere reads its own
value back, but its accesses there fall outside every window: reads are
answered with Unsupported Request, writes dropped.

Releasing a GPU clears those entries first (``valid`` 0), so from the
moment :meth:`PoolManager.release` returns, nothing of that host reaches
the GPU. A GPU is assigned to at most one host at a time.
"""

from dataclasses import dataclass, field

from ..models.translate import AccessTable, Function, VirtualBar, Window

__all__ = ["Bar", "Gpu", "HostLink", "Assignment", "PoolError", "ModelWriter", "CsrWriter",
           "TeeWriter", "PoolManager"]


class PoolError(ValueError):
    """A request the pool cannot carry out (the message says why)."""


@dataclass(frozen=True)
class Bar:
    """A memory BAR of a GPU: ``index`` (its register, 0..5: offset 0x10 +
    4 * index; a 64-bit BAR also takes the next one), its chassis address
    and size, whether it is 64-bit and prefetchable (both default to
    whether the chassis placed it above 4 GiB)."""
    index: int
    device_base: int
    size: int
    bits64: bool = None
    prefetchable: bool = None

    def __post_init__(self):
        for name in ("bits64", "prefetchable"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, self.device_base >= 1 << 32)

    @property
    def high(self):
        """Whether a host places it above 4 GiB (64-bit and prefetchable)."""
        return self.bits64 and self.prefetchable


@dataclass(frozen=True)
class Gpu:
    """A GPU in the chassis: ``name``, its Bus/Device/Function (16 bits) and BARs."""
    name: str
    device_id: int
    bars: tuple


@dataclass(frozen=True)
class HostLink:
    """One host's link into the chassis.

    ``aperture``: ``(base, size)`` of the host's address space set aside for
    remote GPUs' BARs (the host-side bridge's window); ``aperture64`` the
    same above 4 GiB, for 64-bit BARs above it; ``host_bus``: the bus
    number on which the host sees its remote GPUs (device numbers 0..31
    given out in order); ``host_rid`` its root complex's Requester ID;
    ``local_rid`` the ID its requests carry in the chassis (unique per
    link); ``windows`` and ``functions``: the table's sizes (the RTL's
    ``Translator`` parameters)."""
    name: str
    index: int
    host_rid: int
    local_rid: int
    aperture: tuple
    aperture64: tuple
    host_bus: int
    windows: int = 4
    functions: int = 4

    def resources(self):
        """The host driver's resource-assignment parameters
        (:func:`~tlpoe.models.host.assign_resources`) that make it place
        BARs where the pool does: the bases of the link's apertures."""
        return dict(mem32_base=self.aperture[0], pref_base=self.aperture64[0])


@dataclass
class Assignment:
    """Where a GPU appears to its host: ``host_bdf`` and the host address of
    each BAR (``{index: host_base}``), with the table entries it uses and
    the function entry written (``function``, its BAR shadows included)."""
    gpu: Gpu
    link: HostLink
    host_bdf: int
    bar_bases: dict
    window_slots: list = field(default_factory=list)
    function_slot: int = 0
    function: Function = None


class ModelWriter:
    """A writer that keeps each link's table as the translation model reads
    it (``tables[link_index]``: an :class:`AccessTable`), entry by entry as
    the RTL holds it."""

    def __init__(self):
        self.entries = {}          # link index -> {"windows": [...], "functions": [...]}
        self.ids = {}
        self.writes = 0

    def write_ids(self, link, host_rid, local_rid):
        self.ids[link.index] = (host_rid, local_rid)
        self.writes += 1

    def _slots(self, link):
        return self.entries.setdefault(link.index, {"windows": [None] * link.windows,
                                                    "functions": [None] * link.functions})

    def write_window(self, link, slot, window):
        """``window`` (a :class:`Window`) into ``slot``, or None to clear it."""
        self._slots(link)["windows"][slot] = window
        self.writes += 1

    def write_function(self, link, slot, function):
        """``function`` (a :class:`Function`, its BAR shadows' initial values
        and masks with it) into ``slot``, or None to clear it. A writer for
        the RTL writes the shadows before the entry's ``valid``."""
        self._slots(link)["functions"][slot] = function
        self.writes += 1

    def table(self, link):
        host_rid, local_rid = self.ids[link.index]
        slots = self._slots(link)
        return AccessTable(host_rid, local_rid,
                           windows=tuple(w for w in slots["windows"] if w is not None),
                           functions=tuple(f for f in slots["functions"] if f is not None))


class CsrWriter:
    """A writer through the device fabric's CSRs (``rtl/csr/fabric.rdl``):
    each call becomes 32-bit register writes ``bus.write(address, value)``
    (``bus``: anything with that method; a testbench's AXI4-Lite master, a
    host driver's MMIO), in order. Addresses and field positions come from
    ``regmap`` (:func:`tlpoe.rtl.csr.regmap.load` of ``"fabric"``), never
    from numbers written here.

    An entry: ``TBL_LINK``, the entry's registers, then its ``COMMIT``; a
    64-bit register low word first. ``writes`` counts register writes."""

    def __init__(self, bus, regmap):
        self.bus, self.regmap = bus, regmap
        self.writes = 0

    def _put(self, name, **fields):
        reg = self.regmap[name]
        value = reg.encode(**fields)
        for k in range(reg.words):
            self.bus.write(reg.address + 4 * k, (value >> 32 * k) & 0xFFFF_FFFF)
            self.writes += 1

    def write_ids(self, link, host_rid, local_rid):
        self._put(f"link[{link.index}].RID", host_rid=host_rid, local_rid=local_rid)

    def write_window(self, link, slot, window):
        self._put("TBL_LINK", tbl_link=link.index)
        if window is not None:
            self._put("win.HOST_BASE", host_base=window.host_base)
            self._put("win.DEVICE_BASE", device_base=window.device_base)
        size_log2 = window.size.bit_length() - 1 if window else 12
        self._put("win.ENTRY", index=slot, valid=int(window is not None), size_log2=size_log2)
        self._put("win.COMMIT", we=1)

    def write_function(self, link, slot, function):
        self._put("TBL_LINK", tbl_link=link.index)
        self._put("fn.ENTRY", index=slot, valid=0)
        if function is not None:
            # a function entry's BAR shadows (where the RDL has them), before its valid
            shadows = any(getattr(function, "bar_values", ())) or any(
                getattr(function, "bar_masks", ()))
            if shadows and "fn_bar_we" not in self.regmap.ports:
                raise PoolError(f"{self.regmap.name}: the function entry has BAR shadows "
                                "but the CSR description has no fn.BAR_* registers")
            if "fn_bar_we" in self.regmap.ports and hasattr(function, "bar_values"):
                for bar, (value, mask) in enumerate(zip(function.bar_values,
                                                         function.bar_masks)):
                    self._put("fn.BAR_INDEX", bar_index=bar)
                    self._put("fn.BAR_VALUE", bar_value=value)
                    self._put("fn.BAR_MASK", bar_mask=mask)
                    self._put("fn.BAR_COMMIT", bar_we=1)
            self._put("fn.IDS", host_id=function.host_id, device_id=function.device_id)
            self._put("fn.ENTRY", index=slot, valid=1)
        self._put("fn.COMMIT", we=1)


class TeeWriter:
    """A writer that passes every call to each of ``writers`` in turn."""

    def __init__(self, *writers):
        self.writers = writers

    def write_ids(self, link, host_rid, local_rid):
        for w in self.writers:
            w.write_ids(link, host_rid, local_rid)

    def write_window(self, link, slot, window):
        for w in self.writers:
            w.write_window(link, slot, window)

    def write_function(self, link, slot, function):
        for w in self.writers:
            w.write_function(link, slot, function)


class PoolManager:
    """Assigns and releases ``gpus`` across ``links`` through ``writer``
    (anything with ``write_ids``, ``write_window`` and ``write_function``
    as :class:`ModelWriter` has them)."""

    def __init__(self, gpus, links, writer):
        self.gpus = {g.name: g for g in gpus}
        self.links = {link.name: link for link in links}
        if len(self.gpus) != len(gpus) or len(self.links) != len(links):
            raise PoolError("GPU and link names must be unique")
        if len({link.local_rid for link in links}) != len(links):
            raise PoolError("each link needs its own local_rid (completions are routed by it)")
        self.writer = writer
        self.assignments = {}      # gpu name -> Assignment
        for link in links:
            writer.write_ids(link, link.host_rid, link.local_rid)

    def owner(self, gpu_name):
        """The link name a GPU is assigned to, or None."""
        a = self.assignments.get(gpu_name)
        return None if a is None else a.link.name

    def _allocate(self, link, size, high):
        """The lowest address in the link's aperture, aligned to ``size``,
        that no BAR of its current assignments overlaps."""
        base, span = link.aperture64 if high else link.aperture
        taken = sorted((b, b + a_bar.size) for a in self.assignments.values() if a.link is link
                       for a_bar in a.gpu.bars
                       for b in [a.bar_bases.get(a_bar.index)] if b is not None)
        candidate = -(-base // size) * size
        for lo, hi in taken:
            if candidate + size <= lo:
                break
            if hi > candidate:
                candidate = -(-hi // size) * size
        if candidate + size > base + span:
            raise PoolError(f"link {link.name}: no room for a {size:#x}-byte BAR in its "
                            f"{'64-bit ' if high else ''}aperture")
        return candidate

    def assign(self, gpu_name, link_name):
        """Give GPU ``gpu_name`` to the host on link ``link_name``; returns
        its :class:`Assignment`. Raises :class:`PoolError` if the GPU is
        taken, a name is unknown, or the link's table or aperture is full."""
        if gpu_name not in self.gpus:
            raise PoolError(f"unknown GPU {gpu_name!r}; known: {sorted(self.gpus)}")
        if link_name not in self.links:
            raise PoolError(f"unknown link {link_name!r}; known: {sorted(self.links)}")
        if gpu_name in self.assignments:
            raise PoolError(f"GPU {gpu_name} is assigned to {self.owner(gpu_name)}; "
                            f"release it first")
        gpu, link = self.gpus[gpu_name], self.links[link_name]
        mine = [a for a in self.assignments.values() if a.link is link]
        used_windows = {s for a in mine for s in a.window_slots}
        free_windows = [s for s in range(link.windows) if s not in used_windows]
        free_functions = [s for s in range(link.functions)
                          if s not in {a.function_slot for a in mine}]
        if len(free_windows) < len(gpu.bars) or not free_functions:
            raise PoolError(f"link {link.name}: its table has no room for {gpu.name} "
                            f"({len(gpu.bars)} windows and a function needed)")
        devices = {a.host_bdf & 0xFF for a in mine}
        device = next(d for d in range(32) if (d << 3) not in devices)
        assignment = Assignment(gpu, link, host_bdf=link.host_bus << 8 | device << 3,
                                bar_bases={}, window_slots=free_windows[:len(gpu.bars)],
                                function_slot=free_functions[0])
        windows = []
        self.assignments[gpu_name] = assignment           # later BARs avoid earlier ones
        try:
            for bar in gpu.bars:
                host_base = self._allocate(link, bar.size, bar.high)
                try:
                    windows.append(Window(host_base=host_base, size=bar.size,
                                          device_base=bar.device_base))
                except ValueError as err:
                    raise PoolError(f"{gpu.name} BAR{bar.index}: {err}") from None
                assignment.bar_bases[bar.index] = host_base
            try:
                assignment.function = Function.with_bars(
                    assignment.host_bdf, gpu.device_id,
                    [VirtualBar(bar.index, bar.size, assignment.bar_bases[bar.index],
                                bar.bits64, bar.prefetchable) for bar in gpu.bars])
            except ValueError as err:
                raise PoolError(f"{gpu.name}: {err}") from None
        except PoolError:
            del self.assignments[gpu_name]                # nothing written yet
            raise
        # the function entry last: nothing reaches the GPU before its windows are in
        for slot, window in zip(assignment.window_slots, windows):
            self.writer.write_window(link, slot, window)
        self.writer.write_function(link, assignment.function_slot, assignment.function)
        return assignment

    def release(self, gpu_name):
        """Take GPU ``gpu_name`` back from its host: its function entry and
        windows are cleared before this returns."""
        if gpu_name not in self.assignments:
            raise PoolError(f"GPU {gpu_name} is not assigned")
        a = self.assignments.pop(gpu_name)
        self.writer.write_function(a.link, a.function_slot, None)
        for slot in a.window_slots:
            self.writer.write_window(a.link, slot, None)
