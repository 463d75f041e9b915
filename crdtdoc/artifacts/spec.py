"""`InterfaceSpec`: named members (an interface's methods, a schema's fields) whose concurrent
writes are all kept and shown as conflicts, never silently overwritten.

A spec is a Yjs root Y.Map (layout in docs/SCHEMA.md). Each write of a member is its own entry,
`"m:<write id>" -> {"member", "value", "by", "at"}`, and a write deletes exactly the entries for
that member its writer had seen. So each member is a multi-value register: after sequential writes
one value remains; writes made concurrently (neither writer saw the other's) all remain, and
reading the member raises `ConcurrentValues` with every value and its author until someone
`resolve`s it. Entries are flat root keys: no nested type is ever created concurrently under one
key, which in Yjs would make one writer's whole subtree vanish.

`freeze()` records `"frozen" -> {"by", "at", "version"}`; afterwards writes raise `FrozenError`.
`freeze(approvers=..., quorum=...)` proposes the freeze instead (`"freeze"`), which takes effect
once the approvals (`"approval:<client id>"` entries, `approve()`) do (`crdtdoc.gates`).

Entries are read through `crdtdoc.safe_read`: an `m:` entry that is not an object naming its member
is no value of any member, and entries the engine cannot read are left out.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pycrdt import Map

from crdtdoc import safe_read
from crdtdoc.artifacts.base import Artifact
from crdtdoc.errors import (
    ConcurrentValues,
    FrozenError,
    InvalidValue,
    NotFound,
    ReviewRefused,
    UsageError,
)
from crdtdoc.gates import (
    APPROVAL_PREFIX,
    PROPOSAL_KEY,
    Proposal,
    check_required,
    proposal_of,
    signed_by,
)
from crdtdoc.values import JSONValue, check_text, to_yjs
from crdtdoc.versions import Version

ENTRY_PREFIX = "m:"
FROZEN_KEY = "frozen"
_MISSING: Any = object()


@dataclass(frozen=True)
class SpecValue:
    """One value of a member, with who wrote it and when."""

    value: JSONValue
    agent: str | None
    at: float | None


class InterfaceSpec(Artifact[Map[Any]]):
    """A shared interface spec (see the module docstring for the merge rules)."""

    __slots__ = ()
    artifact = "spec"
    root_type = Map

    def _entries(self) -> dict[str, list[tuple[str, SpecValue]]]:
        """member -> [(entry key, value)], ordered by (time, agent, key)."""
        out: dict[str, list[tuple[str, SpecValue]]] = {}
        for key, raw in safe_read.entries(self._root()):
            if not key.startswith(ENTRY_PREFIX):
                continue
            written = safe_read.json_value(raw)
            if not isinstance(written, dict):
                continue
            member = written.get("member")
            if not isinstance(member, str):
                continue
            by = written.get("by")
            value = SpecValue(
                written.get("value"),
                by if isinstance(by, str) else None,
                safe_read.number(written.get("at")),
            )
            out.setdefault(member, []).append((key, value))
        for values in out.values():
            values.sort(key=lambda kv: (kv[1].at or 0.0, kv[1].agent or "", kv[0]))
        return out

    @contextmanager
    def _writing(self, member: str | None = None) -> Iterator[Map[Any]]:
        if member is not None and (not isinstance(member, str) or not member):
            raise UsageError("a member name is a non-empty str")
        if member is not None:
            check_text(member, "the member name")
        frozen = self.frozen_by()
        if frozen is not None:
            raise FrozenError(
                f"spec {self._name!r} was frozen by {frozen}; it accepts no more writes"
            )
        with super()._writing() as root:
            yield root

    # -- writing ---------------------------------------------------------------------------

    def set(self, member: str, value: JSONValue) -> None:
        """Writes `member`, superseding every value of it this replica has seen."""
        stored = to_yjs(value)
        current = self._entries().get(member, []) if isinstance(member, str) else []
        if len(current) == 1 and _same(current[0][1].value, value):
            self._check_writable(member)
            return  # already exactly this
        with self._writing(member) as spec:
            for key, _ in current:
                del spec[key]
            spec[ENTRY_PREFIX + secrets.token_hex(8)] = {
                "member": member,
                "value": stored,
                "by": self._replica.agent,
                "at": time.time(),
            }

    def resolve(self, member: str, value: JSONValue) -> None:
        """Settles a conflict: writes `value`, superseding every value seen (as `set` does)."""
        self.set(member, value)

    def delete(self, member: str) -> bool:
        """Removes `member` (every value of it seen); returns whether it was there. A value
        written concurrently, unseen, survives."""
        current = self._entries().get(member, []) if isinstance(member, str) else []
        if not current:
            self._check_writable(member)
            return False
        with self._writing(member) as spec:
            for key, _ in current:
                del spec[key]
        return True

    def freeze(self, approvers: Iterable[str] = (), quorum: int = 0) -> Version:
        """Freezes the spec at the current version; returns that version. Raises
        `ConcurrentValues` (the first conflicted member, with its values) while members conflict:
        a frozen spec could no longer resolve them.

        With `approvers` (agents who must all approve) or `quorum` (approvals needed from agents
        other than you), this proposes the freeze instead: it takes effect, on every replica and
        at the hub, once they `approve` (crdtdoc.gates); until then the spec stays writable."""
        names = sorted(set(_agent_names(approvers)))
        quorum = check_required(quorum, "quorum")
        if self._replica.agent in names:
            raise ReviewRefused("a freeze waits for others: you cannot name yourself as approver")
        if self.proposal() is not None:
            raise UsageError(
                f"a freeze of {self._name!r} waits for approvals ({self._proposal_text()}); "
                "approve it, or wait"
            )
        conflicts = self.conflicts()
        if conflicts:
            member, values = next(iter(sorted(conflicts.items())))
            listing = ", ".join(sorted(conflicts))
            raise ConcurrentValues(
                f"members with conflicting values: {listing}; resolve them before freezing "
                "(nothing was changed)",
                member,
                values,
            )
        version = self._replica.version()
        record = {"by": self._replica.agent, "at": time.time(), "version": version.token()}
        with self._writing() as spec:
            if names or quorum:
                spec[PROPOSAL_KEY] = {**record, "approvers": names, "quorum": quorum}
            else:
                spec[FROZEN_KEY] = record
        return version

    def approve(self) -> None:
        """Approves the freeze proposed for this spec (see `freeze`)."""
        proposal = self.proposal()
        if proposal is None:
            raise UsageError(f"no freeze of {self._name!r} waits for approval")
        agent = self._replica.agent
        if agent == proposal.by:
            raise ReviewRefused("you proposed this freeze: another agent approves it")
        if proposal.approvers and agent not in proposal.approvers and proposal.quorum == 0:
            raise ReviewRefused(
                f"the freeze waits for {', '.join(proposal.approvers)}, not {agent}"
            )
        key = APPROVAL_PREFIX + str(self._replica.client_id)
        if key in self._root():
            return  # approved already
        with self._writing() as spec:
            spec[key] = {"by": agent, "at": time.time()}

    def proposal(self) -> Proposal | None:
        """The freeze waiting for approvals, if one is proposed."""
        raw = safe_read.entry(self._root(), PROPOSAL_KEY)
        return None if raw is safe_read.ABSENT else proposal_of(safe_read.json_value(raw))

    def approved_by(self) -> list[str]:
        """The agents whose approvals count (crdtdoc.gates), sorted."""
        entries = {
            k: safe_read.json_value(v)
            for k, v in safe_read.entries(self._root())
            if k.startswith(APPROVAL_PREFIX)
        }
        return sorted(set(signed_by(entries, self._replica.agents()).values()))

    def _proposal_text(self) -> str:
        proposal = self.proposal()
        if proposal is None:
            return "none"
        missing = proposal.missing(self.approved_by())
        return f"proposed by {proposal.by}; needs {', '.join(missing) or 'nothing more'}"

    def _check_writable(self, member: str) -> None:
        with self._writing(member):
            pass

    # -- reading ---------------------------------------------------------------------------

    def get(self, member: str, default: JSONValue = _MISSING) -> JSONValue:
        """The member's value. Raises `ConcurrentValues` (with every value and author) when it
        holds concurrent values, and `NotFound` when absent unless `default` is given."""
        values = self.values(member)
        if not values:
            if default is _MISSING:
                raise NotFound(f"spec {self._name!r} has no member {member!r}")
            return default
        if len(values) > 1:
            listing = "; ".join(f"{v.agent or 'someone'}: {v.value!r}" for v in values)
            raise ConcurrentValues(
                f"{self._name}.{member} was written concurrently ({listing}); resolve it",
                member,
                values,
            )
        return values[0].value

    def values(self, member: str) -> list[SpecValue]:
        """Every current value of `member` (one, or several when conflicted)."""
        return [v for _, v in self._entries().get(member, [])]

    def members(self) -> list[str]:
        return sorted(self._entries())

    def conflicts(self) -> dict[str, list[SpecValue]]:
        """Members holding concurrent values, with every value and its author."""
        return {m: [v for _, v in vs] for m, vs in sorted(self._entries().items()) if len(vs) > 1}

    def to_dict(self) -> dict[str, JSONValue]:
        """member -> value, for members without conflicts."""
        return {m: vs[0][1].value for m, vs in sorted(self._entries().items()) if len(vs) == 1}

    def summary(self) -> dict[str, JSONValue]:
        """The whole spec as JSON, as the command line and the MCP server show it: settled
        members' values, conflicting members with every value and its author, and whether
        (and by whom) it is frozen."""
        conflicts: dict[str, JSONValue] = {
            m: [{"value": v.value, "by": v.agent} for v in vs] for m, vs in self.conflicts().items()
        }
        shown: dict[str, JSONValue] = {
            "members": dict(self.to_dict()),
            "conflicts": conflicts,
            "frozen": self.frozen,
            "frozen_by": self.frozen_by(),
        }
        proposal = self.proposal()
        if proposal is not None and not self.frozen:
            approved = self.approved_by()
            shown["freeze_proposed"] = {
                "by": proposal.by,
                "approvers": list(proposal.approvers),
                "quorum": proposal.quorum,
                "approved_by": list(approved),
                "missing": list(proposal.missing(approved)),
            }
        return shown

    @property
    def frozen(self) -> bool:
        return self.frozen_by() is not None

    def frozen_by(self) -> str | None:
        info = self._frozen_info()
        if info is None:
            return None
        by = info.get("by")
        return by if isinstance(by, str) else "someone"

    def frozen_at(self) -> Version | None:
        """The version the spec was frozen at (None when not frozen, or when the freeze does not
        say). Raises `InvalidVersionToken` when it records a version that is not a token."""
        info = self._frozen_info()
        if info is None or not isinstance(info.get("version"), str):
            return None
        return Version.from_token(info["version"])

    def _frozen_info(self) -> dict[str, JSONValue] | None:
        """What the freeze records; None when not frozen. Any object at `frozen` freezes the
        spec, even one with damaged fields (then {}): a freeze is never lost to a bad field. A
        proposed freeze counts once its approvals do (crdtdoc.gates)."""
        raw = safe_read.entry(self._root(), FROZEN_KEY)
        info = safe_read.json_value(raw) if raw is not safe_read.ABSENT else None
        if isinstance(info, dict):
            return info
        if isinstance(raw, (dict, Map)):
            return {}
        proposal = self.proposal()
        if proposal is not None and not proposal.missing(self.approved_by()):
            proposed = safe_read.json_value(safe_read.entry(self._root(), PROPOSAL_KEY))
            return proposed if isinstance(proposed, dict) else {}
        return None

    def __contains__(self, member: object) -> bool:
        return isinstance(member, str) and member in self._entries()

    def __len__(self) -> int:
        return len(self._entries())

    def __repr__(self) -> str:
        return f"InterfaceSpec({self._name!r}, {len(self)} members)"


def _agent_names(agents: Iterable[str]) -> list[str]:
    if isinstance(agents, str):
        raise InvalidValue("approvers is a list of agent names, not one str")
    names = list(agents)
    if not all(isinstance(a, str) and a for a in names):
        raise InvalidValue("approvers are non-empty agent names")
    return names


def _same(a: JSONValue, b: JSONValue) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
