#!/usr/bin/env bash
# System tools tlpoe needs beside Python packages: Icarus Verilog, g++/make
# (Verilator compiles its models with them), Python's venv module, and tshark
# (Wireshark's command line: `make test` decodes link captures with the tlpoe
# dissector, sim/wireshark/tlpoe.lua).
# As root it installs what is missing with apt; otherwise it prints the command.
set -euo pipefail

missing=()
command -v iverilog >/dev/null 2>&1 || missing+=(iverilog)
command -v g++      >/dev/null 2>&1 || missing+=(g++)
command -v make     >/dev/null 2>&1 || missing+=(make)
command -v tshark   >/dev/null 2>&1 || missing+=(tshark)
"${PYTHON:-python3}" -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)

if [ ${#missing[@]} -eq 0 ]; then
    echo "system tools: iverilog, g++, make, tshark, python3 venv present"
    exit 0
fi

# tshark's package asks whether non-root users may capture (a setuid dumpcap):
# answer no beforehand, so that the install never stops at a prompt.
preseed=""
case " ${missing[*]} " in
    *" tshark "*)
        preseed="echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections && " ;;
esac

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "system tools: installing ${missing[*]} with apt-get"
    if [ -n "$preseed" ]; then
        echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "system tools missing: ${missing[*]}" >&2
    echo "run as root:  ${preseed}apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}" >&2
    echo "then run 'make setup' again." >&2
    exit 1
fi
