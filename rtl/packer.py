"""TLP packer: the first half of the encapsulator."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..models import wire
from .streams import check_width, tlp_stream
from .wirefmt import pack_bytes

__all__ = ["FrameDesc", "TlpPacker", "tlp_dws_from_header"]

#: Largest TLP in DWs: a 4-DW header, 1024 DWs of payload and a digest.
MAX_TLP_DWS = 4 + 1024 + 1


class FrameDesc(data.StructLayout):
    """One frame closed by the packer: how many TLPs, and the bytes of its TLP area."""

    def __init__(self):
        super().__init__({"count": 16, "length": 16})


def tlp_dws_from_header(dw0):
    """Total DWs of a TLP (header, payload, digest) from its first DW, given
    as 32 bits in stream lane order (byte 0 = Fmt/Type in bits 7:0)."""
    fmt_4dw, fmt_data = dw0[5], dw0[6]
    digest = dw0[23]                                  # TD, byte 2 bit 7
    length = Cat(dw0[24:32], dw0[16:18])              # Length[7:0] in byte 3, [9:8] in byte 2
    payload = Mux(length == 0, 1024, length)
    return Mux(fmt_4dw, 4, 3) + Mux(fmt_data, payload, 0) + digest


class TlpPacker(wiring.Component):
    """Packs TLPs, each behind a 4-byte length prefix, into frame-body words.

    Words come out in frame order with the first ``HEADER_LEN`` bytes of each
    frame left zero for the :class:`~tlpoe.rtl.framer.Framer` to fill; the
    first word of a frame is frame word ``HEADER_LEN // (width/8)``.  When a
    frame closes, its last (zero-padded) word and its :class:`FrameDesc` are
    emitted in the same cycle, so a consumer that waits for the descriptor
    sees whole frames (store and forward).

    A frame closes when the next TLP would not fit ``body_capacity(mtu)``,
    when it holds ``max_tlps`` TLPs, when no TLP of any size fits any more, or
    ``flush_timeout`` cycles after its first TLP was accepted (bounded latency;
    ``flush_timeout`` is an input whose reset value is the parameter).

    Ingress errors never corrupt a frame: a TLP too large for the MTU is
    consumed and dropped (``oversize_drops``); a TLP whose stream length
    disagrees with its header's Length is cut or zero-padded to the header's
    size (``length_errors``), so the prefixes always describe the bytes.

    ``tlp_stamp``, read with a TLP's first beat, goes into its prefix's
    ``order_stamp`` (0 when not driven).

    Throughput: one beat per cycle in, one word per cycle out, except one
    stall per overflow of the two-word packing register (the prefixes add a
    DW per TLP).
    """

    def __init__(self, width, *, mtu=1500, max_tlps=None, flush_timeout=64):
        check_width(width)
        if mtu not in wire.MTUS:
            raise ValueError(f"mtu must be one of {wire.MTUS}, not {mtu!r}")
        if max_tlps is not None and not 1 <= max_tlps <= 0xFFFF:
            raise ValueError(f"max_tlps must be in 1..65535, not {max_tlps!r}")
        if not isinstance(flush_timeout, int) or not 1 <= flush_timeout <= 0xFFFF:
            raise ValueError(f"flush_timeout must be 1..65535 cycles, not {flush_timeout!r}")
        self.width = width
        self.mtu = mtu
        self.max_tlps = max_tlps or 0xFFFF
        super().__init__({
            "tlp": In(tlp_stream(width)),
            "words": Out(stream.Signature(width)),
            "desc": Out(stream.Signature(FrameDesc())),
            "tlp_stamp": In(wire.TLP_PREFIX["order_stamp"].width),
            "flush_timeout": In(16, init=flush_timeout),
            "oversize_drops": Out(32),
            "length_errors": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        W, D = self.width, self.width // 32
        capacity = wire.body_capacity(self.mtu)
        p0 = (wire.HEADER_LEN // 4) % D     # header DWs sharing the first body word

        acc = Signal(2 * W)                  # packing register, DW 0 next out
        pos = Signal(range(2 * D + 1), init=p0)
        count = Signal(16)
        length = Signal(16)
        age = Signal(16)
        in_tlp = Signal()                    # between a TLP's first and last beat
        rem = Signal(range(MAX_TLP_DWS + 1)) # header-declared DWs still to pack
        discard = Signal()                   # drop beats until last (oversize / too long)
        pad = Signal()                       # stream ended early: append zero DWs

        beat = self.tlp.payload
        n_in = Signal(range(D + 1))
        m.d.comb += n_in.eq(sum(beat.keep[i] for i in range(D)))
        tlp_dws = Signal(range(MAX_TLP_DWS + 1))
        m.d.comb += tlp_dws.eq(tlp_dws_from_header(beat.data[:32]))
        need = Signal(16)                    # prefix + TLP bytes
        m.d.comb += need.eq(4 * tlp_dws + wire.PREFIX_LEN)
        oversize = Signal()
        m.d.comb += oversize.eq(need > capacity)

        # Output side: a full word leaves whenever there is one.
        emit_full = Signal()
        m.d.comb += emit_full.eq(pos >= D)
        # Close decisions happen between TLPs only.
        first_fits = Signal()
        m.d.comb += first_fits.eq(length + need <= capacity)
        close_cond = Signal()
        m.d.comb += close_cond.eq(~in_tlp & ~pad & (count != 0) & (
            (age >= self.flush_timeout) | (count == self.max_tlps) |
            (length > capacity - wire.PREFIX_LEN - wire.MIN_TLP) |
            (self.tlp.valid & ~oversize & ~first_fits)))
        can_close = Signal()
        m.d.comb += can_close.eq(close_cond & (pos <= D) & self.desc.ready &
                                 ((pos == 0) | self.words.ready))
        closing = Signal()
        m.d.comb += closing.eq(can_close)

        m.d.comb += [
            self.words.valid.eq(emit_full | (close_cond & (pos != 0) & (pos <= D) & self.desc.ready)),
            self.words.payload.eq(acc[:W]),
            self.desc.valid.eq(close_cond & (pos <= D) & ((pos == 0) | self.words.ready)),
            self.desc.payload.count.eq(count),
            self.desc.payload.length.eq(length),
        ]
        emitting = Signal()
        m.d.comb += emitting.eq(self.words.valid & self.words.ready)
        pos_after = Signal.like(pos)
        acc_after = Signal.like(acc)
        with m.If(closing):
            m.d.comb += [pos_after.eq(p0), acc_after.eq(0)]
        with m.Elif(emitting):
            m.d.comb += [pos_after.eq(pos - D), acc_after.eq(acc[W:])]
        with m.Else():
            m.d.comb += [pos_after.eq(pos), acc_after.eq(acc)]

        # Input side: the DWs to append this cycle (prefix first on a TLP's first beat).
        first = Signal()
        m.d.comb += first.eq(~in_tlp & ~pad)
        take = Signal(range(D + 1))          # beat DWs kept (<= declared remainder)
        rem_now = Signal.like(rem)
        m.d.comb += rem_now.eq(Mux(first, tlp_dws, rem))
        m.d.comb += take.eq(Mux(discard | (first & oversize), 0, Mux(n_in < rem_now, n_in, rem_now)))
        pad_take = Signal(range(D + 1))
        m.d.comb += pad_take.eq(Mux(rem < D, rem, D))
        prefix = pack_bytes(wire.TLP_PREFIX, tlp_length=4 * tlp_dws, order_stamp=self.tlp_stamp)
        lanes = [Mux(take > i, beat.data[32 * i:32 * (i + 1)], 0) for i in range(D)]
        new = Signal(32 * (D + 1))
        n_new = Signal(range(D + 2))
        with m.If(pad):
            m.d.comb += [new.eq(0), n_new.eq(pad_take)]
        with m.Elif(first & ~oversize):
            m.d.comb += [new.eq(Cat(prefix, *lanes)), n_new.eq(take + 1)]
        with m.Else():
            m.d.comb += [new.eq(Cat(*lanes)), n_new.eq(take)]
        room = Signal()
        m.d.comb += room.eq(pos_after + n_new <= 2 * D)
        blocked = Signal()
        m.d.comb += blocked.eq(close_cond & ~closing)
        accept = Signal()                    # a TLP beat is consumed
        m.d.comb += [
            accept.eq(self.tlp.valid & ~pad & room & ~blocked),
            self.tlp.ready.eq(~pad & room & ~blocked),
        ]
        append = Signal()
        m.d.comb += append.eq(accept | (pad & room))
        shifted = (new << Cat(Const(0, 5), pos_after))[:2 * W]
        m.d.sync += [
            acc.eq(Mux(append, acc_after | shifted, acc_after)),
            pos.eq(Mux(append, pos_after + n_new, pos_after)),
        ]

        # TLP bookkeeping.
        with m.If(closing):
            m.d.sync += [count.eq(0), length.eq(0), age.eq(0)]
        with m.Elif((count != 0) & (age != 0xFFFF)):
            m.d.sync += age.eq(age + 1)
        with m.If(pad & room):
            m.d.sync += rem.eq(rem - pad_take)
            with m.If(rem == pad_take):
                m.d.sync += pad.eq(0)
        with m.If(accept):
            m.d.sync += rem.eq(rem_now - take)
            with m.If(first):
                with m.If(oversize):
                    m.d.sync += [discard.eq(~beat.last),
                                 self.oversize_drops.eq(self.oversize_drops + 1)]
                with m.Else():
                    m.d.sync += [count.eq(Mux(closing, 1, count + 1)),
                                 length.eq(Mux(closing, 0, length) + need)]
                    with m.If(closing | (count == 0)):
                        m.d.sync += age.eq(0)
            with m.If(beat.last):
                m.d.sync += [in_tlp.eq(0), discard.eq(0)]
                with m.If(~discard & ~(first & oversize)):
                    with m.If(rem_now != take):         # ended early: pad
                        m.d.sync += [pad.eq(1), self.length_errors.eq(self.length_errors + 1)]
                    with m.Elif(n_in > take):           # too long within this beat: cut
                        m.d.sync += self.length_errors.eq(self.length_errors + 1)
            with m.Else():
                m.d.sync += in_tlp.eq(1)
                # Declared size reached but the stream goes on: drop the rest.
                with m.If(~discard & ~(first & oversize) & (rem_now == take)):
                    m.d.sync += [discard.eq(1), self.length_errors.eq(self.length_errors + 1)]
        return m
