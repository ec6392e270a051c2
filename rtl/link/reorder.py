"""Reorder buffer of the selective-repeat link: keeps frames that arrived
ahead of a gap until the gap is filled."""

import enum

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..streams import KeptDesc, ReorderDesc, RxDesc, check_width

__all__ = ["ReorderBuffer"]


class ReorderBuffer(wiring.Component):
    """Sits between the receive FIFOs (``desc``, a :class:`ReorderDesc` per
    frame, and ``words``, every frame's stored words) and the
    :class:`~tlpoe.rtl.framing.unpacker.TlpUnpacker` (``out_desc``, ``out_words``),
    and handles one frame at a time, in arrival order:

    * ``store``: the frame's descriptor (``count``, ``words``) and its
      ``words`` go to slot ``seq mod window``; nothing goes out.
    * otherwise the frame passes: its ``frame`` descriptor to ``out_desc``,
      then its words to ``out_words``.  Then, for each of the ``release`` kept
      frames that follow it (slots ``seq + 1``, ``seq + 2``, ...), a
      descriptor with ``good`` set, its ``count`` and ``words`` (the fields
      the unpacker reads; the others are 0), then its words read back from
      the slot.

    The receiver gives a slot a new frame only after the verdict that
    releases the old one, so the slot is read before it is written again.

    Memories: ``window × slot_words`` words of ``width`` bits (``slot_words``
    the next power of two of ``max_words``, so an address is slot and word
    concatenated; one write port, one synchronous read port) and ``window``
    :class:`KeptDesc` entries.

    Throughput: one cycle per descriptor and one per word, plus one per
    released frame.
    """

    def __init__(self, width, *, max_words, window):
        check_width(width)
        if window < 2 or window & (window - 1):
            raise ValueError(f"window must be a power of two of at least 2, not {window!r}")
        self.width, self.max_words, self.window = width, max_words, window
        self.slot_words = 1 << (max_words - 1).bit_length()
        super().__init__({
            "desc": In(stream.Signature(ReorderDesc(max_words, window))),
            "words": In(stream.Signature(width)),
            "out_desc": Out(stream.Signature(RxDesc(max_words))),
            "out_words": Out(stream.Signature(width)),
        })

    def elaborate(self, platform):
        m = Module()
        slot_bits = (self.window - 1).bit_length()
        word_bits = (self.slot_words - 1).bit_length()

        m.submodules.body = body = Memory(shape=self.width, depth=self.window * self.slot_words,
                                          init=[])
        kept_layout = KeptDesc(self.max_words)
        m.submodules.kept = kept = Memory(shape=kept_layout, depth=self.window, init=[])
        body_w = body.write_port()
        body_r = body.read_port()
        kept_w = kept.write_port()
        kept_r = kept.read_port(domain="comb")

        # Every output below is one expression of the state, not a case of
        # it: Icarus may never run an ``always @*`` block whose inputs keep
        # their initial values, and these must be defined from the start.
        state = Signal(_State)
        at_next, storing, passing, releasing, reading = (state == s for s in _State)
        desc = self.desc.payload
        slot = Signal(slot_bits)        # the slot stored, or the next one released
        word = Signal(word_bits)        # word address in the slot
        words_left = Signal(range(self.max_words + 1))   # of the current frame
        release = Signal(range(self.window))    # kept frames still to deliver
        out_valid = Signal()            # out_words holds a word read back
        keep = Signal()                 # the descriptor offered is to be stored
        taken = Signal()
        fetch = Signal()
        m.d.comb += [
            keep.eq(self.desc.valid & desc.store),
            self.desc.ready.eq(at_next & (keep | self.out_desc.ready)),
            taken.eq(self.desc.valid & self.desc.ready),
            self.out_desc.valid.eq((at_next & self.desc.valid & ~desc.store) | releasing),
            self.out_desc.payload.eq(Mux(
                releasing,
                _pack(RxDesc(self.max_words), good=1, count=kept_r.data.count,
                      words=kept_r.data.words, area=kept_r.data.area),
                desc.frame)),
            self.words.ready.eq(storing | (passing & self.out_words.ready)),
            fetch.eq(reading & (words_left != 0) & (~out_valid | self.out_words.ready)),
            self.out_words.valid.eq(Mux(passing, self.words.valid, reading & out_valid)),
            self.out_words.payload.eq(Mux(passing, self.words.payload, body_r.data)),
            kept_w.addr.eq(desc.frame.seq[:slot_bits]),
            kept_w.data.eq(_pack(kept_layout, count=desc.frame.count, words=desc.frame.words,
                                    area=desc.frame.area)),
            kept_w.en.eq(taken & desc.store),
            body_w.addr.eq(Cat(word, slot)),
            body_w.data.eq(self.words.payload),
            body_w.en.eq(storing & self.words.valid),
            kept_r.addr.eq(slot),
            body_r.addr.eq(Cat(word, slot)),
            body_r.en.eq(fetch),
        ]
        moved = Signal()                # a word went into a slot or out
        last_word = Signal()
        m.d.comb += [moved.eq(self.words.valid & self.words.ready),
                     last_word.eq(words_left == 1)]

        with m.If(taken):
            m.d.sync += [
                slot.eq(desc.frame.seq[:slot_bits]),
                word.eq(0),
                words_left.eq(desc.frame.words),
                release.eq(desc.release),
                state.eq(Mux(desc.store, _State.STORE, _State.PASS)),
            ]
        with m.If(moved):
            m.d.sync += [word.eq(word + 1), words_left.eq(words_left - 1)]
            with m.If(last_word):
                with m.If(storing):
                    m.d.sync += state.eq(_State.NEXT)
                with m.Else():
                    m.d.sync += [slot.eq(slot + 1),
                                 state.eq(Mux(release != 0, _State.RELEASE, _State.NEXT))]
        with m.If(releasing & self.out_desc.ready):
            m.d.sync += [word.eq(0), words_left.eq(kept_r.data.words),
                         release.eq(release - 1), state.eq(_State.READ)]
        with m.If(fetch):
            m.d.sync += [word.eq(word + 1), words_left.eq(words_left - 1), out_valid.eq(1)]
        with m.Elif(reading & self.out_words.ready):
            m.d.sync += out_valid.eq(0)
            with m.If(words_left == 0):
                m.d.sync += [slot.eq(slot + 1),
                             state.eq(Mux(release != 0, _State.RELEASE, _State.NEXT))]
        return m


class _State(enum.Enum):
    NEXT = 0        # waiting for a descriptor
    STORE = 1       # its words into its slot
    PASS = 2        # its words to the unpacker
    RELEASE = 3     # a released frame's descriptor to the unpacker
    READ = 4        # its words, read back from its slot


def _pack(layout, **fields):
    """A value of struct ``layout`` with ``fields`` set and the others 0, as
    one expression."""
    value = Const(0, layout.size)
    for name, field_value in fields.items():
        value = value | (Value.cast(field_value).as_unsigned() << layout[name].offset)
    return value[:layout.size]
