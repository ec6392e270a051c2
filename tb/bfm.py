"""Bus functional models for tlpoe's streams: the only code that touches DUT signals.

A stream port ``x`` of an Amaranth component appears in Verilog as ``x__valid``,
``x__ready`` and one flat ``x__payload`` with ``data`` in the low bits, then
``keep``, then ``last`` (see :mod:`tlpoe.rtl.streams`). On a TLP stream a keep
bit enables one DW (4 bytes), on a frame stream one byte; valid lanes are
contiguous from lane 0 and only the ``last`` beat may be partial.

* :class:`StreamLayout` packs and unpacks the flat payload.
* :func:`tlp_to_beats`, :func:`frame_to_beats`, :func:`to_beats` and
  :func:`beats_to_bytes` convert between a byte string and beats; the latter
  checks the keep/last rules and raises :class:`StreamProtocolError`.
* :class:`StreamDriver` sends byte strings (or raw beats) honouring ``ready``,
  with seeded random gaps in ``valid``.
* :class:`StreamMonitor` reassembles accepted beats (``valid & ready``) into
  :class:`Packet` s, optionally driving ``ready`` with seeded random
  backpressure, and checks that a stalled beat stays valid and stable.

Each BFM runs one coroutine that wakes once per clock edge while it has work;
a driver with nothing to send sleeps on an event instead of ticking.
"""

import collections
import random
from typing import NamedTuple

import cocotb
from cocotb.clock import Clock
from cocotb.queue import Queue
from cocotb.triggers import Event, RisingEdge

__all__ = ["StreamProtocolError", "Beat", "Packet", "StreamLayout", "to_beats",
           "tlp_to_beats", "frame_to_beats", "beats_to_bytes", "StreamDriver",
           "StreamMonitor", "start_clock", "wait_cycles", "reset", "seeded_rng"]


class StreamProtocolError(AssertionError):
    """A stream broke the valid/ready/keep/last rules (a test failure)."""


class Beat(NamedTuple):
    data: int
    keep: int
    last: int


class Packet(NamedTuple):
    """A byte string seen on a stream; cycles count the monitor's clock edges."""
    data: bytes
    first_cycle: int
    last_cycle: int
    beats: int


