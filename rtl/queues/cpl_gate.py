"""The completion tracker's gate on the receive side (docs/link-state.md,
"Completion timeout and containment"): every TLP from the peer is shown to
the :class:`~tlpoe.rtl.queues.cpl_tracker.CplTracker` (its ``cpl_*``
port) and held until the tracker's verdict, then delivered whole or dropped
whole (a late completion). Its cycle twin is
:class:`tlpoe.models.cpl_gate_cycles.CycleCompletionGate`.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from ..streams import TlpBeat, check_width, tlp_stream
from ..tlp_header import NP, P, TlpHeader

__all__ = ["CompletionGate", "RequestTap", "header_beats"]


def header_beats(width):
    """Beats that bring a TLP's first four DWs (the tracker's header)."""
    return max(1, 128 // width)


def _gather(m, stream, width, beats):
    """A TLP's first four DWs as ``stream`` shows them: ``here`` (four
    32-bit values, the current beat's lanes where it brings them, else
    those held from earlier beats; DWs past the TLP's end 0), the beat's
    ``index`` in its TLP (up to ``beats``), and ``completes`` (this beat
    brings the last of them, or ends a shorter TLP). Call :func:`_advance`
    when a beat is taken."""
    dws = width // 32
    index = Signal(range(beats + 1), name="index")
    here = []
    for k in range(4):
        now = Signal(32, name=f"dw{k}_now")
        beat = k // dws
        if beat < beats:
            lane = stream.payload.data[32 * (k % dws):32 * (k % dws + 1)]
            held = Signal(32, name=f"dw{k}")
            now._held = held
            m.d.comb += now.eq(Mux(index == beat, Mux(stream.payload.keep[k % dws], lane, 0),
                                   held))
        here.append(now)
    completes = Signal(name="completes")
    m.d.comb += completes.eq((index == beats - 1) | ((index < beats) & stream.payload.last))
    return here, index, completes


def _advance(m, index, here, last, width, beats):
    """The edge after a beat taken: its DWs held, the index moved."""
    dws = width // 32
    for k, now in enumerate(here):
        if k // dws < beats:
            with m.If(index == k // dws):
                m.d.sync += now._held.eq(now)
    with m.If(last):
        m.d.sync += index.eq(0)
    with m.Elif(index != beats):
        m.d.sync += index.eq(index + 1)


class CompletionGate(wiring.Component):
    """``i`` → a FIFO of ``depth`` beats → ``o``, each TLP passed whole or
    dropped whole by the tracker's verdict.

    A TLP's header (its first four DWs, lanes as
    :class:`~tlpoe.rtl.tlp_header.TlpHeader` reads them; a shorter TLP's
    missing DWs 0) is offered on ``cpl_valid``/``cpl_header`` with the beat
    that completes it (beat ``header_beats(width) - 1``, or the TLP's last
    if it is shorter); that beat is taken only with ``cpl_ready``. The
    verdicts (``verdict_valid``, ``verdict_deliver``: in the order of the
    offers, at any later cycle) go into a FIFO of ``verdicts`` entries,
    never more than it holds: an offer waits while as many are pending
    (offered and not yet used). At ``o``, a TLP's first beat waits for its
    verdict; delivered TLPs leave beat by beat with ``o.ready``, dropped
    ones are taken from the FIFO a beat per cycle (``dropped`` counts
    them). Pipelined: while one TLP waits for its verdict the next ones
    are offered and stored, so TLPs of one beat pass at one per cycle once
    the verdicts come at that rate."""

    def __init__(self, width, *, depth=16, verdicts=8, stamp_bits=0):
        check_width(width)
        for name, value in (("depth", depth), ("verdicts", verdicts)):
            if type(value) is not int or value < 2:
                raise ValueError(f"{name} must be an int of at least 2, not {value!r}")
        self.width, self.depth, self.verdicts, self.stamp_bits = width, depth, verdicts, \
            stamp_bits
        super().__init__({
            "i": In(tlp_stream(width, stamp_bits)), "o": Out(tlp_stream(width, stamp_bits)),
            "cpl_valid": Out(1), "cpl_ready": In(1), "cpl_header": Out(128),
            "verdict_valid": In(1), "verdict_deliver": In(1),
            "dropped": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        W, H = self.width, header_beats(self.width)
        layout = TlpBeat(W, self.stamp_bits)
        m.submodules.beats = beats = fifo.SyncFIFOBuffered(width=layout.size, depth=self.depth)
        # (one more than the verdicts pending: a buffered FIFO refuses a write
        # while its inner queue is full, even in the cycle that entry moves
        # to the output register; a verdict cannot wait)
        m.submodules.verdicts = verdicts = fifo.SyncFIFOBuffered(width=1,
                                                                depth=self.verdicts + 1)

        # --- input: the header gathered, offered with the beat that completes it
        here, index, completes = _gather(m, self.i, W, H)
        pending = Signal(range(self.verdicts + 1))      # offered, verdict not yet used
        room = Signal()
        m.d.comb += [room.eq(pending != self.verdicts),
                     self.cpl_header.eq(Cat(*here)),
                     self.cpl_valid.eq(self.i.valid & completes & beats.w_rdy & room),
                     self.i.ready.eq(beats.w_rdy & (~completes | (self.cpl_ready & room))),
                     beats.w_en.eq(self.i.valid & self.i.ready),
                     beats.w_data.eq(self.i.payload)]
        with m.If(beats.w_en):
            _advance(m, index, here, self.i.payload.last, W, H)
        offered = self.cpl_valid & self.cpl_ready
        m.d.comb += [verdicts.w_en.eq(self.verdict_valid),
                     verdicts.w_data.eq(self.verdict_deliver)]

        # --- output: each TLP's verdict at its first beat, then out or away
        head = Signal(layout)
        m.d.comb += head.eq(beats.r_data)
        cur_valid, cur_deliver = Signal(), Signal()     # the verdict of the TLP under way
        deliver, known, take = Signal(), Signal(), Signal()
        m.d.comb += [
            deliver.eq(Mux(cur_valid, cur_deliver, verdicts.r_data)),
            known.eq(cur_valid | verdicts.r_rdy),
            self.o.valid.eq(beats.r_rdy & known & deliver),
            self.o.payload.eq(head),
            take.eq(beats.r_rdy & known & (~deliver | self.o.ready)),
            beats.r_en.eq(take),
            verdicts.r_en.eq(take & ~cur_valid),
        ]
        with m.If(take):
            m.d.sync += [cur_valid.eq(~head.last), cur_deliver.eq(deliver)]
            with m.If(head.last & ~deliver):
                m.d.sync += self.dropped.eq(self.dropped + 1)
        m.d.sync += pending.eq(pending + offered - verdicts.r_en)
        return m


class RequestTap(wiring.Component):
    """The completion tracker's tap on the transmit side: ``i`` → ``o``
    (no storage), each non-posted request's header (its first four DWs)
    offered on ``req_valid``/``req_header`` with the beat that completes it,
    which moves only once the tracker takes it (``req_ready``); posted TLPs
    and completions pass untouched (the tracker ignores them: they need no
    table cycle).

    Containment: a TLP whose first beat passes while ``contain`` is high
    (the link down for the hold time) is taken from ``i`` and not sent:
    a posted one counted in ``posted_dropped``, a non-posted one still
    offered to the tracker (which then answers it with UR) and counted in
    ``np_contained``; completions counted in ``cpl_dropped``.

    ``o.ready`` reaches ``req_valid`` combinationally: put a register
    slice after ``o``."""

    def __init__(self, width, *, stamp_bits=0):
        check_width(width)
        self.width, self.stamp_bits = width, stamp_bits
        super().__init__({
            "i": In(tlp_stream(width, stamp_bits)), "o": Out(tlp_stream(width, stamp_bits)),
            "req_valid": Out(1), "req_ready": In(1), "req_header": Out(128),
            "contain": In(1),
            "posted_dropped": Out(32), "np_contained": Out(32), "cpl_dropped": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        W, H = self.width, header_beats(self.width)
        here, index, completes = _gather(m, self.i, W, H)
        first = index == 0
        cls_now = Signal(2)
        m.d.comb += cls_now.eq(TlpHeader(Cat(*here)).cls)
        cls, dropping = Signal(2), Signal()     # the TLP under way's, from its first beat
        this_cls = Mux(first, cls_now, cls)
        discard = Mux(first, self.contain, dropping)
        tracked = this_cls == NP
        gate = completes & tracked               # this beat waits for the tracker
        m.d.comb += [
            self.req_header.eq(Cat(*here)),
            self.req_valid.eq(self.i.valid & gate & (self.o.ready | discard)),
            self.o.valid.eq(self.i.valid & ~discard & (~gate | self.req_ready)),
            self.o.payload.eq(self.i.payload),
            self.i.ready.eq((self.o.ready | discard) & (~gate | self.req_ready)),
        ]
        taken = self.i.valid & self.i.ready
        with m.If(taken):
            _advance(m, index, here, self.i.payload.last, W, H)
            with m.If(first):
                m.d.sync += [cls.eq(cls_now), dropping.eq(self.contain)]
            with m.If(self.i.payload.last & discard):
                with m.Switch(this_cls):
                    with m.Case(P):
                        m.d.sync += self.posted_dropped.eq(self.posted_dropped + 1)
                    with m.Case(NP):
                        m.d.sync += self.np_contained.eq(self.np_contained + 1)
                    with m.Default():
                        m.d.sync += self.cpl_dropped.eq(self.cpl_dropped + 1)
        return m
