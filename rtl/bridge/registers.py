"""The bridge's configuration and statistics, described once.

:data:`CONFIG` (the ``cfg`` port: run-time settings and the ordering
interrupt's clear strobe), :data:`MACS` (the ``dst_mac`` / ``src_mac``
ports) and :data:`STATS` (the ``stats`` port: every counter and status
value) are the only description of what a
:class:`~tlpoe.rtl.bridge.bridge.Bridge` takes and reports. From them come:

* the ports' layouts (:func:`config_layout`, :func:`stats_layout`), which the
  Verilog top carries as two flat vectors, ``cfg`` and ``stats``;
* ``rtl/csr/bridge.rdl``, the SystemRDL description of the bridge's
  registers (:func:`rdl`; ``make rdl`` writes it, and a test fails when the
  committed file differs), which :class:`~tlpoe.rtl.bridge.bridge_csr.BridgeCsr`
  binds to the ports with :func:`bind`;
* the benches' reader (:func:`decode_stats`, :func:`encode_config`);
* the counter table of ``docs/csr.md`` (:func:`markdown`).

A field is one value or an array: ``elements`` names an array's entries
(the drop reasons, the traffic classes, the ordering cells), and
``limits`` makes it one :class:`~tlpoe.rtl.streams.CreditLimit` per class.
Fields with the same ``reg`` share one register. A field of ``modes``
(``("sr",)``) reads 0 in the other link mode; one of ``needs`` (a Bridge
parameter, ``"tracker"``) reads 0 in a Bridge built without it.
"""

from dataclasses import dataclass

from amaranth.hdl import Value
from amaranth.lib import data

from ...models.dcqcn import DcqcnParams
from ...models.frame import DropReason
from ...models.transport import UdpConfig
from ..queues.credits import Limits
from ..queues.order_check import CELLS
from ..streams import DATA_BITS, HDR_BITS
from ..tlp_header import CLASSES

__all__ = ["Field", "CONFIG", "MACS", "STATS", "DCQCN_CONFIG", "DCQCN_STATS", "DCQCN_FIELDS", "config_layout", "stats_layout", "rdl",
           "markdown", "decode_stats", "encode_config", "config_init", "bind", "csr_ports",
           "RDL_PARAMETERS"]

KINDS = ("config", "strobe", "status", "counter")
CLASS_NAMES = tuple(c.lower() for c in CLASSES)


@dataclass(frozen=True)
class Field:
    """One field: ``name`` (the port member and the register field), ``kind``
    (``config``: read by the bridge, ``strobe``: a one-cycle pulse,
    ``status``: a level, ``counter``: a 32-bit count, wrapping), ``width``
    (bits of one value), ``desc``; ``init``: a config field's reset, either a
    constant or the name of the Bridge parameter whose value it takes;
    ``elements``: entry names of an array; ``limits``: per-class credit
    limits; ``reg``: the register it shares; ``modes``: the link modes that
    drive it; ``needs``: the Bridge parameter (a feature) without which
    nothing drives it."""
    name: str
    kind: str
    desc: str
    width: int = 32
    init: object = 0
    elements: tuple = ()
    limits: bool = False
    reg: str = None
    modes: tuple = ("gbn", "sr")
    needs: str = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {KINDS}, not {self.kind!r}")
        if self.kind == "counter" and self.width != 32:
            raise ValueError(f"{self.name}: a counter is 32 bits")

    @property
    def shape(self):
        if self.limits:
            return Limits()
        if self.elements:
            return data.ArrayLayout(self.width, len(self.elements))
        return self.width

    @property
    def register(self):
        return self.reg or self.name.upper()


PER_CLASS = CLASS_NAMES      # the entries of a per-class array: p, np, cpl

