"""`make csr`: HTML docs, C header and pyuvm register model from the RDL,
with the same offsets as the compiled description the RTL is built from."""

import importlib.util
import re
import shutil
import subprocess
import warnings

import pytest

from tlpoe.rtl.csr.regmap import load
from tlpoe.sim import csr


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("csr")
    return out, {name: csr.export(name, out) for name in csr.DESCRIPTIONS}


@pytest.mark.parametrize("name", sorted(csr.DESCRIPTIONS))
def test_every_output_is_written(outputs, name):
    _, paths = outputs
    for kind, path in paths[name].items():
        assert path.is_file() and path.stat().st_size > 0, (kind, path)
    html = paths[name]["html"].parent
    assert any(html.rglob("*.js")), "peakrdl-html writes its register data as scripts"


@pytest.mark.parametrize("name", sorted(csr.DESCRIPTIONS))
def test_c_header_offsets_and_fields_equal_the_compiled_rdl(outputs, tmp_path, name):
    """offsetof() of every register in the header's struct (compiled with
    the C compiler) and every field's _bp/_bw macro equal the RegisterMap's."""
    _, paths = outputs
    header = paths[name]["header"]
    regmap = load(name)
    top = csr.DESCRIPTIONS[name]
    text = header.read_text()
    for reg in regmap:
        for f in reg.fields:
            macro = "__".join([top.upper()] + [re.sub(r"\[\d+\]", "", part).upper()
                                               for part in f.path.split(".")[1:]])
            assert re.search(rf"#define {macro}_bp {f.lsb}\b", text), (macro, f.lsb)
            assert re.search(rf"#define {macro}_bw {f.width}\b", text), (macro, f.width)
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    program = tmp_path / "offsets.c"
    program.write_text(f'#include <stdio.h>\n#include <stddef.h>\n#include "{header.name}"\n'
                       "int main(void) {\n" + "".join(
                           f'    printf("%zu\\n", offsetof({top}_t, {reg.name}));\n'
                           for reg in regmap) + "    return 0;\n}\n")
    exe = tmp_path / "offsets"
    subprocess.run([cc, "-std=gnu11", "-I", str(header.parent), str(program), "-o", str(exe)],
                   check=True, capture_output=True)
    offsets = [int(line) for line in subprocess.run([str(exe)], check=True, capture_output=True,
                                                    text=True).stdout.split()]
    assert offsets == [reg.address for reg in regmap]


@pytest.mark.parametrize("name", sorted(csr.DESCRIPTIONS))
def test_pyuvm_register_model_builds_with_the_rdl_offsets(outputs, name):
    _, paths = outputs
    spec = importlib.util.spec_from_file_location(f"{name}_ral", paths[name]["pyuvm"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    top = csr.DESCRIPTIONS[name]
    block = getattr(module, top)(top)
    block.build()
    regmap = load(name)
    reg_map = block.get_default_map()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        top_level = {r.get_name(): r.get_offset(reg_map) for r in reg_map.get_registers(0)}
    expected = {reg.name: reg.address for reg in regmap
                if "." not in reg.name}
    assert top_level == expected


def test_markdown_lists_every_register(outputs):
    _, paths = outputs
    text = paths["fabric"]["markdown"].read_text()
    for reg in load("fabric"):
        assert f"| {reg.name} |" in text
