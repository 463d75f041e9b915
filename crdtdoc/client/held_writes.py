"""`HeldWrites`: the local updates a guarded or fenced commit holds back until the hub decides.

While a `commit(expect=..., on=..., fence=...)` waits for the hub's answer, no local update is
sent as it commits: the block's own updates travel together as one `commit` request that the hub
applies whole or not at all, and updates made meanwhile (the async replica keeps running while it
waits) wait behind them. The answer settles them: applied, the held ones are journaled and the
later ones go on their way; refused (or unknown), all of them are undone. This class only
decides; the replica sends, journals and undoes (PROTOCOL.md section 10, `commit`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from crdtdoc.client.coordination import Fencing
from crdtdoc.errors import TooLarge
from crdtdoc.protocol.extension import Request, encode_extension
from crdtdoc.protocol.messages import encode_message
from crdtdoc.protocol.requests import Commit
from crdtdoc.replica import artifact_names
from crdtdoc.versions import Version


class HeldWrites:
    """The updates held for the guarded commit in flight, if one is (see the module docstring)."""

    def __init__(self) -> None:
        self._held: list[bytes] | None = None

    @property
    def active(self) -> bool:
        """Whether a guarded commit is in flight: local updates are held, not sent."""
        return self._held is not None

    def begin(self) -> None:
        """A guarded commit starts: from now on local updates are held."""
        self._held = []

    def hold(self, update: bytes) -> bool:
        """Holds a local update if a guarded commit is in flight (True); False: send it."""
        if self._held is None:
            return False
        self._held.append(update)
        return True

    def request(
        self,
        client_id: int,
        expect: Version | None,
        on: Iterable[object],
        fence: Fencing | None,
        limit: int | None,
        url: str,
    ) -> tuple[list[bytes], dict[str, Any] | None]:
        """The held updates and the arguments of the `commit` request that submits them (None:
        nothing is held, and the hold is over). Raises `TooLarge`, sending nothing, when the
        request would pass the hub's `limit` on a message (`url`: the hub, for the error)."""
        held = list(self._held or [])
        if not held:
            self._held = None
            return held, None
        names = tuple(sorted(artifact_names(on))) if expect is not None else ()
        lease = (fence.name, fence.token) if fence is not None else None
        args = Commit(tuple(held), client_id, lease, expect, names).to_args()
        if limit is not None and sum(map(len, held)) > limit // 2:  # else small: not measured
            size = len(encode_message(encode_extension(Request(0, Commit.op, args))))
            if size > limit:
                raise TooLarge(
                    f"this write is {size:,} bytes as one message and the hub at {url} "
                    f"accepts at most {limit:,} (its max_message_bytes); nothing was written: "
                    "write it in smaller parts",
                    1009,
                )
        return held, args

    def settle(self, submitted: list[bytes]) -> list[bytes]:
        """The hub applied `submitted`: the hold ends. Returns the updates committed while it
        decided, to send as usual."""
        later = (self._held or [])[len(submitted) :]
        self._held = None
        return later

    def drop(self) -> list[bytes]:
        """Refused, or the outcome is unknown: the hold ends. Returns every held update, for
        the replica to undo."""
        held, self._held = self._held or [], None
        return held
