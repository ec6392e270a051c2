"""TLP unpacker: the second half of the decapsulator."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...models import wire
from ..streams import STAMP_BITS, RxDesc, check_width, tlp_stream

__all__ = ["TlpUnpacker"]


def _pick(index, values):
    """``values[index]`` as a tree of 2:1 multiplexers on the index's bits.
    (An ``Array`` read becomes a ``case`` in an ``always @*`` block, which
    Icarus first evaluates when an input changes: a register read that kept
    its initial value, such as an entry written with zeros, would stay X.)"""
    level, bit = list(values), 0
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [Mux(index[bit], level[i + 1], level[i]) for i in range(0, len(level), 2)]
        bit += 1
    return level[0]


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
    * **Walk.** The packed DWs are written to a circular buffer of ``4·D``
      DWs (``D`` = DWs per beat) while it holds at most ``2·D``; the buffer
      is one stream of prefix and TLP pairs across frames. A TLP beat leaves
      when the buffer holds a whole beat (or the rest of a frame whose words
      are all in), read from the ``D + 1`` DWs at the read pointer. No DW
      moves once written: a write picks one of ``D`` lanes and a read one
      of ``4·D`` entries, each by a pointer register. What a prefix says of
      its TLP's first beat (its DWs, whether it is the last) is worked out
      in the load half for every DW and stored beside it.

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

        NB = D.bit_length()                         # bits of a beat's DW count, 0..D

        def dws_of(dw):
            """The TLP's length in DWs, from its prefix DW (big-endian bytes)."""
            return Cat(dw[8:16], dw[0:8])[2:]

        low = (D - 1).bit_length()

        def head_flags(dw):
            """For a prefix DW: its TLP's DWs in the first beat, min(dws, D)
            (``NB`` bits), whether that beat is its last (dws <= D), then the
            same of its second beat (D is a power of two: a length in
            D..2D-1 is D plus its low bits), the DWs its first beat takes
            from the buffer with the prefix, min(dws, D) + 1, and the DWs
            left after its first beat, dws - D (12 bits; used only when
            dws > D)."""
            dws = dws_of(dw)
            first = Mux(dws < D, dws[:NB], D)
            return Cat(first, dws <= D,
                       Mux(dws >= 2 * D, D, dws[:low] if low else 0), dws <= 2 * D,
                       Mux(dws < D, dws[:NB] + 1, D + 1)[:NB + 1], (dws - D)[:12])

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
        # What each DW would say of its TLP were it a prefix (`head_of`),
        # worked out on the word's lanes beside the shift and shifted as its
        # DW is: it travels with the DW into the buffer, so that the walk
        # reads it from a register.
        FB = 32                                     # flag bits per DW, padded to a power of two
        lane_flags = Cat(*[Cat(head_flags(self.words.payload[32 * i:32 * (i + 1)]),
                               Const(0, FB - 3 * NB - 15)) for i in range(D)])
        packed_flags = Signal(D * FB)
        m.d.comb += packed_flags.eq((lane_flags >> Cat(Const(0, 5), skip))[:D * FB] &
                                    Cat(*[lanes_kept[i].replicate(FB) for i in range(D)]))
        l1_flags = Signal(D * FB)

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
                l1_flags.eq(packed_flags),
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

        # ---- Walk: a circular buffer of E = 4·D prefix and TLP DWs. No DW
        # moves once written: l1's D DWs are written whole at `wp` (those
        # beyond l1_n land in free entries, overwritten later), and a beat
        # is read from entries at pointer registers. Two stages: *decide*
        # works out each beat from `rp`, the flags of the prefix there and
        # the counts (registers and a few bits), and advances `rp`; *read*
        # takes the beat's DWs from the entries at the pointers decide
        # registered. Entries of the beat in read stay held until it leaves.
        E = 4 * D
        P = E.bit_length() - 1                       # pointer bits
        ent = [Signal(32, name=f"ent{i}") for i in range(E)]
        efl = [Signal(FB, name=f"efl{i}") for i in range(E)]        # each DW's head_flags
        wp = Signal(P)
        rp = Signal(P)
        cnt = Signal(range(E + 1))                   # DWs held from rp on
        used = Signal(range(E + 1))                  # ... and the read stage's beat's
        sealed = Signal(range(E + 1))                # DWs held of frames whose area is all in
        in_tlp = Signal()
        rem = Signal(11 + 1)                         # DWs of the current TLP still to send
        n_cur = Signal(range(D + 1))                 # DWs of its next beat
        last_cur = Signal()                          # ... and whether it is its last
        # l1 lands while at most 3·D are held: its D DWs reach no held one
        m.d.comb += room.eq(l1_valid & (used <= 3 * D))

        # decide: what the prefix at rp says of its TLP (its flags, worked
        # out in the load half) and its length
        head = Signal(FB)
        m.d.comb += head.eq(_pick(rp, efl))
        head_n, head_single = head[:NB], head[NB]
        head_n2, head_last2 = head[NB + 1:2 * NB + 1], head[2 * NB + 1]
        head_take = head[2 * NB + 2:3 * NB + 3]
        head_rest = head[3 * NB + 3:3 * NB + 15]
        n_out = Signal(range(D + 1))
        last = Signal()
        m.d.comb += [
            n_out.eq(Mux(in_tlp, n_cur, head_n)),
            last.eq(Mux(in_tlp, last_cur, head_single)),
        ]
        # A beat is decided when a whole beat's DWs are held (after the
        # prefix on a TLP's first beat), or when the TLP's frame is all in:
        # a test of registers and constants, not of this TLP's length.
        whole = Signal()
        m.d.comb += whole.eq(Mux(in_tlp, cnt >= D, cnt >= D + 1) | (sealed != 0))
        # read: the beat's DWs, its size and end. The entries are D banks
        # (bank = entry mod D) of R rows; D consecutive entries from `base`
        # are one per bank: bank j's at row base/D, or the next row for the
        # banks before base mod D; lane i takes bank (base + i) mod D. Both
        # selects are registers, and each bank's row is read once for all
        # lanes.
        R = E // D

        def before(j, offset):
            """Bank j comes before ``offset`` (mod D): its entry is a row on."""
            return offset > j if j < D - 1 else Const(0, 1)
        r_valid = Signal()
        r_row = [Signal(range(R), name=f"r_row{j}") for j in range(D)]
        r_bank = [Signal(range(D), name=f"r_bank{i}") for i in range(D)]
        r_keep = Signal(D)
        r_n = Signal(range(D + 1))
        r_last = Signal()
        r_take = Signal(range(D + 2))                # entries the beat holds (with its prefix)
        r_pfx = Signal(P)                            # its TLP's prefix (for the stamp)
        decided = Signal()
        m.d.comb += decided.eq(whole & (cnt != 0) & (~r_valid | self.tlp.ready))
        # DWs that leave rp: the beat's, and the prefix on a TLP's first beat
        amount = Signal(range(D + 2))
        m.d.comb += amount.eq(Mux(in_tlp, n_cur, head_take))
        base = Signal(P)                             # the beat's first data DW
        m.d.comb += base.eq(rp + ~in_tlp)
        with m.If(decided):
            m.d.sync += [
                r_valid.eq(1), r_n.eq(n_out), r_last.eq(last),
                r_keep.eq(Cat(*[n_out > i for i in range(D)])),
                r_take.eq(amount), r_pfx.eq(rp),
                rp.eq(rp + amount),
                *[r_row[j].eq(base[low:] + before(j, base[:low])) for j in range(D)],
                *[r_bank[i].eq(base[:low] + i) for i in range(D)],
            ]
        with m.Elif(self.tlp.ready):
            m.d.sync += r_valid.eq(0)
        prefix = Signal(32)                          # read here: its entry stays held
        m.d.comb += prefix.eq(_pick(r_pfx, ent))
        bank_out = [Signal(32, name=f"bank{j}") for j in range(D)]
        for j in range(D):
            m.d.comb += bank_out[j].eq(_pick(r_row[j], [ent[r * D + j] for r in range(R)]))
        m.d.comb += [
            self.tlp.valid.eq(r_valid),
            self.tlp.payload.data.eq(Cat(*[Mux(r_keep[i], _pick(r_bank[i], bank_out), 0)
                                           for i in range(D)])),
            self.tlp.payload.keep.eq(r_keep),
            self.tlp.payload.last.eq(r_last),
            self.tlp.payload.stamp.eq(Cat(prefix[24:32], prefix[16:24])),   # order_stamp
        ]
        sent = decided                               # (for the counts below)
        leaving = Signal(range(D + 2))               # entries the read stage frees
        m.d.comb += leaving.eq(Mux(r_valid & self.tlp.ready, r_take, 0))

        # l1's lane i goes to entry wp + i: bank (wp + i) mod D takes l1
        # rotated by wp mod D, at row wp/D or, for the banks before wp mod D,
        # the next
        ldw = [l1_data[32 * i:32 * (i + 1)] for i in range(D)]
        lfl = [l1_flags[FB * i:FB * (i + 1)] for i in range(D)]
        for j in range(D):
            lane = Signal(range(D), name=f"w_lane{j}")
            row = Signal(range(R), name=f"w_row{j}")
            m.d.comb += [lane.eq(j - wp[:low]), row.eq(wp[low:] + before(j, wp[:low]))]
            in_dw, in_fl = Signal(32, name=f"w_dw{j}"), Signal(FB, name=f"w_fl{j}")
            m.d.comb += [in_dw.eq(_pick(lane, ldw)), in_fl.eq(_pick(lane, lfl))]
            for r in range(R):
                with m.If(room & (row == r)):
                    m.d.sync += [ent[r * D + j].eq(in_dw), efl[r * D + j].eq(in_fl)]
        landed = Signal(range(D + 1))
        m.d.comb += landed.eq(Mux(room, l1_n, 0))
        with m.If(room):
            m.d.sync += wp.eq(wp + l1_n)

        cnt_in = Signal.like(cnt)
        cnt_out = Signal.like(cnt)
        m.d.comb += [cnt_in.eq(cnt + landed),
                     cnt_out.eq(Mux(in_tlp, cnt_in - n_cur, cnt_in - head_take))]
        cnt_next = Signal.like(cnt)
        m.d.comb += cnt_next.eq(Mux(sent, cnt_out, cnt_in))
        sealed_out = Signal.like(sealed)
        m.d.comb += sealed_out.eq(Mux(sealed == 0, 0,
                                      Mux(in_tlp, sealed - n_cur, sealed - head_take)))
        # `used` counts the read stage's beat too, with its prefix
        m.d.sync += [
            cnt.eq(cnt_next),
            used.eq(used + landed - leaving),
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
                m.d.sync += [rem.eq(head_rest), n_cur.eq(head_n2),
                             last_cur.eq(head_last2)]
        with m.If(r_valid & self.tlp.ready & r_last):
            m.d.sync += self.tlps_out.eq(self.tlps_out + 1)
        return m
