"""The translation benches' shared parts: the model of a link
(:class:`LinkPredictor`, :class:`~tlpoe.models.translate.LinkTranslator`
on every TLP in), the counters, the stream agents, and the environment of a
:class:`~tlpoe.rtl.fabric.translate.DeviceFabric` (:class:`FabricEnv`: a predictor
per link, the router's model, and per link a scoreboard for the TLPs into
the chassis and an interleaving scoreboard for the host's side, where the
chassis' TLPs and the completions the bridge makes merge)."""

import cocotb
from pyuvm import uvm_analysis_port, uvm_component, uvm_env

from ..models.tlp import Tlp
from ..models.translate import LinkTranslator, Reason, route
from .agents import StreamAgent
from .bfm import StreamDriver, StreamLayout, StreamMonitor
from .items import StreamItem
from .scoreboard import AnalysisImp, InterleavedScoreboard, Scoreboard
from .sequences import StreamSequence
from .stimulus import TRANSLATION_TABLE, translation_traffic

__all__ = ["LinkPredictor", "read_counters", "check_counters", "make_agent", "source_link",
           "Splitter", "ChassisRouter", "FabricEnv"]


class LinkPredictor(uvm_component):
    """The model of one link: TLPs from the host (``host_export``) and from
    the chassis (``chassis_export``) through a :class:`LinkTranslator`;
    publishes what it predicts for the chassis (``dev_out_ap``), for the
    host from the chassis (``to_host_ap``) and the completions the bridge
    makes (``reply_ap``)."""

    def __init__(self, name, parent, table=TRANSLATION_TABLE):
        super().__init__(name, parent)
        self.model = LinkTranslator(table)
        self.host_export = AnalysisImp("host_export", self, self.from_host)
        self.chassis_export = AnalysisImp("chassis_export", self, self.from_chassis)
        self.dev_out_ap = uvm_analysis_port("dev_out_ap", self)
        self.to_host_ap = uvm_analysis_port("to_host_ap", self)
        self.reply_ap = uvm_analysis_port("reply_ap", self)

    def from_host(self, item):
        out, reply, _ = self.model.from_host(Tlp.unpack(item.data))
        if out is not None:
            self.dev_out_ap.write(StreamItem("expected", out.pack()))
        if reply is not None:
            self.reply_ap.write(StreamItem("reply", reply.pack()))

    def from_chassis(self, item):
        out, _ = self.model.from_chassis(Tlp.unpack(item.data))
        if out is not None:
            self.to_host_ap.write(StreamItem("expected", out.pack()))


def read_counters(dut, prefix=""):
    """The counter ports, as ``LinkTranslator.counters``."""
    out = {}
    for name in LinkTranslator(TRANSLATION_TABLE).counters:
        value = int(getattr(dut, prefix + name).value)
        out[name] = ([(value >> (32 * r)) & 0xFFFF_FFFF for r in Reason]
                     if name.endswith("_denied") else value)
    return out


def check_counters(logger, what, rtl, model):
    logger.info(f"{what}: RTL {rtl}")
    assert rtl == model, f"{what}: RTL counters {rtl}, model {model}"


def make_agent(env, dut, layout, name, port, drive, params):
    """A stream agent on ``port``: a driver (``drive``, with ``valid_gap``)
    and a monitor, or a monitor that is the sink (with ``backpressure``)."""
    kw = dict(driver_bfm=StreamDriver(dut, port, dut.clk, layout,
                                      valid_gap=params["valid_gap"])) if drive else {}
    monitor = StreamMonitor(dut, port, dut.clk, layout, **(
        {} if drive else dict(drive_ready=True, backpressure=params["backpressure"])))
    return StreamAgent(name, env, monitor_bfm=monitor, **kw)


def source_link(tables, tlp):
    """The index of the link a TLP out of ``pcie_out`` came from (its
    Requester ID is the link's ``local_rid``, or, for completions of a
    device's reads, given the device's own ID back)."""
    requester = int(tlp.requester_id)
    return next(i for i, t in enumerate(tables)
                if requester == t.local_rid or t.function_by_device(requester))


