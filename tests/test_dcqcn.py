"""DCQCN's reaction and notification points and the token bucket
(models/dcqcn.py): each rule of the paper's algorithm in its fixed point,
and the loop closed over a bottleneck: two senders into one line converge
to equal shares with the queue held near the marking threshold."""

import pytest

from tlpoe.models.dcqcn import (ALPHA_ONE, FULL, DcqcnParams, NotificationPoint, ReactionPoint,
                                TokenBucket)


def test_a_cnp_halves_the_rate_at_alpha_one_and_keeps_alpha_there():
    rp = ReactionPoint()
    rp.cnp()
    assert (rp.rt, rp.rc, rp.alpha) == (FULL, FULL // 2, ALPHA_ONE)
    rp.cnp()                        # rt follows rc down; rc halves again
    assert (rp.rt, rp.rc) == (FULL // 2, FULL // 4)


def test_alpha_decays_by_g_each_alpha_timer_without_a_cnp():
    p = DcqcnParams(alpha_timer=10, increase_timer=10**6, g_shift=4)
    rp = ReactionPoint(p)
    for _ in range(10):
        rp.tick()
    assert rp.alpha == ALPHA_ONE - (ALPHA_ONE >> 4)
    rp.cnp()                        # (1 - g) alpha + g
    assert rp.alpha == 960 - 60 + 64


def test_fast_recovery_then_additive_then_hyper_increase():
    p = DcqcnParams(increase_timer=10, byte_counter=1000, fast_recovery=2, ai_rate=100,
                    hai_rate=1000, alpha_timer=10**6)
    rp = ReactionPoint(p)
    rp.cnp()
    rt, rc = rp.rt, rp.rc
    for _ in range(10):             # a timer event: fast recovery, rc halfway to rt
        rp.tick()
    assert (rp.rt, rp.rc) == (rt, (rt + rc + 1) >> 1)
    rp.sent(1000)                   # a byte event: still fast recovery (both below F)
    rp.sent(1000)
    rp.sent(1000)                   # byte stage 3 > F, timer stage 1: additive
    assert rp.rt == min(FULL, rt + 100)
    for _ in range(30):             # timer stage 4, byte stage 3: both above F: hyper
        rp.tick()
    assert rp.rt == FULL and rp.timer_stage == 4


def test_without_cnps_the_rate_climbs_back_to_the_line():
    """Sending at its rate (12,500 bytes a tick at the full line), the
    sender's byte counter and timer both pass F: hyper increase takes it
    back to the line; with the timer alone, only additive increase."""
    def recover(sending):
        rp = ReactionPoint(DcqcnParams(increase_timer=50, alpha_timer=50, byte_counter=100_000))
        for _ in range(6):
            rp.cnp()
        assert rp.rc < FULL // 32
        for _ in range(5_000):
            rp.tick()
            if sending:
                rp.sent(rp.rc * 12_500 // FULL)
        return rp
    rp = recover(True)
    assert rp.rc == rp.rt == FULL and rp.alpha < ALPHA_ONE * 3 // 4     # 100 decays of 1/256
    slow = recover(False)
    assert slow.rt < FULL // 4 and slow.byte_stage == 0


def test_the_rate_never_falls_below_the_floor():
    rp = ReactionPoint(DcqcnParams(min_rate=100))
    for _ in range(40):
        rp.cnp()
    assert rp.rc == 100


def test_the_notification_point_sends_one_cnp_per_interval():
    np_ = NotificationPoint(DcqcnParams(cnp_interval=10))
    sent = [t for t in range(100) if np_.tick(marked=True)]
    assert sent == list(range(0, 100, 10))
    assert not NotificationPoint().tick(marked=False)


def test_the_token_bucket_paces_frames_at_the_rate():
    bucket = TokenBucket(line_bytes=40 << 8, burst=1538)
    sent = 0
    for _ in range(100_000):
        bucket.tick(FULL // 4)
        if bucket.may_send():
            bucket.spend(1538)
            sent += 1538
    assert sent / (100_000 * 40) == pytest.approx(0.25, rel=0.01)


def incast(ticks, *, start2=3_000, seed=1, cc=True, kmin=20_000, kmax=200_000, pmax=0.2):
    """A fluid model of incast, a tick a microsecond: two senders at 100
    Gb/s into one 100 Gb/s port (the second from tick ``start2``), whose
    queue marks CE as DCQCN's RED-ECN does (none below ``kmin`` bytes, a
    probability rising to ``pmax`` at ``kmax``, every packet above); each
    sender's packets (1,538 bytes) are marked independently, and its
    receiver's NP returns a CNP 2 us later. Returns the second half's
    shares, the line's use and the queue's p50 and p99 (bytes)."""
    import random
    rng = random.Random(seed)
    line = 12_500                           # bytes per microsecond at 100 Gb/s
    params = DcqcnParams(alpha_timer=55, increase_timer=55, cnp_interval=50)
    rps = [ReactionPoint(params), ReactionPoint(params)]
    nps = [NotificationPoint(params), NotificationPoint(params)]
    queue, sent, pending, depths = 0.0, [0.0, 0.0], [], []
    for t in range(ticks):
        on = (True, t >= start2)
        arriving = [rps[k].rc * line / FULL if on[k] else 0.0 for k in (0, 1)]
        queue = max(0.0, queue + sum(arriving) - line)
        if t >= ticks // 2:
            depths.append(queue)
            sent = [sent[k] + arriving[k] for k in (0, 1)]
        p = 0.0 if queue <= kmin else 1.0 if queue >= kmax else \
            pmax * (queue - kmin) / (kmax - kmin)
        for k in (0, 1):
            if on[k]:
                marked = rng.random() < 1 - (1 - p) ** (arriving[k] / 1538)
                if cc and nps[k].tick(marked=marked):
                    pending.append((t + 2, k))
                rps[k].sent(int(arriving[k]))
                rps[k].tick()
        while pending and pending[0][0] <= t:
            rps[pending.pop(0)[1]].cnp()
    depths.sort()
    return ([x / sum(sent) for x in sent], sum(sent) / ((ticks - ticks // 2) * line),
            depths[len(depths) // 2], depths[int(len(depths) * 0.99)])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_senders_into_one_line_keep_it_busy_with_the_queue_held(seed):
    """The loop closed: the late sender takes its share (at least 45% of the
    second half of a 40 ms run; DCQCN's additive increase converges slowly),
    the line stays busy and the queue's p99 stays below the marking
    ceiling; without the loop the queue grows without bound."""
    shares, busy, p50, p99 = incast(40_000, seed=seed)
    assert min(shares) > 0.45, shares
    assert busy > 0.95 and p50 < 20_000 and p99 < 200_000, (busy, p50, p99)
    assert incast(2_000, start2=0, cc=False)[3] > 10 * 200_000


@pytest.mark.parametrize("name", ["g_shift", "alpha_timer", "fast_recovery", "min_rate"])
def test_a_bad_parameter_is_named(name):
    with pytest.raises(ValueError, match=name):
        DcqcnParams(**{name: 0})
