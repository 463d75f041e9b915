"""`TaskList`: tasks agents add, claim, note and complete, merging without lost work.

A task list is a Yjs root Y.Map of task id -> task (a Y.Map); the layout is in docs/SCHEMA.md.
Every field that several agents may write at once is a collection each agent writes its own part
of, so concurrent work is kept, never overwritten:

- claims: a Y.Map agent -> claim. Concurrent claims (unseen by each other) are all kept; the task is
  then *contested* and every replica names the same assignee: the earliest claim (by its recorded
  time, then agent name). `claim` refuses when it already sees another agent's claim.
- completions: a Y.Map token -> completion. `complete` adds one; `reopen` removes those it has
  seen. So a reopen concurrent with a completion it has not seen leaves the task done (the newer
  work is kept, visible as done), while a reopen after the completions it saw makes it open again.
- notes: a Y.Array of notes, append-only: concurrent notes are all kept, in a merge order every
  replica agrees on.

Status: "done" while any completion remains (for a task added with `verify=N`, once N agents
other than the completers also verified it: "verifying" until then, `crdtdoc.gates`); otherwise
"claimed" while any claim remains; otherwise "open". `reopen` removes the claims it sees too.
Plain fields (title, description, labels, depends_on) are last-writer-wins per field.

Tasks are read through `crdtdoc.safe_read`: an entry of the list that is not a Y.Map is no task,
a field of the wrong type reads as empty (a title that is not a string is "", a time that is not a
number is unknown), and entries the engine cannot read are left out, so one damaged entry never
hides the rest of the list.
"""

from __future__ import annotations

import builtins
import dataclasses
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pycrdt import Array, Map

from crdtdoc import safe_read
from crdtdoc.artifacts.base import Artifact
from crdtdoc.errors import AlreadyClaimed, InvalidValue, NotFound, ReviewRefused, UsageError
from crdtdoc.gates import check_required, verifiers
from crdtdoc.values import check_text, to_yjs

STATUSES = ("open", "claimed", "verifying", "done")


@dataclass(frozen=True)
class Note:
    agent: str
    text: str
    at: float


@dataclass(frozen=True)
class Task:
    """A task as this replica sees it now."""

    id: str
    title: str
    description: str
    status: str  # "open" | "claimed" | "done"
    assignee: str | None  # the claimant every replica agrees holds the task
    claimants: list[str]  # every agent with a claim, assignee first
    contested: bool  # claimed by several agents that did not see each other's claim
    labels: list[str]
    depends_on: list[str]
    notes: list[Note]
    completed_by: list[str]
    created_by: str | None
    created_at: float | None
    verify: int = 0  # verifications by others a completion needs (crdtdoc.gates)
    verified_by: list[str] = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        """One line for a person or an agent's prompt."""
        completed = self.status in ("done", "verifying")
        by = self.completed_by if completed else [self.assignee] if self.assignee else []
        who = f" by {', '.join(by)}" if by else ""
        if self.status == "verifying":
            who += f", verified {len(self.verified_by)} of {self.verify}"
        contested = f" (contested: {', '.join(self.claimants)})" if self.contested else ""
        return f"[{self.status}{who}{contested}] {self.id}: {self.title}"

    def to_json(self) -> dict[str, Any]:
        """Every field as JSON-ready data (what the command line and the MCP server print)."""
        return dataclasses.asdict(self)


def task_lease_name(task_list: str, task_id: str) -> str:
    """The hub lease behind an exclusive claim of a task (the one place this format is made)."""
    return f"task/{task_list}/{task_id}"


def task_of_lease(name: str) -> tuple[str, str] | None:
    """(task list, task id) of a claim's lease name, None for any other lease."""
    parts = name.split("/", 2)
    if len(parts) != 3 or parts[0] != "task" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def new_task_id() -> str:
    """An id unique without coordination (60 random bits)."""
    return "t" + secrets.token_hex(8)[:15]


def _strings(value: Iterable[str], what: str) -> list[str]:
    if isinstance(value, str):
        raise InvalidValue(f"{what} must be a list of str, not a single str")
    items = list(value)
    if not all(isinstance(v, str) for v in items):
        raise InvalidValue(f"{what} must contain only str")
    return items


