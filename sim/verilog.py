"""Emit Verilog for every tlpoe block and lint it with Verilator.

``python -m tlpoe.sim.verilog --out build/verilog [--lint] [--only NAME ...]``
(``make verilog``) writes one ``<name>.v`` per configuration in
:data:`CONFIGS`, each a self-contained top module of that name.
"""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from amaranth.back import verilog

from ..rtl.bridge.bridge import Bridge
from ..rtl.bridge.bridge_csr import BridgeCsr
from ..rtl.queues.classq import ClassQueues
from ..rtl.queues.credits import CreditReturn
from ..rtl.queues.order_check import OrderChecker
from ..rtl.framing.decapsulator import Decapsulator
from ..rtl.framing.deframer import Deframer
from ..rtl.framing.encapsulator import Encapsulator
from ..rtl.fabric.fabric_csr import FabricCsr
from ..rtl.framing.framer import Framer
from ..rtl.link.link_rx import LinkReceiver
from ..rtl.framing.packer import TlpPacker
from ..rtl.link.reorder import ReorderBuffer
from ..rtl.fabric.translate import DeviceFabric, Translator
from ..rtl.link.replay import ReplayBuffer
from ..rtl.framing.unpacker import TlpUnpacker
from .runner import verilator_bin
from .waivers import WAIVERS

__all__ = ["DEFAULT_WIDTH", "CONFIGS", "emit", "lint", "main"]

DEFAULT_WIDTH = 256

#: name -> factory of the elaboratable. The default configuration is
#: ``tlpoe_bridge``: one bridge (both directions of the TLP path and the
#: go-back-N link layer) at 256 bits, MTU 1500, window 16, 12-bit sequences;
#: ``tlpoe_bridge_sr`` is the same with selective repeat;
#: ``tlpoe_bridge_resilient`` with the link state machine and the completion
#: tracker (flaps, peer restarts, completion timeout, containment).
CONFIGS = {
    "tlpoe_bridge": lambda: Bridge(DEFAULT_WIDTH),
    "tlpoe_bridge_sr": lambda: Bridge(DEFAULT_WIDTH, mode="sr"),
    # with the link state machine and the completion tracker (docs/link-state.md)
    "tlpoe_bridge_resilient": lambda: Bridge(DEFAULT_WIDTH, link_state=True, tracker=True),
    "tlpoe_replay": lambda: ReplayBuffer(DEFAULT_WIDTH),
    "tlpoe_link_rx": lambda: LinkReceiver(max_words=Deframer(DEFAULT_WIDTH).max_words),
    "tlpoe_reorder": lambda: ReorderBuffer(DEFAULT_WIDTH, max_words=Deframer(DEFAULT_WIDTH).max_words,
                                           window=16),
    "tlpoe_encapsulator": lambda: Encapsulator(DEFAULT_WIDTH),
    "tlpoe_decapsulator": lambda: Decapsulator(DEFAULT_WIDTH),
    "tlpoe_packer": lambda: TlpPacker(DEFAULT_WIDTH),
    "tlpoe_framer": lambda: Framer(DEFAULT_WIDTH),
    "tlpoe_deframer": lambda: Deframer(DEFAULT_WIDTH),
    "tlpoe_unpacker": lambda: TlpUnpacker(DEFAULT_WIDTH, max_words=Deframer(DEFAULT_WIDTH).max_words),
    "tlpoe_classq": lambda: ClassQueues(DEFAULT_WIDTH),
    "tlpoe_order_check": lambda: OrderChecker(DEFAULT_WIDTH),
    "tlpoe_credit_return": lambda: CreditReturn(DEFAULT_WIDTH),
    "tlpoe_encapsulator_w64": lambda: Encapsulator(64),
    "tlpoe_decapsulator_w64": lambda: Decapsulator(64),
    "tlpoe_encapsulator_w512_mtu9000": lambda: Encapsulator(512, mtu=9000),
    "tlpoe_decapsulator_w512_mtu9000": lambda: Decapsulator(512, mtu=9000),
    "tlpoe_bridge_w512_mtu9000": lambda: Bridge(512, mtu=9000, window=32),
    "tlpoe_translator": lambda: Translator(DEFAULT_WIDTH),
    "tlpoe_translator_w64": lambda: Translator(64),
    "tlpoe_device_fabric": lambda: DeviceFabric(DEFAULT_WIDTH, hosts=2),
    # the same behind their CSR blocks (rtl/csr/*.rdl), AXI4-Lite port `csr`
    "tlpoe_bridge_csr": lambda: BridgeCsr(DEFAULT_WIDTH),
    "tlpoe_device_fabric_csr": lambda: FabricCsr(DEFAULT_WIDTH, hosts=2),
}



def emit(name, out_dir):
    """Write ``out_dir/<name>.v`` for configuration ``name``; returns its path."""
    component = CONFIGS[name]()
    text = verilog.convert(component, name=name, emit_src=False)
    path = Path(out_dir) / f"{name}.v"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def lint(path, top):
    """Run ``verilator --lint-only -Wall`` on ``path``; returns (ok, output)."""
    exe = shutil.which("verilator", path=f"{verilator_bin()}:{os.environ.get('PATH', '')}")
    if exe is None:
        return False, "verilator not found (run `make setup`)"
    waivers = [f"-Wno-{w}" for w in WAIVERS]
    result = subprocess.run([exe, "--lint-only", "-Wall", *waivers, "--top-module", top, str(path)],
                            capture_output=True, text=True)
    return result.returncode == 0, result.stdout + result.stderr


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tlpoe.sim.verilog", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/verilog", help="output folder (default: %(default)s)")
    parser.add_argument("--lint", action="store_true", help="lint each file with verilator -Wall")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(CONFIGS),
                        help="configurations to emit (default: all)")
    args = parser.parse_args(argv)
    failed = []
    for name in args.only or CONFIGS:
        path = emit(name, args.out)
        status = "written"
        if args.lint:
            ok, output = lint(path, name)
            status = "lint clean" if ok else "LINT FAILED"
            if not ok:
                failed.append(name)
                print(output, file=sys.stderr)
        print(f"{path}: {status}")
    if failed:
        print(f"lint failed for: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
