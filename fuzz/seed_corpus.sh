#!/usr/bin/env bash
# Seeds fuzz/corpus/<protocol>/ from the fixtures of every protocol (each folder under
# fixtures/ is one): every TCP capture as bytes, behind the one byte the targets use to
# choose the chunk size. The target `protocol` fuzzes one of them at a time
# (FLEETGATE_FUZZ_PROTOCOL=<name>).
set -euo pipefail
cd "$(dirname "$0")"
for dir in ../fixtures/*/; do
  protocol=$(basename "$dir")
  mkdir -p "corpus/$protocol"
  for fixture in "$dir"*; do
    name=$(basename "$fixture")
    case "$name" in
      *.udp.hex | *.udp.txt | *.expect | *.json) ;;
      *.hex) { printf '\x07'; tr -d ' \n\r\t' < "$fixture" | xxd -r -p; } > "corpus/$protocol/${name%.hex}" ;;
      *.txt | *.bin) { printf '\x07'; cat "$fixture"; } > "corpus/$protocol/${name%.*}" ;;
    esac
  done
done
# The traffic export: the API's documented example page, and one frame object per line.
mkdir -p corpus/traffic corpus/inputs
sed -n '/^```json$/,/^```$/p' ../docs/API.md | sed '1d;$d' | head -n 20 > corpus/traffic/api_example.json || true
printf '{"id":1,"time":"2026-11-25T16:00:00.120Z","direction":"in","transport":"tcp","connection":"a","hex":"2350230d0a"}\n' > corpus/traffic/frame.json
# Times and hex as clients send them.
printf '2026-11-25T16:00:00Z' > corpus/inputs/time
printf '2026-11-25T16:00:00.123+02:00' > corpus/inputs/time_offset
printf '000F333536333037303432343431303133' > corpus/inputs/hex
echo "seeded: $(ls corpus/* | wc -l) files"
