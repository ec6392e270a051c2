"""`make verilog`: Verilog for the default configuration, linted by Verilator -Wall."""

import pytest

from tlpoe.sim import verilog


def test_default_configuration_emits_and_lints(tmp_path):
    path = verilog.emit("tlpoe_bridge", tmp_path)
    text = path.read_text()
    assert "module tlpoe_bridge(" in text
    for port in ("tlp_in__payload", "frame_out__payload", "frame_in__valid", "tlp_out__ready"):
        assert port in text
    ok, output = verilog.lint(path, "tlpoe_bridge")
    assert ok, output


def test_lint_fails_on_a_real_warning(tmp_path):
    """The waivers are narrow: an inferred latch is still an error."""
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input wire a, input wire b, output wire c);\n"
                   "  reg q;\n  always @* if (a) q = b;\n  assign c = q;\nendmodule\n")
    ok, output = verilog.lint(bad, "bad")
    assert not ok and "LATCH" in output


def test_cli_rejects_an_unknown_configuration(capsys):
    with pytest.raises(SystemExit) as exit_:
        verilog.main(["--only", "no_such_block"])
    assert exit_.value.code == 2
    assert "no_such_block" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("name", sorted(verilog.CONFIGS))
def test_every_configuration_elaborates_its_parameters(name):
    """Each `make verilog` configuration passes its blocks' parameter checks
    (the full emit and lint of all of them is `make verilog`)."""
    assert verilog.CONFIGS[name]() is not None
