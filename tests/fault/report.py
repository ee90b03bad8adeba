"""``python -m tests.fault.report``: print the figures of the last fault-suite run (tests/fault/results/).

Each fault test writes its measured figures to ``tests/fault/results/<scenario>.json``; this prints them
one scenario per block, in the order docs/RELIABILITY.md presents them, so the document can be refreshed
after ``make test-fault`` (or after one scenario's command).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.fault.harness import RESULTS

ORDER = (
    "broker-restart",
    "builder-kill",
    "database-outage",
    "database-outage.long",
    "salesforce-transient",
    "salesforce-persistent",
    "salesforce-limit-bounded",
    "salesforce-limit-clears",
    "memory-alarm",
    "refresh-storm",
    "fuzz-manager",
    "fuzz-builder",
    "amqp-poison",
    "bad-config",
    "secret-scan.demo-flow",
    "access-manager",
    "access-builder",
    "access-oauth-state",
)


def _scenarios(results: Path) -> list[Path]:
    files = {p.stem: p for p in results.glob("*.json")}
    ordered = [files.pop(name) for name in ORDER if name in files]
    scans = sorted(p for name, p in files.items() if name.startswith("secret-scan."))
    return ordered + sorted(p for name, p in files.items() if not name.startswith("secret-scan.")) + scans


def main(argv: list[str]) -> int:
    results = Path(argv[0]) if argv else RESULTS
    paths = _scenarios(results)
    if not paths:
        print(f"no figures in {results}: run `make test-fault` first", file=sys.stderr)
        return 1
    hits = 0
    for path in paths:
        data = json.loads(path.read_text())
        if path.stem.startswith("secret-scan."):
            hits += int(data.get("hits", 0))
            if path.stem != "secret-scan.demo-flow":
                continue
        print(f"## {data.pop('scenario')} ({data.pop('measured_at')})")
        print(json.dumps(data, indent=2))
        print()
    scans = [p for p in paths if p.stem.startswith("secret-scan.")]
    print(f"## secret scans: {len(scans)} stacks scanned after their tests, {hits} hit(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
