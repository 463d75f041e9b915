"""Access tokens: who an agent is, which rooms it may join, and what it may change.

A token is `<payload>.<signature>`, both base64url without padding. The payload is compact JSON:
`{"agent", "rooms" (a glob such as "project-*"), "ro" (read-only), "artifacts" (names the agent
may change, absent = all), "exp" (Unix time), "v": 1}`; the signature is HMAC-SHA256 of the
payload bytes with the hub's secret. Checks are constant-time and refuse anything malformed,
expired, or signed with another secret with `AuthError`, saying which.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import json
import math
import os
import time
from dataclasses import dataclass

from crdtdoc.errors import AuthError, InvalidValue, UsageError

TOKEN_VERSION = 1
MAX_TOKEN_CHARS = 4096
MIN_SECRET_BYTES = 16
SECRET_ENV = "CRDTDOC_SECRET"


@dataclass(frozen=True)
class Grant:
    """What a valid token allows."""

    agent: str
    rooms: str  # glob
    read_only: bool = False
    artifacts: frozenset[str] | None = None  # None: every artifact
    expires: float | None = None

    def allows_room(self, room: str) -> bool:
        return fnmatch.fnmatchcase(room, self.rooms)

    def allows_artifact(self, name: str) -> bool:
        return self.artifacts is None or name in self.artifacts


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_token_agent(token: str | None, agent: str) -> None:
    """Raises `InvalidValue` when `token` (read, not verified: that is the hub's job) names
    another agent than `agent`: the hub acts as the token's agent, so an agent run as
    `--agent eve` with alice's token would record claims and statuses under a name the hub
    does not use for it. A token that cannot be read is left for the hub to refuse."""
    if not token:
        return
    try:
        payload = json.loads(_unb64(token.partition(".")[0]))
    except (binascii.Error, ValueError, RecursionError):
        return
    named = payload.get("agent") if isinstance(payload, dict) else None
    if isinstance(named, str) and named != agent:
        raise InvalidValue(f"the token is {named}'s, not {agent}'s: run as --agent {named}")


def load_secret(path: str | None = None) -> bytes | None:
    """The hub secret from `path`, else from $CRDTDOC_SECRET, else None."""
    if path is not None:
        try:
            with open(path, "rb") as f:
                secret = f.read().strip()
        except OSError as exc:
            raise UsageError(f"cannot read the secret file {path}: {exc.strerror}") from None
    else:
        env = os.environ.get(SECRET_ENV)
        if not env:
            return None
        secret = env.encode()
    if len(secret) < MIN_SECRET_BYTES:
        raise UsageError(
            f"the secret must be at least {MIN_SECRET_BYTES} bytes; make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return secret


def create_token(
    secret: bytes,
    agent: str,
    rooms: str = "*",
    *,
    read_only: bool = False,
    artifacts: list[str] | None = None,
    ttl: float | None = None,
    now: float | None = None,
) -> str:
    """A signed token for `agent` (see the module docstring)."""
    if not agent or len(agent) > 200:
        raise UsageError("a token names an agent of 1..200 characters")
    payload: dict[str, object] = {"v": TOKEN_VERSION, "agent": agent, "rooms": rooms}
    if read_only:
        payload["ro"] = True
    if artifacts is not None:
        payload["artifacts"] = sorted(artifacts)
    if ttl is not None:
        if ttl <= 0:
            raise UsageError("a token's ttl must be positive")
        payload["exp"] = round((now if now is not None else time.time()) + ttl, 3)
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    signature = hmac.new(secret, body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(signature)}"


def verify_token(secret: bytes, token: str, now: float | None = None) -> Grant:
    """The grant a token carries; raises `AuthError` saying why it is refused."""
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
        raise AuthError("no valid token: pass ?token=... or an Authorization: Bearer header")
    body_text, dot, signature_text = token.partition(".")
    try:
        body, signature = _unb64(body_text), _unb64(signature_text)
    except (binascii.Error, ValueError):
        body, signature = b"", b""
    if not dot or not body or len(signature) != hashlib.sha256().digest_size:
        raise AuthError(
            "this is not a crdtdoc token (`crdtdoc token create` makes one: two base64url "
            "parts joined by a dot)"
        )
    expected = hmac.new(secret, body, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise AuthError("the token's signature does not match this hub's secret")
    try:
        payload = json.loads(body)
    except ValueError:
        raise AuthError("the token's payload is not JSON") from None
    if not isinstance(payload, dict) or payload.get("v") != TOKEN_VERSION:
        raise AuthError("unknown token format")
    agent, rooms = payload.get("agent"), payload.get("rooms")
    if not isinstance(agent, str) or not agent or not isinstance(rooms, str):
        raise AuthError("the token names no agent or rooms")
    expires = payload.get("exp")
    if expires is not None:
        if not isinstance(expires, (int, float)):
            raise AuthError("the token's expiry is not a number")
        if (now if now is not None else time.time()) >= expires:
            raise AuthError("the token has expired; ask for a new one")
    artifacts = payload.get("artifacts")
    if artifacts is not None and (
        not isinstance(artifacts, list) or not all(isinstance(a, str) for a in artifacts)
    ):
        raise AuthError("the token's artifact list is malformed")
    return Grant(
        agent,
        rooms,
        bool(payload.get("ro", False)),
        frozenset(artifacts) if artifacts is not None else None,
        float(expires) if expires is not None else None,
    )


def parse_duration(text: str) -> float:
    """Seconds in "90", "90s", "15m", "12h" or "7d"."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    factor = units.get(text[-1:])
    number = text[:-1] if factor else text
    try:
        value = float(number) * (factor or 1)
    except ValueError:
        raise UsageError(f"not a duration: {text!r} (use 90s, 15m, 12h or 7d)") from None
    if not 0 < value < math.inf:
        raise UsageError("a duration must be positive and finite")
    return value
