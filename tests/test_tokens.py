from __future__ import annotations

from pathlib import Path

import pytest

from crdtdoc.errors import AuthError, CrdtdocError
from crdtdoc.tokens import create_token, load_secret, parse_duration, verify_token

SECRET = b"s" * 32


def test_a_token_carries_its_grant() -> None:
    token = create_token(SECRET, "alice", "proj-*", read_only=True, artifacts=["design"], ttl=60)
    grant = verify_token(SECRET, token)
    assert (grant.agent, grant.read_only, grant.artifacts) == ("alice", True, {"design"})
    assert grant.allows_room("proj-x") and not grant.allows_room("other")
    assert grant.allows_artifact("design") and not grant.allows_artifact("backlog")
    assert verify_token(SECRET, create_token(SECRET, "bob")).artifacts is None


@pytest.mark.parametrize(
    ("token", "pattern"),
    [
        ("", "no valid token"),
        ("x" * 5000, "no valid token"),
        ("not-a-token", "not a crdtdoc token"),
        ("!!!.???", "not a crdtdoc token"),
        ("e30." + "A" * 43, "signature"),  # well formed, signed with another secret
        (create_token(b"another secret, 32 bytes long!!", "alice"), "signature"),
        (create_token(SECRET, "alice", ttl=10, now=0.0), "expired"),
    ],
)
def test_refusals_say_why(token: str, pattern: str) -> None:
    with pytest.raises(AuthError, match=pattern) as refused:
        verify_token(SECRET, token)
    assert refused.value.close_code == 4401


def test_a_tampered_payload_fails_the_signature() -> None:
    signature = create_token(SECRET, "mallory", "own-room").split(".")[1]
    forged = create_token(SECRET, "mallory", "*").split(".")[0]
    with pytest.raises(AuthError, match="signature"):
        verify_token(SECRET, f"{forged}.{signature}")


def test_secrets_and_durations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRDTDOC_SECRET", raising=False)
    assert load_secret() is None
    (tmp_path / "short").write_text("abc")
    with pytest.raises(CrdtdocError, match="at least 16 bytes"):
        load_secret(str(tmp_path / "short"))
    (tmp_path / "good").write_text("a" * 40 + "\n")
    assert load_secret(str(tmp_path / "good")) == b"a" * 40
    monkeypatch.setenv("CRDTDOC_SECRET", "b" * 20)
    assert load_secret() == b"b" * 20
    assert [parse_duration(d) for d in ("90", "90s", "15m", "12h", "7d")] == [
        90,
        90,
        900,
        43200,
        604800,
    ]
    with pytest.raises(CrdtdocError, match="not a duration"):
        parse_duration("soon")