_UDP = UdpConfig()
#: The ``udp`` transport's configuration (a Bridge built with another
#: transport has these registers but nothing reads them).
UDP_CONFIG = (
    Field("src_ip", "config",
          "udp transport: this bridge's IPv4 address, the source of every datagram sent; a "
          "datagram to another address is dropped (NOT_OURS).", 32, init=_UDP.src_ip),
    Field("dst_ip", "config",
          "udp transport: the peer bridge's IPv4 address, the destination of every datagram "
          "sent; a datagram from another address is dropped (NOT_OURS).", 32,
          init=_UDP.dst_ip),
    Field("src_port", "config",
          "udp transport: the UDP source port of every datagram sent (the link's ECMP "
          "entropy).", 16, init=_UDP.src_port, reg="UDP_PORTS"),
    Field("dst_port", "config",
          "udp transport: the UDP destination port of every datagram sent, and the only one "
          "received (NOT_OURS otherwise).", 16, init=_UDP.dst_port, reg="UDP_PORTS"),
    Field("ttl", "config", "udp transport: the IPv4 time to live of every datagram sent.", 8,
          init=_UDP.ttl, reg="UDP_IP"),
    Field("control_dscp", "config",
          "udp transport: the DSCP of frames without TLPs (ACK, NAK, CREDIT, KEEPALIVE).", 6,
          init=_UDP.control_dscp, reg="UDP_IP"),
    Field("dscp", "config",
          "udp transport: the DSCP of a DATA frame, by its first TLP's traffic class.", 6,
          elements=tuple(f"tc{k}" for k in range(8))),
)
#: The fields of :data:`UDP_CONFIG`, as the framing blocks take them (UdpConfigLayout).
UDP_FIELDS = tuple(f.name for f in UDP_CONFIG)

_DC = DcqcnParams()
#: Congestion control (docs/transports.md): the CNP generator's and the rate
#: limiter's registers (DCQCN's parameters, in :mod:`tlpoe.models.dcqcn`'s
#: units); a Bridge built without ``ecn`` has them but nothing reads them.
DCQCN_CONFIG = (
    Field("ecn_enable", "config",
          "Congestion control on: frames arriving marked ECN-CE are echoed to the peer "
          "(FLAG_ECN_ECHO, at most one per cnp_interval) and the peer's echoes cut our "
          "rate (udp transport; reset: the Bridge's ecn parameter).", 1, init="ecn",
          reg="DCQCN_CONTROL"),
    Field("g_shift", "config", "DCQCN's g = 2**-g_shift, alpha's gain (1..10).", 4,
          init=_DC.g_shift, reg="DCQCN_CONTROL"),
    Field("fast_recovery", "config",
          "DCQCN's F: increase events of fast recovery before additive increase.", 8,
          init=_DC.fast_recovery, reg="DCQCN_CONTROL"),
    Field("cnp_interval", "config",
          "Cycles between two echoes at least (the notification point's CNP interval).", 24,
          init=_DC.cnp_interval),
    Field("alpha_timer", "config", "Cycles without an echo after which alpha decays.", 24,
          init=_DC.alpha_timer),
    Field("increase_timer", "config", "Cycles per timer increase event of the rate.", 24,
          init=_DC.increase_timer),
    Field("byte_counter", "config",
          "Wire bytes sent per byte-counter increase event of the rate (at least the "
          "largest frame's).", 32, init=_DC.byte_counter),
    Field("ai_rate", "config",
          "Additive increase of the target rate, in 1/65536 of the line.", 17,
          init=_DC.ai_rate),
    Field("hai_rate", "config",
          "Hyper increase step of the target rate, in 1/65536 of the line.", 17,
          init=_DC.hai_rate),
    Field("min_rate", "config", "The rate's floor, in 1/65536 of the line (at least 1).", 17,
          init=_DC.min_rate),
    Field("line_bytes", "config",
          "The line's bytes per cycle in 1/256 (the token bucket earns the rate's share "
          "of it; 100 GbE at 322.27 MHz: 9930).", 16, init="line_bytes", reg="DCQCN_BUCKET"),
    Field("burst", "config", "The token bucket's depth (bytes).", 16, init=1538,
          reg="DCQCN_BUCKET"),
)
#: The fields of :data:`DCQCN_CONFIG` (the transmit path's ports).
DCQCN_FIELDS = tuple(f.name for f in DCQCN_CONFIG)

