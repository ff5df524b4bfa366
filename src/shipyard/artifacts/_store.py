"""Content-addressed artifact stores: each version written once, never changed.

An artifact's id is the sha256 of its canonical manifest (path -> ``{sha256, size}``, JSON with
sorted keys and no spaces), so the same files give the same id and any change gives a new one.
Two backends keep the same versions under the same ids; the register step writes to one, and
every later stage (gate, release, diff, verify) reads through the ``ArtifactBackend`` protocol:

``ArtifactStore``, a folder (``.shipyard/artifacts`` or ``[artifacts] folder``)::

    sha256/ab/abcdef...         one blob per distinct file content
    manifests/sha256-<id>.json  one canonical manifest per artifact version

``DatabaseArtifactStore``, two tables of Shipyard's database (``artifact_blobs``: one row per
distinct content; ``artifact_manifests``: one row per version), so workers on many machines
that share one PostgreSQL database share the store too.

Reading checks the manifest against the id and every file against its digest, whichever the
backend: a changed file is refused, never served.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session, sessionmaker

from shipyard.errors import NotFound, StoreError
from shipyard.store import ArtifactBlobRow, ArtifactManifestRow, insert_ignore, transaction

__all__ = ["ArtifactBackend", "ArtifactStore", "DatabaseArtifactStore", "StoredArtifact"]


@dataclass(frozen=True, kw_only=True)
class StoredArtifact:
    """One artifact version as the store knows it."""

    id: str
    """``sha256:<hex>`` of the canonical manifest."""
    manifest: dict[str, dict[str, Any]]
    """File path -> ``{"sha256": hex, "size": bytes}``."""

    @property
    def size(self) -> int:
        return sum(int(entry["size"]) for entry in self.manifest.values())


class ArtifactBackend(Protocol):
    """Where artifact versions live. Every backend gives the same files the same id."""

    def put(self, files: Mapping[str, str | bytes]) -> StoredArtifact:
        """Store ``files`` (idempotent: the same content always yields the same id)."""
        ...

    def get(self, artifact_id: str) -> StoredArtifact:
        """The version's manifest, checked against its id (NotFound, or StoreError if changed)."""
        ...

    def read(self, artifact: StoredArtifact) -> dict[str, bytes]:
        """Every file of the artifact, each checked against its digest (StoreError if not)."""
        ...

    def remove(self, artifact_ids: list[str], *, keep: list[str]) -> int:
        """Delete these versions and every file no kept version uses; return the bytes freed."""
        ...


# --- what both backends share: the manifest, the id, and the checks on reading -------------


@dataclass(frozen=True, kw_only=True)
class _Encoded:
    artifact: StoredArtifact
    canonical: bytes
    """The manifest as stored: its sha256 is the artifact's id."""
    blobs: dict[str, bytes]
    """Digest -> content, one entry per distinct content."""


def _canonical(manifest: Mapping[str, Any]) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def _id_of(canonical: bytes) -> str:
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def _encode(files: Mapping[str, str | bytes]) -> _Encoded:
    manifest: dict[str, dict[str, Any]] = {}
    blobs: dict[str, bytes] = {}
    for name in sorted(files):
        content = files[name]
        data = content.encode() if isinstance(content, str) else content
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        manifest[name] = {"sha256": digest, "size": len(data)}
    canonical = _canonical(manifest)
    artifact = StoredArtifact(id=_id_of(canonical), manifest=manifest)
    return _Encoded(artifact=artifact, canonical=canonical, blobs=blobs)


def _restore_hint(where: str) -> str:
    return f"the artifact store was modified {where}; restore it from a backup"


def _checked_manifest(artifact_id: str, data: bytes, *, where: str) -> StoredArtifact:
    """The stored manifest, refused unless it still hashes to the artifact's id."""
    try:
        manifest = json.loads(data)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or _id_of(_canonical(manifest)) != artifact_id:
        raise StoreError(
            f"artifact {artifact_id}: its manifest was modified {where} (it no longer "
            "hashes to the artifact's id)",
            hint=_restore_hint(where),
        )
    return StoredArtifact(id=artifact_id, manifest=manifest)


