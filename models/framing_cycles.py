"""The framing blocks of the link path in cycles, as the RTL builds them:
the twins of :class:`~tlpoe.rtl.framing.packer.TlpPacker` (TLPs into frame
bodies) and :class:`~tlpoe.rtl.framing.framer.Framer` (a descriptor and its
body words into a frame on the MAC stream).

Plain Python, no simulator, in the manner of :mod:`tlpoe.models.link_cycles`:
each twin's :meth:`step` takes one clock cycle's inputs and returns what the
RTL shows in that cycle (before the edge), then moves every register across
the edge. Both blocks' outputs come from registers only (their ``ready`` and
``valid`` never depend on the same cycle's inputs), so :meth:`outputs` gives
them before the inputs are known, which is how a composition
(:mod:`tlpoe.models.bridge`) orders its blocks within a cycle.

The twins are cycle-exact at their ports (``tests/test_framing_twin.py``
proves it in amaranth.sim): every ``valid``, ``ready`` and payload bit
(``data`` beyond ``keep`` too) and every counter, in every cycle. Inside,
they keep the RTL's registers where the ports show them (the packer's
control and data stages and its queues, the framer's descriptor queue,
sequencer, delay line and output FIFO) and nothing else: the framer's CRC
pipeline is ``zlib.crc32`` over the beats it saw, inserted when the last
beat enters the delay line.
"""

import zlib
from collections import deque, namedtuple

from . import transport as tp
from . import wire
from .frame import FLAG_CREDITS_VALID
from .tlp import HEADER_LAYOUTS

__all__ = ["SyncFifo", "SyncFifoBuffered", "SkidBuffer", "FramerConfig", "FrameBeat",
           "FramerCycle", "CycleFramer", "PackerCycle", "CyclePacker", "crc_latency",
           "framer_latency", "WIDTHS", "CREDIT_CLASSES", "UDP_CONFIG_LAG"]

#: Datapath widths in bits (the RTL's ``check_width``).
WIDTHS = (64, 128, 256, 512)
#: The credit classes, in the order of the bridge header's credit fields.
CREDIT_CLASSES = ("p", "np", "cpl")


