"""``tastestream state checksum``: one checksum per store and partition of a prefix's state.

    tastestream state checksum [--prefix P] [--url URL ...] [--json]

Without ``--url`` the state is what a worker would recover right now: each
partition's snapshot and the changelog after it, read by
:meth:`agents.store.ChangelogStore.recover` (workers may run meanwhile; what
they have not flushed yet is not in it). With ``--url`` each worker answers
``GET /internal/state/checksum`` (:mod:`agents.state_routes`) for the
partitions it owns, over its live state, unflushed changes included. Either
way the checksum of a partition is :func:`models.state_checksum.store_checksum`:
user states exactly, token states over their neighbours decayed and rounded
(the module says why).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agents.cli_io import CliError
from agents.settings import Settings

#: The stores of a prefix, in the order they are printed.
STORES = ("users", "tokens")


def _checksum(config: Any, store: str, values: dict[str, bytes]) -> dict[str, Any]:
    from models.state_checksum import store_checksum

    return store_checksum(store, values, config.cooccurrence_capacity, config.half_life)


def recovered_checksums(settings: Settings) -> dict[str, dict[str, dict[str, Any]]]:
    """Per store and partition: the checksum of what a worker would recover now.

    A partition whose snapshot is not of its changelog (the broker lost it)
    is marked ``"lost": true``: a worker would rebuild it from the event log.
    """
    from agents.offsets import read_partition, true_end_offsets
    from agents.state import state_config, state_stores

    config = state_config(settings)
    stores = state_stores(settings, config)
    partitions = range(settings.partitions)
    bootstrap = settings.kafka_client_config()
    ends = true_end_offsets(bootstrap, [(s.changelog, p) for s in stores for p in partitions])

    def checksum(store: Any, partition: int) -> dict[str, Any]:
        def read(start: int, stop: int) -> Any:
            return read_partition(bootstrap, store.changelog, partition, start, stop)

        recovered = store.recover(partition, ends[(store.changelog, partition)], read)
        entry = _checksum(config, store.name, recovered.values)
        if recovered.lost:
            entry["lost"] = True
        return entry

    jobs = [(store, p) for store in stores for p in partitions]
    # A partition's read waits on one fetch at least: the partitions are read side by side.
    with ThreadPoolExecutor(max_workers=min(len(jobs), 16)) as pool:
        entries = list(pool.map(lambda job: checksum(*job), jobs))
    out: dict[str, dict[str, dict[str, Any]]] = {store.name: {} for store in stores}
    for (store, partition), entry in zip(jobs, entries, strict=True):
        out[store.name][str(partition)] = entry
    return out


def replica_checksums(replica: Any, partitions: int) -> dict[str, dict[str, dict[str, Any]]]:
    """Per store and partition: the checksum of a :class:`~models.stream_state.StreamState`.

    Partitioned as the workers partition it; what ``replay --rebuild`` writes.
    """
    from agents.state import partition_values

    return {
        name: {
            str(p): _checksum(replica.config, name, partition_values(replica, name, p, partitions))
            for p in range(partitions)
        }
        for name in STORES
    }


async def live_checksums(state: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """Per store and owned partition: the checksum of a worker's live state.

    The values are taken under the state's lock (no fold runs meanwhile); the
    hashing runs in a thread.
    """
    async with state.lock:
        taken = {
            store.name: {p: store.current_values(p) for p in sorted(state.assigned[store.name])}
            for store in (state.users, state.tokens)
        }

    def digest() -> dict[str, dict[str, dict[str, Any]]]:
        return {
            name: {str(p): _checksum(state.config, name, values) for p, values in parts.items()}
            for name, parts in taken.items()
        }

    return await asyncio.to_thread(digest)


def worker_checksums(
    urls: list[str], token: str = "", timeout: float = 30.0
) -> dict[str, dict[str, dict[str, Any]]]:
    """The live checksums of the workers at ``urls``, merged (each answers its own partitions)."""
    merged: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in STORES}
    for url in urls:
        request = urllib.request.Request(url.rstrip("/") + "/internal/state/checksum")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise CliError(
                f"{url} answered {exc.code} to /internal/state/checksum",
                "a 401 wants TASTESTREAM_API_TOKEN set as the workers have it",
            ) from None
        except OSError as exc:
            raise CliError(f"{url} did not answer ({exc})", "is the worker running?") from None
        for name in STORES:
            merged[name].update(answer.get(name, {}))
    return merged


def format_checksums(checksums: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One line per store and partition: ``users  p0  keys 12  sha256 …``.

    Examples
    --------
    >>> print(format_checksums({"users": {"1": {"keys": 2, "sha256": "ab" * 32}}, "tokens": {}}))
    users   p1  keys        2  abababababababababababababababababababababababababababababababab
    """
    lines = []
    for name in STORES:
        for partition, entry in sorted(checksums.get(name, {}).items(), key=lambda x: int(x[0])):
            lost = "  (lost: a worker rebuilds it)" if entry.get("lost") else ""
            lines.append(
                f"{name:7s} p{partition:<3s}keys {entry['keys']:>8,}  {entry['sha256']}{lost}"
            )
    return "\n".join(lines)


def add_parser(subparsers: Any, verb: Any) -> None:
    """Register ``state checksum`` on the ``tastestream`` command line."""
    from agents.cli_io import add_output_options

    p = verb("state", "inspect the streaming state of a prefix")
    sub = p.add_subparsers(dest="state_command", required=True, parser_class=type(p))
    q = sub.add_parser(
        "checksum",
        help="a checksum per store and partition (recovered, or from live workers with --url)",
        description="A checksum per store and partition: of what a worker would recover "
        "(snapshot + changelog), or of live workers' state with --url.",
    )
    q.add_argument("--prefix", default=None, help="topic prefix (default: the configured one)")
    q.add_argument(
        "--url",
        action="append",
        default=None,
        help="ask this worker (repeat for each worker) instead of reading the changelogs",
    )
    q.add_argument("--json", action="store_true", help="print JSON instead of lines")
    q.add_argument("--data-dir", dest="data_dir", help="where the snapshots are")
    q.set_defaults(func=cmd_checksum, verb_parser=q)
    add_output_options(q, argparse.SUPPRESS)


def cmd_checksum(args: argparse.Namespace) -> int:
    from agents.cli import _print, _settings, require_broker

    settings = _settings(args)
    if args.prefix:
        settings = settings.replace(topic_prefix=args.prefix)
    if args.url:
        checksums = worker_checksums(args.url, settings.api_token)
    else:
        require_broker(settings, "state checksum")
        checksums = recovered_checksums(settings)
    _print(json.dumps(checksums) if args.json else format_checksums(checksums))
    return 0
