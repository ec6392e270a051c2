"""``make ber``: the reliable link under bit errors, bursts and frame drops.

Every point of the sweep (a BER, a burst setting or a frame-drop rate) runs
on three engines, side by side, in go-back-N and in selective repeat (the
Bridge's ``mode``; engines of the latter end in ``-sr``):

``rtl``
    Two bridge RTL instances (:class:`tlpoe.tb.tops.Pair` of
    :class:`tlpoe.rtl.bridge.bridge.Bridge`) joined both ways by the NIC/PHY model,
    in the pyuvm link testbench (``tb/test_link.py``), on Verilator (and on
    Icarus for the short points of ``--quick``).
``model``
    The reference link layer in the discrete-event simulation,
    :func:`tlpoe.models.linksim.run_point`, over the same PHY model.
``analytical``
    Go-back-N with a NAK timer and selective repeat (:mod:`tlpoe.models.gbn`).

With ``--transports`` (``make ber TRANSPORTS=...``; default ``eth``) the
points also run on another transport (``udp``: the frames in IPv4 and UDP,
engines ending in ``-udp``, each against its own framing limit); the
report's "Transports" table gives each one's bytes of overhead per frame and
goodput at BER 1e-12.

Each point is a pure function of its parameters and seed (:func:`run_task`)
that returns one JSON record; points run in a process pool and each record
is written on its own (``points/``), so a cluster engine can run the same
tasks unchanged. The summary goes to ``ber.json`` (every record, the setup
and the acceptance verdicts), ``ber.md`` (the table) and the plots
``goodput.png`` and ``latency_p99.png``.

The workload is back-to-back 256-byte memory writes from A to B (the bulk
DMA case) at 512 bits and 322.2 MHz (the usual 100GbE MAC interface: 165
Gb/s of datapath) on a 100 Gb/s line with 1 us one-way latency (2 us round trip), MTU 1500, a 32-frame
replay buffer and 12-bit sequence numbers (``SETUP``). Bit errors are
handed up by a cut-through NIC (``deliver_bad_fcs``), so the bridge's own
CRC must catch every corrupted frame; drops model congestion.

Usage: ``python -m tlpoe.sim.ber [--quick] [--out DIR] [--jobs N]
[--sims verilator icarus] [--modes gbn sr] [--transports eth udp] [--tlps N]
[--resume]``; exits 1
when an acceptance check fails (the report is still written), 2 on a bad
argument. ``--resume`` keeps the records already written and runs the rest.
"""

import argparse
import inspect
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from ..models import gbn
from ..models import transport as tp
from ..models.frame import wire_bytes
from ..models.linksim import default_nak_timeout_ns, default_replay_timeout_ns, run_point
from ..models.phy import GilbertElliott

__all__ = ["SETUP", "points", "tasks", "run_task", "rtl_point", "model_point",
           "analytical_point", "acceptance", "write_report", "main"]

ROOT = Path(__file__).resolve().parent.parent

#: The link every point runs on. Times in ns; the RTL's cycle timers are
#: derived from them at ``clock_ns``.
SETUP = {
    "width": 512, "clock_ns": 3.104, "mtu": 1500, "window": 32, "seq_bits": 12,
    "max_retries": 8, "rate_gbps": 100, "latency_ns": 1000.0, "tlp_payload": 256,
    "ack_every": 8, "ack_delay_ns": 500.0, "flush_timeout_ns": 300.0,
    "mac_fifo_bytes": 4096, "queue_tlps": 127, "queue_depth": 1024,
}

#: TLPs per point: the acceptance needs 100,000 (on Verilator) in the
#: default mode (go-back-N); the other modes are the comparison, at most
#: OTHER_MODE_TLPS per point.
FULL_TLPS = 100_000
OTHER_MODE_TLPS = 20_000
QUICK_TLPS = {"verilator": 1_500, "icarus": 150, "model": 5_000}

