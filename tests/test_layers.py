"""The folders of rtl/ are layers (docs/architecture.md, "Layers"): a module
imports only from its own layer and those below it, and the RTL never imports
the benches."""

import ast
import sys
from pathlib import Path

import pytest

RTL = Path(__file__).resolve().parents[1] / "rtl"
#: Each layer and the layers it may import (common: the modules at the top of
#: rtl/ and rtl/csr/).
ALLOWED = {
    "common": {"common"},
    "framing": {"common", "framing"},
    "link": {"common", "link"},
    "queues": {"common", "queues"},
    "fabric": {"common", "fabric"},
    "bridge": {"common", "framing", "link", "queues", "fabric", "bridge"},
}


def _layer(path):
    parts = path.relative_to(RTL).parts
    return parts[0] if len(parts) > 1 and parts[0] in ALLOWED else "common"


def _imported(path):
    """(layer, module) of every tlpoe.rtl module ``path`` imports; ``"tb"``
    for an import of the benches."""
    package = path.relative_to(RTL).parent.parts
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0:
            name = node.module or ""
            if name.startswith("tlpoe.tb") or name.startswith("cocotb"):
                yield "tb", name
            continue
        base = list(package[:len(package) - (node.level - 1)]) if node.level > 1 else list(package)
        if node.level - 1 > len(package):
            target = (node.module or "").split(".")      # above rtl/: models, tb, sim
            if target and target[0] in ("tb", "sim"):
                yield "tb", node.module
            continue
        parts = base + (node.module.split(".") if node.module else [])
        layer = parts[0] if parts and parts[0] in ALLOWED and len(parts) > 1 else "common"
        yield layer, ".".join(parts)


MODULES = sorted(p for p in RTL.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(RTL)) for p in MODULES])
def test_a_module_imports_only_its_layer_and_those_below(path):
    own = _layer(path)
    for layer, module in _imported(path):
        assert layer != "tb", f"{path.relative_to(RTL)} imports the benches ({module})"
        assert layer in ALLOWED[own], (f"{path.relative_to(RTL)} (layer {own}) imports "
                                       f"{module} (layer {layer})")


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """A framing module that imported the link layer would fail."""
    assert ("common", "streams") in list(_imported(RTL / "framing" / "packer.py"))
    fake = tmp_path / "rtl" / "framing" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from ..link.replay import ReplayBuffer\n")
    monkeypatch.setattr(sys.modules[__name__], "RTL", tmp_path / "rtl")
    assert list(_imported(fake)) == [("link", "link.replay")]
    assert "link" not in ALLOWED[_layer(fake)]
