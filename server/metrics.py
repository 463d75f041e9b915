"""`HubMetrics`: what an operator watches, in the Prometheus text format at `GET /metrics`.

Each hub has its own registry (several hubs may share a process, in tests). Counters and
histograms are updated where things happen; gauges that describe the hub's state now (connections,
rooms, send queues, a failing store, the event loop's longest stall) and the store's failed
commits are read from the hub when scraped, so they cannot drift. No metric is labelled by room
or agent: label values stay few whatever clients send.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LAG_PERIOD = 0.05
"""How often the event loop's lag is measured, in seconds."""
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _State(Collector):
    """Gauges read from the hub at scrape time."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Any]:
        state = self._read()
        for name, help_ in (
            ("connections", "Open websocket connections."),
            ("rooms_loaded", "Rooms held in memory."),
            ("peers", "Connections that joined a room."),
            ("send_queue_messages", "Messages waiting in all peers' send queues."),
            ("send_queue_bytes", "Bytes waiting in all peers' send queues."),
            ("send_queue_messages_max", "The longest send queue of one peer, in messages."),
            ("store_failing", "1 while the store cannot commit (writes are kept and retried)."),
            (
                "event_loop_lag_max_seconds",
                "The longest the hub's event loop has been late since it started: the worst "
                "stall any connection felt.",
            ),
        ):
            yield GaugeMetricFamily(f"crdtdoc_{name}", help_, value=state.get(name, 0.0))
        yield CounterMetricFamily(
            "crdtdoc_store_failed_commits",
            "Store transactions that failed (each is retried until it commits).",
            value=state.get("store_failed_commits", 0.0),
        )


class Tally:
    """A counter bumped on every message (a plain float: a Prometheus `Counter` takes a lock
    and checks its value on each `inc`, a few percent of a busy hub's CPU), reported as a
    counter when scraped (`_Tallies`)."""

    __slots__ = ("created", "help", "name", "value")

    def __init__(self, name: str, help_: str) -> None:
        self.name = name
        self.help = help_
        self.value = 0.0
        self.created = time.time()  # reported as `<name>_created`, as a Counter does

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _Tallies(Collector):
    def __init__(self, tallies: list[Tally]) -> None:
        self._tallies = tallies

    def collect(self) -> Iterator[Any]:
        for tally in self._tallies:
            yield CounterMetricFamily(
                tally.name, tally.help, value=tally.value, created=tally.created
            )


class HubMetrics:
    def __init__(self, read_state: Callable[[], dict[str, float]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages_in = Tally(
            "crdtdoc_messages_received", "Websocket messages received from clients."
        )
        self.bytes_in = Tally("crdtdoc_bytes_received", "Bytes of messages received from clients.")
        self.messages_out = Tally("crdtdoc_messages_sent", "Websocket messages sent to clients.")
        self.bytes_out = Tally("crdtdoc_bytes_sent", "Bytes sent to clients.")
        r.register(_Tallies([self.messages_in, self.bytes_in, self.messages_out, self.bytes_out]))
        self.refusals = Counter(
            "crdtdoc_refusals",
            "Connections refused or closed for bad input, by reason (the error's kind).",
            ["reason"],
            registry=r,
        )
        self.commit_seconds = Histogram(
            "crdtdoc_store_commit_seconds",
            "Duration of one store transaction (a group of appends).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.durable_seconds = Histogram(
            "crdtdoc_receive_to_durable_seconds",
            "From receiving a room's oldest not-yet-durable update to its durable commit.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            "crdtdoc_event_loop_lag_seconds",
            f"How late the event loop ran a {LAG_PERIOD * 1000:g} ms timer: time no connection "
            "was served.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.loop_lag_max = 0.0
        self.compactions = Counter(
            "crdtdoc_compactions", "Room logs folded into snapshots.", registry=r
        )
        r.register(_State(read_state))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def watch_event_loop(self) -> None:
        """Runs for the hub's life: measures how late the loop runs a short timer, which is how
        long some piece of work kept everyone else waiting."""
        while True:
            start = time.monotonic()
            await asyncio.sleep(LAG_PERIOD)
            lag = max(0.0, time.monotonic() - start - LAG_PERIOD)
            self.loop_lag.observe(lag)
            self.loop_lag_max = max(self.loop_lag_max, lag)
