"""TLP packer: the first half of the encapsulator."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ...models import transport as tp
from ...models import wire
from ..streams import STAMP_BITS, FrameDesc, SkidBuffer, check_width, tlp_stream
from ..tlp_header import TlpHeader
from ..wirefmt import pack_bytes
from .transport import geometry

__all__ = ["TlpPacker", "tlp_dws_from_header"]

#: Largest TLP in DWs: a 4-DW header, 1024 DWs of payload and a digest.
MAX_TLP_DWS = 4 + 1024 + 1


def tlp_dws_from_header(dw0, *, extra=0):
    """Total DWs of a TLP (header, payload, digest), plus ``extra``, from its
    first DW, given as 32 bits in stream lane order (byte 0 = Fmt/Type in
    bits 7:0)."""
    hdr = TlpHeader(dw0)
    fmt_4dw, fmt_data, digest, length = hdr.four_dw, hdr.has_data, hdr.td, hdr.length
    payload = Cat(length, length == 0)                # 0 means 1024
    # one adder: the small terms are one operand
    small = Mux(fmt_4dw, Mux(digest, 5, 4), Mux(digest, 4, 3)) + extra
    return Mux(fmt_data, payload, 0) + small


def _count_contiguous(keep):
    """How many bits of ``keep`` are set, its set bits contiguous from bit 0
    (a thermometer code): the binary of the one position where it ends."""
    n = len(keep)
    ends = [keep[i] & (~keep[i + 1] if i + 1 < n else 1) for i in range(n)]
    return Cat(*(Cat(*(ends[i] for i in range(n) if (i + 1) >> b & 1)).any()
                 for b in range(n.bit_length())))


class _Beat(data.StructLayout):
    """A TLP beat as the packer's queue holds it: the beat, and what its
    header says when it is a TLP's first (worked out before it is queued)."""

    def __init__(self, width):
        D = width // 32
        super().__init__({
            "data": width, "keep": D, "last": 1,
            "first": 1,                              # a TLP's first beat
            "n_in": range(D + 1),                    # DWs in the beat
            "tlp_dws": range(MAX_TLP_DWS + 1),       # first: the header's DWs
            "need": 16,                              # first: prefix + TLP bytes
            "oversize": 1,                           # first: fits no frame
            "n_first": range(D + 2),                 # first: DWs it appends (prefix too)
            "keep_first": D,                         # first: its DWs kept (<= declared)
            "prefix": 32,                            # first: its prefix (0 if oversize)
        })


