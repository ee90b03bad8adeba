"""At-rest keyring and in-transit sealing."""

from __future__ import annotations

import pytest

from shared.crypto import DecryptionError, Keyring, generate_key
from shared.errors import ConfigurationError
from shared.sealing import Opener, Sealer, SealingError, UnknownRecipientKey, generate_recipient_key


def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    old_entry = f"old:{generate_key()}"
    ct = Keyring.parse([old_entry]).encrypt("secret", record_id="c1", field="access_token")
    both = Keyring.parse([f"new:{generate_key()}", old_entry])
    assert both.decrypt(ct, record_id="c1", field="access_token") == "secret"
    assert both.needs_rotation(ct)
    rotated = both.rotate(ct, record_id="c1", field="access_token")
    assert rotated.split(".")[1] == "new"
    assert both.decrypt(rotated, record_id="c1", field="access_token") == "secret"


def test_a_ciphertext_moved_to_another_record_or_field_does_not_decrypt() -> None:
    ring = Keyring.parse([f"k1:{generate_key()}"])
    ct = ring.encrypt("secret", record_id="c1", field="access_token")
    with pytest.raises(DecryptionError):
        ring.decrypt(ct, record_id="c2", field="access_token")
    with pytest.raises(DecryptionError):
        ring.decrypt(ct, record_id="c1", field="refresh_token")


def test_two_encryptions_of_one_value_differ() -> None:
    ring = Keyring.parse([f"k1:{generate_key()}"])
    assert ring.encrypt("x", record_id="a", field="f") != ring.encrypt("x", record_id="a", field="f")


@pytest.mark.parametrize(
    ("entries", "fragment"),
    [
        ("", "at least one key"),
        ("nokey", "must look like"),
        ("k1:not-base64!!", "base64"),
        ("k1:c2hvcnQ=", "32 bytes"),
        (f"k1:{generate_key()},k1:{generate_key()}", "repeats"),
    ],
)
def test_a_malformed_keyring_is_refused_with_a_clear_message(entries: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        Keyring.parse(entries)


def test_a_sealed_token_opens_only_for_its_connection_and_message_type() -> None:
    priv, pub = generate_recipient_key("m1")
    sealer, opener = Sealer.parse([pub]), Opener.parse([priv])
    sealed = sealer.seal("00Dxx!tok", key_id="m1", connection_id="c1", message_type="connection.created.v1")
    assert "tok" not in sealed
    assert (
        opener.open(sealed, key_id="m1", connection_id="c1", message_type="connection.created.v1")
        == "00Dxx!tok"
    )
    with pytest.raises(SealingError):
        opener.open(sealed, key_id="m1", connection_id="c2", message_type="connection.created.v1")
    with pytest.raises(SealingError):
        opener.open(sealed, key_id="m1", connection_id="c1", message_type="connection.token_refreshed.v1")


def test_an_unknown_recipient_key_is_refused() -> None:
    _, pub = generate_recipient_key("m1")
    with pytest.raises(UnknownRecipientKey):
        Sealer.parse([pub]).seal("t", key_id="m2", connection_id="c1", message_type="x")


def test_a_key_id_with_a_trailing_newline_is_refused() -> None:
    # "$" matches before a final newline; the key-id check uses fullmatch so "k1\n" is not "k1".
    with pytest.raises(ConfigurationError, match=r"must look like|key id"):
        Keyring.parse(f"k1\n:{generate_key()}")
