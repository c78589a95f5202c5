"""``tastestream evaluate``: the served system against library baselines on one time split.

    tastestream evaluate --events FILE [--test-hours 24] [--baselines none|fast|all]
                         [--out REPORT.md] [CSV options as for import]

Reads contract events (JSONL, msgpack, ``-`` for stdin or an event-log
directory) or, with ``--columns``, a CSV log through the importer (gzip,
header-less, tab-separated: the options of ``tastestream import``); rejected
input is counted by reason. Trains the model version exactly as ``train``
publishes it on the events before the cut, folds the streaming state over
them as the worker does, and scores the served rows beside the library
baselines under the protocol of ``../shared/data/BASELINES.md``
(:mod:`models.evaluation`). Prints the Markdown report; with ``--out`` also
writes it there and the JSON beside it (``REPORT.json``). Progress goes to stderr.

``--baselines``: ``none`` (served rows and the trivial references), ``fast``
(+ popularity, within-session co-occurrence, implicit BPR and ALS: seconds),
``all`` (+ gensim item2vec with and without Etsy's co-occurrence tokens).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from agents.event_input import InputError, add_import_options, import_spec, read_events


def _types(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def add_parser(subparsers: Any, verb: Any = None) -> None:
    """Register the ``evaluate`` verb on ``subparsers`` (from ``add_subparsers``).

    Imports nothing heavy: every other verb's start-up stays as fast as before.
    ``verb(name, help)`` makes the parser (the CLI's); default ``subparsers.add_parser``.
    """
    from agents.cli_io import positive_float, positive_int

    verb = verb or (lambda name, text: subparsers.add_parser(name, help=text, description=text))
    p = verb("evaluate", "served lists vs library baselines on a time split of an event log")
    p.add_argument(
        "--events",
        required=True,
        help="JSONL or msgpack events, - for stdin, a log directory, or a CSV log with --columns",
    )
    p.add_argument(
        "--test-hours",
        dest="test_hours",
        type=positive_float,
        default=24.0,
        help="hours after the time cut to score on (default 24)",
    )
    p.add_argument(
        "--baselines",
        choices=("none", "fast", "all"),
        default="all",
        help="library rows to compute beside the served ones (default all)",
    )
    p.add_argument("--k", type=positive_int, default=200, help="candidates per seed (default 200)")
    p.add_argument(
        "--seed-types",
        dest="seed_types",
        type=_types,
        default=None,
        help="event types of click seeds (default view,click; a one-type log: that type)",
    )
    p.add_argument(
        "--target-types",
        dest="target_types",
        type=_types,
        default=None,
        help="event types that are targets (default cart,purchase; a one-type log: that type)",
    )
    p.add_argument("--out", default=None, help="write the Markdown here and the JSON beside it")
    p.add_argument("--title", default=None, help="the report's title (default: the input)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--epochs", type=positive_int, default=None, help="the served embedding's epochs"
    )
    p.add_argument(
        "--dim", type=positive_int, default=None, help="the served embedding's dimension"
    )
    add_import_options(p, required=False)
    p.set_defaults(func=cmd_evaluate)


def _protocol(args: argparse.Namespace, events: list[dict[str, Any]]) -> Any:
    from models.evaluation import Protocol
    from models.sessions import INTERACTION_TYPES

    types = {e["type"] for e in events if e["type"] in INTERACTION_TYPES}
    defaults = Protocol()
    seed_types = args.seed_types or defaults.seed_types
    target_types = args.target_types or defaults.target_types
    if len(types) == 1 and not (args.seed_types or args.target_types):
        # A log of one interaction type (ratings): that type seeds and is the target.
        seed_types = target_types = tuple(types)
    return Protocol(seed_types=seed_types, target_types=target_types, k=args.k)


def _training_events(events: list[dict[str, Any]], args: argparse.Namespace) -> int:
    """How many events fall before the cut (what the served model trains on)."""
    if not events:
        return 0
    cut = max(e["ts"] for e in events) - args.test_hours * 3600.0
    return sum(e["ts"] < cut for e in events)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run the evaluation; 0 on success, 2 when the input cannot be evaluated."""
    import logging

    from agents.progress import Progress

    # gensim logs every epoch's progress at INFO: the report's own lines say enough.
    logging.getLogger("gensim").setLevel(logging.WARNING)

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    rejected: Counter[str] = Counter()
    try:
        spec = import_spec(args)
        with Progress("reading", unit="events") as bar:
            events = []
            for event in read_events(args.events, rejected, spec):
                events.append(event)
                bar.update()
    except InputError as exc:  # names the file already
        say(f"tastestream evaluate: {exc}")
        return 2
    except (OSError, ValueError) as exc:
        say(f"tastestream evaluate: cannot read {args.events}: {exc}")
        return 2
    say(f"read {len(events):,} valid events, rejected {sum(rejected.values()):,} {dict(rejected)}")

    from agents.trainer import epochs_for
    from models.evaluation import evaluate, report_markdown
    from models.evaluation.baselines import baseline_rows
    from models.evaluation.rows import RecentlyViewed, SeedEcho
    from models.evaluation.served import ServedSystem, served_rows
    from models.training import TrainingParams

    try:
        protocol = _protocol(args, events)
        params = TrainingParams(seed=args.seed)
        # As `train` chooses them (by the size of what it trains on), unless given.
        params.embedding.epochs = args.epochs or epochs_for(_training_events(events, args))
        if args.dim is not None:
            params.embedding.dim = args.dim
        system = ServedSystem(params, seed=args.seed)
        rows = [
            *served_rows(system),
            *baseline_rows(args.baselines, seed=args.seed),
            SeedEcho(),
            RecentlyViewed(),
        ]
        result = evaluate(
            events,
            rows,
            test_hours=args.test_hours,
            protocol=protocol,
            seed=args.seed,
            progress=say,
        )
    except ValueError as exc:
        say(f"tastestream evaluate: {exc}")
        return 2
    except ImportError as exc:  # a baseline's library is not installed
        say(f"tastestream evaluate: {exc}; install the eval extra or pass --baselines none")
        return 2
    result["input"] = {"path": args.events, "accepted": len(events), "rejected": dict(rejected)}
    markdown = report_markdown(result, title=args.title or f"Offline evaluation: {args.events}")
    if rejected:
        markdown += f"\nRejected input by reason: {json.dumps(dict(rejected))}\n"
    print(markdown, flush=True)
    if args.out:
        from agents.cli_io import atomic_output

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        json_path = out.with_suffix(".json")
        with atomic_output(out) as md_tmp, atomic_output(json_path) as json_tmp:
            md_tmp.write_text(markdown)
            json_tmp.write_text(json.dumps(result, indent=2) + "\n")
        say(f"wrote {out} and {json_path}")
    return 0
