#!/usr/bin/env python3
"""Prints the Teltonika decode bench as a Markdown table (records/s from criterion's
median estimates), with fleetgate's ratio to nom-teltonika on the same frames.

Run after `cargo bench -p fleetgate-benches --bench teltonika`:
    python3 benches/summarize.py [target/criterion]
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
SIDES = ["nom_teltonika_evaluate", "fleetgate_fresh_batch", "fleetgate_reused_batch", "fleetgate_session"]


def records_per_second(path):
    bench = json.loads((path / "new" / "benchmark.json").read_text())
    estimates = json.loads((path / "new" / "estimates.json").read_text())
    elements = bench["throughput"]["Elements"]
    return elements / (estimates["median"]["point_estimate"] * 1e-9)


def main():
    print("| codec | records/frame | nom-teltonika 0.3 evaluate | fleetgate, fresh batch | fleetgate, reused batch | fleetgate, gateway session | fresh / nom | reused / nom | session / nom |")
    print("|---|---|---|---|---|---|---|---|---|")
    for codec in ["8", "8E", "16"]:
        group = ROOT / ("teltonika_codec" + codec)
        labels = sorted((p.name for p in (group / SIDES[0]).iterdir() if p.is_dir() and p.name != "report"),
                        key=lambda l: (l.startswith("full"), int(l.split("_")[-1])))
        for label in labels:
            rates = [records_per_second(group / side / label) for side in SIDES]
            print("| %s | %s | %.2f M/s | %.2f M/s | %.2f M/s | %.2f M/s | %.2fx | %.2fx | %.2fx |" % (
                codec, label.replace("_", " "), rates[0] / 1e6, rates[1] / 1e6, rates[2] / 1e6, rates[3] / 1e6,
                rates[1] / rates[0], rates[2] / rates[0], rates[3] / rates[0]))


main()
