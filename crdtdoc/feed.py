"""The change feed in artifact terms: "bob claimed task t3f... ('write migration') in backlog".

`changes.changes_between` reads changes off the document's structs (who inserted, set, removed
what, where). This module turns them into what they mean for each kind of artifact, using the
kinds recorded in the document, so an agent can paste the feed into its context as plain text or
filter it as data (`Change.kind`, `subject`, `artifact`, `agent`). Kinds and agent names come
from the registries as `Replica.artifacts()` and `Replica.agents()` read them (damaged entries left
out, `crdtdoc.safe_read`), so the feed names the same agents every other reader does.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from crdtdoc import safe_read
from crdtdoc.changes import Change
from crdtdoc.errors import CrdtdocError
from crdtdoc.gates import APPROVAL_PREFIX, PROPOSAL_KEY, proposal_of
from crdtdoc.roots import NOTES_ROOT

if TYPE_CHECKING:
    from crdtdoc.artifacts.document import Document
    from crdtdoc.artifacts.tasks import TaskList
    from crdtdoc.versions import Version


class ArtifactReader(Protocol):
    """What the feed reads of a replica (a `crdtdoc.Replica` is one)."""

    def artifacts(self) -> dict[str, str]: ...

    def agents(self) -> dict[int, str]: ...

    def version(self) -> Version: ...

    def tasks(self, name: str) -> TaskList: ...

    def document(self, name: str) -> Document: ...


TASK_FIELDS = ("title", "description", "labels", "depends_on")
MAX_SHOWN = 60


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def in_artifact_terms(changes: list[Change], replica: ArtifactReader) -> list[Change]:
    """`changes` restated per artifact kind, each carrying the version token they lead to."""
    kinds = replica.artifacts()
    names = replica.agents()
    token = replica.version().token()
    added = {(c.artifact, c.key) for c in changes if c.kind == "set" and not c.path}
    spec_writers = {(c.artifact, c.agent) for c in changes if c.kind == "set"}
    out: list[Change] = []
    for change in changes:
        if change.client_id is not None and change.agent != names.get(change.client_id):
            change = replace(change, agent=names.get(change.client_id))
        kind = kinds.get(change.artifact)
        if change.artifact == NOTES_ROOT:
            restated = _note(change)
        elif kind == "tasks":
            restated = _task(change, replica, added)
        elif kind == "spec":
            restated = _spec(change, spec_writers)
        elif change.kind == "insert" and change.text:
            restated = _text_insert(change, replica)
        else:
            restated = change
        if restated is None:
            continue
        restated = replace(restated, version=token)
        last = out[-1] if out else None
        if (
            last is not None
            and restated.summary is not None
            and (last.agent, last.summary) == (restated.agent, restated.summary)
        ):
            continue  # one reopen removes several completions: say it once
        out.append(restated)
    return out


def _note(change: Change) -> Change | None:
    if change.kind != "insert" or not change.value:
        return None
    entry = change.value[0] if isinstance(change.value[0], dict) else {}
    on = safe_read.string_list(entry.get("artifacts"))
    where = f" (on {', '.join(on)})" if on else ""
    return replace(change, kind="note", summary=f"noted {_short(entry.get('note'))}{where}")


def _task_label(replica: ArtifactReader, artifact: str, task_id: str) -> str:
    try:
        title = replica.tasks(artifact).get(task_id).title
    except CrdtdocError:
        return f"task {task_id}"
    return f"task {task_id} ({_short(title)})"


def _task(
    change: Change, replica: ArtifactReader, added: set[tuple[str, str | None]]
) -> Change | None:
    artifact, path = change.artifact, change.path
    if not path:
        task_id = change.key or ""
        label = _task_label(replica, artifact, task_id)
        if change.kind == "set":
            return replace(
                change, kind="task-added", subject=task_id, summary=f"added {label} to {artifact}"
            )
        return replace(
            change, kind="task-removed", subject=task_id, summary=f"removed {label} from {artifact}"
        )
    task_id = path[0]
    label = _task_label(replica, artifact, task_id)
    if len(path) == 1:
        if (artifact, task_id) in added or change.key not in TASK_FIELDS:
            return None  # part of adding the task
        return replace(
            change,
            kind="task-updated",
            subject=task_id,
            summary=f"set the {change.key} of {label} in {artifact} to {_short(change.value)}",
        )
    part = path[1]
    if part == "claims":
        if change.kind == "set":
            return replace(
                change, kind="claimed", subject=task_id, summary=f"claimed {label} in {artifact}"
            )
        return replace(
            change,
            kind="released",
            subject=task_id,
            summary=f"released {change.key}'s claim on {label} in {artifact}",
        )
    if part == "completions":
        if change.kind == "set":
            gate = _verify_gate(replica, artifact, task_id)
            return replace(
                change,
                kind="completed",
                subject=task_id,
                summary=f"completed {label} in {artifact}{gate}",
            )
        return replace(
            change, kind="reopened", subject=task_id, summary=f"reopened {label} in {artifact}"
        )
    if part == "verifications" and change.kind == "set":
        return replace(
            change, kind="verified", subject=task_id, summary=f"verified {label} in {artifact}"
        )
    if part == "notes" and change.kind == "insert":
        texts = [e.get("text") for e in change.value or [] if isinstance(e, dict)]
        shown = "; ".join(_short(t) for t in texts)
        return replace(
            change,
            kind="noted",
            subject=task_id,
            summary=f"noted on {label} in {artifact}: {shown}",
        )
    return None


def _verify_gate(replica: ArtifactReader, artifact: str, task_id: str) -> str:
    """What a completion of a task with a review gate still waits for, in words."""
    try:
        task = replica.tasks(artifact).get(task_id)
    except CrdtdocError:
        return ""
    if not task.verify:
        return ""
    return f" (it counts once {task.verify} agent(s) other than its completers verify it)"


def _spec(change: Change, writers: set[tuple[str, str | None]]) -> Change | None:
    artifact = change.artifact
    if change.key == "frozen" and change.kind == "set":
        return replace(change, kind="frozen", summary=f"froze {artifact}")
    if change.key == PROPOSAL_KEY and change.kind == "set":
        proposal = proposal_of(change.value)
        needs = ", ".join(proposal.missing(())) if proposal is not None else "approvals"
        return replace(
            change,
            kind="freeze-proposed",
            summary=f"proposed freezing {artifact}: it takes effect after {needs}",
        )
    if (change.key or "").startswith(APPROVAL_PREFIX) and change.kind == "set":
        return replace(change, kind="approved", summary=f"approved freezing {artifact}")
    if not (change.key or "").startswith("m:"):
        return None
    if change.kind == "set" and isinstance(change.value, dict):
        member = change.value.get("member")
        return replace(
            change,
            kind="member-set",
            subject=member,
            summary=f"set {member} in {artifact} to {_short(change.value.get('value'))}",
        )
    if change.kind == "remove":
        if (artifact, change.agent) in writers:
            return None  # superseded by a value the same agent wrote
        return replace(change, kind="member-removed", summary=f"removed a member from {artifact}")
    return None


def _text_insert(change: Change, replica: ArtifactReader) -> Change:
    try:
        text = replica.document(change.artifact).read()
    except CrdtdocError:
        return change
    at = text.find(change.text)
    if at < 0 or text.find(change.text, at + 1) >= 0:
        return change  # edited again since, or ambiguous: no line
    return replace(change, line=text.count("\n", 0, at) + 1)
