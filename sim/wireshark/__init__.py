"""The Wireshark dissector for tlpoe frames, ``sim/wireshark/tlpoe.lua``.

The Lua file is written by hand except for one section, the tables it
dissects by, which is generated from the one definition of the wire format
(:mod:`tlpoe.models.wire`, :mod:`tlpoe.models.frame`) and of the TLP headers
(:mod:`tlpoe.models.tlp`), so the dissector cannot drift from the models::

    python -m tlpoe.sim.wireshark --write   # regenerate the section
    python -m tlpoe.sim.wireshark --check   # exit 1 if it is out of date

Use: ``tshark -X lua_script:sim/wireshark/tlpoe.lua -r capture.pcap``, or
copy the file to Wireshark's personal Lua plugins folder (docs/wireshark.md).
"""

import argparse
import sys
from pathlib import Path

from tlpoe.models import frame as fm
from tlpoe.models import tlp, transport, wire

__all__ = ["LUA_PATH", "REGENERATE", "BEGIN", "END", "render_tables", "render", "check", "main"]

LUA_PATH = Path(__file__).resolve().parent / "tlpoe.lua"
REGENERATE = "python -m tlpoe.sim.wireshark --write"
BEGIN = "-- BEGIN GENERATED TABLES"
END = "-- END GENERATED TABLES"


def _lua_str(text):
    """``text`` as a Lua 5.2 string literal (non-ASCII as UTF-8 byte escapes)."""
    out = []
    for byte in str(text).encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def _lua_bool(value):
    return "true" if value else "false"


def _fields(layout, indent="    "):
    rows = [f"{indent}  {_field_row(f)}," for f in layout]
    return "{\n" + "\n".join(rows) + f"\n{indent}}}"


def _names(mapping, indent="    "):
    """A Lua table ``{ [value] = "NAME", ... }`` from ``(value, name)`` pairs."""
    rows = [f"{indent}  [{value}] = {_lua_str(name)}," for value, name in mapping]
    return "{\n" + "\n".join(rows) + f"\n{indent}}}"


def _fmt_and_type():
    """The Fmt and Type fields, the same in every TLP header layout."""
    fields = {(layout["fmt"], layout["type"]) for layout in tlp.HEADER_LAYOUTS.values()}
    if len(fields) != 1:
        raise ValueError("Fmt and Type differ between the TLP header layouts")
    return fields.pop()


def _field_row(f):
    return (f"{{ name = {_lua_str(f.name)}, offset = {f.offset}, size = {f.size}, "
            f"bits = {f.width}, shift = {f.shift}, whole = {_lua_bool(not f.bits)}, "
            f"doc = {_lua_str(f.doc)} }}")


def _tlp_types():
    """``[Fmt * 2**width(Type) + Type] = { ... }`` for every Fmt/Type pair
    models.tlp decodes."""
    type_bits = _fmt_and_type()[1].width
    rows = []
    # models.tlp's own decode table and layout choice: the one definition
    for (fmt, code), tlp_type in sorted(tlp._DECODE.items()):
        four_dw = bool(fmt & 1)
        rows.append(
            f"      [{fmt << type_bits | code}] = {{ name = {_lua_str(tlp_type.value)}, "
            f"layout = {_lua_str(tlp._layout_kind(tlp_type, four_dw))}, "
            f"header = {16 if four_dw else 12}, data = {_lua_bool(tlp_type.has_data)}, "
            f"raw_length = {_lua_bool(tlp._length_is_raw(tlp_type))}, "
            f"message = {_lua_bool(tlp_type.is_message)} }},")
    return "{\n" + "\n".join(rows) + "\n    }"


def _flags():
    flags = sorted((getattr(fm, n), n) for n in dir(fm) if n.startswith("FLAG_"))
    rows = [f"      {{ name = {_lua_str(n[len('FLAG_'):].lower())}, mask = 0x{v:02X} }},"
            for v, n in flags]
    return "{\n" + "\n".join(rows) + "\n    }"


