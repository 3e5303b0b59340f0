#!/usr/bin/env bash
# Seeds fuzz/corpus/<protocol>/ from the fixtures: every TCP capture as bytes, behind
# the one byte the targets use to choose the chunk size.
set -euo pipefail
cd "$(dirname "$0")"
for protocol in teltonika wialon; do
  mkdir -p "corpus/$protocol"
  for fixture in ../fixtures/$protocol/*; do
    name=$(basename "$fixture")
    case "$name" in
      *.udp.hex | *.udp.txt | *.expect | *.json) ;;
      *.hex) { printf '\x07'; tr -d ' \n\r\t' < "$fixture" | xxd -r -p; } > "corpus/$protocol/${name%.hex}" ;;
      *.txt) { printf '\x07'; cat "$fixture"; } > "corpus/$protocol/${name%.txt}" ;;
    esac
  done
done
echo "seeded: $(ls corpus/* | wc -l) files"
