"""Link capture: every frame at chosen points of a testbench written to a
pcap (nanosecond timestamps from simulation time, Ethernet link type), for
Wireshark and the tlpoe dissector (``sim/wireshark/tlpoe.lua``).

Off unless the run was started with ``PCAP=1``: the runner
(:func:`tlpoe.sim.runner.run_cocotb`) then passes the run's capture folder,
absolute, in ``TLPOE_PCAP_DIR`` (:func:`capture_dir`). A capture point is
either an agent whose analysis port already publishes the frames (a bridge's
``frame_out`` monitor) or the name of a frame stream port, which gets a
passive monitor of its own (a bridge's ``frame_in``: the frames as the
bridge took them, corrupted or not). Each frame is stamped with the
simulation time at which its last beat was accepted.
"""

import os
from pathlib import Path

import cocotb
from cocotb.utils import get_sim_time
from pyuvm import uvm_component

from ..models.pcap import PcapWriter
from .agents import StreamAgent
from .bfm import StreamMonitor
from .params import PCAP_DIR_ENV
from .scoreboard import AnalysisImp

__all__ = ["capture_dir", "PcapCapture", "link_capture", "loopback_capture"]


def capture_dir():
    """The run's capture folder (a Path), or None when capture is off."""
    value = os.environ.get(PCAP_DIR_ENV, "")
    return Path(value) if value else None


class PcapCapture(uvm_component):
    """One pcap per capture point: ``points`` maps a file stem (the file is
    ``directory/<stem>.pcap``) to an agent with an ``ap`` of frame items or
    to a frame stream port name of the DUT (``layout``: its
    :class:`~tlpoe.tb.bfm.StreamLayout`). ``frames[stem]`` counts what was
    written."""

    def __init__(self, name, parent, directory, points, layout):
        super().__init__(name, parent)
        self.directory = Path(directory)
        self.points = dict(points)
        self.layout = layout
        self.frames = {}
        self._writers, self._sources, self._exports = {}, {}, {}

    def build_phase(self):
        dut = cocotb.top
        for stem, source in self.points.items():
            if isinstance(source, str):
                source = StreamAgent(f"{stem}_monitor", self, monitor_bfm=StreamMonitor(
                    dut, source, dut.clk, self.layout, name=f"{source}_capture"))
            self._sources[stem] = source
            self._writers[stem] = PcapWriter(self.directory / f"{stem}.pcap")
            self._exports[stem] = AnalysisImp(f"{stem}_export", self,
                                              lambda item, stem=stem: self._write(stem, item))
            self.frames[stem] = 0

    def connect_phase(self):
        for stem, source in self._sources.items():
            source.ap.connect(self._exports[stem])

    def _write(self, stem, item):
        self._writers[stem].write(round(get_sim_time("ns")), item.data)
        self.frames[stem] += 1

    def report_phase(self):
        self.logger.info("pcap: " + ", ".join(
            f"{self.directory / stem}.pcap ({n} frames)" for stem, n in self.frames.items()))

    def final_phase(self):
        for writer in self._writers.values():
            writer.close()


def link_capture(env, layout):
    """For :class:`~tlpoe.tb.link_env.LinkEnv` (after its agents are built):
    per direction, what the sending bridge put on the wire
    (``a_to_b.sent.pcap``, from ``frame_out``) and what the network handed
    to the far bridge (``a_to_b.delivered.pcap``, at ``frame_in``: dropped
    frames missing, corrupted ones as corrupted, padded to 60 bytes).
    None when capture is off."""
    directory = capture_dir()
    if directory is None:
        return None
    points = {}
    for src, dst in (("a", "b"), ("b", "a")):
        points[f"{src}_to_{dst}.sent"] = getattr(env, f"{src}_wire")
        points[f"{src}_to_{dst}.delivered"] = f"{dst}_frame_in"
    return PcapCapture("pcap", env, directory, points, layout)


def loopback_capture(env, layout):
    """For :class:`~tlpoe.tb.loopback_env.LoopbackEnv`: the frames the
    encapsulator sent (``sent.pcap``) and every frame driven into the
    decapsulator, injected malformed and control frames included
    (``delivered.pcap``). None when capture is off."""
    directory = capture_dir()
    if directory is None:
        return None
    return PcapCapture("pcap", env, directory,
                       {"sent": env.wire_out, "delivered": "frame_in"}, layout)
