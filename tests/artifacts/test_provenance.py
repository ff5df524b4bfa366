"""Signed provenance on its own: DSSE round trip, and each kind of tampering caught."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from shipyard.artifacts import (
    PAYLOAD_TYPE,
    Attempt,
    SigningKey,
    build_statement,
    check_statement,
    digest_of,
    pae,
    sign_statement,
    verify_envelope,
)
from shipyard.errors import ConfigError, StoreError

MANIFEST = {
    "index.html": {"sha256": "a" * 64, "size": 10},
    "data.json": {"sha256": "b" * 64, "size": 4},
}
REPORT = {"passed": True, "results": [{"check": "html", "passed": True, "findings": []}]}
RECORD = {
    "task": "t-1",
    "domain": "storefront",
    "job_kind": "landing-page",
    "input_key": "SKU-1",
    "inputs_hash": "c" * 64,
    "template_hash": "sha256:" + "d" * 64,
    "prompt_hash": "sha256:" + "e" * 64,
    "provider": "openai",
    "model": "m-1",
    "attempts": 2,
    "recalled": [7],
    "submitted_at": "2026-11-23T10:00:00+00:00",
    "registered_at": "2026-11-23T10:01:00+00:00",
}


def statement(**changes: Any) -> dict[str, Any]:
    attempts = [
        Attempt(number=1, tier="local", provider="openai", model="m-1", prompt_hash="sha256:1",
                report={"passed": False}, passed=False),
        Attempt(number=2, tier="local", provider="openai", model="m-1", prompt_hash="sha256:2",
                report=REPORT, passed=True),
    ]  # fmt: skip
    return (
        build_statement(
            artifact_id="sha256:" + "f" * 64,
            manifest=MANIFEST,
            record=RECORD,
            attempts=attempts,
            inputs={"sku": "SKU-1"},
            approvals=[{"actor": "alice", "decision": "approved"}],
        )
        | changes
    )


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return SigningKey.create(tmp_path / "keys")


def test_the_statement_is_in_toto_v1_with_slsa_provenance_v1(key: SigningKey) -> None:
    s = statement()
    assert s["_type"] == "https://in-toto.io/Statement/v1"
    assert s["predicateType"] == "https://slsa.dev/provenance/v1"
    assert s["subject"] == [
        {"name": "data.json", "digest": {"sha256": "b" * 64}},
        {"name": "index.html", "digest": {"sha256": "a" * 64}},
    ]
    build = s["predicate"]["buildDefinition"]
    assert build["externalParameters"]["inputs"] == {"sku": "SKU-1"}
    assert build["internalParameters"]["model"] == "m-1"
    assert build["internalParameters"]["promptTemplateDigest"] == {"sha256": "d" * 64}
    names = [d["name"] for d in build["resolvedDependencies"]]
    assert names == ["job-kind-templates", "prompt/attempt-1", "prompt/attempt-2", "memory/7"]
    run = s["predicate"]["runDetails"]
    assert run["metadata"]["invocationId"] == "t-1"
    byproducts = {b["name"]: b for b in run["byproducts"]}
    assert byproducts["checks/attempt-2"]["digest"]["sha256"] == digest_of(REPORT)
    assert byproducts["approvals"]["annotations"]["approvals"][0]["actor"] == "alice"


def test_sign_then_verify_round_trips(key: SigningKey, tmp_path: Path) -> None:
    envelope = sign_statement(statement(), key)
    assert envelope["payloadType"] == PAYLOAD_TYPE
    assert envelope["signatures"][0]["keyid"] == key.keyid
    public = SigningKey.load(tmp_path / "keys", private=False)  # verifying needs no secret
    assert verify_envelope(envelope, public) == statement()


def test_the_signature_covers_dsse_pre_authentication_encoding(key: SigningKey) -> None:
    envelope = sign_statement(statement(), key)
    payload = base64.b64decode(envelope["payload"])
    signature = base64.b64decode(envelope["signatures"][0]["sig"])
    assert key.private is not None
    key.public.verify(signature, pae(PAYLOAD_TYPE, payload))  # raises if not
    assert pae("t", b"xy") == b"DSSEv1 1 t 2 xy"


def test_a_changed_statement_fails_verification(key: SigningKey) -> None:
    envelope = sign_statement(statement(), key)
    forged = json.loads(base64.b64decode(envelope["payload"]))
    forged["subject"][0]["digest"]["sha256"] = "0" * 64
    envelope["payload"] = base64.b64encode(json.dumps(forged).encode()).decode()
    with pytest.raises(StoreError, match="signature does not match the statement"):
        verify_envelope(envelope, key)


def test_a_changed_signature_fails_verification(key: SigningKey) -> None:
    envelope = sign_statement(statement(), key)
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[0] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(StoreError, match="signature does not match"):
        verify_envelope(envelope, key)


def test_another_key_is_not_this_projects(key: SigningKey, tmp_path: Path) -> None:
    other = SigningKey.create(tmp_path / "other")
    with pytest.raises(StoreError, match="not signed by this project's key"):
        verify_envelope(sign_statement(statement(), other), key)


def test_the_private_key_is_owner_only_and_never_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "k"
    key = SigningKey.create(folder)
    assert (folder / "signing.key").stat().st_mode & 0o777 == 0o600
    assert SigningKey.load(folder).keyid == key.keyid
    with pytest.raises(ConfigError, match="already exists"):
        SigningKey.create(folder)
    (folder / "signing.key").chmod(0o644)
    with pytest.raises(ConfigError, match="open to other users"):
        SigningKey.load(folder)


def test_check_statement_names_each_disagreement() -> None:
    s = statement()
    assert (
        check_statement(
            s,
            artifact_id="sha256:" + "f" * 64,
            manifest=MANIFEST,
            reports={1: {"passed": False}, 2: REPORT},
        )
        == []
    )
    changed = {
        "index.html": {"sha256": "9" * 64, "size": 10},
        "extra.txt": {"sha256": "8" * 64, "size": 1},
    }
    problems = check_statement(
        s,
        artifact_id="sha256:" + "0" * 64,
        manifest=changed,
        reports={1: {"passed": False}, 2: REPORT | {"passed": False}},
    )
    assert problems == [
        f"the statement is about artifact sha256:{'f' * 64}, not this one",
        "file data.json is in the statement but not in the artifact",
        "file extra.txt is in the artifact but not in the statement",
        f"file index.html: the artifact holds sha256 {'9' * 16}…, the statement signed {'a' * 16}…",
        "the check report of attempt 2 was changed after signing",
    ]
    missing = check_statement(
        s, artifact_id="sha256:" + "f" * 64, manifest=MANIFEST, reports={2: REPORT}
    )
    assert missing == ["the check report of attempt 1 is missing from the records"]


def test_a_lost_private_key_is_not_silently_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "k"
    SigningKey.create(folder)
    (folder / "signing.key").unlink()
    with pytest.raises(ConfigError, match=r"signing\.key is missing but"):
        SigningKey.load_or_create(folder)
