"""Reorder buffer of the selective-repeat link: keeps frames that arrived
ahead of a gap until the gap is filled."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .deframer import RxDesc
from .streams import check_width

__all__ = ["ReorderDesc", "ReorderBuffer"]


class ReorderDesc(data.StructLayout):
    """The link receiver's verdict on one received frame, for the reorder
    buffer: ``frame`` (its :class:`~tlpoe.rtl.deframer.RxDesc`, ``good`` when
    it is delivered now), ``store`` (keep it, in slot ``seq mod window``,
    instead) and ``release`` (after it, deliver that many kept frames, from
    slot ``seq + 1`` on)."""

    def __init__(self, max_words, window):
        super().__init__({
            "frame": RxDesc(max_words),
            "store": 1,
            "release": range(window),
        })


class KeptDesc(data.StructLayout):
    """What the reorder buffer keeps of a stored frame's descriptor."""

    def __init__(self, max_words):
        super().__init__({"count": 16, "words": range(max_words + 1)})


class ReorderBuffer(wiring.Component):
    """Sits between the receive FIFOs (``desc``, a :class:`ReorderDesc` per
    frame, and ``words``, every frame's stored words) and the
    :class:`~tlpoe.rtl.unpacker.TlpUnpacker` (``out_desc``, ``out_words``),
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
        m.submodules.kept = kept = Memory(shape=KeptDesc(self.max_words), depth=self.window,
                                          init=[])
        body_w = body.write_port()
        body_r = body.read_port()
        kept_w = kept.write_port()
        kept_r = kept.read_port(domain="comb")

        desc = self.desc.payload
        slot = Signal(slot_bits)        # the slot stored, or the next one released
        word = Signal(word_bits)        # word address in the slot
        words_left = Signal(range(self.max_words + 1))   # of the current frame
        release = Signal(range(self.window))    # kept frames still to deliver
        out_valid = Signal()            # out_words holds a word read back
        taken = Signal()
        m.d.comb += [
            taken.eq(self.desc.valid & self.desc.ready),
            kept_w.addr.eq(desc.frame.seq[:slot_bits]),
            kept_w.data.count.eq(desc.frame.count),
            kept_w.data.words.eq(desc.frame.words),
            kept_w.en.eq(taken & desc.store),
            body_w.addr.eq(Cat(word, slot)),
            body_w.data.eq(self.words.payload),
            kept_r.addr.eq(slot),
            body_r.addr.eq(Cat(word, slot)),
        ]
        last_word = Signal()
        m.d.comb += last_word.eq(words_left == 1)

        with m.FSM():
            with m.State("NEXT"):
                with m.If(desc.store):
                    m.d.comb += self.desc.ready.eq(1)
                with m.Else():
                    m.d.comb += [
                        self.out_desc.valid.eq(self.desc.valid),
                        self.out_desc.payload.eq(desc.frame),
                        self.desc.ready.eq(self.out_desc.ready),
                    ]
                with m.If(taken):
                    m.d.sync += [
                        slot.eq(desc.frame.seq[:slot_bits]),
                        word.eq(0),
                        words_left.eq(desc.frame.words),
                        release.eq(desc.release),
                    ]
                    with m.If(desc.store):
                        m.next = "STORE"
                    with m.Else():
                        m.next = "PASS"
            with m.State("STORE"):
                m.d.comb += [self.words.ready.eq(1), body_w.en.eq(self.words.valid)]
                with m.If(self.words.valid):
                    m.d.sync += [word.eq(word + 1), words_left.eq(words_left - 1)]
                    with m.If(last_word):
                        m.next = "NEXT"
            with m.State("PASS"):
                m.d.comb += [
                    self.out_words.valid.eq(self.words.valid),
                    self.out_words.payload.eq(self.words.payload),
                    self.words.ready.eq(self.out_words.ready),
                ]
                with m.If(self.words.valid & self.out_words.ready):
                    m.d.sync += words_left.eq(words_left - 1)
                    with m.If(last_word):
                        m.d.sync += slot.eq(slot + 1)
                        with m.If(release != 0):
                            m.next = "RELEASE"
                        with m.Else():
                            m.next = "NEXT"
            with m.State("RELEASE"):
                out = self.out_desc.payload
                m.d.comb += [
                    self.out_desc.valid.eq(1),
                    out.good.eq(1),
                    out.count.eq(kept_r.data.count),
                    out.words.eq(kept_r.data.words),
                ]
                with m.If(self.out_desc.ready):
                    m.d.sync += [word.eq(0), words_left.eq(kept_r.data.words),
                                 release.eq(release - 1)]
                    m.next = "READ"
            with m.State("READ"):
                fetch = Signal()
                m.d.comb += [
                    fetch.eq((words_left != 0) & (~out_valid | self.out_words.ready)),
                    body_r.en.eq(fetch),
                    self.out_words.valid.eq(out_valid),
                    self.out_words.payload.eq(body_r.data),
                ]
                with m.If(fetch):
                    m.d.sync += [word.eq(word + 1), words_left.eq(words_left - 1),
                                 out_valid.eq(1)]
                with m.Elif(self.out_words.ready):
                    m.d.sync += out_valid.eq(0)
                    with m.If(words_left == 0):
                        m.d.sync += slot.eq(slot + 1)
                        with m.If(release != 0):
                            m.next = "RELEASE"
                        with m.Else():
                            m.next = "NEXT"
        return m
