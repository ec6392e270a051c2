"""Testbench parameters, passed by :func:`tlpoe.sim.runner.run_cocotb` as one
JSON object in the environment variable ``TLPOE_TB_PARAMS``; and the folder
for link captures, passed (absolute) in ``TLPOE_PCAP_DIR`` when the run was
asked for them (``PCAP=1``, see :mod:`tlpoe.tb.capture`)."""

import json
import os

__all__ = ["PARAMS_ENV", "PCAP_DIR_ENV", "tb_params"]

PARAMS_ENV = "TLPOE_TB_PARAMS"
#: Set by the runner to the run's absolute capture folder; unset: no capture.
PCAP_DIR_ENV = "TLPOE_PCAP_DIR"


def tb_params(**defaults):
    """Return ``defaults`` updated from ``TLPOE_TB_PARAMS``.

    A key that is not in ``defaults`` is an error, so a misspelt parameter
    fails the test instead of being silently ignored."""
    given = json.loads(os.environ.get(PARAMS_ENV) or "{}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{PARAMS_ENV} has unknown parameter(s) {unknown}; "
                         f"this testbench takes {sorted(defaults)}")
    return {**defaults, **given}