class StreamLayout:
    """Field widths of a stream payload, in Verilog order: data, keep, last.

    ``keep`` has one bit per ``unit`` bytes of ``data`` (4 for TLP streams,
    1 for frame streams)."""

    def __init__(self, data, keep, last=1, name="stream"):
        if data % 8 or keep <= 0 or (data // 8) % keep:
            raise ValueError(f"{name}: data width {data} is not whole bytes split "
                             f"evenly over {keep} keep bits")
        if last != 1:
            raise ValueError(f"{name}: last must be 1 bit, not {last}")
        self.data_width, self.keep_width, self.name = data, keep, name
        self.beat_bytes = data // 8
        self.unit = self.beat_bytes // keep
        self.full_keep = (1 << keep) - 1
        self.width = data + keep + 1
        self._data_mask = (1 << data) - 1
        self._last_shift = data + keep

    @classmethod
    def tlp(cls, width):
        return cls(width, width // 32, name=f"tlp{width}")

    @classmethod
    def frame(cls, width):
        return cls(width, width // 8, name=f"frame{width}")

    def pack(self, beat):
        """A :class:`Beat`, a ``{"data", "keep", "last"}`` dict or an already
        packed int, as the flat payload int."""
        if isinstance(beat, int):
            if beat >> self.width:
                raise ValueError(f"{self.name}: payload {beat:#x} wider than {self.width} bits")
            return beat
        if isinstance(beat, dict):
            beat = Beat(beat["data"], beat["keep"], beat["last"])
        data, keep, last = beat
        if data >> self.data_width or keep >> self.keep_width or last >> 1:
            raise ValueError(f"{self.name}: beat field too wide: {beat}")
        return data | keep << self.data_width | last << self._last_shift

    def unpack(self, value):
        return Beat(value & self._data_mask, (value >> self.data_width) & self.full_keep,
                    (value >> self._last_shift) & 1)      # fields after `last` (a stamp) ignored

    def __repr__(self):
        return f"StreamLayout(data={self.data_width}, keep={self.keep_width}, last=1)"


def to_beats(payload, layout):
    """Split ``payload`` (bytes) into :class:`Beat` s of ``layout``."""
    payload = bytes(payload)
    n, step, unit = len(payload), layout.beat_bytes, layout.unit
    if n == 0 or n % unit:
        raise ValueError(f"{layout.name}: {n} bytes is not a positive whole number "
                         f"of {unit}-byte keep units")
    beats = []
    for offset in range(0, n, step):
        chunk = payload[offset:offset + step]
        units = len(chunk) // unit
        beats.append(Beat(int.from_bytes(chunk, "little"), (1 << units) - 1,
                          int(offset + step >= n)))
    return beats


def tlp_to_beats(payload, width):
    """TLP bytes (whole DWs) as beats of a ``width``-bit TLP stream (DW keep)."""
    return to_beats(payload, StreamLayout.tlp(width))


def frame_to_beats(payload, width):
    """Frame bytes as beats of a ``width``-bit frame stream (byte keep)."""
    return to_beats(payload, StreamLayout.frame(width))


async def put_frame(ctx, stream, frame, width):
    """amaranth.sim: drive ``frame`` (bytes) on frame stream ``stream`` of a
    ``width``-bit component, a beat per cycle as ``ready`` allows; ``valid``
    is low again when it returns."""
    for beat in frame_to_beats(frame, width):
        ctx.set(stream.payload, {"data": beat.data, "keep": beat.keep, "last": beat.last})
        ctx.set(stream.valid, 1)
        await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


def beats_to_bytes(beats, layout, where=""):
    """Join the beats of one packet back into bytes, checking that keep is
    non-empty and contiguous from lane 0, that only the final beat is partial
    and that ``last`` is set on the final beat only."""
    out = bytearray()
    final = len(beats) - 1
    if final < 0:
        raise StreamProtocolError(f"{layout.name}{where}: a packet with no beats")
    for i, beat in enumerate(beats):
        if isinstance(beat, int):
            beat = layout.unpack(beat)
        data, keep, last = beat
        if keep == 0 or keep & (keep + 1):
            raise StreamProtocolError(f"{layout.name}{where}: beat {i} keep={keep:#x} is "
                                      f"not contiguous from lane 0")
        if i < final and keep != layout.full_keep:
            raise StreamProtocolError(f"{layout.name}{where}: beat {i} of {final + 1} is "
                                      f"partial (keep={keep:#x}) but not last")
        if bool(last) != (i == final):
            raise StreamProtocolError(f"{layout.name}{where}: last={last} on beat {i} of "
                                      f"{final + 1}")
        out += data.to_bytes(layout.beat_bytes, "little")[:keep.bit_length() * layout.unit]
    return bytes(out)


def seeded_rng(name, seed=None):
    """A ``random.Random`` for one BFM, derived from the test's seed
    (``cocotb.RANDOM_SEED`` unless given) and the BFM's name."""
    if seed is None:
        seed = cocotb.RANDOM_SEED
    return random.Random(f"{seed}:{name}")


def start_clock(clk, period_ns=10):
    """Start a clock on ``clk``, its period rounded to the picosecond (the
    simulators' precision: a period such as 1000 / 127.88 ns is refused
    unrounded); returns the :class:`cocotb.clock.Clock`."""
    clock = Clock(clk, round(period_ns * 1000), unit="ps")
    clock.start()
    return clock


async def wait_cycles(clk, cycles):
    """Wait for ``cycles`` rising edges of ``clk``."""
    edge = RisingEdge(clk)
    for _ in range(cycles):
        await edge


async def reset(clk, rst, cycles=4):
    """Hold ``rst`` high for ``cycles`` rising edges of ``clk``."""
    rst.value = 1
    edge = RisingEdge(clk)
    for _ in range(cycles):
        await edge
    rst.value = 0
    await edge


def _signals(dut, prefix):
    try:
        return (getattr(dut, f"{prefix}__valid"), getattr(dut, f"{prefix}__ready"),
                getattr(dut, f"{prefix}__payload"))
    except AttributeError:
        raise AttributeError(f"DUT has no stream port {prefix!r} "
                             f"({prefix}__valid/__ready/__payload)") from None


class StreamDriver:
    """Drives stream port ``prefix`` of ``dut`` (the DUT's input).

    ``valid_gap`` is the probability of an idle cycle before each beat
    (0 = back to back), drawn from ``rng`` (default: :func:`seeded_rng`).
    ``valid`` is never withdrawn from a beat before ``ready`` takes it.
    Call :meth:`send_nowait` from clock-edge context (a coroutine that last
    awaited a rising edge of ``clock``): woken between edges, the driver
    would change the bus mid-cycle, which Icarus and Verilator order
    differently.
    """

    def __init__(self, dut, prefix, clock, layout, *, valid_gap=0.0, rng=None, name=None):
        if not 0.0 <= valid_gap < 1.0:
            raise ValueError(f"valid_gap must be in [0, 1), not {valid_gap!r}")
        self.name = name or f"{prefix}_driver"
        self.layout = layout
        self.valid, self.ready, self.payload = _signals(dut, prefix)
        self.clock = clock
        self.valid_gap = valid_gap
        self.rng = rng or seeded_rng(self.name)
        self.beats_sent = 0
        self.packets_sent = 0
        self._queue = collections.deque()   # (packed payload, done event or None)
        self._wake = Event()
        self._idle = Event()
        self._idle.set()
        #: True: start no new packet (one under way is finished): a bench
        #: that resets the DUT keeps packets whole
        self.held = False
        self.at_boundary = True     # no packet under way
        self.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send_nowait(self, item):
        """Queue ``item``: bytes (one packet) or a list of beats (:class:`Beat`,
        dict or packed int). Returns an :class:`Event` set when its final beat
        has been accepted."""
        if isinstance(item, (bytes, bytearray, memoryview)):
            beats = to_beats(item, self.layout)
        else:
            beats = list(item)
            if not beats:
                raise ValueError(f"{self.name}: nothing to send")
        done = Event()
        pack = self.layout.pack
        queue = self._queue
        for beat in beats[:-1]:
            queue.append((pack(beat), None))
        queue.append((pack(beats[-1]), done))
        self._idle.clear()
        self._wake.set()
        return done

    async def send(self, item):
        """Send ``item`` and return once its final beat has been accepted."""
        await self.send_nowait(item).wait()

    async def wait_idle(self):
        """Return once every queued beat has been accepted."""
        await self._idle.wait()

    @property
    def pending_beats(self):
        return len(self._queue)

    async def _run(self):
        valid, ready, payload = self.valid, self.ready, self.payload
        queue, rng, gap = self._queue, self.rng, self.valid_gap
        edge = RisingEdge(self.clock)
        current = None          # the beat on the bus: (packed, done)
        valid_high = False
        while True:
            if current is None and queue and not (self.held and self.at_boundary) and \
                    not (gap and rng.random() < gap):
                current = queue.popleft()
                self.at_boundary = False
                payload.value = current[0]
                if not valid_high:
                    valid.value = 1
                    valid_high = True
            if current is None:
                if valid_high:
                    valid.value = 0
                    valid_high = False
                if not queue:
                    self._idle.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
            await edge
            if current is not None and ready.value:
                self.beats_sent += 1
                if current[1] is not None:
                    self.packets_sent += 1
                    self.at_boundary = True
                    current[1].set()
                current = None


class StreamMonitor:
    """Watches stream port ``prefix`` of ``dut`` and reassembles accepted beats
    into :class:`Packet` s, checked by :func:`beats_to_bytes`.

    Packets go to ``callback(packet)`` if given, else into a queue read with
    :meth:`get`. ``beat_callback(beat)`` (optional) sees every accepted beat.
    With ``drive_ready`` the monitor is the DUT's sink and drives ``ready``:
    low with probability ``backpressure`` each cycle (0 = always ready), and
    low whenever ``ready_fn()`` (optional, asked after every clock edge) is
    false: a sink with its own notion of room, such as a MAC's transmit FIFO.
    With ``check_stall`` a beat offered but not taken must stay valid and
    unchanged until it is taken.
    """

    def __init__(self, dut, prefix, clock, layout, *, drive_ready=False, backpressure=0.0,
                 rng=None, callback=None, beat_callback=None, check_stall=True, name=None,
                 ready_fn=None):
        if not 0.0 <= backpressure < 1.0:
            raise ValueError(f"backpressure must be in [0, 1), not {backpressure!r}")
        if (backpressure or ready_fn) and not drive_ready:
            raise ValueError("backpressure and ready_fn need drive_ready=True")
        self.name = name or f"{prefix}_monitor"
        self.layout = layout
        self.valid, self.ready, self.payload = _signals(dut, prefix)
        self.clock = clock
        self.drive_ready = drive_ready
        self.backpressure = backpressure
        self.ready_fn = ready_fn
        self.rng = rng or seeded_rng(self.name)
        self.callback = callback
        self.beat_callback = beat_callback
        self.check_stall = check_stall
        self.queue = Queue()
        self.cycles = 0
        self.beats_seen = 0
        self.packets_seen = 0
        self.stall_cycles = 0
        #: None, or a function true in a cycle whose edge resets the source
        #: (a bridge reset alone): its partial packet is dropped, ``abandoned``
        self.reset_fn = None
        self.abandoned = 0
        if drive_ready:
            self.ready.value = 1
        self._task = cocotb.start_soon(self._run())

    async def get(self):
        """The next :class:`Packet` (when no ``callback`` is set)."""
        return await self.queue.get()

    def _deliver(self, beats, first_cycle):
        data = beats_to_bytes(beats, self.layout,
                              f" ({self.name}, packet {self.packets_seen}, cycle {self.cycles})")
        self.packets_seen += 1
        packet = Packet(data, first_cycle, self.cycles, len(beats))
        if self.callback is not None:
            self.callback(packet)
        else:
            self.queue.put_nowait(packet)

    async def _run(self):
        valid, ready, payload = self.valid, self.ready, self.payload
        unpack, rng, bp = self.layout.unpack, self.rng, self.backpressure
        drive, check = self.drive_ready, self.check_stall
        edge = RisingEdge(self.clock)
        ready_now = 1
        beats, first_cycle = [], 0
        stalled = None          # payload of a beat offered but not yet taken
        settled = False         # valid has been 0 or 1 once: X from then on is an error
        while True:
            await edge
            self.cycles += 1
            if not valid.value.is_resolvable:
                if not settled:         # a 4-state simulator's outputs before reset
                    continue
                raise StreamProtocolError(f"{self.name}: valid is {valid.value} at cycle "
                                          f"{self.cycles} (undriven or unknown)")
            settled = True
            if valid.value:
                taken = ready_now if drive else ready.value
                if taken or check:
                    try:
                        value = int(payload.value)
                    except ValueError:
                        raise StreamProtocolError(
                            f"{self.name}: payload has unknown bits while valid (cycle "
                            f"{self.cycles}): {payload.value}") from None
                    if stalled is not None and value != stalled:
                        raise StreamProtocolError(
                            f"{self.name}: payload changed from {stalled:#x} to {value:#x} "
                            f"while stalled (cycle {self.cycles})")
                if taken:
                    stalled = None
                    beat = unpack(value)
                    self.beats_seen += 1
                    if not beats:
                        first_cycle = self.cycles
                    beats.append(beat)
                    if self.beat_callback is not None:
                        self.beat_callback(beat)
                    if beat.last:
                        self._deliver(beats, first_cycle)
                        beats = []
                else:
                    self.stall_cycles += 1
                    if check:
                        stalled = value
            elif stalled is not None:
                raise StreamProtocolError(f"{self.name}: valid withdrawn before ready "
                                          f"took the beat (cycle {self.cycles})")
            if self.reset_fn is not None and self.reset_fn():
                # the source was reset at this edge: a packet under way is
                # gone (counted), a stalled beat may be withdrawn
                self.abandoned += bool(beats)
                beats, stalled = [], None
            if drive and (bp or self.ready_fn):
                want = 0 if bp and rng.random() < bp else 1
                if want and self.ready_fn is not None and not self.ready_fn():
                    want = 0
                if want != ready_now:
                    ready.value = want
                    ready_now = want
