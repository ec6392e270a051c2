-- tlpoe.lua: Wireshark dissector for tlpoe frames (PCIe TLPs over Ethernet).
--
-- A frame (docs/wire-format.md) is Ethernet II | bridge header (26 bytes) |
-- TLP area: (prefix, TLP)* | CRC-32 (4 bytes, little-endian). This dissector
-- shows every bridge-header field, each TLP behind its prefix with its PCIe
-- header decoded as models/tlp.py decodes it, checks the end-to-end CRC, and
-- names the drop reason a tlpoe receiver would give the frame (the checks and
-- their order of models/frame.py).
--
--   tshark -X lua_script:sim/wireshark/tlpoe.lua -r capture.pcap
--
-- or copy this file into Wireshark's personal Lua plugins folder
-- (docs/wireshark.md). Preferences: tlpoe.ethertype (default 0x88B5, as the
-- bridges' `ethertype` parameter), tlpoe.mtu (0: the OVERSIZE check is off).
--
-- Every offset, width, name and type code is in the generated tables `W`
-- below (`python -m tlpoe.sim.wireshark --write` writes them from the Python
-- models); the code after them only reads the tables.

-- BEGIN GENERATED TABLES
-- Written by `python -m tlpoe.sim.wireshark --write` from models/wire.py, models/frame.py and
-- models/tlp.py; do not edit by hand.
local W = {
    ETHERTYPE = 0x88B5,
    UDP_PORT = 34997,      -- the udp transport's (models/transport.py)
    VERSION = 1,
    ETH_LEN = 14,
    BRIDGE_LEN = 26,
    HEADER_LEN = 40,
    PREFIX_LEN = 4,
    CRC_LEN = 4,
    MIN_TLP = 12,
    BRIDGE_HEADER = {
      { name = "version", offset = 0, size = 1, bits = 4, shift = 4, whole = false, doc = "format version, 1" },
      { name = "frame_type", offset = 0, size = 1, bits = 4, shift = 0, whole = false, doc = "DATA 0, ACK 1, NAK 2, CREDIT 3, KEEPALIVE 4" },
      { name = "flags", offset = 1, size = 1, bits = 8, shift = 0, whole = true, doc = "bit 0: `ack` valid; bit 1: credit fields valid; bit 2: ECN echo (a CNP); others 0" },
      { name = "channel", offset = 2, size = 2, bits = 16, shift = 0, whole = true, doc = "link / channel id: which bridge pair and which link" },
      { name = "seq", offset = 4, size = 4, bits = 32, shift = 0, whole = true, doc = "sequence number of this frame (DATA); the link layer uses its low `seq_bits` bits and wraps" },
      { name = "ack", offset = 8, size = 4, bits = 32, shift = 0, whole = true, doc = "cumulative ACK: every frame up to this sequence was received" },
      { name = "tlp_count", offset = 12, size = 2, bits = 16, shift = 0, whole = true, doc = "TLPs in the TLP area (0 for non-DATA frames)" },
      { name = "payload_length", offset = 14, size = 2, bits = 16, shift = 0, whole = true, doc = "bytes in the TLP area (prefixes and TLPs)" },
      { name = "credit_p_data", offset = 16, size = 2, bits = 16, shift = 0, whole = true, doc = "posted data credits (16-byte units), cumulative" },
      { name = "credit_np_data", offset = 18, size = 2, bits = 16, shift = 0, whole = true, doc = "non-posted data credits, cumulative" },
      { name = "credit_cpl_data", offset = 20, size = 2, bits = 16, shift = 0, whole = true, doc = "completion data credits, cumulative" },
      { name = "credit_p_hdr", offset = 22, size = 1, bits = 8, shift = 0, whole = true, doc = "posted header credits, cumulative" },
      { name = "credit_np_hdr", offset = 23, size = 1, bits = 8, shift = 0, whole = true, doc = "non-posted header credits, cumulative" },
      { name = "credit_cpl_hdr", offset = 24, size = 1, bits = 8, shift = 0, whole = true, doc = "completion header credits, cumulative" },
      { name = "reserved", offset = 25, size = 1, bits = 8, shift = 0, whole = true, doc = "0 on send, ignored on receive" },
    },
    TLP_PREFIX = {
      { name = "tlp_length", offset = 0, size = 2, bits = 16, shift = 0, whole = true, doc = "bytes of the TLP that follows (multiple of 4, 12 or more)" },
      { name = "order_stamp", offset = 2, size = 2, bits = 16, shift = 0, whole = true, doc = "posted TLPs that entered the sending bridge before this one, modulo 2**16 (read by the receiver's ordering checker; 0 from a sender that does not stamp)" },
    },
    FLAGS = {
      { name = "ack_valid", mask = 0x01 },
      { name = "credits_valid", mask = 0x02 },
      { name = "ecn_echo", mask = 0x04 },
    },
    FRAME_TYPES = {
      [0] = "DATA",
      [1] = "ACK",
      [2] = "NAK",
      [3] = "CREDIT",
      [4] = "KEEPALIVE",
    },
    -- a KEEPALIVE's link-state fields, in the credit fields' bytes
    KEEPALIVE_OFFSET = 16,
    KEEPALIVE_FIELDS = {
      { name = "incarnation", offset = 0, size = 4, bits = 32, shift = 0, whole = true, doc = "the sender's incarnation: changes whenever it loses its link state" },
      { name = "peer_incarnation", offset = 4, size = 4, bits = 32, shift = 0, whole = true, doc = "the incarnation the sender holds for us (valid with `peer_known`)" },
      { name = "reserved_ka", offset = 8, size = 1, bits = 5, shift = 3, whole = false, doc = "0 on send, ignored on receive" },
      { name = "peer_known", offset = 8, size = 1, bits = 1, shift = 2, whole = false, doc = "`peer_incarnation` is valid" },
      { name = "state", offset = 8, size = 1, bits = 2, shift = 0, whole = false, doc = "the sender's link state: DOWN 0, INIT 1, UP 2 (3 reserved)" },
    },
    LINK_STATES = {
      [0] = "DOWN",
      [1] = "INIT",
      [2] = "UP",
    },
    DROP_REASONS = {
      [0] = "TRUNCATED",
      [1] = "ETHERTYPE",
      [2] = "VERSION",
      [3] = "CRC",
      [4] = "PREFIX_OVERRUN",
      [5] = "COUNT_MISMATCH",
      [6] = "EMPTY_DATA",
      [7] = "OVERSIZE",
      [8] = "IP_HEADER",
      [9] = "NOT_OURS",
    },
    -- TLP header layouts (models.tlp.HEADER_LAYOUTS)
    TLP_HEADERS = {
      mem3 = {
        { name = "fmt", offset = 0, size = 1, bits = 3, shift = 5, whole = false, doc = "Fmt[2:0]: header size, data present" },
        { name = "type", offset = 0, size = 1, bits = 5, shift = 0, whole = false, doc = "Type[4:0]" },
        { name = "t9", offset = 1, size = 1, bits = 1, shift = 7, whole = false, doc = "Tag[9] (PCIe 4.0+ 10-bit tags)" },
        { name = "tc", offset = 1, size = 1, bits = 3, shift = 4, whole = false, doc = "Traffic Class" },
        { name = "t8", offset = 1, size = 1, bits = 1, shift = 3, whole = false, doc = "Tag[8] (PCIe 4.0+ 10-bit tags)" },
        { name = "attr2", offset = 1, size = 1, bits = 1, shift = 2, whole = false, doc = "Attr[2]: ID-Based Ordering" },
        { name = "ln", offset = 1, size = 1, bits = 1, shift = 1, whole = false, doc = "Lightweight Notification (deprecated)" },
        { name = "th", offset = 1, size = 1, bits = 1, shift = 0, whole = false, doc = "TLP Processing Hints present" },
        { name = "td", offset = 2, size = 1, bits = 1, shift = 7, whole = false, doc = "TLP Digest (ECRC) present" },
        { name = "ep", offset = 2, size = 1, bits = 1, shift = 6, whole = false, doc = "Poisoned" },
        { name = "attr", offset = 2, size = 1, bits = 2, shift = 4, whole = false, doc = "Attr[1:0]: Relaxed Ordering, No Snoop" },
        { name = "at", offset = 2, size = 1, bits = 2, shift = 2, whole = false, doc = "Address Type" },
        { name = "length", offset = 2, size = 2, bits = 10, shift = 0, whole = false, doc = "Length in DW (0 = 1024)" },
        { name = "requester_id", offset = 4, size = 2, bits = 16, shift = 0, whole = true, doc = "Requester ID" },
        { name = "tag", offset = 6, size = 1, bits = 8, shift = 0, whole = true, doc = "Tag[7:0]" },
        { name = "last_be", offset = 7, size = 1, bits = 4, shift = 4, whole = false, doc = "Last DW Byte Enables" },
        { name = "first_be", offset = 7, size = 1, bits = 4, shift = 0, whole = false, doc = "First DW Byte Enables" },
        { name = "address", offset = 8, size = 4, bits = 30, shift = 2, whole = false, doc = "Address[31:2]" },
        { name = "ph", offset = 8, size = 4, bits = 2, shift = 0, whole = false, doc = "Processing Hint" },
      },
      mem4 = {
        { name = "fmt", offset = 0, size = 1, bits = 3, shift = 5, whole = false, doc = "Fmt[2:0]: header size, data present" },
        { name = "type", offset = 0, size = 1, bits = 5, shift = 0, whole = false, doc = "Type[4:0]" },
        { name = "t9", offset = 1, size = 1, bits = 1, shift = 7, whole = false, doc = "Tag[9] (PCIe 4.0+ 10-bit tags)" },
        { name = "tc", offset = 1, size = 1, bits = 3, shift = 4, whole = false, doc = "Traffic Class" },
        { name = "t8", offset = 1, size = 1, bits = 1, shift = 3, whole = false, doc = "Tag[8] (PCIe 4.0+ 10-bit tags)" },
        { name = "attr2", offset = 1, size = 1, bits = 1, shift = 2, whole = false, doc = "Attr[2]: ID-Based Ordering" },
        { name = "ln", offset = 1, size = 1, bits = 1, shift = 1, whole = false, doc = "Lightweight Notification (deprecated)" },
        { name = "th", offset = 1, size = 1, bits = 1, shift = 0, whole = false, doc = "TLP Processing Hints present" },
        { name = "td", offset = 2, size = 1, bits = 1, shift = 7, whole = false, doc = "TLP Digest (ECRC) present" },
        { name = "ep", offset = 2, size = 1, bits = 1, shift = 6, whole = false, doc = "Poisoned" },
        { name = "attr", offset = 2, size = 1, bits = 2, shift = 4, whole = false, doc = "Attr[1:0]: Relaxed Ordering, No Snoop" },
        { name = "at", offset = 2, size = 1, bits = 2, shift = 2, whole = false, doc = "Address Type" },
        { name = "length", offset = 2, size = 2, bits = 10, shift = 0, whole = false, doc = "Length in DW (0 = 1024)" },
        { name = "requester_id", offset = 4, size = 2, bits = 16, shift = 0, whole = true, doc = "Requester ID" },
        { name = "tag", offset = 6, size = 1, bits = 8, shift = 0, whole = true, doc = "Tag[7:0]" },
        { name = "last_be", offset = 7, size = 1, bits = 4, shift = 4, whole = false, doc = "Last DW Byte Enables" },
        { name = "first_be", offset = 7, size = 1, bits = 4, shift = 0, whole = false, doc = "First DW Byte Enables" },
        { name = "address", offset = 8, size = 8, bits = 62, shift = 2, whole = false, doc = "Address[63:2]" },
        { name = "ph", offset = 8, size = 8, bits = 2, shift = 0, whole = false, doc = "Processing Hint" },
      },
      cfg = {
        { name = "fmt", offset = 0, size = 1, bits = 3, shift = 5, whole = false, doc = "Fmt[2:0]: header size, data present" },
        { name = "type", offset = 0, size = 1, bits = 5, shift = 0, whole = false, doc = "Type[4:0]" },
        { name = "t9", offset = 1, size = 1, bits = 1, shift = 7, whole = false, doc = "Tag[9] (PCIe 4.0+ 10-bit tags)" },
        { name = "tc", offset = 1, size = 1, bits = 3, shift = 4, whole = false, doc = "Traffic Class" },
        { name = "t8", offset = 1, size = 1, bits = 1, shift = 3, whole = false, doc = "Tag[8] (PCIe 4.0+ 10-bit tags)" },
        { name = "attr2", offset = 1, size = 1, bits = 1, shift = 2, whole = false, doc = "Attr[2]: ID-Based Ordering" },
        { name = "ln", offset = 1, size = 1, bits = 1, shift = 1, whole = false, doc = "Lightweight Notification (deprecated)" },
        { name = "th", offset = 1, size = 1, bits = 1, shift = 0, whole = false, doc = "TLP Processing Hints present" },
        { name = "td", offset = 2, size = 1, bits = 1, shift = 7, whole = false, doc = "TLP Digest (ECRC) present" },
        { name = "ep", offset = 2, size = 1, bits = 1, shift = 6, whole = false, doc = "Poisoned" },
        { name = "attr", offset = 2, size = 1, bits = 2, shift = 4, whole = false, doc = "Attr[1:0]: Relaxed Ordering, No Snoop" },
        { name = "at", offset = 2, size = 1, bits = 2, shift = 2, whole = false, doc = "Address Type" },
        { name = "length", offset = 2, size = 2, bits = 10, shift = 0, whole = false, doc = "Length in DW (0 = 1024)" },
        { name = "requester_id", offset = 4, size = 2, bits = 16, shift = 0, whole = true, doc = "Requester ID" },
        { name = "tag", offset = 6, size = 1, bits = 8, shift = 0, whole = true, doc = "Tag[7:0]" },
        { name = "last_be", offset = 7, size = 1, bits = 4, shift = 4, whole = false, doc = "Last DW Byte Enables" },
        { name = "first_be", offset = 7, size = 1, bits = 4, shift = 0, whole = false, doc = "First DW Byte Enables" },
        { name = "dest_id", offset = 8, size = 2, bits = 16, shift = 0, whole = true, doc = "Bus, Device, Function Number of the target" },
        { name = "reserved", offset = 10, size = 1, bits = 4, shift = 4, whole = false, doc = "reserved" },
        { name = "register", offset = 10, size = 2, bits = 10, shift = 2, whole = false, doc = "Extended Register Number, Register Number (DW index)" },
        { name = "reserved_lo", offset = 11, size = 1, bits = 2, shift = 0, whole = false, doc = "reserved" },
      },
      msg = {
        { name = "fmt", offset = 0, size = 1, bits = 3, shift = 5, whole = false, doc = "Fmt[2:0]: header size, data present" },
        { name = "type", offset = 0, size = 1, bits = 5, shift = 0, whole = false, doc = "Type[4:0]" },
        { name = "t9", offset = 1, size = 1, bits = 1, shift = 7, whole = false, doc = "Tag[9] (PCIe 4.0+ 10-bit tags)" },
        { name = "tc", offset = 1, size = 1, bits = 3, shift = 4, whole = false, doc = "Traffic Class" },
        { name = "t8", offset = 1, size = 1, bits = 1, shift = 3, whole = false, doc = "Tag[8] (PCIe 4.0+ 10-bit tags)" },
        { name = "attr2", offset = 1, size = 1, bits = 1, shift = 2, whole = false, doc = "Attr[2]: ID-Based Ordering" },
        { name = "ln", offset = 1, size = 1, bits = 1, shift = 1, whole = false, doc = "Lightweight Notification (deprecated)" },
        { name = "th", offset = 1, size = 1, bits = 1, shift = 0, whole = false, doc = "TLP Processing Hints present" },
        { name = "td", offset = 2, size = 1, bits = 1, shift = 7, whole = false, doc = "TLP Digest (ECRC) present" },
        { name = "ep", offset = 2, size = 1, bits = 1, shift = 6, whole = false, doc = "Poisoned" },
        { name = "attr", offset = 2, size = 1, bits = 2, shift = 4, whole = false, doc = "Attr[1:0]: Relaxed Ordering, No Snoop" },
        { name = "at", offset = 2, size = 1, bits = 2, shift = 2, whole = false, doc = "Address Type" },
        { name = "length", offset = 2, size = 2, bits = 10, shift = 0, whole = false, doc = "Length in DW (0 = 1024)" },
        { name = "requester_id", offset = 4, size = 2, bits = 16, shift = 0, whole = true, doc = "Requester ID" },
        { name = "tag", offset = 6, size = 1, bits = 8, shift = 0, whole = true, doc = "Tag[7:0]" },
        { name = "message_code", offset = 7, size = 1, bits = 8, shift = 0, whole = true, doc = "Message Code" },
        { name = "address", offset = 8, size = 8, bits = 64, shift = 0, whole = true, doc = "bytes 8-15: address or message specific" },
      },
      cpl = {
        { name = "fmt", offset = 0, size = 1, bits = 3, shift = 5, whole = false, doc = "Fmt[2:0]: header size, data present" },
        { name = "type", offset = 0, size = 1, bits = 5, shift = 0, whole = false, doc = "Type[4:0]" },
        { name = "t9", offset = 1, size = 1, bits = 1, shift = 7, whole = false, doc = "Tag[9] (PCIe 4.0+ 10-bit tags)" },
        { name = "tc", offset = 1, size = 1, bits = 3, shift = 4, whole = false, doc = "Traffic Class" },
        { name = "t8", offset = 1, size = 1, bits = 1, shift = 3, whole = false, doc = "Tag[8] (PCIe 4.0+ 10-bit tags)" },
        { name = "attr2", offset = 1, size = 1, bits = 1, shift = 2, whole = false, doc = "Attr[2]: ID-Based Ordering" },
        { name = "ln", offset = 1, size = 1, bits = 1, shift = 1, whole = false, doc = "Lightweight Notification (deprecated)" },
        { name = "th", offset = 1, size = 1, bits = 1, shift = 0, whole = false, doc = "TLP Processing Hints present" },
        { name = "td", offset = 2, size = 1, bits = 1, shift = 7, whole = false, doc = "TLP Digest (ECRC) present" },
        { name = "ep", offset = 2, size = 1, bits = 1, shift = 6, whole = false, doc = "Poisoned" },
        { name = "attr", offset = 2, size = 1, bits = 2, shift = 4, whole = false, doc = "Attr[1:0]: Relaxed Ordering, No Snoop" },
        { name = "at", offset = 2, size = 1, bits = 2, shift = 2, whole = false, doc = "Address Type" },
        { name = "length", offset = 2, size = 2, bits = 10, shift = 0, whole = false, doc = "Length in DW (0 = 1024)" },
        { name = "completer_id", offset = 4, size = 2, bits = 16, shift = 0, whole = true, doc = "Completer ID" },
        { name = "status", offset = 6, size = 1, bits = 3, shift = 5, whole = false, doc = "Completion Status" },
        { name = "bcm", offset = 6, size = 1, bits = 1, shift = 4, whole = false, doc = "Byte Count Modified" },
        { name = "byte_count", offset = 6, size = 2, bits = 12, shift = 0, whole = false, doc = "Byte Count (0 = 4096)" },
        { name = "requester_id", offset = 8, size = 2, bits = 16, shift = 0, whole = true, doc = "Requester ID" },
        { name = "tag", offset = 10, size = 1, bits = 8, shift = 0, whole = true, doc = "Tag[7:0]" },
        { name = "reserved", offset = 11, size = 1, bits = 1, shift = 7, whole = false, doc = "reserved" },
        { name = "lower_address", offset = 11, size = 1, bits = 7, shift = 0, whole = false, doc = "Lower Address[6:0]" },
      }
    },
    TLP_FMT = { name = "fmt", offset = 0, size = 1, bits = 3, shift = 5, whole = false, doc = "Fmt[2:0]: header size, data present" },
    TLP_TYPE_CODE = { name = "type", offset = 0, size = 1, bits = 5, shift = 0, whole = false, doc = "Type[4:0]" },
    -- Fmt * 2^bits(Type) + Type -> type; a pair not listed is reserved
    TLP_TYPES = {
      [0] = { name = "MRd", layout = "mem3", header = 12, data = false, raw_length = false, message = false },
      [1] = { name = "MRdLk", layout = "mem3", header = 12, data = false, raw_length = false, message = false },
      [2] = { name = "IORd", layout = "mem3", header = 12, data = false, raw_length = false, message = false },
      [4] = { name = "CfgRd0", layout = "cfg", header = 12, data = false, raw_length = false, message = false },
      [5] = { name = "CfgRd1", layout = "cfg", header = 12, data = false, raw_length = false, message = false },
      [10] = { name = "Cpl", layout = "cpl", header = 12, data = false, raw_length = true, message = false },
      [11] = { name = "CplLk", layout = "cpl", header = 12, data = false, raw_length = true, message = false },
      [32] = { name = "MRd", layout = "mem4", header = 16, data = false, raw_length = false, message = false },
      [33] = { name = "MRdLk", layout = "mem4", header = 16, data = false, raw_length = false, message = false },
      [48] = { name = "Msg", layout = "msg", header = 16, data = false, raw_length = true, message = true },
      [49] = { name = "Msg", layout = "msg", header = 16, data = false, raw_length = true, message = true },
      [50] = { name = "Msg", layout = "msg", header = 16, data = false, raw_length = true, message = true },
      [51] = { name = "Msg", layout = "msg", header = 16, data = false, raw_length = true, message = true },
      [52] = { name = "Msg", layout = "msg", header = 16, data = false, raw_length = true, message = true },
      [53] = { name = "Msg", layout = "msg", header = 16, data = false, raw_length = true, message = true },
      [64] = { name = "MWr", layout = "mem3", header = 12, data = true, raw_length = false, message = false },
      [66] = { name = "IOWr", layout = "mem3", header = 12, data = true, raw_length = false, message = false },
      [68] = { name = "CfgWr0", layout = "cfg", header = 12, data = true, raw_length = false, message = false },
      [69] = { name = "CfgWr1", layout = "cfg", header = 12, data = true, raw_length = false, message = false },
      [74] = { name = "CplD", layout = "cpl", header = 12, data = true, raw_length = false, message = false },
      [75] = { name = "CplDLk", layout = "cpl", header = 12, data = true, raw_length = false, message = false },
      [76] = { name = "FetchAdd", layout = "mem3", header = 12, data = true, raw_length = false, message = false },
      [77] = { name = "Swap", layout = "mem3", header = 12, data = true, raw_length = false, message = false },
      [78] = { name = "CAS", layout = "mem3", header = 12, data = true, raw_length = false, message = false },
      [96] = { name = "MWr", layout = "mem4", header = 16, data = true, raw_length = false, message = false },
      [108] = { name = "FetchAdd", layout = "mem4", header = 16, data = true, raw_length = false, message = false },
      [109] = { name = "Swap", layout = "mem4", header = 16, data = true, raw_length = false, message = false },
      [110] = { name = "CAS", layout = "mem4", header = 16, data = true, raw_length = false, message = false },
      [112] = { name = "MsgD", layout = "msg", header = 16, data = true, raw_length = false, message = true },
      [113] = { name = "MsgD", layout = "msg", header = 16, data = true, raw_length = false, message = true },
      [114] = { name = "MsgD", layout = "msg", header = 16, data = true, raw_length = false, message = true },
      [115] = { name = "MsgD", layout = "msg", header = 16, data = true, raw_length = false, message = true },
      [116] = { name = "MsgD", layout = "msg", header = 16, data = true, raw_length = false, message = true },
      [117] = { name = "MsgD", layout = "msg", header = 16, data = true, raw_length = false, message = true },
    },
    ATTR = {
      [1] = "NS",
      [2] = "RO",
      [4] = "IDO",
    },
    CPL_STATUS = {
      [0] = "SC",
      [1] = "UR",
      [2] = "CRS",
      [4] = "CA",
    },
    MSG_ROUTING = {
      [0] = "TO_ROOT_COMPLEX",
      [1] = "BY_ADDRESS",
      [2] = "BY_ID",
      [3] = "BROADCAST_FROM_ROOT_COMPLEX",
      [4] = "LOCAL",
      [5] = "GATHERED_TO_ROOT_COMPLEX",
    },
}
-- END GENERATED TABLES

-- Wireshark's BitOp library `bit` exists with every Lua it ships (5.1 to 5.4;
-- bit32 is gone from 5.4); its results are signed 32-bit numbers.
local band, bxor, rshift = bit.band, bit.bxor, bit.rshift
local TWO32 = 4294967296