class TlpPacker(wiring.Component):
    """Packs TLPs, each behind a 4-byte length prefix, into frame-body words.

    Words come out in frame order with the bytes before the TLP area
    (``HEADER_LEN``, 40, on the ``eth`` transport; 68 on ``udp``) of each
    frame left zero for the :class:`~tlpoe.rtl.framer.Framer` to fill; the
    first word of a frame is frame word ``area_at // (width/8)``, and the
    capacity of a frame is the transport's
    (:func:`~tlpoe.models.transport.body_capacity`).  A
    frame's :class:`FrameDesc` comes on ``desc`` after its last (zero-padded)
    word was taken from ``words``, and before the next frame's first word is
    offered, so a consumer that waits for the descriptor sees whole frames
    (store and forward). ``words.valid`` and ``desc.valid`` never depend on
    either ``ready``.

    A frame closes when the next TLP would not fit ``body_capacity(mtu)``,
    when it holds ``max_tlps`` TLPs, when no TLP of any size fits any more, or
    ``flush_timeout`` cycles after its first TLP was accepted (bounded latency;
    ``flush_timeout`` is an input whose reset value is the parameter).

    Ingress errors never corrupt a frame: a TLP too large for the MTU is
    consumed and dropped (``oversize_drops``); a TLP whose stream length
    disagrees with its header's Length is cut or zero-padded to the header's
    size (``length_errors``), so the prefixes always describe the bytes.

    ``tlp`` carries each TLP's order stamp in its payload (``stamp``, on the
    first beat); it goes into the TLP's prefix's ``order_stamp``.

    Pipeline: a beat is registered, its header worked out into a small
    queue (``tlp.ready`` is that queue's room, registered), packed by a
    control stage whose decisions a data stage carries out a cycle later
    into the two-word packing register, and each word and descriptor goes
    out through a four-entry queue and a register slice. A word full with a
    TLP's first beat leaves seven cycles after the beat came in. Throughput: one beat per cycle in,
    one word or descriptor per cycle out, except one stall per overflow of
    the packing register (the prefixes add a DW per TLP) and the cycle in
    which a frame closes (the next TLP waits for it).
    """

    #: Entries of the queue behind the input register and of the output queue.
    IN_DEPTH, OUT_DEPTH = 5, 4

    def __init__(self, width, *, mtu=1500, max_tlps=None, flush_timeout=64, transport="eth"):
        check_width(width)
        self.geo = geometry(transport)
        if mtu not in wire.MTUS:
            raise ValueError(f"mtu must be one of {wire.MTUS}, not {mtu!r}")
        #: Bytes of TLP area a frame carries (prefixes and TLPs).
        self.capacity = tp.body_capacity(mtu, self.geo.transport)
        if max_tlps is not None and not 1 <= max_tlps <= 0xFFFF:
            raise ValueError(f"max_tlps must be in 1..65535, not {max_tlps!r}")
        if not isinstance(flush_timeout, int) or not 1 <= flush_timeout <= 0xFFFF:
            raise ValueError(f"flush_timeout must be 1..65535 cycles, not {flush_timeout!r}")
        self.width = width
        self.mtu = mtu
        self.max_tlps = max_tlps or 0xFFFF
        super().__init__({
            "tlp": In(tlp_stream(width, STAMP_BITS)),
            "words": Out(stream.Signature(width)),
            "desc": Out(stream.Signature(FrameDesc())),
            "flush_timeout": In(16, init=flush_timeout),
            "oversize_drops": Out(32),
            "length_errors": Out(32),
        })

    def _queued(self, m):
        """The input register and the queue of worked-out beats behind it;
        returns the queue (its ``r_data`` a :class:`_Beat`)."""
        W, D = self.width, self.width // 32
        capacity = self.capacity
        layout = _Beat(W)
        m.submodules.queue = queue = fifo.SyncFIFOBuffered(width=layout.size,
                                                           depth=self.IN_DEPTH)
        # room for this beat once the one in the register is queued
        m.d.comb += self.tlp.ready.eq(queue.level <= self.IN_DEPTH - 3)
        valid, beat = Signal(), Signal.like(self.tlp.payload)
        stamp = beat.stamp
        first = Signal(init=1)               # the next beat in starts a TLP
        beat_first = Signal()                # the registered beat does
        taken = self.tlp.valid & self.tlp.ready
        m.d.sync += [valid.eq(taken), beat.eq(self.tlp.payload), beat_first.eq(first)]
        with m.If(taken):
            m.d.sync += first.eq(self.tlp.payload.last)
        w = Signal(layout)
        # each figure from the header by its own adder, none after another
        tlp_dws, dws_and_prefix = Signal(range(MAX_TLP_DWS + 1)), Signal(range(MAX_TLP_DWS + 2))
        m.d.comb += [tlp_dws.eq(tlp_dws_from_header(beat.data[:32])),
                     dws_and_prefix.eq(tlp_dws_from_header(beat.data[:32], extra=1))]
        n_in, oversize = Signal(range(D + 1)), Signal()     # not read back from `w`:
        m.d.comb += n_in.eq(_count_contiguous(beat.keep))    # one vector to Verilator
        m.d.comb += [
            w.data.eq(beat.data), w.keep.eq(beat.keep), w.last.eq(beat.last),
            w.first.eq(beat_first),
            w.n_in.eq(n_in),
            w.tlp_dws.eq(tlp_dws),
            w.need.eq(4 * dws_and_prefix),
            oversize.eq(4 * dws_and_prefix > capacity),
            w.oversize.eq(oversize),
            w.n_first.eq(Mux(oversize, 0, Mux(tlp_dws >= n_in, n_in + 1, dws_and_prefix))),
            w.keep_first.eq(Mux(oversize, 0,
                                Cat(*(beat.keep[i] & (tlp_dws > i) for i in range(D))))),
            w.prefix.eq(Mux(oversize, 0, pack_bytes(wire.TLP_PREFIX, tlp_length=4 * tlp_dws,
                                                    order_stamp=stamp))),
            queue.w_data.eq(w.as_value()),
            queue.w_en.eq(valid),
        ]
        return queue

    def elaborate(self, platform):
        m = Module()
        W, D = self.width, self.width // 32
        capacity = self.capacity
        p0 = (self.geo.area_at // 4) % D    # header DWs sharing the first body word
        queue = self._queued(m)
        head = data.View(_Beat(W), queue.r_data)
        head_valid = queue.r_rdy

        # The output queue: words, and descriptors (its top bit set).
        m.submodules.out = out = fifo.SyncFIFO(width=W + 1, depth=self.OUT_DEPTH)
        # then a register slice, so that what takes the words (the replay
        # buffer's room, its block RAM's write enables) and the queue's
        # read are a register apart
        m.submodules.out_slice = out_slice = SkidBuffer(W + 1)
        wiring.connect(m, out.r_stream, out_slice.i)
        leaving = out_slice.o
        is_desc = leaving.payload[W]
        m.d.comb += [
            self.words.valid.eq(leaving.valid & ~is_desc),
            self.words.payload.eq(leaving.payload[:W]),
            self.desc.valid.eq(leaving.valid & is_desc),
            self.desc.payload.eq(leaving.payload[:FrameDesc().size]),
            leaving.ready.eq(Mux(is_desc, self.desc.ready, self.words.ready)),
        ]

        # --- control: what to do this cycle (the data stage does it next cycle) -------
        pos = Signal(range(2 * D + 1), init=p0)     # DWs in the packing register
        count, length = Signal(16), Signal(16)
        room_bytes = Signal(16, init=capacity)      # capacity - length
        has_tlps = Signal()                         # count != 0
        at_max = Signal()                           # count == max_tlps
        nearly_full = Signal()                      # no TLP of any size fits any more
        age = Signal(16)
        timed_out = Signal()                        # age >= flush_timeout
        in_tlp = Signal()                    # between a TLP's first and last beat
        rem = Signal(range(MAX_TLP_DWS + 1)) # header-declared DWs still to pack
        discard = Signal()                   # drop beats until last (oversize / too long)
        pad = Signal()                       # stream ended early: append zero DWs
        frame_tc = Signal(3)                 # the frame's first TLP's traffic class
        desc_next = Signal()                 # the closed frame's descriptor is due
        held = Signal(FrameDesc())           # ... and is this

        # an entry may be written the cycle after next: room for it and the one before
        credit = Signal()
        m.d.comb += credit.eq(out.level <= self.OUT_DEPTH - 2)
        may_emit = Signal()
        m.d.comb += may_emit.eq(credit & ~desc_next)
        emit = Signal()                      # a full word leaves
        m.d.comb += emit.eq((pos >= D) & may_emit)
        first = head.first
        fits = Signal()
        m.d.comb += fits.eq(head.need <= room_bytes)
        close_cond = Signal()
        m.d.comb += close_cond.eq(~in_tlp & ~pad & has_tlps & (
            timed_out | at_max | nearly_full |
            (head_valid & first & ~head.oversize & ~fits)))
        closing = Signal()                   # the last word (if any) leaves, then the desc
        m.d.comb += closing.eq(close_cond & (pos < D) & may_emit)
        # room after this cycle's word for what the head appends (at most D+1 DWs,
        # D+1 only for a full first beat)
        big = first & (head.n_first == D + 1)
        room = Signal()
        m.d.comb += room.eq((pos < D) | (may_emit & (pos < 2 * D)) |
                            (((pos == D) | (may_emit & (pos == 2 * D))) & ~big))
        accept = Signal()                    # a TLP beat is consumed
        m.d.comb += [accept.eq(head_valid & ~pad & room & ~close_cond),
                     queue.r_en.eq(accept)]
        # the DWs appended: the beat's (cut to the declared size), the prefix first
        rem_ge = Signal()
        m.d.comb += rem_ge.eq(rem >= head.n_in)
        take = Signal(range(D + 1))          # beat DWs kept
        m.d.comb += take.eq(Mux(first, Mux(head.oversize, 0, head.n_first - 1),
                                Mux(discard, 0, Mux(rem_ge, head.n_in, rem))))
        kept = Signal(D)
        m.d.comb += kept.eq(Mux(first, head.keep_first,
                                Mux(discard, 0, Cat(*(head.keep[i] & (rem > i)
                                                      for i in range(D))))))
        pad_take = Signal(range(D + 1))
        m.d.comb += pad_take.eq(Mux(rem < D, rem, D))
        lanes = [Mux(kept[i], head.data[32 * i:32 * (i + 1)], 0) for i in range(D)]
        new = Signal(32 * (D + 1))
        n_new = Signal(range(D + 2))
        with m.If(pad):
            m.d.comb += [new.eq(0), n_new.eq(pad_take)]
        with m.Elif(first):
            m.d.comb += [new.eq(Cat(head.prefix, *lanes)), n_new.eq(head.n_first)]
        with m.Else():
            m.d.comb += [new.eq(Cat(*lanes)), n_new.eq(take)]
        append = Signal()
        m.d.comb += append.eq(accept | (pad & room))
        pos_kept = Signal.like(pos)          # after this cycle's word
        m.d.comb += pos_kept.eq(Mux(emit, pos - D, pos))
        with m.If(closing):
            m.d.sync += pos.eq(p0)
        with m.Elif(append):
            m.d.sync += pos.eq(pos_kept + n_new)
        with m.Else():
            m.d.sync += pos.eq(pos_kept)

        # --- data: the packing register, a cycle behind the control ----------------
        op_word, op_shift, op_clear, op_desc, op_append = (Signal(name=f"op_{n}") for n in
                                                           ("word", "shift", "clear", "desc",
                                                            "append"))
        op_new, op_at = Signal.like(new), Signal.like(pos)
        desc_issue = desc_next & credit
        m.d.sync += [
            op_word.eq(emit | (closing & (pos != 0))),
            op_shift.eq(emit),
            op_clear.eq(closing),
            op_desc.eq((closing & (pos == 0)) | desc_issue),
            op_append.eq(append),
            op_new.eq(new),
            op_at.eq(pos_kept),
        ]
        with m.If(closing):
            m.d.sync += [held.count.eq(count), held.length.eq(length), held.tc.eq(frame_tc),
                         desc_next.eq(pos != 0)]
        with m.Elif(desc_issue):
            m.d.sync += desc_next.eq(0)
        acc = Signal(2 * W)                  # packing register, DW 0 next out
        kept_acc = Mux(op_clear, 0, Mux(op_shift, acc[W:], acc))
        shifted = (op_new << Cat(Const(0, 5), op_at))[:2 * W]
        m.d.sync += acc.eq(Mux(op_append, kept_acc | shifted, kept_acc))
        m.d.comb += [
            out.w_en.eq(op_word | op_desc),
            out.w_data.eq(Mux(op_desc, Cat(held.as_value(), Const(0, W - held.shape().size), 1),
                              Cat(acc[:W], 0))),
        ]

        # --- TLP bookkeeping ---------------------------------------------------------
        with m.If(closing):
            m.d.sync += [count.eq(0), length.eq(0), room_bytes.eq(capacity), has_tlps.eq(0),
                         at_max.eq(0), nearly_full.eq(0), age.eq(0), timed_out.eq(0)]
        with m.Elif(has_tlps):
            with m.If(age != 0xFFFF):
                m.d.sync += age.eq(age + 1)
            m.d.sync += timed_out.eq(age + 1 >= self.flush_timeout)
        with m.If(pad & room):
            m.d.sync += rem.eq(rem - pad_take)
            with m.If(rem == pad_take):
                m.d.sync += pad.eq(0)
        rem_now = Mux(first, head.tlp_dws, rem)
        with m.If(accept):
            m.d.sync += rem.eq(rem_now - take)
            with m.If(first):
                with m.If(head.oversize):
                    m.d.sync += [discard.eq(~head.last),
                                 self.oversize_drops.eq(self.oversize_drops + 1)]
                with m.Else():
                    with m.If(~has_tlps):
                        m.d.sync += frame_tc.eq(TlpHeader(head.data[:32]).tc)
                    m.d.sync += [count.eq(count + 1), length.eq(length + head.need),
                                 room_bytes.eq(room_bytes - head.need), has_tlps.eq(1),
                                 at_max.eq(count == self.max_tlps - 1),
                                 nearly_full.eq(length + head.need >
                                                capacity - wire.PREFIX_LEN - wire.MIN_TLP)]
            with m.If(head.last):
                m.d.sync += [in_tlp.eq(0), discard.eq(0)]
                with m.If(~discard & ~(first & head.oversize)):
                    with m.If(rem_now != take):         # ended early: pad
                        m.d.sync += [pad.eq(1), self.length_errors.eq(self.length_errors + 1)]
                    with m.Elif(head.n_in > take):      # too long within this beat: cut
                        m.d.sync += self.length_errors.eq(self.length_errors + 1)
            with m.Else():
                m.d.sync += in_tlp.eq(1)
                # Declared size reached but the stream goes on: drop the rest.
                with m.If(~discard & ~(first & head.oversize) & (rem_now == take)):
                    m.d.sync += [discard.eq(1), self.length_errors.eq(self.length_errors + 1)]
        return m
