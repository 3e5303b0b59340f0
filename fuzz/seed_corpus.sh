#!/usr/bin/env bash
# Seeds fuzz/corpus/<protocol>/ from the fixtures: every TCP capture as bytes, behind
# the one byte the targets use to choose the chunk size.
set -euo pipefail
cd "$(dirname "$0")"
for protocol in teltonika; do
  mkdir -p "corpus/$protocol"
  for fixture in ../fixtures/$protocol/*.hex; do
    case "$fixture" in *.udp.hex) continue ;; esac
    name=$(basename "$fixture" .hex)
    { printf '\x07'; tr -d ' \n\r\t' < "$fixture" | xxd -r -p; } > "corpus/$protocol/$name"
  done
done
echo "seeded: $(ls corpus/* | wc -l) files"
