"""TLP unpacker: the second half of the decapsulator."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...models import wire
from ..streams import STAMP_BITS, RxDesc, check_width, tlp_stream

__all__ = ["TlpUnpacker"]


class TlpUnpacker(wiring.Component):
    """Takes checked frames apart into TLPs.

    Pops one :class:`~tlpoe.rtl.streams.RxDesc` per frame, then that
    frame's ``words``: a good frame's TLPs leave on ``tlp`` in order, each
    realigned to lane 0; every other DW of a frame (its headers, CRC and
    padding, and all of a dropped frame) is discarded as its word is taken.
    It trusts the descriptor: the :class:`~tlpoe.rtl.framing.deframer.Deframer` has
    walked the prefixes already, and ``area`` says where they end.

    Two halves, a register apart, so that frames follow each other without a
    gap and no path runs through both:

    * **Load.** One word per cycle is taken, whatever the frame: its DWs of
      the TLP area (after the 40-byte header, before ``area`` runs out) are
      packed to the low lanes and registered with their count. The next
      frame's descriptor is taken with the last word of the one before.
    * **Walk.** The packed DWs are appended to a buffer of ``3·D`` DWs
      (``D`` = DWs per beat) while it holds at most ``2·D``; the buffer is
      one stream of prefix and TLP pairs across frames. A TLP beat leaves
      when the buffer holds a whole beat (or the rest of a frame whose words
      are all in), and its DWs are shifted out. What the prefix at the
      buffer's head says of its TLP is a register, worked out beside the
      data for every DW that can move to the head.

    Throughput: one word in and one TLP beat out per cycle; frame headers,
    CRCs and dropped frames cost no output cycle.
    """

    def __init__(self, width, *, max_words):
        check_width(width)
        self.width = width
        self.max_words = max_words
        super().__init__({
            "desc": In(stream.Signature(RxDesc(max_words))),
            "words": In(stream.Signature(width)),
            "tlp": Out(tlp_stream(width, STAMP_BITS)),
            "tlps_out": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        W, D = self.width, self.width // 32
        HDR = wire.HEADER_LEN // 4                   # header DWs before the TLP area

        # ---- Load: select the TLP area's DWs of each word, pack them low.
        words_left = Signal(range(self.max_words + 1))
        last_word = Signal()                        # words_left == 1
        lo_left = Signal(range(HDR + 1))            # header DWs still to skip
        area_left = Signal(RxDesc(self.max_words)["area"].shape)   # TLP-area DWs to keep
        l1_valid = Signal()
        l1_data = Signal(W)
        l1_n = Signal(range(D + 1))
        l1_seal = Signal()                          # the frame's last TLP-area DW is here
        room = Signal()                             # the buffer takes l1 this cycle
        l1_free = Signal()
        m.d.comb += l1_free.eq(~l1_valid | room)
        loading = Signal()
        m.d.comb += loading.eq(words_left != 0)
        take = Signal()
        m.d.comb += [
            self.words.ready.eq(loading & l1_free),
            take.eq(self.words.valid & self.words.ready),
            self.desc.ready.eq(~loading | (take & last_word)),
        ]
        # How many of this word's DWs are header (`skip`) and how many follow
        # it (`avail`, and as a lane mask): registers, worked out from
        # `lo_left` when the word before was taken, so that the shift and the
        # mask of a word wait on no arithmetic.
        skip = Signal(range(D + 1), init=min(HDR, D))
        avail = Signal(range(D + 1), init=D - min(HDR, D))
        avail_mask = Signal(D, init=sum(1 << i for i in range(D - min(HDR, D))))
        keep_here = Signal(range(D + 1))
        fits = Signal()                             # the rest of the area fits this word
        m.d.comb += [fits.eq(area_left <= avail),
                     keep_here.eq(Mux(fits, area_left, avail))]
        lanes_kept = Cat(*[avail_mask[i] & (area_left > i) for i in range(D)])
        packed = Signal(W)
        m.d.comb += packed.eq((self.words.payload >> Cat(Const(0, 5), skip))[:W] &
                              Cat(*[lanes_kept[i].replicate(32) for i in range(D)]))

        def header_left(lo):
            """``skip``, ``avail`` and ``avail_mask`` for ``lo`` header DWs left."""
            nxt = Mux(lo < D, lo, D)
            return [skip.eq(nxt), avail.eq(D - nxt),
                    avail_mask.eq(Cat(*[nxt + i < D for i in range(D)]))]
        lo_next = Signal.like(lo_left)
        m.d.comb += lo_next.eq(lo_left - skip)
        with m.If(take):
            m.d.sync += [
                words_left.eq(words_left - 1),
                last_word.eq(words_left == 2),
                lo_left.eq(lo_next),
                *header_left(lo_next),
                area_left.eq(Mux(fits, 0, area_left - avail)),
                l1_valid.eq(keep_here != 0),
                l1_data.eq(packed),
                l1_n.eq(keep_here),
                l1_seal.eq((keep_here != 0) & fits),
            ]
        with m.Elif(room):
            m.d.sync += l1_valid.eq(0)
        with m.If(self.desc.valid & self.desc.ready):
            d = self.desc.payload
            m.d.sync += [
                words_left.eq(d.words),
                last_word.eq(d.words == 1),
                lo_left.eq(HDR),
                *header_left(Const(HDR, lo_left.shape())),
                area_left.eq(Mux(d.good, d.area, 0)),
            ]

        # ---- Walk: the buffer of prefix and TLP DWs, buf DW 0 next.
        buf = Signal(3 * W)
        cnt = Signal(range(3 * D + 1))               # DWs held; those above are 0
        sealed = Signal(range(3 * D + 1))            # DWs held of frames whose area is all in
        in_tlp = Signal()
        rem = Signal(11 + 1)                         # DWs of the current TLP still to send
        n_cur = Signal(range(D + 1))                 # DWs of its next beat
        last_cur = Signal()                          # ... and whether it is its last
        m.d.comb += room.eq(l1_valid & (cnt <= 2 * D))

        prefix = buf[:32]
        m.d.comb += self.tlp.payload.stamp.eq(Cat(prefix[24:32], prefix[16:24]))  # order_stamp
        # What the prefix at buf DW 0 says of its TLP, registered: computed for
        # every DW that can move to DW 0 and chosen as the DW itself is (the
        # comparisons stay off the path into the buffer).
        head = {
            "dws": Signal(14),                      # tlp_length / 4
            "n": Signal(range(D + 1)),              # DWs of its first beat: min(dws, D)
            "single": Signal(),                     # one beat: dws <= D
            "take": Signal(range(D + 2)),           # DWs its first beat takes: n + 1
            "n2": Signal(range(D + 1)),             # DWs of its second beat
            "last2": Signal(),                      # ... and whether that is its last
        }
        low = (D - 1).bit_length()

        def head_of(dw):
            """``head``'s fields for prefix DW ``dw``."""
            dws = Cat(dw[8:16], dw[0:8])[2:]
            return {"dws": dws, "n": Mux(dws < D, dws, D), "single": dws <= D,
                    "take": Mux(dws < D, dws[:(D + 1).bit_length()] + 1, D + 1),
                    # D is a power of two: a length in D..2D-1 is D plus its low bits
                    "n2": Mux(dws >= 2 * D, D, dws[:low] if low else 0),
                    "last2": dws <= 2 * D}
        tlp_dws, first_take = head["dws"], head["take"]
        n_out = Signal(range(D + 1))
        last = Signal()
        m.d.comb += [
            n_out.eq(Mux(in_tlp, n_cur, head["n"])),
            last.eq(Mux(in_tlp, last_cur, head["single"])),
        ]
        window = Mux(in_tlp, buf[:W], buf[32:32 + W])
        lanes = [Mux(n_out > i, window[32 * i:32 * (i + 1)], 0) for i in range(D)]
        # A beat leaves when a whole beat's DWs are held (after the prefix on
        # a TLP's first beat), or when the TLP's frame is all in: a test of
        # registers and constants, not of this TLP's length.
        whole = Signal()
        m.d.comb += whole.eq(Mux(in_tlp, cnt >= D, cnt >= D + 1) | (sealed != 0))
        m.d.comb += [
            self.tlp.valid.eq(whole & (cnt != 0)),
            self.tlp.payload.data.eq(Cat(*lanes)),
            self.tlp.payload.keep.eq(Cat(*[n_out > i for i in range(D)])),
            self.tlp.payload.last.eq(last),
        ]
        sent = Signal()
        m.d.comb += sent.eq(self.tlp.valid & self.tlp.ready)
        # DWs that leave: the beat's, and the prefix on a TLP's first beat.
        # `amount` leaves if the beat is sent; `sent` (from `ready`) only picks
        # between results computed with and without it.
        amount = Signal(range(D + 2))
        m.d.comb += amount.eq(Mux(in_tlp, n_cur, first_take))

        # l1 lands at DW `cnt`, then the sent DWs leave from the bottom: both
        # are multiplexers per DW (a register's value selects), not shifters.
        bdw = [buf[32 * i:32 * (i + 1)] for i in range(3 * D)]
        ldw = [l1_data[32 * i:32 * (i + 1)] for i in range(D)]
        at_cnt = Signal(2 * D + 1)               # one-hot: l1 lands at DW c
        for c in range(2 * D + 1):
            m.d.comb += at_cnt[c].eq(room & (cnt == c))
        take_n = Signal(D + 2)                   # one-hot: c DWs leave
        for c in range(D + 2):
            m.d.comb += take_n[c].eq(Mux(sent, amount == c, c == 0))

        def select(name, onehot, values):
            """The value whose one-hot bit is set: AND terms and a balanced
            OR tree, two or three LUT levels for up to 18 choices."""
            terms = [Mux(onehot[bit], value, 0) for bit, value in values]
            while len(terms) > 1:
                terms = [terms[i] | terms[i + 1] if i + 1 < len(terms) else terms[i]
                         for i in range(0, len(terms), 2)]
            out = Signal(32, name=name)
            m.d.comb += out.eq(terms[0] if terms else 0)
            return out

        appended = []
        for p in range(3 * D):
            # DW p gets l1's DW p - c when l1 lands at c (c <= 2D, p - c < D)
            landing = [(c, ldw[p - c]) for c in range(max(0, p - D + 1), min(p, 2 * D) + 1)]
            appended.append(bdw[p] | select(f"landing{p}", at_cnt, landing))
        nxt = [select(f"moved{p}", take_n,
                      [(c, appended[p + c]) for c in range(D + 2) if p + c < 3 * D])
               for p in range(3 * D)]
        # The next head: that of the DW that moves to DW 0 (appended[c] for c
        # leaving), worked out from registers beside the data's selection:
        # appended[c] is buf's DW c while c < cnt, else l1's DW c - k landed
        # at k (0 when nothing lands there: the head is then not used, as
        # DW 0 is empty and no beat leaves).
        def either(terms):
            value = terms[0]
            for t in terms[1:]:
                value = value | t
            return value
        bhead = [head_of(bdw[c]) for c in range(D + 2)]
        lhead = [head_of(dw) for dw in ldw]
        held = Signal(D + 2)                     # buf's DW c is held: c < cnt
        for c in range(D + 2):
            m.d.comb += held[c].eq(cnt > c)
        for name, reg in head.items():
            candidates = []
            for c in range(D + 2):
                landed = [Mux(at_cnt[k], lhead[c - k][name], 0)
                          for k in range(max(0, c - D + 1), min(c, 2 * D) + 1)]
                candidates.append(either([Mux(held[c], bhead[c][name], 0)] + landed))
            m.d.sync += reg.eq(either([Mux(take_n[c], candidates[c], 0)
                                       for c in range(D + 2)]))
        cnt_in = Signal.like(cnt)
        cnt_out = Signal.like(cnt)
        m.d.comb += [cnt_in.eq(cnt + Mux(room, l1_n, 0)), cnt_out.eq(cnt_in - amount)]
        cnt_next = Signal.like(cnt)
        m.d.comb += cnt_next.eq(Mux(sent, cnt_out, cnt_in))
        sealed_out = Signal.like(sealed)
        m.d.comb += sealed_out.eq(Mux(sealed != 0, sealed - amount, 0))
        m.d.sync += [
            buf.eq(Cat(*nxt)),
            cnt.eq(cnt_next),
            sealed.eq(Mux(room & l1_seal, cnt_next, Mux(sent, sealed_out, sealed))),
        ]

        # The next beat's size, from comparisons with constants (D is a power
        # of two: a remainder in D..2D-1 is D plus its low bits).
        with m.If(sent):
            m.d.sync += in_tlp.eq(~last)
            with m.If(in_tlp):
                m.d.sync += [rem.eq(rem - D),
                             n_cur.eq(Mux(rem >= 2 * D, D, rem[:low] if low else 0)),
                             last_cur.eq(rem <= 2 * D)]
            with m.Else():
                m.d.sync += [rem.eq(tlp_dws - D), n_cur.eq(head["n2"]),
                             last_cur.eq(head["last2"])]
            with m.If(last):
                m.d.sync += self.tlps_out.eq(self.tlps_out + 1)
        return m
