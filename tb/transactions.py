"""Requests and their completions across two bridges (issue 19, the
``transactions`` workload of tb/test_link.py).

Each side is a requester and a completer, as a host and a GPU are: its
stimulus (:func:`requests`) mixes memory writes with memory reads of up to
128 bytes, each read with its own 10-bit Tag; its :class:`Responder`
answers every memory read of the peer that leaves its bridge's ``tlp_out``
with one CplD (:func:`read_data`, a pure function of the address), sent
back into its ``tlp_in`` (a :class:`ResponderSequence` beside the
requests on the same sequencer).

:class:`TransactionChecker` holds the outcome of every read a side sent:
completed with the right data, or with an error (an Unsupported Request
completion, which only the bridge's completion tracker makes here), and
never both nor twice; a read with neither at the end is a **hang**.
:func:`bridge_answer` tells the tracker's completions apart (they are not
the peer's TLPs: the per-direction scoreboards do not see them), and
:meth:`TransactionChecker.late_ok` says which completions the tracker may
drop as late (those of a read already answered with an error, or sent
before the requester's bridge was reset).
"""

import random

from cocotb.queue import Queue
from pyuvm import uvm_sequence

from ..models.tlp import CplStatus, PcieId, Tlp, TlpType
from .items import StreamItem

__all__ = ["REQUESTERS", "requests", "read_data", "Responder", "ResponderSequence",
           "TransactionChecker", "bridge_answer"]

#: Each side's Requester (and Completer) ID.
REQUESTERS = {"a": PcieId(1, 0, 0), "b": PcieId(2, 0, 0)}
#: Largest read (bytes): one CplD answers it (below the 256-byte payloads).
MAX_READ = 128


def requests(seed, count, requester, *, posted=0.4):
    """``count`` TLPs of ``requester``: memory writes (``posted`` of them,
    1 to 64 bytes) and memory reads (1 to :data:`MAX_READ` bytes, DW
    aligned, within a 4 KiB page), the reads tagged 0, 1, 2, ... (modulo
    1024)."""
    rng = random.Random(seed)
    out, tag = [], 0
    for _ in range(count):
        page = rng.randrange(1 << 20) << 12
        if rng.random() < posted:
            n = rng.randrange(1, 65)
            out.append(Tlp.mem_write(page + rng.randrange(4096 - n), rng.randbytes(n),
                                     requester_id=requester).pack())
        else:
            n = 4 * rng.randrange(1, MAX_READ // 4 + 1)
            out.append(Tlp.mem_read(page + rng.randrange(0, 4096 - n + 1, 4), n,
                                    requester_id=requester, tag=tag % 1024).pack())
            tag += 1
    return out


def read_data(address, nbytes):
    """What the completer returns for ``nbytes`` at ``address``."""
    return bytes((address + i) * 151 >> 3 & 0xFF for i in range(nbytes))


def bridge_answer(tlp):
    """Whether ``tlp`` (a :class:`Tlp`) is a completion the bridge made (UR:
    no completer here answers with an error)."""
    return tlp.type.is_completion and tlp.status == CplStatus.UR


class Responder:
    """Side ``side``'s completer: :meth:`write` (an item leaving its
    bridge's ``tlp_out``) queues the CplD answering a memory read of the
    other side for :class:`ResponderSequence`."""

    def __init__(self, side):
        self.side, self.queue, self.answered = side, Queue(), 0

    def write(self, item):
        tlp = Tlp.unpack(item.data)
        if tlp.type is TlpType.MRd and tlp.requester_id != REQUESTERS[self.side]:
            data = read_data(tlp.address, 4 * tlp.length)
            cpl = Tlp.completion_for(tlp, completer_id=REQUESTERS[self.side], data=data)
            self.queue.put_nowait(cpl.pack())
            self.answered += 1


class ResponderSequence(uvm_sequence):
    """The completions of a :class:`Responder`, as they come (for ever)."""

    def __init__(self, name, responder):
        super().__init__(name)
        self.responder = responder

    async def body(self):
        index = 0
        while True:
            data = await self.responder.queue.get()
            item = StreamItem(f"{self.get_name()}[{index}]", data, index=index)
            await self.start_item(item)
            await self.finish_item(item)
            index += 1


class TransactionChecker:
    """The reads side ``side`` sent (:meth:`sent`, its ``tlp_in``) and what
    came back (:meth:`received`, its ``tlp_out``): per read, ``"ok"`` (a
    CplD with the right data) or ``"error"`` (a UR), with the cycle.
    ``problems`` lists completions of no read, wrong data, and second
    outcomes; :meth:`hangs` the reads with none."""

    def __init__(self, side):
        self.side = side
        self.requester = REQUESTERS[side]
        self.open = {}          # tag -> (request Tlp, cycle sent)
        self.outcomes = {}      # tag -> ("ok" | "error", cycle sent, cycle answered)
        self.done = []          # the outcomes of tags reused since
        self.problems = []
        self.forgotten = set()  # tags of reads sent before this side's bridge was reset

    def sent(self, item):
        tlp = Tlp.unpack(item.data)
        if tlp.type is TlpType.MRd and tlp.requester_id == self.requester:
            if tlp.tag in self.outcomes:
                self.done.append(self.outcomes.pop(tlp.tag))
            self.open[tlp.tag] = (tlp, item.meta["first_cycle"])

    def received(self, item):
        tlp = Tlp.unpack(item.data)
        if not tlp.type.is_completion or tlp.requester_id != self.requester:
            return
        cycle = item.meta["first_cycle"]
        if tlp.tag in self.outcomes:
            self.problems.append(f"{self.side}: tag {tlp.tag} answered twice "
                                 f"({self.outcomes[tlp.tag][0]}, then {tlp.status.name})")
            return
        if tlp.tag not in self.open:
            self.problems.append(f"{self.side}: a completion of no read (tag {tlp.tag})")
            return
        request, sent = self.open.pop(tlp.tag)
        if bridge_answer(tlp):
            outcome = "error"
        elif tlp.data != read_data(request.address, 4 * request.length):
            self.problems.append(f"{self.side}: tag {tlp.tag}: wrong data")
            outcome = "ok"
        else:
            outcome = "ok"
        self.outcomes[tlp.tag] = (outcome, sent, cycle)

    def reset(self):
        """This side's bridge was reset: the reads it held are forgotten
        (its requester is reset with it)."""
        self.forgotten |= set(self.open)
        self.open.clear()

    def late_ok(self, tlp):
        """Whether the bridge may drop completion ``tlp`` (a Tlp) to this
        side as late: its read was answered with an error, or forgotten."""
        if tlp.requester_id != self.requester:
            return False
        outcome = self.outcomes.get(tlp.tag)
        return (outcome is not None and outcome[0] == "error") or tlp.tag in self.forgotten

    def hangs(self):
        return sorted(self.open)

    def summary(self):
        every = list(self.outcomes.values()) + self.done
        errors = [o for o in every if o[0] == "error"]
        return {"reads": len(every) + len(self.open) + len(self.forgotten),
                "completed": len(every) - len(errors), "errors": len(errors),
                "forgotten": len(self.forgotten), "hangs": len(self.open),
                "error_latency_max_cycles": max((c - s for _, s, c in errors), default=None),
                "problems": list(self.problems)}
