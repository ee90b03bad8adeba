"""Bad configuration: ``python -m manager`` and ``python -m builder`` refuse to start with one clear line on
stderr (no traceback, no secret echoed) and a non-zero exit status."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import aio_pika
import pytest

from devtools.stack import ROOT, free_port, http_ok
from shared.amqp import Topology
from shared.crypto import generate_key
from shared.sealing import generate_recipient_key
from tests.fault.harness import write_figures

pytestmark = pytest.mark.fault

PRIVATE, PUBLIC = generate_recipient_key("m1")
SHORT_KEY = "AAECAwQFBgcICQoLDA0ODw"  # 16 bytes: valid base64, wrong length
SECRET_PASSWORD = "pw-should-never-be-printed-42"


@dataclass(frozen=True, eq=False)
class Case:
    service: str
    name: str
    env: dict[str, str | None]  # None removes the variable
    mentions: str  # the line must say this (case-insensitive)
    secret: str | None = None  # and must not say this


def _cases() -> list[Case]:
    cases = []
    for svc in ("manager", "builder"):
        key_set = "RECIPIENT_PRIVATE_KEYS" if svc == "manager" else "RECIPIENT_PUBLIC_KEYS"
        cases += [
            Case(svc, "ENCRYPTION_KEYS missing", {"ENCRYPTION_KEYS": None}, "ENCRYPTION_KEYS"),
            Case(
                svc,
                "ENCRYPTION_KEYS without a key id",
                {"ENCRYPTION_KEYS": generate_key()},
                "ENCRYPTION_KEYS",
            ),
            Case(
                svc,
                "ENCRYPTION_KEYS not base64",
                {"ENCRYPTION_KEYS": "k1:not*base64*at*all"},
                "ENCRYPTION_KEYS",
            ),
            Case(
                svc,
                "ENCRYPTION_KEYS of the wrong length",
                {"ENCRYPTION_KEYS": f"k1:{SHORT_KEY}"},
                "ENCRYPTION_KEYS",
                SHORT_KEY,
            ),
            Case(
                svc,
                "ENCRYPTION_KEYS repeating a key id",
                {"ENCRYPTION_KEYS": f"k1:{generate_key()},k1:{generate_key()}"},
                "ENCRYPTION_KEYS",
            ),
            Case(svc, f"{key_set} missing", {key_set: None}, key_set),
            Case(svc, f"{key_set} malformed", {key_set: "m1:###"}, key_set),
            Case(svc, f"{key_set} of the wrong length", {key_set: f"m1:{SHORT_KEY}"}, key_set, SHORT_KEY),
            Case(
                svc,
                "AMQP_URL not amqp",
                {"AMQP_URL": f"http://user:{SECRET_PASSWORD}@127.0.0.1:5672/"},
                "AMQP_URL",
                SECRET_PASSWORD,
            ),
            Case(
                svc,
                "AMQP_URL with a malformed port",
                {"AMQP_URL": f"amqp://u:{SECRET_PASSWORD}@127.0.0.1:port/"},
                "AMQP_URL",
                SECRET_PASSWORD,
            ),
            Case(
                svc,
                "MONGODB_URL not mongodb",
                {"MONGODB_URL": f"postgres://u:{SECRET_PASSWORD}@127.0.0.1/"},
                "MONGODB_URL",
                SECRET_PASSWORD,
            ),
            Case(
                svc,
                "MONGODB_URL with a port out of range",
                {"MONGODB_URL": f"mongodb://u:{SECRET_PASSWORD}@127.0.0.1:99999/"},
                "MONGODB_URL",
                SECRET_PASSWORD,
            ),
            Case(
                svc,
                "MONGODB_URL with an unknown option",
                {"MONGODB_URL": "mongodb://127.0.0.1:27017/?notAnOption=1"},
                "MONGODB_URL",
            ),
            # .invalid never resolves (RFC 6761): pymongo says so at the first operation, not at parse time
            Case(
                svc,
                "MONGODB_URL mongodb+srv name that does not resolve",
                {"MONGODB_URL": "mongodb+srv://sfconnect-test.invalid/"},
                "MONGODB_URL",
            ),
            Case(
                svc,
                "AMQP_URL naming a vhost that does not exist",
                {"AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/sfconnect-no-such-vhost"},
                "virtual host 'sfconnect-no-such-vhost'",
            ),
            Case(svc, "HTTP_PORT out of range", {"HTTP_PORT": "70000"}, "HTTP_PORT"),
            Case(svc, "HTTP_PORT not a number", {"HTTP_PORT": "eighty"}, "HTTP_PORT"),
            Case(svc, "LOG_LEVEL unknown", {"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
            Case(svc, "AMQP_URL unreachable", {"AMQP_URL": "amqp://guest:guest@127.0.0.1:1/"}, "connect"),
            Case(
                svc,
                "AMQP_URL with a wrong password",
                {"AMQP_URL": f"amqp://guest:{SECRET_PASSWORD}@127.0.0.1:5672/"},
                "ACCESS_REFUSED",
                SECRET_PASSWORD,
            ),
            Case(svc, "HTTP_PORT already in use", {"HTTP_PORT": "5672"}, "address already in use"),
        ]
    cases += [
        Case("manager", "INSTANCE_ID with a slash", {"INSTANCE_ID": "a/b"}, "INSTANCE_ID"),
        Case("manager", "RPC_DEADLINE_SECONDS negative", {"RPC_DEADLINE_SECONDS": "-1"}, "RPC_DEADLINE_SECONDS"),
        Case("builder", "ADMIN_API_KEY too short", {"ADMIN_API_KEY": "short"}, "ADMIN_API_KEY"),
        Case("builder", "SALESFORCE_CLIENT_ID missing", {"SALESFORCE_CLIENT_ID": None}, "SALESFORCE_CLIENT_ID"),
        Case("builder", "SALESFORCE_CLIENT_SECRET missing", {"SALESFORCE_CLIENT_SECRET": None}, "SALESFORCE_CLIENT_SECRET"),
        Case("builder", "SALESFORCE_LOGIN_URL plain http to a remote host", {"SALESFORCE_LOGIN_URL": "http://login.salesforce.com"}, "SALESFORCE_LOGIN_URL"),
        Case("builder", "SALESFORCE_CALLBACK_URL not a URL", {"SALESFORCE_CALLBACK_URL": "callback"}, "SALESFORCE_CALLBACK_URL"),
        Case("builder", "SALESFORCE_API_VERSION malformed", {"SALESFORCE_API_VERSION": "v68"}, "SALESFORCE_API_VERSION"),
        Case("builder", "MONGODB_URL unreachable", {"MONGODB_URL": f"mongodb://u:{SECRET_PASSWORD}@127.0.0.1:1/"}, "ServerSelectionTimeoutError", SECRET_PASSWORD),
    ]  # fmt: skip
    return cases


def _base_env(service: str, amqp_url: str, mongodb_url: str, prefix: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_", "MONGODB_", "SIM_", "HTTP_"))}
    env.update(
        AMQP_URL=amqp_url,
        AMQP_PREFIX=prefix,
        MONGODB_URL=mongodb_url,
        MONGODB_DATABASE=f"cfg_{prefix.strip('.')}",
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(free_port()),
        ENCRYPTION_KEYS=f"k1:{generate_key()}",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    if service == "manager":
        env.update(RECIPIENT_PRIVATE_KEYS=PRIVATE, INSTANCE_ID="cfgtest")
    else:
        env.update(
            RECIPIENT_PUBLIC_KEYS=PUBLIC,
            ADMIN_API_KEY="adm_" + generate_key(),
            SALESFORCE_CLIENT_ID="cfgTestClientId0001",
            SALESFORCE_CLIENT_SECRET=generate_key(),
            SALESFORCE_LOGIN_URL="http://127.0.0.1:9",
            SALESFORCE_CALLBACK_URL="http://127.0.0.1:9/v1/salesforce/callback",
        )
    return env


@pytest.fixture(scope="module")
def config_prefix() -> str:
    return f"cfg{int(time.time() * 1000) % 10**8}."


@pytest.fixture(scope="module")
def _drop_config_topology(amqp_url: str, config_prefix: str) -> Iterator[None]:
    yield

    async def drop() -> None:
        conn = await aio_pika.connect(amqp_url, timeout=10)
        try:
            channel = await conn.channel()
            await Topology(prefix=config_prefix).delete_all(channel, instance_ids=("cfgtest",))
        finally:
            await conn.close()

    with contextlib.suppress(Exception):
        asyncio.run(drop())


FIGURES: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def _write_config_figures() -> Iterator[None]:
    yield
    if FIGURES:
        write_figures("bad-config", {"cases": len(FIGURES), "lines": FIGURES})


def _run(case: Case, amqp_url: str, mongodb_url: str, prefix: str) -> subprocess.CompletedProcess[str]:
    env = _base_env(case.service, amqp_url, mongodb_url, prefix)
    for name, value in case.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, "-m", case.service], env=env, cwd=ROOT, capture_output=True, text=True, timeout=40
    )


CASES = _cases()


@pytest.fixture(scope="module")
def outcomes(
    amqp_url: str, mongodb_url: str, config_prefix: str, _drop_config_topology: None
) -> dict[Case, subprocess.CompletedProcess[str]]:
    """Every case's process, run four at a time (most of the cost is interpreter start-up)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {c: pool.submit(_run, c, amqp_url, mongodb_url, config_prefix) for c in CASES}
        return {c: f.result() for c, f in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.service}: {c.name}")
