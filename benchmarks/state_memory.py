"""Memory and update speed of the streaming state (models/ cooccurrence, trajectory, bandit,
popularity), extrapolated per 1M users / per 1M source tokens.

Synthetic but shaped like a shop clickstream: per user a log-normal number of
interactions (median ~25, long tail capped at 2,000) in sessions (geometric
length, ~1 min gaps; days between sessions, half with a session_id), items drawn
from a Zipf law over the catalogue with session locality (nearby ids share a
seller), types view 60% / click 25% / favorite 5% / cart 7% / purchase 3%, and
~5 impressions per session.

One timed pass feeds every structure (updates/s, no tracing; event generation
is not timed), then one pass per structure under tracemalloc measures the Python
heap of the live objects, and the msgpack size of ``to_state()`` is summed.
It also times a Faust-style table write and read: ``msgpack.packb(obj.to_state())``
and ``from_state(msgpack.unpackb(...))``.

Run::

    python benchmarks/state_memory.py --users 20000 --memory-users 5000 --cooc-users 5000
"""

from __future__ import annotations

import argparse
import gc
import shlex
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.bandit import UserBandit
from models.cooccurrence import SessionWindow, TokenNeighbours
from models.popularity import Popularity
from models.trajectory import UserTrajectory

TYPES = np.array(["view", "click", "favorite", "cart", "purchase"])
TYPE_P = np.array([0.60, 0.25, 0.05, 0.07, 0.03])
MILLION = 1_000_000


