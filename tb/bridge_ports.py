"""The benches' side of a Bridge's ``cfg`` and ``stats`` ports.

:class:`BridgePorts` writes a bridge's configuration and reads its
statistics by field name, through the one description of both
(:mod:`tlpoe.rtl.bridge.registers`): no bench knows a bit position.
"""

from ..rtl.bridge.registers import CONFIG, DEFAULTS, decode_stats, encode_config

__all__ = ["BridgePorts", "TIMING_FIELDS", "config_resets"]

#: The config fields a bench's parameters set (cycles).
TIMING_FIELDS = ("flush_timeout", "replay_timeout", "nak_timeout", "ack_delay", "credit_delay",
                 "credit_refresh")


def config_resets(bridge=None):
    """Every config field's reset value in a Bridge built with the
    parameters ``bridge`` (the others the defaults)."""
    bridge = {k: v for k, v in (bridge or {}).items() if v is not None}
    if "keepalive" in bridge and "dead" not in bridge:
        bridge["dead"] = 3 * bridge["keepalive"]        # as the Bridge does
    return {f.name: bridge.get(f.init, DEFAULTS[f.init]) if isinstance(f.init, str)
            else f.init for f in CONFIG}


class BridgePorts:
    """The ports of the bridge named ``{prefix}_*`` in the cocotb ``dut``
    (``prefix`` None: the bridge is the top level)."""

    def __init__(self, dut, prefix=None):
        self.dut, self.prefix = dut, prefix
        self.values = config_resets()
        self._stats = self.port("stats")

    def port(self, name):
        return getattr(self.dut, name if self.prefix is None else f"{self.prefix}_{name}")

    def configure(self, dst_mac, src_mac, params, **fields):
        """Drive every input (a top-level input has no reset value in
        Verilog): the MACs, the timing fields from ``params`` (cycles),
        ``credits_enable`` from ``params["credits"]``, the switches on,
        ``channel`` 0, the others their reset values for the Bridge built
        from ``params["bridge"]`` (if given; the link state machine's
        ``keepalive`` and ``dead``), then ``fields``."""
        self.port("dst_mac").value = int.from_bytes(dst_mac, "big")
        self.port("src_mac").value = int.from_bytes(src_mac, "big")
        bridge = {**params.get("bridge", {}), **params.get("bridge_sides", {}).get(self.prefix, {})}
        values = config_resets(bridge)
        values.update({name: params[name] for name in TIMING_FIELDS})
        values.update(channel=0, credits_enable=int(bool(params["credits"])), ro_enable=1,
                      np_accept=1, order_irq_clear=0)
        self.set(**{**values, **fields})

    def set(self, **fields):
        """Change the named config fields (the others keep their values)."""
        self.values.update(fields)
        self.port("cfg").value = encode_config(**self.values)

    def stats(self, name=None):
        """Every statistic, as :func:`~tlpoe.rtl.bridge.registers.decode_stats`
        gives them (``name``: that field only, a value)."""
        got = decode_stats(int(self._stats.value), name)
        return got if name is None else got[name]
