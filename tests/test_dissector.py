"""The Wireshark dissector (sim/wireshark/tlpoe.lua) against the models.

tshark decodes captures with the dissector and, for every frame, its fields
must equal the models' decode: the bridge header (models.wire), the receive
verdict and the CRC (models.frame), each TLP's prefix and header
(models.tlp). Two sources of frames: a model-built capture that holds every
TLP type, every frame type and a frame for every drop reason, and the
capture of a link testbench run with bit errors and drops (``PCAP=1``).

Without tshark the tests are skipped, except in CI (``CI=true``), where a
missing tshark fails them: ``make setup`` installs it.
"""

import functools
import json
import os
import random
import shutil
import subprocess

import pytest

from tlpoe.models import frame as fm
from tlpoe.models import tlp as tm
from tlpoe.models import wire
from tlpoe.models.frame import ETH_REASONS, FrameError, decode_frame, encode_frame
from tlpoe.models.pcap import read_pcap, write_pcap
from tlpoe.models.tlp import (Attr, CplStatus, MsgRouting, PcieId, ReservedTypeError, Tlp,
                              TlpError, TlpType)
from tlpoe.rtl.bridge.bridge import Bridge
from tlpoe.tb.tops import Pair
from tlpoe.sim import wireshark
from tlpoe.sim.runner import run_cocotb, simulators
from tlpoe.tb.faults import control_frame, malformed_frame, model_verdict
from tlpoe.tb.params import PCAP_DIR_ENV

TSHARK = shutil.which("tshark")


def require_tshark(path, environ):
    """``path`` (tshark's) if there is one; otherwise skip, or fail when
    ``environ`` says CI (``CI=true``): CI must run these tests."""
    if path is not None:
        return path
    if environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail("tshark is not installed and CI=true: `make setup` installs it "
                    "(sim/setup_system.sh)")
    pytest.skip("tshark is not installed: `make setup` installs it (as root; otherwise "
                "it prints the apt-get command)")


@pytest.fixture
def tshark():
    """tshark's path; skips without it, fails without it in CI."""
    return require_tshark(TSHARK, os.environ)


def test_missing_tshark_is_skipped_outside_ci_and_fails_in_ci():
    assert require_tshark("/usr/bin/tshark", {"CI": "true"}) == "/usr/bin/tshark"
    with pytest.raises(pytest.skip.Exception, match="make setup"):
        require_tshark(None, {})
    with pytest.raises(pytest.skip.Exception):
        require_tshark(None, {"CI": "false"})
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_tshark(None, {"CI": "true"})


# --- running tshark ------------------------------------------------------------------

def dissect(tshark, pcap, lua=wireshark.LUA_PATH, prefs=()):
    """Per packet of ``pcap``, the tlpoe layer as (key, value) pairs in tree
    order (None where tshark did not call the dissector)."""
    cmd = [tshark, "-n", "-X", f"lua_script:{lua}", "-r", str(pcap), "-T", "json"]
    for pref in prefs:
        cmd += ["-o", pref]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "Lua" not in run.stderr, f"the dissector did not load:\n{run.stderr}"
    assert "_ws.lua.error" not in run.stdout, "the dissector raised a Lua error:\n" + "\n".join(
        line for line in run.stdout.splitlines() if "Lua Error" in line)
    packets = json.loads(run.stdout, object_pairs_hook=list)
    layers = [dict(dict(dict(p)["_source"])["layers"]) for p in packets]
    return [layer.get("tlpoe") for layer in layers]


def _walk(pairs, fields, experts, tlps):
    for key, value in pairs:
        if key == "_ws.expert":
            experts += [k for k, _ in value if not k.startswith("_ws.")]
        elif key in ("tlpoe.tlp", "tlpoe.tlp_tree") and isinstance(value, list):
            tlp = {"experts": []}
            _walk(value, tlp, tlp["experts"], None)
            tlps.append(tlp)
        elif isinstance(value, list):
            _walk(value, fields, experts, tlps)            # a field's subtree
        else:
            assert key not in fields, f"{key} twice at one level"
            fields[key] = value


def _number(text):
    return int(text, 0)


def _tlp_view(fields):
    """A dissected TLP in the shape of :func:`expected_tlp`."""
    out = {"experts": sorted(fields.pop("experts"))}
    for key, value in fields.items():
        name = key.removeprefix("tlpoe.tlp.").removeprefix("tlpoe.prefix.")
        if name in TLP_KEYS:
            if name == "type":
                out[name] = value
            elif name in ("data", "digest"):
                out[name] = bytes.fromhex(value.replace(":", ""))
            elif name.startswith("attr."):
                out[name] = bool(_number(value))
            else:
                out[name] = _number(value)
    return out