#: The sweep: (name, network settings, TLPs in full mode or None for FULL_TLPS).
#: BER points above 1e-5 are beyond the acceptance range and costly (go-back-N
#: resends a round trip per loss), so they run fewer TLPs.
FULL_POINTS = [
    *[(f"ber {ber:g}", {"ber": ber}, None)
      for ber in (1e-12, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 3e-6, 1e-5)],
    ("ber 3e-05", {"ber": 3e-5}, 20_000),
    ("ber 0.0001", {"ber": 1e-4}, 3_000),
    ("burst 1e-06/100b", {"burst": {"ber": 1e-6, "mean_burst_bits": 100}}, None),
    ("burst 1e-05/100b", {"burst": {"ber": 1e-5, "mean_burst_bits": 100}}, None),
    ("burst 0.0001/100b", {"burst": {"ber": 1e-4, "mean_burst_bits": 100}}, None),
    *[(f"drop {rate:g}", {"drop_rate": rate}, None) for rate in (1e-4, 1e-3, 1e-2)],
]
QUICK_POINTS = ["ber 1e-12", "ber 1e-05", "burst 0.0001/100b", "drop 0.01"]
#: The one point Icarus runs in --quick (the slow simulator, a short run).
ICARUS_POINTS = ["ber 1e-05"]
#: The points selective repeat runs in --quick.
QUICK_SR_POINTS = ["ber 1e-05"]
#: The simulator of selective repeat's --quick point when Icarus is among
#: the simulators: its build of a second 512-bit pair takes seconds where
#: Verilator's takes about 100 s of the quick sweep's 350 (make test also
#: runs selective repeat on Verilator at 64 bits, tests/test_link_sim.py).
QUICK_SR_SIM = "icarus"


def points(quick=False):
    """The sweep's points: dicts with ``name``, ``ber``, ``burst``,
    ``drop_rate`` and ``tlps`` (None: the mode's default)."""
    chosen = [p for p in FULL_POINTS if not quick or p[0] in QUICK_POINTS]
    return [{"name": name, "ber": net.get("ber", 0.0), "burst": net.get("burst"),
             "drop_rate": net.get("drop_rate", 0.0), "tlps": None if quick else tlps}
            for name, net, tlps in chosen]


def _timers(setup):
    """The replay and NAK timers (ns) for ``setup``, used by both the RTL (in
    cycles) and the model: the model's defaults
    (:func:`~tlpoe.models.linksim.default_replay_timeout_ns` and
    :func:`~tlpoe.models.linksim.default_nak_timeout_ns`) plus the time the
    sending MAC's transmit FIFO takes to drain, which a replay waits behind
    (the model has no such FIFO). Without it the RTL's NAK timer fires
    while the replay is still on its way, and each repeated NAK resends a
    round trip of frames again."""
    fifo_ns = setup["mac_fifo_bytes"] * 8 / setup["rate_gbps"]
    replay = default_replay_timeout_ns(setup["latency_ns"], setup["rate_gbps"], setup["mtu"],
                                       setup["ack_delay_ns"], setup["ack_every"]) + fifo_ns
    nak = min(replay, default_nak_timeout_ns(setup["latency_ns"], setup["rate_gbps"],
                                             setup["mtu"]) + fifo_ns)
    return replay, nak


def _network(point):
    """The PHY settings of a point (both directions)."""
    net = {"rate_gbps": SETUP["rate_gbps"], "latency_ns": SETUP["latency_ns"],
           "ber": point["ber"], "drop_rate": point["drop_rate"]}
    if point["burst"] is not None:
        net["burst"] = point["burst"]
    if point["ber"] or point["burst"] is not None:
        net["deliver_bad_fcs"] = True
    return net


#: Retransmission modes: go-back-N, selective repeat.
MODES = ("gbn", "sr")


def available_modes():
    """The modes the RTL Bridge implements (``mode`` parameter)."""
    from ..rtl.bridge.bridge import Bridge
    return MODES if "mode" in inspect.signature(Bridge).parameters else ("gbn",)


