#!/usr/bin/env bash
# System tools tlpoe needs beside Python packages: Icarus Verilog, and g++/make
# (Verilator compiles its models with them), and Python's venv module.
# As root it installs what is missing with apt; otherwise it prints the command.
set -euo pipefail

missing=()
command -v iverilog >/dev/null 2>&1 || missing+=(iverilog)
command -v g++      >/dev/null 2>&1 || missing+=(g++)
command -v make     >/dev/null 2>&1 || missing+=(make)
"${PYTHON:-python3}" -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)

if [ ${#missing[@]} -eq 0 ]; then
    echo "system tools: iverilog, g++, make, python3 venv present"
    exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "system tools: installing ${missing[*]} with apt-get"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "system tools missing: ${missing[*]}" >&2
    echo "run as root:  apt-get update && apt-get install -y ${missing[*]}" >&2
    echo "then run 'make setup' again." >&2
    exit 1
fi