def view(layer):
    """A dissected frame (the tlpoe layer from :func:`dissect`) in the shape of
    :func:`expected_view`."""
    if layer is None:
        return {"tlpoe": False}
    fields, experts, tlps = {}, [], []
    _walk(layer, fields, experts, tlps)
    out = {"tlpoe": True, "experts": sorted(experts),
           "header": {k.removeprefix("tlpoe."): _number(v) for k, v in fields.items()
                      if k.removeprefix("tlpoe.") in HEADER_KEYS},
           "drop_reason": _number(fields["tlpoe.drop_reason"]) if "tlpoe.drop_reason" in fields else None,
           "keepalive": {k.removeprefix("tlpoe.keepalive."): _number(v) for k, v in fields.items()
                         if k.startswith("tlpoe.keepalive.")},
           "crc": None, "tlps": [_tlp_view(t) for t in tlps]}
    if "tlpoe.crc" in fields:
        out["crc"] = (_number(fields["tlpoe.crc"]), _number(fields["tlpoe.crc.computed"]),
                      _number(fields["tlpoe.crc.status"]))
    return out


# --- what the models say ----------------------------------------------------------------

FLAG_NAMES = {getattr(fm, n): "flags." + n[len("FLAG_"):].lower() for n in dir(fm)
              if n.startswith("FLAG_")}
HEADER_KEYS = {f.name for f in wire.BRIDGE_HEADER} | set(FLAG_NAMES.values()) | {"flags.reserved"}
TLP_KEYS = {"tlp_length", "order_stamp", "type", "header_dws", "fmt", "type_code", "length", "tc",
            "td", "ep", "th", "ln", "at", "attr", "attr.ro", "attr.ns", "attr.ido",
            "requester_id", "tag", "first_be", "last_be", "address", "ph", "dest_id",
            "register", "message_code", "routing", "completer_id", "status", "bcm",
            "byte_count", "lower_address", "data", "digest"}


def expected_tlp(raw, stamp):
    """What the dissector must show for TLP bytes ``raw``: models.tlp's decode."""
    out = {"tlp_length": len(raw), "order_stamp": stamp, "experts": []}
    try:
        t = Tlp.unpack(raw)
    except ReservedTypeError:
        return {**out, "type": "reserved", "experts": ["tlpoe.tlp.reserved_type"]}
    except TlpError:
        # a known type whose Length and TD call for another size: the header
        # decoded all the same, the payload as far as it goes
        out["experts"] = ["tlpoe.tlp.size_mismatch"]
        try:
            t = Tlp.unpack(raw[:tm.tlp_size_from_header(raw)], allow_truncated=True)
        except TlpError:                                  # not even the header is whole
            name = tm._decode_type(raw[0] >> 5, raw[0] & 0x1F).value
            return {**out, "type": name, "header_dws": 4 if raw[0] & 0x20 else 3}
    out.update(type=t.type.value, header_dws=t.header_size // 4, fmt=int(t.fmt),
               type_code=t.type_code, length=t.length, tc=t.tc, td=int(t.td), ep=int(t.ep),
               th=int(t.th), ln=int(t.ln), at=t.at, attr=int(t.attr), **{
                   "attr.ro": t.ro, "attr.ns": t.ns, "attr.ido": t.ido},
               requester_id=int(t.requester_id), tag=t.tag)
    if t.data:
        out["data"] = t.data
    if t.digest is not None:
        out["digest"] = t.digest
    if t.type.is_memory or t.type.is_io:
        out.update(address=t.address, first_be=t.first_be, last_be=t.last_be, ph=t.ph)
    elif t.type.is_config:
        out.update(dest_id=int(t.dest_id), register=t.register, first_be=t.first_be,
                   last_be=t.last_be)
    elif t.type.is_message:
        out.update(message_code=t.message_code, address=t.address, routing=int(t.routing))
    else:
        out.update(completer_id=int(t.completer_id), status=int(t.status), bcm=int(t.bcm),
                   byte_count=t.byte_count, lower_address=t.lower_address)
    return out


def _model_tlps(frame, length, verdict, ethertype):
    """The TLPs and stamps the model finds in the TLP area: decode_frame's for
    a good frame; for a dropped one the model's own prefix walk, None where
    that overruns."""
    if verdict is None:
        decoded = decode_frame(frame, ethertype=ethertype)
        return decoded.tlps, decoded.stamps
    try:
        return fm._walk_prefixes(frame, length)
    except FrameError:
        return None