#: The run-time configuration (the ``cfg`` port), in register order.
CONFIG = (
    Field("channel", "config", "Channel number carried in the bridge header.", 16),
    Field("flush_timeout", "config",
          "Cycles a partly packed frame waits for more TLPs before it is sent.", 16,
          init="flush_timeout"),
    Field("replay_timeout", "config",
          "Cycles without an acknowledgement before the oldest frame is replayed.", 24,
          init="replay_timeout"),
    Field("nak_timeout", "config",
          "Receiver's NAK timer (cycles; 0: off): a NAK for a gap still open is repeated.",
          24, init="nak_timeout"),
    Field("ack_delay", "config", "Cycles an acknowledgement may wait for a frame to ride on.",
          16, init="ack_delay"),
    Field("credit_delay", "config", "Cycles freed credits may wait before a frame carries them.",
          16, init="credit_delay"),
    Field("credit_refresh", "config",
          "Idle cycles after which the credit limits are sent again (0: never).", 24,
          init="credit_refresh"),
    Field("np_accept", "config", "The receive side hands out Non-Posted TLPs.", 1, init=1,
          reg="CONTROL"),
    Field("ro_enable", "config", "Relaxed Ordering honoured (both directions).", 1, init=1,
          reg="CONTROL"),
    Field("credits_enable", "config", "The transmit side obeys the peer's credits.", 1, init=1,
          reg="CONTROL"),
    Field("keepalive", "config",
          "KEEPALIVE interval (cycles), with the link state machine: while not UP, and "
          "while UP once nothing else was sent for as long (0 acts as 1).", 24,
          init="keepalive"),
    Field("dead", "config",
          "Cycles without a good frame that take an UP link down (the link state machine). "
          "A value not above keepalive (0 among them) is clamped: 3 x keepalive is used.",
          24, init="dead"),
    Field("incarnation", "config",
          "XORed into the bridge's own count of resets: its incarnation, which the peer "
          "compares to tell a restart from a flap (write a boot counter or a random number).",
          32),
    Field("cpl_timeout", "config",
          "Completion timeout (the completion tracker), in ticks of 1024 cycles: a non-posted "
          "request not completed for as long is completed with UR by the bridge. 0 acts as 1, "
          "values from 2**15 on as 2**15 - 1.", 16, init="cpl_timeout"),
    Field("hold_time", "config",
          "Ticks of 1024 cycles the link may stay down before containment: the bridge then "
          "completes every request outstanding with UR and drops the TLPs it would send "
          "(the completion tracker); 0: containment as soon as the link is DOWN (every "
          "value is legal).", 16, init="hold_time"),
    Field("completer_id", "config",
          "The Completer ID of the UR completions the bridge makes (its own PCIe ID).", 16,
          init="completer_id"),
    Field("order_irq_clear", "strobe",
          "Write 1: clear the ordering interrupt (both checkers').", 1),
) + UDP_CONFIG + DCQCN_CONFIG

#: The MAC addresses: ports of their own, registers like the configuration's.
MACS = (
    Field("dst_mac", "config", "Destination MAC address of every frame sent (the peer bridge).",
          48),
    Field("src_mac", "config", "Source MAC address of every frame sent.", 48),
)

#: The two ordering checkers: (field prefix, the queues they judge).
ORDER_CHECKERS = (("order_", "receive"), ("tx_order_", "transmit"))


def _order_status(prefix, where):
    """A checker's interrupt and first violation (status fields)."""
    reg = f"{prefix.upper()}STATUS"
    return (
        Field(f"{prefix}irq", "status", f"The ordering checker of the {where} queues: set by "
              "a violation, held until cleared.", 1, reg=reg),
        Field(f"{prefix}first_valid", "status",
              f"The {prefix}first_* fields hold a violation.", 1, reg=reg),
        Field(f"{prefix}first_cell", "status",
              "The first violation's cell (0..3: " + ", ".join(CELLS) + ").", 2, reg=reg),
        Field(f"{prefix}first_tag", "status", "The first violation's tag.", 10, reg=reg),
        Field(f"{prefix}first_stamp", "status",
              f"The first violation's stamp (posted TLPs into the {where} queues before it).",
              16),
    )