local proto = Proto("tlpoe", "tlpoe: PCIe TLPs over Ethernet")

-- ------------------------------------------------------------------ helpers

local function by_name(names)
    local out = {}
    for value, name in pairs(names) do out[name] = value end
    return out
end

local FRAME_TYPE = by_name(W.FRAME_TYPES)

local function low_mask(bits)
    return math.floor(2 ^ bits) - 1
end

--- The value of layout field `f` at `base` of `tvb`, as models.wire.Field.get
--- reads it: a number, or a UInt64 for a field wider than 32 bits.
local function get(tvb, base, f)
    local range = tvb:range(base + f.offset, f.size)
    if f.size <= 4 then
        local word = range:uint()
        if f.whole then return word end
        return band(rshift(word, f.shift), low_mask(f.bits))
    end
    local word = range:uint64()
    if not f.whole then
        word = word:rshift(f.shift):band(UInt64.max():rshift(64 - f.bits))
    end
    if f.bits <= 32 then return word:tonumber() end
    return word
end

local function uint_field(abbrev, label, size, display, valuestring, mask, doc)
    local make = ({ ProtoField.uint8, ProtoField.uint16, ProtoField.uint24, ProtoField.uint32 })[size]
    if make == nil then
        return ProtoField.uint64(abbrev, label, display, valuestring, nil, doc)
    end
    return make(abbrev, label, display, valuestring, mask, doc)
