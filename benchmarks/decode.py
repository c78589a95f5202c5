"""Decode + validate throughput: msgspec's typed decoder against the hand-written validator.

Side by side in one process, on the same messages, interleaved rounds (best of
``--rounds``), for single-event messages and ``--batch``-event batches, JSON and
msgpack:

- ``hand-written``: the stdlib's json / the msgpack package decode the message,
  then :func:`streams.events.validate_event` checks each event (what ingest did
  before ``decode_message``, with today's validator);
- ``hand-written (old)``: the same with the validator as it was before the
  hostile-input checks of issue 9 (git commit 695b1ef; shown when ``git`` can
  read it), to show what those checks cost;
- ``decode_message``: :func:`streams.codecs.decode_message`, msgspec decoding and
  validating in C, the validator deciding only what the typed schema refuses.

Workloads:
- ``1% bad`` rows: one invalid event per 100, which takes the slow path
  (generic decode, then the validator) for that event alone;
- ``ids sent`` rows: every event carries its ``event_id``, so none is derived.

Times are this process's CPU time (the machines are shared; wall time would
count other work), best of the rounds. Events are realistic: ids of 6-12
characters, half with an ``event_id`` (the others get one derived), a third
with ``context``, a quarter with ``item``, 10% with ISO timestamps. Prints µs
per event, events/s and the ratio to ``hand-written``; the worker's budget
(issue 11) is 50k events/s on one core, all work included, so decoding should
cost well under 5 µs an event.

``--broker-sizes`` instead checks what the embedded broker (Tansu) and both
clients do with messages of 1, 2, 5 and 16 MB: produced with librdkafka's
defaults and with tastestream's producer settings, read back with
confluent-kafka and with aiokafka (Faust's client) at their default fetch sizes,
then judged by decode_message.

Usage::

    python benchmarks/decode.py [--events 20000] [--batch 100] [--rounds 5]
    python benchmarks/decode.py --broker-sizes
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgpack

from streams.codecs import decode_message
from streams.events import EVENT_TYPES, validate_event

REPO = Path(__file__).resolve().parent.parent


def make_events(count: int, seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events = []
    for i in range(count):
        ts: Any = 1_767_225_600 + i * 0.37
        if i % 10 == 0:
            ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
        event: dict[str, Any] = {
            "user_id": f"user-{rng.randrange(100_000)}",
            "item_id": f"item-{rng.randrange(1_000_000)}",
            "type": rng.choice(EVENT_TYPES),
            "ts": ts,
        }
        if i % 2 == 0:
            event["event_id"] = f"ev-{i:012d}"
        if i % 3 == 0:
            event["context"] = {"surface": "home", "request_id": f"r-{i}", "position": i % 20}
        if i % 4 == 0:
            event["item"] = {"category": f"c{rng.randrange(300)}", "seller": "s9", "price": 19.5}
        events.append(event)
    return events


#: The last commit with the validator before the hostile-input checks.
OLD_VALIDATOR_COMMIT = "695b1ef"


def old_validator() -> Callable[[Any], dict[str, Any]] | None:
    """validate_event as it was at OLD_VALIDATOR_COMMIT (None when git cannot show it)."""
    try:
        source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{OLD_VALIDATOR_COMMIT}:streams/events.py"],
            capture_output=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    with tempfile.NamedTemporaryFile("wb", suffix=".py", delete=False) as fh:
        fh.write(source)
    spec = importlib.util.spec_from_file_location("old_events", fh.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception:
        return None
    finally:
        os.unlink(fh.name)
    return module.validate_event


def hand_written(validate: Callable[[Any], dict[str, Any]]) -> Callable[[bytes], int]:
    def decode(data: bytes) -> int:
        if data[:1] in (b"{", b"["):
            obj = json.loads(data)
        else:
            obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
        items = obj if isinstance(obj, list) else [obj]
        accepted = 0
        for raw in items:
            try:
                validate(raw)
                accepted += 1
            except ValueError:
                pass
        return accepted

    return decode


def typed(data: bytes) -> int:
    return len(decode_message(data).events)


def encode(events: list[dict[str, Any]], encoding: str) -> bytes:
    if encoding == "json":
        return json.dumps(events if len(events) > 1 else events[0]).encode()
    return msgpack.packb(events if len(events) > 1 else events[0])


def spoil(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One event in the batch names an unknown type."""
    return [*batch[:-1], {**batch[-1], "type": "like"}]