class TaskList(Artifact[Map[Any]]):
    """A shared task list (see the module docstring for the merge rules)."""

    __slots__ = ()
    artifact = "tasks"
    root_type = Map

    def _task_map(self, task_id: str) -> Map[Any]:
        if not isinstance(task_id, str):
            raise UsageError(f"task ids are str, got {type(task_id).__name__}")
        task = safe_read.entry(self._root(), task_id)
        if not isinstance(task, Map):
            raise NotFound(f"no task {task_id!r} in {self._name!r}")
        return task

    def _part(self, task: Map[Any], key: str, kind: type[Map[Any]] | type[Array[Any]]) -> Any:
        """A task's claims / completions / notes, created if a foreign writer left it out."""
        part = safe_read.entry(task, key)
        if not isinstance(part, kind):
            task[key] = part = kind()
        return part

    # -- writing ---------------------------------------------------------------------------

    def add(
        self,
        title: str,
        description: str = "",
        depends_on: Iterable[str] = (),
        labels: Iterable[str] = (),
        verify: int = 0,
    ) -> str:
        """Adds an open task; returns its id (unique without coordination). With `verify=N`,
        a completion counts (status "done", not "verifying") once N agents other than those
        who completed the task verified it (`verify`; crdtdoc.gates)."""
        if not isinstance(title, str) or not title.strip():
            raise InvalidValue("a task needs a non-empty title")
        verify = check_required(verify, "verify")
        if not isinstance(description, str):
            raise InvalidValue("description must be a str")
        task_id = new_task_id()
        fields = to_yjs(  # every string checked before anything changes
            {
                "title": title,
                "description": description,
                "labels": _strings(labels, "labels"),
                "depends_on": _strings(depends_on, "depends_on"),
                "created_by": self._replica.agent,
                "created_at": time.time(),
            }
        )
        gate: dict[str, Any] = {"verify": verify, "verifications": Map()} if verify else {}
        with self._writing():
            self._root()[task_id] = Map(
                {**fields, "claims": Map(), "completions": Map(), "notes": Array(), **gate}
            )
        return task_id

    def update(
        self,
        task_id: str,
        *,
        title: str | None = None,
        description: str | None = None,
        labels: Iterable[str] | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> None:
        """Changes the given fields (each last-writer-wins)."""
        changes: dict[str, Any] = {}
        if title is not None:
            if not isinstance(title, str) or not title.strip():
                raise InvalidValue("a task needs a non-empty title")
            changes["title"] = title
        if description is not None:
            if not isinstance(description, str):
                raise InvalidValue("description must be a str")
            changes["description"] = description
        if labels is not None:
            changes["labels"] = _strings(labels, "labels")
        if depends_on is not None:
            changes["depends_on"] = _strings(depends_on, "depends_on")
        changes = to_yjs(changes)  # all checked before anything changes
        task = self._task_map(task_id)
        with self._writing():
            for key, value in changes.items():
                task[key] = value

    def note(self, task_id: str, text: str) -> None:
        """Appends a note (append-only: concurrent notes are all kept)."""
        if not isinstance(text, str) or not text:
            raise InvalidValue("a note is a non-empty str")
        check_text(text, "the note")
        task = self._task_map(task_id)
        with self._writing():
            self._part(task, "notes", Array).append(
                {"by": self._replica.agent, "text": text, "at": time.time()}
            )

    def claim(self, task_id: str) -> None:
        """Claims the task for this agent. Raises `AlreadyClaimed` (naming the holder) when this
        replica sees another agent's claim; claims made concurrently elsewhere are all kept and
        the task shows as contested."""
        task = self._task_map(task_id)
        current = self.claimable(task_id)
        me = self._replica.agent
        if me in current.claimants:
            return  # already ours (if contested, `get(id).assignee` says who holds it)
        if current.claimants:
            holder = current.assignee or current.claimants[0]
            raise AlreadyClaimed(
                f"task {task_id!r} is claimed by {holder}; pick another task or ask {holder}",
                holder,
                current.claimants,
            )
        with self._writing():
            self._part(task, "claims", Map)[me] = {"at": time.time()}

    async def acquire(self, task_id: str, ttl: float = 60.0) -> None:
        """Moved: an exclusive claim goes through the hub, so it is the connected replica's
        `await replica.claim_task(list_name, task_id, ttl=...)`. Kept for one release to say
        so; raises `UsageError`."""
        raise UsageError(
            "TaskList.acquire moved to the connected replica: use "
            f"`await replica.claim_task({self._name!r}, {task_id!r}, ttl={ttl!r})`"
        )

    def claimable(self, task_id: str) -> Task:
        """The task, if it may be claimed: raises `NotFound` for no such task, `UsageError`
        for a done one (the rule every way of claiming shares: this replica's `claim`, a
        connected replica's `claim_task` through a hub lease, the command line's)."""
        current = self.get(task_id)
        if current.status == "done":
            raise UsageError(f"task {task_id!r} is done; reopen it before claiming it")
        return current

    def lease_name(self, task_id: str) -> str:
        """The hub lease behind an exclusive claim of the task (the hub drops the claim when
        it expires)."""
        return task_lease_name(self._name, task_id)

    def claimed_by(self, task_id: str, holder: str | None) -> AlreadyClaimed:
        """The refusal of a claim the hub gave to `holder`."""
        who = holder or "another agent"
        return AlreadyClaimed(
            f"task {task_id!r} is claimed by {who}; pick another task or ask {who}", who, [who]
        )

    def record_claim(self, task_id: str, token: int) -> None:
        """Writes this agent's claim, held through the hub lease with fencing `token`."""
        task = self._task_map(task_id)
        with self._writing():
            self._part(task, "claims", Map)[self._replica.agent] = {
                "at": time.time(),
                "lease": token,
            }

    def claim_lease(self, task_id: str) -> int | None:
        """The fencing token of the hub lease behind this agent's claim, if it has one."""
        claims = safe_read.entry(self._task_map(task_id), "claims")
        if not isinstance(claims, Map):
            return None
        mine = safe_read.json_value(safe_read.entry(claims, self._replica.agent))
        token = mine.get("lease") if isinstance(mine, dict) else None
        return token if isinstance(token, int) and not isinstance(token, bool) else None

    def release(self, task_id: str, *, strict: bool = False) -> bool:
        """Drops this agent's claim; returns whether it had one. With `strict`, having none
        raises `NotFound` naming who does claim it (what the command line and MCP say, so an
        agent never believes it freed another's task)."""
        task = self._task_map(task_id)
        claims = safe_read.entry(task, "claims")
        me = self._replica.agent
        if not isinstance(claims, Map) or not safe_read.has(claims, me):
            if strict:
                current = self.get(task_id)
                held = (
                    f"; it is claimed by {', '.join(current.claimants)}"
                    if current.claimants
                    else ""
                )
                raise NotFound(f"{me} has no claim on task {task_id!r} to release{held}")
            return False
        with self._writing():
            del claims[me]
        return True

    def drop_claim(self, task_id: str, agent: str) -> bool:
        """Removes `agent`'s claim (the hub does this when the lease behind a claim expires);
        returns whether there was one."""
        claims = safe_read.entry(self._task_map(task_id), "claims")
        if not isinstance(claims, Map) or not safe_read.has(claims, agent):
            return False
        with self._writing():
            del claims[agent]
        return True

    def complete(self, task_id: str, note: str | None = None) -> None:
        """Marks the task done (optionally with a note)."""
        if note is not None and not isinstance(note, str):
            raise InvalidValue("a note is a str")
        if note:
            check_text(note, "the note")  # before the completion is written
        task = self._task_map(task_id)
        with self._writing():
            self._part(task, "completions", Map)[secrets.token_hex(8)] = {
                "by": self._replica.agent,
                "at": time.time(),
            }
            if note:
                self.note(task_id, note)

    def verify(self, task_id: str) -> None:
        """Verifies a completed task, as an agent who did not complete it: a task added with
        `verify=N` is done once N such agents did (crdtdoc.gates)."""
        task = self.get(task_id)
        if not task.completed_by:
            raise UsageError(f"task {task_id} is not completed: there is nothing to verify yet")
        if self._replica.agent in task.completed_by:
            raise ReviewRefused(
                f"{self._replica.agent} completed task {task_id}: another agent must verify it"
            )
        checks = self._part(self._task_map(task_id), "verifications", Map)
        if str(self._replica.client_id) in checks:
            return  # verified already
        with self._writing():
            checks[str(self._replica.client_id)] = {"by": self._replica.agent, "at": time.time()}

    def reopen(self, task_id: str) -> None:
        """Makes the task open again: removes the completions, verifications and claims this
        replica sees."""
        task = self._task_map(task_id)
        with self._writing():
            for key in ("completions", "verifications", "claims"):
                part = safe_read.entry(task, key)
                if isinstance(part, Map):
                    for entry, _ in safe_read.entries(part):
                        del part[entry]

    # -- reading ---------------------------------------------------------------------------

    def get(self, task_id: str) -> Task:
        return self._read(task_id, self._task_map(task_id), self._replica.agents())

    def __contains__(self, task_id: object) -> bool:
        return isinstance(task_id, str) and isinstance(safe_read.entry(self._root(), task_id), Map)

    def ids(self) -> builtins.list[str]:
        return [k for k, v in safe_read.entries(self._root()) if isinstance(v, Map)]

    def list(self, status: str | None = None, assignee: str | None = None) -> builtins.list[Task]:
        """Tasks (oldest first), optionally only those with this status / assignee."""
        if status is not None and status not in STATUSES:
            raise UsageError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        agents = self._replica.agents()
        entries = safe_read.entries(self._root())
        tasks = [self._read(k, v, agents) for k, v in entries if isinstance(v, Map)]
        tasks.sort(key=lambda t: (t.created_at or 0.0, t.id))
        return [
            t
            for t in tasks
            if (status is None or t.status == status)
            and (assignee is None or t.assignee == assignee)
        ]

    def ready(self) -> builtins.list[Task]:
        """Open (unclaimed, not done) tasks whose dependencies are all done."""
        tasks = self.list()
        done = {t.id for t in tasks if t.status == "done"}
        return [t for t in tasks if t.status == "open" and all(d in done for d in t.depends_on)]

    def __len__(self) -> int:
        return len(self.ids())

    def __repr__(self) -> str:
        return f"TaskList({self._name!r}, {len(self)} tasks)"

    def _read(self, task_id: str, task: Map[Any], agents: dict[int, str]) -> Task:
        data = safe_read.json_value(task)
        if not isinstance(data, dict):
            data = {}
        claims = data.get("claims")
        claims = claims if isinstance(claims, dict) else {}
        order = sorted(
            claims.items(),
            key=lambda kv: (
                (safe_read.number(kv[1].get("at")) if isinstance(kv[1], dict) else None) or 0.0,
                kv[0],
            ),
        )
        claimants = [agent for agent, _ in order]
        # A gate counts entries of the Y.Maps the schema names, never a plain value written in
        # their place (crdtdoc.gates).
        completions = _map_part(task, "completions")
        completed_by = sorted(
            {
                c["by"]
                for c in completions.values()
                if isinstance(c, dict) and isinstance(c.get("by"), str)
            }
        )
        notes_raw = data.get("notes")
        notes = [
            Note(
                safe_read.text_field(n.get("by")),
                safe_read.text_field(n.get("text")),
                safe_read.number(n.get("at")) or 0.0,
            )
            for n in (notes_raw if isinstance(notes_raw, list) else [])
            if isinstance(n, dict)
        ]
        verify = data.get("verify")
        verify = verify if isinstance(verify, int) and not isinstance(verify, bool) else 0
        verified_by = verifiers(_map_part(task, "verifications"), agents, completed_by)
        status = "done" if completions else "claimed" if claimants else "open"
        if status == "done" and len(verified_by) < verify:
            status = "verifying"
        created_by = data.get("created_by")
        return Task(
            id=task_id,
            title=safe_read.text_field(data.get("title")),
            description=safe_read.text_field(data.get("description")),
            status=status,
            assignee=claimants[0] if claimants else None,
            claimants=claimants,
            contested=not completions and len(claimants) > 1,
            labels=safe_read.string_list(data.get("labels")),
            depends_on=safe_read.string_list(data.get("depends_on")),
            notes=notes,
            completed_by=completed_by,
            created_by=created_by if isinstance(created_by, str) else None,
            created_at=safe_read.number(data.get("created_at")),
            verify=verify,
            verified_by=verified_by,
        )


def _map_part(task: Map[Any], key: str) -> dict[str, Any]:
    """A task's nested Y.Map `key` as JSON; {} when it is missing or is no Y.Map."""
    part = safe_read.entry(task, key)
    value = safe_read.json_value(part) if isinstance(part, Map) else None
    return value if isinstance(value, dict) else {}
