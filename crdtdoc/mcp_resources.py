"""The MCP server's resources: the room's artifacts, readable and subscribable, so an agent
learns of a change without polling (`crdtdoc.mcp_server` registers them).

`crdtdoc://artifacts` lists the artifacts and their kinds; `crdtdoc://artifact/{name}` is one
artifact as `read_at` shows it (a document's text, a task list's tasks, a spec or map as JSON).
After every commit of the session's replica, local or from others, each artifact the commit
touched is announced as updated, and a new artifact as a change of the list: to every
`subscriptions/listen` stream that asked for it (protocol 2026-07-28), and with a
`notifications/resources/updated` to every session that subscribed with `resources/subscribe`
(the older versions most clients speak). Which artifacts a commit touched comes
from the item index, not from reading the document: conservative, never missing one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mcp.server.subscriptions import ResourcesListChanged, ResourceUpdated, SubscriptionBus

from crdtdoc.errors import CrdtdocError, NotFound
from crdtdoc.roots import INTERNAL_ROOTS

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crdtdoc.client.connection import ConnectedReplica
    from crdtdoc.replica import Replica

LIST_URI = "crdtdoc://artifacts"
ARTIFACT_URI = "crdtdoc://artifact/{name}"


def artifact_uri(name: str) -> str:
    return ARTIFACT_URI.format(name=name)


def render(replica: Replica, name: str, kind: str | None = None) -> str:
    """An artifact as the MCP server shows it whole, by its kind (`kind`: as the room records
    it now; a past version may predate the record)."""
    kind = kind or replica.artifacts().get(name)
    if kind is None:
        raise NotFound(f"this room has no artifact named {name!r}")
    if kind == "tasks":
        return "\n".join(t.describe() for t in replica.tasks(name).list()) or "no tasks"
    if kind == "spec":
        return json.dumps(replica.spec(name).summary(), ensure_ascii=False)
    if kind == "map":
        return json.dumps(replica.map(name).to_dict(), ensure_ascii=False)
    return replica.document(name).read()


def add_resources(server: MCPServer, replica: Callable[[], ConnectedReplica]) -> None:
    """Registers the resources on `server` (an `MCPServer`)."""

    @server.resource(LIST_URI, name="artifacts", mime_type="application/json")
    def artifacts() -> str:
        return json.dumps(replica().artifacts(), ensure_ascii=False)

    @server.resource(ARTIFACT_URI, name="artifact", mime_type="text/plain")
    def artifact(name: str) -> str:
        try:
            return render(replica(), name)
        except CrdtdocError as exc:
            return f"{type(exc).__name__}: {exc}"


class Subscribers:
    """Sessions that subscribed to resources the older way (`resources/subscribe`, protocol
    versions before 2026-07-28, which most MCP clients speak): told by a notification each."""

    def __init__(self) -> None:
        self.by_uri: dict[str, set[Any]] = {}  # uri -> the sessions subscribed to it

    def register(self, server: MCPServer) -> None:
        """Serves `resources/subscribe` and `resources/unsubscribe` on `server` (the SDK's
        high-level server serves only the newer `subscriptions/listen`)."""
        from mcp_types import EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

        async def subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
            self.by_uri.setdefault(str(params.uri), set()).add(ctx.session)
            return EmptyResult()

        async def unsubscribe(ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
            self.by_uri.get(str(params.uri), set()).discard(ctx.session)
            return EmptyResult()

        lowlevel = server._lowlevel_server  # (pinned: mcp>=2.3,<3)
        lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)

    async def updated(self, uri: str) -> None:
        for session in list(self.by_uri.get(uri, ())):
            try:
                await session.send_resource_updated(uri)
            except Exception:  # a session that went away: forgotten, the others still told
                self.by_uri[uri].discard(session)


class ChangeAnnouncer:
    """Publishes which artifacts each commit of a replica touched, on an MCP subscription bus
    and to the sessions subscribed the older way."""

    def __init__(
        self, replica: ConnectedReplica, bus: SubscriptionBus, subscribers: Subscribers
    ) -> None:
        self.replica = replica
        self.bus = bus
        self.subscribers = subscribers
        self.seen = replica.version()
        self.names = set(replica.artifacts())
        self._tasks: set[asyncio.Task[None]] = set()
        self.stop = replica.on_update(lambda update, local: self._committed())

    def _committed(self) -> None:
        now = self.replica.version()
        if now == self.seen:
            return
        touched = self.replica.roots_touched(self.seen)
        self.seen = now
        names = set(self.replica.artifacts())
        events: list[Any] = []
        if names != self.names:
            events.append(ResourcesListChanged())
            touched |= names - self.names
            self.names = names
        for name in sorted(n for n in touched if n is not None and n not in INTERNAL_ROOTS):
            events.append(ResourceUpdated(uri=artifact_uri(name)))
        if None in touched:  # ids whose artifact is not known: any may have changed
            events += [ResourceUpdated(uri=artifact_uri(n)) for n in sorted(names)]
        if events:
            task = asyncio.get_running_loop().create_task(self._publish(events))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _publish(self, events: list[Any]) -> None:
        for event in events:
            await self.bus.publish(event)
            if isinstance(event, ResourceUpdated):
                await self.subscribers.updated(event.uri)
            elif isinstance(event, ResourcesListChanged):
                await self.subscribers.updated(LIST_URI)  # the list is a resource too
