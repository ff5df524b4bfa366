from __future__ import annotations

import os
from pathlib import Path

import pytest

from shipyard.errors import InputError, StateError
from shipyard.release import StaticSite

PAGE_A = {"index.html": b"<h1>A</h1>", "img/a.png": b"png-a"}
PAGE_B = {"index.html": b"<h1>B</h1>"}


@pytest.fixture
def site(tmp_path: Path) -> StaticSite:
    return StaticSite("storefront", tmp_path / "site")


def versions(site: StaticSite) -> list[str]:
    return sorted(p.name for p in (site.root / "versions").iterdir())


def live_dir(site: StaticSite) -> Path:
    folder = site.live_dir()
    assert folder is not None
    return folder


def live(site: StaticSite, relative: str) -> bytes:
    return (live_dir(site) / relative).read_bytes()


def test_nothing_is_live_before_the_first_publish(site: StaticSite) -> None:
    assert site.live_dir() is None
    assert site.live_version() is None


def test_publish_makes_files_live_under_the_path(site: StaticSite) -> None:
    result = site.publish(key="k1", path="products/sku-1", files=PAGE_A, title="Mug")

    assert result.already_live is False
    assert result.url_path == "/products/sku-1/"
    assert os.readlink(site.root / "current") == os.path.join("versions", result.version)
    assert site.live_version() == result.version
    assert live(site, "products/sku-1/index.html") == b"<h1>A</h1>"
    assert live(site, "products/sku-1/img/a.png") == b"png-a"
    assert site.manifest()["releases"]["k1"]["path"] == "products/sku-1"


def test_publishing_a_live_key_again_changes_nothing(site: StaticSite) -> None:
    first = site.publish(key="k1", path="products/sku-1", files=PAGE_A)

    again = site.publish(key="k1", path="products/sku-1", files={"index.html": b"other"})

    assert again.already_live is True
    assert again.version == first.version
    assert versions(site) == [first.version]
    assert live(site, "products/sku-1/index.html") == b"<h1>A</h1>"


def test_second_key_adds_a_version_keeping_both_paths_live(site: StaticSite) -> None:
    first = site.publish(key="k1", path="products/sku-1", files=PAGE_A)
    second = site.publish(key="k2", path="products/sku-2", files=PAGE_B)

    assert second.already_live is False
    assert second.version != first.version
    assert versions(site) == sorted([first.version, second.version])
    assert site.live_version() == second.version
    assert live(site, "products/sku-1/index.html") == b"<h1>A</h1>"
    assert live(site, "products/sku-2/index.html") == b"<h1>B</h1>"
    # The unchanged page of the first release is shared, not copied.
    old = (site.root / "versions" / first.version / "products/sku-1/index.html").stat()
    new = (site.root / "versions" / second.version / "products/sku-1/index.html").stat()
    assert new.st_ino == old.st_ino
    assert new.st_nlink > 1
    # ... and the earlier version did not gain the new page.
    assert not (site.root / "versions" / first.version / "products/sku-2").exists()


def test_new_key_on_same_path_replaces_its_files(site: StaticSite) -> None:
    first = site.publish(key="k1", path="products/sku-1", files=PAGE_A)

    site.publish(key="k1-v2", path="products/sku-1", files={"index.html": b"<h1>A2</h1>"})

    assert live(site, "products/sku-1/index.html") == b"<h1>A2</h1>"
    assert not (live_dir(site) / "products/sku-1/img/a.png").exists()
    assert set(site.manifest()["releases"]) == {"k1-v2"}
    # The earlier version is untouched: writing the new page did not go through the link.
    old_page = site.root / "versions" / first.version / "products/sku-1/index.html"
    assert old_page.read_bytes() == b"<h1>A</h1>"


def test_rollback_returns_to_the_previous_version(site: StaticSite) -> None:
    first = site.publish(key="k1", path="products/sku-1", files=PAGE_A)
    second = site.publish(key="k2", path="products/sku-2", files=PAGE_B)

    result = site.rollback()

    assert result.from_version == second.version
    assert result.to_version == first.version
    assert result.removed_keys == ("k2",)
    assert site.live_version() == first.version
    assert live(site, "products/sku-1/index.html") == b"<h1>A</h1>"
    assert not (live_dir(site) / "products/sku-2").exists()


def test_rolled_back_key_can_be_published_again(site: StaticSite) -> None:
    site.publish(key="k1", path="products/sku-1", files=PAGE_A)
    site.publish(key="k2", path="products/sku-2", files=PAGE_B)
    site.rollback()

    result = site.publish(key="k2", path="products/sku-2", files=PAGE_B)

    assert result.already_live is False
    assert live(site, "products/sku-2/index.html") == b"<h1>B</h1>"