end

local function pcie_id(value)
    return string.format("%02x:%02x.%x", rshift(value, 8), band(rshift(value, 3), 0x1F), band(value, 7))
end

local CRC_TABLE = {}
for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
        if band(c, 1) == 1 then c = bxor(0xEDB88320, rshift(c, 1)) else c = rshift(c, 1) end
    end
    CRC_TABLE[i] = c
end

--- CRC-32 of the IEEE 802.3 FCS (Python's zlib.crc32) of Lua string `s`,
--- as an unsigned number.
local function crc32(s)
    local crc = 0xFFFFFFFF
    for i = 1, #s do
        crc = bxor(CRC_TABLE[band(bxor(crc, s:byte(i)), 0xFF)], rshift(crc, 8))
    end
    return (bxor(crc, 0xFFFFFFFF) + TWO32) % TWO32
end

-- ------------------------------------------------------------------ fields

local F = {}

for _, f in ipairs(W.BRIDGE_HEADER) do
    local mask = nil
    if not f.whole then mask = low_mask(f.bits) * math.floor(2 ^ f.shift) end
    local valuestring = nil
    if f.name == "frame_type" then valuestring = W.FRAME_TYPES end
    local display = base.DEC
    if f.name == "flags" then display = base.HEX end
    F[f.name] = uint_field("tlpoe." .. f.name, f.name, f.size, display, valuestring, mask, f.doc)
end

local reserved_flags = 0xFF
for _, flag in ipairs(W.FLAGS) do
    F["flags." .. flag.name] = ProtoField.bool("tlpoe.flags." .. flag.name, flag.name, 8, nil, flag.mask)
    reserved_flags = reserved_flags - flag.mask
end
F["flags.reserved"] = ProtoField.uint8("tlpoe.flags.reserved", "reserved bits", base.HEX, nil, reserved_flags)

for _, f in ipairs(W.TLP_PREFIX) do
    F["prefix." .. f.name] = uint_field("tlpoe.prefix." .. f.name, f.name, f.size, base.DEC, nil, nil, f.doc)
end

for _, f in ipairs(W.KEEPALIVE_FIELDS) do
    local mask = nil
    if not f.whole then mask = low_mask(f.bits) * math.floor(2 ^ f.shift) end
    local valuestring = nil
    if f.name == "state" then valuestring = W.LINK_STATES end
    local display = base.DEC
    if f.name == "incarnation" or f.name == "peer_incarnation" then display = base.HEX end
    F["keepalive." .. f.name] = uint_field("tlpoe.keepalive." .. f.name, f.name, f.size, display,
        valuestring, mask, f.doc)
end
F.keepalive = ProtoField.none("tlpoe.keepalive", "link state (KEEPALIVE)")

F.crc = ProtoField.uint32("tlpoe.crc", "CRC", base.HEX, nil, nil, "end-to-end CRC-32 as received")
F["crc.computed"] = ProtoField.uint32("tlpoe.crc.computed", "CRC computed", base.HEX)
F["crc.status"] = ProtoField.uint8("tlpoe.crc.status", "CRC status", base.DEC, { [0] = "bad", [1] = "good" })
F.drop_reason = ProtoField.uint8("tlpoe.drop_reason", "drop reason", base.DEC, W.DROP_REASONS,
    nil, "why a tlpoe receiver drops this frame (models/frame.py CHECK_ORDER)")
F.tlp = ProtoField.none("tlpoe.tlp", "TLP")
F["tlp.index"] = ProtoField.uint16("tlpoe.tlp.index", "index in the frame")
F["tlp.type"] = ProtoField.string("tlpoe.tlp.type", "type", base.ASCII, "TLP type mnemonic, from Fmt and Type")
F["tlp.header_dws"] = ProtoField.uint8("tlpoe.tlp.header_dws", "header DWs")
F["tlp.routing"] = ProtoField.uint8("tlpoe.tlp.routing", "message routing r[2:0]", base.DEC, W.MSG_ROUTING)
for value, name in pairs(W.ATTR) do
    F["tlp.attr." .. name] = ProtoField.bool("tlpoe.tlp.attr." .. string.lower(name), name)
end
F["tlp.data"] = ProtoField.bytes("tlpoe.tlp.data", "data payload")
F["tlp.digest"] = ProtoField.bytes("tlpoe.tlp.digest", "digest (ECRC)")

-- The TLP header fields, by the names models/tlp.py gives them; a few are shown
-- decoded as Tlp.unpack decodes them (COMPOSED), Type[4:0] as `type_code` so
-- that `tlpoe.tlp.type` is the mnemonic.
local TLP_RENAME = { type = "type_code" }
local COMPOSED = {
    length = "Length in DW (Length field 0 = 1024, kept raw where the spec reserves it)",
    tag = "Tag, 10 bits: T9, T8, Tag[7:0]",
    attr = "Attr[2:0]: IDO (Attr[2]), RO, NS",
    address = "address: Address field with its low bits 0 (Msg/MsgD: bytes 8-15 raw)",
    byte_count = "Byte Count (field 0 = 4096)",
}
local COMPOSED_BITS = { length = 11, tag = 10, byte_count = 13, address = 64 }
local VALUE_NAMES = { status = W.CPL_STATUS }
local HEX = { fmt = true, type = true, requester_id = true, completer_id = true, dest_id = true,
              address = true, first_be = true, last_be = true, message_code = true, tag = true,
              attr = true, lower_address = true }
local tlp_field_bits, tlp_field_doc = {}, {}
for _, layout in pairs(W.TLP_HEADERS) do
    for _, f in ipairs(layout) do
        tlp_field_bits[f.name] = math.max(tlp_field_bits[f.name] or 0, f.bits)
        tlp_field_doc[f.name] = tlp_field_doc[f.name] or f.doc
    end
end
for field_name, bits in pairs(tlp_field_bits) do
    local name = TLP_RENAME[field_name] or field_name
    local display = base.DEC
    if HEX[field_name] then display = base.HEX end
    bits = math.max(bits, COMPOSED_BITS[field_name] or 0)
    local size = math.ceil(bits / 8)
    if size > 4 then size = 8 end
    F["tlp." .. name] = uint_field("tlpoe.tlp." .. name, name, size, display,
                                   VALUE_NAMES[field_name], nil,
                                   COMPOSED[field_name] or tlp_field_doc[field_name])
end

local fields = {}
for _, field in pairs(F) do table.insert(fields, field) end
proto.fields = fields

local E = {
    crc_bad = ProtoExpert.new("tlpoe.crc.bad", "end-to-end CRC mismatch",
                              expert.group.CHECKSUM, expert.severity.ERROR),
    dropped = ProtoExpert.new("tlpoe.dropped", "a tlpoe receiver drops this frame",
                              expert.group.PROTOCOL, expert.severity.ERROR),
    reserved_type = ProtoExpert.new("tlpoe.tlp.reserved_type", "reserved Fmt/Type",
                                    expert.group.MALFORMED, expert.severity.WARN),
    size_mismatch = ProtoExpert.new("tlpoe.tlp.size_mismatch",
                                    "TLP size differs from what its header calls for",
                                    expert.group.MALFORMED, expert.severity.WARN),
}
proto.experts = { E.crc_bad, E.dropped, E.reserved_type, E.size_mismatch }

proto.prefs.ethertype = Pref.string("EtherType", string.format("0x%04X", W.ETHERTYPE),
    "EtherType of tlpoe frames (the bridges' `ethertype` parameter)")
proto.prefs.mtu = Pref.uint("MTU", 0, "Ethernet payload size for the OVERSIZE check (0: off)")
proto.prefs.udp_port = Pref.uint("UDP port", W.UDP_PORT,
    "UDP port of tlpoe datagrams (the `udp` transport's destination port; 0: none)")

-- ------------------------------------------------------------------ one TLP

--- Header field values of `layout` at `t0`, composed as Tlp.unpack does.
local function tlp_values(tvb, t0, layout, t)
    local raw = {}
    for _, f in ipairs(layout) do raw[f.name] = get(tvb, t0, f) end
    local shown = {}
    for name, value in pairs(raw) do shown[name] = value end
    if not t.raw_length and raw.length == 0 then shown.length = 1024 end
    if raw.t8 ~= nil then shown.tag = raw.t9 * 512 + raw.t8 * 256 + raw.tag end
    if raw.attr2 ~= nil then shown.attr = raw.attr2 * 4 + raw.attr end
    if raw.byte_count == 0 then shown.byte_count = 4096 end
    for _, f in ipairs(layout) do
        if f.name == "address" then
            local value = raw.address
            if type(value) == "number" then value = UInt64.new(value) end
            shown.address = value:lshift(f.shift)
        end
    end
    return raw, shown
end

local function tlp_summary(t, v, header)
    local parts = { t.name .. ((header == 16 and t.layout == "mem4") and "64" or ""), "len " .. v.length }
    if v.completer_id ~= nil then
        table.insert(parts, "cpl " .. pcie_id(v.completer_id))
    end
    table.insert(parts, "req " .. pcie_id(v.requester_id))
    table.insert(parts, string.format("tag 0x%02x", v.tag))
    if v.status ~= nil then
        table.insert(parts, "status " .. (W.CPL_STATUS[v.status] or v.status))
        table.insert(parts, "bc " .. v.byte_count)
        table.insert(parts, string.format("la 0x%02x", v.lower_address))
    end
    if v.address ~= nil and not t.message then
        table.insert(parts, "addr 0x" .. v.address:tohex():gsub("^0+(.)", "%1"))
    end
    if v.dest_id ~= nil then
        table.insert(parts, string.format("dest %s reg 0x%03x", pcie_id(v.dest_id), 4 * v.register))
    end
    if v.message_code ~= nil then
        table.insert(parts, string.format("code 0x%02x", v.message_code))
    end
    return table.concat(parts, " ")
end

--- Decode the TLP of `size` bytes at `t0` into `item`; returns its type name.
local function dissect_tlp(tvb, t0, size, item)
    local fmt, code = get(tvb, t0, W.TLP_FMT), get(tvb, t0, W.TLP_TYPE_CODE)
    local fmt_type = tvb:range(t0 + W.TLP_FMT.offset, W.TLP_FMT.size)
    local t = W.TLP_TYPES[fmt * math.floor(2 ^ W.TLP_TYPE_CODE.bits) + code]
    if t == nil then
        item:add(F["tlp.type"], fmt_type, "reserved")
        item:add_proto_expert_info(E.reserved_type, string.format(
            "reserved Fmt/Type %d/0x%02x", fmt, code))
        return "reserved"
    end
    item:add(F["tlp.type"], fmt_type, t.name)
    item:add(F["tlp.header_dws"], fmt_type, math.floor(t.header / 4))
    if size < t.header then
        item:add_proto_expert_info(E.size_mismatch, string.format(
            "%s TLP of %d bytes is shorter than its %d-byte header", t.name, size, t.header))
        return t.name
    end
    local layout = W.TLP_HEADERS[t.layout]
    local raw, v = tlp_values(tvb, t0, layout, t)
    for _, f in ipairs(layout) do
        local name = TLP_RENAME[f.name] or f.name
        local sub = item:add(F["tlp." .. name], tvb:range(t0 + f.offset, f.size), v[f.name])
        if name == "requester_id" or name == "completer_id" or name == "dest_id" then
            sub:append_text(" (" .. pcie_id(v[f.name]) .. ")")
        elseif name == "attr" then
            for value = 1, 4 do
                local attr = W.ATTR[value]
                if attr ~= nil then sub:add(F["tlp.attr." .. attr], tvb:range(t0 + f.offset, f.size), band(v.attr, value) ~= 0) end
            end
        end
    end
    if t.message then      -- routing r[2:0] is Type[2:0], as Tlp.unpack reads it
        item:add(F["tlp.routing"], fmt_type, band(code, 7))
    end
    local payload = 0
    if t.data then payload = 4 * v.length end
    local digest = 4 * raw.td
    local expected = t.header + payload + digest
    if payload > 0 then
        local have = math.min(payload, size - t.header)
        if have > 0 then item:add(F["tlp.data"], tvb:range(t0 + t.header, have)) end
    end
    if digest > 0 and size >= expected then
        item:add(F["tlp.digest"], tvb:range(t0 + expected - 4, 4))
    end
    if size ~= expected then
        item:add_proto_expert_info(E.size_mismatch, string.format(
            "%s TLP of %d bytes, its header calls for %d", t.name, size, expected))
    end
    item:append_text(": " .. tlp_summary(t, v, t.header))
    return t.name
end

-- ------------------------------------------------------------------ the frame

--- The bridge header into `tree`; returns its field values.
local function dissect_header(tvb, tree)
    local h = {}
    for _, f in ipairs(W.BRIDGE_HEADER) do
        h[f.name] = get(tvb, 0, f)
        local item = tree:add(F[f.name], tvb:range(f.offset, f.size))
        if f.name == "flags" then
            for _, flag in ipairs(W.FLAGS) do
                item:add(F["flags." .. flag.name], tvb:range(f.offset, f.size))
            end
            item:add(F["flags.reserved"], tvb:range(f.offset, f.size))
        end
    end
    if h.frame_type == FRAME_TYPE.KEEPALIVE then
        -- the link-state fields, in the bytes the credit fields use
        local ka = tree:add(F.keepalive, tvb:range(W.KEEPALIVE_OFFSET, W.BRIDGE_LEN - W.KEEPALIVE_OFFSET))
        h.keepalive = {}
        for _, f in ipairs(W.KEEPALIVE_FIELDS) do
            h.keepalive[f.name] = get(tvb, W.KEEPALIVE_OFFSET, f)
            ka:add(F["keepalive." .. f.name], tvb:range(W.KEEPALIVE_OFFSET + f.offset, f.size))
        end
    end
    return h
end

--- Walk the TLP area (models.frame._walk_prefixes) as far as the captured bytes
--- go; returns the TLPs walked, whether a prefix overran, and their types.
local function walk_tlps(tvb, tree, length)
    local n = tvb:len()
    local area_end = W.BRIDGE_LEN + length
    local off, count, overrun, names = W.BRIDGE_LEN, 0, false, {}
    local tlp_length_field = nil
    for _, f in ipairs(W.TLP_PREFIX) do
        if f.name == "tlp_length" then tlp_length_field = f end
    end
    while off < area_end do
        if area_end - off < W.PREFIX_LEN then
            overrun = true
            break
        end
        if off + W.PREFIX_LEN > n then break end          -- the capture ends here
        local tlp_length = get(tvb, off, tlp_length_field)
        local fits = tlp_length % 4 == 0 and tlp_length >= W.MIN_TLP
                     and W.PREFIX_LEN + tlp_length <= area_end - off
        local span = math.min(W.PREFIX_LEN + tlp_length, n - off)
        local item = tree:add(F.tlp, tvb:range(off, span))
        item:set_text(string.format("TLP %d", count))
        item:add(F["tlp.index"], count):set_generated()
        for _, f in ipairs(W.TLP_PREFIX) do
            item:add(F["prefix." .. f.name], tvb:range(off + f.offset, f.size))
        end
        if not fits then
            overrun = true
            break
        end
        if off + W.PREFIX_LEN + tlp_length > n then break end
        table.insert(names, dissect_tlp(tvb, off + W.PREFIX_LEN, tlp_length, item))
        count = count + 1
        off = off + W.PREFIX_LEN + tlp_length
    end
    return count, overrun, names
end

function proto.dissector(tvb, pinfo, tree)
    local n = tvb:len()
    local frame_len = W.ETH_LEN + n
    pinfo.cols.protocol = "tlpoe"
    local root = tree:add(proto, tvb())
    local reason = nil
    local function drop(name)
        if reason == nil then reason = name end
    end
    -- the receive checks in models/frame.py CHECK_ORDER (ETHERTYPE: this frame
    -- came here by its EtherType)
    if frame_len < W.HEADER_LEN + W.CRC_LEN then drop("TRUNCATED") end
    if n < W.BRIDGE_LEN then
        root:add(F.drop_reason, by_name(W.DROP_REASONS).TRUNCATED):set_generated()
        root:add_proto_expert_info(E.dropped, "a tlpoe receiver drops this frame: TRUNCATED")
        pinfo.cols.info = "tlpoe frame cut short"
        return n
    end
    local h = dissect_header(tvb, root)
    if h.version ~= W.VERSION or W.FRAME_TYPES[h.frame_type] == nil then drop("VERSION") end
    local length = h.payload_length
    local area_end = W.BRIDGE_LEN + length
    local whole = n >= area_end + W.CRC_LEN
    if not whole then drop("TRUNCATED") end
    if length % 4 ~= 0 then drop("PREFIX_OVERRUN") end
    local crc_ok = nil
    if whole then
        local received = tvb:range(area_end, W.CRC_LEN):le_uint()
        local computed = crc32(tvb:raw(0, area_end))
        crc_ok = received == computed
        if not crc_ok then drop("CRC") end
        local item = root:add_le(F.crc, tvb:range(area_end, W.CRC_LEN))
        root:add(F["crc.computed"], computed):set_generated()
        root:add(F["crc.status"], crc_ok and 1 or 0):set_generated()
        if crc_ok then
            item:append_text(" [good]")
        else
            item:append_text(string.format(" [bad: computed 0x%08x]", computed))
            item:add_proto_expert_info(E.crc_bad, string.format(
                "end-to-end CRC 0x%08x received, 0x%08x computed", received, computed))
        end
    end
    local count, overrun, names = walk_tlps(tvb, root, length)
    if overrun then drop("PREFIX_OVERRUN") end
    local is_data = h.frame_type == FRAME_TYPE.DATA
    if h.tlp_count ~= count or (count > 0 and not is_data) then drop("COUNT_MISMATCH") end
    if is_data and count == 0 then drop("EMPTY_DATA") end
    local mtu = proto.prefs.mtu
    if mtu > 0 and frame_len > W.ETH_LEN + mtu then drop("OVERSIZE") end

    local kind = W.FRAME_TYPES[h.frame_type] or string.format("type %d", h.frame_type)
    local info = string.format("%s seq=%d ack=%d", kind, h.seq, h.ack)
    if h.keepalive ~= nil then
        info = info .. string.format(" %s incarnation=0x%08x", W.LINK_STATES[h.keepalive.state]
            or string.format("state %d", h.keepalive.state), h.keepalive.incarnation)
    end
    if count > 0 then info = info .. string.format(" %d TLPs: %s", count, table.concat(names, " ")) end
    if reason ~= nil then
        root:add(F.drop_reason, by_name(W.DROP_REASONS)[reason]):set_generated()
        root:add_proto_expert_info(E.dropped, "a tlpoe receiver drops this frame: " .. reason)
        info = info .. " [dropped: " .. reason .. "]"
    end
    root:append_text(", " .. info)
    pinfo.cols.info = info
    if whole then return area_end + W.CRC_LEN end
    return n
end

-- ------------------------------------------------------------------ registration

local registered, registered_port = nil, nil

local function register()
    local ethertypes = DissectorTable.get("ethertype")
    local value = tonumber(proto.prefs.ethertype) or W.ETHERTYPE
    if registered ~= nil then ethertypes:remove(registered, proto) end
    ethertypes:add(value, proto)
    registered = value
    -- the udp transport: the datagram's payload is the bridge header onwards
    local ports = DissectorTable.get("udp.port")
    if registered_port ~= nil then ports:remove(registered_port, proto) end
    registered_port = nil
    if proto.prefs.udp_port ~= 0 then
        ports:add(proto.prefs.udp_port, proto)
        registered_port = proto.prefs.udp_port
    end
end

proto.prefs_changed = register
register()
