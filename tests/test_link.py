"""The reference link layer (tlpoe.models.link), driven frame by frame."""

import pytest

from tlpoe.models.frame import (
    FLAG_ACK_VALID, aggregate, decode_frame, encode_frame,
)
from tlpoe.models.link import (
    LinkConfig, LinkEndpoint, seq_is_behind, seq_offset,
)
from tlpoe.models.wire import FrameType


def tlp(i, size=32):
    """A TLP-shaped byte string numbered ``i`` (whole DWs)."""
    return i.to_bytes(4, "big") * (size // 4)


def config(**kw):
    kw.setdefault("max_tlps_per_frame", 1)     # one TLP per frame: seq == TLP number
    kw.setdefault("replay_timeout_ns", 10_000.0)
    kw.setdefault("nak_timeout_ns", 5_000.0)
    return LinkConfig(**kw)


def pair(**kw):
    cfg = config(**kw)
    return LinkEndpoint(cfg), LinkEndpoint(cfg)


def decoded(frames):
    return [decode_frame(f) for f in frames]


def deliver(endpoint, frames, now=0.0):
    out = []
    for frame in frames:
        out += endpoint.receive(frame, now)
    return out


# --- parameters -----------------------------------------------------------------

@pytest.mark.parametrize("kw, name", [
    ({"mode": "arq"}, "mode"),
    ({"seq_bits": 1}, "seq_bits"),
    ({"seq_bits": 33}, "seq_bits"),
    ({"seq_bits": 6, "window": 32}, "window"),
    ({"seq_bits": 6, "window": 32, "mode": "sr"}, "window"),
    ({"window": 0}, "window"),
    ({"window": 2.5}, "window"),
    ({"ack_every": 0}, "ack_every"),
    ({"ack_delay_ns": -1}, "ack_delay_ns"),
    ({"replay_timeout_ns": 0}, "replay_timeout_ns"),
    ({"nak_timeout_ns": 0}, "nak_timeout_ns"),
    ({"max_retries": 0}, "max_retries"),
    ({"mtu": 40}, "mtu"),
    ({"max_tlps_per_frame": 0}, "max_tlps_per_frame"),
])
def test_bad_parameter_raises_naming_it(kw, name):
    with pytest.raises(ValueError, match=name):
        LinkConfig(**kw)


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_window_may_be_half_the_sequence_space_minus_one(mode):
    assert LinkConfig(mode=mode, seq_bits=6, window=31).window == 31
    assert LinkConfig(mode=mode, seq_bits=12).window <= 2047


def test_serial_arithmetic_across_the_wrap():
    assert seq_offset(2, 14, 4) == 4
    assert not seq_is_behind(2, 14, 4)
    assert seq_is_behind(14, 2, 4)
    assert seq_is_behind(15, 0, 4)


# --- receive --------------------------------------------------------------------

def test_in_order_delivery_and_ack_coalescing():
    a, b = pair(ack_every=4, ack_delay_ns=1_000.0)
    a.submit([tlp(i) for i in range(6)])
    frames = a.drain(0.0)
    assert [f.seq for f in decoded(frames)] == list(range(6))
    assert deliver(b, frames[:3]) == [tlp(i) for i in range(3)]
    assert b.poll(0.0) is None                      # 3 < ack_every, timer not expired
    assert b.next_deadline() == 1_000.0             # ack_delay from the first acceptance
    deliver(b, frames[3:4])
    ack = decode_frame(b.poll(0.0))                 # the 4th acceptance: ACK due
    assert (ack.frame_type, ack.ack, ack.flags & FLAG_ACK_VALID) == (FrameType.ACK, 3, 1)
    deliver(b, frames[4:])
    assert b.poll(500.0) is None
    b.on_timer(1_000.0)
    assert decode_frame(b.poll(1_000.0)).ack == 5   # the ACK delay expired
    assert b.counters.acks_sent == 2


def test_ack_not_valid_before_anything_received_in_order():
    a, b = pair()
    a.submit([tlp(0)])
    frame = decode_frame(a.poll(0.0))
    assert frame.flags & FLAG_ACK_VALID == 0


def test_data_piggy_backs_the_ack():
    a, b = pair(ack_every=1)
    a.submit([tlp(0)])
    deliver(b, a.drain(0.0))
    b.submit([tlp(100)])
    frames = decoded(b.drain(0.0))
    assert [(f.frame_type, f.ack, f.flags & FLAG_ACK_VALID) for f in frames] == \
        [(FrameType.DATA, 0, 1)]                   # no separate ACK
    deliver(a, [frames[0].encode()])
    assert a.sender.in_flight == 0


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_duplicate_is_discarded_counted_and_acked(mode):
    a, b = pair(mode=mode, ack_every=8)
    a.submit([tlp(0), tlp(1)])
    frames = a.drain(0.0)
    assert deliver(b, frames) == [tlp(0), tlp(1)]
    assert b.poll(0.0) is None                      # coalescing: no ACK yet
    assert deliver(b, frames[:1]) == []             # frame 0 again: the ACK was lost
    assert b.counters.duplicates_discarded == 1
    assert b.counters.tlps_delivered == 2
    ack = decode_frame(b.poll(0.0))                 # an ACK at once
    assert (ack.frame_type, ack.ack) == (FrameType.ACK, 1)


def test_duplicate_from_before_a_wrap_is_discarded():
    a, b = pair(seq_bits=4, window=7, ack_every=1)
    a.submit([tlp(i) for i in range(20)])
    got, sent = [], []
    for _ in range(20):
        frames = a.drain(0.0)
        sent += frames
        got += deliver(b, frames)
        deliver(a, b.drain(0.0))
    assert got == [tlp(i) for i in range(20)]       # seq 0..15, 0..3
    assert deliver(b, [sent[17]]) == []             # seq 1 of the second lap
    assert deliver(b, [sent[14]]) == []             # seq 14 of the first lap
    assert b.counters.duplicates_discarded == 2
    assert a.counters.seq_wraps == 1


def test_gbn_naks_once_per_gap():
    a, b = pair(mode="gbn")
    a.submit([tlp(i) for i in range(6)])
    frames = a.drain(0.0)
    deliver(b, frames[:1])
    assert deliver(b, frames[2:5], 100.0) == []     # frame 1 lost: a gap
    naks = [f for f in decoded(b.drain(100.0)) if f.frame_type == FrameType.NAK]
    assert [(n.seq, n.ack) for n in naks] == [(1, 0)]
    assert b.counters.naks_sent == 1
    assert b.counters.out_of_order_discarded == 3
    deliver(b, frames[5:], 200.0)                   # still the same gap: no NAK
    assert not [f for f in decoded(b.drain(200.0)) if f.frame_type == FrameType.NAK]
    b.on_timer(100.0 + 5_000.0)                     # NAK timer, gap still open
    assert [(f.frame_type, f.seq) for f in decoded(b.drain(5_100.0))] == [(FrameType.NAK, 1)]
    assert deliver(b, frames[1:3], 6_000.0) == [tlp(1), tlp(2)]
    deliver(b, frames[4:5], 6_000.0)                # new gap (3 missing): a new NAK
    assert [f.seq for f in decoded(b.drain(6_000.0)) if f.frame_type == FrameType.NAK] == [3]


def test_sr_buffers_and_naks_each_missing_seq():
    a, b = pair(mode="sr")
    a.submit([tlp(i) for i in range(6)])
    f = a.drain(0.0)
    assert deliver(b, [f[0], f[2], f[4], f[5]]) == [tlp(0)]
    naks = [x for x in decoded(b.drain(0.0)) if x.frame_type == FrameType.NAK]
    assert [(n.seq, n.ack) for n in naks] == [(1, 0), (3, 0)]
    assert b.counters.out_of_order_buffered == 3
    assert deliver(b, [f[2]]) == []                 # a second copy of a buffered one
    assert b.counters.duplicates_discarded == 1
    assert deliver(b, [f[1]]) == [tlp(1), tlp(2)]
    assert deliver(b, [f[3]]) == [tlp(3), tlp(4), tlp(5)]
    assert b.receiver.buffer == {}


def test_sr_naks_a_missing_seq_again_after_the_nak_timer():
    a, b = pair(mode="sr")
    a.submit([tlp(i) for i in range(4)])
    f = a.drain(0.0)
    deliver(b, [f[0], f[2], f[3]])
    assert [x.seq for x in decoded(b.drain(0.0))] == [1]
    b.on_timer(4_999.0)
    assert b.poll(4_999.0) is None
    b.on_timer(5_000.0)
    assert [(x.frame_type, x.seq) for x in decoded(b.drain(5_000.0))] == [(FrameType.NAK, 1)]


def test_corrupted_frame_is_dropped_and_counted_by_reason():
    a, b = pair()
    a.submit([tlp(0)])
    frame = bytearray(a.poll(0.0))
    frame[50] ^= 0x10
    assert b.receive(bytes(frame), 0.0) == []
    assert b.counters.drops["CRC"] == 1
    frame[12] ^= 0xFF
    b.receive(bytes(frame), 0.0)
    assert b.counters.drops["ETHERTYPE"] == 1
    assert b.counters.tlps_delivered == 0


# --- send -----------------------------------------------------------------------

def test_gbn_nak_replays_every_unacknowledged_frame_from_its_seq():
    a, b = pair(mode="gbn")
    a.submit([tlp(i) for i in range(5)])
    a.drain(0.0)
    nak = encode_frame([], frame_type=FrameType.NAK, seq=2, ack=1, flags=FLAG_ACK_VALID)
    a.receive(nak, 10.0)
    assert [f.seq for f in decoded(a.drain(10.0))] == [2, 3, 4]
    assert (a.counters.replays_nak, a.counters.frames_retransmitted) == (1, 3)
    assert a.sender.in_flight == 3                  # the NAK's ack released 0 and 1


def test_sr_nak_resends_only_that_seq():
    a, b = pair(mode="sr")
    a.submit([tlp(i) for i in range(5)])
    a.drain(0.0)
    for seq in (2, 2, 4):
        a.receive(encode_frame([], frame_type=FrameType.NAK, seq=seq, ack=1,
                               flags=FLAG_ACK_VALID), 10.0)
    assert [f.seq for f in decoded(a.drain(10.0))] == [2, 4]
    assert a.counters.frames_retransmitted == 2


def control(frame_type, seq=0, ack=0):
    return encode_frame([], frame_type=frame_type, seq=seq, ack=ack, flags=FLAG_ACK_VALID)


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_acks_and_naks_naming_frames_not_sent_are_counted_and_ignored(mode):
    """Issue 16: only a frame that was sent may be acknowledged or NAKed."""
    a, _ = pair(mode=mode, seq_bits=6, window=8)
    a.submit([tlp(i) for i in range(3)])
    a.drain(0.0)                                    # 0, 1, 2 sent
    a.receive(control(FrameType.ACK, ack=3), 1.0)   # one past the highest sent
    a.receive(control(FrameType.ACK, ack=20), 1.0)
    a.receive(control(FrameType.NAK, seq=5, ack=63), 1.0)
    assert (a.counters.acks_invalid, a.counters.naks_invalid) == (2, 1)
    assert a.sender.in_flight == 3 and a.counters.replays_nak == 0
    a.receive(control(FrameType.ACK, ack=63), 1.0)  # behind: old, not invalid
    a.receive(control(FrameType.NAK, seq=63, ack=1), 1.0)    # releases 0, 1; NAK old
    assert (a.counters.acks_invalid, a.counters.naks_invalid) == (2, 1)
    assert a.sender.in_flight == 1


def test_an_ack_with_nothing_outstanding_is_judged_against_the_next_number():
    a, _ = pair(seq_bits=6, window=8)
    a.submit([tlp(0)])
    a.drain(0.0)
    a.receive(control(FrameType.ACK, ack=0), 1.0)
    a.receive(control(FrameType.ACK, ack=0), 1.0)   # old now
    a.receive(control(FrameType.ACK, ack=1), 1.0)   # frame 1 was never sent
    assert a.counters.acks_invalid == 1 and a.sender.in_flight == 0


@pytest.mark.parametrize("mode, replayed", [("gbn", [0, 1, 2]), ("sr", [0])])
def test_replay_timer_replays(mode, replayed):
    a, b = pair(mode=mode)
    a.submit([tlp(i) for i in range(3)])
    a.drain(0.0)
    assert a.next_deadline() == 10_000.0
    a.on_timer(10_000.0)
    assert [f.seq for f in decoded(a.drain(10_000.0))] == replayed
    assert a.counters.replays_timeout == 1


def test_retransmission_is_the_frame_encode_gives_with_the_current_ack():
    a, b = pair(mode="gbn", ack_every=1)
    b.submit([tlp(7)])
    a.receive(b.poll(0.0), 0.0)                     # a now acks 0
    a.submit([tlp(0)])
    first = a.poll(0.0)
    b.submit([tlp(8)])
    a.receive(b.poll(1.0), 1.0)                     # a now acks 1
    a.on_timer(10_000.0)
    again = a.poll(10_000.0)
    assert again == encode_frame([tlp(0)], seq=0, ack=1, flags=FLAG_ACK_VALID)
    assert again != first


def test_window_full_stalls_the_sender_and_never_drops():
    a, b = pair(window=4)
    a.submit([tlp(i) for i in range(10)])
    frames = a.drain(0.0)
    assert len(frames) == 4
    assert len(a.sender.pending) == 6               # waiting, not dropped
    assert a.counters.window_stalls == 1
    a.drain(1.0)
    assert a.counters.window_stalls == 1            # one stall, not one per poll
    a.receive(encode_frame([], frame_type=FrameType.ACK, ack=1, flags=FLAG_ACK_VALID), 2.0)
    assert [f.seq for f in decoded(a.drain(2.0))] == [4, 5]


def test_retry_limit_puts_the_link_down_once():
    calls = []
    a = LinkEndpoint(config(max_retries=3), on_link_down=calls.append)
    a.submit([tlp(0)])
    now = 0.0
    a.poll(now)
    for _ in range(10):
        deadline = a.next_deadline()
        if deadline is None:
            break
        now = deadline
        a.on_timer(now)
        a.drain(now)
    assert a.down and calls == [a]
    assert a.counters.link_down_events == 1
    assert a.counters.replays_timeout == 2          # expiries 1 and 2 replayed; 3 is down
    assert a.poll(now) is None and a.next_deadline() is None
    a.on_timer(now + 1e9)
    assert a.counters.link_down_events == 1
    a.reset()
    assert not a.down
    a.submit([tlp(1)])
    assert decode_frame(a.poll(now)).seq == 0


def test_progress_resets_the_retry_count():
    a = LinkEndpoint(config(max_retries=2))
    a.submit([tlp(0), tlp(1)])
    a.drain(0.0)
    a.on_timer(10_000.0)                            # expiry 1
    a.receive(encode_frame([], frame_type=FrameType.ACK, ack=0, flags=FLAG_ACK_VALID),
              11_000.0)                             # progress
    a.on_timer(21_000.0)                            # expiry 1 again
    assert not a.down


def test_frames_aggregate_tlps_as_frame_aggregate_does():
    sizes = [272, 16, 1000, 500, 12, 272, 272, 272, 272, 272, 1464]
    tlps = [bytes(4 * (s // 4)) for s in sizes]
    a = LinkEndpoint(LinkConfig(mtu=1500))
    a.submit(tlps)
    assert [decode_frame(f).tlps for f in a.drain(0.0)] == aggregate(tlps, mtu=1500)


def test_submit_rejects_a_tlp_that_does_not_fit():
    a = LinkEndpoint(LinkConfig(mtu=1500))
    with pytest.raises(ValueError, match="TLP 1"):
        a.submit([bytes(16), bytes(1468)])


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_gap_across_the_wrap_is_recovered_in_order(mode):
    a, b = pair(mode=mode, seq_bits=4, window=7, ack_every=1)
    a.submit([tlp(i) for i in range(15)])
    got = []
    for _ in range(3):                          # seq 0..14 through and acknowledged
        got += deliver(b, a.drain(0.0))
        deliver(a, b.drain(0.0))
    assert len(got) == 15 and a.sender.in_flight == 0
    a.submit([tlp(i) for i in range(15, 18)])
    frames = a.drain(1.0)                       # seq 15, 0, 1 (TLPs 15, 16, 17)
    assert [f.seq for f in decoded(frames)] == [15, 0, 1]
    assert deliver(b, frames[1:], 1.0) == []    # 15 lost: a gap across the wrap
    nak = [f for f in decoded(b.drain(1.0)) if f.frame_type == FrameType.NAK]
    assert [(n.seq, n.ack) for n in nak] == [(15, 14)]
    a.receive(nak[0].encode(), 2.0)
    replayed = a.drain(2.0)
    assert [f.seq for f in decoded(replayed)] == ([15, 0, 1] if mode == "gbn" else [15])
    got += deliver(b, replayed, 3.0)
    assert got == [tlp(i) for i in range(18)]
    assert b.receiver.expected == 2
