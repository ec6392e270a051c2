"""Golden records of :func:`tlpoe.models.linksim.run_point`: the records of a
spread of points (phy channel at BER 0, 1e-6, 1e-5 and in bursts; the lossy
channel with drops and corruption; go-back-N and selective repeat; a B-to-A
stream; paced submission; link down after a tiny ``max_retries``; the
``max_time_ns`` cut-off; a forged TLP, so the run ends with no event left;
no TLPs at all) must not change when the simulation
loop is reworked.

``tests/data/linksim_golden.json`` holds, per point, its params and seed, a
digest of the whole record (every field, as canonical JSON) and a few headline
fields so a mismatch reads as a diff. The records were made by linksim's own
heap loop before it moved onto :class:`tlpoe.models.events.EventKernel`.
Regenerate only on purpose (a deliberate change of the model's behaviour):
``PYTHONPATH=... python tests/test_linksim_golden.py --write``.
"""

import hashlib
import json
import sys
from pathlib import Path

import pytest

from tlpoe.models.frame import decode_frame, encode_frame
from tlpoe.models.linksim import IdealChannel, register_channel, run_point
from tlpoe.models.wire import FrameType

GOLDEN = Path(__file__).resolve().parent / "data" / "linksim_golden.json"
HEADLINE = ("tlps_sent", "tlps_delivered", "lost", "replays_nak", "replays_timeout",
            "frames_retransmitted", "link_down_events", "wraps", "elapsed_ns", "sim_end_ns",
            "latency_p99_ns", "reverse_tlps_delivered")

class ForgingChannel(IdealChannel):
    """An ideal channel that re-encodes its ``forge``-th data frame with the
    first TLP's last byte flipped and a valid CRC: B delivers a TLP that was
    never sent (``corrupted``), A sees it acknowledged, so the B stream is
    never done and the run ends when no event is left."""

    def __init__(self, latency_ns, rate_gbps, forge):
        super().__init__(latency_ns, rate_gbps)
        self.forge, self.data_frames = forge, 0

    def transmit(self, frame, t_ns):
        delivery = super().transmit(frame, t_ns)
        decoded = decode_frame(frame)
        if decoded.frame_type == FrameType.DATA:
            self.data_frames += 1
            if self.data_frames == self.forge:
                tlps = list(decoded.tlps)
                tlps[0] = tlps[0][:-1] + bytes([tlps[0][-1] ^ 1])
                data = encode_frame(tlps, seq=decoded.seq, ack=decoded.ack, flags=decoded.flags,
                                    channel=decoded.channel, stamps=decoded.stamps)
                delivery = delivery._replace(data=data, fate="forged")
        return delivery


register_channel("golden_forge", lambda params, seed, direction: ForgingChannel(
    params["latency_ns"], params["rate_gbps"], params["forge"] if direction == "ab" else 0))

POINTS = [
    ({"tlps": 1000, "channel": "phy", "ber": 0.0}, 1),
    ({"tlps": 4000, "channel": "phy", "ber": 1e-6, "mode": "gbn"}, 2),
    ({"tlps": 4000, "channel": "phy", "ber": 1e-6, "mode": "sr"}, 2),
    ({"tlps": 1500, "channel": "phy", "ber": 1e-5, "mode": "gbn"}, 3),
    ({"tlps": 1500, "channel": "phy", "ber": 1e-5, "mode": "sr", "tlp_payload": 1024}, 4),
    ({"tlps": 1500, "channel": "phy", "burst": {"ber": 1e-3, "mean_burst_bits": 2000},
      "mode": "sr"}, 5),
    ({"tlps": 1500, "channel": "phy", "burst": {"ber": 1e-3, "mean_burst_bits": 2000},
      "ber": 1e-6, "mode": "gbn"}, 5),
    ({"tlps": 1500, "channel": "lossy", "drop_rate": 0.05, "corrupt_rate": 0.02,
      "mode": "gbn"}, 6),
    ({"tlps": 1500, "channel": "lossy", "drop_rate": 0.1, "mode": "sr", "window": 32,
      "ack_every": 4}, 7),
    ({"tlps": 800, "tlps_reverse": 600, "channel": "lossy", "drop_rate": 0.05,
      "mode": "sr"}, 8),
    ({"tlps": 600, "tlps_reverse": 600, "channel": "phy", "ber": 1e-5, "mode": "gbn",
      "interval_ns": 40.0}, 9),
    ({"tlps": 300, "channel": "lossy", "drop_rate": 0.6, "max_retries": 1, "mode": "gbn"}, 10),
    ({"tlps": 300, "channel": "lossy", "drop_rate": 0.6, "max_retries": 1, "mode": "sr",
      "tlps_reverse": 50}, 11),
    ({"tlps": 300, "channel": "phy", "ber": 1e-5, "max_time_ns": 3000.0}, 12),
    ({"tlps": 0}, 13),
    ({"tlps": 400, "channel": "lossy", "drop_rate": 0.1, "ab": {"drop_rate": 0.0},
      "max_tlps_per_frame": 2, "seq_bits": 6, "window": 16}, 14),
    ({"tlps": 600, "channel": "lossy", "ba": {"drop_rate": 0.8}, "ab": {"drop_rate": 0.05},
      "mode": "gbn", "max_retries": 30}, 15),
    ({"tlps": 200, "channel": "golden_forge", "ab": {"forge": 3}}, 16),
]


def digest(record):
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def summary(params, seed):
    record = run_point(params, seed)
    return {"params": params, "seed": seed, "digest": digest(record),
            "headline": {k: record[k] for k in HEADLINE if k in record}}


def golden():
    return json.loads(GOLDEN.read_text())


def test_golden_covers_the_points():
    assert [[g["params"], g["seed"]] for g in golden()] == [list(p) for p in POINTS]


@pytest.mark.parametrize("index", range(len(POINTS)))
def test_record_matches_golden(index):
    want = golden()[index]
    got = summary(want["params"], want["seed"])
    assert got["headline"] == want["headline"]
    assert got["digest"] == want["digest"], "a field outside the headline differs"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: test_linksim_golden.py --write  (regenerates the golden records)")
    entries = [summary(p, s) for p, s in POINTS]
    GOLDEN.write_text("[\n" + ",\n".join(json.dumps(e, separators=(",", ":")) for e in entries)
                      + "\n]\n")
    print(f"wrote {len(entries)} records to {GOLDEN}")
