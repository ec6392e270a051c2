"""pyuvm bench: a peer's PCIe models through two bridges.

cocotbext-pcie's RootComplex (the host) and a MemoryEndpoint (the device),
models written elsewhere, talk through two :class:`~tlpoe.rtl.bridge.bridge.Bridge`
under a :class:`~tlpoe.tb.tops.Pair`, joined by the NIC/PHY model
(:class:`~tlpoe.tb.link_env.NetworkWire`, one per direction; each bridge's
``frame_in`` is a MAC's, never held)::

    RootComplex -- root port == TlpBytesPort -- a_tlp_in  [bridge A] a_frame_out --Phy--> b_frame_in  [bridge B] b_tlp_out -- TlpBytesPort == Device(endpoint)
                                             <- a_tlp_out [bridge A] a_frame_in <--Phy-- b_frame_out [bridge B] b_tlp_in  <-

(``==``: a cocotbext-pcie link, data link layer and credits included;
``tlp_in`` / ``tlp_out``: :class:`~tlpoe.tb.pcie_interop.BridgeTlpPort`).

The run (``InteropRun``): with ``reference``, the operation sequence
(:mod:`tlpoe.tb.interop_sequence`, ``form`` "short" or "long") first runs on
the same models joined straight (no clock runs meanwhile); then the
bridges come out of reset at their configuration's reset values and the
same sequence runs through them. Checks:

* every operation's self-check (data read = data written, BAR sizes = the
  endpoint's, every MSI vector taken, DMA data in host memory before the
  MSI that follows it), in both modes;
* every operation's result through the bridges = the direct run's;
* every TLP into one bridge came out of the other once, bit for bit (by
  digest, per direction);
* neither bridge dropped, replayed, flagged an ordering violation or lost
  a frame to overflow; the network saw no malformed frame.

``fault`` makes a bridge misbehave once, from the start of ``fault_phase``
on: "corrupt_to_rc" / "corrupt_to_ep" flip one byte of the first completion
with data leaving bridge A (toward the RC) / bridge B (toward the
endpoint); "reorder_to_rc" holds the first memory write of 64 bytes or
more leaving bridge A while the TLPs behind it pass. The run must then
fail. ``report`` (a path) receives the run's record as JSON.
"""

import json
import logging
import time
from pathlib import Path

import cocotb
import pyuvm
from cocotb.triggers import ReadOnly, with_timeout
from cocotb.utils import get_sim_time
from pyuvm import uvm_env, uvm_test

from tlpoe.models.frame import DEFAULT_DST_MAC, DEFAULT_SRC_MAC
from tlpoe.models.phy import phy_from_params
from tlpoe.rtl.bridge.bridge import Bridge
from tlpoe.tb.bfm import StreamDriver, StreamLayout, StreamMonitor, reset, start_clock, wait_cycles
from tlpoe.tb.bridge_ports import BridgePorts
from tlpoe.tb.interop_sequence import FORMS, PcieSystem, compare, join_direct, run_operations
from tlpoe.tb.items import StreamItem
from tlpoe.tb.link_env import NetworkWire
from tlpoe.tb.params import tb_params
from tlpoe.tb.pcie_interop import (
    BridgeTlpPort, CompletionCorruptor, PostedWriteHold, TlpBytesPort,
)

P = tb_params(width=256, bridge={}, cfg={}, clock_ns=4.0, seed=1, form="short", reference=True,
              phy={"rate_gbps": 100, "latency_ns": 250.0}, mac_fifo_bytes=4096,
              request_timeout_us=200, timeout_ms=200, fault="", fault_phase="dma",
              pcie_log_level="WARNING", report="")

#: fault -> (its class, the bridge at whose tlp_out it acts)
FAULTS = {"corrupt_to_rc": (CompletionCorruptor, "a"), "corrupt_to_ep": (CompletionCorruptor, "b"),
          "reorder_to_rc": (PostedWriteHold, "a")}
