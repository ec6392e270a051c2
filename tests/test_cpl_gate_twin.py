"""The completion gate (``rtl/queues/cpl_gate.py``) against its cycle twin
(``models/cpl_gate_cycles.py``) in every cycle, and end to end: each TLP is
offered once with its first four DWs, and leaves whole, in order, exactly
when its verdict says deliver."""

import random

import pytest

from tlpoe.models.cpl_gate_cycles import CycleCompletionGate, CycleRequestTap, header_beats
from tlpoe.models.tlp import OrderingClass, Tlp
from tlpoe.rtl.queues.cpl_gate import CompletionGate, RequestTap
from tlpoe.tb.stimulus import random_tlps
from tlpoe.tb.twin_sim import assert_same, simulate


def tlp_beats(rng, width):
    """A TLP of 3 to 40 DWs as ``(data, keep, last)`` beats, and its bytes."""
    dws = rng.choice((3, 4, rng.randint(3, 40)))
    words = [rng.getrandbits(32) for _ in range(dws)]
    lanes = width // 32
    beats = []
    for start in range(0, dws, lanes):
        chunk = words[start:start + lanes]
        data = sum(w << (32 * k) for k, w in enumerate(chunk))
        beats.append((data, (1 << len(chunk)) - 1, start + lanes >= dws))
    return beats, words


def run_gate(width, seed, cycles, *, break_model=None, depth=16, verdicts=8):
    rng = random.Random(seed)
    dut = CompletionGate(width, depth=depth, verdicts=verdicts)
    model = CycleCompletionGate(width, depth=depth, verdicts=verdicts)
    if break_model:
        break_model(model)
    tlps = [tlp_beats(rng, width) for _ in range(400)]
    rates = {"in": 0.8, "cpl": 0.7, "out": 0.8, "drop": 0.3}
    result = {"offers": [], "out": [], "dropped": 0}

    async def bench(ctx):
        source = [b for beats, _ in tlps for b in beats]
        due = []            # verdicts: (cycle shown, deliver)
        out_beats = []
        for cycle in range(cycles):
            if cycle % 500 == 0:
                rates.update(rng.choice(({"in": 0.9, "cpl": 1.0, "out": 1.0, "drop": 0.0},
                                         {"in": 0.6, "cpl": 0.5, "out": 0.5, "drop": 0.5},
                                         {"in": 1.0, "cpl": 0.9, "out": 0.3, "drop": 0.2})))
            beat = source[0] if source and rng.random() < rates["in"] else None
            cpl_ready = rng.random() < rates["cpl"]
            verdict = due.pop(0)[1] if due and due[0][0] <= cycle else None
            o_ready = rng.random() < rates["out"]
            ctx.set(dut.i.valid, beat is not None)
            data, keep, last = beat if beat is not None else (0, 0, 0)
            ctx.set(dut.i.payload, {"data": data, "keep": keep, "last": last})
            ctx.set(dut.cpl_ready, cpl_ready)
            ctx.set(dut.verdict_valid, verdict is not None)
            ctx.set(dut.verdict_deliver, bool(verdict))
            ctx.set(dut.o.ready, o_ready)
            got = {"i_ready": ctx.get(dut.i.ready), "cpl_valid": ctx.get(dut.cpl_valid),
                   "o_valid": ctx.get(dut.o.valid), "dropped": ctx.get(dut.dropped)}
            if got["cpl_valid"]:
                got["cpl_header"] = ctx.get(dut.cpl_header)
            if got["o_valid"]:
                p = ctx.get(dut.o.payload)
                got["o_beat"] = (p.data, p.keep, p.last)
            shown = model.step(i_beat=beat, cpl_ready=cpl_ready, verdict=verdict,
                               o_ready=o_ready)
            want = {"i_ready": int(shown.i_ready), "cpl_valid": int(shown.cpl_valid),
                    "o_valid": int(shown.o_valid), "dropped": shown.dropped}
            if shown.cpl_valid:
                want["cpl_header"] = shown.cpl_header
            if shown.o_valid:
                want["o_beat"] = tuple(int(x) for x in shown.o_beat)
            assert_same(got, want, f"width {width}, seed {seed}, cycle {cycle}")
            if got["cpl_valid"] and cpl_ready:       # the fake tracker: in order, 1-6 later
                deliver = rng.random() >= rates["drop"]
                result["offers"].append((got["cpl_header"], deliver))
                at = max([cycle + rng.randint(1, 6)] + [c + 1 for c, _ in due])
                due.append((at, deliver))
            if beat is not None and got["i_ready"]:
                source.pop(0)
            if got["o_valid"] and o_ready:
                out_beats.append(got["o_beat"])
            await ctx.tick()
        result["out"] = out_beats
        result["dropped"] = got["dropped"]

    simulate(dut, bench)
    return tlps, result


