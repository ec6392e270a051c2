"""The bridge's cycle twin in a cocotb bench (issue 18 item 1).

:class:`BridgeTwin` runs a :class:`~tlpoe.models.bridge.BridgeModel` beside
one RTL :class:`~tlpoe.rtl.bridge.bridge.Bridge`: once per clock cycle it
reads the inputs the bridge registers, steps the model with them, and
compares the model's outputs with what the bridge showed in that cycle:
``tlp_in.ready``, ``frame_in.ready`` (always 1: a MAC cannot wait), every
``frame_out`` and ``tlp_out`` beat offered (valid and payload),
``link_down``, ``order_irq`` and every field of ``stats``. The first
difference fails the test, naming the cycle, the port or field and both
values. :func:`bridge_model` builds the model from the Bridge's own
parameters, so twin and DUT cannot be configured apart by accident.

Sampling, and why it is exact. cocotb defers every signal write to the
ReadWrite phase of its time step, and only cocotb drives a bridge's inputs:
at a rising edge the inputs (``cfg``, the MACs, ``rst`` included) still hold
what they held through the cycle that edge ends, which is what the RTL
registers there, on Icarus (which may have run some of the edge's processes)
and on Verilator (which has run all of them) alike. The outputs of a cycle
are read in the ReadOnly phase after the edge that starts it, once the
benches' writes of that step and the RTL's reaction to them have settled.
So, per cycle N: ReadOnly after edge N, the outputs of cycle N; edge N+1,
the inputs of cycle N; ``model.step(inputs)`` returns the model's outputs
of cycle N. An input written between a ReadOnly phase and the next edge (a
coroutine woken by a timer) would show as a difference in the outputs that
depend on it combinationally; the benches write at rising edges only.

``rst`` high at an edge resets the model instead of stepping it (its
registers without a reset, the udp configuration's, still follow ``cfg``:
``BridgeModel.reset_cycle``). A twin must
be created before the bench's reset (it fails its check otherwise: the
model's state would be unrelated to the RTL's). It costs nothing when not
created; when created, about the model's step per cycle (the signals are
read as few as possible: a payload only while valid, ``cfg``, the MACs and
``stats`` decoded only when their bits change).
"""

import time

import cocotb
from amaranth.hdl import Shape
from cocotb.triggers import ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from ..models.bridge import BridgeConfig, BridgeModel
from ..models.link_cycles import CycleConfig
from ..rtl.bridge.registers import config_layout, decode_stats
from .bfm import StreamLayout

__all__ = ["BRIDGE_PARAMETERS", "bridge_model", "BridgeTwin", "TwinDifference"]

#: The Bridge's parameters, by where the model takes them.
_LINK = ("mode", "window", "seq_bits", "max_retries", "replay_timeout", "nak_timeout",
         "ack_every", "ack_delay", "transport")
_CONFIG = ("mtu", "flush_timeout", "ethertype")
_MODEL = ("queue_depth", "queue_tlps", "tx_queue_depth", "credit_delay", "credit_refresh",
          "reorder_illegally", "link_state", "keepalive", "dead", "tracker", "tag_bits",
          "cpl_timeout", "hold_time", "completer_id", "ecn", "line_bytes")
#: Every parameter of a Bridge besides ``width``, which :func:`bridge_model` takes.
BRIDGE_PARAMETERS = _LINK + _CONFIG + _MODEL


def bridge_model(width, **bridge):
    """The :class:`BridgeModel` of ``Bridge(width, **bridge)``: the same
    parameters, by the Bridge's names (an unknown one raises naming it)."""
    unknown = sorted(set(bridge) - set(BRIDGE_PARAMETERS))
    if unknown:
        raise ValueError(f"Bridge has no parameter(s) {unknown}")
    link = CycleConfig(width=width, **{k: v for k, v in bridge.items() if k in _LINK})
    config = BridgeConfig(link, **{k: v for k, v in bridge.items() if k in _CONFIG})
    return BridgeModel(config, **{k: v for k, v in bridge.items() if k in _MODEL})