#: Bridge counters that must stay 0 in a run with a clean network.
MUST_BE_ZERO = ("overflows", "oversize_drops", "length_errors", "replays_nak", "replays_timeout",
                "frames_retransmitted", "link_down", "order_violations", "order_stamp_errors",
                "duplicates", "out_of_order")


class InteropEnv(uvm_env):
    """The network between the bridges: per direction a
    :class:`NetworkWire` (a Phy of ``phy`` settings) fed by a monitor on
    the sending bridge's ``frame_out`` (held only while the MAC's transmit
    FIFO is full) and driving the far bridge's ``frame_in``."""

    def build_phase(self):
        dut = cocotb.top
        frame = StreamLayout.frame(P["width"])
        self.wires, self.monitors = {}, {}
        for index, (src, dst) in enumerate((("a", "b"), ("b", "a"))):
            phy = phy_from_params(P["phy"], seed=P["seed"] * 2 + index)
            driver = StreamDriver(dut, f"{dst}_frame_in", dut.clk, frame)
            wire = NetworkWire(f"wire_{src}{dst}", self, phy, driver, P["mac_fifo_bytes"])
            self.wires[src + dst] = wire
            self.monitors[src] = StreamMonitor(
                dut, f"{src}_frame_out", dut.clk, frame, drive_ready=True,
                ready_fn=wire.mac_ready,
                callback=lambda packet, wire=wire: wire.write(StreamItem("frame", packet.data)))