def expected_view(frame, mtu=None, ethertype=wire.ETHERTYPE):
    """What the dissector must show for ``frame``, from the models."""
    if len(frame) < wire.ETH_LEN or wire.ETHERNET["ethertype"].get(frame) != ethertype:
        return {"tlpoe": False}
    try:
        decode_frame(frame, ethertype=ethertype, mtu=mtu)
        verdict = None
    except FrameError as e:
        verdict = e.reason
    out = {"tlpoe": True, "drop_reason": None if verdict is None else int(verdict),
           "experts": [] if verdict is None else ["tlpoe.dropped"], "header": {}, "crc": None,
           "tlps": [], "keepalive": {}}
    if len(frame) < wire.HEADER_LEN:
        return out
    header = wire.BRIDGE_HEADER.unpack(frame, wire.ETH_LEN)
    if header["frame_type"] == wire.FrameType.KEEPALIVE:    # its link-state fields
        out["keepalive"] = fm.keepalive_fields({name: header[name] for name in fm.CREDIT_FIELDS})
    flags = header["flags"]
    out["header"] = {**header, **{name: int(bool(flags & bit)) for bit, name in FLAG_NAMES.items()},
                     "flags.reserved": flags & ~sum(FLAG_NAMES) & 0xFF}
    length = header["payload_length"]
    end = wire.HEADER_LEN + length
    if len(frame) >= end + wire.CRC_LEN:
        received = int.from_bytes(frame[end:end + wire.CRC_LEN], "little")
        computed = fm.frame_crc(frame, length)
        out["crc"] = (received, computed, int(received == computed))
        if received != computed:
            out["experts"] = sorted(out["experts"] + ["tlpoe.crc.bad"])
        found = _model_tlps(frame, length, verdict, ethertype) if length % 4 == 0 else None
        out["tlps"] = None if found is None else [expected_tlp(t, s) for t, s in zip(*found)]
    else:
        out["tlps"] = None
    return out


def compare(pcap, layers, mtu=None, ethertype=wire.ETHERTYPE):
    """Assert the dissected ``layers`` equal the models' view of every frame
    of ``pcap``; returns the frames compared."""
    frames = [p.data for p in read_pcap(pcap)]
    assert len(layers) == len(frames)
    for index, (data, layer) in enumerate(zip(frames, layers)):
        expected, actual = expected_view(data, mtu, ethertype), view(layer)
        if expected.get("tlps") is None and actual["tlpoe"]:
            actual["tlps"] = None         # the model does not walk this TLP area
        assert actual == expected, f"frame {index} ({len(data)} bytes): {data[:64].hex()}"
    return frames


# --- the frames of the model-built capture --------------------------------------------