def test_a_service_with_bad_configuration_refuses_to_start_with_one_clear_line(
    case: Case, outcomes: dict[Case, subprocess.CompletedProcess[str]]
) -> None:
    out = outcomes[case]
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    FIGURES[f"{case.service}: {case.name}"] = f"exit {out.returncode}: {lines[0] if lines else ''}"[:300]
    assert out.returncode != 0, f"started anyway: {out.stdout[-500:]}"
    assert len(lines) == 1, f"expected one line on stderr, got: {out.stderr!r}"
    assert case.mentions.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in out.stderr + out.stdout
    if case.secret:
        assert case.secret not in out.stderr + out.stdout, "the refusal echoed a secret"


def test_the_manager_refuses_to_start_when_its_database_is_unreachable(
    amqp_url: str, mongodb_url: str, config_prefix: str, _drop_config_topology: None
) -> None:
    env = _base_env("manager", amqp_url, mongodb_url, config_prefix)
    env.update(MONGODB_URL="mongodb://127.0.0.1:1/", MONGODB_TIMEOUT_SECONDS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "manager"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        code = proc.wait(timeout=6)
    except subprocess.TimeoutExpired:
        # Still running: what it does instead is report itself not ready.
        assert not http_ok(f"http://127.0.0.1:{env['HTTP_PORT']}/readyz")
        proc.terminate()
        proc.wait(15)
        raise AssertionError("the Manager was still running 6 s after start with no database") from None
    _, stderr = proc.communicate()
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "MongoDB" in lines[0], lines
