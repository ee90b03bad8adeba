"""``python -m builder`` with bad settings: one line naming the setting, exit status 2, nothing echoed.

Run as real processes (as tests/fault/test_security_bad_config.py does); settings are checked before
anything connects, so the broker and database URLs here are never reached.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from shared.crypto import generate_key
from shared.sealing import generate_recipient_key

pytestmark = pytest.mark.integration

_PRIVATE, PUBLIC = generate_recipient_key("m1")
SECRET = "pw-never-printed-4711"


@dataclass(frozen=True)
class Case:
    name: str
    env: tuple[tuple[str, str], ...]
    named: str


def _case(name: str, named: str, **env: str) -> Case:
    return Case(name, tuple(env.items()), named)


CASES = [
    _case("empty client secret", "SALESFORCE_CLIENT_SECRET", SALESFORCE_CLIENT_SECRET=""),
    _case("blank client secret", "SALESFORCE_CLIENT_SECRET", SALESFORCE_CLIENT_SECRET="   "),
    _case("empty admin key", "ADMIN_API_KEY", ADMIN_API_KEY=""),
    _case("blank admin key", "ADMIN_API_KEY", ADMIN_API_KEY=" " * 24),
    _case("admin key of 15 characters", "ADMIN_API_KEY", ADMIN_API_KEY="abcdefghijklmno"),
    _case(
        "login URL with a password",
        "SALESFORCE_LOGIN_URL",
        SALESFORCE_LOGIN_URL=f"https://admin:{SECRET}@login.salesforce.com",
    ),
    _case(
        "sandbox login URL with a user",
        "SALESFORCE_SANDBOX_LOGIN_URL",
        SALESFORCE_SANDBOX_LOGIN_URL=f"https://{SECRET}@test.salesforce.com",
    ),
    _case(
        "allowed login URL with a password",
        "SALESFORCE_ALLOWED_LOGIN_URLS",
        SALESFORCE_ALLOWED_LOGIN_URLS=f"https://acme.my.salesforce.com,https://u:{SECRET}@x.my.salesforce.com",
    ),
    _case("instance id with a slash", "INSTANCE_ID", INSTANCE_ID="builder/1"),
    _case("instance id too long", "INSTANCE_ID", INSTANCE_ID="b" * 65),
    _case(
        "infinite propagation deadline", "PROPAGATION_DEADLINE_SECONDS", PROPAGATION_DEADLINE_SECONDS="inf"
    ),
    _case("nan propagation retry", "PROPAGATION_RETRY_SECONDS", PROPAGATION_RETRY_SECONDS="nan"),
    _case("nan Salesforce timeout", "SALESFORCE_TIMEOUT_SECONDS", SALESFORCE_TIMEOUT_SECONDS="nan"),
    _case("infinite deploy poll", "DEPLOY_POLL_SECONDS", DEPLOY_POLL_SECONDS="Infinity"),
    _case("infinite shutdown drain", "SHUTDOWN_DRAIN_SECONDS", SHUTDOWN_DRAIN_SECONDS="inf"),
    _case("nan MongoDB timeout", "MONGODB_TIMEOUT_SECONDS", MONGODB_TIMEOUT_SECONDS="nan"),
]


def _base_env() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    return {
        **keep,
        "AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
        "MONGODB_URL": "mongodb://127.0.0.1:1/",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": "1",
        "ENCRYPTION_KEYS": f"k1:{generate_key()}",
        "RECIPIENT_PUBLIC_KEYS": PUBLIC,
        "ADMIN_API_KEY": "config-test-admin-key-0123",
        "SALESFORCE_CLIENT_ID": "cid",
        "SALESFORCE_CLIENT_SECRET": "csecret-value",
        "SALESFORCE_CALLBACK_URL": "http://127.0.0.1:9/v1/salesforce/callback",
    }


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "builder", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def outcomes() -> dict[Case, subprocess.CompletedProcess[str]]:
    """Every case's process, four at a time (the cost is interpreter start-up)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {c: pool.submit(_run, {**_base_env(), **dict(c.env)}) for c in CASES}
        return {c: f.result() for c, f in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_bad_setting_is_refused_with_one_line_and_exit_status_2(
    case: Case, outcomes: dict[Case, subprocess.CompletedProcess[str]]
) -> None:
    out = outcomes[case]
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, (out.returncode, out.stderr[-500:])
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("invalid configuration:") and case.named in lines[0], lines[0]
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert SECRET not in out.stderr, "a secret was echoed"


def test_help_is_printed_without_any_settings() -> None:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    out = _run(keep, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python -m builder") and out.stderr == ""
    for name in ("ADMIN_API_KEY", "SALESFORCE_CLIENT_SECRET", "MONGODB_TIMEOUT_SECONDS", "HTTP_PORT"):
        assert name in out.stdout
    assert "guest" not in out.stdout, "URL defaults (which may hold credentials) are not printed"
