"""docs/wire-format.md is generated from the wire format and is up to date."""

import pytest

from tlpoe.models import wire
from tlpoe.models.frame import DropReason, encode_frame
from tlpoe.models.wire import Field, Layout
from tlpoe.sim import wire_doc


def test_doc_in_the_repo_is_up_to_date():
    assert wire_doc.check(wire_doc.DOC_PATH), \
        f"docs/wire-format.md is stale: run {wire_doc.REGENERATE}"
    assert wire_doc.main(["--check"]) == 0


def test_check_fails_on_a_stale_doc_and_says_how_to_regenerate(tmp_path, capsys):
    path = tmp_path / "wire-format.md"
    path.write_text(wire_doc.render().replace("0x88B5", "0x88B6"))
    assert wire_doc.main(["--check", "--path", str(path)]) == 1
    assert "--write" in capsys.readouterr().err


def test_write_then_check_passes(tmp_path):
    path = tmp_path / "docs" / "wire-format.md"
    assert wire_doc.main(["--write", "--path", str(path)]) == 0
    assert wire_doc.main(["--check", "--path", str(path)]) == 0


def test_doc_names_every_field_and_drop_reason():
    text = wire_doc.render()
    for layout in (wire.ETHERNET, wire.BRIDGE_HEADER, wire.TLP_PREFIX):
        for f in layout:
            assert f"`{f.name}`" in text
    for reason in DropReason:
        assert f"| {reason.value} | `{reason.name}` |" in text


def test_worked_example_is_the_encoder_output():
    frame = encode_frame(wire_doc.example_tlps(), **wire_doc.EXAMPLE_HEADER)
    assert wire_doc.hexdump(frame) in wire_doc.render()
    assert [len(t) for t in wire_doc.example_tlps()] == [12, 20]


def test_wire_layouts_cover_their_lengths():
    assert (wire.ETHERNET.length, wire.BRIDGE_HEADER.length, wire.TLP_PREFIX.length) == (14, 26, 4)


@pytest.mark.parametrize("fields", [
    [Field("a", 0, 2, ""), Field("b", 1, 2, "")],                        # overlap
    [Field("a", 0, 1, ""), Field("b", 2, 1, "")],                        # gap at byte 1
    [Field("a", 0, 1, "", bits=4, shift=4), Field("b", 1, 2, "")],       # gap in bits 3:0
    [Field("a", 0, 1, "", bits=4, shift=3), Field("b", 0, 1, "", bits=4, shift=0),
     Field("c", 1, 2, "")],                                              # bit 3 twice, bit 7 never
    [Field("a", 0, 2, ""), Field("b", 2, 2, "")],                        # past the end
], ids=["overlap", "byte-gap", "bit-gap", "bit-overlap", "past-end"])
def test_layout_rejects_overlapping_or_gapped_fields(fields):
    with pytest.raises(ValueError):
        Layout("bad", 3, fields)


def test_layout_accepts_a_gap_free_table():
    layout = Layout("ok", 3, [Field("a", 0, 1, "", bits=4, shift=4),
                              Field("b", 0, 1, "", bits=4, shift=0), Field("c", 1, 2, "")])
    assert layout.unpack(layout.pack(a=1, b=2, c=0x0304)) == {"a": 1, "b": 2, "c": 0x0304}