def every_tlp_type():
    """TLPs of every type models.tlp knows, each header size it allows, digest
    or not, 10-bit tags, every Attr bit, every message routing and
    completion status, 64-bit addresses."""
    rid, cid = PcieId(0x1B, 3, 1), PcieId(0xA0, 0x1F, 7)
    out = [
        Tlp.mem_read(0x1000, 8, requester_id=rid, tag=0x3FF),
        Tlp.mem_read(0x1_2345_6780, 4096, requester_id=rid, tag=0x2FE, attr=Attr.RO | Attr.NS),
        Tlp.mem_read(0x2000, 4, locked=True, requester_id=rid, tag=1),
        Tlp.mem_read(0xFFFF_FFFF_FFFF_F000, 4, locked=True, tag=0x100, attr=Attr.IDO),
        Tlp.mem_write(0xFEE0_0000, b"\x11\x22\x33", requester_id=rid, tag=0x155,
                      digest=b"\xde\xad\xbe\xef"),
        Tlp.mem_write(0x8_0000_0004, bytes(range(64)), tc=7, ep=True, th=True, ph=3),
        Tlp.mem_write(0x7000, bytes(range(256)) * 4, requester_id=rid, tag=0x3FE),
        Tlp.io_read(0x3F8, 1, requester_id=rid, tag=9),
        Tlp.io_write(0x3F9, b"\xAB", requester_id=rid, tag=10, digest=b"\x01\x02\x03\x04"),
        Tlp.cfg_read(PcieId(2, 0, 1), 0x3FF, requester_id=rid, tag=0x200),
        Tlp.cfg_read(PcieId(3, 4, 5), 0x10, type1=True, first_be=0x3, attr=Attr.IDO),
        Tlp.cfg_write(PcieId(2, 0, 1), 4, b"\x01\x02\x03\x04", requester_id=rid, tag=0x80),
        Tlp.cfg_write(PcieId(9, 9, 1), 0x100, b"\xff" * 4, type1=True),
        Tlp.completion(requester_id=rid, tag=0x3FF, completer_id=cid, status=CplStatus.UR,
                       byte_count=4096),
        Tlp.completion(requester_id=rid, tag=0x101, completer_id=cid, data=bytes(range(32)),
                       byte_count=100, lower_address=0x7F, bcm=True, attr=Attr.RO | Attr.IDO),
        Tlp.completion(requester_id=rid, tag=7, completer_id=cid, locked=True,
                       status=CplStatus.CA),
        Tlp.completion(requester_id=rid, tag=8, completer_id=cid, locked=True, data=b"\x55" * 8,
                       digest=b"\x10\x20\x30\x40"),
        Tlp(TlpType.Cpl, requester_id=rid, tag=5, completer_id=cid, status=0b111, byte_count=1),
        Tlp.atomic(TlpType.FetchAdd, 0x4000, b"\x01" * 4, requester_id=rid, tag=0x1FF),
        Tlp.atomic(TlpType.FetchAdd, 0x1_0000_0008, b"\x02" * 8, tag=12),
        Tlp.atomic(TlpType.Swap, 0x5000, b"\x03" * 8, tag=13),
        Tlp.atomic(TlpType.Swap, 0x2_0000_0000, b"\x04" * 4, tag=14),
        Tlp.atomic(TlpType.CAS, 0x6000, b"\x05" * 32, tag=15),
        Tlp.atomic(TlpType.CAS, 0x3_0000_0010, b"\x06" * 16, tag=16, digest=b"\x0a\x0b\x0c\x0d"),
    ]
    for routing in MsgRouting:
        out.append(Tlp.message(0x7E, routing=routing, requester_id=rid, tag=routing,
                               address=0x0123_4567_89AB_CDEF))
        out.append(Tlp.message(0x7F, routing=routing, data=b"\x99" * 8, tag=0x300 + routing))
    covered = {(t.type, t.addr64) for t in out}
    for t in TlpType:                       # every type in every header size it allows
        for dws in t.header_dws:
            assert (t, dws == 4) in covered, f"{t} with a {dws}-DW header is not covered"
    return out


def odd_tlps():
    """TLP bytes the frame layer carries but models.tlp rejects."""
    mrd = Tlp.mem_read(0x1000, 4, tag=3).pack()
    return [
        bytes([0x80, 0, 0, 1]) + mrd[4:],                  # Fmt 100b: a PCIe TLP prefix
        bytes([0x00 | 0x03, 0, 0, 1]) + mrd[4:],           # Fmt/Type 000b/00011b: reserved
        bytes([0x30 | 0x06, 0, 0, 0]) + bytes(12),         # Msg, routing 110b: reserved
        mrd + bytes(4),                                    # 4 bytes more than Length says
        Tlp.mem_write(0x1000, bytes(16), tag=4).pack()[:-4],   # 4 bytes short
        bytes([0x20, 0, 0, 1]) + mrd[4:],                  # a 4-DW MRd cut to 12 bytes
    ]


def model_frames():
    """Frames of the model-built capture (DATA, every control type, one per
    drop reason, odd TLPs) and the MTU their verdicts assume."""
    rng = random.Random(7)
    tlps = [t.pack() for t in every_tlp_type()]
    frames = [encode_frame(tlps[i:i + 5], seq=i, ack=2**32 - 1 - i, flags=i % 4,
                           channel=0xBEEF, stamps=[(i * 7 + j) % 65536 for j in range(len(tlps[i:i + 5]))],
                           credits={"credit_p_data": 0xFFFF, "credit_np_hdr": 0x80, "credit_cpl_hdr": i})
              for i in range(0, len(tlps), 5)]
    frames.append(encode_frame(odd_tlps(), seq=99))
    frames += [control_frame(rng, seq=kind) for kind in range(8)]
    frames += [fm.pad_to_minimum(encode_frame([], frame_type=kind, flags=3, seq=kind))
               for kind in wire.FrameType if kind != wire.FrameType.DATA]
    # KEEPALIVEs in every state, the peer known or not, a reserved bit set
    frames += [fm.pad_to_minimum(encode_frame(
        [], frame_type=wire.FrameType.KEEPALIVE, flags=1, seq=0x1234 + state, ack=7,
        credits=fm.keepalive_credits(incarnation=0xC0FFEE00 + state, peer_incarnation=0xBEEF,
                                     peer_known=state & 1, state=state,
                                     reserved_ka=0b10000 if state == 3 else 0)))
        for state in range(4)]
    good = frames[1]
    for reason in ETH_REASONS:
        for _ in range(3):
            frames.append(malformed_frame(reason, good, rng, mtu=1500))
    return frames