def _order_counters(prefix, where):
    """A checker's counters."""
    return (
        Field(f"{prefix}violations", "counter",
              f"TLPs that made at least one illegal pass ({where} queues)."),
        Field(f"{prefix}tlps_checked", "counter", "TLPs checked by the ordering checker."),
        Field(f"{prefix}stamp_errors", "counter",
              "Posted TLPs or completions that left with a stamp of no TLP inside: not judged."),
        Field(f"{prefix}window_errors", "counter",
              "Posted TLPs (completions) that arrived onto a position of the checker still "
              "taken: passed by more later ones than its window."),
        Field(f"{prefix}write_collisions", "counter",
              "I/O or Configuration Writes of two requesters with one tag outstanding at once."),
    )


#: Congestion control's status and counters (0 without ``ecn``).
DCQCN_STATS = (
    Field("rate_current", "status",
          "The rate limiter's current rate (DCQCN's RC), in 1/65536 of the line.", 17,
          needs="ecn"),
    Field("rate_target", "status",
          "The rate limiter's target rate (DCQCN's RT), in 1/65536 of the line.", 17,
          needs="ecn"),
    Field("rate_alpha", "status", "DCQCN's alpha, in 1/1024.", 11, needs="ecn"),
    Field("ce_frames", "counter",
          "Frames received marked ECN-CE (congestion on the way from the peer).",
          needs="ecn"),
    Field("cnps_sent", "counter", "Frames sent carrying the ECN echo (CNPs).", needs="ecn"),
    Field("cnps_received", "counter",
          "Frames received carrying the peer's ECN echo, each a cut of the rate.", needs="ecn"),
    Field("throttled_cycles", "counter",
          "Cycles the rate limiter held DATA frames back (its token bucket empty).",
          needs="ecn"),
)

