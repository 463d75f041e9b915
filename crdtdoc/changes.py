"""The change feed: what changed between a version and now, in which artifact, by which agent.

Computed from the document itself, so every replica can answer it, including one that joined late
or restarted: inserted structs carry their author's client id, the `__crdtdoc_agents` map names the
agent behind each client id, and the `__crdtdoc_deletions` log says who deleted what (a Yjs delete
set carries no author).

Odd entries are reported as readers show them (`crdtdoc.safe_read`): a Format item written as a map
entry is no value (Yjs shows nothing there) and makes no change; a string written as a map value is
a "set" of that key, not text; registry entries of the wrong shape name nobody.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from crdtdoc.contents import ANY, DELETED, EMBED, FORMAT, GC, JSON, SKIP, STRING, TYPE
from crdtdoc.idset import IdSet
from crdtdoc.roots import NOTES_ROOT
from crdtdoc.structs import Claims, DocumentStructs, StructIndex, read_structs, utf16_range
from crdtdoc.updates import Item
from crdtdoc.values import from_yjs
from crdtdoc.versions import Version


@dataclass(frozen=True)
class Change:
    """One change: `kind` is "insert" / "delete" (text and lists) or "set" / "remove" (map keys).

    `agent` is None when the author is unknown (for example a deletion made implicitly when two
    concurrent writes to one map key merged).
    """

    agent: str | None
    client_id: int | None
    artifact: str
    kind: str
    text: str = ""  # inserted text; deleted text, where the document still holds it
    length: int = 0  # characters / elements inserted or deleted
    key: str | None = None  # the map key, for "set" and "remove"
    value: Any = None  # the new value, for "set"; the inserted elements, for list inserts
    text_artifact: bool = False  # the artifact is a text (lengths count characters)
    path: tuple[str, ...] = ()  # keys from the artifact's root to the changed nested type
    subject: str | None = None  # what the change is about: a task id, a spec member...
    summary: str | None = None  # the change in the artifact's own terms, without the agent
    line: int | None = None  # for text inserts: the line (1-based) the text now starts on
    version: str | None = None  # token of the version that includes this change

    def describe(self) -> str:
        """One line a person (or an agent's prompt) can read."""
        who = self.agent or "someone"
        if self.summary is not None:
            return f"{who} {self.summary}"
        if self.kind == "set":
            return f"{who} set {self.artifact}.{self.key} = {self.value!r}"
        if self.kind == "remove":
            return f"{who} removed {self.artifact}.{self.key}"
        if self.kind == "insert":
            if self.text and self.line is not None:
                what = repr(self.text) if len(self.text) <= 40 else f"{self.length} characters"
                return f"{who} inserted {what} at line {self.line} of {self.artifact}"
            what = repr(self.text) if self.text else f"{self.length} element(s)"  # lists
            return f"{who} inserted {what} into {self.artifact}"
        if self.text and len(self.text) <= 40:
            return f"{who} deleted {self.text!r} from {self.artifact}"
        unit = "character" if self.text_artifact else "element"
        plural = "" if self.length == 1 else "s"
        return f"{who} deleted {self.length} {unit}{plural} from {self.artifact}"


def changes_between(
    full_update: bytes | DocumentStructs,
    since: Version,
    deleted_now: IdSet,
    text_roots: frozenset[str] = frozenset(),
    until: Version | None = None,
) -> list[Change]:
    """Changes in the document `full_update` encodes that `since` has not seen (and, with
    `until`, that `until` has seen: the changes between two versions of a document that keeps
    history). `deleted_now` is the delete set of the document (of `until`, when given).

    `text_roots` names roots known to be texts (deleted text leaves no string behind to tell).
    """
    doc = full_update if isinstance(full_update, DocumentStructs) else None
    if doc is None:
        assert isinstance(full_update, bytes)
        doc = read_structs(full_update, text_roots)
    index, agents = doc.index, doc.agents
    texts = set(doc.texts) | text_roots
    claims = doc.claims()
    limit = until.clocks if until is not None else None

    clocks = since.clocks
    changes: list[Change] = []
    prev_end: tuple[int, int] | None = None
    for item in _written_between(index, clocks, limit):
        if item.content in (GC, SKIP):
            continue
        written = item.length if limit is None else limit.get(item.client, 0) - item.clock
        if written <= 0:
            continue  # not yet written at `until`
        root = index.root(item)
        if root is None or (root.startswith("__crdtdoc_") and root != NOTES_ROOT):
            continue
        sub = index.sub(item)
        if sub is not None and item.content == FORMAT:
            continue  # a Format item as a map entry: no value, Yjs shows nothing there
        seen = clocks.get(item.client, 0)
        if sub is not None:
            # A document keeping history keeps deleted content: deleted is what the delete
            # set says.
            if item.content == DELETED or deleted_now.contains(item.client, item.clock):
                continue
            if item.clock + item.length <= seen:
                continue
            value: Any = item.value[-1] if item.content in (ANY, JSON) and item.value else None
            if item.content in (STRING, EMBED):
                value = item.value  # a string reads whole, as crdtdoc's readers show it
            elif item.content == TYPE:
                value = f"<{item.value}>"
            changes.append(
                Change(
                    agent=agents.get(item.client),
                    client_id=item.client,
                    artifact=root,
                    kind="set",
                    key=sub,
                    value=from_yjs(value),
                    path=index.path(item),
                )
            )
            prev_end = None
            continue
        if item.content == DELETED:
            prev_end = None
            continue
        start = max(seen, item.clock)
        end = item.clock + min(item.length, written)
        for lo, hi in deleted_now.gaps(item.client, start, end) if start < end else ():
            offset, stop = lo - item.clock, hi - item.clock
            # Consecutive typing (each item's origin is the previous one's last id) reads as one.
            follows = prev_end is not None and offset == 0 and item.origin == prev_end
            text = utf16_range(item.value, offset, stop) if item.content == STRING else ""
            elements = None
            if item.content in (ANY, JSON) and isinstance(item.value, list):
                elements = [from_yjs(v) for v in item.value[offset:stop]]
            change = Change(
                agents.get(item.client),
                item.client,
                root,
                "insert",
                text,
                len(text) if text else stop - offset,
                value=elements,
                path=index.path(item),
            )
            _add(changes, change, merge=follows)
            prev_end = (item.client, hi - 1)

    # Deletions since `since` of things `since` had (things inserted and deleted since cancel out).
    new_deletions = deleted_now.difference(since.deleted).clip_to(clocks)
    for client, start, end in new_deletions:
        for item in index.overlapping(client, start, end):
            root = index.root(item)
            if root is None or root.startswith("__crdtdoc_"):
                continue
            lo, hi = max(start, item.clock), min(end, item.clock + item.length)
            sub = index.sub(item)
            part = IdSet()
            part.add(client, lo, hi)
            authors = _attribute(part, claims)
            holder = index.container(item)
            if isinstance(holder, tuple) and deleted_now.contains(*holder):
                continue  # inside a map or list removed whole: that removal says it
            for author, claimed in authors:
                agent = agents.get(author) if author is not None else None
                if sub is not None:
                    path = index.path(item)
                    if not doc.key_live((root, path, sub), deleted_now, limit):
                        changes.append(Change(agent, author, root, "remove", key=sub, path=path))
                else:
                    change = Change(
                        agent,
                        author,
                        root,
                        "delete",
                        _deleted_text(item, claimed),
                        length=len(claimed),
                        text_artifact=root in texts,
                    )
                    _add(changes, change, merge=True)
    return changes


def _written_between(
    index: StructIndex, since: Mapping[int, int], until: Mapping[int, int] | None
) -> Iterator[Item]:
    """The items holding ids written after `since` (and before `until`), in document order:
    what a change may be made of, without walking the rest of the document."""
    for client in index.by_client:
        start = since.get(client, 0)
        end = until.get(client, 0) if until is not None else 2**64
        if start < end:
            yield from index.overlapping(client, start, end)


def _attribute(part: IdSet, claims: Claims) -> list[tuple[int | None, IdSet]]:
    """Splits deleted ids among the clients whose deletions log claims them (the earliest
    entry first, as the log lists them)."""
    out: list[tuple[int | None, IdSet]] = []
    rest = part
    for author, ds in claims.overlapping(part):
        claimed = rest.intersection(ds)
        if claimed:
            out.append((author, claimed))
            rest = rest.difference(claimed)
            if not rest:
                break
    if rest:
        out.append((None, rest))
    return out


def _deleted_text(item: Item, ids: IdSet) -> str:
    """The text of `item` at `ids`, where the document still holds it (keeping history)."""
    if item.content != STRING:
        return ""
    return "".join(utf16_range(item.value, lo - item.clock, hi - item.clock) for _, lo, hi in ids)


def _add(changes: list[Change], change: Change, *, merge: bool) -> None:
    """Appends, merging into the previous change when allowed and of the same kind and client."""
    if merge and changes:
        last = changes[-1]
        if (
            last.kind == change.kind
            and last.client_id == change.client_id
            and last.artifact == change.artifact
            and last.kind in ("insert", "delete")
            and last.path == change.path
        ):
            elements = None
            if last.value is not None or change.value is not None:
                elements = (last.value or []) + (change.value or [])
            changes[-1] = replace(
                last,
                text=last.text + change.text,
                length=last.length + change.length,
                value=elements,
            )
            return
    changes.append(change)
