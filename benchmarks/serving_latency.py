"""Latency of ``GET /users/{id}/recommendations`` (home, k=20) at fixed request rates.

One real worker (``python -m agents.cli worker``) on the embedded stack (or
``--kafka-url`` / ``--redis-url``):

1. a synthetic model version with ``--items`` items (default 100k) is built
   (see :func:`synthetic_model`; the HNSW graphs take most of the time) or
   taken from ``--model-cache``, and written under ``<data_dir>/models``;
2. the worker starts **without** a model; ``--events`` simulated events over
   ``--users`` users (default 1,000) and the same items go through the events
   topic; the run waits until the worker accepted them all and its Redis
   refresh went quiet;
3. **no model** (co-occurrence + popularity): requests at each ``--rates``
   for ``--seconds`` each;
4. the version is made CURRENT and announced on ``<prefix>.model-updates``
   (the production hot-swap path); once ``GET /models`` shows it live, the same
   rates again **with the model**.

Load is open-loop from this process (asyncio + aiohttp on loopback): request
``n`` is sent at ``start + n / rate`` whether or not earlier ones have
answered, and its latency runs from that *scheduled* time to the end of the
response body, so queueing in the worker counts. Users are drawn uniformly
from the simulated ones. Errors: non-200 answers, failures, and requests still
unanswered ``--drain`` seconds after the last was sent. Before the rates, a
closed-loop pass (one request at a time) gives the bare service time.
Target: p99 under 20 ms at 500 requests/s.

``--profile`` attaches ``py-spy record`` to the worker during the highest
rate with the model and prints where its samples went.

Run::

    python benchmarks/serving_latency.py                          # ~2.5 minutes
    python benchmarks/serving_latency.py --rates 100,250,500 --seconds 10 --profile

Examples
--------
>>> schedule(rate=4, seconds=1.0)
[0.0, 0.25, 0.5, 0.75]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from harness import (
    get_json,
    profile_samples,
    read_metrics,
    start_worker,
    stop_worker,
    wait_for,
    worker_overrides,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# -- the model ---------------------------------------------------------------------


def synthetic_model(items: int, users: int, seed: int = 0, dim: int = 64) -> Any:
    """A :class:`models.training.TrainedModels` of the simulator's items, built directly.

    Why not ``train_version``: embeddings over 100k items need millions of
    events, minutes of CPU on this machine. What serving costs depends on the
    sizes (tokens per type, dimension, HNSW settings, MF items), not on the
    vectors' quality, so the vectors are category centres (the simulator's
    categories) plus noise: clustered like trained ones. Tokens: a click
    token for every item, cart tokens for 30%, purchase and favorite for 10%.
    MF: a user vector for each simulated user, an item vector for every item.
    HNSW: M 32, ef_construction 100 (build speed), ef 256 (the production
    query beam).
    """
    from models.ann_index import TokenIndex
    from models.factorization import FactorizationParams, MatrixFactorization
    from models.simulator import ClickstreamSimulator, SimulatorConfig
    from models.token_embedding import EmbeddingParams, TokenEmbedding
    from models.training import TrainedModels, TrainingParams

    rng = np.random.default_rng(seed)
    sim = ClickstreamSimulator(SimulatorConfig(users=users, items=items, seed=seed))
    item_ids = [f"i{n}" for n in range(items)]
    categories = sorted(set(sim.categories()))
    code = {c: n for n, c in enumerate(categories)}
    item_category = np.array([code[sim.item_category(i)] for i in item_ids])
    centres = rng.standard_normal((len(categories), dim)).astype(np.float32)
    vocab: list[tuple[str, str]] = []
    rows: list[np.ndarray] = []
    for kind, share in (("click", 1.0), ("cart", 0.3), ("purchase", 0.1), ("favorite", 0.1)):
        chosen = np.sort(rng.choice(items, size=int(items * share), replace=False))
        vocab += [(item_ids[n], kind) for n in chosen]
        noise = rng.standard_normal((len(chosen), dim)).astype(np.float32)
        rows.append(centres[item_category[chosen]] + 0.8 * noise)
    vectors = np.concatenate(rows).astype(np.float32)
    embedding = TokenEmbedding(EmbeddingParams(dim=dim))
    embedding.vocab = vocab
    embedding._index = {token: n for n, token in enumerate(vocab)}
    embedding.vectors = vectors
    embedding.counts = np.ones(len(vocab), dtype=np.int64)
    params = TrainingParams(seed=seed, index_M=32, index_ef_construction=100, index_ef=256)
    index = TokenIndex.build(
        vocab, vectors, M=32, ef_construction=100, ef=256, num_threads=2, seed=seed
    )
    mf = MatrixFactorization(FactorizationParams(factors=dim))
    mf.users = [f"u{n}" for n in range(users)]
    mf.items = item_ids
    mf._user_index = {u: n for n, u in enumerate(mf.users)}
    mf._item_index = {i: n for n, i in enumerate(item_ids)}
    mf.user_factors = (0.1 * rng.standard_normal((users, dim))).astype(np.float32)
    mf.item_factors = (centres[item_category] * 0.1).astype(np.float32)
    mf.item_bias = (0.01 * rng.standard_normal(items)).astype(np.float32)
    mf._seen = np.zeros(0, dtype=np.int64)
    return TrainedModels(
        embedding=embedding,
        index=index,
        factorization=mf,
        params=params,
        data_range={"first_ts": None, "last_ts": None, "events": 0, "users": users, "items": items},
        metrics={"synthetic": True, "vocab": len(vocab)},
    )


def model_version(args: argparse.Namespace, root: Path) -> Any:
    """The version to serve, copied into ``root``: from ``--model-cache`` or built now."""
    from models.model_version import copy_version, list_versions, write_version

    cache = Path(args.model_cache) if args.model_cache else None
    tag = f"items{args.items}-users{args.users}"
    if cache is not None:
        found = [v for v in list_versions(cache) if v.manifest.get("bench") == tag]
        if found:
            print(f"model: {found[-1].version} from the cache {cache}")
            return copy_version(found[-1], root)
    began = time.perf_counter()
    trained = synthetic_model(args.items, args.users, args.seed)
    info = write_version(cache or root, trained, {"bench": tag})
    print(
        f"model: built {trained.metrics['vocab']:,} tokens over {args.items:,} items in "
        f"{time.perf_counter() - began:.1f} s"
    )
    return copy_version(info, root) if cache is not None else info


# -- the worker ---------------------------------------------------------------------


def feed_state(settings: Any, args: argparse.Namespace, url: str) -> None:
    """``--events`` simulated events (ts = now) through the events topic; wait until settled."""
    from agents.producer import EventProducer
    from models.simulator import ClickstreamSimulator, SimulatorConfig

    began = time.perf_counter()
    sim = ClickstreamSimulator(SimulatorConfig(users=args.users, items=args.items, seed=args.seed))
    producer = EventProducer(settings, batch_size=200)
    events = sim.live_events(time.time)
    producer.send_many(next(events) for _ in range(args.events))
    summary = producer.flush()
    sent = summary.sent
    wait_for(
        lambda: read_metrics(url).get("tastestream_events_accepted_total", 0) >= sent,
        180,
        f"{sent:,} events accepted",
    )
    # the list refresh trails the fold: wait until its backlog is empty and it stops
    last = -1.0
    quiet = 0
    while quiet < 3:
        time.sleep(1.0)
        metrics = read_metrics(url)
        now = metrics.get("tastestream_recs_refreshed_total", -1)
        idle = now >= 0 and metrics.get("tastestream_recs_refresh_backlog", 1) == 0
        quiet = quiet + 1 if idle and now == last else 0
        last = now
    users_with_state = sum(
        get_json(f"{url}/users/u{n}/state")[0] == 200 for n in range(0, args.users, 50)
    )
    print(
        f"state: {sent:,} events for {args.users:,} users fed and settled in "
        f"{time.perf_counter() - began:.1f} s ({users_with_state} of "
        f"{len(range(0, args.users, 50))} sampled users have state)"
    )


# -- the load -----------------------------------------------------------------------


def schedule(rate: float, seconds: float) -> list[float]:
    """Send offsets (s) of an open-loop run: ``rate`` per second for ``seconds``."""
    return [n / rate for n in range(int(rate * seconds))]


@dataclass
class RunResult:
    label: str
    rate: float
    sent: int
    latencies_ms: list[float]
    errors: Counter
    wall: float
    cpu_worker: float  # % of one core over the run
    cached: float = float("nan")  # share of requests answered from a precomputed list

    def row(self) -> str:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        answered = len(self.latencies_ms) / max(1e-9, self.wall)
        errors = sum(self.errors.values())
        detail = ", ".join(f"{k} {v}" for k, v in self.errors.most_common()) or "-"
        rate = "closed loop" if self.rate == 0 else f"{self.rate:g}"
        return (
            f"| {self.label} | {rate} | {self.sent:,} | {answered:,.0f} | "
            f"{np.percentile(lat, 50):.1f} | {np.percentile(lat, 99):.1f} | {lat.max():.1f} | "
            f"{errors} ({detail}) | {self.cpu_worker:.0f}% | {self.cached:.0%} |"
        )


async def drive(
    url: str, users: list[str], rate: float, seconds: float, drain: float, seed: int
) -> tuple[list[float], Counter, int, float]:
    """Open loop: one GET per scheduled time; latency from the scheduled time."""
    import aiohttp

    rng = random.Random(seed)
    latencies: list[float] = []
    errors: Counter = Counter()
    offsets = schedule(rate, seconds)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=seconds + drain)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(scheduled: float, user: str) -> None:
            target = f"{url}/users/{user}/recommendations?surface=home&k=20"
            try:
                async with session.get(target) as resp:
                    await resp.read()
                    status = resp.status
            except Exception as exc:
                errors[type(exc).__name__] += 1
                return
            if status != 200:
                errors[f"HTTP {status}"] += 1
                return
            latencies.append((time.perf_counter() - scheduled) * 1000)

        start = time.perf_counter() + 0.05
        tasks = []
        for offset in offsets:
            scheduled = start + offset
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(scheduled, rng.choice(users))))
        _done, pending = await asyncio.wait(tasks, timeout=drain) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        if pending:
            errors["unanswered after drain"] += len(pending)
            await asyncio.gather(*pending, return_exceptions=True)
        wall = time.perf_counter() - start
    return latencies, errors, len(offsets), wall


async def closed_loop(
    url: str, users: list[str], count: int, seed: int
) -> tuple[list[float], Counter]:
    """One request at a time: the bare service time (plus loopback HTTP)."""
    import aiohttp

    rng = random.Random(seed)
    latencies: list[float] = []
    errors: Counter = Counter()
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            began = time.perf_counter()
            user = rng.choice(users)
            async with session.get(f"{url}/users/{user}/recommendations?surface=home&k=20") as r:
                await r.read()
                if r.status != 200:
                    errors[f"HTTP {r.status}"] += 1
                    continue
            latencies.append((time.perf_counter() - began) * 1000)
    return latencies, errors


def cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def cache_hits(url: str) -> float:
    """Requests the worker answered from a precomputed list so far."""
    return read_metrics(url).get("tastestream_recs_cache_hits_total", 0.0)


def measure(
    label: str, args: argparse.Namespace, url: str, pid: int, profile: Path | None = None
) -> list[RunResult]:
    users = [f"u{n}" for n in range(args.users)]
    results = []
    hits0 = cache_hits(url)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    lat, errors = asyncio.run(closed_loop(url, users, args.closed_loop, args.seed))
    wall = time.monotonic() - t0
    cpu = 100 * (cpu_seconds(pid) - cpu0) / wall
    cached = (cache_hits(url) - hits0) / args.closed_loop
    results.append(RunResult(label, 0, args.closed_loop, lat, errors, wall, cpu, cached))
    for rate in args.rates:
        time.sleep(args.pause)
        profiler = None
        if profile is not None and rate == max(args.rates):
            profiler = start_profiler(pid, profile)
        hits0 = cache_hits(url)
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        try:
            lat, errors, sent, wall = asyncio.run(
                drive(url, users, rate, args.seconds, args.drain, args.seed)
            )
        finally:
            if profiler is not None:
                stop_profiler(profiler)
        cpu = 100 * (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        cached = (cache_hits(url) - hits0) / max(1, sent)
        results.append(RunResult(label, rate, sent, lat, errors, wall, cpu, cached))
        print(results[-1].row(), flush=True)
    return results


# -- profiling ----------------------------------------------------------------------


def start_profiler(pid: int, out: Path) -> subprocess.Popen:
    exe = shutil.which("py-spy")
    if exe is None:
        raise RuntimeError("--profile needs py-spy: pip install py-spy")
    flags = ["--format", "raw", "--function", "--rate", "200", "--nonblocking"]
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), *flags, "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_profiler(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def summarise_profile(path: Path, top: int = 25) -> str:
    """Inclusive share of samples per function (ours and the libraries'), from py-spy raw."""
    inclusive: Counter = Counter()
    leaves: Counter = Counter()
    total = 0
    for frames, count in profile_samples(path):
        total += count
        leaves[frames[-1].split(":")[0]] += count
        names = set()
        for frame in frames:
            name, _, where = frame.partition(" (")
            names.add(f"{name} ({where.split(':')[0]}")
        for name in names:
            inclusive[name] += count
    if not total:
        return "(empty profile)"
    skip = ("asyncio/", "runpy", "mode/", "agents/cli.py", "threading.py")
    lines = [f"py-spy: {total} samples (wall clock, the worker's threads)", "inclusive:"]
    shown = [(n, c) for n, c in inclusive.most_common() if not any(s in n for s in skip)]
    lines += [f"  {c / total:6.1%}  {n}" for n, c in shown[:top]]
    lines.append("hottest leaf frames:")
    lines += [f"  {c / total:6.1%}  {n})" for n, c in leaves.most_common(12)]
    return "\n".join(lines)


# -- the run ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--events", type=int, default=30_000, help="events fed as state")
    parser.add_argument("--rates", default="100,250,500", help="requests/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="per rate")
    parser.add_argument("--drain", type=float, default=10.0, help="wait after the last send (s)")
    parser.add_argument("--pause", type=float, default=2.0, help="between rates (s)")
    parser.add_argument("--closed-loop", type=int, default=100, help="sequential requests first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-cache", default="", help="keep/reuse the built model here")
    parser.add_argument("--no-model", action="store_true", help="skip the with-model runs")
    parser.add_argument("--profile", action="store_true", help="py-spy the highest rate (model)")
    parser.add_argument("--kafka-url", default="")
    parser.add_argument("--redis-url", default="")
    args = parser.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    command = "python benchmarks/serving_latency.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )

    from agents.stack import start_stack
    from agents.trainer import announce
    from models.model_version import set_current

    work = Path(tempfile.mkdtemp(prefix="tastestream-serving-"))
    stack = start_stack(args.kafka_url, args.redis_url, work / "stack")
    proc = None
    results: list[RunResult] = []
    profile_text = ""
    try:
        overrides, settings = worker_overrides(stack, work, "serve")
        info = None if args.no_model else model_version(args, settings.data_path / "models")
        proc, url = start_worker(overrides, work / "worker.log")
        print(f"worker ready (log {work / 'worker.log'})")
        feed_state(settings, args, url)
        print()
        header = (
            "| model | rate (req/s) | requests | answered/s | p50 ms | p99 ms | max ms"
            " | errors | worker CPU | from a stored list |\n"
            "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"
        )
        print(header)
        results += measure("none (co-occurrence + popularity)", args, url, proc.pid)
        if info is not None:
            set_current(settings.data_path / "models", info.version)
            announce(settings, info.announcement("publish"))
            began = time.monotonic()
            wait_for(
                lambda: get_json(url + "/models")[1]["live"],
                120,
                "the model to go live",
            )
            print(
                f"(model {info.version} live {time.monotonic() - began:.1f} s after "
                "the announcement)"
            )
            time.sleep(args.pause)
            profile = work / "profile.txt" if args.profile else None
            results += measure(f"{args.items // 1000}k items", args, url, proc.pid, profile)
            if profile is not None and profile.exists():
                profile_text = summarise_profile(profile)
    finally:
        if proc is not None:
            stop_worker(proc)
        stack.stop()
    print()
    print(f"command: {command}")
    print()
    print(header)
    for result in results:
        print(result.row())
    print()
    print(
        f"- one worker, {args.users:,} users with state ({args.events:,} events), k = 20, "
        f"surface home; open loop, {args.seconds:g} s per rate; latency from the scheduled "
        f"send; {os.cpu_count()} cores shared with other work"
    )
    if profile_text:
        print()
        print(profile_text)


if __name__ == "__main__":
    main()