def crc_latency(width):
    """The pipelined CRC's cycles at ``width`` (``Crc32Pipelined.latency_at``)."""
    return 4 + (width // 32 - 1).bit_length()


def framer_latency(width):
    """Cycles from a body word's handshake to its beat on ``frame``."""
    return crc_latency(width) + 2


def _pack(layout, **values):
    """``layout``'s bytes with each value cut to its field (as the RTL's
    ``pack_bytes`` does), as an int in lane order (byte 0 in bits 7:0)."""
    cut = {f.name: values.get(f.name, 0) & ((1 << f.width) - 1) for f in layout}
    return int.from_bytes(layout.pack(**cut), "little")


# --- the amaranth.lib FIFOs and the register slice, cycle by cycle -------------------


class SyncFifo:
    """``amaranth.lib.fifo.SyncFIFO``: ``r_rdy`` (``level != 0``) and
    ``r_data`` (the entry at the read pointer, read asynchronously; stale
    when empty) and ``w_rdy`` (``level != depth``) in the cycle;
    :meth:`clock` moves it across the edge."""

    def __init__(self, depth):
        self.depth = depth
        self.mem = [0] * depth
        self.produce = self.consume = self.level = 0

    @property
    def r_rdy(self):
        return self.level != 0

    @property
    def w_rdy(self):
        return self.level != self.depth

    @property
    def r_data(self):
        return self.mem[self.consume]

    def clock(self, w_en, w_data, r_en):
        do_read, do_write = self.r_rdy and r_en, self.w_rdy and w_en
        if do_write:
            self.mem[self.produce] = w_data
            self.produce = (self.produce + 1) % self.depth
        if do_read:
            self.consume = (self.consume + 1) % self.depth
        self.level += int(do_write) - int(do_read)
        return do_write, do_read


class SyncFifoBuffered:
    """``amaranth.lib.fifo.SyncFIFOBuffered``: an inner queue of
    ``depth - 1`` entries and an output register (``r_rdy``, ``r_data``,
    which keeps its last value when empty); ``level`` counts both."""

    def __init__(self, depth):
        self.depth = depth
        self.inner = deque()
        self.r_rdy, self.r_data = False, 0

    @property
    def level(self):
        return len(self.inner) + int(self.r_rdy)

    @property
    def w_rdy(self):
        return len(self.inner) != self.depth - 1

    def clock(self, w_en, w_data, r_en):
        do_write = self.w_rdy and w_en
        inner_read = bool(self.inner) and (not self.r_rdy or r_en)
        if inner_read:
            self.r_data, self.r_rdy = self.inner.popleft(), True
        elif r_en:
            self.r_rdy = False
        if do_write:
            self.inner.append(w_data)
        return do_write


class SkidBuffer:
    """:class:`~tlpoe.rtl.streams.SkidBuffer`: ``o_valid``/``o_payload``
    and ``i_ready`` from registers."""

    def __init__(self):
        self.o_valid, self.o_payload = False, 0
        self.skid_valid, self.skid = False, 0

    @property
    def i_ready(self):
        return not self.skid_valid

    def clock(self, i_valid, i_payload, o_ready):
        if o_ready or not self.o_valid:
            if self.skid_valid:
                self.o_payload, self.o_valid, self.skid_valid = self.skid, True, False
            else:
                self.o_payload, self.o_valid = i_payload, bool(i_valid)
        elif i_valid and not self.skid_valid:
            self.skid, self.skid_valid = i_payload, True


# --- the Framer ------------------------------------------------------------------------


class FramerConfig(namedtuple("FramerConfig",
                              "dst_mac src_mac channel credits credits_valid udp")):
    """The framer's configuration inputs, sampled at a descriptor's
    handshake: MAC addresses (ints), ``channel``, ``credits`` (three
    ``(hdr, data)`` pairs, per class P, NP, CPL) and ``credits_valid``;
    on the ``udp`` transport ``udp`` (a :class:`~tlpoe.models.transport.UdpConfig`,
    None: the framer's reset value), which the framer takes
    :data:`UDP_CONFIG_LAG` cycles later."""
    __slots__ = ()

    def __new__(cls, dst_mac=0x020000000002, src_mac=0x020000000001, channel=0,
                credits=((0, 0),) * 3, credits_valid=False, udp=None):
        return super().__new__(cls, dst_mac, src_mac, channel, tuple(map(tuple, credits)),
                               credits_valid, udp)


#: Cycles from a change of the ``udp`` configuration to the frames that
#: carry it (the RTL's ``CHECKSUM_LAG``: the IPv4 checksum's bases are
#: worked out in a pipeline, and the fields wait beside them).
UDP_CONFIG_LAG = 7


#: One beat of a frame stream: ``data`` (an int, byte 0 in bits 7:0),
#: ``keep`` (a bit per byte) and ``last``.
FrameBeat = namedtuple("FrameBeat", "data keep last")
#: What the framer shows in a cycle: ``desc_ready``, ``words_ready``,
#: ``frame`` (the :class:`FrameBeat` offered, or None), ``data_sent`` (the
#: sequence number of the DATA frame whose last beat leaves if
#: ``frame_ready``; None otherwise) and ``frames_sent``.
FramerCycle = namedtuple("FramerCycle", "desc_ready words_ready frame data_sent_seq frames_sent")


class _Frame:
    """A descriptor accepted (the RTL's ``_Entry``): the header bytes (40
    on ``eth``, 68 on ``udp``) and the geometry."""
    __slots__ = ("header", "has_body", "beats", "crc_dw", "is_data", "seq")


class CycleFramer:
    """The :class:`~tlpoe.rtl.framing.framer.Framer` at ``width`` bits:
    its two-entry descriptor queue, the sequencer (a beat per cycle while
    the output FIFO has room for every beat in flight), the delay line of
    :func:`crc_latency` stages beside the CRC, and the output FIFO of
    ``crc_latency + 4`` beats.

    :meth:`step` inputs: ``desc`` (the ``TxDesc`` offered, a mapping or
    object with ``frame_type flags seq ack count length``, or None),
    ``word`` (the body word offered, an int, or None), ``frame_ready`` (the
    MAC takes a beat) and ``config`` (:class:`FramerConfig`).
    """

    def __init__(self, width, *, ethertype=wire.ETHERTYPE, seq_bits=32, transport="eth",
                 udp_init=None):
        if width not in WIDTHS:
            raise ValueError(f"width must be one of {WIDTHS}, not {width!r}")
        if not 1 <= seq_bits <= 32:
            raise ValueError(f"seq_bits must be 1..32, not {seq_bits!r}")
        self.width, self.ethertype, self.seq_bits = width, ethertype, seq_bits
        self.transport = tp.Transport(transport)
        self.bridge_at = tp.header_bytes(self.transport)
        self.area_at = tp.area_offset(self.transport)
        self.udp_init = tp.UdpConfig() if udp_init is None else udp_init
        # the udp configuration of the last UDP_CONFIG_LAG cycles, oldest
        # first: registers without a reset (their power-on value the init)
        self.udp_seen = deque([self.udp_init] * UDP_CONFIG_LAG)
        self.crc_latency = crc_latency(width)
        self.fifo_depth = self.crc_latency + 4
        self.reset()

    def reset(self):
        self.frames_sent = 0
        self.queue = deque()            # descriptors accepted, at most 2
        self.busy = False
        self.cur = None                 # the frame being sequenced
        self.beat = 0                   # its next beat's index
        self.sent_bytes = bytearray()   # its beats so far (for the CRC)
        self.credit = self.fifo_depth
        self.line = [None] * self.crc_latency      # the delay line, stage 1 first
        self.out = SyncFifoBuffered(self.fifo_depth)

    def _entry(self, desc, config, udp):
        """The queue entry for ``desc`` with ``config`` sampled now."""
        f = _Frame()
        get = desc.get if isinstance(desc, dict) else lambda k: getattr(desc, k)
        length = get("length") & 0xFFFF
        credits = {f"credit_{name}_{part}": config.credits[k][i]
                   for k, name in enumerate(CREDIT_CLASSES)
                   for i, part in enumerate(("hdr", "data"))}
        is_data = (get("frame_type") & 0xF) == wire.FrameType.DATA
        udp_transport = self.transport is tp.Transport.UDP
        eth = _pack(wire.ETHERNET, dst_mac=config.dst_mac, src_mac=config.src_mac,
                    ethertype=tp.ETHERTYPE_IPV4 if udp_transport else self.ethertype)
        bridge = _pack(wire.BRIDGE_HEADER, version=wire.VERSION, frame_type=get("frame_type"),
                       flags=get("flags") | (FLAG_CREDITS_VALID if config.credits_valid else 0),
                       channel=config.channel, seq=get("seq"), ack=get("ack"),
                       tlp_count=get("count"), payload_length=length, **credits)
        wb, d = self.width // 8, self.width // 32
        if udp_transport:
            tc = (desc.get("tc", 0) if isinstance(desc, dict) else getattr(desc, "tc", 0)) & 7
            dscp = udp.dscp[tc] if is_data else udp.control_dscp
            headers = tp.udp_headers(wire.BRIDGE_HEADER.length + length + wire.CRC_LEN, udp,
                                     dscp=dscp)
            eth |= int.from_bytes(headers, "little") << (8 * wire.ETH_LEN)
        f.header = eth | bridge << (8 * self.bridge_at)
        f.has_body = length != 0
        f.beats = (length + self.area_at + wire.CRC_LEN + wb - 1) // wb
        f.crc_dw = ((length >> 2) + self.area_at // 4) % d
        f.is_data = is_data
        f.seq = get("seq") & ((1 << self.seq_bits) - 1)
        return f

    def _from_words(self):
        cur, wb = self.cur, self.width // 8
        last = self.beat == cur.beats - 1
        return cur.has_body and self.beat >= self.area_at // wb and \
            not (last and cur.crc_dw == 0)

    def outputs(self):
        """What the framer shows this cycle (all from registers)."""
        out = self.out
        frame = data_sent = None
        if out.r_rdy:
            beat, data_end, seq = out.r_data
            frame = beat
            data_sent = seq if data_end else None
        words_ready = self.busy and self.credit != 0 and self._from_words()
        return FramerCycle(len(self.queue) != 2, words_ready, frame, data_sent, self.frames_sent)

    def step(self, *, desc=None, word=None, frame_ready=False, config=FramerConfig()):
        """One clock cycle; returns the :class:`FramerCycle` shown before the edge."""
        shown = self.outputs()
        W, wb, d = self.width, self.width // 8, self.width // 32
        popped = shown.frame is not None and frame_ready
        from_words = self.busy and self._from_words()
        advance = self.busy and self.credit != 0 and (not from_words or word is not None)
        stage = None
        last = False
        if advance:
            cur, k = self.cur, self.beat
            last = k == cur.beats - 1
            data = (cur.header >> (W * k)) & ((1 << W) - 1)
            if from_words:
                data |= word
            self.sent_bytes += data.to_bytes(wb, "little")
            keep = (1 << wb) - 1
            if last:
                dws = (cur.beats - 1) * d + cur.crc_dw
                fcs = zlib.crc32(self.sent_bytes[self.bridge_at:4 * dws])
                data |= fcs << (32 * cur.crc_dw)
                keep = (1 << (4 * (cur.crc_dw + 1))) - 1
            stage = (FrameBeat(data, keep, int(last)), last and cur.is_data, cur.seq)
        # the output FIFO takes the delay line's last stage
        written = self.line[-1]
        self.out.clock(written is not None, written, frame_ready)
        self.line = [stage] + self.line[:-1]
        self.credit += int(popped) - int(advance)
        if popped and shown.frame.last:
            self.frames_sent = (self.frames_sent + 1) & 0xFFFFFFFF
        # the sequencer: load the next descriptor, or move on a beat
        load = bool(self.queue) and (not self.busy or (advance and last))
        if load:
            self.cur, self.beat, self.busy = self.queue.popleft(), 0, True
            self.sent_bytes = bytearray()
        elif advance:
            self.beat += 1
            if last:
                self.busy = False
        if desc is not None and shown.desc_ready:
            self.queue.append(self._entry(desc, config, self.udp_seen[0]))
        self.clock_udp(config.udp)
        return shown

    def clock_udp(self, udp):
        """The ``udp`` configuration's registers (no reset) across one edge,
        ``udp`` the input (None: the init): :meth:`step` calls it, and a
        bench calls it for each cycle spent in reset."""
        self.udp_seen.popleft()
        self.udp_seen.append(self.udp_init if udp is None else udp)


# --- the TlpPacker ---------------------------------------------------------------------


_DW0 = HEADER_LAYOUTS["mem3"]


def tlp_dws_from_header(dw0, extra=0):
    """Total DWs of a TLP (header, payload, digest) from its first DW (32
    bits, byte 0 in bits 7:0), plus ``extra`` (the RTL's function)."""
    raw = (dw0 & 0xFFFFFFFF).to_bytes(4, "little")
    fmt, td, length = (_DW0[name].get(raw) for name in ("fmt", "td", "length"))
    payload = (length or 1024) if fmt & 2 else 0
    return payload + (4 if fmt & 1 else 3) + td + extra


def _count_contiguous(keep, n):
    """The RTL's count of a thermometer ``keep`` of ``n`` bits (for another
    code, what its gates give)."""
    ends = [keep >> i & 1 and not (i + 1 < n and keep >> (i + 1) & 1) for i in range(n)]
    return sum(1 << b for b in range(n.bit_length())
               if any(ends[i] for i in range(n) if (i + 1) >> b & 1))


class _Head:
    """A TLP beat worked out before it is queued (the RTL's ``_Beat``)."""
    __slots__ = ("data", "keep", "last", "first", "n_in", "tlp_dws", "need", "oversize",
                 "n_first", "keep_first", "prefix")


#: What the packer shows in a cycle: ``tlp_ready``, ``word`` (the body word
#: offered, or None), ``desc`` (the ``(count, length, tc)`` offered, or None),
#: and the counters ``oversize_drops`` and ``length_errors``.
PackerCycle = namedtuple("PackerCycle", "tlp_ready word desc oversize_drops length_errors")


class CyclePacker:
    """The :class:`~tlpoe.rtl.framing.packer.TlpPacker` at ``width`` bits:
    the input register, the five-entry queue of worked-out beats, the
    control stage (the packing position, the frame's TLP count, length and
    age, the TLP being packed), the data stage a cycle behind it (the
    two-word packing register), the four-entry output queue and its
    register slice.

    :meth:`step` inputs: ``beat`` (the TLP beat offered: ``(data, keep,
    last, stamp)``, or None), ``words_ready``, ``desc_ready`` and
    ``flush_timeout`` (the run-time input).
    """

    IN_DEPTH, OUT_DEPTH = 5, 4

    def __init__(self, width, *, mtu=1500, max_tlps=None, flush_timeout=64, transport="eth"):
        if width not in WIDTHS:
            raise ValueError(f"width must be one of {WIDTHS}, not {width!r}")
        if mtu not in wire.MTUS:
            raise ValueError(f"mtu must be one of {wire.MTUS}, not {mtu!r}")
        if max_tlps is not None and not 1 <= max_tlps <= 0xFFFF:
            raise ValueError(f"max_tlps must be in 1..65535, not {max_tlps!r}")
        if not isinstance(flush_timeout, int) or not 1 <= flush_timeout <= 0xFFFF:
            raise ValueError(f"flush_timeout must be 1..65535 cycles, not {flush_timeout!r}")
        self.width, self.mtu = width, mtu
        self.max_tlps = max_tlps or 0xFFFF
        self.flush_timeout = flush_timeout
        self.capacity = tp.body_capacity(mtu, transport)
        D = width // 32
        self.p0 = (tp.area_offset(transport) // 4) % D
        self._pos_mask = (1 << (2 * D).bit_length()) - 1
        self.reset()

    def reset(self):
        """The state after ``rst``; ``flush_timeout`` keeps its value."""
        self.oversize_drops = self.length_errors = 0
        # input register and queue
        self.in_valid, self.in_beat, self.in_first = False, None, False
        self.first = True
        self.queue = SyncFifoBuffered(self.IN_DEPTH)
        self.queue.r_data = self._zero_head()
        # control
        self.pos = self.p0
        self.count = self.length = 0
        self.room_bytes = self.capacity
        self.has_tlps = self.at_max = self.nearly_full = self.timed_out = False
        self.age = 0
        self.in_tlp = self.discard = self.pad = self.desc_next = False
        self.rem = 0
        self.held = (0, 0, 0)
        self.frame_tc = 0
        # data
        self.op = dict(word=False, shift=False, clear=False, desc=False, append=False,
                       new=0, at=0)
        self.acc = 0
        # output
        self.out = SyncFifo(self.OUT_DEPTH)
        self.slice = SkidBuffer()

    def _zero_head(self):
        h = _Head()
        for name in _Head.__slots__:
            setattr(h, name, 0)
        return h

    def _work_out(self, beat, first):
        """The queue entry for ``beat`` (``(data, keep, last, stamp)``)."""
        D = self.width // 32
        data, keep, last, stamp = beat
        h = _Head()
        h.data, h.keep, h.last, h.first = data, keep, int(last), int(first)
        h.n_in = _count_contiguous(keep, D)
        tlp_dws = tlp_dws_from_header(data)
        dws_and_prefix = tlp_dws + 1
        h.tlp_dws, h.need = tlp_dws, (4 * dws_and_prefix) & 0xFFFF
        h.oversize = 4 * dws_and_prefix > self.capacity
        h.n_first = 0 if h.oversize else (h.n_in + 1 if tlp_dws >= h.n_in else dws_and_prefix)
        h.keep_first = 0 if h.oversize else keep & sum(1 << i for i in range(D) if tlp_dws > i)
        h.prefix = 0 if h.oversize else _pack(wire.TLP_PREFIX, tlp_length=4 * tlp_dws,
                                              order_stamp=stamp)
        return h

    def outputs(self):
        """What the packer shows this cycle (all from registers)."""
        s, W = self.slice, self.width
        word = desc = None
        if s.o_valid:
            if s.o_payload >> W & 1:
                desc = (s.o_payload & 0xFFFF, s.o_payload >> 16 & 0xFFFF, s.o_payload >> 32 & 7)
            else:
                word = s.o_payload & ((1 << W) - 1)
        return PackerCycle(self.queue.level <= self.IN_DEPTH - 3, word, desc,
                           self.oversize_drops, self.length_errors)

    def step(self, *, beat=None, words_ready=False, desc_ready=False):
        """One clock cycle; returns the :class:`PackerCycle` shown before the edge."""
        shown = self.outputs()
        W, D = self.width, self.width // 32
        head, head_valid = self.queue.r_data, self.queue.r_rdy
        pos = self.pos

        # control
        credit = self.out.level <= self.OUT_DEPTH - 2
        may_emit = credit and not self.desc_next
        emit = pos >= D and may_emit
        first = head.first
        fits = head.need <= self.room_bytes
        close_cond = not self.in_tlp and not self.pad and self.has_tlps and (
            self.timed_out or self.at_max or self.nearly_full or
            (head_valid and first and not head.oversize and not fits))
        closing = close_cond and pos < D and may_emit
        big = first and head.n_first == D + 1
        room = pos < D or (may_emit and pos < 2 * D) or (
            (pos == D or (may_emit and pos == 2 * D)) and not big)
        accept = head_valid and not self.pad and room and not close_cond
        rem = self.rem
        if first:
            take = 0 if head.oversize else head.n_first - 1
            kept = head.keep_first
        elif self.discard:
            take, kept = 0, 0
        else:
            take = head.n_in if rem >= head.n_in else rem
            kept = head.keep & sum(1 << i for i in range(D) if rem > i)
        pad_take = min(rem, D)
        lanes = 0
        for i in range(D):
            if kept >> i & 1:
                lanes |= head.data & (0xFFFFFFFF << 32 * i)
        if self.pad:
            new, n_new = 0, pad_take
        elif first:
            new, n_new = head.prefix | lanes << 32, head.n_first
        else:
            new, n_new = lanes, take
        append = accept or (self.pad and room)
        pos_kept = pos - D if emit else pos
        if closing:
            next_pos = self.p0
        elif append:
            next_pos = (pos_kept + n_new) & self._pos_mask
        else:
            next_pos = pos_kept

        # data: the packing register, and what it writes to the output queue
        op = self.op
        desc_issue = self.desc_next and credit
        w_en = op["word"] or op["desc"]
        w_data = (self.held[0] | self.held[1] << 16 | self.held[2] << 32 | 1 << W) \
            if op["desc"] else \
            self.acc & ((1 << W) - 1)
        kept_acc = 0 if op["clear"] else (self.acc >> W if op["shift"] else self.acc)
        if op["append"]:
            self.acc = kept_acc | ((op["new"] << (32 * op["at"])) & ((1 << 2 * W) - 1))
        else:
            self.acc = kept_acc
        self.op = dict(word=emit or (closing and pos != 0), shift=emit, clear=closing,
                       desc=(closing and pos == 0) or desc_issue, append=append,
                       new=new, at=pos_kept)
        if closing:
            self.held, self.desc_next = (self.count, self.length, self.frame_tc), pos != 0
        elif desc_issue:
            self.desc_next = False

        # the output queue and its register slice
        s = self.slice
        o_ready = desc_ready if s.o_payload >> W & 1 else words_ready
        i_valid, i_payload, i_ready = self.out.r_rdy, self.out.r_data, s.i_ready
        s.clock(i_valid, i_payload, o_ready)
        self.out.clock(w_en, w_data, i_ready)

        # TLP bookkeeping
        if closing:
            self.count = self.length = 0
            self.room_bytes = self.capacity
            self.has_tlps = self.at_max = self.nearly_full = self.timed_out = False
            self.age = 0
        elif self.has_tlps:
            self.timed_out = self.age + 1 >= self.flush_timeout
            if self.age != 0xFFFF:
                self.age += 1
        if self.pad and room:
            self.rem = rem - pad_take
            if rem == pad_take:
                self.pad = False
        rem_now = head.tlp_dws if first else rem
        if accept:
            self.rem = (rem_now - take) & 0x7FF
            whole = not self.discard and not (first and head.oversize)
            if first:
                if head.oversize:
                    self.discard = not head.last
                    self.oversize_drops = (self.oversize_drops + 1) & 0xFFFFFFFF
                else:
                    if not self.has_tlps:               # the frame's first TLP: its TC
                        self.frame_tc = head.data >> 12 & 7
                    self.at_max = self.count == self.max_tlps - 1
                    self.nearly_full = self.length + head.need > \
                        self.capacity - wire.PREFIX_LEN - wire.MIN_TLP
                    self.count = (self.count + 1) & 0xFFFF
                    self.length = (self.length + head.need) & 0xFFFF
                    self.room_bytes = (self.room_bytes - head.need) & 0xFFFF
                    self.has_tlps = True
            if head.last:
                self.in_tlp = self.discard = False
                if whole and rem_now != take:           # ended early: pad
                    self.pad = True
                    self.length_errors = (self.length_errors + 1) & 0xFFFFFFFF
                elif whole and head.n_in > take:        # too long within this beat: cut
                    self.length_errors = (self.length_errors + 1) & 0xFFFFFFFF
            else:
                self.in_tlp = True
                if whole and rem_now == take:           # declared size reached: drop the rest
                    self.discard = True
                    self.length_errors = (self.length_errors + 1) & 0xFFFFFFFF
        self.pos = next_pos

        # the input register and the queue behind it
        written = self._work_out(self.in_beat, self.in_first) if self.in_valid else None
        self.queue.clock(written is not None, written, accept)
        taken = beat is not None and shown.tlp_ready
        self.in_valid = taken
        if taken:
            self.in_beat, self.in_first = beat, self.first
            self.first = bool(beat[2])
        return shown
