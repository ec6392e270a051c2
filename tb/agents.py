"""A generic pyuvm agent for one stream port, on top of the BFMs in
:mod:`tlpoe.tb.bfm` (the agent itself never touches a signal).

Active (``driver_bfm`` given, ``is_active`` not set to UVM_PASSIVE in the
ConfigDB): sequencer + driver + monitor. Passive: monitor only. The monitor
publishes every packet seen as a :class:`~tlpoe.tb.items.StreamItem` on the
agent's analysis port ``ap``.

    agent = StreamAgent("tx", env, monitor_bfm=StreamMonitor(dut, "i", clk, layout),
                        driver_bfm=StreamDriver(dut, "i", clk, layout, valid_gap=0.3))
    ...
    await StreamSequence("seq", payloads).start(agent.sequencer)
"""

from pyuvm import (uvm_active_passive_enum, uvm_agent, uvm_analysis_port, uvm_driver,
                   uvm_monitor, uvm_sequencer)

from .items import StreamItem

__all__ = ["StreamDriverComponent", "StreamMonitorComponent", "StreamAgent"]


class StreamDriverComponent(uvm_driver):
    """Takes :class:`StreamItem` s from the sequencer and sends their bytes;
    ``item_done`` once the final beat has been accepted by the DUT."""

    def __init__(self, name, parent, bfm):
        super().__init__(name, parent)
        self.bfm = bfm

    async def run_phase(self):
        while True:
            item = await self.seq_item_port.get_next_item()
            await self.bfm.send(item.data)
            self.seq_item_port.item_done()


class StreamMonitorComponent(uvm_monitor):
    """Publishes each packet its BFM reassembles as a :class:`StreamItem` on ``ap``."""

    def __init__(self, name, parent, bfm):
        super().__init__(name, parent)
        if bfm.callback is not None:
            raise ValueError(f"{bfm.name} already delivers packets to {bfm.callback!r}")
        self.bfm = bfm
        self.ap = uvm_analysis_port("ap", self)
        self.count = 0
        bfm.callback = self._publish

    def _publish(self, packet):
        self.count += 1
        self.ap.write(StreamItem(self.bfm.name, packet.data, first_cycle=packet.first_cycle,
                                 last_cycle=packet.last_cycle, beats=packet.beats))


class StreamAgent(uvm_agent):
    """Sequencer, driver and monitor for one stream port (see module doc)."""

    def __init__(self, name, parent, *, monitor_bfm, driver_bfm=None):
        super().__init__(name, parent)
        self.monitor_bfm = monitor_bfm
        self.driver_bfm = driver_bfm
        self.sequencer = self.driver = None

    def build_phase(self):
        super().build_phase()   # reads is_active from the ConfigDB (default active)
        self.monitor = StreamMonitorComponent("monitor", self, self.monitor_bfm)
        self.ap = self.monitor.ap
        if self.driver_bfm is not None and self.is_active == uvm_active_passive_enum.UVM_ACTIVE:
            self.sequencer = uvm_sequencer("sequencer", self)
            self.driver = StreamDriverComponent("driver", self, self.driver_bfm)

    def connect_phase(self):
        if self.driver is not None:
            self.driver.seq_item_port.connect(self.sequencer.seq_item_export)
