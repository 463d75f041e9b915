"""What the tests share, one job a module:

- `aio`: `run`, an async test body under a hard time limit.
- `hubs`: hubs to test against: in-process (`running_hub`, `running_cluster`, `hub_in_thread`)
  and `crdtdoc serve` as a child process (`HubProcess`), and `free_port`.
- `stored`: a room as a hub's database holds it, read without a hub.
- `services`: PostgreSQL and Redis (the `pg_url` and `redis` fixtures), and `unavailable`, the
  one policy for anything missing (Node, Chromium too): skip, or fail with
  CRDTDOC_REQUIRE_SERVICES=1.
- `cli`: the real `crdtdoc` command against a hub process.
- `builders`: real updates made by pycrdt writers (random edits, streams, many tiny structs).
- `yjs_items`: hand-encoded Yjs updates with odd or damaged items.

The local servers themselves (a free port, `crdtdoc serve` and redis-server as child processes, a
fresh PostgreSQL database) are started by `benchmarks.processes`, which the benchmarks share and
which needs no pytest.
"""
