"""``tastestream evaluate``: offline comparison of the candidate generators on an event file.

    tastestream evaluate --events FILE.jsonl [--test-hours 24] [--k 200] [--out REPORT.md]

Reads contract events (JSONL, a msgpack stream, ``-`` for stdin, or an event-log
directory such as ``tastestream-data/eventlog``) through the same validator as the
stream, counts rejected lines by the field at fault, trains every model on the
events before the cut and scores it on the next ``--test-hours``
(:func:`models.offline_evaluation.evaluate_models`). Prints the Markdown report;
with ``--out`` also writes it there and the JSON beside it (``REPORT.json``).
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from streams.events import EventError, validate_event


def load_events(path: str, rejected: Counter[str]) -> list[dict[str, Any]]:
    """Valid canonical events of a JSONL/msgpack file, stdin (``-``) or an event-log directory.

    Lines that do not decode count as ``"undecodable line"``, events that break
    the contract under the field at fault (``"event"`` for the whole).
    """
    from agents.progress import Progress

    events: list[dict[str, Any]] = []
    with Progress("reading", unit="events") as bar:
        if path != "-" and Path(path).is_dir():
            from streams.eventlog import read_logs

            for event in read_logs(path):  # validated when they were appended
                events.append(event)
                bar.update()
            return events
        from agents.cli_io import open_input
        from agents.producer import read_event_file

        stream = open_input(path)
        try:
            for raw in read_event_file(stream, rejected, name=path):
                bar.update()
                try:
                    events.append(validate_event(raw))
                except EventError as exc:
                    rejected[exc.field or "event"] += 1
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
    return events


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def add_parser(subparsers: Any, verb: Any = None) -> None:
    """Register the ``evaluate`` verb on ``subparsers`` (from ``add_subparsers``).

    Imports nothing heavy: every other verb's start-up stays as fast as before.
    Defaults left as ``None`` are :class:`models.token_embedding.EmbeddingParams`'.
    ``verb(name, help)`` makes the parser (the CLI's); default ``subparsers.add_parser``.
    """
    from agents.cli_io import positive_float, positive_int

    verb = verb or (lambda name, text: subparsers.add_parser(name, help=text, description=text))
    p = verb("evaluate", "offline hit rate / AUC of every candidate generator on an event file")
    p.add_argument(
        "--events", required=True, help="JSONL or msgpack events, - for stdin, or a log directory"
    )
    p.add_argument(
        "--test-hours",
        dest="test_hours",
        type=positive_float,
        default=24.0,
        help="hours after the time cut to score on (default 24)",
    )
    p.add_argument("--k", type=positive_int, default=200, help="candidates per seed (default 200)")
    p.add_argument("--out", default=None, help="write the Markdown here and the JSON beside it")
    p.add_argument(
        "--models",
        type=_names,
        default=None,
        help="comma-separated; default regularised,embedding,item2vec,bpr,cooccurrence,"
        "popularity (also: warp)",
    )
    p.add_argument("--backend", default=None, help="embedding trainer: gensim (default) or numpy")
    p.add_argument("--dim", type=positive_int, default=None, help="embedding dimension")
    p.add_argument("--epochs", type=positive_int, default=None, help="embedding epochs")
    p.add_argument(
        "--cooc-k", dest="cooc_k", type=int, default=3, help="regularisation followers (default 3)"
    )
    p.add_argument(
        "--max-seeds",
        dest="max_seeds",
        type=positive_int,
        default=None,
        help="hit rate: only the N most recent seeds before a target (default: all)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the models (default 0)")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run the evaluation; 0 on success, 2 when the input cannot be evaluated."""
    from models.offline_evaluation import DEFAULT_MODELS, KNOWN_MODELS, evaluate_models, report_text
    from models.token_embedding import BACKENDS, EmbeddingParams

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    models = args.models or DEFAULT_MODELS
    unknown = [name for name in models if name not in KNOWN_MODELS]
    if unknown:
        say(
            f"tastestream evaluate: unknown model(s) {', '.join(unknown)}; "
            f"choose from {', '.join(KNOWN_MODELS)}"
        )
        return 2
    defaults = EmbeddingParams()
    backend = args.backend or defaults.backend
    if backend not in BACKENDS:
        say(f"tastestream evaluate: --backend must be one of {', '.join(BACKENDS)}")
        return 2
    rejected: Counter[str] = Counter()
    from agents.cli_io import CliError, describe_error

    try:
        events = load_events(args.events, rejected)
    except (OSError, ValueError, CliError) as exc:  # unreadable, empty, corrupt file or log
        say(f"tastestream evaluate: cannot read {args.events}: {describe_error(exc)}")
        return 2
    accepted = len(events)
    say(f"read {accepted:,} valid events, rejected {sum(rejected.values()):,} {dict(rejected)}")
    params = EmbeddingParams(
        dim=args.dim or defaults.dim,
        epochs=args.epochs or defaults.epochs,
        cooc_k=args.cooc_k,
        seed=args.seed,
        backend=backend,
    )
    try:
        result = evaluate_models(
            events,
            test_hours=args.test_hours,
            k=args.k,
            models=models,
            embedding_params=params,
            cooc_k=args.cooc_k,
            max_seeds=args.max_seeds,
            seed=args.seed,
            progress=say,
        )
    except ValueError as exc:
        say(f"tastestream evaluate: {exc}")
        return 2
    except ImportError as exc:  # the gensim backend without gensim installed
        say(f"tastestream evaluate: {exc}; install it or pass --backend numpy")
        return 2
    result["input"] = {"path": args.events, "accepted": accepted, "rejected": dict(rejected)}
    markdown = report_text(result)
    if rejected:
        markdown += f"\nRejected input lines by field: {json.dumps(dict(rejected))}\n"
    print(markdown, flush=True)
    if args.out:
        from agents.cli_io import atomic_output

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        json_path = out.with_suffix(".json")
        with atomic_output(out) as md_tmp, atomic_output(json_path) as json_tmp:
            md_tmp.write_text(markdown)
            json_tmp.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
        say(f"wrote {out} and {json_path}")
    return 0