def _checked_file(artifact: StoredArtifact, name: str, data: bytes | None, *, where: str) -> bytes:
    """One file's content, refused if it is gone or no longer matches its digest."""
    if data is None:
        raise StoreError(
            f"artifact {artifact.id}: file {name!r} is missing from the store",
            hint=_restore_hint(where),
        )
    if hashlib.sha256(data).hexdigest() != artifact.manifest[name]["sha256"]:
        raise StoreError(
            f"artifact {artifact.id}: file {name!r} does not match its digest",
            hint=_restore_hint(where),
        )
    return data


def _digests(manifest: bytes) -> set[str]:
    """The blobs a stored manifest uses (none if it is not a manifest any more)."""
    try:
        entries = json.loads(manifest)
        return {str(entry["sha256"]) for entry in entries.values()}
    except (ValueError, TypeError, KeyError, AttributeError):
        return set()


# --- the folder backend ----------------------------------------------------------------------


def _write_once(path: Path, data: bytes) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o444)
        os.replace(temp, path)  # atomic: readers see all of it or nothing
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class ArtifactStore:
    """Artifact versions as read-only files in a folder, each written once, atomically."""

    _where = "on disk"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _blob(self, digest: str) -> Path:
        return self.root / "sha256" / digest[:2] / digest

    def _manifest_path(self, artifact_id: str) -> Path:
        return self.root / "manifests" / (artifact_id.replace(":", "-") + ".json")

    def put(self, files: Mapping[str, str | bytes]) -> StoredArtifact:
        """Store ``files`` (idempotent: the same content always yields the same id)."""
        encoded = _encode(files)
        for digest, data in encoded.blobs.items():
            _write_once(self._blob(digest), data)
        _write_once(self._manifest_path(encoded.artifact.id), encoded.canonical)
        return encoded.artifact

    def get(self, artifact_id: str) -> StoredArtifact:
        path = self._manifest_path(artifact_id)
        if not path.is_file():
            raise NotFound(
                f"no artifact {artifact_id} in {self.root}", hint="see `shipyard artifacts`"
            )
        return _checked_manifest(artifact_id, path.read_bytes(), where=self._where)

    def read(self, artifact: StoredArtifact) -> dict[str, bytes]:
        """Every file of the artifact, each checked against its digest."""
        out = {}
        for name, entry in artifact.manifest.items():
            try:
                data: bytes | None = self._blob(entry["sha256"]).read_bytes()
            except FileNotFoundError:
                data = None
            out[name] = _checked_file(artifact, name, data, where=self._where)
        return out

    def blob_path(self, digest: str) -> Path:
        return self._blob(digest)

    def remove(self, artifact_ids: list[str], *, keep: list[str]) -> int:
        """Delete these versions' manifests and every file no kept version uses; bytes freed.

        Files shared with a kept version stay (content addressing shares them).
        """
        in_use: set[str] = set()
        for artifact_id in keep:
            path = self._manifest_path(artifact_id)
            if path.is_file():
                in_use |= _digests(path.read_bytes())
        freed = 0
        for artifact_id in artifact_ids:
            path = self._manifest_path(artifact_id)
            if not path.is_file():
                continue
            for digest in _digests(path.read_bytes()):
                blob = self._blob(digest)
                if digest not in in_use and blob.is_file():
                    freed += blob.stat().st_size
                    blob.unlink()
            path.unlink()
        return freed


# --- the database backend --------------------------------------------------------------------

_STORE_LOCK = 0x4152_5449_4641_4354
"""PostgreSQL advisory lock key (b"ARTIFACT"): puts share it, a removal holds it alone."""

_CHUNK = 500
"""Keys per ``IN (...)``: far below every driver's limit on bound parameters."""


def _chunks(keys: Iterable[str]) -> Iterator[list[str]]:
    ordered = sorted(keys)
    for start in range(0, len(ordered), _CHUNK):
        yield ordered[start : start + _CHUNK]


