"""`make csr`: everything else the CSR descriptions (``rtl/csr/*.rdl``) give.

``python -m tlpoe.sim.csr --out build/csr`` writes, per description
(``bridge``, ``fabric``; each with its default parameters):

* ``html/<name>/index.html``: register documentation (peakrdl-html);
* ``include/tlpoe_<name>.h``: the C header for host software (peakrdl-cheader);
* ``pyuvm/<name>_ral.py``: the pyuvm register model, a ``uvm_reg_block``
  (peakrdl-pyuvm);
* ``<name>.md``: the register map as a Markdown table (from the same
  :class:`~tlpoe.rtl.csr.regmap.RegisterMap` the Amaranth generator reads).
"""

import argparse
import sys
from pathlib import Path

from ..rtl.csr.regmap import RDL_DIR, compile_rdl, from_node

__all__ = ["DESCRIPTIONS", "export", "markdown", "main"]

#: description -> its top addrmap
DESCRIPTIONS = {"bridge": "tlpoe_bridge", "fabric": "tlpoe_fabric"}


def markdown(regmap):
    """The register map as a Markdown table: address, register, fields."""
    lines = ["| address | register | bits | access | field (port) | reset |",
             "|---|---|---|---|---|---|"]
    access = {"config": "RW", "strobe": "W1P", "status": "RO", "constant": "RO",
              "write-only": "WO"}
    for reg in regmap:
        for k, f in enumerate(reg.fields):
            bits = f"{f.lsb + f.width - 1}:{f.lsb}" if f.width > 1 else f"{f.lsb}"
            lines.append(f"| {f'0x{reg.address:03X}' if k == 0 else ''} | "
                         f"{reg.name if k == 0 else ''} | {bits} | {access[f.kind]} | "
                         f"{f.path.rsplit('.', 1)[1]} (`{f.port}`"
                         f"{''.join(f'[{i}]' for i in f.index)}) | "
                         f"{f'0x{f.reset:X}' if f.kind in ('config', 'constant') else '-'} |")
    return "\n".join(lines) + "\n"


def export(name, out):
    """Every output of description ``name`` under ``out``; returns their paths."""
    from peakrdl_cheader.exporter import CHeaderExporter
    from peakrdl_html import HTMLExporter
    from peakrdl_pyuvm.exporter import PyUVMExporter

    out = Path(out)
    root = compile_rdl(RDL_DIR / f"{name}.rdl", DESCRIPTIONS[name])
    paths = {"html": out / "html" / name / "index.html",
             "header": out / "include" / f"tlpoe_{name}.h",
             "pyuvm": out / "pyuvm" / f"{name}_ral.py",
             "markdown": out / f"{name}.md"}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    HTMLExporter().export(root, str(paths["html"].parent), title=f"tlpoe {name} CSRs")
    CHeaderExporter().export(root, str(paths["header"]))
    PyUVMExporter().export(root, str(paths["pyuvm"]))
    paths["markdown"].write_text(markdown(from_node(root.top)))
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tlpoe.sim.csr",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/csr", help="output folder (default: %(default)s)")
    parser.add_argument("--only", nargs="+", choices=sorted(DESCRIPTIONS),
                        help="descriptions (default: all)")
    args = parser.parse_args(argv)
    for name in args.only or DESCRIPTIONS:
        for kind, path in export(name, args.out).items():
            print(f"{path}: {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