def user_events(
    user: int, seed: int, n_items: int, n_sellers: int, n_categories: int
) -> list[dict[str, Any]]:
    """One user's events in time order (deterministic per (seed, user))."""
    rng = np.random.default_rng([seed, user])
    n = int(min(2000, max(1, rng.lognormal(3.2, 1.0))))
    # All random draws up front (numpy calls are the cost here, not the loop).
    lengths = rng.geometric(1 / 8, size=n)
    bases = rng.zipf(1.3, size=n) % n_items
    with_sid = rng.random(n) < 0.5
    session_gaps = rng.exponential(2 * 86_400.0, size=n)
    r = rng.random(n)
    revisit = rng.integers(0, 1 << 30, size=n)
    offsets = rng.integers(-50, 50, size=n)
    jumps = rng.zipf(1.3, size=n) % n_items
    gaps = rng.exponential(60.0, size=n)
    types = TYPES[rng.choice(5, p=TYPE_P, size=n)].tolist()
    shown = rng.random(n) < 0.6
    shown_offsets = rng.integers(-200, 200, size=n)
    t = float(rng.uniform(1.7e9, 1.7e9 + 30 * 86_400))
    uid = f"u{user:08d}"
    events: list[dict[str, Any]] = []

    def item_fields(index: int) -> dict[str, Any]:
        seller = (index // 20) % n_sellers
        return {"seller": f"s{seller:06d}", "category": f"c{seller % n_categories:03d}"}

    k = 0  # interaction counter
    session = 0
    while k < n:
        sid = f"{uid}-{session}" if with_sid[session] else None
        base = int(bases[session])
        seen: list[int] = []
        for _ in range(min(int(lengths[session]), n - k)):
            if seen and r[k] < 0.3:
                index = seen[int(revisit[k]) % len(seen)]
            elif r[k] < 0.8:
                index = (base + int(offsets[k])) % n_items
            else:
                index = int(jumps[k])
            seen.append(index)
            t += float(gaps[k])
            e = {
                "user_id": uid,
                "item_id": str(1_000_000_000 + index),
                "type": types[k],
                "ts": t,
                "event_id": f"e{user}-{len(events)}",
                "item": item_fields(index),
            }
            if sid is not None:
                e["session_id"] = sid
            events.append(e)
            if shown[k]:  # impressions around the session's activity
                other = (base + int(shown_offsets[k])) % n_items
                events.append(
                    {
                        "user_id": uid,
                        "item_id": str(1_000_000_000 + other),
                        "type": "impression",
                        "ts": t + 1.0,
                        "event_id": f"i{user}-{len(events)}",
                        "item": item_fields(other),
                    }
                )
            k += 1
        t += float(session_gaps[session])
        session += 1
    return events


def users(args: argparse.Namespace, n: int) -> Iterator[list[dict[str, Any]]]:
    for u in range(n):
        yield user_events(u, args.seed, args.items, args.sellers, args.categories)


def human(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n_bytes) < 1024 or unit == "TB":
            return f"{n_bytes:,.1f} {unit}"
        n_bytes /= 1024
    return ""


def roundtrip_rate(objects: list[Any], rebuild: Callable[[Any], Any]) -> tuple[float, float]:
    """(writes/s, reads/s) of packb(to_state()) and from_state(unpackb())."""
    sample = objects[: min(len(objects), 5000)]
    t0 = time.perf_counter()
    blobs = [msgpack.packb(o.to_state()) for o in sample]
    t1 = time.perf_counter()
    for blob in blobs:
        rebuild(msgpack.unpackb(blob, strict_map_key=False))
    t2 = time.perf_counter()
    return len(sample) / (t1 - t0), len(sample) / (t2 - t1)


def count_cooccurrence(
    table: dict[Any, TokenNeighbours], window: SessionWindow, events: list[dict[str, Any]]
) -> tuple[int, int, float, float]:
    """What a co-occurrence agent does for one user's events: (pushes, pairs, t_push, t_add)."""
    t0 = time.perf_counter()
    pairs = window.push_many(events)
    t1 = time.perf_counter()
    n_push = 0
    for e in events:
        if e["type"] == "impression":
            continue
        n_push += 1
        token = (e["item_id"], e["type"])
        neighbours = table.get(token)
        if neighbours is None:
            neighbours = table[token] = TokenNeighbours()
        neighbours.add_total(1.0, e["ts"])
    for p, q, w, ts in pairs:
        neighbours = table.get(p)
        if neighbours is None:
            neighbours = table[p] = TokenNeighbours()
        neighbours.add(q, w, ts)
    return n_push, len(pairs), t1 - t0, time.perf_counter() - t1


def timed_pass(args: argparse.Namespace) -> None:
    """Updates/s of every structure, one generation of the events for all of them."""
    elapsed = dict.fromkeys(["traj", "bandit", "window", "neigh", "pop"], 0.0)
    n_events = n_push = n_pairs = 0
    table: dict[Any, TokenNeighbours] = {}
    pop = Popularity()
    clock = time.perf_counter
    for u, events in enumerate(users(args, args.users)):
        n_events += len(events)
        t0 = clock()
        UserTrajectory().update_many(events)
        t1 = clock()
        UserBandit().update_many(events)
        t2 = clock()
        pop.update_many(events)
        t3 = clock()
        elapsed["traj"] += t1 - t0
        elapsed["bandit"] += t2 - t1
        elapsed["pop"] += t3 - t2
        if u < args.cooc_users:
            pushes, pairs, t_push, t_add = count_cooccurrence(table, SessionWindow(), events)
            n_push += pushes
            n_pairs += pairs
            elapsed["window"] += t_push
            elapsed["neigh"] += t_add
    print(f"updates/s ({args.users:,} users, {n_events:,} events incl. impressions):")
    print(f"  UserTrajectory.update_many  {n_events / elapsed['traj']:>11,.0f} events/s")
    print(f"  UserBandit.update_many      {n_events / elapsed['bandit']:>11,.0f} events/s")
    print(f"  Popularity.update_many      {n_events / elapsed['pop']:>11,.0f} events/s")
    print(
        f"  SessionWindow.push_many     {n_push / elapsed['window']:>11,.0f} pushes/s "
        f"({args.cooc_users:,} users, {n_push:,} interactions)"
    )
    print(
        f"  TokenNeighbours add+total   {(n_pairs + n_push) / elapsed['neigh']:>11,.0f} updates/s "
        f"({n_pairs:,} pairs + {n_push:,} totals into {len(table):,} source tokens; "
        f"{n_pairs / n_push:.1f} pairs per interaction)"
    )


def traced(build: Callable[[], Any]) -> tuple[Any, int]:
    """Build under tracemalloc; return (result, bytes still allocated)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    result = build()
    gc.collect()
    heap = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return result, heap


def report_memory(name: str, unit: str, objects: list[Any], heap: int, rebuild: Any) -> None:
    n = len(objects)
    packed = sum(len(msgpack.packb(o.to_state())) for o in objects)
    writes, reads = roundtrip_rate(objects, rebuild)
    print(
        f"  {name:<16} heap/1M {unit}={human(heap / n * MILLION):>10}  "
        f"msgpack/1M {unit}={human(packed / n * MILLION):>10}  "
        f"(per {unit[:-1]}: heap {heap / n:,.0f} B, msgpack {packed / n:,.0f} B; "
        f"table write {writes:,.0f}/s, read {reads:,.0f}/s)"
    )


def memory_pass(args: argparse.Namespace) -> None:
    """Python heap (tracemalloc) and msgpack bytes, extrapolated to 1M users / tokens."""
    n = args.memory_users
    print(f"memory ({n:,} users; item id strings are interned, so shared ones count once):")

    def build(factory: Callable[[], Any]) -> list[Any]:
        objects = []
        for events in users(args, n):
            obj = factory()
            obj.update_many(events)
            objects.append(obj)
        return objects

    trajectories, heap = traced(lambda: build(UserTrajectory))
    report_memory("UserTrajectory", "users", trajectories, heap, UserTrajectory.from_state)
    del trajectories
    bandits, heap = traced(lambda: build(UserBandit))
    report_memory("UserBandit", "users", bandits, heap, UserBandit.from_state)
    del bandits

    n_cooc = min(n, args.cooc_users)

    def build_cooc() -> tuple[list[SessionWindow], dict[Any, TokenNeighbours]]:
        table: dict[Any, TokenNeighbours] = {}
        windows = []
        for events in users(args, n_cooc):
            window = SessionWindow()
            count_cooccurrence(table, window, events)
            windows.append(window)
        return windows, table

    (windows, table), heap = traced(build_cooc)
    window_heap = sum(
        sys.getsizeof(w) + sys.getsizeof(w.items) + sys.getsizeof(w.types) for w in windows
    )
    report_memory("SessionWindow", "users", windows, window_heap, SessionWindow.from_state)
    neighbours = list(table.values())
    targets = sum(len(s) for x in neighbours for s in x.sketches.values()) / len(neighbours)
    report_memory(
        "TokenNeighbours", "tokens", neighbours, heap - window_heap, TokenNeighbours.from_state
    )
    print(f"    ({len(table):,} source tokens from {n_cooc:,} users, {targets:.1f} targets each)")
    pop = Popularity()
    for events in users(args, n):
        pop.update_many(events)
    blob = msgpack.packb(pop.to_state())
    t0 = time.perf_counter()
    Popularity.from_state(msgpack.unpackb(blob, strict_map_key=False))
    print(
        f"  Popularity       msgpack {human(len(blob))} ({len(pop.categories)} categories), "
        f"read {(time.perf_counter() - t0) * 1000:.1f} ms"
    )


def store_pass(args: argparse.Namespace) -> None:
    """What a worker holds per user and per token, folded by the worker's own functions.

    Users' events go through ``fold_message`` into ``UserState`` objects (the
    live form, for the keys being updated) and are then packed (the form a
    ``ChangelogStore`` keeps for every other key: one ``bytes`` per key); pair
    records go through ``TokenState.fold``. The worker's heap per 1M users is
    the packed form for all of them plus live objects for at most
    ``state_cache_keys`` (100,000 by default).
    """
    from models.token_state import TokenState
    from models.user_state import StateConfig, UserState, fold_message
    from streams.events import validate_event

    n = args.memory_users
    config = StateConfig()
    canonical = [[validate_event(e) for e in events] for events in users(args, n)]
    n_events = sum(map(len, canonical))

    def fold_users() -> tuple[dict[str, UserState], list[Any]]:
        states: dict[str, UserState] = {}
        records: list[Any] = []
        for offset, events in enumerate(canonical):
            uid = events[0]["user_id"]
            _, counted = fold_message(
                events, lambda _u, uid=uid: states.setdefault(uid, UserState(config)), 0, offset
            )
            records.extend(counted)
        return states, records

    started = time.process_time()
    fold_users()
    fold_seconds = time.process_time() - started
    states, records = fold_users()
    packed, packed_heap = traced(partial(_packed, states))
    del states
    # Live objects as the store makes them from packed values (item ids interned once).
    _, live_heap = traced(lambda: [UserState.unpack(b, config) for b in packed.values()])
    by_token: dict[str, list[Any]] = {}
    for record in records:
        by_token.setdefault(record[1] if record[0] is None else record[0], []).append(record)
    started = time.process_time()
    tokens, token_heap = traced(
        lambda: {
            k: _folded(TokenState(config.cooccurrence_capacity, config.half_life), rs)
            for k, rs in by_token.items()
        }
    )
    token_seconds = time.process_time() - started
    _, token_packed_heap = traced(lambda: {k: t.pack() for k, t in tokens.items()})
    per_user_packed = packed_heap / n
    per_user_live = live_heap / n
    from agents.settings import Settings

    cache = Settings().state_cache_keys
    worker_heap = per_user_packed * MILLION + per_user_live * cache
    print(f"the worker's stores ({n:,} users, {n_events:,} events, {len(tokens):,} tokens):")
    print(
        f"  user fold (fold_message)   {n_events / fold_seconds:>11,.0f} events/s; "
        f"token fold {len(records) / token_seconds:,.0f} records/s "
        f"({len(records) / n_events:.1f} records per event)"
    )
    print(
        f"  per user: live {per_user_live:,.0f} B, packed {per_user_packed:,.0f} B "
        f"(msgpack {sum(map(len, packed.values())) / n:,.0f} B)"
    )
    print(
        f"  per token: live {token_heap / len(tokens):,.0f} B, "
        f"packed {token_packed_heap / len(tokens):,.0f} B"
    )
    print(
        f"  memory store: heap per 1M users (all packed + {cache:,} live): {human(worker_heap)} "
        f"(target <= 1 GiB: {'met' if worker_heap <= 2**30 else 'NOT met'})"
    )
    rocks_pass(packed, per_user_live, cache)


def rocks_pass(packed: dict[str, bytes], per_user_live: float, cache: int) -> None:
    """The same packed values in a RocksDB store (``state_store = "rocksdb"``): heap and RSS."""
    import tempfile

    import psutil

    from agents.store import RocksValues

    process = psutil.Process()
    gc.collect()
    rss_before = process.memory_info().rss
    path = Path(tempfile.mkdtemp(prefix="state-memory-rocks-")) / "db"
    values = RocksValues(path)
    items = list(packed.items())
    started = time.perf_counter()
    for start in range(0, len(items), 1000):
        values.update_many(items[start : start + 1000])
    write_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for key, _ in items[:20_000]:
        values.get(key)
    read_seconds = time.perf_counter() - started
    rss = process.memory_info().rss - rss_before
    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    values.close()
    n = len(items)
    heap = per_user_live * cache
    print(
        f"  rocksdb store: heap per 1M users ({cache:,} live, values on disk): {human(heap)}"
        f" (target <= 1 GiB: {'met' if heap <= 2**30 else 'NOT met'}); RSS +{human(rss)} for "
        f"{n:,} users (block cache and memtables, bounded), disk {human(disk / n * MILLION)} "
        f"per 1M users; {n / write_seconds:,.0f} writes/s, "
        f"{min(n, 20_000) / read_seconds:,.0f} reads/s"
    )


def _packed(objects: dict[str, Any]) -> dict[str, bytes]:
    return {key: obj.pack() for key, obj in objects.items()}


def _folded(token: Any, records: list[Any]) -> Any:
    token.fold(records)
    return token


def main(argv: list[str] | None = None) -> None:
    sys.stdout.reconfigure(line_buffering=True)  # progress shows when piped to a file
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20_000, help="users for updates/s")
    parser.add_argument("--memory-users", type=int, default=5_000, help="users traced for heap")
    parser.add_argument("--cooc-users", type=int, default=5_000, help="users fed to co-occurrence")
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--sellers", type=int, default=5_000)
    parser.add_argument("--categories", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only",
        choices=["all", "structures", "stores"],
        default="all",
        help="structures: each model class alone; stores: what a worker holds",
    )
    args = parser.parse_args(argv)
    print("$ python " + shlex.join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]))
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, msgpack {msgpack.version}")
    parser_only = args.only
    if parser_only in ("all", "structures"):
        timed_pass(args)
        memory_pass(args)
    if parser_only in ("all", "stores"):
        store_pass(args)


if __name__ == "__main__":
    main()