class Splitter(uvm_component):
    """Hands each TLP out of ``pcie_out`` to the scoreboard of the link it
    came from (``tables``: read when TLPs flow, so they may be filled late)."""

    def __init__(self, name, parent, tables, links):
        super().__init__(name, parent)
        self.tables, self.links = tables, links

    def build_phase(self):
        self.export = AnalysisImp("export", self, self.write)
        self.aps = [uvm_analysis_port(f"ap{i}", self) for i in range(self.links)]

    def write(self, item):
        self.aps[source_link(self.tables, Tlp.unpack(item.data))].write(item)


class ChassisRouter(Splitter):
    """The model of the fabric's router: each TLP from the chassis to the
    predictor of the link it routes to (``aps``); counts what no link claims."""

    def build_phase(self):
        super().build_phase()
        self.unrouted = 0

    def write(self, item):
        where = route(self.tables, Tlp.unpack(item.data))
        if where is None:
            self.unrouted += 1
        else:
            self.aps[where].write(item)


class FabricEnv(uvm_env):
    """Agents on a DeviceFabric's ports, a :class:`LinkPredictor` per link
    and the scoreboards; ``params``: ``width``, ``valid_gap``,
    ``backpressure``. ``tables`` may be a list filled after the build (then
    give ``links`` and set each predictor's ``model`` once the tables are
    known)."""

    def __init__(self, name, parent, params, tables, links=None):
        super().__init__(name, parent)
        self.params, self.tables = params, tables
        self.links = len(tables) if links is None else links

    def build_phase(self):
        dut = cocotb.top
        layout = StreamLayout.tlp(self.params["width"])
        links = range(self.links)
        self.net_in = [make_agent(self, dut, layout, f"net{i}_in", f"net{i}_in", True, self.params) for i in links]
        self.net_out = [make_agent(self, dut, layout, f"net{i}_out", f"net{i}_out", False,
                                   self.params)
                        for i in links]
        self.pcie_in = make_agent(self, dut, layout, "pcie_in", "pcie_in", True, self.params)
        self.pcie_out = make_agent(self, dut, layout, "pcie_out", "pcie_out", False,
                                   self.params)
        self.splitter = Splitter("splitter", self, self.tables, self.links)
        self.router = ChassisRouter("router", self, self.tables, self.links)
        self.predictors = [LinkPredictor(f"predictor{i}", self,
                                         self.tables[i] if i < len(self.tables)
                                         else TRANSLATION_TABLE)
                           for i in links]
        self.sb_dev_out = [Scoreboard(f"sb_dev_out{i}", self) for i in links]
        self.sb_net_out = [InterleavedScoreboard(f"sb_net_out{i}", self, sources=2)
                           for i in links]

    def connect_phase(self):
        self.pcie_out.ap.connect(self.splitter.export)
        self.pcie_in.ap.connect(self.router.export)
        for i, predictor in enumerate(self.predictors):
            self.net_in[i].ap.connect(predictor.host_export)
            self.router.aps[i].connect(predictor.chassis_export)
            predictor.dev_out_ap.connect(self.sb_dev_out[i].expected_export)
            self.splitter.aps[i].connect(self.sb_dev_out[i].actual_export)
            predictor.to_host_ap.connect(self.sb_net_out[i].expected_exports[0])
            predictor.reply_ap.connect(self.sb_net_out[i].expected_exports[1])
            self.net_out[i].ap.connect(self.sb_net_out[i].actual_export)

    async def run_traffic(self, seed, count):
        """``count`` random TLPs steered at each link's table from every host,
        and as many per link from the chassis (interleaved), all at once;
        returns once every scoreboard has drained."""
        sends = [cocotb.start_soon(StreamSequence(f"net{i}", [
            t.pack() for t in translation_traffic(seed * 4 + i, count, "to_device", table)
        ]).start(self.net_in[i].sequencer)) for i, table in enumerate(self.tables)]
        chassis = [t.pack() for pair in zip(*(
            translation_traffic(seed * 4 + 2 + i, count, "to_host", table)
            for i, table in enumerate(self.tables))) for t in pair]
        sends.append(cocotb.start_soon(
            StreamSequence("pcie", chassis).start(self.pcie_in.sequencer)))
        for send in sends:
            await send
        for sb in self.sb_dev_out + self.sb_net_out:
            await sb.wait_drained(timeout=10_000, unit="us")
