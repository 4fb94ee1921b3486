"""The payload codec: what it writes is unreadable without a key, every key of the ring
reads, the newest writes, and payloads from before the codec pass through."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload

from rgrid.errors import ConfigError
from rgrid.infra.codec import (
    ENCODING,
    KEY_ID,
    CodecKey,
    EncryptionCodec,
    Keyring,
    add_key,
    is_sealed,
    key_file,
    load_keyring,
)
from rgrid.infra.temporal import data_converter
from rgrid.models.execution import ExecutionSpec, FileRef

PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=b'{"token": "supersecret123"}')


async def test_encoded_payloads_hide_the_data_and_name_the_key() -> None:
    ring = Keyring([CodecKey.generate()])
    [encoded] = await EncryptionCodec(ring).encode([PLAIN])
    assert encoded.metadata["encoding"] == ENCODING
    assert encoded.metadata[KEY_ID] == ring.newest.key_id.encode()
    assert b"supersecret123" not in encoded.SerializeToString()
    assert await EncryptionCodec(ring).decode([encoded]) == [PLAIN]


async def test_after_rotation_the_newest_key_encrypts_and_old_payloads_still_decode(
    tmp_path: Path,
) -> None:
    old_ring = load_keyring(tmp_path, None)
    [old] = await EncryptionCodec(old_ring).encode([PLAIN])
    new_key = add_key(tmp_path)
    ring = load_keyring(tmp_path, None)
    assert [k.key_id for k in ring.keys] == [old_ring.newest.key_id, new_key.key_id]
    [new] = await EncryptionCodec(ring).encode([PLAIN])
    assert new.metadata[KEY_ID] == new_key.key_id.encode()
    assert await EncryptionCodec(ring).decode([old, new]) == [PLAIN, PLAIN]
    # A ring without the key a payload names refuses it, rather than guessing.
    with pytest.raises(ValueError, match="unknown key"):
        await EncryptionCodec(Keyring([new_key])).decode([old])


async def test_payloads_without_the_codecs_encoding_pass_through_decoding() -> None:
    # Histories recorded before the codec, and workflows still running from then.
    assert await EncryptionCodec(Keyring([CodecKey.generate()])).decode([PLAIN]) == [PLAIN]


def test_the_key_file_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    first = load_keyring(tmp_path, None)
    path = key_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keyring(tmp_path, None).export() == first.export()


def test_rgrid_codec_key_takes_several_keys_newest_last_and_wins_over_the_file(
    tmp_path: Path,
) -> None:
    a, b = CodecKey.generate(), CodecKey.generate()
    ring = load_keyring(tmp_path, f"{a.text()},{b.text()}")
    assert ring.newest == b and ring.key(a.key_id) == a
    assert not key_file(tmp_path).exists()
    with pytest.raises(ConfigError, match="bad codec key in RGRID_CODEC_KEY"):
        load_keyring(tmp_path, "k1:c2hvcnQ=")


def test_sealed_secrets_open_only_with_the_key_and_under_their_own_name() -> None:
    ring = Keyring([CodecKey.generate()])
    sealed = ring.seal("API_TOKEN", "supersecret123")
    assert is_sealed(sealed) and "supersecret123" not in sealed
    assert ring.unseal("API_TOKEN", sealed) == "supersecret123"
    with pytest.raises(ValueError, match="does not open"):
        ring.unseal("OTHER", sealed)
    other = Keyring([CodecKey(key_id=ring.newest.key_id, secret=CodecKey.generate().secret)])
    with pytest.raises(ValueError, match="does not open"):
        other.unseal("API_TOKEN", sealed)


def test_the_secrets_digest_changes_with_a_value_and_with_the_key() -> None:
    ring = Keyring([CodecKey.generate()])
    digest = ring.secrets_digest({"API_TOKEN": "a"})
    assert digest == ring.secrets_digest({"API_TOKEN": "a"})
    assert digest != ring.secrets_digest({"API_TOKEN": "b"})
    assert digest != Keyring([CodecKey.generate()]).secrets_digest({"API_TOKEN": "a"})


async def test_the_data_converter_round_trips_a_spec_through_ciphertext() -> None:
    converter = data_converter(Keyring([CodecKey.generate()]))
    spec = ExecutionSpec(
        script=FileRef(name="job.py", sha256="0" * 64, size=1), env={"MODE": "fast"}
    )
    payloads = await converter.encode([spec])
    assert b"job.py" not in payloads[0].SerializeToString()
    assert await converter.decode(payloads, [ExecutionSpec]) == [spec]
