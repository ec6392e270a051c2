"""The FuseSoC core (``tlpoe.core``): FuseSoC itself reads it, runs our
generator and sets up its targets; Verilator lints the generated bridge
through FuseSoC's own flow; the example clock constraints agree with
``make synth``'s target."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tlpoe.sim import synth
from tlpoe.sim.fusesoc_gen import generate
from tlpoe.sim.runner import ROOT, verilator_bin

CORE = "tlpoe:bridge:bridge:0.1.0"
FUSESOC = shutil.which("fusesoc", path=str(Path(sys.executable).parent))

pytestmark = pytest.mark.skipif(FUSESOC is None, reason="fusesoc not installed (make setup)")


def fusesoc(tmp_path, *args):
    """Run FuseSoC on the repository's cores with its caches under ``tmp_path``."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "PATH": f"{verilator_bin()}:{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run([FUSESOC, "--cores-root", str(ROOT), *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_fusesoc_reads_the_core_and_its_targets(tmp_path):
    out = fusesoc(tmp_path, "core", "show", CORE)
    for target in ("default", "lint", "ecp5", "vivado"):
        assert re.search(rf"^{target}\s*:", out, re.MULTILINE), out


def test_the_generated_bridge_lints_through_fusesoc(tmp_path):
    fusesoc(tmp_path, "run", "--target", "lint", "--build-root", str(tmp_path / "build"), CORE)
    work = tmp_path / "build" / "tlpoe_bridge_bridge_0.1.0" / "lint-verilator"
    verilog, = work.glob("src/*bridge_w64*/tlpoe_bridge.v")
    assert re.search(r"^module tlpoe_bridge\(", verilog.read_text(), re.MULTILINE)
    assert "--top-module tlpoe_bridge" in next(work.glob("*.vc")).read_text()


# (the vivado target is set up the same way; its 512-bit bridge takes over a
# minute to elaborate, so only the ECP5 one runs here)
@pytest.mark.parametrize("target, constraint", [("ecp5", "tlpoe.lpf")])
def test_board_targets_set_up_with_their_constraints(tmp_path, target, constraint):
    fusesoc(tmp_path, "run", "--setup", "--target", target, "--build-root",
            str(tmp_path / "build"), CORE)
    eda = next((tmp_path / "build").rglob("*.eda.yml")).read_text()
    assert constraint in eda and "tlpoe_bridge.v" in eda, eda


def test_the_constraints_say_the_synthesis_target():
    period = 1000 / synth.TARGET_MHZ
    assert synth.lpf_mhz(synth.LPF.read_text()) == synth.TARGET_MHZ
    for name in ("tlpoe.sdc", "tlpoe.xdc"):
        text = (synth.CONSTRAINTS / name).read_text()
        found = re.search(r"create_clock -name clk -period ([0-9.]+) \[get_ports clk\]", text)
        assert found and float(found.group(1)) == pytest.approx(period), name


@pytest.mark.parametrize("parameters, message", [
    ({"design": "bridges"}, "design must be one of"),
    ({"design": "bridge", "width": 64, "windw": 8}, "no parameter windw"),
    ({"design": "bridge", "width": 100}, "width"),
])
def test_a_wrong_generator_parameter_names_itself(tmp_path, parameters, message):
    with pytest.raises(ValueError, match=message):
        generate(parameters, tmp_path)