#: Every counter and status value (the ``stats`` port), in register order.
STATS = (
    # levels
    Field("link_down", "status",
          "The link is not UP (an interrupt): with the link state machine, DOWN or INIT; "
          "without it, the replay buffer gave up (retries exhausted).", 1, reg="STATUS"),
    Field("np_room", "status", "The transmit side can take a Non-Posted TLP.", 1, reg="STATUS"),
    Field("link_status", "status",
          "The link state: DOWN 0, INIT 1, UP 2 (without the link state machine: UP until "
          "the replay buffer gives up, then DOWN).", 2, reg="STATUS"),
    Field("containment", "status",
          "The link has been down for hold_time (an interrupt): requests are completed with "
          "UR and TLPs to send are dropped (the completion tracker).", 1, reg="STATUS",
          needs="tracker"),
    *(f for prefix, where in ORDER_CHECKERS for f in _order_status(prefix, where)),
    # transmit
    Field("frames_sent", "counter", "Frames sent (data and control)."),
    Field("oversize_drops", "counter", "TLPs refused by the packer: larger than a frame holds."),
    Field("length_errors", "counter", "TLPs whose length field disagrees with their beats."),
    Field("replays_nak", "counter", "Replays started by a NAK."),
    Field("replays_timeout", "counter", "Replays started by the replay timer."),
    Field("frames_retransmitted", "counter", "Frames sent again."),
    Field("link_down_events", "counter",
          "Times the link went down (retries exhausted; with the link state machine also a "
          "silent peer, a peer saying DOWN, a peer restart)."),
    Field("link_up_events", "counter", "Times the link came up (the link state machine)."),
    Field("peer_restarts", "counter",
          "KEEPALIVEs with a new incarnation of a peer heard before (the link state machine)."),
    Field("keepalives_sent", "counter", "KEEPALIVE frames sent."),
    Field("keepalives_received", "counter", "KEEPALIVE frames received that passed every check."),
    Field("replays_link", "counter",
          "Replays of every frame not acknowledged as the link came up (docs/link-state.md)."),
    Field("frames_dropped", "counter",
          "Frames forgotten unacknowledged because the peer restarted (docs/link-state.md)."),
    Field("acks_sent", "counter", "ACKs sent."),
    Field("naks_sent", "counter", "NAKs sent."),
    Field("window_full_cycles", "counter",
          "Cycles the transmit side waited for a full replay window."),
    Field("acks_invalid", "counter",
          "ACKs received that name a frame not sent (stored but not sent yet, or never "
          "stored): ignored."),
    Field("naks_invalid", "counter", "NAKs received that name a frame not sent: ignored."),
    Field("credit_frames", "counter", "Frames sent only to carry credits."),
    Field("credits_invalid", "counter",
          "Frames whose credit limits run more than half a counter past the credits consumed "
          "(a limit no receiver may give): those limits ignored."),
    # receive
    Field("good_frames", "counter", "Frames received that passed every check."),
    Field("control_frames", "counter", "Control frames received (ACK, NAK, credits)."),
    Field("overflows", "counter",
          "Frames that found no room in the receive buffers when their first beat came from "
          "the MAC (which cannot wait): dropped whole, the link layer recovers them."),
    Field("tlps_out", "counter", "TLPs handed to the receive queues."),
    Field("frames_accepted", "counter", "Frames accepted in sequence."),
    Field("duplicates", "counter", "Duplicate frames discarded."),
    Field("out_of_order", "counter", "Frames after a gap."),
    Field("naks_repeated", "counter", "NAKs repeated by the NAK timer."),
    Field("out_of_order_buffered", "counter",
          "Frames kept in the reorder buffer (selective repeat only; 0 in go-back-N).",
          modes=("sr",)),
    *(f for prefix, where in ORDER_CHECKERS for f in _order_counters(prefix, where)),
    # the completion tracker (docs/link-state.md)
    *(Field(name, "counter", desc, needs="tracker") for name, desc in (
        ("tracked", "Non-Posted requests sent to the peer and tracked."),
        ("matched", "Completions from the peer that matched a tracked request."),
        ("tag_reuse", "Requests sent while their tag's entry was taken."),
        ("evicted", "Requests completed with UR at once: a newer request of another "
                    "requester took their tag's entry."),
        ("late_completions", "Completions from the peer that matched no tracked request "
                             "(late, after a UR, or never asked for): dropped."),
        ("timeouts", "Requests completed with UR: no completion within cpl_timeout."),
        ("link_down_completions", "Requests completed with UR: the link down for hold_time."),
        ("restart_completions", "Requests completed with UR: the peer restarted."),
        ("posted_dropped", "Posted TLPs dropped under containment."),
        ("np_contained", "Non-Posted requests dropped under containment (each completed "
                         "with UR)."),
        ("cpl_dropped", "Completions to the peer dropped under containment."))),
    Field("outstanding", "status", "Requests tracked and not yet completed.", 32,
          needs="tracker"),
    # arrays
    Field("drops", "counter", "Frames dropped, by reason (models/frame.py DropReason).",
          elements=tuple(r.name for r in DropReason)),
    Field("credit_stall_cycles", "counter", "Cycles a TLP waited for the peer's credits.",
          elements=PER_CLASS),
    Field("tlps_sent", "counter", "TLPs sent.", elements=PER_CLASS),
    *(Field(f"{prefix}by_cell", "counter", f"Ordering violations per cell ({where} queues).",
            elements=CELLS) for prefix, where in ORDER_CHECKERS),
    # credit limits (cumulative header and data credits, modulo 2**8 and 2**16)
    Field("credit_limit", "status", "The peer's credit limits as the transmit side obeys them.",
          limits=True),
    Field("credits_consumed", "status", "Credits the transmit side has consumed.",
          limits=True),
    Field("credits_advertised", "status", "Our credit limits as last sent to the peer.",
          limits=True),
) + DCQCN_STATS

