"""sim/objcache.py: Verilator's runtime compiled once, copied into later builds."""

import sys

from tlpoe.sim import objcache

COMPILER = """import sys
from pathlib import Path
out = Path(sys.argv[sys.argv.index("-o") + 1])
out.write_text("object of " + sys.argv[-1])
out.with_suffix(".d").write_text("deps")
with open(sys.argv[1], "a") as log:
    log.write(sys.argv[-1] + "\\n")
"""


def compile_in(build, runtime, log, *flags):
    build.mkdir(exist_ok=True)
    cmd = [sys.executable, str(runtime.parent / "cc.py"), str(log), "-Os", *flags,
           "-c", "-o", str(build / "verilated.o"), str(runtime / "verilated.cpp")]
    assert objcache.main(cmd) == 0
    return (build / "verilated.o").read_text()


def test_the_runtime_is_compiled_once_per_command(tmp_path, monkeypatch):
    monkeypatch.setattr(objcache, "CACHE", tmp_path / "cache")
    runtime = tmp_path / "include"
    runtime.mkdir()
    (runtime / "verilated.cpp").write_text("int x;")
    (runtime / "verilated_config.h").write_text("#define VERILATOR_VERSION 5.048")
    (tmp_path / "cc.py").write_text(COMPILER)
    log = tmp_path / "compiled.log"
    first = compile_in(tmp_path / "a", runtime, log)
    assert compile_in(tmp_path / "b", runtime, log) == first
    assert (tmp_path / "b" / "verilated.d").read_text() == "deps"
    assert len(log.read_text().splitlines()) == 1
    compile_in(tmp_path / "c", runtime, log, "-DVM_COVERAGE=1")    # other flags: compiled
    assert len(log.read_text().splitlines()) == 2


def test_a_design_file_is_never_cached():
    assert objcache.cache_key(["c++", "-c", "-o", "Vtop.o", "Vtop.cpp"]) is None
    assert objcache.cache_key(["c++", "-c", "-o", "verilator.o", "/x/verilator.cpp"]) is None
