"""`make setup`'s system part (sim/setup_system.sh) and tool check
(sim/toolcheck.py), with stand-in tools on PATH: what is installed or asked
for when tshark (or anything else) is missing, and which versions pass."""

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tlpoe.sim import toolcheck

SCRIPT = Path(__file__).resolve().parents[1] / "sim" / "setup_system.sh"
PRESEED = "wireshark-common wireshark-common/install-setuid boolean false"


def shim(folder, name, body="exit 0"):
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def run_setup(tmp_path, tools, uid):
    """Run the script with only ``tools`` (and a fake ``id -u``) on PATH; apt
    and debconf write what they were given to log files."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        shim(bin_dir, tool)
    shim(bin_dir, "id", f"echo {uid}")
    shim(bin_dir, "apt-get", f'echo "$DEBIAN_FRONTEND $*" >> {tmp_path}/apt.log')
    shim(bin_dir, "debconf-set-selections", f"cat >> {tmp_path}/debconf.log")
    shim(bin_dir, "cat", 'exec /bin/cat "$@"')
    env = {"PATH": str(bin_dir), "PYTHON": sys.executable}
    return subprocess.run(["/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True)


ALL = ["iverilog", "g++", "make", "tshark"]


def test_nothing_to_do_when_every_tool_is_there(tmp_path):
    run = run_setup(tmp_path, ALL, uid=1000)
    assert run.returncode == 0 and "tshark" in run.stdout
    assert not (tmp_path / "apt.log").exists()


def test_non_root_gets_the_exact_command_with_the_preseed(tmp_path):
    run = run_setup(tmp_path, ["iverilog", "g++", "make"], uid=1000)
    assert run.returncode == 1
    assert (f"run as root:  echo '{PRESEED}' | debconf-set-selections && apt-get update && "
            "DEBIAN_FRONTEND=noninteractive apt-get install -y tshark") in run.stderr
    assert not (tmp_path / "apt.log").exists()


def test_no_preseed_when_tshark_is_there(tmp_path):
    run = run_setup(tmp_path, ["g++", "make", "tshark"], uid=1000)
    assert "run as root:  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y iverilog" in run.stderr


def test_root_preseeds_then_installs_without_a_prompt(tmp_path):
    run = run_setup(tmp_path, ["iverilog", "g++", "make"], uid=0)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "debconf.log").read_text().strip() == PRESEED
    apt = (tmp_path / "apt.log").read_text().splitlines()
    assert apt[-1].startswith("noninteractive install ") and apt[-1].endswith(" tshark")


# --- the tool check ----------------------------------------------------------------

VERSIONS = {"verilator": "Verilator 5.048 2026-01-01", "iverilog": "Icarus Verilog version 11.0 (stable)"}


@pytest.mark.parametrize("tshark_says, ok", [
    ("TShark (Wireshark) 4.0.17 ... with libpcap, with Lua 5.2.4, with GnuTLS", True),
    ("TShark (Wireshark) 4.4.1 ... with Lua 5.4.6", True),
    ("TShark (Wireshark) 4.0.17 ... without Lua, with GnuTLS", False),
    ("TShark (Wireshark) 3.6.2 ... with Lua 5.2.4", False),
    (None, False),
], ids=["4.0-lua", "4.4-lua", "no-lua", "too-old", "absent"])
def test_toolcheck_wants_tshark_with_lua(tmp_path, monkeypatch, capsys, tshark_says, ok):
    for tool, text in VERSIONS.items():
        shim(tmp_path, tool, f"echo '{text}'")
    if tshark_says is not None:
        shim(tmp_path, "tshark", f"echo '{tshark_says}'")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert toolcheck.main() == (0 if ok else 1)
    out = capsys.readouterr()
    assert ("tshark: 4." in out.out) == ok
    if not ok:
        assert "tshark" in out.err
