"""sim/wireshark/tlpoe.lua's generated tables come from the models and the
committed file is up to date (as docs/wire-format.md is, tests/test_wire_doc.py)."""

import pytest

from tlpoe.models import tlp, wire
from tlpoe.models.frame import DropReason
from tlpoe.sim import wireshark


def test_lua_in_the_repo_is_up_to_date():
    assert wireshark.check(wireshark.LUA_PATH), \
        f"sim/wireshark/tlpoe.lua is stale: run {wireshark.REGENERATE}"
    assert wireshark.main(["--check"]) == 0


def test_check_fails_on_a_stale_file_and_says_how_to_regenerate(tmp_path, capsys):
    path = tmp_path / "tlpoe.lua"
    path.write_text(wireshark.LUA_PATH.read_text().replace("ETHERTYPE = 0x88B5", "ETHERTYPE = 0x88B6"))
    assert wireshark.main(["--check", "--path", str(path)]) == 1
    assert wireshark.REGENERATE in capsys.readouterr().err


def test_write_replaces_only_the_generated_section(tmp_path):
    path = tmp_path / "tlpoe.lua"
    path.write_text(f"-- before\n{wireshark.BEGIN}\nstale\n{wireshark.END}\n-- after\n")
    assert wireshark.main(["--write", "--path", str(path)]) == 0
    text = path.read_text()
    assert text.startswith("-- before\n") and text.endswith("\n-- after\n")
    assert "stale" not in text and wireshark.render_tables() in text
    assert wireshark.main(["--check", "--path", str(path)]) == 0


def test_a_file_without_the_markers_is_refused(tmp_path):
    with pytest.raises(ValueError, match="GENERATED"):
        wireshark.render("-- no markers\n")
    path = tmp_path / "tlpoe.lua"
    path.write_text("-- no markers\n")
    assert not wireshark.check(path)


def test_tables_name_every_field_type_and_reason():
    tables = wireshark.render_tables()
    for layout in (wire.BRIDGE_HEADER, wire.TLP_PREFIX, *tlp.HEADER_LAYOUTS.values()):
        for f in layout:
            assert (f'{{ name = "{f.name}", offset = {f.offset}, size = {f.size}, '
                    f"bits = {f.width}, shift = {f.shift}") in tables
    for t in tlp.TlpType:
        assert f'name = "{t.value}", layout = ' in tables
    for names in (wire.FrameType, DropReason, tlp.CplStatus, tlp.MsgRouting):
        for member in names:
            assert f'[{member.value}] = "{member.name}",' in tables
    assert f"ETHERTYPE = 0x{wire.ETHERTYPE:04X}," in tables


def test_lua_strings_escape_quotes_and_non_ascii():
    assert wireshark._lua_str('a "b" \\ é') == '"a \\"b\\" \\\\ \\195\\169"'