def _pair(mode="gbn", transport="eth"):
    from ..rtl.bridge.bridge import Bridge
    from ..tb.tops import Pair
    kw = dict(window=SETUP["window"], seq_bits=SETUP["seq_bits"],
              max_retries=SETUP["max_retries"], mtu=SETUP["mtu"],
              queue_tlps=SETUP["queue_tlps"], queue_depth=SETUP["queue_depth"])
    if mode != "gbn":
        kw["mode"] = mode
    if transport != "eth":
        kw["transport"] = transport
    return Pair(Bridge(SETUP["width"], **kw), Bridge(SETUP["width"], **kw))


#: The transports a point runs on (models/transport.py; those the RTL has).
TRANSPORTS = ("eth", "udp")


def engine_name(kind, mode, sim=None, transport="eth"):
    """``rtl-<sim>`` or ``model``, with ``-sr`` for selective repeat and
    ``-<transport>`` for a transport other than ``eth``."""
    return ((f"rtl-{sim}" if kind == "rtl" else "model") + ("" if mode == "gbn" else f"-{mode}")
            + ("" if transport == "eth" else f"-{transport}"))


def _cycles(ns):
    return max(1, math.ceil(ns / SETUP["clock_ns"]))


def rtl_point(point, seed, sim, tlps, out_dir, mode="gbn", transport="eth"):
    """Run ``point`` on the RTL in ``mode`` on ``transport``: returns the
    testbench's record (see ``LinkTest.record`` in ``tb/test_link.py``)."""
    from .runner import run_cocotb
    s = SETUP
    engine = engine_name("rtl", mode, sim, transport)
    report = Path(out_dir).resolve() / "runs" / f"{_slug(point['name'])}-{engine}-s{seed}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    line_ns = wire_bytes(s["mtu"] + 14) * 8 / s["rate_gbps"] / 5
    # generous: the whole transfer at 1% of the line rate, plus the retries
    drain_us = max(2_000, tlps * line_ns * 100 / 1000)
    params = {
        "width": s["width"], "mtu": s["mtu"], "seq_bits": s["seq_bits"], "window": s["window"],
        "mode": mode, "seed": seed, "count": tlps, "workload": "mwr",
        "tlp_payload": s["tlp_payload"],
        "valid_gap": 0.0, "backpressure": 0.0, "clock_ns": s["clock_ns"],
        "flush_timeout": _cycles(s["flush_timeout_ns"]),
        "replay_timeout": _cycles(_timers(s)[0]), "nak_timeout": _cycles(_timers(s)[1]),
        "ack_delay": _cycles(s["ack_delay_ns"]),
        "phy": _network(point), "mac_fifo_bytes": s["mac_fifo_bytes"],
        "drain_us": drain_us, "report": str(report),
        "bridge": {} if transport == "eth" else {"transport": transport},
    }
    suffix = ("" if mode == "gbn" else f"-{mode}") + ("" if transport == "eth" else f"-{transport}")
    run_cocotb(sim, lambda: _pair(mode, transport), "pair", "tlpoe.tb.test_link",
               build_key=f"pair-w{s['width']}-s{s['seq_bits']}-win{s['window']}-q{s['queue_tlps']}{suffix}",
               testcase="LinkRandomTest", seed=seed,
               run_name=f"ber-{_slug(point['name'])}{suffix}-s{seed}", params=params)
    return json.loads(report.read_text())


def framing(transport="eth"):
    """``(efficiency, tlps_per_frame, frame_bytes)`` of full DATA frames of
    the sweep's MWr TLPs on ``transport`` (:func:`~tlpoe.models.gbn.framing_efficiency`
    on ``eth``): the framing-limited goodput, and the frame as handed to the MAC."""
    s = SETUP
    tlp = 16 + s["tlp_payload"]
    n = tp.body_capacity(s["mtu"], transport) // (4 + tlp)
    frame = tp.frame_overhead_bytes(n, transport) + n * tlp
    return n * s["tlp_payload"] / wire_bytes(frame), n, frame


