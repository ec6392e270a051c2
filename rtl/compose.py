"""Composition helpers: a top whose ports are its submodules' ports, renamed."""

from amaranth.lib.wiring import In, connect, flipped

__all__ = ["exposed_members", "forward"]


def exposed_members(inner, rename=None):
    """``inner``'s signature members keyed by their outer names
    (``rename`` maps inner names to outer ones; others keep theirs)."""
    rename = rename or {}
    return {rename.get(name, name): member for name, member in inner.signature.members.items()}


def forward(m, outer, inner, rename=None, skip=()):
    """Connect every port of ``inner`` (but those named in ``skip``, which
    the caller wires itself) to the same-direction port of ``outer`` named
    as in :func:`exposed_members`: streams with ``connect``, inputs driven
    from outside, outputs driven from inside."""
    rename = rename or {}
    for name, member in inner.signature.members.items():
        if name in skip:
            continue
        out_port = getattr(outer, rename.get(name, name))
        in_port = getattr(inner, name)
        if member.is_signature:
            if member.flow == In:
                connect(m, flipped(out_port), in_port)
            else:
                connect(m, in_port, flipped(out_port))
        elif member.flow == In:
            m.d.comb += in_port.eq(out_port)
        else:
            m.d.comb += out_port.eq(in_port)
