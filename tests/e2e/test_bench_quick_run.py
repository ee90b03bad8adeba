"""The benchmark harness does not rot: a quick refresh_rpc run produces a results document and summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.stack import ROOT

pytestmark = pytest.mark.e2e


def test_a_quick_refresh_benchmark_writes_every_figure_with_its_baseline(
    amqp_url: str, tmp_path: Path
) -> None:
    out = subprocess.run(
        [
            sys.executable, "-m", "bench", "--quick", "--only", "refresh_rpc", "--duration-scale", "0.3",
            "--amqp-url", amqp_url, "--out", str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    doc = json.loads((tmp_path / "latest.json").read_text())
    assert doc["scenarios"] == ["refresh_rpc"]
    assert doc["errors"] == {}
    assert doc["machine"]["cpu_count"] >= 1
    section = doc["refresh_rpc"]
    for path in ("ours", "baseline", "baseline_minimal", "plain_read"):
        assert section[path]["samples"] >= 10, path
        assert 0 < section[path]["p50_ms"] <= section[path]["p99_ms"], path
    assert section["ours"]["errors"] == 0
    assert section["p50_ratio"] == pytest.approx(
        section["ours"]["p50_ms"] / section["baseline"]["p50_ms"], rel=1e-2
    )
    assert section["targets"] == {"p50_ratio": "<= 1.5"}
    assert isinstance(section["met"]["p50_ratio"], bool)
    assert section["broker_version"]
    summary = (tmp_path / "latest.md").read_text()
    assert "refresh_rpc | p50_ratio" in summary
    assert "force_refresh (ours)" in summary