def run(args: argparse.Namespace) -> None:
    events = make_events(args.events)
    assert all(decode_message(encode([e], "msgpack")).events == [validate_event(e)] for e in events)
    contenders: dict[str, Callable[[bytes], int]] = {"hand-written": hand_written(validate_event)}
    old = old_validator()
    if old is not None:
        contenders["hand-written (old)"] = hand_written(old)
    contenders["decode_message"] = typed
    workloads: list[tuple[str, str, list[bytes], bool]] = []
    for encoding in ("json", "msgpack"):
        singles = [encode([e], encoding) for e in events]
        batches = [events[i : i + args.batch] for i in range(0, len(events), args.batch)]
        workloads.append(("single", encoding, singles, False))
        workloads.append(
            (f"batch {args.batch}", encoding, [encode(b, encoding) for b in batches], False)
        )
        spoiled = [encode(spoil(b), encoding) for b in batches]
        workloads.append((f"batch {args.batch}, 1% bad", encoding, spoiled, True))
        with_ids = [[{"event_id": f"ev-{id(e)}", **e} for e in b] for b in batches]
        workloads.append(
            (
                f"batch {args.batch}, ids sent",
                encoding,
                [encode(b, encoding) for b in with_ids],
                False,
            )
        )

    print(f"load average {os.getloadavg()[0]:.2f}; {args.events} events, best of {args.rounds}")
    header = f"{'messages':<20} {'enc':<8} {'decoder':<22} {'µs/event':>9} {'events/s':>11}"
    print(f"{header} {'vs hand':>8}")
    for shape, encoding, messages, spoiled in workloads:
        best = dict.fromkeys(contenders, float("inf"))
        for _ in range(args.rounds):  # interleaved: load changes hit every contender alike
            for name, decode in contenders.items():
                started = time.process_time()  # CPU time: other work on the machine is not ours
                accepted = sum(decode(m) for m in messages)
                best[name] = min(best[name], time.process_time() - started)
                expected = len(events) - (len(messages) if spoiled else 0)
                assert accepted == expected, (name, accepted, expected)
        base = best["hand-written"]
        for name, seconds in best.items():
            per_event = seconds / len(events) * 1e6
            rate = len(events) / seconds
            print(
                f"{shape:<20} {encoding:<8} {name:<22} {per_event:>9.2f} {rate:>11,.0f} "
                f"{base / seconds:>7.2f}x"
            )
    print("command:", shlex.join([sys.executable, *sys.argv]))


def broker_sizes(sizes: list[int]) -> None:
    import asyncio

    import aiokafka
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from agents.producer import kafka_producer
    from agents.provision import ensure_topics
    from agents.settings import Settings
    from agents.stack import start_stack

    with tempfile.TemporaryDirectory() as tmp, start_stack("", "", Path(tmp)) as stack:
        settings = Settings(kafka_url=stack.kafka_url, partitions=1, topic_prefix="sizes")
        ensure_topics(settings)
        topic = settings.topics.events.name
        print(f"topic {topic}: created by agents.provision (max.message.bytes set)")
        stored = []
        producers = {
            "librdkafka defaults": {"message.max.bytes": 1_000_000},
            "tastestream": {},
            "message.max.bytes 20 MB": {"message.max.bytes": 20_000_000},
        }
        for size in sizes:
            verdicts = []
            for name, overrides in producers.items():
                producer = kafka_producer(settings, **overrides)
                errors: list[Any] = []
                try:
                    producer.produce(
                        topic, b"x" * size, on_delivery=lambda e, _m, out=errors: out.append(e)
                    )
                    producer.flush(30)
                    verdicts.append(f"{name}: {'stored' if errors == [None] else errors}")
                    stored.append(size)
                except (KafkaException, BufferError) as exc:
                    verdicts.append(f"{name}: refused locally ({exc.args[0].name()})")
            print(f"produce {size:>10,} B: " + "; ".join(verdicts))
        consumer = Consumer(
            {"bootstrap.servers": settings.kafka_bootstrap, "group.id": "sizes", "log_level": 3}
        )
        consumer.assign([TopicPartition(topic, 0, 0)])
        read = []
        while len(read) < len(stored):
            message = consumer.poll(10)
            if message is None:
                break
            if not message.error():
                read.append(len(message.value()))
        consumer.close()
        print(f"confluent-kafka read back (default fetch sizes): {read}")

        async def with_aiokafka() -> list[int]:
            client = aiokafka.AIOKafkaConsumer(
                bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
            )
            await client.start()
            try:
                tp = aiokafka.TopicPartition(topic, 0)
                client.assign([tp])
                client.seek(tp, 0)
                out: list[int] = []
                while len(out) < len(stored):
                    batch = await client.getmany(tp, timeout_ms=10_000)
                    if not batch:
                        break
                    out += [len(m.value) for m in batch[tp]]
                return out
            finally:
                await client.stop()

        print(
            f"aiokafka read back (max_partition_fetch_bytes 1 MiB): {asyncio.run(with_aiokafka())}"
        )
        for size in sizes:
            rejections = decode_message(b"[" + b" " * (size - 2) + b"]").rejections
            verdict = rejections[0].reason if rejections else "within the limit"
            print(f"decode_message of a {size:,} B batch: {verdict}")
    print("command:", shlex.join([sys.executable, *sys.argv]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--broker-sizes", action="store_true", help="big messages on the broker")
    args = parser.parse_args()
    if args.broker_sizes:
        broker_sizes([1_000_000, 2_000_000, 5_000_000, 16_000_000])
    else:
        run(args)


if __name__ == "__main__":
    main()
