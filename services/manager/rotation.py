"""``rotate-keys``: re-encrypt every stored secret with the active key, in batches, while serving.

The selection is "ciphertexts not made with the active key", so a run that stops half-way resumes by
running again. Each write is a compare-and-set on the document's version and old ciphertext: a record
that changed meanwhile (a refresh stored a new token, already under the active key) is looked at again
in the next pass instead of being overwritten. After the last pass the records still under an old key
are counted (``remaining``): unreadable ones, and ones that kept changing through every pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from manager.domain import ACCESS_TOKEN_FIELD
from manager.repository import ConnectionRepository
from shared.crypto import DecryptionError, Keyring
from shared.errors import InvalidInput
from shared.logging import get_logger

log = get_logger("manager.rotation")


@dataclass
class RotationReport:
    """What a rotation run did."""

    rotated: int = 0
    raced: int = 0
    failed: int = 0
    passes: int = 0
    remaining: int = 0  # still under an old key when the run ended

    @property
    def complete(self) -> bool:
        """True when every stored token is under the active key."""
        return self.failed == 0 and self.remaining == 0


async def rotate_keys(
    repo: ConnectionRepository, keyring: Keyring, *, batch_size: int = 100, max_passes: int = 10
) -> RotationReport:
    """Re-encrypt every token not under ``keyring.active_kid``; returns counts (``failed`` = unreadable)."""
    if batch_size < 1:
        raise InvalidInput("the batch size must be at least 1")
    report = RotationReport()
    unreadable: set[str] = set()
    for _ in range(max_passes):
        report.passes += 1
        raced = 0
        after: str | None = None
        while True:
            batch = await repo.tokens_to_rotate(active_kid=keyring.active_kid, after=after, limit=batch_size)
            if not batch:
                break
            after = batch[-1].connection_id
            for item in batch:
                if item.connection_id in unreadable:
                    continue
                try:
                    new = keyring.rotate(
                        item.ciphertext, record_id=item.connection_id, field=ACCESS_TOKEN_FIELD
                    )
                except DecryptionError as exc:
                    unreadable.add(item.connection_id)
                    log.error(
                        "token cannot be re-encrypted", connection_id=item.connection_id, error=str(exc)
                    )
                    continue
                if await repo.replace_ciphertext(item, new):
                    report.rotated += 1
                else:
                    raced += 1
            log.info("rotation batch done", rotated=report.rotated, last=after)
        report.raced += raced
        if raced == 0:
            break
    report.failed = len(unreadable)
    report.remaining = await repo.count_tokens_to_rotate(active_kid=keyring.active_kid)
    return report