def packets(beats):
    out, cur = [], []
    for data, keep, last in beats:
        cur.append((data, keep, last))
        if last:
            out.append(cur)
            cur = []
    return out


@pytest.mark.parametrize("width", [64, 128, 256, 512])
def test_the_gate_and_its_twin_agree_and_deliver_what_the_verdicts_say(width):
    tlps, result = run_gate(width, width, 3000)
    offers = result["offers"]
    assert len(offers) > 100
    # each offer is the next TLP's first four DWs (0 past its end)
    for (header, _), (_, words) in zip(offers, tlps):
        want = words[:4] + [0] * (4 - len(words[:4]))
        assert header == sum(w << (32 * k) for k, w in enumerate(want))
    # what left is exactly the TLPs whose verdict said deliver, in order
    out = packets(result["out"])
    kept = [beats for (beats, _), (_, deliver) in zip(tlps, offers) if deliver]
    assert out == [[tuple(b) for b in beats] for beats in kept[:len(out)]]
    dropped = sum(1 for _, deliver in offers if not deliver)
    assert 0 < result["dropped"] <= dropped
    assert header_beats(width) == max(1, 128 // width)


@pytest.mark.parametrize("name, mutate", [
    ("a verdict used a TLP late", lambda m: setattr(m, "cur_valid", True)),
    ("one pending verdict too many",
     lambda m: setattr(m, "verdicts", m.verdicts + 1)),
])
def test_a_twin_apart_from_the_rtl_fails(name, mutate):
    with pytest.raises(AssertionError):
        run_gate(64, 3, 2000, break_model=mutate, verdicts=2)


def test_few_verdict_entries_hold_the_offers_back_and_lose_nothing():
    """With two verdict entries the offers wait for them (the limit binds),
    and still every TLP is delivered or dropped by its own verdict."""
    tlps, result = run_gate(128, 9, 3000, verdicts=2)
    out = packets(result["out"])
    kept = [beats for (beats, _), (_, deliver) in zip(tlps, result["offers"]) if deliver]
    assert len(out) > 50
    assert out == [[tuple(b) for b in beats] for beats in kept[:len(out)]]


@pytest.mark.parametrize("kw", [{"depth": 1}, {"verdicts": 0}, {"depth": "8"}])
def test_bad_parameters_raise_naming_them(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        CompletionGate(64, **kw)


# --- the transmit side's tap -----------------------------------------------------------

def beats_of(tlp, width):
    words = [int.from_bytes(tlp[k:k + 4], "little") for k in range(0, len(tlp), 4)]
    lanes, out = width // 32, []
    for start in range(0, len(words), lanes):
        chunk = words[start:start + lanes]
        out.append((sum(w << (32 * k) for k, w in enumerate(chunk)), (1 << len(chunk)) - 1,
                    start + lanes >= len(words)))
    return out


def run_tap(width, seed, cycles, break_model=None):
    rng = random.Random(seed)
    tlps = [bytes(t) for t in random_tlps(seed, 300, mtu=1500, max_payload=128)]
    dut, model = RequestTap(width), CycleRequestTap(width)
    if break_model:
        break_model(model)
    seen = {"offers": [], "out": [], "discarded": []}

    async def bench(ctx):
        source = [(k, b) for k, t in enumerate(tlps) for b in beats_of(t, width)]
        contain, got = False, None
        for cycle in range(cycles):
            if rng.random() < 0.01:
                contain = not contain
            item = source[0] if source and rng.random() < 0.8 else None
            beat = item[1] if item else None
            o_ready, req_ready = rng.random() < 0.8, rng.random() < 0.6
            ctx.set(dut.i.valid, beat is not None)
            data, keep, last = beat if beat is not None else (0, 0, 0)
            ctx.set(dut.i.payload, {"data": data, "keep": keep, "last": last})
            ctx.set(dut.o.ready, o_ready)
            ctx.set(dut.req_ready, req_ready)
            ctx.set(dut.contain, contain)
            got = {name: ctx.get(getattr(dut, name)) for name in
                   ("req_valid", "posted_dropped", "np_contained", "cpl_dropped")}
            got.update(i_ready=ctx.get(dut.i.ready), o_valid=ctx.get(dut.o.valid))
            if got["req_valid"]:
                got["req_header"] = ctx.get(dut.req_header)
            shown = model.step(i_beat=beat, o_ready=o_ready, req_ready=req_ready,
                               contain=contain)
            want = {k: int(v) for k, v in shown._asdict().items() if k != "req_header"}
            if shown.req_valid:
                want["req_header"] = shown.req_header
            assert_same(got, want, f"width {width}, seed {seed}, cycle {cycle}")
            if got["req_valid"] and req_ready:
                seen["offers"].append((item[0], got["req_header"]))
            if beat is not None and got["i_ready"]:
                source.pop(0)
                (seen["out"] if got["o_valid"] else seen["discarded"]).append((item[0], beat))
            await ctx.tick()
        seen["counters"] = got

    simulate(dut, bench)
    return tlps, seen


@pytest.mark.parametrize("width", [64, 256])
def test_the_tap_and_its_twin_agree_offer_each_request_once_and_contain(width):
    tlps, seen = run_tap(width, width + 1, 4000)
    sent = sorted({k for k, _ in seen["out"]})
    contained = sorted({k for k, _ in seen["discarded"]})
    assert sent and contained and not set(sent) & set(contained)
    # every TLP that went out went whole, in order
    assert [b for _, b in seen["out"]] == [b for k in sent for b in beats_of(tlps[k], width)
                                          ][:len(seen["out"])]
    # each non-posted request offered once, with its first four DWs; nothing else
    np_done = [k for k in sorted(sent + contained) if Tlp.unpack(tlps[k]).ordering_class
               is OrderingClass.NON_POSTED]
    offered = [k for k, _ in seen["offers"]]
    assert offered == np_done[:len(offered)] and len(offered) >= len(np_done) - 1
    for k, header in seen["offers"]:
        want = tlps[k][:16] + bytes(max(0, 16 - len(tlps[k])))
        assert header == int.from_bytes(want, "little")
    # the containment counts, by class, the TLPs it took whole
    whole = [k for k in contained if k != contained[-1] or len(seen["discarded"]) and
             seen["discarded"][-1][1][2]]
    by_class = [sum(Tlp.unpack(tlps[k]).ordering_class is c for k in whole)
                for c in (OrderingClass.POSTED, OrderingClass.NON_POSTED,
                          OrderingClass.COMPLETION)]
    c = seen["counters"]
    assert [c["posted_dropped"], c["np_contained"], c["cpl_dropped"]] == by_class


def test_a_tap_twin_that_offers_posted_requests_fails():
    def eager(model):
        step = model.step

        def offering(**kw):
            shown = step(**kw)
            return shown._replace(req_valid=kw["i_beat"] is not None and kw["o_ready"]) \
                if model.index == 0 else shown
        model.step = offering
    with pytest.raises(AssertionError):
        run_tap(64, 5, 1500, break_model=eager)
