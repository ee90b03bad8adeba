"""``rotate-keys`` over the fake store: what it reports and its exit status when records stay behind."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from manager.repository import RotationItem
from manager.rotation import rotate_keys

from shared.crypto import Keyring, generate_key
from tests.unit.manager_fakes import FakeConnections, make_keys
from tests.unit.manager_http_harness import manager_settings
from tests.unit.manager_world import active_connection, make_world

pytestmark = pytest.mark.unit


class AlwaysChanging(FakeConnections):
    """A store whose records change under every rotation write (a refresh storing a token each time)."""

    async def replace_ciphertext(self, item: RotationItem, new_ciphertext: str) -> bool:
        self.docs[item.connection_id]["version"] += 1
        return False


async def _store_with_old_tokens(count: int) -> tuple[AlwaysChanging, Any]:
    repo = AlwaysChanging()
    w = make_world(repo=repo)
    for i in range(count):
        await active_connection(w, f"c{i}")
    return repo, w.keys


def _new_first(old_entry: str) -> tuple[str, Keyring]:
    entry = f"k2:{generate_key()},{old_entry}"
    return entry, Keyring.parse(entry)


async def test_records_that_raced_every_pass_are_counted_and_the_run_is_not_complete() -> None:
    repo, keys = await _store_with_old_tokens(3)
    _, keyring = _new_first(keys.encryption_entry)
    report = await rotate_keys(repo, keyring, batch_size=2, max_passes=3)
    assert (report.rotated, report.failed, report.passes) == (0, 0, 3)
    assert report.remaining == 3
    assert report.complete is False


async def test_a_finished_rotation_reports_nothing_remaining() -> None:
    repo = FakeConnections()
    w = make_world(repo=repo)
    for i in range(3):
        await active_connection(w, f"c{i}")
    _, keyring = _new_first(w.keys.encryption_entry)
    report = await rotate_keys(repo, keyring, batch_size=2)
    assert (report.rotated, report.remaining, report.complete) == (3, 0, True)


async def test_the_command_prints_what_remains_and_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import manager.__main__ as cli
    import manager.rotation

    repo, keys = await _store_with_old_tokens(2)
    entry, _ = _new_first(keys.encryption_entry)
    settings = manager_settings(make_keys(), encryption_keys=entry)

    @contextlib.asynccontextmanager
    async def no_database(_: Any) -> AsyncIterator[None]:
        yield None

    async def few_passes(store: Any, keyring: Keyring, *, batch_size: int) -> Any:
        return await manager.rotation.rotate_keys(store, keyring, batch_size=batch_size, max_passes=2)

    monkeypatch.setattr(cli, "_database", no_database)
    monkeypatch.setattr(cli, "MongoConnections", lambda _db: repo)
    monkeypatch.setattr(cli, "rotate_keys", few_passes)
    assert await cli._rotate(settings, 10) == 1
    err = capsys.readouterr().err
    assert "2 still under an old key" in err and "run rotate-keys again" in err