def test_rollback_with_a_single_version_is_refused(site: StaticSite) -> None:
    only = site.publish(key="k1", path="products/sku-1", files=PAGE_A)

    with pytest.raises(StateError) as caught:
        site.rollback()

    assert "'storefront'" in caught.value.message
    assert site.live_version() == only.version


def test_rollback_before_any_publish_is_refused(site: StaticSite) -> None:
    with pytest.raises(StateError):
        site.rollback()


def test_incomplete_version_is_removed_and_never_live(site: StaticSite) -> None:
    first = site.publish(key="k1", path="products/sku-1", files=PAGE_A)
    # A crash mid-build: the next version's folder exists, but its manifest was never written.
    crashed = site.root / "versions" / f"{int(first.version) + 1:06d}"
    (crashed / "products/half-built").mkdir(parents=True)
    (crashed / "products/half-built/index.html").write_bytes(b"half")
    assert site.live_version() == first.version

    second = site.publish(key="k2", path="products/sku-2", files=PAGE_B)

    assert site.live_version() == second.version
    assert not (live_dir(site) / "products/half-built").exists()
    assert "k2" in site.manifest()["releases"]
    for version in versions(site):
        assert (site.root / "versions" / version / ".shipyard-version.json").is_file()
        assert not (site.root / "versions" / version / "products/half-built").exists()


@pytest.mark.parametrize("path", ["../outside", "products/../../outside", "a/../../b"])
def test_path_leaving_the_site_is_refused(site: StaticSite, path: str) -> None:
    with pytest.raises(InputError) as caught:
        site.publish(key="k1", path=path, files=PAGE_B)

    assert repr(path) in caught.value.message
    assert site.live_dir() is None
    assert not (site.root.parent / "outside").exists()
    assert not (site.root.parent / "b").exists()


def test_file_name_leaving_the_site_is_refused(site: StaticSite) -> None:
    first = site.publish(key="k1", path="products/sku-1", files=PAGE_A)

    with pytest.raises(InputError):
        site.publish(key="k2", path="products/sku-2", files={"../../../../escape.html": b"x"})

    assert site.live_version() == first.version
    assert "k2" not in site.manifest()["releases"]
    assert not (site.root.parent / "escape.html").exists()


def test_pruning_keeps_at_most_keep_versions(tmp_path: Path) -> None:
    site = StaticSite("storefront", tmp_path / "site", keep_versions=3)

    results = [
        site.publish(key=f"k{n}", path=f"products/sku-{n}", files={"index.html": b"%d" % n})
        for n in range(1, 6)
    ]

    assert versions(site) == [r.version for r in results[-3:]]
    assert site.live_version() == results[-1].version
    for n in range(1, 6):
        assert live(site, f"products/sku-{n}/index.html") == b"%d" % n


def test_rollback_still_possible_after_rollback_then_publish(tmp_path: Path) -> None:
    site = StaticSite("storefront", tmp_path / "site", keep_versions=2)
    for n in range(1, 4):
        site.publish(key=f"k{n}", path=f"products/sku-{n}", files={"index.html": b"%d" % n})
    site.rollback()  # k3 is withdrawn; the version holding k1 and k2 is live
    site.publish(key="k4", path="products/sku-4", files={"index.html": b"4"})

    result = site.rollback()  # undo k4: back to the version holding k1 and k2

    assert result.removed_keys == ("k4",)
    assert live(site, "products/sku-2/index.html") == b"2"


def test_root_index_lists_published_paths(site: StaticSite) -> None:
    site.publish(key="k1", path="products/sku-1", files=PAGE_A, title="Enamel <Mug>")
    site.publish(key="k2", path="products/sku-2", files=PAGE_B)

    index = live(site, "index.html").decode()

    assert "<title>storefront</title>" in index
    assert '<a href="/products/sku-1/">Enamel &lt;Mug&gt;</a>' in index
    assert '<a href="/products/sku-2/">products/sku-2</a>' in index


def test_rollback_restores_the_previous_index(site: StaticSite) -> None:
    site.publish(key="k1", path="products/sku-1", files=PAGE_A)
    site.publish(key="k2", path="products/sku-2", files=PAGE_B)

    site.rollback()

    index = live(site, "index.html").decode()
    assert "/products/sku-1/" in index
    assert "/products/sku-2/" not in index