#: The RDL parameters: a reset value per config field that takes a Bridge parameter.
RDL_PARAMETERS = tuple(f.init for f in CONFIG if isinstance(f.init, str))


def config_layout():
    return data.StructLayout({f.name: f.shape for f in CONFIG})


def stats_layout():
    return data.StructLayout({f.name: f.shape for f in STATS})


def config_init(parameters):
    """The ``cfg`` port's reset value: each field's ``init``, taken from
    ``parameters`` (name -> value) where it names one."""
    def value(f):
        v = parameters[f.init] if isinstance(f.init, str) else f.init
        return [v] * len(f.elements) if f.elements else v     # an array: every entry
    return {f.name: value(f) for f in CONFIG}


# --- SystemRDL ---------------------------------------------------------------------------

#: The register sections: (title, base address).
SECTIONS = (("configuration", 0x000), ("status", 0x080), ("counters", 0x100),
            ("arrays of counters", 0x200), ("credit limits", 0x300),
            ("congestion control", 0x400))


def _section(field):
    if field in DCQCN_CONFIG or field in DCQCN_STATS:
        return "congestion control"
    if field in CONFIG or field in MACS:
        return "configuration"
    if field.limits:
        return "credit limits"
    if field.elements:
        return "arrays of counters"
    return "counters" if field.kind == "counter" else "status"


def _field_type(field):
    return {"config": "cfg_f", "strobe": "strobe_f", "status": "status_f",
            "counter": "count_f"}[field.kind]


def _init(field):
    if isinstance(field.init, str):
        return field.init.upper() + "_INIT"
    return str(field.init)


def _registers(fields):
    """[(register name, [fields])], fields grouped by register, in order."""
    out = {}
    for f in fields:
        out.setdefault(f.register, []).append(f)
    return list(out.items())


def _rdl_register(name, fields):
    width = 64 if sum(f.width for f in fields) > 32 else 32
    body = []
    lsb = 0
    for f in fields:
        reset = f" = {_init(f)}" if f.kind == "config" else ""
        size = "" if f.kind in ("counter", "strobe") else f"[{lsb + f.width - 1}:{lsb}]"
        body.append(f"{_field_type(f)} {f.name}{size}{reset};")
        if len(fields) > 1:
            body.append(f'{f.name}->desc = "{f.desc}";')
        lsb += f.width
    if len(fields) == 1:
        desc = fields[0].desc
    else:
        desc = "Fields " + ", ".join(f.name for f in fields) + "."
    head = f'reg {{ {"regwidth = 64; " if width == 64 else ""}desc = "{desc}";'
    dims = f"[{len(fields[0].elements)}]" if fields[0].elements else ""
    return [head] + [f"    {line}" for line in body] + [f"}} {name}{dims}"]


def rdl():
    """The text of ``rtl/csr/bridge.rdl``."""
    lines = [
        "// GENERATED from rtl/bridge/registers.py by `make rdl`: do not edit.",
        "// One bridge's CSRs (rtl/bridge/bridge.py): its run-time configuration and every",
        "// counter and status value. BridgeCsr binds each field to the Bridge's `cfg`,",
        "// `stats`, `dst_mac` or `src_mac` port (registers.bind). Reset values are the",
        "// Bridge's parameters (these defaults are Bridge()'s).",
        '`include "common.rdl"',
        "",
        "addrmap tlpoe_bridge #(",
        ",\n".join(f"    longint unsigned {p.upper()}_INIT = {DEFAULTS[p]}"
                   for p in RDL_PARAMETERS),
        ") {",
        '    name = "tlpoe bridge";',
        '    desc = "One bridge (TLP path and reliable link): configuration, counters, '
        'ordering checker.";',
        "    default regwidth = 32;",
        "    default accesswidth = 32;",
    ]
    for title, base in SECTIONS:
        fields = [f for f in MACS + CONFIG + STATS if _section(f) == title]
        lines += ["", f"    // --- {title} ({base:#05x}) ---"]
        first = True
        for name, group in _registers(fields):
            if group[0].limits:
                reg = _limits_regfile(group[0])
            else:
                reg = _rdl_register(name, group)
            if first:
                reg[-1] += f" @ {base:#05x}"
                first = False
            reg[-1] += ";"
            lines += [f"    {line}" for line in reg]
    lines.append("};")
    return "\n".join(lines) + "\n"


