"""sim/depth.py: the register-to-register path walk over a Yosys JSON
netlist (hand-made netlists, no synthesis), and the CLI's arguments."""

import pytest

from tlpoe.sim.depth import longest_path, main

_DIRS = {"LUT": {"I0": "input", "I1": "input", "O": "output"},
         "FDRE": {"C": "input", "D": "input", "CE": "input", "Q": "output"},
         "CARRY4": {"CI": "input", "S": "input", "O": "output"},
         "MUXF7": {"I0": "input", "I1": "input", "O": "output"}}


def cell(kind, src="", **connections):
    dirs = _DIRS["LUT" if kind.startswith("LUT") else kind]
    return {"type": kind, "port_directions": dirs,
            "connections": {p: [b] for p, b in connections.items()},
            "attributes": {"src": src}}


def netlist(cells, ports=None):
    return {"modules": {"top": {"cells": cells, "ports": ports or {}}}}


def chain():
    """ff1 -> lut a -> lut b -> carry -> muxf7 -> lut c -> ff2; ff1 -> lut d -> ff3;
    port x -> lut e -> ff3.CE."""
    return {
        "ff1": cell("FDRE", "/w/rtl/link/replay.py:10.1-10.5", D=2, Q=10),
        "a": cell("LUT2", I0=10, I1=10, O=11),
        "b": cell("LUT2", I0=11, I1=10, O=12),
        "k": cell("CARRY4", CI=12, S=11, O=13),
        "m": cell("MUXF7", I0=13, I1=12, O=14),
        "c": cell("LUT6", I0=14, I1=10, O=15),
        "ff2": cell("FDRE", "/w/rtl/framing/framer.py:20.1-20.5", D=15, Q=16),
        "d": cell("LUT1", I0=10, O=17),
        "e": cell("LUT1", I0=3, O=18),
        "ff3": cell("FDRE", D=17, CE=18, Q=19),
    }


def test_the_deepest_path_counts_luts_and_carries_apart():
    path = longest_path(netlist(chain()), "top")
    assert path["lut_levels"] == 3 and path["carry_cells"] == 1
    assert path["cells"] == ["LUT2", "LUT2", "CARRY4", "MUXF7", "LUT6"]
    assert path["start"] == "FDRE (link/replay.py:10)"
    assert path["end"] == "FDRE (framing/framer.py:20) .D"


def test_a_path_to_an_output_port_counts():
    cells = chain()
    cells["f"] = cell("LUT3", I0=15, I1=15, O=20)
    cells["g"] = cell("LUT3", I0=20, I1=20, O=21)
    path = longest_path(netlist(cells, {"out": {"direction": "output", "bits": [21]}}), "top")
    assert path["lut_levels"] == 5 and path["end"] == "port out"


def test_a_combinational_loop_is_refused():
    cells = {"a": cell("LUT2", I0=2, I1=3, O=4), "b": cell("LUT2", I0=4, I1=4, O=2),
             "ff": cell("FDRE", D=4, Q=3)}
    with pytest.raises(ValueError, match="combinational loop"):
        longest_path(netlist(cells), "top")


def test_an_unknown_cell_is_named():
    cells = chain()
    cells["x"] = {"type": "DSP48E2", "port_directions": {}, "connections": {},
                  "attributes": {}}
    longest_path(netlist(cells), "top")     # a DSP is a boundary
    cells["y"] = {"type": "GTYE4", "port_directions": {}, "connections": {},
                  "attributes": {}}
    with pytest.raises(ValueError, match="GTYE4"):
        longest_path(netlist(cells), "top")


@pytest.mark.parametrize("argv", [["--jobs", "0"], ["--blocks", "nonesuch"],
                                  ["--widths", "96"]])
def test_a_bad_argument_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and capsys.readouterr().err


def test_a_distributed_ram_read_is_a_level_and_its_write_ends_a_path():
    """ff1 -> lut a -> RAM32M16 read address -> lut b -> ff2; lut a also
    drives the RAM's data input (a path that ends there)."""
    ram_dirs = {"ADDRA": "input", "DIA": "input", "WE": "input", "WCLK": "input",
                "DOA": "output"}
    cells = {
        "ff1": cell("FDRE", D=2, Q=10),
        "a": cell("LUT2", I0=10, I1=10, O=11),
        "ram": {"type": "RAM32M16", "port_directions": ram_dirs,
                "connections": {"ADDRA": [11], "DIA": [11], "WE": [10], "WCLK": [1],
                                "DOA": [12]}, "attributes": {}},
        "b": cell("LUT3", I0=12, I1=12, O=13),
        "ff2": cell("FDRE", D=13, Q=14),
    }
    path = longest_path(netlist(cells), "top")
    assert path["lut_levels"] == 3 and path["cells"] == ["LUT2", "RAM32M16", "LUT3"]
