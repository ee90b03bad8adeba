"""``make demo`` itself: the command a new user runs first, as a process, from its own output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_e2e_stack import DEMO_STEPS

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_command_runs_every_step_prints_a_summary_and_exits_0() -> None:
    # The demo works on the broker at 127.0.0.1:5672 (reused, or started when installed), as `make demo`.
    out = subprocess.run(
        [sys.executable, "-m", "devtools.demo"], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    summary = text.split("== summary", 1)[1]
    for step in DEMO_STEPS:
        assert step in summary, (step, summary)
    assert "[FAILED]" not in text and "Traceback" not in text
    assert "== shutting down" in text and "logs kept in" not in text  # the work folder is removed
    assert text.rstrip().splitlines()[-1].startswith("== demo passed in ")
