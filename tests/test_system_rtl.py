"""The disaggregated system's top (rtl/bridge/system.py): what it wires inside and
what it leaves to the testbench."""

import pytest

from tlpoe.rtl.bridge.system import DisaggregatedTop


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_device_bridges_are_wired_to_the_fabric_and_the_rest_is_exposed():
    top = DisaggregatedTop(64, hosts=2, window=8, seq_bits=6)
    ports = top.signature.members
    for i in range(2):
        # the testbench's ends: host TLPs, both bridges' frames
        for name in (f"h{i}_tlp_in", f"h{i}_tlp_out", f"h{i}_frame_out", f"h{i}_frame_in",
                     f"d{i}_frame_out", f"d{i}_frame_in", f"d{i}_link_down",
                     f"d{i}_cfg", f"d{i}_stats", f"fabric_link{i}_to_device_denied",
                     f"fabric_link{i}_to_device_local", f"fabric_link{i}_to_device_unsupported"):
            assert name in ports, name
        # wired inside
        for name in (f"d{i}_tlp_in", f"d{i}_tlp_out", f"fabric_net{i}_in", f"fabric_net{i}_out"):
            assert name not in ports, name
    for name in ("fabric_pcie_out", "fabric_pcie_in", "fabric_tbl_link", "fabric_win_we",
                 "fabric_fn_bar_we", "fabric_fn_bar_index", "fabric_fn_bar_value",
                 "fabric_fn_bar_mask", "fabric_unrouted"):
        assert name in ports, name
    assert len(top.host_bridges) == len(top.device_bridges) == 2


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_it_elaborates_to_lint_clean_verilog(tmp_path):
    from amaranth.back import verilog as amaranth_verilog

    from tlpoe.sim.verilog import lint
    path = tmp_path / "system.v"
    path.write_text(amaranth_verilog.convert(DisaggregatedTop(64, hosts=1, window=8, seq_bits=6),
                                             name="system", emit_src=False))
    ok, output = lint(path, "system")
    assert ok, output
