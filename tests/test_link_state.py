"""The link state machine of the reference link layer (docs/link-state.md):
the KEEPALIVE handshake, flaps, peer restarts, a cut cable and a silent
peer, on two :class:`~tlpoe.models.link.LinkEndpoint` joined by a wire that
can be cut."""

import pytest

from tlpoe.models.frame import FLAG_CREDITS_VALID, decode_frame, encode_frame, keepalive_credits
from tlpoe.models.link import LinkConfig, LinkEndpoint
from tlpoe.models.wire import FrameType, LinkState

KEEPALIVE_NS = 10_000.0          # 10 us: the dead time is 30 us
LATENCY_NS = 1_000.0
STEP_NS = 500.0


def tlp(i, size=32):
    return i.to_bytes(4, "big") * (size // 4)


def number(t):
    return int.from_bytes(t[:4], "big")


def config(**kw):
    kw.setdefault("keepalive_ns", KEEPALIVE_NS)
    kw.setdefault("replay_timeout_ns", 20_000.0)
    kw.setdefault("nak_timeout_ns", 5_000.0)
    kw.setdefault("max_tlps_per_frame", 4)
    kw.setdefault("window", 16)
    return LinkConfig(**kw)


class Wire:
    """Two endpoints, a one-way latency, and intervals in which every frame
    sent is lost (a cut cable, a flap, a rebooting switch). ``silent``
    endpoints neither send nor read (a hung peer, carrier up)."""

    def __init__(self, a, b, *, cuts=(), silent=()):
        self.ends = {"a": a, "b": b}
        self.cuts, self.silent = list(cuts), dict(silent)
        self.flight = []                        # (arrival, to, bytes)
        self.delivered = {"a": [], "b": []}
        self.now = 0.0
        self.events = []                        # (time, end, "down" | "up")
        for name, end in self.ends.items():
            end.on_link_down = lambda e, n=name: self.events.append((self.now, n, "down"))
            end.on_link_up = lambda e, n=name: self.events.append((self.now, n, "up"))

    def cut(self, t, to):
        """A frame towards ``to`` on the wire at ``t`` is lost (a cut is
        ``(start, end)`` or ``(start, end, to)`` for one direction)."""
        return any(c[0] <= t < c[1] and (len(c) == 2 or c[2] == to) for c in self.cuts)

    def hung(self, name, t):
        return any(start <= t < end for start, end in self.silent.get(name, ()))

    def run(self, until, submit=()):
        """Step to ``until`` (ns); ``submit``: (time, end, TLPs) to queue."""
        submit = sorted(submit, key=lambda s: s[0])
        while self.now < until:
            now = self.now
            while submit and submit[0][0] <= now:
                _, name, tlps = submit.pop(0)
                self.ends[name].submit(tlps, now)
            arrived = [f for f in self.flight if f[0] <= now]
            self.flight = [f for f in self.flight if f[0] > now]
            for _, to, frame in arrived:
                if not self.hung(to, now) and not self.cut(now, to):
                    self.delivered[to] += self.ends[to].receive(frame, now)
            for name, end in self.ends.items():
                if self.hung(name, now):
                    continue
                deadline = end.next_deadline()
                if deadline is not None and deadline <= now:
                    end.on_timer(now)
                to = "b" if name == "a" else "a"
                for frame in end.drain(now):
                    if not self.cut(now, to):
                        self.flight.append((now + LATENCY_NS, to, frame))
            self.now = now + STEP_NS


def traffic(n, start=0.0, every=2_000.0, end="a", first=0):
    return [(start + i * every, end, [tlp(first + i)]) for i in range(n)]


def exactly_once(delivered, n, first=0):
    return [number(t) for t in delivered] == list(range(first, first + n))


def pair(**kw):
    return LinkEndpoint(config(incarnation=100, **kw)), LinkEndpoint(config(incarnation=200, **kw))


# --- parameters and the wire -----------------------------------------------------

@pytest.mark.parametrize("kw, name", [
    ({"keepalive_ns": 0}, "keepalive_ns"),
    ({"keepalive_ns": 10.0, "dead_ns": 10.0}, "dead_ns"),
    ({"keepalive_ns": None, "dead_ns": 30.0}, "dead_ns"),
    ({"incarnation": -1}, "incarnation"),
    ({"incarnation": 1 << 32}, "incarnation"),
])
def test_bad_parameter_raises_naming_it(kw, name):
    with pytest.raises(ValueError, match=name):
        LinkConfig(**kw)


def test_the_dead_time_is_three_keepalives_unless_given():
    assert LinkConfig(keepalive_ns=10.0).dead_time == 30.0
    assert LinkConfig(keepalive_ns=10.0, dead_ns=45.0).dead_time == 45.0
    assert LinkConfig().dead_time is None


def test_a_keepalive_carries_the_handshake_in_the_credit_bytes():
    a, _ = pair()
    frame = decode_frame(a.poll(0.0))
    assert frame.frame_type == FrameType.KEEPALIVE
    assert not frame.flags & FLAG_CREDITS_VALID
    assert frame.tlp_count == frame.payload_length == 0
    assert frame.keepalive == {"incarnation": 100, "peer_incarnation": 0, "peer_known": 0,
                               "state": LinkState.DOWN, "reserved_ka": 0}
    assert frame.seq == 0                       # base: nothing sent yet
    # the overlay's bytes are the credit fields' bytes, big-endian
    credits = keepalive_credits(incarnation=0x01020304, peer_incarnation=0x05060708,
                                peer_known=1, state=LinkState.UP)
    assert credits == {"credit_p_data": 0x0102, "credit_np_data": 0x0304,
                       "credit_cpl_data": 0x0506, "credit_p_hdr": 0x07,
                       "credit_np_hdr": 0x08, "credit_cpl_hdr": 0b110}


# --- the handshake ---------------------------------------------------------------

def test_two_ends_come_up_then_carry_traffic_both_ways():
    a, b = pair()
    assert a.down and b.down and a.poll(0.0) is not None
    a.reset(), b.reset()                        # a fresh start, incarnations 101 and 201
    wire = Wire(a, b)
    wire.run(500_000.0, traffic(50, start=100.0) + traffic(50, start=100.0, end="b"))
    assert not a.down and not b.down
    assert [e[1:] for e in wire.events] in ([("a", "up"), ("b", "up")],
                                             [("b", "up"), ("a", "up")])
    assert max(t for t, _, _ in wire.events) <= 3 * KEEPALIVE_NS + 4 * LATENCY_NS
    assert exactly_once(wire.delivered["b"], 50) and exactly_once(wire.delivered["a"], 50)
    assert a.counters.peer_restarts == b.counters.peer_restarts == 0
    assert a.peer_incarnation == 201 and b.peer_incarnation == 101


def test_the_handshake_takes_round_trips_not_keepalive_intervals():
    """Each change of state owes the peer a KEEPALIVE at once: both ends
    are UP within a few one-way latencies of the first KEEPALIVE, well
    before the next interval."""
    a, b = pair()
    wire = Wire(a, b)
    wire.run(KEEPALIVE_NS / 2)
    assert not a.down and not b.down
    assert max(t for t, _, _ in wire.events) <= 4 * LATENCY_NS + 2 * STEP_NS


def test_an_up_end_answers_a_peer_still_in_init_while_data_flows():
    """The KEEPALIVE that would bring the peer UP is lost; the peer, INIT,
    repeats its own every interval. The end that is UP owes an answer to
    each, sent between its DATA frames (DATA does not cancel it), so the
    peer comes UP at its next KEEPALIVE, not once the DATA stops."""
    a, b = pair()
    wire = Wire(a, b, cuts=[(2 * LATENCY_NS, 3 * LATENCY_NS + STEP_NS, "b")])
    busy = traffic(400, start=0.0, every=STEP_NS)          # a frame every step
    wire.run(KEEPALIVE_NS / 2, busy)
    assert not a.down and b.down                # a's UP KEEPALIVE lost: b INIT
    wire.run(KEEPALIVE_NS * 2, [s for s in busy if KEEPALIVE_NS / 2 <= s[0] < KEEPALIVE_NS * 2])
    assert not b.down
    up_b = max(t for t, end, what in wire.events if end == "b")
    assert up_b <= KEEPALIVE_NS + 4 * LATENCY_NS
    wire.run(2_000_000.0, [s for s in busy if s[0] >= KEEPALIVE_NS * 2])
    assert exactly_once(wire.delivered["b"], 400)


def test_data_waits_for_the_handshake():
    a, b = pair()
    a.submit([tlp(0)])
    kinds = [decode_frame(f).frame_type for f in a.drain(0.0)]
    assert kinds == [FrameType.KEEPALIVE]
    # a DATA frame reaching an end that is not UP is not delivered (the
    # sender resends it once the link is UP)
    assert b.receive(encode_frame([tlp(9)], seq=0), 0.0) == []
    assert b.counters.tlps_delivered == 0


def test_an_idle_up_link_sends_keepalives_and_stays_up():
    a, b = pair()
    wire = Wire(a, b)
    wire.run(1_000_000.0)                       # 1 ms of nothing but keepalives
    assert not a.down and not b.down
    assert a.counters.link_down_events == b.counters.link_down_events == 0
    # about one KEEPALIVE per interval each way once up
    assert 90 <= a.counters.keepalives_sent <= 110


# --- flaps: both ends keep their state; every TLP exactly once -----------------

@pytest.mark.parametrize("mode", ["gbn", "sr"])
@pytest.mark.parametrize("flap_ns, goes_down", [(1_000.0, False), (100_000.0, True),
                                                 (10_000_000.0, True)])
def test_a_flap_mid_traffic_loses_and_duplicates_nothing(mode, flap_ns, goes_down):
    a, b = pair(mode=mode)
    start = 200_000.0
    wire = Wire(a, b, cuts=[(start, start + flap_ns)])
    n = 300
    wire.run(start + flap_ns + 2_000_000.0,
             traffic(n, start=100_000.0, every=1_000.0) +
             traffic(n, start=100_000.0, every=1_000.0, end="b"))
    assert exactly_once(wire.delivered["b"], n) and exactly_once(wire.delivered["a"], n)
    assert not a.down and not b.down
    assert a.counters.peer_restarts == b.counters.peer_restarts == 0
    downs = [t for t, _, kind in wire.events if kind == "down"]
    assert bool(downs) == goes_down
    if goes_down:
        # detected within the dead time of the cut, back within a few
        # keepalives of its end
        assert min(downs) - start <= a.config.dead_time + STEP_NS
        ups = [t for t, _, kind in wire.events if kind == "up" and t > start]
        assert max(ups) - (start + flap_ns) <= 2 * KEEPALIVE_NS + 4 * LATENCY_NS


@pytest.mark.parametrize("mode", ["gbn", "sr"])
def test_frames_lost_in_a_flap_are_resent_when_the_link_comes_back(mode):
    # everything is sent just before the cut and lost in it; nothing new
    # comes after, so only the resend on UP can deliver it
    a, b = pair(mode=mode)
    start = 200_000.0
    wire = Wire(a, b, cuts=[(start, start + 100_000.0)])
    wire.run(1_000_000.0, [(start - 500.0, "a", [tlp(i) for i in range(12)])])
    assert exactly_once(wire.delivered["b"], 12)
    assert a.counters.frames_retransmitted >= 1


def test_a_one_way_cut_takes_both_ends_down_and_up():
    a, b = pair()
    start = 200_000.0
    wire = Wire(a, b, cuts=[(start, start + 100_000.0, "b")])     # a -> b lost only
    wire.run(1_000_000.0, traffic(200, start=100_000.0, every=1_000.0))
    kinds = sorted((n, kind) for _, n, kind in wire.events if _ > start)
    assert kinds == [("a", "down"), ("a", "up"), ("b", "down"), ("b", "up")]
    assert exactly_once(wire.delivered["b"], 200)


def test_the_replay_limit_takes_the_link_down_then_it_recovers():
    # a link whose replay timer gives up before the dead time: down, then up
    a, b = pair(replay_timeout_ns=2_000.0, max_retries=2, dead_ns=100_000.0)
    start = 100_000.0
    wire = Wire(a, b, cuts=[(start, start + 20_000.0)])
    wire.run(1_000_000.0, traffic(100, start=50_000.0, every=1_000.0))
    assert a.counters.link_down_events >= 1
    assert exactly_once(wire.delivered["b"], 100)


# --- a peer that restarts ---------------------------------------------------------

class Resetting(Wire):
    def __init__(self, a, b, at, **kw):
        super().__init__(a, b, **kw)
        self.at = at

    def run(self, until, submit=()):
        super().run(self.at, [s for s in submit if s[0] < self.at])
        self.ends["b"].reset()
        super().run(until, [s for s in submit if s[0] >= self.at])


def test_a_peer_reset_restarts_both_sequence_spaces_and_delivers_nothing_twice():
    a, b = pair()
    n, at = 200, 150_000.0
    wire = Resetting(a, b, at)
    wire.run(2_000_000.0, traffic(n, start=100_000.0, every=1_000.0))
    got = [number(t) for t in wire.delivered["b"]]
    assert len(got) == len(set(got)), "a TLP delivered twice"
    assert got == sorted(got)
    assert a.counters.peer_restarts == 1 and b.counters.peer_restarts == 0
    assert a.peer_incarnation == 201            # b's second incarnation
    # every TLP a had framed and not had acknowledged when it learnt of the
    # restart is counted dropped; the rest arrive
    missing = set(range(n)) - set(got)
    assert len(missing) <= a.counters.tlps_dropped_restart
    assert max(got) == n - 1, "traffic after the restart flows"
    assert not a.down and not b.down


def test_after_a_peer_reset_the_receiver_takes_the_peers_base():
    a, b = pair()
    wire = Resetting(a, b, 150_000.0)
    # b sends before and after its reset; a must accept b's new numbering
    wire.run(1_000_000.0, traffic(40, start=100_000.0, end="b", every=1_000.0) +
             traffic(20, start=400_000.0, end="b", first=1000))
    got = [number(t) for t in wire.delivered["a"]]
    assert got[-20:] == list(range(1000, 1020))
    assert a.receiver.expected == b.sender.next_seq


# --- a cut for good and a silent peer ---------------------------------------------

def test_a_cable_cut_for_good_is_detected_and_stays_down():
    a, b = pair()
    at = 100_000.0
    wire = Wire(a, b, cuts=[(at, float("inf"))])
    wire.run(2_000_000.0, traffic(100, start=50_000.0, every=1_000.0))
    downs = {n: t for t, n, kind in wire.events if kind == "down"}
    assert set(downs) == {"a", "b"}
    assert all(t - at <= a.config.dead_time + STEP_NS for t in downs.values())
    assert a.down and b.down
    assert a.counters.link_down_events == b.counters.link_down_events == 1
    sent = a.counters.keepalives_sent
    wire.run(3_000_000.0)
    assert a.counters.keepalives_sent - sent == pytest.approx(1_000_000.0 / KEEPALIVE_NS, abs=2)


def test_a_peer_that_stops_answering_with_the_carrier_up_is_detected():
    a, b = pair()
    at = 100_000.0
    wire = Wire(a, b, silent={"b": [(at, float("inf"))]})
    wire.run(1_000_000.0, traffic(100, start=50_000.0, every=1_000.0))
    downs = [t for t, n, kind in wire.events if n == "a" and kind == "down"]
    assert len(downs) == 1 and downs[0] - at <= a.config.dead_time + STEP_NS


def test_without_the_state_machine_a_link_down_stays_down_until_reset():
    a = LinkEndpoint(LinkConfig(max_retries=2, replay_timeout_ns=1_000.0))
    assert not a.down                           # up from the start, no handshake
    a.submit([tlp(0)])
    a.drain(0.0)
    for t in (1_000.0, 2_000.0, 3_000.0):
        a.on_timer(t)
        a.drain(t)
    assert a.down and a.poll(1e9) is None and a.next_deadline() is None
    assert a.counters.keepalives_sent == 0