def _limits_regfile(field):
    return [f'regfile {{ desc = "{field.desc} Per class (P, NP, Cpl).";',
            "    reg { desc = \"One class: cumulative header and data credits.\";",
            f"        status_f hdr[{HDR_BITS - 1}:0];",
            f"        status_f data[{HDR_BITS + DATA_BITS - 1}:{HDR_BITS}];",
            f"    }} CLASS[{len(CLASSES)}];",
            f"}} {field.name}"]


def _defaults():
    import inspect
    from .bridge import Bridge
    params = inspect.signature(Bridge.__init__).parameters
    out = {name: params[name].default for name in RDL_PARAMETERS}
    if out.get("credit_refresh") is None:       # credit_refresh defaults to replay_timeout
        out["credit_refresh"] = out["replay_timeout"]
    if out.get("dead") is None:                 # dead defaults to 3 x keepalive
        out["dead"] = 3 * out["keepalive"]
    if out.get("line_bytes") is None:           # line_bytes defaults to the datapath's
        out["line_bytes"] = params["width"].default // 8 << 8
    out["ecn"] = int(out["ecn"])
    return out


class _Defaults(dict):
    def __missing__(self, key):
        self.update(_defaults())
        return dict.__getitem__(self, key)


DEFAULTS = _Defaults()


# --- binding the register block to the bridge's ports -------------------------------------

def csr_ports(field):
    """``[(register block port, index, path into the field)]`` of one field:
    a plain field or an array is its own port; credit limits are two ports
    (``<name>_hdr``, ``<name>_data``), one element per class."""
    if field.limits:
        return [(f"{field.name}_{part}", (k,), (k, part))
                for k in range(len(CLASSES)) for part in ("hdr", "data")]
    if field.elements:
        return [(field.name, (k,), (k,)) for k in range(len(field.elements))]
    return [(field.name, (), ())]


def _walk(value, path):
    for step in path:
        value = value[step]
    return Value.cast(value)


def bind(m, regs, bridge):
    """Connect ``regs`` (the :class:`~tlpoe.rtl.csr.CsrBlock` of
    :func:`rdl`) to ``bridge``'s ``cfg``, ``stats`` and MAC ports."""
    done = set()
    for group, port in ((CONFIG, bridge.cfg), (STATS, bridge.stats), (MACS, None)):
        for f in group:
            target = getattr(bridge, f.name) if port is None else port[f.name]
            for name, index, path in csr_ports(f):
                ours = _walk(getattr(regs, name), index)
                theirs = _walk(target, path)
                if f.kind in ("config", "strobe"):
                    m.d.comb += theirs.eq(ours)
                else:
                    m.d.comb += ours.eq(theirs)
                done.add(name)
    missing = set(regs.regmap.ports) - done
    if missing:
        raise ValueError(f"bridge.rdl has fields that registers.py does not describe: "
                         f"{sorted(missing)}: run `make rdl`")


# --- the benches' view -------------------------------------------------------------------

def _stats_slices():
    """``[(field, [(offset, width) per value])]`` of the ``stats`` port: one
    value for a plain field, one per entry of an array, two (hdr, data) per
    class of credit limits."""
    layout = stats_layout()
    out = []
    for f in STATS:
        base = layout[f.name].offset
        if f.limits:
            step = HDR_BITS + DATA_BITS
            parts = [(base + k * step + off, bits) for k in range(len(CLASSES))
                     for off, bits in ((0, HDR_BITS), (HDR_BITS, DATA_BITS))]
        elif f.elements:
            parts = [(base + k * f.width, f.width) for k in range(len(f.elements))]
        else:
            parts = [(base, f.width)]
        out.append((f, parts))
    return out