def _hold(session: Session, *, alone: bool) -> None:
    """Order puts against removals, so a removal never deletes a blob a put counts on.

    On PostgreSQL an advisory lock for the transaction (shared by puts, exclusive for a
    removal). SQLite has one writer at a time, and both begin with a write, so there the
    database's own write lock does it.
    """
    if session.get_bind().dialect.name == "postgresql":
        lock = "pg_advisory_xact_lock" if alone else "pg_advisory_xact_lock_shared"
        session.execute(text(f"SELECT {lock}(:key)"), {"key": _STORE_LOCK})


class DatabaseArtifactStore:
    """Artifact versions as rows of Shipyard's database, shared by every worker that uses it.

    Rows are inserted once and never updated: a second insert of the same content does
    nothing, so workers storing the same files at once never conflict.
    """

    _where = "in the database"

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def put(self, files: Mapping[str, str | bytes]) -> StoredArtifact:
        """Store ``files`` (idempotent: the same content always yields the same id)."""
        encoded = _encode(files)
        with transaction(self.sessions) as session:
            _hold(session, alone=False)
            # The manifest first: on SQLite the first write takes the write lock before any
            # read; on PostgreSQL a second put of the same version waits here for the first.
            manifest = {"id": encoded.artifact.id, "manifest": encoded.canonical}
            insert_ignore(session, ArtifactManifestRow, manifest)
            present: set[str] = set()
            for chunk in _chunks(encoded.blobs):
                found = select(ArtifactBlobRow.digest).where(ArtifactBlobRow.digest.in_(chunk))
                present.update(session.scalars(found))
            for digest in sorted(set(encoded.blobs) - present):  # one order: no deadlocks
                data = encoded.blobs[digest]
                row = {"digest": digest, "size": len(data), "content": data}
                insert_ignore(session, ArtifactBlobRow, row)
        return encoded.artifact

    def get(self, artifact_id: str) -> StoredArtifact:
        with self.sessions() as session:
            data = session.scalar(
                select(ArtifactManifestRow.manifest).where(ArtifactManifestRow.id == artifact_id)
            )
        if data is None:
            raise NotFound(
                f"no artifact {artifact_id} in the database's artifact store",
                hint="see `shipyard artifacts`",
            )
        return _checked_manifest(artifact_id, bytes(data), where=self._where)

    def read(self, artifact: StoredArtifact) -> dict[str, bytes]:
        """Every file of the artifact, each checked against its digest."""
        found: dict[str, bytes] = {}
        with self.sessions() as session:
            for chunk in _chunks({entry["sha256"] for entry in artifact.manifest.values()}):
                rows = session.execute(
                    select(ArtifactBlobRow.digest, ArtifactBlobRow.content).where(
                        ArtifactBlobRow.digest.in_(chunk)
                    )
                )
                found.update((digest, bytes(content)) for digest, content in rows)
        return {
            name: _checked_file(artifact, name, found.get(entry["sha256"]), where=self._where)
            for name, entry in artifact.manifest.items()
        }

    def remove(self, artifact_ids: list[str], *, keep: list[str]) -> int:
        """Delete these versions and every blob no remaining version uses; bytes freed.

        A blob stays while any manifest left in the store uses it: the kept versions', and
        those of versions stored since the caller made its lists.
        """
        kept = set(keep)
        with transaction(self.sessions) as session:
            _hold(session, alone=True)
            doomed: set[str] = set()
            in_use: set[str] = set()
            for chunk in _chunks(set(artifact_ids)):
                gone = session.execute(
                    delete(ArtifactManifestRow)
                    .where(ArtifactManifestRow.id.in_(chunk))
                    .returning(ArtifactManifestRow.id, ArtifactManifestRow.manifest)
                )
                for artifact_id, data in gone:
                    (in_use if artifact_id in kept else doomed).update(_digests(bytes(data)))
            remaining = select(ArtifactManifestRow.manifest).execution_options(yield_per=1000)
            for data in session.scalars(remaining):
                in_use |= _digests(bytes(data))
            freed = 0
            for chunk in _chunks(doomed - in_use):
                freed += sum(
                    session.scalars(
                        delete(ArtifactBlobRow)
                        .where(ArtifactBlobRow.digest.in_(chunk))
                        .returning(ArtifactBlobRow.size)
                    )
                )
        return freed