def model_point(point, seed, tlps, mode="gbn", transport="eth"):
    """Run ``point`` on the reference model (:func:`linksim.run_point`) in
    ``mode`` on ``transport``."""
    s = SETUP
    tlps_per_frame = framing(transport)[1]
    return run_point({
        "rate_gbps": float(s["rate_gbps"]), "latency_ns": s["latency_ns"], "channel": "phy",
        **{k: v for k, v in _network(point).items() if k not in ("rate_gbps", "latency_ns")},
        "mode": mode, "window": s["window"], "seq_bits": s["seq_bits"],
        "ack_every": s["ack_every"], "ack_delay_ns": s["ack_delay_ns"],
        "replay_timeout_ns": _timers(s)[0], "nak_timeout_ns": _timers(s)[1],
        "max_retries": s["max_retries"], "mtu": s["mtu"], "transport": transport,
        "tlps": tlps, "tlp_payload": s["tlp_payload"],
        # the ingress holds about one frame of TLPs, as the RTL's packer does:
        # latency then counts the link, not a deep queue in front of it
        "queue_tlps": tlps_per_frame,
    }, seed)


def analytical_point(point, transport="eth"):
    """Go-back-N (with the NAK timer) and selective-repeat goodput, and a
    latency estimate, for ``point`` (see :mod:`tlpoe.models.gbn`).

    The frame loss ``p`` combines the BER (over the full DATA frame's bytes,
    FCS included) and the drop rate. For Gilbert-Elliott bursts a frame is
    lost when it starts in the bad state or a burst starts during it
    (``pi_b + (1 - pi_b) * (1 - (1 - p_gb) ** bits)``): bursts cluster the
    errors in few frames. Latency: by
    Little's law a saturated bridge holds ``window`` frames, so the mean
    latency is ``window * t_f / U`` plus the one-way latency and a frame's
    serialisation; ``latency_p99_ns`` adds one NAK recovery (``K`` frame
    times) once more than 1% of TLPs sit behind a loss (``p * K > 0.01``)."""
    s = SETUP
    efficiency, per_frame, frame_bytes = framing(transport)
    bits = 8 * (frame_bytes + 4)
    p_bits = gbn.frame_error_probability(point["ber"], frame_bytes + 4)
    if point["burst"] is not None:
        ge = GilbertElliott.from_ber(**point["burst"])
        pi_b = ge.bad_fraction
        p_bits = 1 - (1 - p_bits) * (1 - pi_b) * (1 - ge.p_gb) ** bits
    p = 1 - (1 - p_bits) * (1 - point["drop_rate"])
    t_f = gbn.frame_time_ns(frame_bytes, s["rate_gbps"])
    k = gbn.gbn_nak_cost_frames(s["latency_ns"], t_f, s["rate_gbps"])
    u_gbn = gbn.gbn_efficiency_nak_timer(p, k, k)
    u_sr = gbn.sr_efficiency(p)
    mean = s["window"] * t_f / u_gbn + s["latency_ns"] + t_f
    p99 = mean + (k * t_f if p * k > 0.01 else 0.0)
    return {"frame_loss": p, "goodput_fraction": u_gbn * efficiency,
            "goodput_sr_fraction": u_sr * efficiency, "framing_limit": efficiency,
            "latency_p50_ns": mean, "latency_p99_ns": p99}


def _slug(name):
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in name)


