"""Functional coverage of the PCIe ordering table (cocotb-coverage).

One cover point, :data:`COVER_POINT`, with one bin per cell of
:data:`tlpoe.models.ordering.CELLS`. A cell is hit by every pass the model
sees in it and by every pair of TLPs that kept their order in it (for each
TLP out, the last TLP of each class out before it):
:func:`tlpoe.models.ordering.check_order` counts both in ``cell_hits``.
"""

from cocotb_coverage.coverage import CoverPoint, coverage_db

from ..models.ordering import CELL_IDS

__all__ = ["COVER_POINT", "sample_cells", "export"]

COVER_POINT = "tlpoe.ordering.cell"


@CoverPoint(COVER_POINT, bins=list(CELL_IDS))
def _cover(cell):
    """One pair of TLPs met in ``cell``."""


def sample_cells(cell_hits):
    """Sample every hit of ``cell_hits`` ({cell id: pairs}, from
    ``check_order``); returns the cells hit and missed in the database."""
    for cell, hits in cell_hits.items():
        for _ in range(hits):
            _cover(cell)
    detail = coverage_db[COVER_POINT].detailed_coverage
    return ([c for c in CELL_IDS if detail[c]], [c for c in CELL_IDS if not detail[c]])


def export(path, logger=None):
    """Write the coverage database (every cover point sampled so far) as YAML."""
    coverage_db.export_to_yaml(path)
    if logger is not None:
        logger.info(f"coverage written to {path}")