class TwinDifference(AssertionError):
    """The RTL and its twin differ (a test failure)."""


def _config_slices():
    """``(name, offset, mask, entries)`` of each ``cfg`` field: ``entries``
    the element count of an array (the model takes a list), else 0."""
    out = []
    for name, f in config_layout():
        shape = f.shape
        entries = getattr(shape, "length", 0)
        bits = Shape.cast(shape.elem_shape).width if entries else f.width
        out.append((name, f.offset, (1 << bits) - 1, entries))
    return out


def _config_value(raw, offset, mask, entries):
    bits = mask.bit_length()
    if entries:
        return [raw >> (offset + k * bits) & mask for k in range(entries)]
    return raw >> offset & mask


class BridgeTwin:
    """A :class:`BridgeModel` ``model`` beside the bridge whose ports are
    ``{prefix}_*`` in the cocotb ``dut`` (``prefix`` None: the top level),
    clocked by ``clk`` and reset by ``rst`` (default ``dut.clk``,
    ``dut.rst``; a tuple: by any of them high). Its coroutine starts at
    once. After the run: ``cycles`` (compared), ``seconds`` (wall time in the model and the comparison),
    ``failure`` (the first difference's message, or None); :meth:`check`
    raises unless it compared cycles and found no difference."""

    def __init__(self, dut, prefix, model, *, clk=None, rst=None, name=None):
        self.model, self.width = model, model.width
        self.name = name or f"twin_{prefix or 'bridge'}"
        port = (lambda n: getattr(dut, n)) if prefix is None else \
            (lambda n: getattr(dut, f"{prefix}_{n}"))
        self.clk = clk if clk is not None else dut.clk
        # the bridge's resets: rst, and any other input that resets it alone
        self.rst = tuple(rst) if isinstance(rst, (tuple, list)) else \
            (rst if rst is not None else dut.rst,)
        self.tlp_in = [port(f"tlp_in__{s}") for s in ("valid", "payload", "ready")]
        self.frame_in = [port(f"frame_in__{s}") for s in ("valid", "payload", "ready")]
        self.frame_out = [port(f"frame_out__{s}") for s in ("valid", "payload", "ready")]
        self.tlp_out = [port(f"tlp_out__{s}") for s in ("valid", "payload", "ready")]
        self.cfg, self.macs = port("cfg"), (port("dst_mac"), port("src_mac"))
        self.link_down, self.order_irq, self.stats = \
            port("link_down"), port("order_irq"), port("stats")
        self.tlp_layout = StreamLayout.tlp(self.width)
        self.frame_layout = StreamLayout.frame(self.width)
        self._cfg_slices = _config_slices()
        self._cfg_raw = self._macs_raw = self._stats_raw = None
        self._stats = None
        self.cycles = 0
        self.seconds = 0.0
        self.resets = 0
        self.failure = None
        self._task = cocotb.start_soon(self._run())

    # --- reading the bridge ---------------------------------------------------------

    def _int(self, signal, what):
        try:
            return int(signal.value)
        except ValueError:
            raise TwinDifference(f"{self.name}: {what} has unknown bits: "
                                 f"{signal.value}") from None

    def _beat(self, valid, payload, layout, what):
        if not self._int(valid, f"{what}.valid"):
            return None
        return tuple(layout.unpack(self._int(payload, f"{what}.payload")))

    def _inputs(self):
        """The inputs of the cycle that ends at this edge, as ``model.step`` takes
        them; ``cfg`` and the MACs set into ``model.cfg``."""
        raw = self._int(self.cfg, "cfg")
        if raw != self._cfg_raw:
            self._cfg_raw = raw
            self._cfg = {name: _config_value(raw, *where) for name, *where in self._cfg_slices}
            self.model.cfg.update({k: v for k, v in self._cfg.items() if k != "order_irq_clear"})
        macs = tuple(self._int(m, n) for m, n in zip(self.macs, ("dst_mac", "src_mac")))
        if macs != self._macs_raw:
            self._macs_raw = macs
            self.model.cfg.update(dst_mac=macs[0], src_mac=macs[1])
        return dict(
            tlp_in=self._beat(self.tlp_in[0], self.tlp_in[1], self.tlp_layout, "tlp_in"),
            frame_out_ready=bool(self._int(self.frame_out[2], "frame_out.ready")),
            frame_in=self._beat(self.frame_in[0], self.frame_in[1], self.frame_layout,
                                "frame_in"),
            tlp_out_ready=bool(self._int(self.tlp_out[2], "tlp_out.ready")),
            order_irq_clear=bool(self._cfg["order_irq_clear"]))

    def _outputs(self):
        """What the bridge shows in the cycle just started (ReadOnly phase)."""
        raw = self._int(self.stats, "stats")
        if raw != self._stats_raw:
            self._stats_raw, self._stats = raw, decode_stats(raw)
        return (self._int(self.tlp_in[2], "tlp_in.ready"),
                self._int(self.frame_in[2], "frame_in.ready"),
                self._beat(self.frame_out[0], self.frame_out[1], self.frame_layout, "frame_out"),
                self._beat(self.tlp_out[0], self.tlp_out[1], self.tlp_layout, "tlp_out"),
                self._int(self.link_down, "link_down"), self._int(self.order_irq, "order_irq"),
                self._stats)

    # --- the comparison -------------------------------------------------------------

    def _compare(self, got, inputs):
        start = time.perf_counter()
        out = self.model.step(**inputs)
        frame = None if out.frame_out is None else tuple(out.frame_out)
        # frame_in.ready: a MAC cannot wait, the bridge takes every beat (the model's
        # decapsulator has hold=False)
        want = (out.tlp_in_ready, 1, frame, out.tlp_out, out.link_down, out.order_irq)
        differences = [(name, g, w) for name, g, w in zip(
            ("tlp_in.ready", "frame_in.ready", "frame_out", "tlp_out", "link_down",
             "order_irq"), got, want) if g != w]
        stats = got[6]
        differences += [(f"stats.{k}", stats[k], v) for k, v in out.stats.items()
                        if stats[k] != v]
        self.seconds += time.perf_counter() - start
        if differences:
            name, rtl, model = differences[0]
            more = f" (and {len(differences) - 1} more: " + ", ".join(
                d[0] for d in differences[1:6]) + ")" if len(differences) > 1 else ""
            self.failure = (
                f"{self.name}: cycle {self.cycles} after reset ({get_sim_time('ns')} ns, "
                f"the edge ending it): {name}: RTL {_show(rtl)}, model {_show(model)}{more}; "
                f"inputs of the cycle: {_show_inputs(inputs)}")
            raise TwinDifference(self.failure)
        self.cycles += 1

    async def _run(self):
        edge, settled = RisingEdge(self.clk), ReadOnly()
        got = None              # the outputs of the cycle the next edge ends
        while True:
            await edge
            if any(self._int(r, "rst") for r in self.rst):
                self._inputs()                  # cfg: the reset-less registers follow it
                self.model.reset_cycle()
                self.resets += 1
            elif got is not None:
                self._compare(got, self._inputs())
            elif not self.resets:
                raise TwinDifference(f"{self.name}: started after the bridge's reset; "
                                     "create the twin before it")
            await settled
            got = self._outputs() if self.resets else None

    def check(self):
        """Raise unless the twin compared cycles and found no difference."""
        if self.failure is not None:
            raise TwinDifference(self.failure)
        if not self.cycles:
            raise TwinDifference(f"{self.name}: no cycle compared")

    def summary(self):
        rate = self.cycles / self.seconds if self.seconds else 0.0
        return (f"{self.name}: {self.cycles} cycles equal to the model "
                f"({self.seconds:.1f} s in the model, {rate:.0f} cycles/s)")


def _show(value):
    if isinstance(value, tuple) and len(value) == 3:
        data, keep, last = value
        return f"(data={data:#x}, keep={keep:#x}, last={last})"
    return repr(value)


def _show_inputs(inputs):
    return ", ".join(f"{k}={_show(v) if v is not None else None}" for k, v in inputs.items())
