"""FuseSoC generator: the Verilog of a tlpoe block with its parameters.

``tlpoe.core`` names this file as the generator ``tlpoe_verilog``. FuseSoC
calls it as ``python3 fusesoc_gen.py <input.yml>`` in a fresh folder; the
input holds ``parameters`` (``design``: a block of :data:`DESIGNS`,
default ``bridge``; ``width``; ``toplevel``, default
``tlpoe_<design>_w<width>``; any other key is a parameter of the block,
``mode``, ``mtu``, ``window``, ...) and ``vlnv``. It writes
``<toplevel>.v`` and a core naming it, which FuseSoC adds to the build.
A wrong design or parameter stops the build with a message that names it.
"""

import inspect
import sys
from pathlib import Path

import yaml
from amaranth.back import verilog

__all__ = ["DESIGNS", "generate", "main"]


def _designs():
    from ..rtl.bridge.bridge import Bridge
    from ..rtl.bridge.bridge_csr import BridgeCsr
    from ..rtl.framing.decapsulator import Decapsulator
    from ..rtl.framing.encapsulator import Encapsulator
    from ..rtl.fabric.translate import DeviceFabric, Translator
    return {"bridge": Bridge, "bridge_csr": BridgeCsr, "encapsulator": Encapsulator,
            "decapsulator": Decapsulator, "translator": Translator, "device_fabric": DeviceFabric}


#: design name -> the component class (its first argument the width).
DESIGNS = ("bridge", "bridge_csr", "encapsulator", "decapsulator", "translator",
           "device_fabric")


def generate(parameters, out_dir):
    """Write the Verilog of ``parameters`` into ``out_dir``; returns
    (its file name, the top module's name)."""
    params = dict(parameters or {})
    design = params.pop("design", "bridge")
    classes = _designs()
    if design not in classes:
        raise ValueError(f"design must be one of {sorted(classes)}, not {design!r}")
    width = params.pop("width", 256)
    top = params.pop("toplevel", f"tlpoe_{design}_w{width}")
    accepted = inspect.signature(classes[design]).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"{design} has no parameter {', '.join(unknown)} "
                         f"(it takes {', '.join(p for p in accepted if p != 'width')})")
    component = classes[design](width, **params)
    name = f"{top}.v"
    (Path(out_dir) / name).write_text(verilog.convert(component, name=top, emit_src=False))
    return name, top


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: fusesoc_gen.py <generator input .yml> (FuseSoC calls it)", file=sys.stderr)
        return 2
    spec = yaml.safe_load(Path(argv[0]).read_text())
    try:
        name, top = generate(spec.get("parameters"), Path.cwd())
    except (TypeError, ValueError) as e:
        print(f"tlpoe_verilog: {e}", file=sys.stderr)
        return 1
    core = {"name": spec["vlnv"],
            "filesets": {"rtl": {"files": [{name: {"file_type": "verilogSource"}}]}},
            "targets": {"default": {"filesets": ["rtl"], "toplevel": top}}}
    Path(f"{top}.core").write_text("CAPI=2:\n" + yaml.safe_dump(core, sort_keys=False))
    return 0


if __name__ == "__main__":
    # run as a file by FuseSoC: import through the installed package
    from tlpoe.sim.fusesoc_gen import main as _main
    sys.exit(_main())