@functools.cache
def _model_capture(tmp_root):
    path = tmp_root / "model.pcap"
    write_pcap(path, ((1000 * i, f) for i, f in enumerate(model_frames())))
    return path


@pytest.fixture
def model_capture(tmp_path_factory):
    return _model_capture(tmp_path_factory.getbasetemp())


def test_model_frames_cover_every_type_and_reason():
    verdicts = {model_verdict(f, 1500) for f in model_frames()}
    assert verdicts == set(ETH_REASONS) | {None}
    kinds = {decode_frame(f).frame_type for f in model_frames() if model_verdict(f, 1500) is None}
    assert kinds == set(wire.FrameType)


def test_dissector_decodes_every_tlp_type_and_reason_as_the_models(tshark, model_capture):
    layers = dissect(tshark, model_capture, prefs=["tlpoe.mtu:1500"])
    frames = compare(model_capture, layers, mtu=1500)
    seen = {t.get("type") for layer in layers if layer for t in view(layer)["tlps"] or ()}
    assert {t.value for t in TlpType} | {"reserved"} <= seen
    assert len(frames) == len(model_frames())


def test_oversize_is_only_checked_with_the_mtu_preference(tshark, model_capture):
    compare(model_capture, dissect(tshark, model_capture), mtu=None)


def test_ethertype_preference(tshark, tmp_path):
    frame = encode_frame([Tlp.mem_read(0x1000, 4).pack()], ethertype=0x88B6)
    path = tmp_path / "88b6.pcap"
    write_pcap(path, [(0, frame)])
    assert dissect(tshark, path) == [None]            # not ours at the default 0x88B5
    layers = dissect(tshark, path, prefs=["tlpoe.ethertype:0x88B6"])
    compare(path, layers, ethertype=0x88B6)
    assert view(layers[0])["tlps"][0]["type"] == "MRd"


def test_comparison_catches_a_broken_dissector(tshark, model_capture, tmp_path):
    """The comparison has teeth: one offset wrong in the generated tables
    (``seq`` read one byte late) fails it."""
    text = wireshark.LUA_PATH.read_text()
    broken = text.replace('name = "seq", offset = 4,', 'name = "seq", offset = 5,')
    assert broken != text
    lua = tmp_path / "broken.lua"
    lua.write_text(broken)
    with pytest.raises(AssertionError, match="frame 0"):
        compare(model_capture, dissect(tshark, model_capture, lua=lua, prefs=["tlpoe.mtu:1500"]),
                mtu=1500)


# --- a link testbench's capture --------------------------------------------------------

def pair():        # the configuration (and build) of tests/test_link_sim.py
    kw = dict(window=8, seq_bits=6, max_retries=6)
    return Pair(Bridge(64, **kw), Bridge(64, **kw))


@pytest.mark.sim
def test_dissector_agrees_with_the_models_on_a_link_capture(tshark, monkeypatch, tmp_path):
    """Two bridges, 300 random TLPs of every type each way, bit errors on
    cut-through NICs and 2% drops: every frame each bridge sent and every
    frame delivered to it, corrupted ones included, dissects as the models
    decode it."""
    sim = "icarus" if "icarus" in simulators() else simulators()[0]
    monkeypatch.setenv("PCAP", "1")
    monkeypatch.setenv("PCAP_DIR", str(tmp_path))
    monkeypatch.delenv(PCAP_DIR_ENV, raising=False)
    run_cocotb(sim, pair, "pair", "tlpoe.tb.test_link", build_key="pair-w64-s6-win8",
               testcase="LinkRandomTest", seed=20261125, run_name="dissector",
               params={"width": 64, "seq_bits": 6, "window": 8, "count": 300,
                       "bidirectional": True,
                       "phy": {"rate_gbps": 10, "latency_ns": 1000.0, "ber": 5e-5,
                               "deliver_bad_fcs": True, "drop_rate": 0.02}})
    pcaps = sorted((tmp_path / sim / "pair-w64-s6-win8" / "dissector").glob("*.pcap"))
    assert len(pcaps) == 4
    tlps = dropped = 0
    for pcap in pcaps:
        layers = dissect(tshark, pcap)
        compare(pcap, layers)
        views = [view(layer) for layer in layers]
        tlps += sum(len(v["tlps"] or ()) for v in views if v["tlpoe"])
        dropped += sum(v["tlpoe"] and v["drop_reason"] is not None for v in views)
    assert tlps >= 2 * 2 * 300 and dropped       # both directions, sent and delivered
