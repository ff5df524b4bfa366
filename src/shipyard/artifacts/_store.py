"""A content-addressed folder of artifact files: written once, never changed.

Layout under the store's root::

    sha256/ab/abcdef...       one blob per distinct file content
    manifests/sha256-<id>.json  path -> {sha256, size} for each artifact version

An artifact's id is the sha256 of its canonical manifest, so the same files give the same id
and any change gives a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.errors import NotFound, StoreError

__all__ = ["ArtifactStore", "StoredArtifact"]


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


def _canonical(manifest: Mapping[str, Any]) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


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
    def __init__(self, root: Path) -> None:
        self.root = root

    def _blob(self, digest: str) -> Path:
        return self.root / "sha256" / digest[:2] / digest

    def _manifest_path(self, artifact_id: str) -> Path:
        return self.root / "manifests" / (artifact_id.replace(":", "-") + ".json")

    def put(self, files: Mapping[str, str | bytes]) -> StoredArtifact:
        """Store ``files`` (idempotent: the same content always yields the same id)."""
        manifest: dict[str, dict[str, Any]] = {}
        for name in sorted(files):
            content = files[name]
            data = content.encode() if isinstance(content, str) else content
            digest = hashlib.sha256(data).hexdigest()
            _write_once(self._blob(digest), data)
            manifest[name] = {"sha256": digest, "size": len(data)}
        canonical = _canonical(manifest)
        artifact_id = "sha256:" + hashlib.sha256(canonical).hexdigest()
        _write_once(self._manifest_path(artifact_id), canonical)
        return StoredArtifact(id=artifact_id, manifest=manifest)

    def get(self, artifact_id: str) -> StoredArtifact:
        path = self._manifest_path(artifact_id)
        if not path.is_file():
            raise NotFound(
                f"no artifact {artifact_id} in {self.root}", hint="see `shipyard artifacts`"
            )
        data = path.read_bytes()
        manifest = json.loads(data)
        if "sha256:" + hashlib.sha256(_canonical(manifest)).hexdigest() != artifact_id:
            raise StoreError(
                f"artifact {artifact_id}: its manifest was modified on disk (it no longer "
                "hashes to the artifact's id)",
                hint="the artifact store was modified; restore it from a backup",
            )
        return StoredArtifact(id=artifact_id, manifest=manifest)

    def read(self, artifact: StoredArtifact) -> dict[str, bytes]:
        """Every file of the artifact, each checked against its digest."""
        out = {}
        for name, entry in artifact.manifest.items():
            try:
                data = self._blob(entry["sha256"]).read_bytes()
            except FileNotFoundError as exc:
                raise StoreError(
                    f"artifact {artifact.id}: file {name!r} is missing from the store",
                    hint="the artifact store was modified on disk; restore it from a backup",
                ) from exc
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise StoreError(
                    f"artifact {artifact.id}: file {name!r} does not match its digest",
                    hint="the artifact store was modified on disk; restore it from a backup",
                )
            out[name] = data
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
                in_use |= {e["sha256"] for e in json.loads(path.read_bytes()).values()}
        freed = 0
        for artifact_id in artifact_ids:
            path = self._manifest_path(artifact_id)
            if not path.is_file():
                continue
            for entry in json.loads(path.read_bytes()).values():
                blob = self._blob(entry["sha256"])
                if entry["sha256"] not in in_use and blob.is_file():
                    freed += blob.stat().st_size
                    blob.unlink()
            path.unlink()
        return freed
