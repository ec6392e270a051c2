"""Wrong parameters raise at elaboration with a message naming the parameter."""

import pytest

from tlpoe.rtl.bridge.bridge import Bridge
from tlpoe.rtl.framing.crc import Crc32Update
from tlpoe.rtl.framing.decapsulator import Decapsulator
from tlpoe.rtl.framing.encapsulator import Encapsulator
from tlpoe.rtl.framing.framer import Framer
from tlpoe.rtl.link.link_rx import LinkReceiver
from tlpoe.tb.tops import Loopback
from tlpoe.rtl.framing.packer import TlpPacker


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("make, name", [
    (lambda: Encapsulator(100), "width"),
    (lambda: Decapsulator(32), "width"),
    (lambda: Loopback(1024), "width"),
    (lambda: Encapsulator(256, mtu=1234), "mtu"),
    (lambda: Decapsulator(256, mtu=4000), "mtu"),
    (lambda: Encapsulator(256, flush_timeout=0), "flush_timeout"),
    (lambda: TlpPacker(256, flush_timeout=70000), "flush_timeout"),
    (lambda: TlpPacker(256, max_tlps=0), "max_tlps"),
    (lambda: Framer(256, ethertype=0x0100), "ethertype"),
    (lambda: Decapsulator(256, ethertype=0x10000), "ethertype"),
    (lambda: Crc32Update(96), "width"),
    (lambda: LinkReceiver(max_words=8, nak_timeout=-1), "nak_timeout"),
    (lambda: LinkReceiver(max_words=8, nak_timeout=2 ** 24), "nak_timeout"),
    (lambda: Bridge(64, queue_depth=100), "queue_depth"),
    (lambda: Bridge(64, queue_tlps=128), "queue_tlps"),
    (lambda: Bridge(64, tx_queue_depth=10), "tx_queue_depth"),
    (lambda: Bridge(64, credit_delay=0), "credit_delay"),
    (lambda: Bridge(64, credit_refresh=2 ** 24), "credit_refresh"),
    (lambda: Bridge(64, ecn=True), "ecn"),
    (lambda: Bridge(64, transport="udp", ecn=1), "ecn"),
    (lambda: Bridge(64, transport="udp", ecn=True, line_bytes=0), "line_bytes"),
])
def test_bad_parameter_names_itself(make, name):
    with pytest.raises(ValueError, match=name):
        make()


@pytest.mark.parametrize("width", [64, 128, 256, 512])
def test_every_width_elaborates(width):
    from amaranth.back import rtlil
    assert rtlil.convert(Loopback(width, mtu=9000 if width == 512 else 1500))
