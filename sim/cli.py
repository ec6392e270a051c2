"""The ``tlpoe`` command line.

``tlpoe dump FILE.pcap`` prints one tcpdump-like line per TLP of a NetTLP
capture; ``tlpoe dump --json FILE.pcap`` prints one JSON object per line.
A packet that does not decode (not NetTLP, a reserved Fmt, ...) is named in
one line on stderr and the listing goes on with the next packet.

Exit status (every error is one line on stderr, never a traceback):

* 0: every packet decoded;
* 1: some packets could not be decoded (each named on stderr), the others
  were printed;
* 2: a file error (unreadable, not a pcap, a bad or truncated header, a
  record claiming more bytes than the file's snaplen or 262,144), which ends
  the listing after the TLPs before it; a bad argument; or, with
  ``--strict``, the first packet that does not decode.

New subcommands register in :func:`build_parser`.
"""

import argparse
import json
import os
import sys

from tlpoe.models.pcap import PacketError, PcapError, iter_nettlp
from tlpoe.models.tlp import CplStatus

EXIT_OK = 0
EXIT_BAD_PACKETS = 1
EXIT_ERROR = 2

DUMP_EPILOG = """\
exit status:
  0  every packet decoded
  1  some packets could not be decoded (each named on stderr, the others listed)
  2  file error (unreadable, not a pcap, bad record header), bad arguments,
     or with --strict the first packet that does not decode"""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block) and exit status 2."""

    def error(self, message):
        raise _CliError(f"{self.prog}: error: {message}")


class _CliError(Exception):
    """An error already worded for the user."""


# ---------------------------------------------------------------- dump

def _timestamp(ns):
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def _status_name(status):
    return status.name if isinstance(status, CplStatus) else int(status)


def record_line(record):
    """One tcpdump-like line: time, NetTLP seq, UDP ports, the TLP."""
    line = (f"{_timestamp(record.timestamp_ns)} seq {record.seq} "
            f"{record.src_port:#06x} > {record.dst_port:#06x}: {record.tlp}")
    return line + " [truncated]" if record.truncated else line


def record_json(record):
    """The JSON-ready dict of one record: the fields of its TLP that its type
    carries, IDs as "bb:dd.f", plus capture metadata."""
    tlp = record.tlp
    out = {
        "index": record.index, "timestamp_ns": record.timestamp_ns, "seq": record.seq,
        "src_port": record.src_port, "dst_port": record.dst_port,
        "type": str(tlp.type), "fmt": int(tlp.fmt), "class": str(tlp.ordering_class),
        "length": tlp.length, "tc": tlp.tc, "attr": int(tlp.attr), "th": tlp.th,
        "td": tlp.td, "ep": tlp.ep, "requester": str(tlp.requester_id), "tag": tlp.tag,
    }
    t = tlp.type
    if t.is_completion:
        out.update(completer=str(tlp.completer_id), status=_status_name(tlp.status),
                   bcm=tlp.bcm, byte_count=tlp.byte_count, lower_address=tlp.lower_address)
    elif t.is_message:
        out.update(message_code=tlp.message_code, routing=int(tlp.routing),
                   address=tlp.address)
    else:
        out.update(first_be=tlp.first_be, last_be=tlp.last_be)
        if t.is_config:
            out.update(dest=str(tlp.dest_id), register=tlp.register)
        else:
            out.update(address=tlp.address, addr64=tlp.addr64, at=tlp.at, ph=tlp.ph)
    out.update(data=tlp.data.hex(), truncated=record.truncated)
    return out


def cmd_dump(args, out):
    """Print every TLP of ``args.pcap``.  A packet that does not decode is
    named on stderr and skipped (with ``args.strict``, raised: status 2);
    returns EXIT_BAD_PACKETS if any was, else EXIT_OK.  A file error
    (PcapError) ends the listing."""
    bad = 0
    for item in iter_nettlp(args.pcap):
        if isinstance(item, PacketError):
            if args.strict:
                raise item
            bad += 1
            _report_bad_packet(item, out)
            continue
        text = json.dumps(record_json(item)) if args.json else record_line(item)
        print(text, file=out)
    return EXIT_BAD_PACKETS if bad else EXIT_OK


def _report_bad_packet(err, out):
    # Flushed first so that, with stdout and stderr in one file, the line
    # sits between the TLPs before and after the bad packet.
    out.flush()
    print(f"tlpoe: {_one_line(err)}", file=sys.stderr)


# ---------------------------------------------------------------- main

def build_parser():
    parser = _Parser(prog="tlpoe", description="tlpoe tools")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dump = commands.add_parser("dump", help="decode the TLPs of a NetTLP pcap capture",
                               description="decode the TLPs of a NetTLP pcap capture",
                               epilog=DUMP_EPILOG,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    dump.add_argument("pcap", metavar="FILE.pcap", help="classic pcap of NetTLP packets")
    dump.add_argument("--json", action="store_true", help="one JSON object per line")
    dump.add_argument("--strict", action="store_true",
                      help="stop at the first packet that does not decode (status 2)")
    dump.set_defaults(run=cmd_dump)
    return parser


def main(argv=None):
    """Run the ``tlpoe`` command line; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return args.run(args, sys.stdout)
    except _CliError as err:
        return _fail(str(err))
    except BrokenPipeError:
        # The reader went away (``tlpoe dump x.pcap | head``): not an error.
        sys.stdout = open(os.devnull, "w")
        return 0
    except (PcapError, OSError) as err:
        return _fail(f"tlpoe: error: {_one_line(err)}")


def _one_line(err):
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror}"
    return " ".join(str(err).split())


def _fail(message):
    print(message, file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
