"""The artifact store, folder and database backends, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from shipyard.artifacts import ArtifactBackend, ArtifactStore, DatabaseArtifactStore
from shipyard.config import Project, load_project
from shipyard.errors import ConfigError, NotFound, StoreError
from shipyard.jobs import BatchRow
from shipyard.service import Runtime, approve, submit, task_story, verify_artifact
from shipyard.store import (
    ArtifactBlobRow,
    ArtifactManifestRow,
    make_engine,
    migrate,
    session_factory,
)
from support import PRODUCT, SETTLED, copy_example, wait_for_state, wait_until_finished

FILES: dict[str, str | bytes] = {
    "index.html": "<h1>Mug</h1>\n",
    "img/logo.png": b"\x89PNG\r\n\x1a\n-not-really",
}

BACKENDS = pytest.mark.parametrize(
    ("backend", "database"),
    [
        pytest.param("folder", "sqlite", id="folder"),
        pytest.param("database", "sqlite", id="database-sqlite"),
        pytest.param(
            "database", "postgresql", id="database-postgresql", marks=pytest.mark.postgres
        ),
    ],
    indirect=True,
)
"""Runs a test on each backend: the folder, and the database on SQLite and on PostgreSQL."""

DATABASES = pytest.mark.parametrize(
    "database",
    ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
    indirect=True,
)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(database: str, tmp_path: Path) -> str:
    """The database under test: a fresh SQLite file, or the fresh PostgreSQL database."""
    return f"sqlite:///{tmp_path / 'shipyard.db'}" if database == "sqlite" else database


@pytest.fixture
def open_sessions(db_url: str) -> Iterator[Callable[[], sessionmaker[Session]]]:
    """Sessions on the migrated database; each call is a new engine (as another process has)."""
    engines: list[Engine] = []

    def open_() -> sessionmaker[Session]:
        engine = make_engine(db_url)
        migrate(engine)
        engines.append(engine)
        return session_factory(engine)

    yield open_
    for engine in engines:
        engine.dispose()


@pytest.fixture
def reopen(
    backend: str, tmp_path: Path, open_sessions: Callable[[], sessionmaker[Session]]
) -> Callable[[], ArtifactBackend]:
    """A new store over the same folder or database, as another worker would open it."""
    if backend == "folder":
        return lambda: ArtifactStore(tmp_path / "artifacts")
    return lambda: DatabaseArtifactStore(open_sessions())


@pytest.fixture
def store(reopen: Callable[[], ArtifactBackend]) -> ArtifactBackend:
    return reopen()


def counts(store: ArtifactBackend) -> tuple[int, int]:
    """(blobs, manifests) the store holds."""
    if isinstance(store, ArtifactStore):
        blobs = [p for p in (store.root / "sha256").rglob("*") if p.is_file()]
        return len(blobs), len(list((store.root / "manifests").iterdir()))
    assert isinstance(store, DatabaseArtifactStore)
    with store.sessions() as session:
        blob_rows = session.scalar(select(func.count()).select_from(ArtifactBlobRow))
        manifest_rows = session.scalar(select(func.count()).select_from(ArtifactManifestRow))
    return int(blob_rows or 0), int(manifest_rows or 0)


def tamper_blob(store: ArtifactBackend, digest: str, content: bytes | None) -> None:
    """Change (or, with None, delete) one stored file behind the store's back."""
    if isinstance(store, ArtifactStore):
        blob = store.blob_path(digest)
        os.chmod(blob, 0o644)
        if content is None:
            blob.unlink()
        else:
            blob.write_bytes(content)
        return
    assert isinstance(store, DatabaseArtifactStore)
    where = ArtifactBlobRow.digest == digest
    with store.sessions() as session, session.begin():
        if content is None:
            session.execute(delete(ArtifactBlobRow).where(where))
        else:
            session.execute(update(ArtifactBlobRow).where(where).values(content=content))


def tamper_manifest(store: ArtifactBackend, artifact_id: str, manifest: bytes) -> None:
    if isinstance(store, ArtifactStore):
        [path] = (store.root / "manifests").iterdir()
        os.chmod(path, 0o644)
        path.write_bytes(manifest)
        return
    assert isinstance(store, DatabaseArtifactStore)
    with store.sessions() as session, session.begin():
        session.execute(
            update(ArtifactManifestRow)
            .where(ArtifactManifestRow.id == artifact_id)
            .values(manifest=manifest)
        )


@BACKENDS
def test_put_then_read_returns_the_files(store: ArtifactBackend) -> None:
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


