"""The transports in the RTL (issue 20; :mod:`tlpoe.models.transport` is the
one definition of their bytes): the ``udp`` transport's configuration
layout, the frame geometry of each transport, and the IPv4 header-checksum
bases the :class:`~tlpoe.rtl.framing.framer.Framer` adds a frame's length to.
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...models import transport as tp

__all__ = ["UdpConfigLayout", "check_transport", "geometry", "udp_config_init",
           "ChecksumBases", "CHECKSUM_LAG", "TOS_ECT0"]

#: The RTL's transports (``rocev2`` is the model's only, so far).
RTL_TRANSPORTS = (tp.Transport.ETH, tp.Transport.UDP)
#: The low two bits of the IPv4 TOS byte every frame is sent with: ECT(0).
TOS_ECT0 = tp.ECT0


class UdpConfigLayout(data.StructLayout):
    """The ``udp`` transport's configuration (:class:`~tlpoe.models.transport.UdpConfig`):
    addresses, ports, TTL, the DSCP of each traffic class and of frames
    without TLPs."""

    def __init__(self):
        super().__init__({
            "src_ip": 32, "dst_ip": 32, "src_port": 16, "dst_port": 16, "ttl": 8,
            "dscp": data.ArrayLayout(6, 8), "control_dscp": 6,
        })


def udp_config_init(config=None):
    """The :class:`UdpConfigLayout` init value (a dict) of ``config`` (a
    :class:`~tlpoe.models.transport.UdpConfig`, by default the default)."""
    c = tp.UdpConfig() if config is None else config
    return {"src_ip": c.src_ip, "dst_ip": c.dst_ip, "src_port": c.src_port,
            "dst_port": c.dst_port, "ttl": c.ttl, "dscp": list(c.dscp),
            "control_dscp": c.control_dscp}


def check_transport(transport):
    """``transport`` as a :class:`~tlpoe.models.transport.Transport` the RTL
    builds; ValueError naming it otherwise."""
    try:
        t = tp.Transport(transport)
    except ValueError:
        raise ValueError(f"transport must be one of {[t.value for t in tp.Transport]}, "
                         f"not {transport!r}") from None
    if t not in RTL_TRANSPORTS:
        raise ValueError(f"transport {t.value!r} is not built in the RTL yet "
                         f"(it has: {', '.join(x.value for x in RTL_TRANSPORTS)})")
    return t


def geometry(transport):
    """Where a frame's parts start on ``transport``: ``bridge_at`` (the
    bridge header; the bytes before it are outside the bridge's CRC) and
    ``area_at`` (the TLP area: 40 on ``eth``, 68 on ``udp``)."""
    t = check_transport(transport)
    return SimpleNamespace(transport=t, bridge_at=tp.header_bytes(t), area_at=tp.area_offset(t))


def _fold(value):
    """One end-around-carry step: the low 16 bits plus the bits above."""
    return value[:16] + value[16:]


#: Cycles from a change of ``config`` to the bases (and the configuration
#: delayed beside them, :attr:`ChecksumBases.config_out`) showing it.
CHECKSUM_LAG = 7


class ChecksumBases(wiring.Component):
    """The IPv4 header's one's-complement sum, for a total length of 58 (no
    TLP area) and the header checksum 0, folded to 16 bits: one per traffic
    class (``bases[tc]``, its DSCP in the TOS byte) and one for frames
    without TLPs (``control_base``); and the configuration they were worked
    out from (``config_out``), every field of it :data:`CHECKSUM_LAG` cycles
    after ``config``, so that a frame's header and its checksum always come
    from the same configuration.

    A frame whose TLP area is ``L`` bytes then has the checksum
    ``~fold(base + L)``: one adder at the descriptor's handshake and one
    increment after it (:class:`~tlpoe.rtl.framing.framer.Framer`).

    A pipeline of one adder per stage (the configuration changes seldom).
    Its registers have no reset: they follow ``config`` through a reset, so
    a frame sent just after one carries the configuration set during it;
    their power-on values are ``init``'s (the first cycles after power-on
    show the reset configuration)."""

    #: The IPv4 header's constant words, for ``L`` = 0: version/IHL 0x45
    #: with TOS 0, total length 20 + 8 + 26 + 4, identification 0, Don't
    #: Fragment, protocol UDP (the TTL is the configuration's).
    CONSTANT = 0x4500 + 58 + 0x4000 + tp.IPPROTO_UDP

    def __init__(self, init=None):
        self._init = udp_config_init(init)
        super().__init__({
            "config": In(UdpConfigLayout(), init=self._init),
            "config_out": Out(UdpConfigLayout(), init=self._init),
            "bases": Out(data.ArrayLayout(16, 8)),
            "control_base": Out(16),
        })

    @staticmethod
    def model(config):
        """The bases of ``config`` (a :class:`~tlpoe.models.transport.UdpConfig`
        or a :func:`udp_config_init` dict): ``(bases, control_base)``."""
        c = config if isinstance(config, dict) else udp_config_init(config)

        def base(dscp):
            header = tp.IPV4.pack(version_ihl=0x45, dscp=dscp, ecn=TOS_ECT0, total_length=58,
                                  flags_fragment=0x4000, ttl=c["ttl"], protocol=tp.IPPROTO_UDP,
                                  src_ip=c["src_ip"], dst_ip=c["dst_ip"])
            return tp.ones_complement_sum(header)
        return [base(d) for d in c["dscp"]], base(c["control_dscp"])

    def elaborate(self, platform):
        m = Module()
        init = self._init
        cfg = self.config

        def stage(value, name, reset):
            sig = Signal(len(value), name=name, init=reset, reset_less=True)
            m.d.sync += sig.eq(value)
            return sig

        # the register values each stage holds at reset (the init config's)
        c = init
        s_ip = (c["src_ip"] >> 16) + (c["src_ip"] & 0xFFFF)
        d_ip = (c["dst_ip"] >> 16) + (c["dst_ip"] & 0xFFFF)
        fixed = self.CONSTANT + (c["ttl"] << 8)
        k0 = s_ip + d_ip + fixed

        def fold(v):
            return (v & 0xFFFF) + (v >> 16)

        # 1: the address halves summed, the TTL's word
        s1 = stage(cfg.src_ip[16:] + cfg.src_ip[:16], "ck_src", s_ip)
        d1 = stage(cfg.dst_ip[16:] + cfg.dst_ip[:16], "ck_dst", d_ip)
        f1 = stage(Const(self.CONSTANT, 17) + Cat(Const(0, 8), cfg.ttl), "ck_fixed", fixed)
        # 2, 3: the sum; 4, 5: folded to 16 bits
        a2 = stage(s1 + d1, "ck_ips", s_ip + d_ip)
        f2 = stage(f1, "ck_fixed2", fixed)
        k3 = stage(a2 + f2, "ck_sum", k0)
        k4 = stage(_fold(k3), "ck_fold1", fold(k0))
        k5 = stage(_fold(k4)[:16], "ck_fold2", fold(fold(k0)))
        # the configuration, delayed as the bases are: delays[i] is i cycles late
        delays = [cfg]
        for i in range(CHECKSUM_LAG):
            nxt = Signal(UdpConfigLayout(), name=f"cfg_d{i + 1}", init=init, reset_less=True)
            m.d.sync += nxt.eq(delays[-1])
            delays.append(nxt)
        m.d.comb += self.config_out.eq(delays[CHECKSUM_LAG])

        # 6: plus each TOS (DSCP, ECT(0)), from the configuration k5 was
        # worked out from (five cycles late); 7: folded again
        late = delays[5]
        tos = [Cat(Const(TOS_ECT0, 2), d) for d in (*late.dscp, late.control_dscp)]
        tos_init = [TOS_ECT0 | d << 2 for d in (*c["dscp"], c["control_dscp"])]
        k5_init = fold(fold(k0))
        out = []
        for i, (t, t0) in enumerate(zip(tos, tos_init)):
            k6 = stage(k5 + t, f"ck_tos{i}", k5_init + t0)
            out.append(stage(_fold(k6)[:16], f"ck_base{i}", fold(k5_init + t0)))
        for i in range(8):
            m.d.comb += self.bases[i].eq(out[i])
        m.d.comb += self.control_base.eq(out[8])
        return m