class InteropTest(uvm_test):
    """The run (see the module doc)."""

    def build_phase(self):
        if P["form"] not in FORMS:
            raise ValueError(f"form must be one of {sorted(FORMS)}, not {P['form']!r}")
        if P["fault"] not in ("", *FAULTS):
            raise ValueError(f"fault must be '' or one of {sorted(FAULTS)}, not {P['fault']!r}")
        # cocotbext-pcie logs every request at INFO: megabytes per run
        logging.getLogger("cocotb.pcie").setLevel(P["pcie_log_level"])
        self.env = InteropEnv("env", self)
        self.problems = []
        self.record = dict(params=P, form=FORMS[P["form"]].description)

    async def run_phase(self):
        self.raise_objection()
        try:
            await with_timeout(self.run_both(), P["timeout_ms"], "ms")
        except Exception as e:               # recorded; check_phase fails the test
            self.problems.append(f"the run stopped: {type(e).__name__}: {e}")
            self.logger.error(self.problems[-1])
        if P["report"]:
            Path(P["report"]).write_text(json.dumps(self.record, indent=1, default=str) + "\n")
        self.drop_objection()

    async def run_both(self):
        form = FORMS[P["form"]]
        self.logs = {}
        if P["reference"]:
            wall = time.monotonic()
            t0 = get_sim_time("ns")
            log = await run_operations(PcieSystem(join_direct), form, P["seed"],
                                       timeout_us=P["request_timeout_us"])
            self.logs["direct"] = log
            self.record["direct"] = dict(log.summary(), sim_ns=get_sim_time("ns") - t0,
                                         wall_s=round(time.monotonic() - wall, 2))
        dut = cocotb.top
        start_clock(dut.clk, P["clock_ns"])
        self.bridges = configure_bridges(dut, P)
        await reset(dut.clk, dut.rst)
        wall = time.monotonic()
        t0 = get_sim_time("ns")
        self.fault = None
        if P["fault"]:
            kind, side = FAULTS[P["fault"]]
            self.fault = kind(P["fault"])
        fault = self.fault
        system = PcieSystem(self.join_bridged)
        log = await run_operations(
            system, form, P["seed"], timeout_us=P["request_timeout_us"],
            on_phase=lambda phase: fault.arm() if fault and phase == P["fault_phase"] else None)
        self.logs["bridged"] = log
        sim_ns = get_sim_time("ns") - t0
        wall_s = time.monotonic() - wall
        while any(p.pending for p in self.ports.values()):      # the last TLPs on their way
            await wait_cycles(dut.clk, 16)
        await wait_cycles(dut.clk, 200)
        await ReadOnly()
        stats = {side: ports.stats() for side, ports in self.bridges.items()}
        self.record["bridged"] = dict(
            log.summary(), sim_ns=sim_ns, wall_s=round(wall_s, 2),
            cycles=round(sim_ns / P["clock_ns"]),
            tlps={f"{side}_{d}": getattr(p, f"tally_{d}").as_dict()
                  for side, p in self.ports.items() for d in ("in", "out")},
            bridge_stats={side: {k: v for k, v in s.items() if isinstance(v, int)}
                          for side, s in stats.items()},
            network={k: w.fates for k, w in self.env.wires.items()},
            fault=fault.fired if fault else None)
        self.judge(stats)

    def join_bridged(self, root_port, device):
        """The root port's link ends at bridge A, the endpoint's at bridge B."""
        dut = cocotb.top
        host_side = TlpBytesPort("host_side")
        device_side = TlpBytesPort("device_side")
        root_port.connect(host_side)
        device.connect(device_side)
        faults = {side: [] for side in "ab"}
        if self.fault is not None:
            faults[FAULTS[P["fault"]][1]].append(self.fault)
        self.ports = {side: BridgeTlpPort(dut, dut.clk, P["width"], side, port, faults[side])
                      for side, port in (("a", host_side), ("b", device_side))}

    def judge(self, stats):
        problems = self.problems
        for mode, log in self.logs.items():
            for o in log.failures()[:5]:
                problems.append(f"{mode}: {o['op']} {o['what']}: {o['result']}")
            if len(log.failures()) > 5:
                problems.append(f"{mode}: {len(log.failures())} operations failed in all")
        if "direct" in self.logs:
            differences = compare(self.logs["direct"], self.logs["bridged"])
            self.record["differences"] = [dict(zip(("index", "phase", "op", "what", "direct",
                                                     "bridged"), d)) for d in differences]
            for d in differences[:5]:
                problems.append(f"bridged differs from direct at operation {d[0]} ({d[1]}: "
                                f"{d[2]} {d[3]}): direct {d[4]}, bridged {d[5]}")
        a, b = self.ports["a"], self.ports["b"]
        for name, into, out in (("host to device", a, b), ("device to host", b, a)):
            sent, delivered = into.taken, out.delivered
            if sent != delivered:
                problems.append(f"{name}: {sum((sent - delivered).values())} TLP(s) taken not "
                                f"delivered as taken, {sum((delivered - sent).values())} "
                                f"delivered not as taken")
        for side, s in stats.items():
            for name in MUST_BE_ZERO:
                if s[name]:
                    problems.append(f"bridge {side}: {name} = {s[name]}")
            if any(s["drops"]):
                problems.append(f"bridge {side}: frames dropped {s['drops']}")
        self.record["problems"] = problems

    def check_phase(self):
        for line in self.problems:
            self.logger.error(line)
        assert not self.problems, f"{len(self.problems)} problem(s); first: {self.problems[0]}"
        self.logger.info(f"interop: {json.dumps({k: v for k, v in self.record.items() if k != 'params'}, default=str)[:3000]}")


def configure_bridges(dut, p):
    """Both bridges' run-time inputs at the reset values of ``Bridge(width,
    **bridge)`` (a top-level input has none in Verilog) except the fields
    ``cfg`` names, A host side, B device side; returns their
    :class:`BridgePorts`."""
    params = dict(Bridge(p["width"], **p["bridge"]).parameters, credits=1)
    params.update(p["cfg"])
    ports = {"a": BridgePorts(dut, "a"), "b": BridgePorts(dut, "b")}
    ports["a"].configure(DEFAULT_DST_MAC, DEFAULT_SRC_MAC, params)
    ports["b"].configure(DEFAULT_SRC_MAC, DEFAULT_DST_MAC, params)
    return ports


@pyuvm.test()
class InteropRun(InteropTest):
    """The run, as the parameters choose."""