def tasks(quick=False, sims=("verilator",), tlps=None, seed=1, modes=("gbn",),
          transports=("eth",)):
    """Every (engine, mode, transport, point, seed, tlps) of the sweep;
    ``engine`` is ``"rtl-<sim>"`` or ``"model"``, with ``-sr`` in selective
    repeat and ``-<transport>`` off ``eth`` (:func:`engine_name`).
    Analytical values are added to each record: they cost nothing. In
    ``quick`` mode, Icarus runs only ``ICARUS_POINTS``, selective repeat
    only ``QUICK_SR_POINTS``, on ``QUICK_SR_SIM`` when it is among
    ``sims``, and a transport other than ``eth`` only ``QUICK_TRANSPORT_POINTS``
    in go-back-N, on Verilator (in the full sweep, ``TRANSPORT_POINTS``)."""
    out = []
    for mode in modes:
        for transport in transports:
            if quick and transport != "eth" and mode != "gbn":
                continue
            out += _tasks(quick, sims, tlps, seed, mode, transport)
    return out


#: The points a transport other than ``eth`` runs in --quick: its goodput at
#: 1e-12 (against its own framing limit) and no loss under bit errors.
QUICK_TRANSPORT_POINTS = ["ber 1e-12", "ber 1e-05"]
#: ... and in the full sweep: the same link layer under another header, so
#: the clean line, the range of the acceptance's edge, a burst and drops.
TRANSPORT_POINTS = ["ber 1e-12", "ber 1e-06", "ber 1e-05", "burst 1e-05/100b", "drop 0.01"]


def _tasks(quick, sims, tlps, seed, mode, transport):
    out = []
    other = transport != "eth"
    for point in points(quick):
        if other and point["name"] not in (QUICK_TRANSPORT_POINTS if quick else
                                           TRANSPORT_POINTS):
            continue
        if quick and mode != "gbn" and point["name"] not in QUICK_SR_POINTS:
            continue
        full = point["tlps"] or FULL_TLPS
        if mode != "gbn":
            full = min(full, OTHER_MODE_TLPS)
        for sim in sims:
            if quick and sim == "icarus" and (other or point["name"] not in ICARUS_POINTS):
                continue
            if quick and mode != "gbn" and QUICK_SR_SIM in sims and sim != QUICK_SR_SIM:
                continue
            n = tlps or (QUICK_TLPS[sim] if quick else full)
            out.append({"engine": engine_name("rtl", mode, sim, transport), "mode": mode,
                        "transport": transport, "point": point, "seed": seed, "tlps": n})
        n = tlps or (QUICK_TLPS["model"] if quick else full)
        out.append({"engine": engine_name("model", mode, transport=transport), "mode": mode,
                    "transport": transport, "point": point, "seed": seed, "tlps": n})
    return out


#: The fields every record of ber.json has (the issue's list and a few more).
FIELDS = ("ber", "drop_rate", "tlps_sent", "tlps_delivered", "lost", "duplicated",
          "corrupted", "replays", "goodput_fraction", "latency_p50_ns", "latency_p99_ns",
          "link_down_events", "overflows")


def _record_path(task, out_dir):
    name = f"{_slug(task['point']['name'])}-{task['engine']}-s{task['seed']}.json"
    return Path(out_dir) / "points" / name