@BACKENDS
def test_same_files_twice_give_same_id_and_one_blob_each(store: ArtifactBackend) -> None:
    first = store.put(FILES)
    second = store.put(dict(reversed(list(FILES.items()))))

    assert first.id == second.id
    assert counts(store) == (len(FILES), 1)


@BACKENDS
def test_str_and_bytes_of_same_content_are_the_same_artifact(store: ArtifactBackend) -> None:
    assert store.put({"a.txt": "héllo"}).id == store.put({"a.txt": "héllo".encode()}).id


@BACKENDS
def test_shared_content_is_stored_once(store: ArtifactBackend) -> None:
    store.put({"a.html": "same", "b.html": "same"})
    store.put({"c.html": "same"})

    assert counts(store) == (1, 2)


@BACKENDS
@pytest.mark.parametrize(
    "changed",
    [
        {"index.html": "<h1>Mug!</h1>\n", "img/logo.png": FILES["img/logo.png"]},
        {"home.html": FILES["index.html"], "img/logo.png": FILES["img/logo.png"]},
        {"index.html": FILES["index.html"]},
    ],
    ids=["content", "name", "fewer-files"],
)
def test_any_change_gives_a_different_id(
    store: ArtifactBackend, changed: dict[str, str | bytes]
) -> None:
    assert store.put(FILES).id != store.put(changed).id


@DATABASES
def test_both_backends_give_the_same_files_the_same_id(
    tmp_path: Path, open_sessions: Callable[[], sessionmaker[Session]]
) -> None:
    folder = ArtifactStore(tmp_path / "artifacts").put(FILES)
    database = DatabaseArtifactStore(open_sessions()).put(FILES)

    assert database == folder
    assert (
        folder.id
        == "sha256:"
        + hashlib.sha256(
            next((tmp_path / "artifacts" / "manifests").iterdir()).read_bytes()
        ).hexdigest()
    )