_SLICES = {}


def _slices(name=None):
    if not _SLICES:
        _SLICES.update((f.name, (f, parts)) for f, parts in _stats_slices())
    return _SLICES.values() if name is None else [_SLICES[name]]


def decode_stats(value, name=None):
    """The ``stats`` port's value (an int) as ``{name: value}``: a plain field
    an int; an array a list, and each entry also as ``<name>_<element>``;
    credit limits a list of ``(hdr, data)`` per class. ``name``: that field
    only."""
    out = {}
    for f, parts in _slices(name):
        values = [(value >> off) & ((1 << bits) - 1) for off, bits in parts]
        if f.limits:
            out[f.name] = list(zip(values[0::2], values[1::2]))
        elif f.elements:
            out[f.name] = values
            out.update({f"{f.name}_{e}": n for e, n in zip(f.elements, values)})
        else:
            out[f.name] = values[0]
    return out


def encode_config(**values):
    """The ``cfg`` port's value (an int) with the fields named (others 0);
    an unknown name or a value too wide raises naming it."""
    layout = config_layout()
    fields = {f.name: f for f in CONFIG}
    for name, value in values.items():
        if name not in layout.members:
            raise ValueError(f"config has no field {name!r}; it has {list(layout.members)}")
        f = fields[name]
        entries = list(value) if f.elements and not isinstance(value, int) else [value]
        if f.elements and len(entries) not in (1, len(f.elements)):
            raise ValueError(f"config.{name}: {len(entries)} values, not {len(f.elements)}")
        for v in entries:
            if not 0 <= v < 1 << f.width:
                raise ValueError(f"config.{name}: {v} does not fit {f.width} bits")
    values = {name: [v] * len(fields[name].elements)
              if fields[name].elements and isinstance(v, int) else v
              for name, v in values.items()}
    return layout.const(values).as_bits()


# --- the docs' table ----------------------------------------------------------------------

def markdown(regmap):
    """The table of ``docs/csr.md``: every field of the description, its
    bits in the Verilog port, its register and address in ``regmap``
    (``bridge.rdl`` compiled), and its meaning."""
    lines = ["| field | port bits | register (address) | register bits | kind | meaning |",
             "|---|---|---|---|---|---|"]
    for group, port, layout in ((MACS, None, None), (CONFIG, "cfg", config_layout()),
                                (STATS, "stats", stats_layout())):
        for f in group:
            if layout is None:
                port_bits = f"`{f.name}[{f.width - 1}:0]`"
            else:
                member = layout[f.name]
                size = data.Layout.cast(member.shape).size if not isinstance(member.shape, int) \
                    else member.shape
                port_bits = f"`{port}[{member.offset + size - 1}:{member.offset}]`"
            name, index, _ = csr_ports(f)[0]
            reg, rf = regmap.port_field(name, *index)
            where = reg.name.split("[")[0]
            if f.elements or f.limits:
                where += f"[{len(f.elements) if f.elements else len(CLASSES)}]"
            bits = f"{rf.lsb + rf.width - 1}:{rf.lsb}"
            if f.limits:
                bits = f"hdr {HDR_BITS - 1}:0, data {HDR_BITS + DATA_BITS - 1}:{HDR_BITS}"
            kind = f.kind + ("" if f.modes == ("gbn", "sr") else f" ({'/'.join(f.modes)} only)")
            entries = list(f.elements) or (list(CLASS_NAMES) if f.limits else [])
            extra = f" Entries: {', '.join(entries)}." if entries else ""
            lines.append(f"| `{f.name}` | {port_bits} | `{where}` (0x{reg.address:03X}) | "
                         f"{bits} | {kind} | {f.desc}{extra} |")
    return "\n".join(lines) + "\n"