def run_task(task, out_dir):
    """Run one task; returns its record (a pure function of the task)."""
    point, seed, tlps = task["point"], task["seed"], task["tlps"]
    mode, transport = task.get("mode", "gbn"), task.get("transport", "eth")
    start = time.monotonic()
    if task["engine"].startswith("model"):
        raw = model_point(point, seed, tlps, mode, transport)
    else:
        raw = rtl_point(point, seed, task["engine"].split("-")[1], tlps, out_dir, mode,
                        transport)
    record = {"engine": task["engine"], "mode": mode, "transport": transport,
              "point": point["name"],
              "burst": point["burst"],
              "seed": seed, "wall_s": round(time.monotonic() - start, 2),
              **{k: raw.get(k) for k in FIELDS if k not in ("ber", "drop_rate")},
              "ber": point["ber"], "drop_rate": point["drop_rate"],
              "replays_nak": raw.get("replays_nak"), "replays_timeout": raw.get("replays_timeout"),
              "frames_retransmitted": raw.get("frames_retransmitted"),
              "wraps": raw.get("wraps"), "elapsed_ns": raw.get("elapsed_ns")}
    record["analytical"] = analytical_point(point, transport)
    path = _record_path(task, out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def acceptance(records, quick):
    """The issue's acceptance checks over the RTL records: a list of
    ``(check, passed, detail)``."""
    rtl = [r for r in records if r["engine"].startswith("rtl-")]
    checks = []
    protected = [r for r in rtl if r["ber"] <= 1e-5 and r["drop_rate"] <= 0.01]
    bad = [f"{r['point']} ({r['engine']}): lost {r['lost']}, duplicated {r['duplicated']}, "
           f"corrupted {r['corrupted']}, link down {r['link_down_events']}"
           for r in protected if r["lost"] or r["duplicated"] or r["corrupted"]
           or r["link_down_events"]]
    checks.append(("zero lost, duplicated, corrupted up to BER 1e-5, under bursts, up to 1% drop",
                   bool(protected) and not bad,
                   "; ".join(bad) or f"{len(protected)} RTL runs, "
                   f"{sum(r['tlps_delivered'] or 0 for r in protected):,} TLPs delivered"))
    overflowed = [f"{r['point']} ({r['engine']}): {r['overflows']}" for r in rtl
                  if r.get("overflows")]
    checks.append(("zero overflows: the receive path never fell behind the MAC",
                   bool(rtl) and not overflowed, "; ".join(overflowed) or
                   f"{len(rtl)} RTL runs, frame_in never waited"))
    if not quick:
        short = [r["point"] for r in protected
                 if r["engine"] == "rtl-verilator" and (r["tlps_sent"] or 0) < FULL_TLPS]
        checks.append((f"at least {FULL_TLPS:,} TLPs per point on Verilator (go-back-N, "
                       "the default mode)", not short, ", ".join(short) or "every point"))
        wraps = max((r["wraps"] or 0 for r in rtl), default=0)
        checks.append(("at least two sequence wrap-arounds in one run", wraps >= 2,
                       f"most wraps in one run: {wraps}"))
    clean = [r for r in rtl if r["point"] == "ber 1e-12"]
    for r in clean:
        limit = r["analytical"]["framing_limit"]
        ratio = r["goodput_fraction"] / limit
        checks.append((f"goodput at BER 1e-12 within 2% of the framing limit ({r['engine']})",
                       ratio >= 0.98, f"{r['goodput_fraction']:.4f} of the line = "
                       f"{ratio:.2%} of the limit {limit:.4f}"))
    return checks


def _fmt(value, spec):
    return "—" if value is None else format(value, spec)


def markdown(records, checks, quick):
    """The report's Markdown: setup, acceptance, and one row per point and engine."""
    s = SETUP
    lines = [
        "# Reliable link: BER and frame-drop sweep" + (" (quick mode)" if quick else ""), "",
        f"Two bridges at {s['width']} bits, {1000 / s['clock_ns']:g} MHz; "
        f"{s['rate_gbps']} Gb/s line, {s['latency_ns']:g} ns one way; MTU {s['mtu']}; "
        f"window {s['window']} frames; {s['seq_bits']}-bit sequence numbers; "
        f"back-to-back {s['tlp_payload']}-byte MWr from A to B. Bit errors reach the "
        "bridge (cut-through NIC); the analytical columns are go-back-N with a NAK "
        "timer and selective repeat (`models/gbn.py`).", "",
        "## Acceptance", "", "| Check | Result | Detail |", "|---|---|---|",
        *[f"| {name} | {'pass' if ok else '**FAIL**'} | {detail} |" for name, ok, detail in checks],
        "", "## Points", "",
        "| Point | Engine | TLPs sent | delivered | lost | dup | corrupt | replays "
        "| goodput | GBN (analytical) | SR (analytical) | p50 (ns) | p99 (ns) | link down | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        a = r["analytical"]
        lines.append(
            f"| {r['point']} | {r['engine']} | {r['tlps_sent']:,} | {r['tlps_delivered']:,} "
            f"| {r['lost']} | {r['duplicated']} | {r['corrupted']} | {r['replays']} "
            f"| {_fmt(r['goodput_fraction'], '.4f')} | {a['goodput_fraction']:.4f} "
            f"| {a['goodput_sr_fraction']:.4f} | {_fmt(r['latency_p50_ns'], ',.0f')} "
            f"| {_fmt(r['latency_p99_ns'], ',.0f')} | {r['link_down_events']} | {r['wall_s']} |")
    lines += ["", "Goodput is TLP payload bits over the line rate in the steady state "
              "(first delivery to last), against the framing limit of full frames of "
              "these TLPs on each transport (below).", ""]
    lines += transport_table(records)
    return "\n".join(lines)


def transport_table(records):
    """The Markdown table of each transport in ``records``: its bytes of
    overhead per full DATA frame (headers, prefixes and CRC as handed to
    the MAC, then preamble, FCS and gap on the wire), TLPs per frame, the
    framing limit, and each engine's goodput at BER 1e-12."""
    s = SETUP
    out = ["## Transports", "",
           "| Transport | overhead bytes per frame (to the MAC) | + wire (preamble, FCS, IFG) "
           "| TLPs per frame | framing limit | goodput at BER 1e-12 |",
           "|---|---|---|---|---|---|"]
    for transport in sorted({r.get("transport", "eth") for r in records},
                            key=TRANSPORTS.index):
        efficiency, n, frame = framing(transport)
        overhead = frame - n * (16 + s["tlp_payload"])
        clean = [f"{r['engine']} {_fmt(r['goodput_fraction'], '.4f')}" for r in records
                 if r.get("transport", "eth") == transport and r["point"] == "ber 1e-12"]
        out.append(f"| `{transport}` | {overhead} | {wire_bytes(frame) - frame} | {n} "
                   f"| {efficiency:.4f} | {', '.join(clean) or '—'} |")
    return out + [""]


def plots(records, out_dir):
    """goodput.png and latency_p99.png: RTL, model and analytical against the
    BER (random-error points only)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ber_points = sorted({r["ber"] for r in records if r["ber"] and r["drop_rate"] == 0
                         and r["burst"] is None})
    written = []
    for key, ylabel, name in (("goodput_fraction", "goodput (fraction of line rate)", "goodput"),
                              ("latency_p99_ns", "p99 TLP latency (ns)", "latency_p99")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        engines = sorted({r["engine"] for r in records})
        for engine in engines:
            xs, ys = [], []
            for ber in ber_points:
                for r in records:
                    if r["engine"] == engine and r["ber"] == ber and r["burst"] is None \
                            and r["drop_rate"] == 0 and r[key] is not None:
                        xs.append(ber)
                        ys.append(r[key])
            if xs:
                ax.plot(xs, ys, "o-", label=engine)
        analytic = [(ber, next(r["analytical"] for r in records if r["ber"] == ber))
                    for ber in ber_points]
        if analytic:
            ax.plot([b for b, _ in analytic], [a[key] for _, a in analytic], "k--",
                    label="analytical go-back-N")
            if key == "goodput_fraction":
                ax.plot([b for b, _ in analytic], [a["goodput_sr_fraction"] for _, a in analytic],
                        ":", color="grey", label="analytical selective repeat")
                ax.axhline(analytic[0][1]["framing_limit"], color="grey", lw=0.5)
        ax.set_xscale("log")
        if key == "latency_p99_ns":
            ax.set_yscale("log")
        ax.set_xlabel("bit error rate")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        ax.set_title(f"tlpoe link, {SETUP['rate_gbps']} Gb/s, {2 * SETUP['latency_ns'] / 1000:g} us RTT")
        path = Path(out_dir) / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_report(records, out_dir, quick):
    """ber.json, ber.md and the plots; returns the acceptance checks."""
    out_dir = Path(out_dir)
    order = {p["name"]: i for i, p in enumerate(points())}
    records = sorted(records, key=lambda r: (order.get(r["point"], 99), r["engine"]))
    checks = acceptance(records, quick)
    (out_dir / "ber.json").write_text(json.dumps({
        "setup": SETUP, "quick": quick, "records": records,
        "acceptance": [{"check": c, "passed": ok, "detail": d} for c, ok, d in checks],
    }, indent=2) + "\n")
    (out_dir / "ber.md").write_text(markdown(records, checks, quick))
    plots(records, out_dir)
    return checks


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tlpoe.sim.ber", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short mode `make test` runs")
    parser.add_argument("--out", default="build/reports/ber", help="report folder")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel points")
    parser.add_argument("--sims", nargs="+", choices=("verilator", "icarus"),
                        help="RTL simulators (default: verilator; --quick: both)")
    parser.add_argument("--tlps", type=int, help="TLPs per point (overrides the mode's counts)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", nargs="+", choices=MODES,
                        help="link modes (default: every mode the RTL implements)")
    parser.add_argument("--transports", nargs="+", choices=TRANSPORTS, default=["eth"],
                        help="what carries the frames (models/transport.py; default: eth)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the records already in OUT/points instead of running them again")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, not {args.jobs}")
    if args.tlps is not None and args.tlps < 10:
        parser.error(f"--tlps must be at least 10, not {args.tlps}")
    sims = args.sims or (["verilator", "icarus"] if args.quick else ["verilator"])
    modes = args.modes or available_modes()
    unsupported = sorted(set(modes) - set(available_modes()))
    if unsupported:
        parser.error(f"--modes {' '.join(unsupported)}: the RTL Bridge has no such mode")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = tasks(args.quick, sims, args.tlps, args.seed, modes, args.transports)
    records = []
    if args.resume:
        done_before = [t for t in todo if _record_path(t, out_dir).exists()]
        records = [json.loads(_record_path(t, out_dir).read_text()) for t in done_before]
        todo = [t for t in todo if t not in done_before]
        print(f"ber: {len(records)} records reused from {out_dir}/points", flush=True)
    print(f"ber: {len(todo)} runs ({len(points(args.quick))} points, modes {', '.join(modes)}, "
          f"transports {', '.join(args.transports)}) "
          f"on {args.jobs} worker(s), writing {out_dir}/", flush=True)
    failed, start = [], time.monotonic()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_task, task, out_dir): task for task in todo}
        for done, future in enumerate(as_completed(futures), 1):
            task = futures[future]
            label = f"{task['point']['name']} on {task['engine']}"
            try:
                r = future.result()
            except Exception as e:      # a failed run is reported, the sweep goes on
                failed.append(f"{label}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
                print(f"[{done}/{len(todo)}] {label}: FAILED ({failed[-1]})", flush=True)
                continue
            records.append(r)
            print(f"[{done}/{len(todo)}] {label}: {r['tlps_delivered']:,}/{r['tlps_sent']:,} "
                  f"delivered, lost {r['lost']}, dup {r['duplicated']}, corrupt {r['corrupted']}, "
                  f"replays {r['replays']}, goodput {_fmt(r['goodput_fraction'], '.3f')} "
                  f"({r['wall_s']:.0f} s; {time.monotonic() - start:.0f} s total)", flush=True)
    checks = write_report(records, out_dir, args.quick)
    for name, ok, detail in checks:
        print(f"{'pass' if ok else 'FAIL'}: {name}: {detail}")
    for line in failed:
        print(f"FAIL: run failed: {line}")
    print(f"report: {out_dir / 'ber.md'}")
    return 0 if all(ok for _, ok, _ in checks) and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