@BACKENDS
def test_concurrent_puts_of_the_same_content_all_succeed_with_one_copy(
    reopen: Callable[[], ArtifactBackend],
) -> None:
    # Each thread is a worker with its own store (and, for the database, its own engine);
    # half store FILES, half a version sharing its logo, all at the same moment.
    sharing: dict[str, str | bytes] = {
        "other.html": "<p>x</p>",
        "img/logo.png": FILES["img/logo.png"],
    }
    workers = [reopen() for _ in range(8)]
    start = threading.Barrier(len(workers))
    ids: list[str] = []
    errors: list[BaseException] = []

    def put(index: int) -> None:
        start.wait(timeout=30)
        try:
            ids.append(workers[index].put(FILES if index % 2 else sharing).id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(ids) == len(workers) and len(set(ids)) == 2
    assert counts(workers[0]) == (3, 2)
    for artifact_id in set(ids):
        assert workers[0].read(workers[0].get(artifact_id))


@pytest.mark.parametrize("backend", ["folder"], indirect=True)
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_files_on_disk_are_read_only(store: ArtifactBackend) -> None:
    assert isinstance(store, ArtifactStore)
    stored = store.put(FILES)

    paths = [store.blob_path(entry["sha256"]) for entry in stored.manifest.values()]
    paths += list((store.root / "manifests").iterdir())

    assert len(paths) == len(FILES) + 1
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o444, path


def test_no_temporary_files_are_left_behind(tmp_path: Path) -> None:
    ArtifactStore(tmp_path).put(FILES)

    assert [p for p in tmp_path.rglob(".tmp-*")] == []


@BACKENDS
def test_tampered_blob_makes_read_fail_naming_the_file(store: ArtifactBackend) -> None:
    stored = store.put(FILES)

    tamper_blob(store, stored.manifest["index.html"]["sha256"], b"<h1>defaced</h1>\n")

    with pytest.raises(StoreError) as caught:
        store.read(store.get(stored.id))

    assert "'index.html'" in caught.value.message
    assert "does not match its digest" in caught.value.message
    assert stored.id in caught.value.message
    assert "restore it from a backup" in (caught.value.hint or "")


@BACKENDS
def test_missing_blob_makes_read_fail_naming_the_file(store: ArtifactBackend) -> None:
    stored = store.put(FILES)

    tamper_blob(store, stored.manifest["img/logo.png"]["sha256"], None)

    with pytest.raises(StoreError, match=r"file 'img/logo.png' is missing from the store"):
        store.read(store.get(stored.id))


@BACKENDS
def test_tampered_manifest_makes_get_fail(store: ArtifactBackend) -> None:
    stored = store.put(FILES)
    forged = {**stored.manifest, "extra.html": stored.manifest["index.html"]}

    tamper_manifest(store, stored.id, json.dumps(forged).encode())

    with pytest.raises(StoreError, match="its manifest was modified"):
        store.get(stored.id)


@BACKENDS
def test_get_returns_the_stored_manifest(
    store: ArtifactBackend, reopen: Callable[[], ArtifactBackend]
) -> None:
    stored = store.put(FILES)

    # A fresh store over the same folder or database (another process) sees the same artifact.
    again = reopen().get(stored.id)

    assert again == stored


@BACKENDS
def test_get_unknown_id_raises_not_found(store: ArtifactBackend) -> None:
    store.put(FILES)
    unknown = "sha256:" + "0" * 64

    with pytest.raises(NotFound) as caught:
        store.get(unknown)

    assert unknown in caught.value.message


@BACKENDS
def test_remove_frees_unshared_files_and_keeps_shared_ones(store: ArtifactBackend) -> None:
    shared = b"shared by both versions"
    only_old = b"only the old version has this"
    old = store.put({"a.html": shared, "b.html": only_old})
    kept = store.put({"c.html": shared})

    freed = store.remove([old.id], keep=[kept.id])

    assert freed == len(only_old)
    assert counts(store) == (1, 1)
    assert store.read(store.get(kept.id)) == {"c.html": shared}
    with pytest.raises(NotFound):
        store.get(old.id)
    # The same content stored again brings the version back whole.
    assert store.put({"a.html": shared, "b.html": only_old}).id == old.id
    assert store.read(store.get(old.id))["b.html"] == only_old


@pytest.mark.parametrize("backend", ["database"], indirect=True)
@DATABASES
def test_database_remove_spares_files_of_versions_stored_after_the_keep_list(
    store: ArtifactBackend,
) -> None:
    old = store.put({"a.html": "shared", "b.html": "old"})
    newer = store.put({"c.html": "shared"})  # stored while gc was deciding: not in keep

    assert store.remove([old.id], keep=[]) == len("old")
    assert store.read(store.get(newer.id)) == {"c.html": b"shared"}


# --- which backend a project gets, and the pipeline on it -----------------------------------


def _project(tmp_path: Path, artifacts: str) -> Project:
    root = copy_example(tmp_path / "shop")
    config = root / "shipyard.toml"
    config.write_text(config.read_text() + "\n[artifacts]\n" + artifacts + "\n")
    return load_project(root)


@pytest.mark.parametrize(
    ("setting", "url", "chosen"),
    [
        ("", "sqlite:///x.db", "folder"),
        ("", "postgresql://db/x", "database"),
        ('folder = "/mnt/shared/artifacts"', "postgresql://db/x", "folder"),
        ('backend = "folder"', "postgresql://db/x", "folder"),
        ('backend = "database"', "sqlite:///x.db", "database"),
    ],
)
def test_auto_picks_the_database_on_postgresql_unless_a_folder_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, url: str, chosen: str
) -> None:
    monkeypatch.setenv("SHIPYARD_DATABASE_URL", url)

    project = _project(tmp_path, setting)

    assert project.artifact_backend == chosen


def test_folder_is_relative_to_the_project(tmp_path: Path) -> None:
    project = _project(tmp_path, 'backend = "folder"\nfolder = "../shared/artifacts"')

    assert project.artifacts_dir == (tmp_path / "shared" / "artifacts").resolve()


def test_a_folder_with_the_database_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"artifacts\.folder is for the folder backend"):
        _project(tmp_path, 'backend = "database"\nfolder = "x"')


def test_the_pipeline_keeps_files_where_the_default_backend_says(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(project)
    job = rt.jobs.get("landing-page")
    task_id = submit(rt, job, [BatchRow(where="t", data=PRODUCT)], submitted_by="me").submitted[0]
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    approve(rt, task_id, actor="alice", reason="fine")
    assert wait_until_finished(rt, task_id) == "published"

    artifact_id = task_story(rt, task_id).task.artifact_id
    with rt.sessions() as session:
        in_database = set(session.scalars(select(ArtifactManifestRow.id)))
    on_disk = project.state_dir / "artifacts"
    if project.is_sqlite:
        assert isinstance(rt.artifacts, ArtifactStore)
        assert in_database == set()
        assert (on_disk / "manifests" / (artifact_id.replace(":", "-") + ".json")).is_file()
    else:
        assert isinstance(rt.artifacts, DatabaseArtifactStore)
        assert in_database == {artifact_id}
        assert not on_disk.exists() or not any(on_disk.rglob("*"))
    assert verify_artifact(rt, artifact_id).ok
    site = rt.target("storefront-site").live_dir()
    assert site is not None
    page = site / "products" / PRODUCT["sku"].lower() / "index.html"
    assert page.read_bytes() == rt.artifacts.read(rt.artifacts.get(artifact_id))["index.html"]