def render_tables():
    """The generated section of tlpoe.lua, markers included."""
    headers = ",\n".join(f"      {name} = {_fields(layout, '      ')}"
                         for name, layout in tlp.HEADER_LAYOUTS.items())
    lines = [
        BEGIN,
        f"-- Written by `{REGENERATE}` from models/wire.py, models/frame.py and",
        "-- models/tlp.py; do not edit by hand.",
        "local W = {",
        f"    ETHERTYPE = 0x{wire.ETHERTYPE:04X},",
        f"    UDP_PORT = {transport.UDP_PORT},      -- the udp transport's (models/transport.py)",
        f"    VERSION = {wire.VERSION},",
        f"    ETH_LEN = {wire.ETH_LEN},",
        f"    BRIDGE_LEN = {wire.BRIDGE_LEN},",
        f"    HEADER_LEN = {wire.HEADER_LEN},",
        f"    PREFIX_LEN = {wire.PREFIX_LEN},",
        f"    CRC_LEN = {wire.CRC_LEN},",
        f"    MIN_TLP = {wire.MIN_TLP},",
        f"    BRIDGE_HEADER = {_fields(wire.BRIDGE_HEADER)},",
        f"    TLP_PREFIX = {_fields(wire.TLP_PREFIX)},",
        f"    FLAGS = {_flags()},",
        f"    FRAME_TYPES = {_names((t.value, t.name) for t in wire.FrameType)},",
        "    -- a KEEPALIVE's link-state fields, in the credit fields' bytes",
        f"    KEEPALIVE_OFFSET = {wire.KEEPALIVE_OFFSET},",
        f"    KEEPALIVE_FIELDS = {_fields(wire.KEEPALIVE_FIELDS)},",
        f"    LINK_STATES = {_names((s.value, s.name) for s in wire.LinkState)},",
        f"    DROP_REASONS = {_names((r.value, r.name) for r in fm.DropReason)},",
        "    -- TLP header layouts (models.tlp.HEADER_LAYOUTS)",
        "    TLP_HEADERS = {\n" + headers + "\n    },",
        f"    TLP_FMT = {_field_row(_fmt_and_type()[0])},",
        f"    TLP_TYPE_CODE = {_field_row(_fmt_and_type()[1])},",
        "    -- Fmt * 2^bits(Type) + Type -> type; a pair not listed is reserved",
        f"    TLP_TYPES = {_tlp_types()},",
        f"    ATTR = {_names((a.value, a.name) for a in tlp.Attr)},",
        f"    CPL_STATUS = {_names((s.value, s.name) for s in tlp.CplStatus)},",
        f"    MSG_ROUTING = {_names((r.value, r.name) for r in tlp.MsgRouting)},",
        "}",
        END,
    ]
    return "\n".join(lines)


def render(text):
    """``text`` (the Lua file) with its generated section replaced by
    :func:`render_tables`; ValueError if the markers are missing."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the Lua file has no '{BEGIN}' ... '{END}' section")
    return text[:start] + render_tables() + text[end + len(END):]


def check(path=LUA_PATH):
    """True when ``path``'s generated section is exactly :func:`render_tables`."""
    path = Path(path)
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    try:
        return render(text) == text
    except ValueError:
        return False


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tlpoe.sim.wireshark",
                                     description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true",
                      help="exit 1 if the generated section is out of date")
    mode.add_argument("--write", action="store_true", help="(re)write the generated section")
    parser.add_argument("--path", type=Path, default=LUA_PATH, help=f"default: {LUA_PATH}")
    args = parser.parse_args(argv)
    if args.write:
        args.path.write_text(render(args.path.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"wrote {args.path}")
        return 0
    if check(args.path):
        return 0
    print(f"{args.path} is out of date with models/wire.py, models/frame.py and "
          f"models/tlp.py; regenerate it with:\n    {REGENERATE}", file=sys.stderr)
    return 1
