"""Payload encryption for everything rgrid writes to Temporal, and sealed secrets.

After Temporal's encryption sample (samples-python/encryption): each payload becomes an
AES-256-GCM ciphertext of the serialized original, with the key's id in its metadata.
A keyring holds several keys for rotation: the newest encrypts, every one decrypts. A
payload without our encoding passes through decoding unchanged, so histories written
before the codec (and workflows still running from then) stay readable.

Secrets are sealed once more, by value (`seal`/`unseal`): the Web UI through the codec
server, the control worker and the ledger only ever see the sealed text; a node unseals
them into the script's environment.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets as random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from rgrid.errors import ConfigError

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
KEY_FILE = "codec.keys"
SEALED_PREFIX = "rgrid-sealed:v1:"
MASK = "[secret]"  # what the codec server shows in place of a secret (as logs do)
_NONCE = 12


@dataclass(frozen=True)
class CodecKey:
    """One AES-256 key and the id payloads name it by."""

    key_id: str
    secret: bytes

    @classmethod
    def generate(cls) -> CodecKey:
        """A fresh random key with a random id."""
        return cls(key_id=f"k{random.token_hex(4)}", secret=AESGCM.generate_key(bit_length=256))

    def derive(self, purpose: bytes) -> bytes:
        """A separate 32-byte key for one purpose, so no key serves two."""
        return HKDF(hashes.SHA256(), length=32, salt=None, info=purpose).derive(self.secret)

    def text(self) -> str:
        return f"{self.key_id}:{base64.b64encode(self.secret).decode()}"


class Keyring:
    """The keys rgrid may decrypt with; the last one is the newest and encrypts."""

    def __init__(self, keys: Sequence[CodecKey]) -> None:
        if not keys:
            raise ConfigError("the codec keyring is empty", "set RGRID_CODEC_KEY or remove it")
        self.keys = list(keys)
        self._by_id = {key.key_id: key for key in self.keys}

    @property
    def newest(self) -> CodecKey:
        """The key new payloads are encrypted with."""
        return self.keys[-1]

    @classmethod
    def parse(cls, text: str, where: str) -> Keyring:
        """Keys written as `id:base64` separated by commas or lines, oldest first."""
        keys = []
        for item in text.replace(",", "\n").split():
            key_id, sep, encoded = item.rpartition(":")
            try:
                secret = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                secret = b""
            if not sep or not key_id or len(secret) != 32:
                raise ConfigError(
                    f"bad codec key in {where}",
                    "write each key as ID:BASE64 of 32 random bytes (rgrid admin rotate-key)",
                )
            keys.append(CodecKey(key_id=key_id, secret=secret))
        return cls(keys)

    def export(self) -> str:
        """Every key, in the form RGRID_CODEC_KEY takes (a node gets this)."""
        return ",".join(key.text() for key in self.keys)

    def key(self, key_id: str) -> CodecKey:
        found = self._by_id.get(key_id)
        if found is None:
            raise ValueError(f"payload encrypted with unknown key {key_id!r}")
        return found

    def seal(self, name: str, value: str) -> str:
        """A secret value as text only a holder of the key can read (bound to its name)."""
        key = self.newest
        nonce = os.urandom(_NONCE)
        box = AESGCM(key.derive(b"rgrid sealed secrets"))
        blob = nonce + box.encrypt(nonce, value.encode(), name.encode())
        return f"{SEALED_PREFIX}{key.key_id}:{base64.b64encode(blob).decode()}"

    def unseal(self, name: str, sealed: str) -> str:
        """The plain value of a sealed secret."""
        if not sealed.startswith(SEALED_PREFIX):
            raise ValueError(f"secret {name} is not sealed")
        key_id, _, encoded = sealed.removeprefix(SEALED_PREFIX).partition(":")
        blob = base64.b64decode(encoded)
        box = AESGCM(self.key(key_id).derive(b"rgrid sealed secrets"))
        try:
            return box.decrypt(blob[:_NONCE], blob[_NONCE:], name.encode()).decode()
        except InvalidTag as exc:
            raise ValueError(f"secret {name} does not open with key {key_id}") from exc

    def secrets_digest(self, plain: dict[str, str]) -> str:
        """A keyed hash of secret values: the cache key changes with them, yet reveals
        nothing of them (a plain hash of a short token could be guessed)."""
        canonical = json.dumps(plain, sort_keys=True, separators=(",", ":")).encode()
        mac = self.newest.derive(b"rgrid cache secrets")
        return hmac.new(mac, canonical, hashlib.sha256).hexdigest()


def is_sealed(value: str) -> bool:
    """True for text `Keyring.seal` made."""
    return value.startswith(SEALED_PREFIX)


def key_file(home: Path) -> Path:
    """Where the embedded default keeps its keys."""
    return home / KEY_FILE


def load_keyring(home: Path, env_keys: str | None) -> Keyring:
    """RGRID_CODEC_KEY when set, else the key file under home, made (0600) on first use."""
    if env_keys:
        return Keyring.parse(env_keys, "RGRID_CODEC_KEY")
    path = key_file(home)
    if not path.exists():
        _create(path, CodecKey.generate().text() + "\n")
    return Keyring.parse(path.read_text(), str(path))


def add_key(home: Path) -> CodecKey:
    """Rotate: append a new key that encrypts from now on; the old ones still decrypt."""
    keyring = load_keyring(home, None)
    key = CodecKey.generate()
    path = key_file(home)
    text = "\n".join(k.text() for k in [*keyring.keys, key]) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    _write_private(tmp, text)
    os.replace(tmp, path)
    return key


def _create(path: Path, text: str) -> None:
    """Write the file whole, or leave the one a concurrent first use already made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{random.token_hex(4)}")
    _write_private(tmp, text)
    try:
        os.link(tmp, path)  # atomic and refuses to replace: two first uses agree on one key
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over each serialized payload, named by the newest key's id."""

    def __init__(self, keyring: Keyring) -> None:
        super().__init__()
        self._keyring = keyring

    async def encode(self, payloads: Iterable[Payload]) -> list[Payload]:
        key = self._keyring.newest
        box = AESGCM(key.secret)
        encoded = []
        for payload in payloads:
            nonce = os.urandom(_NONCE)
            encoded.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID: key.key_id.encode()},
                    data=nonce + box.encrypt(nonce, payload.SerializeToString(), None),
                )
            )
        return encoded

    async def decode(self, payloads: Iterable[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding", b"") != ENCODING:
                decoded.append(payload)  # written before the codec, or not by rgrid
                continue
            key = self._keyring.key(payload.metadata.get(KEY_ID, b"").decode())
            data = payload.data
            plain = AESGCM(key.secret).decrypt(data[:_NONCE], data[_NONCE:], None)
            decoded.append(Payload.FromString(plain))
        return decoded
