"""The cycle twins of :class:`tlpoe.rtl.queues.cpl_gate.CompletionGate` and
:class:`~tlpoe.rtl.queues.cpl_gate.RequestTap`: the same outputs in every
cycle for the same inputs. Beats are ``(data, keep,
last)`` tuples (``stamp`` is not modelled: the gate passes it untouched)."""

from collections import namedtuple

from .framing_cycles import SyncFifoBuffered
from .ordering import OrderFields

__all__ = ["CycleCompletionGate", "GateCycle", "CycleRequestTap", "TapCycle", "header_beats"]

GateCycle = namedtuple("GateCycle", "i_ready cpl_valid cpl_header o_valid o_beat dropped")


def header_beats(width):
    """Beats that bring a TLP's first four DWs."""
    return max(1, 128 // width)


class CycleCompletionGate:
    """``width``, ``depth``, ``verdicts`` as the RTL's."""

    def __init__(self, width, *, depth=16, verdicts=8):
        self.width, self.depth, self.verdicts = width, depth, verdicts
        self.H = header_beats(width)
        self.reset()

    def reset(self):
        self.beats = SyncFifoBuffered(self.depth)
        self.verdict_fifo = SyncFifoBuffered(self.verdicts + 1)
        self.index, self.held, self.pending = 0, [0] * 4, 0
        self.cur_valid, self.cur_deliver, self.dropped = False, False, 0

    def _header(self, beat):
        """The four DWs as the input shows them with ``beat`` on it."""
        dws, out = self.width // 32, []
        data, keep, _ = beat if beat is not None else (0, 0, False)
        for k in range(4):
            b = k // dws
            if b >= self.H:
                out.append(0)
            elif self.index == b:
                fresh = (keep >> (k % dws)) & 1
                out.append((data >> (32 * (k % dws))) & 0xFFFFFFFF if fresh else 0)
            else:
                out.append(self.held[k])
        return out

    def outputs(self, i_beat=None):
        """What the gate shows with ``i_beat`` (a beat offered, or None)."""
        completes = self.index == self.H - 1 or (self.index < self.H and
                                                 i_beat is not None and bool(i_beat[2]))
        room = self.pending != self.verdicts
        w_rdy = self.beats.w_rdy
        header = self._header(i_beat)
        cpl_valid = i_beat is not None and completes and w_rdy and room
        deliver = self.cur_deliver if self.cur_valid else bool(self.verdict_fifo.r_data)
        known = self.cur_valid or self.verdict_fifo.r_rdy
        o_valid = self.beats.r_rdy and known and deliver
        return GateCycle(w_rdy and (not completes or room), cpl_valid,
                         sum(dw << (32 * k) for k, dw in enumerate(header)), o_valid,
                         self.beats.r_data if o_valid else None, self.dropped), completes

    def step(self, *, i_beat=None, cpl_ready=False, verdict=None, o_ready=False):
        """One cycle: ``i_beat`` offered, ``cpl_ready`` (the tracker takes
        an offer), ``verdict`` (None or the deliver bit), ``o_ready``.
        Returns the :class:`GateCycle` shown before the edge (``i_ready``
        as the RTL drives it: with ``cpl_ready`` on a completing beat)."""
        shown, completes = self.outputs(i_beat)
        i_ready = shown.i_ready and (not completes or cpl_ready)
        shown = shown._replace(i_ready=i_ready)
        offered = shown.cpl_valid and cpl_ready
        taken = i_beat is not None and i_ready
        # the output side
        head = self.beats.r_data
        deliver = self.cur_deliver if self.cur_valid else bool(self.verdict_fifo.r_data)
        known = self.cur_valid or self.verdict_fifo.r_rdy
        take = self.beats.r_rdy and known and (not deliver or o_ready)
        pop_verdict = take and not self.cur_valid
        # the edge
        if taken:
            header = self._header(i_beat)
            for k in range(4):
                if k // (self.width // 32) < self.H and self.index == k // (self.width // 32):
                    self.held[k] = header[k]
            if i_beat[2]:
                self.index = 0
            elif self.index != self.H:
                self.index += 1
        if take:
            self.cur_valid, self.cur_deliver = not head[2], deliver
            if head[2] and not deliver:
                self.dropped = (self.dropped + 1) & 0xFFFFFFFF
        self.pending += int(offered) - int(pop_verdict)
        self.beats.clock(taken, tuple(i_beat) if taken else None, take)
        self.verdict_fifo.clock(verdict is not None, int(bool(verdict)) if verdict is not None
                                else 0, pop_verdict)
        return shown


TapCycle = namedtuple("TapCycle", "i_ready o_valid req_valid req_header posted_dropped "
                                  "np_contained cpl_dropped")


class CycleRequestTap:
    """The cycle twin of :class:`tlpoe.rtl.queues.cpl_gate.RequestTap`."""

    def __init__(self, width):
        self.width, self.H = width, header_beats(width)
        self.reset()

    def reset(self):
        self.index, self.held = 0, [0] * 4
        self.cls, self.dropping = 0, False
        self.counts = [0, 0, 0]         # posted_dropped, np_contained, cpl_dropped

    _header = CycleCompletionGate._header

    def outputs(self, *, i_beat=None, o_ready=False, req_ready=False, contain=False):
        """What the tap shows in a cycle with these inputs (``req_valid``
        and ``req_header`` do not depend on ``req_ready``)."""
        return self._outputs(i_beat, o_ready, req_ready, contain)[0]

    def _outputs(self, i_beat, o_ready, req_ready, contain):
        header = self._header(i_beat)
        last = i_beat is not None and bool(i_beat[2])
        completes = self.index == self.H - 1 or (self.index < self.H and last)
        first = self.index == 0
        head = b"".join(dw.to_bytes(4, "little") for dw in header)
        cls = OrderFields.of(head).cls if first else self.cls
        discard = contain if first else self.dropping
        gate = completes and cls == 1
        valid = i_beat is not None
        return TapCycle(
            i_ready=(o_ready or discard) and (not gate or req_ready),
            o_valid=valid and not discard and (not gate or req_ready),
            req_valid=valid and gate and (o_ready or discard),
            req_header=sum(dw << (32 * k) for k, dw in enumerate(header)),
            posted_dropped=self.counts[0], np_contained=self.counts[1],
            cpl_dropped=self.counts[2]), (header, last, first, cls, discard)

    def step(self, *, i_beat=None, o_ready=False, req_ready=False, contain=False):
        """One cycle; returns the :class:`TapCycle` shown before the edge."""
        shown, (header, last, first, cls, discard) = self._outputs(i_beat, o_ready, req_ready,
                                                                   contain)
        if i_beat is not None and shown.i_ready:
            dws = self.width // 32
            for k in range(4):
                if k // dws < self.H and self.index == k // dws:
                    self.held[k] = header[k]
            if first:
                self.cls, self.dropping = cls, bool(contain)
            if last and discard:
                self.counts[cls] = (self.counts[cls] + 1) & 0xFFFFFFFF
            if last:
                self.index = 0
            elif self.index != self.H:
                self.index += 1
        return shown
