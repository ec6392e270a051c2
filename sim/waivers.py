"""Verilator warnings waived for Amaranth's Verilog, each with its reason.

One list for the lint of ``make verilog`` (with ``-Wall``) and for simulation
builds (default warnings), so a waiver is argued once.
"""

__all__ = ["WAIVERS", "BUILD_WAIVERS"]

WAIVERS = {
    # Amaranth's arithmetic rules fix every width before Verilog is written;
    # Yosys' backend then writes operands at their own width (`taken == 7'h64`
    # for a 32-bit `taken`, `!j` for "j is zero") and relies on Verilog's
    # implicit extension and reduction, which match those rules.  Widths are
    # checked where they mean something: by the simulation tests against the models.
    "WIDTHEXPAND": "implicit extension in Yosys' output matches Amaranth's width rules",
    "WIDTHTRUNC": "implicit truncation/reduction in Yosys' output matches Amaranth's rules",
    # Yosys writes a default assignment before every case statement.
    "CASEINCOMPLETE": "a default assignment precedes each case",
    # Every Amaranth register has an initial value (FPGA power-up state) and a
    # synchronous reset to the same value.
    "PROCASSINIT": "registers carry both an initial value and a reset, by design",
    # Amaranth keeps named intermediates whose upper bits no logic reads.
    "UNUSEDSIGNAL": "named intermediates with unread bits",
    # One emitted file holds the top module and its submodules.
    "DECLFILENAME": "several modules per emitted file, named after the hierarchy",
}

#: The waivers that concern default-on warnings (simulation builds without -Wall).
BUILD_WAIVERS = ("WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE")
