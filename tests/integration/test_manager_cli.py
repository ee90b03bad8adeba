"""``python -m manager`` as a process: configuration errors, API-key commands, rotate-keys, serve + SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest
from manager.domain import ACCESS_TOKEN_FIELD

from shared.amqp import Publisher, Topology, connect
from shared.contracts.base import utcnow
from shared.crypto import Keyring, generate_key
from tests.infra import free_port
from tests.unit.manager_fakes import make_keys
from tests.unit.manager_world import created_reply

pytestmark = pytest.mark.integration

_OURS = (
    "ENCRYPTION_KEYS RECIPIENT_PRIVATE_KEYS MONGODB_URL MONGODB_DATABASE AMQP_URL AMQP_PREFIX HTTP_PORT "
    "HTTP_HOST INSTANCE_ID LOG_JSON LOG_LEVEL SERVICE_NAME"
).split()


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in _OURS}
    env.update(values)
    return env


def _run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "manager", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def good_env(mongodb_url: str, mongo_db: Any) -> dict[str, str]:
    keys = make_keys()
    return _env(
        ENCRYPTION_KEYS=keys.encryption_entry,
        RECIPIENT_PRIVATE_KEYS=keys.private_entry,
        MONGODB_URL=mongodb_url,
        MONGODB_DATABASE=mongo_db.name,
        LOG_JSON="true",
    )


@pytest.mark.parametrize(
    ("bad", "mentions"),
    [
        ({"ENCRYPTION_KEYS": None}, "ENCRYPTION_KEYS: Field required"),
        ({"ENCRYPTION_KEYS": "k1:c2hvcnQ="}, "ENCRYPTION_KEYS: [0] (k1) must decode to 32 bytes"),
        ({"ENCRYPTION_KEYS": "no-colon-here"}, "ENCRYPTION_KEYS: [0] must look like"),
        ({"RECIPIENT_PRIVATE_KEYS": "r1:!!!"}, "RECIPIENT_PRIVATE_KEYS"),
        ({"MONGODB_URL": "http://localhost"}, "MONGODB_URL: Value error, must be a mongodb://"),
        ({"HTTP_PORT": "70000"}, "HTTP_PORT"),
        ({"TOKEN_LIFETIME_SECONDS": "-1"}, "TOKEN_LIFETIME_SECONDS"),
        ({"TOKEN_LIFETIME_SECONDS": "1e300"}, "TOKEN_LIFETIME_SECONDS: Input should be less than or equal"),
        ({"SWEEPER_INTERVAL_SECONDS": "inf"}, "SWEEPER_INTERVAL_SECONDS: Input should be a finite number"),
        ({"RPC_DEADLINE_SECONDS": "nan"}, "RPC_DEADLINE_SECONDS: Input should be a finite number"),
        ({"AMQP_PREFIX": "../; rm -rf"}, "AMQP_PREFIX: Value error, must be at most 64 characters"),
        ({"AMQP_PREFIX": "p" * 300}, "AMQP_PREFIX: Value error, must be at most 64 characters"),
    ],
)
def test_bad_configuration_refuses_to_start_with_one_clear_line(
    good_env: dict[str, str], bad: dict[str, str | None], mentions: str
) -> None:
    env = dict(good_env)
    for name, value in bad.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    for args in ([], ["rotate-keys"]):
        result = _run(args, env, timeout=30)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("invalid configuration: ") and mentions in lines[0]
        assert "Traceback" not in result.stderr and result.stdout == ""
        for value in bad.values():
            if value and len(value) > 6:
                assert value not in result.stderr  # a bad secret is never echoed


def test_api_keys_are_created_printed_once_listed_without_the_key_and_revoked(
    good_env: dict[str, str],
) -> None:
    created = _run(
        ["api-keys", "create", "--scope", "tokens:read", "--scope", "connections:read", "--name", "ci"],
        good_env,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("sfc_") and len(created.stdout.strip().splitlines()) == 1
    key_id = key.split("_")[1]

    listed = _run(["api-keys", "list"], good_env)
    assert listed.returncode == 0
    assert (
        key_id in listed.stdout and "connections:read,tokens:read" in listed.stdout and "ci" in listed.stdout
    )
    assert key not in listed.stdout + listed.stderr and key.split("_", 2)[2] not in listed.stdout

    assert _run(["api-keys", "revoke", key_id], good_env).returncode == 0
    again = _run(["api-keys", "revoke", key_id], good_env)
    assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
    bad_scope = _run(["api-keys", "create", "--scope", "admin", "--name", "x"], good_env)
    assert bad_scope.returncode == 2 and "invalid choice" in bad_scope.stderr


async def test_rotate_keys_re_encrypts_stored_tokens_with_the_first_key(
    good_env: dict[str, str], mongo_db: Any
) -> None:
    old = Keyring.parse(good_env["ENCRYPTION_KEYS"])
    for i in range(5):
        ct = old.encrypt(f"token-{i}", record_id=f"con_{i}", field=ACCESS_TOKEN_FIELD)
        await mongo_db.connections.insert_one({"_id": f"con_{i}", "version": 1, "token": {"ciphertext": ct}})
    env = {**good_env, "ENCRYPTION_KEYS": f"k2:{generate_key()},{good_env['ENCRYPTION_KEYS']}"}
    result = await asyncio.to_thread(_run, ["rotate-keys", "--batch-size", "2"], env)
    assert result.returncode == 0, result.stderr
    assert "rotated 5 token(s) to key k2" in result.stderr
    assert "0 still under an old key" in result.stderr
    new = Keyring.parse(env["ENCRYPTION_KEYS"])
    async for doc in mongo_db.connections.find({}):
        assert doc["token"]["ciphertext"].startswith("v1.k2.")
        assert new.decrypt(
            doc["token"]["ciphertext"], record_id=doc["_id"], field=ACCESS_TOKEN_FIELD
        ).startswith("token-")


async def _delete_topology(amqp_url: str, prefix: str) -> None:
    conn = await connect(amqp_url, name="manager-cli-cleanup")
    try:
        channel = await conn.channel()
        await Topology(prefix=prefix).delete_all(channel, instance_ids=["mgr-proc"])
    finally:
        await conn.close()


def test_serve_answers_and_shuts_down_gracefully_on_sigterm(
    good_env: dict[str, str], amqp_url: str, amqp_prefix: str
) -> None:
    port = free_port()
    env = {
        **good_env,
        "AMQP_URL": amqp_url,
        "AMQP_PREFIX": amqp_prefix,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "INSTANCE_ID": "mgr-proc",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "manager"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    body = json.loads(r.read())
                    break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the Manager did not become ready"
                time.sleep(0.2)
        assert body == {"status": "ready", "checks": {"database": "up", "broker": "up"}}
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
        assert "manager started" in events and "manager stopping" in events
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        asyncio.run(_delete_topology(amqp_url, amqp_prefix))


async def _queue_a_reply(amqp_url: str, topology: Topology) -> None:
    conn = await connect(amqp_url, name="manager-cli-reply-publisher")
    try:
        channel = await conn.channel()
        await topology.declare_manager(channel, "mgr-proc")
        publisher = Publisher(conn, topology, app_id="builder")
        await publisher.start()
        reply = created_reply("con_0190000000000abcdef012", make_keys().sealer, utcnow())
        await publisher.send_reply(reply, reply_to=topology.replies_queue, correlation_id="port-taken")
        await publisher.close()
    finally:
        await conn.close()


async def _ready_in_queue(amqp_url: str, name: str) -> int:
    conn = await connect(amqp_url, name="manager-cli-inspect")
    try:
        queue = await (await conn.channel()).declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await conn.close()


def test_a_taken_http_port_stops_the_manager_before_it_consumes_any_reply(
    good_env: dict[str, str], amqp_url: str, amqp_prefix: str
) -> None:
    topology = Topology(prefix=amqp_prefix)
    asyncio.run(_queue_a_reply(amqp_url, topology))
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    env = {**good_env, "AMQP_URL": amqp_url, "AMQP_PREFIX": amqp_prefix, "INSTANCE_ID": "mgr-proc"}
    try:
        result = _run([], {**env, "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port)}, timeout=60)
        waiting = asyncio.run(_ready_in_queue(amqp_url, topology.replies_queue))
    finally:
        taken.close()
        asyncio.run(_delete_topology(amqp_url, amqp_prefix))
    assert "manager started" not in result.stdout, result.stdout
    assert waiting == 1, "the queued reply was consumed (or lost) before the port was bound"
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "address already in use" in lines[0].lower(), result.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "HTTP_HOST" in lines[0] and "HTTP_PORT" in lines[0]
    assert "Traceback" not in result.stderr


def test_an_http_host_that_is_not_an_address_is_a_bad_setting(good_env: dict[str, str]) -> None:
    result = _run([], {**good_env, "HTTP_HOST": "999.1.1.1", "HTTP_PORT": str(free_port())}, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("invalid configuration: HTTP_HOST"), result.stderr
    assert "999.1.1.1" not in lines[0] and "gaierror" not in lines[0]  # the setting, never its value
    assert "manager started" not in result.stdout


def test_api_key_commands_need_only_the_database_settings(good_env: dict[str, str]) -> None:
    for missing_or_bad in ({}, {"ENCRYPTION_KEYS": "not-a-keyring", "RECIPIENT_PRIVATE_KEYS": "r1:!!!"}):
        env = {k: v for k, v in good_env.items() if k not in ("ENCRYPTION_KEYS", "RECIPIENT_PRIVATE_KEYS")}
        env.update(missing_or_bad)
        created = _run(["api-keys", "create", "--scope", "tokens:read", "--name", "no-crypto"], env)
        assert created.returncode == 0, created.stderr
        key_id = created.stdout.strip().split("_")[1]
        listed = _run(["api-keys", "list"], env)
        assert listed.returncode == 0 and key_id in listed.stdout, listed.stderr
        revoked = _run(["api-keys", "revoke", key_id], env)
        assert revoked.returncode == 0, revoked.stderr
    # serving and rotating still need them
    env = {k: v for k, v in good_env.items() if k != "ENCRYPTION_KEYS"}
    refused = _run(["rotate-keys"], env)
    assert refused.returncode == 2 and "ENCRYPTION_KEYS: Field required" in refused.stderr


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["api-keys", "create", "--scope", "tokens:read", "--name", "two\nlines"], "printable"),
        (["api-keys", "create", "--scope", "tokens:read", "--name", "\x1b[31mred\x1b[0m"], "escape"),
        (["api-keys", "create", "--scope", "tokens:read", "--name", "tab\there"], "control characters"),
        (["api-keys", "create", "--scope", "tokens:read", "--name", "bidi\u202eevil"], "printable"),
        (["api-keys", "create", "--scope", "tokens:read", "--name", "x" * 65], "1-64"),
        (["api-keys", "create", "--scope", "tokens:read", "--name", "   "], "1-64"),
        (["api-keys", "revoke", "../../etc"], "16 hex digits"),
        (["rotate-keys", "--batch-size", "0"], "at least 1"),
        (["rotate-keys", "--batch-size", "-5"], "at least 1"),
        (["rotate-keys", "--batch-size", "many"], "whole number"),
    ],
    ids=[
        "newline",
        "escape-sequence",
        "tab",
        "bidi-override",
        "65-chars",
        "blank",
        "key-id",
        "0",
        "-5",
        "nan",
    ],
)
def test_bad_command_line_input_is_refused_with_a_clear_usage_error(
    good_env: dict[str, str], args: list[str], mentions: str
) -> None:
    result = _run(args, good_env, timeout=30)
    assert result.returncode == 2, result.stderr
    assert mentions in result.stderr and "Traceback" not in result.stderr and result.stdout == ""
    assert "\x1b" not in result.stderr and "\u202e" not in result.stderr  # the bad name is not echoed


def test_a_64_character_name_is_accepted_and_nothing_is_stored_for_a_refused_one(
    good_env: dict[str, str],
) -> None:
    assert _run(["api-keys", "create", "--scope", "tokens:read", "--name", "x\n"], good_env).returncode == 2
    name = "Billing sync — prod (owner: ops@acme.com) " + "y" * 22
    assert len(name) == 64
    created = _run(["api-keys", "create", "--scope", "tokens:read", "--name", name], good_env)
    assert created.returncode == 0, created.stderr
    rows = _run(["api-keys", "list"], good_env).stdout.strip().splitlines()
    assert len(rows) == 1 and rows[0].split("\t")[1] == name


def test_api_keys_are_created_bound_and_listed_with_their_bindings(good_env: dict[str, str]) -> None:
    created = _run(
        [
            "api-keys", "create", "--name", "erp", "--scope", "tokens:read",
            "--integration", "erp-sync", "--integration", "hr-sync", "--connection", "con_0190000000000abcdef012",
        ],
        good_env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    key_id = created.stdout.strip().split("_")[1]
    assert (
        "bound to integration:erp-sync,integration:hr-sync,connection:con_0190000000000abcdef012"
        in created.stderr
    )
    unbound = _run(["api-keys", "create", "--name", "ui", "--scope", "tokens:read"], good_env)
    assert unbound.returncode == 0 and "unbound" in unbound.stderr

    rows = {
        row.split("\t")[0]: row.split("\t")
        for row in _run(["api-keys", "list"], good_env).stdout.strip().splitlines()
    }
    assert rows[key_id][5] == "integration:erp-sync,integration:hr-sync,connection:con_0190000000000abcdef012"
    [other] = [cols for kid, cols in rows.items() if kid != key_id]
    assert other[5] == "-"

    no_scope = _run(
        ["api-keys", "create", "--name", "x", "--scope", "connections:read", "--integration", "erp-sync"],
        good_env,
    )
    assert no_scope.returncode == 1 and "tokens:read" in no_scope.stderr and no_scope.stdout == ""


@pytest.mark.parametrize(
    ("flag", "value", "mentions"),
    [
        ("--integration", "ERP-Sync", "slug"),
        ("--integration", "erp_sync", "slug"),
        ("--integration", "erp-sync\n", "slug"),
        ("--connection", "../con", "connection id"),
        ("--connection", "c" * 65, "connection id"),
        # as the API's paths: only the shape of the ids it gives out (con_ + 22 lower-case hex digits)
        ("--connection", "nope", "connection id"),
        ("--connection", "con_abc123", "connection id"),
        ("--connection", "con_0190000000000ABCDEF012", "connection id"),
    ],
    ids=["upper-case", "underscore", "trailing-newline", "path", "65-chars", "nope", "short", "upper-hex"],
)
def test_bad_binding_names_are_refused_with_a_usage_error_and_no_key(
    good_env: dict[str, str], flag: str, value: str, mentions: str
) -> None:
    result = _run(["api-keys", "create", "--name", "x", "--scope", "tokens:read", flag, value], good_env)
    assert result.returncode == 2 and mentions in result.stderr and result.stdout == ""
    assert _run(["api-keys", "list"], good_env).stdout == ""
