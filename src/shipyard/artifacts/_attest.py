"""Signed provenance: an in-toto Statement v1 with a SLSA Provenance v1 predicate, in a DSSE
envelope signed with the project's ed25519 key.

The statement's subjects are the artifact's files with their sha256 digests. The predicate's
build definition says what was asked (job kind, inputs, prompt and template versions,
provider, model, tier) and its run details say how it went (task, attempts, the digests of
the check reports, recalled memories, approvals, timestamps). The envelope signs the
statement's exact bytes (DSSE's pre-authentication encoding), so any change to a file, the
statement or the signature is caught by :func:`verify_envelope` and the store's digests.

The key pair lives in the project's state folder (``keys/``), outside the artifact store:
whoever can rewrite artifacts cannot re-sign them without it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shipyard.errors import ConfigError, StoreError

__all__ = [
    "BUILD_TYPE",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "SigningKey",
    "digest_of",
    "pae",
    "sign_statement",
    "verify_envelope",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUILD_TYPE = "urn:shipyard:build-type:task:v1"
"""What a Shipyard build is: one task of a job kind (generate, check, gate)."""


def digest_of(value: Any) -> str:
    """sha256 hex of a JSON value in canonical form (sorted keys, no spaces)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature actually covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class SigningKey:
    """The project's ed25519 key pair (private key file mode 600)."""

    private: Ed25519PrivateKey | None
    public: Ed25519PublicKey

    @property
    def keyid(self) -> str:
        raw = self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "sha256:" + hashlib.sha256(raw).hexdigest()

    @classmethod
    def create(cls, folder: Path) -> SigningKey:
        """Make a new key pair in ``folder`` (refuses to replace an existing one)."""
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        private_path, public_path = folder / "signing.key", folder / "signing.pub"
        if private_path.exists():
            raise ConfigError(
                f"{private_path} already exists", hint="a project keeps its signing key"
            )
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Written whole under a temporary name, then linked into place: a process starting
        # beside this one sees no key or a complete one, and only one process creates it.
        temp = folder / f".signing.key.{os.getpid()}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        try:
            os.link(temp, private_path)  # FileExistsError: another process made one first
        finally:
            temp.unlink()
        public_temp = folder / f".signing.pub.{os.getpid()}.tmp"
        public_temp.write_bytes(
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        os.replace(public_temp, public_path)
        return cls(private, private.public_key())

    @classmethod
    def load(cls, folder: Path, *, private: bool = True) -> SigningKey:
        """The key pair in ``folder``; only the public half when ``private`` is False."""
        private_path, public_path = folder / "signing.key", folder / "signing.pub"
        try:
            public = serialization.load_pem_public_key(public_path.read_bytes())
        except FileNotFoundError as exc:
            raise ConfigError(
                f"{public_path}: no signing key", hint="run `shipyard init` to create one"
            ) from exc
        if not isinstance(public, Ed25519PublicKey):
            raise ConfigError(f"{public_path}: not an ed25519 public key", hint="restore it")
        if not private:
            return cls(None, public)
        if private_path.stat().st_mode & 0o077:
            raise ConfigError(
                f"{private_path}: the signing key is open to other users",
                hint=f"chmod 600 {private_path}",
            )
        key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{private_path}: not an ed25519 private key", hint="restore it")
        return cls(key, public)

    @classmethod
    def load_or_create(cls, folder: Path) -> SigningKey:
        """The key pair in ``folder``, made there if the folder holds neither half.

        A public key without its private key is refused rather than silently replaced:
        everything signed before would stop verifying.
        """
        if (folder / "signing.key").exists():
            return cls._load_complete(folder)
        if (folder / "signing.pub").exists():
            raise ConfigError(
                f"{folder / 'signing.key'} is missing but {folder / 'signing.pub'} is there",
                hint="restore signing.key from your backup; to start a new key instead, remove "
                "signing.pub (what the old key signed will no longer verify)",
            )
        try:
            return cls.create(folder)
        except FileExistsError:  # workers starting together: another one made it
            return cls._load_complete(folder)

    @classmethod
    def _load_complete(cls, folder: Path) -> SigningKey:
        """Load, waiting a moment for the public half of a pair another process is making."""
        for _ in range(40):
            if (folder / "signing.pub").exists():
                break
            time.sleep(0.05)
        return cls.load(folder)


def sign_statement(statement: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    """The DSSE envelope of ``statement`` signed with ``key``."""
    if key.private is None:
        raise ConfigError("signing needs the private key", hint="load the key with private=True")
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    signature = key.private.sign(pae(PAYLOAD_TYPE, payload))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key.keyid, "sig": base64.b64encode(signature).decode()}],
    }


def verify_envelope(envelope: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    """The statement inside ``envelope`` if ``key`` signed it; StoreError saying why not."""
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = list(envelope["signatures"])
        payload_type = str(envelope["payloadType"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(
            f"the envelope is malformed: {exc}", hint="it was edited or truncated"
        ) from exc
    if payload_type != PAYLOAD_TYPE:
        raise StoreError(f"the envelope's payload type is {payload_type!r}, not {PAYLOAD_TYPE!r}")
    mine = [s for s in signatures if s.get("keyid") == key.keyid]
    if not mine:
        found = ", ".join(str(s.get("keyid")) for s in signatures) or "none"
        raise StoreError(
            f"the envelope is not signed by this project's key {key.keyid} (signed by: {found})",
            hint="verify with the key that signed it, or re-register the artifact",
        )
    try:
        key.public.verify(
            base64.b64decode(mine[0]["sig"], validate=True), pae(payload_type, payload)
        )
    except (InvalidSignature, ValueError) as exc:
        raise StoreError(
            "the signature does not match the statement: the statement or the signature "
            "was changed after signing",
            hint="do not trust this provenance",
        ) from exc
    try:
        statement = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise StoreError(f"the signed payload is not JSON: {exc}") from exc
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != PREDICATE_TYPE:
        raise StoreError("the signed payload is not an in-toto Statement v1 with SLSA provenance")
    return dict(statement)
