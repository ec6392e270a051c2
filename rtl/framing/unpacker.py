"""TLP unpacker: the second half of the decapsulator."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
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

    * **Load.** One word per cycle is taken, whatever the frame, into a
      register with what each of its DWs would say of its TLP were it a
      prefix (worked out on the word's lanes, where the word arrives); from
      there its DWs of the TLP area (after the 40-byte header, before
      ``area`` runs out) are packed to the low lanes and registered with
      their count. The next frame's descriptor is taken with the last word
      of the one before.
    * **Walk.** The packed DWs are written to a circular buffer of ``4·D``
      DWs (``D`` = DWs per beat) while it holds at most ``2·D``; the buffer
      is one stream of prefix and TLP pairs across frames. A TLP beat leaves
      when the buffer holds a whole beat (or the rest of a frame whose words
      are all in), read from the ``D + 1`` DWs at the read pointer. No DW
      moves once written: a write picks one of ``D`` lanes and a read one
      of ``4·D`` entries, each by a pointer register. What a prefix says of
      its TLP's first beat (its DWs, whether it is the last, the entry where
      that beat ends) is worked out as the DW is loaded and stored beside
      it, and the counts that decide a beat lag the decision by a cycle, so
      the walk's loop is one read of the entry at the read pointer.

    Throughput: one word in and one TLP beat out per cycle; frame headers,
    CRCs and dropped frames cost no output cycle.
    """

    def __init__(self, width, *, max_words, area_at=wire.HEADER_LEN):
        check_width(width)
        if area_at % 4 or not 0 < area_at < 4096:
            raise ValueError(f"area_at must be a whole number of DWs, not {area_at!r}")
        #: The frame byte where the TLP area starts (40; 68 on the udp transport).
        self.area_at = area_at
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
        HDR = self.area_at // 4                      # header DWs before the TLP area

        NB = D.bit_length()                         # bits of a beat's DW count, 0..D

        def dws_of(dw):
            """The TLP's length in DWs, from its prefix DW (big-endian bytes)."""
            return Cat(dw[8:16], dw[0:8])[2:]

        low = (D - 1).bit_length()

        # What a DW says of its TLP were it a prefix (dws: the TLP's DWs):
        flags = data.StructLayout({
            "single": 1,                  # its first beat is its last: dws <= D
            "n2": NB,                     # its second beat's DWs, min(dws - D, D)
            "last2": 1,                   # ... and whether that one is its last
            "take": range(D + 2),         # the DWs its first beat takes with the prefix
            "rest": 11,                   # the DWs after its first beat (if any), dws - D
            "need": range(2 * D + 3),     # the decision's threshold once it is taken
        })
        FB = 32                                     # flag bits per DW, padded to a power of two
        if flags.size > FB:
            raise ValueError(f"width {W}: {flags.size} flag bits per DW, more than {FB}")

        def head_flags(dw, i):
            """``flags`` of a prefix DW, padded to FB bits. D is a power of
            two: a length in D..2D-1 is D plus its low bits. ``need`` is
            what the counts must reach after the first beat leaves (the DWs
            it took, plus the next beat's: a next TLP's D + 1, or this
            one's D)."""
            dws = dws_of(dw)
            f = Signal(flags, name=f"lane_flags{i}")
            m.d.comb += [f.single.eq(dws <= D),
                         f.n2.eq(Mux(dws >= 2 * D, D, dws[:low] if low else 0)),
                         f.last2.eq(dws <= 2 * D),
                         f.take.eq(Mux(dws < D, dws + 1, D + 1)),
                         f.rest.eq(dws - D),
                         f.need.eq(Mux(dws <= D, dws + D + 2, 2 * D + 1))]
            return Cat(f.as_value(), Const(0, FB - flags.size))

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
        E = 4 * D
        P = E.bit_length() - 1                       # the buffer's pointer bits
        EB = 1 << (P - 1).bit_length()               # an end's bits, padded to a power of two
        # The word's register (l0), with its lanes' flags and where each
        # lane's first beat would end, relative to the lane (take + i): the
        # arithmetic on the DW's length happens here, beside the word's
        # source, and the packing below starts from registers.
        l0_valid = Signal()
        l0_data = Signal(W)
        l0_flags = Signal(D * FB)
        l0_ends = Signal(D * P)
        take = Signal()
        m.d.comb += [
            take.eq(l0_valid & loading & l1_free),
            self.words.ready.eq(~l0_valid | take),
            self.desc.ready.eq(~loading | (take & last_word)),
        ]
        lane_flags = Cat(*[head_flags(self.words.payload[32 * i:32 * (i + 1)], i)
                           for i in range(D)])
        lane_ends = Cat(*[(flags(lane_flags[FB * i:FB * i + flags.size]).take + i)[:P]
                          for i in range(D)])
        with m.If(self.words.valid & self.words.ready):
            m.d.sync += [l0_valid.eq(1), l0_data.eq(self.words.payload),
                         l0_flags.eq(lane_flags), l0_ends.eq(lane_ends)]
        with m.Elif(take):
            m.d.sync += l0_valid.eq(0)
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
        m.d.comb += packed.eq((l0_data >> Cat(Const(0, 5), skip))[:W] &
                              Cat(*[lanes_kept[i].replicate(32) for i in range(D)]))
        # What each DW would say of its TLP were it a prefix (`head_of`),
        # shifted as its DW is: it travels with the DW into the buffer, so
        # that the walk reads it from a register.
        packed_flags = Signal(D * FB)
        m.d.comb += packed_flags.eq((l0_flags >> Cat(Const(0, 5), skip))[:D * FB] &
                                    Cat(*[lanes_kept[i].replicate(FB) for i in range(D)]))
        l1_flags = Signal(D * FB)
        # and where each DW's first beat would end: the DW of lane i lands
        # at entry wp + (i - skip), so the end is wp + (i + take - skip);
        # the bracket is worked out here, off the write path, and shifted
        # as its DW is. (A lane not kept gets an end too, never read: only
        # a prefix's entry's end is.)
        lane_rel = Cat(*[Cat((l0_ends[P * i:P * (i + 1)] - skip)[:P], Const(0, EB - P))
                         for i in range(D)])
        shifted_ends = Signal(D * EB)
        m.d.comb += shifted_ends.eq((lane_rel >> Cat(Const(0, EB.bit_length() - 1), skip))
                                    [:D * EB])
        packed_ends = Cat(*[shifted_ends[EB * i:EB * i + P] for i in range(D)])
        l1_ends = Signal(D * P)

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
                l1_ends.eq(packed_ends),
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
        ent = [Signal(32, name=f"ent{i}") for i in range(E)]
        efl = [Signal(FB, name=f"efl{i}") for i in range(E)]        # each DW's head_flags
        enx = [Signal(P, name=f"enx{i}") for i in range(E)]         # entry + its take, mod E
        wp = Signal(P)
        rp = Signal(P)
        used = Signal(range(E + 1))                  # DWs held, with the read stage's beat's
        # The counts lag a decision: `held` is the DWs held from rp on plus
        # `gone`, the DWs the last cycle's decision took (0 if none), and
        # `held_sealed` likewise of the DWs of frames whose area is all in
        # (0 when none are). So a count is updated from registers only, and
        # the decision compares registers: held >= need (need = gone + the
        # DWs a beat waits for) and held_sealed > gone. No path runs from
        # the prefix's flags into a count and back.
        LAG = E + D + 2
        held = Signal(range(LAG + 1))
        held_sealed = Signal(range(LAG + 1))
        gone = Signal(range(D + 2))
        need = Signal(range(2 * D + 3), init=D + 1)
        in_tlp = Signal()
        rem = Signal(11 + 1)                         # DWs of the current TLP still to send
        n_cur = Signal(range(D + 1))                 # DWs of its next beat
        last_cur = Signal()                          # ... and whether it is its last
        # l1 lands while at most 3·D are held: its D DWs reach no held one
        m.d.comb += room.eq(l1_valid & (used <= 3 * D))

        # decide: what the prefix at rp says of its TLP (its flags, worked
        # out in the load half) and its length
        head = Signal(flags)
        m.d.comb += head.eq(_pick(rp, efl)[:flags.size])
        last = Signal()
        m.d.comb += last.eq(Mux(in_tlp, last_cur, head.single))
        # A beat is decided when a whole beat's DWs are held (after the
        # prefix on a TLP's first beat), or when the TLP's frame is all in:
        # two comparisons of registers, not of this TLP's length.
        whole = Signal()
        m.d.comb += whole.eq((held >= need) | (held_sealed > gone))
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
        r_first = Signal()                           # a TLP's first beat (its prefix in r_take)
        r_last = Signal()
        r_take = Signal(range(D + 2))                # entries the beat holds (with its prefix)
        r_pfx = Signal(P)                            # its TLP's prefix (for the stamp)
        decided = Signal()
        m.d.comb += decided.eq(whole & (~r_valid | self.tlp.ready))
        # DWs that leave rp: the beat's, and the prefix on a TLP's first beat
        amount = Signal(range(D + 2))
        m.d.comb += amount.eq(Mux(in_tlp, n_cur, head.take))
        base = Signal(P)                             # the beat's first data DW
        m.d.comb += base.eq(rp + ~in_tlp)
        with m.If(decided):
            m.d.sync += [
                r_valid.eq(1), r_first.eq(~in_tlp), r_last.eq(last),
                r_take.eq(amount), r_pfx.eq(rp),
                # a prefix's entry holds where its first beat ends
                rp.eq(Mux(in_tlp, rp + n_cur, _pick(rp, enx))),
                *[r_row[j].eq(base[low:] + before(j, base[:low])) for j in range(D)],
                *[r_bank[i].eq(base[:low] + i) for i in range(D)],
            ]
        with m.Elif(self.tlp.ready):
            m.d.sync += r_valid.eq(0)
        r_keep = Signal(D)                           # worked out here: off the decide loop
        m.d.comb += r_keep.eq(Cat(*[Mux(r_first, r_take > i + 1, r_take > i) for i in range(D)]))
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
        # (each bank's lane and row are registers, worked out from wp's
        # next value as it moves)
        wp_next = Signal(P)
        m.d.comb += wp_next.eq(wp + l1_n)
        lends = [wp + l1_ends[P * i:P * (i + 1)] for i in range(D)]
        for j in range(D):
            lane = Signal(range(D), name=f"w_lane{j}", init=j)
            row = Signal(range(R), name=f"w_row{j}")
            with m.If(room):
                m.d.sync += [lane.eq(j - wp_next[:low]),
                             row.eq(wp_next[low:] + before(j, wp_next[:low]))]
            in_dw, in_fl = Signal(32, name=f"w_dw{j}"), Signal(FB, name=f"w_fl{j}")
            m.d.comb += [in_dw.eq(_pick(lane, ldw)), in_fl.eq(_pick(lane, lfl))]
            in_nx = Signal(P, name=f"w_nx{j}")         # this entry + its take
            m.d.comb += in_nx.eq(_pick(lane, lends))
            for r in range(R):
                with m.If(room & (row == r)):
                    m.d.sync += [ent[r * D + j].eq(in_dw), efl[r * D + j].eq(in_fl),
                                 enx[r * D + j].eq(in_nx)]
        landed = Signal(range(D + 1))
        m.d.comb += landed.eq(Mux(room, l1_n, 0))
        with m.If(room):
            m.d.sync += wp.eq(wp_next)

        gone_next = Signal.like(gone)
        held_next = Signal.like(held)
        # (both sums from registers; whether l1 lands only picks)
        kept, kept_n = Signal.like(held), Signal.like(held)
        m.d.comb += [gone_next.eq(Mux(sent, amount, 0)),
                     kept.eq(held - gone), kept_n.eq(held - gone + l1_n),
                     held_next.eq(Mux(room, kept_n, kept))]
        m.d.sync += [
            held.eq(held_next),
            gone.eq(gone_next),
            # what the counts must reach for the next beat: see `held`
            need.eq(Mux(sent, Mux(in_tlp, n_cur + Mux(last_cur, D + 1, D), head.need),
                        Mux(in_tlp, D, D + 1))),
            held_sealed.eq(Mux(room & l1_seal, held_next,
                               Mux(held_sealed > gone, held_sealed - gone, 0))),
            # `used` counts the read stage's beat too, with its prefix
            used.eq(used + landed - leaving),
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
                m.d.sync += [rem.eq(head.rest), n_cur.eq(head.n2),
                             last_cur.eq(head.last2)]
        with m.If(r_valid & self.tlp.ready & r_last):
            m.d.sync += self.tlps_out.eq(self.tlps_out + 1)
        return m
