from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from shipyard.artifacts import ArtifactStore
from shipyard.errors import NotFound, StoreError

FILES: dict[str, str | bytes] = {
    "index.html": "<h1>Mug</h1>\n",
    "img/logo.png": b"\x89PNG\r\n\x1a\n-not-really",
}


def blobs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "sha256").rglob("*") if p.is_file())


def test_put_then_read_returns_the_files(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)

    stored = store.put(FILES)

    assert stored.id.startswith("sha256:")
    assert store.read(stored) == {
        "index.html": b"<h1>Mug</h1>\n",
        "img/logo.png": b"\x89PNG\r\n\x1a\n-not-really",
    }
    assert stored.manifest["index.html"] == {
        "sha256": hashlib.sha256(b"<h1>Mug</h1>\n").hexdigest(),
        "size": len(b"<h1>Mug</h1>\n"),
    }
    assert stored.size == sum(
        len(v if isinstance(v, bytes) else v.encode()) for v in FILES.values()
    )


def test_same_files_twice_give_same_id_and_one_blob_each(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)

    first = store.put(FILES)
    second = store.put(dict(reversed(list(FILES.items()))))

    assert first.id == second.id
    assert len(blobs(tmp_path)) == len(FILES)
    assert len(list((tmp_path / "manifests").iterdir())) == 1


def test_str_and_bytes_of_same_content_are_the_same_artifact(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)

    assert store.put({"a.txt": "héllo"}).id == store.put({"a.txt": "héllo".encode()}).id


def test_shared_content_is_stored_once(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)

    store.put({"a.html": "same", "b.html": "same"})
    store.put({"c.html": "same"})

    assert len(blobs(tmp_path)) == 1


@pytest.mark.parametrize(
    "changed",
    [
        {"index.html": "<h1>Mug!</h1>\n", "img/logo.png": FILES["img/logo.png"]},
        {"home.html": FILES["index.html"], "img/logo.png": FILES["img/logo.png"]},
        {"index.html": FILES["index.html"]},
    ],
    ids=["content", "name", "fewer-files"],
)
def test_any_change_gives_a_different_id(tmp_path: Path, changed: dict[str, str | bytes]) -> None:
    store = ArtifactStore(tmp_path)

    assert store.put(FILES).id != store.put(changed).id


def test_files_on_disk_are_read_only(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    stored = store.put(FILES)

    paths = [store.blob_path(entry["sha256"]) for entry in stored.manifest.values()]
    paths += list((tmp_path / "manifests").iterdir())

    assert len(paths) == len(FILES) + 1
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o444, path


def test_no_temporary_files_are_left_behind(tmp_path: Path) -> None:
    ArtifactStore(tmp_path).put(FILES)

    assert [p for p in tmp_path.rglob(".tmp-*")] == []


def test_tampered_blob_makes_read_fail_naming_the_file(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    stored = store.put(FILES)
    blob = store.blob_path(stored.manifest["index.html"]["sha256"])

    os.chmod(blob, 0o644)
    blob.write_bytes(b"<h1>defaced</h1>\n")

    with pytest.raises(StoreError) as caught:
        store.read(store.get(stored.id))

    assert "'index.html'" in caught.value.message
    assert stored.id in caught.value.message


def test_get_returns_the_stored_manifest(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    stored = store.put(FILES)

    # A fresh store over the same folder (another process) sees the same artifact.
    again = ArtifactStore(tmp_path).get(stored.id)

    assert again == stored


def test_get_unknown_id_raises_not_found(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    store.put(FILES)
    unknown = "sha256:" + "0" * 64

    with pytest.raises(NotFound) as caught:
        store.get(unknown)

    assert unknown in caught.value.message
