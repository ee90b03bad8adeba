"""The Dockerfile, read with BuildKit's own parser: its key properties hold without a Docker engine."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

import dockerfile
import pytest

from tests.deploy.support import ROOT, dev_group_names, pyproject, runtime_closure

pytestmark = pytest.mark.unit

SERVICE_MODULES = {"manager", "builder", "salesforce_sim"}


@dataclass
class Stage:
    image: str
    name: str
    commands: list[dockerfile.Command] = field(default_factory=list)

    def of(self, cmd: str) -> list[dockerfile.Command]:
        return [c for c in self.commands if c.cmd == cmd]


def _global_args(commands: tuple[dockerfile.Command, ...]) -> dict[str, str]:
    args: dict[str, str] = {}
    for command in commands:
        if command.cmd == "FROM":
            break
        if command.cmd == "ARG":
            name, _, default = command.value[0].partition("=")
            args[name] = default
    return args


def _stages() -> tuple[list[Stage], dict[str, str]]:
    commands = dockerfile.parse_file(str(ROOT / "Dockerfile"))
    args = _global_args(commands)
    stages: list[Stage] = []
    for command in commands:
        if command.cmd == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], command.value[0])
            name = command.value[2] if len(command.value) == 3 and command.value[1].upper() == "AS" else ""
            stages.append(Stage(image=image, name=name))
        elif stages:
            stages[-1].commands.append(command)
    return stages, args


def _flag(command: dockerfile.Command, name: str) -> str | None:
    for flag in command.flags:
        key, _, value = flag.partition("=")
        if key == f"--{name}":
            return value
    return None


def test_the_image_is_multi_stage_and_runs_on_slim_python_3_11() -> None:
    stages, _ = _stages()
    assert len(stages) >= 2, "a builder stage and a runtime stage"
    runtime = stages[-1]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", runtime.image), runtime.image
    builder = next(s for s in stages if s.name == "builder")
    assert builder.image == runtime.image, "the venv's interpreter path must be the same in both stages"


def test_the_builder_stage_installs_the_locked_runtime_dependencies_with_uv_and_no_dev_group() -> None:
    stages, _ = _stages()
    builder = next(s for s in stages if s.name == "builder")
    copied_before_sync: set[str] = set()
    syncs = []
    for command in builder.commands:
        if command.cmd == "COPY" and _flag(command, "from") is None:
            copied_before_sync.update(command.value[:-1])
        if command.cmd == "RUN" and "uv sync" in command.value[0]:
            syncs.append(command.value[0])
            assert {"pyproject.toml", "uv.lock"} <= copied_before_sync, "uv sync needs the lock file first"
    assert syncs, "the builder stage runs uv sync"
    for line in syncs:
        words = shlex.split(line)
        assert "--frozen" in words, f"{line!r} must install exactly what uv.lock pins"
        assert "--no-dev" in words, f"{line!r} must leave the dev group out"
        for forbidden in ("--all-groups", "--group", "--only-dev", "--dev", "--all-extras"):
            assert forbidden not in words, f"{line!r} pulls in {forbidden}"
    assert any("--no-editable" in shlex.split(line) for line in syncs), "the project is installed as a wheel"
    every_run = " ".join(c.value[0] for s in stages for c in s.of("RUN"))
    assert "pip install" not in every_run and "uv pip" not in every_run, "nothing bypasses the lock"
    assert "uv lock" not in every_run


def test_the_runtime_stage_copies_only_the_virtualenv_and_the_health_check() -> None:
    stages, _ = _stages()
    runtime = stages[-1]
    copies = runtime.of("COPY") + runtime.of("ADD")
    assert {(_flag(c, "from"), *c.value) for c in copies} == {
        ("builder", "/opt/venv", "/opt/venv"),
        (None, "deploy/docker/healthcheck.py", "/usr/local/bin/sfconnect-healthcheck"),
    }
    assert not any("uv" in c.value[0].split() for c in runtime.of("RUN")), "no uv in the runtime image"
    pairs = [v for c in runtime.of("ENV") for v in c.value]
    env = dict(zip(pairs[::2], pairs[1::2], strict=True))
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_the_runtime_stage_runs_as_a_numeric_non_root_user_that_it_creates() -> None:
    stages, _ = _stages()
    runtime = stages[-1]
    users = runtime.of("USER")
    assert users, "the runtime stage sets USER"
    uid, _, gid = users[-1].value[0].partition(":")
    assert uid.isdigit() and int(uid) > 0, "numeric, so Kubernetes runAsNonRoot can verify it"
    assert gid.isdigit() and int(gid) > 0
    created = " ".join(c.value[0] for c in runtime.of("RUN"))
    assert f"--uid {uid}" in created and f"--gid {gid}" in created
    assert runtime.commands.index(users[-1]) > max(runtime.commands.index(c) for c in runtime.of("RUN"))


def test_the_default_command_is_a_service_module_and_every_service_port_is_exposed() -> None:
    stages, _ = _stages()
    runtime = stages[-1]
    cmd = runtime.of("CMD")[-1]
    assert cmd.json, "exec form, so the service is PID 1 and receives SIGTERM"
    assert list(cmd.value[:2]) == ["python", "-m"] and cmd.value[2] in SERVICE_MODULES
    assert not runtime.of("ENTRYPOINT"), "the command alone picks the service"
    exposed = {p for c in runtime.of("EXPOSE") for p in c.value}
    assert {"8080", "8081", "8090"} <= exposed
    check = runtime.of("HEALTHCHECK")[-1]
    assert check.value[0] == "CMD" and check.value[1] == "sfconnect-healthcheck"
    assert check.value[2] == "http://127.0.0.1:8080/healthz", "the default command's liveness endpoint"


def test_the_pinned_uv_version_matches_the_one_the_makefile_installs() -> None:
    _, args = _stages()
    makefile_pin = re.search(r"uv==([0-9.]+)", (ROOT / "Makefile").read_text())
    assert makefile_pin, "the Makefile pins uv"
    assert args["UV_VERSION"] == makefile_pin.group(1)


def test_the_locked_runtime_closure_holds_no_dev_tool() -> None:
    closure = runtime_closure()
    dev_only = dev_group_names()
    assert "secantusdb" in dev_only, "SecantusDB is GPL and a dev/test dependency only"
    assert not closure & dev_only, f"dev tools reachable from the runtime dependencies: {closure & dev_only}"
    assert {"aio-pika", "aiohttp", "pymongo", "cryptography", "pydantic-settings"} <= closure


def test_the_wheel_ships_every_module_the_image_can_run() -> None:
    packages = pyproject()["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    shipped = {p.rstrip("/").rsplit("/", 1)[-1] for p in packages}
    assert {"shared", *SERVICE_MODULES} <= shipped


def test_the_build_context_admits_only_what_the_dockerfile_copies() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "a whitelist: .env, .venv, .git and local data never enter the context"
    admitted = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    stages, _ = _stages()
    sources = {
        src.rstrip("/")
        for stage in stages
        for c in stage.of("COPY")
        if _flag(c, "from") is None
        for src in c.value[:-1]
    }
    assert sources == admitted
