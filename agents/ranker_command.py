"""``tastestream rank-bootstrap`` and ``tastestream tune``: the learned ranker, offline.

::

    tastestream rank-bootstrap --events FILE --out RANKER.npz [--test-hours 24] [--cuts 4]
    tastestream tune (--outcomes DIR --ranker RANKER.npz | --events FILE) [--surface home]
                     [--objective purchase] [--factor favorite=0.9] [--bounds cart=0:20]
                     [--fix click=1] [--trials 60] [--held-back 0.3] [--apply CONFIG.toml]

``rank-bootstrap`` learns the heads from a log without impressions
(:func:`models.ranking.bootstrap.bootstrap_ranker`) and writes the file a
worker starts from (``ranker_path``). ``tune`` replays logged examples: a
worker's durable outcome log (``data_dir/outcomes``: every impression with its
features and labels, scored by ``--ranker``), or lists bootstrapped from an
event log; it tunes the utility weights on all lists but a held-back share
(:func:`models.ranking.tune.tune`), prints the report and the held-back
comparison of the chosen weights with the configured ones and with equal
weights, and with ``--apply`` writes ``[ranker_weights.<surface>]`` to a config file.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from agents.cli_io import CliError
from agents.event_input import InputError, add_import_options, import_spec, read_events


def _pairs(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected name=value, got {part!r}")
        out[name.strip()] = value.strip()
    return out


def add_parser(subparsers: Any, verb: Any) -> None:
    """Register ``rank-bootstrap`` and ``tune``."""
    from agents.cli_io import positive_float, positive_int

    p = verb("rank-bootstrap", "learn the ranker's heads from an event log without impressions")
    p.add_argument("--events", required=True, help="JSONL/msgpack events or a CSV log (--columns)")
    p.add_argument("--out", required=True, help="the ranker file to write (.npz)")
    p.add_argument(
        "--test-hours",
        dest="window_hours",
        type=positive_float,
        default=24.0,
        help="the label window after each cut, hours (default 24)",
    )
    p.add_argument("--cuts", type=positive_int, default=4, help="cuts, the last held out (4)")
    p.add_argument("--seed", type=int, default=0)
    add_import_options(p, required=False)
    p.set_defaults(func=cmd_rank_bootstrap)

    p = verb("tune", "constrained Bayesian optimisation of the ranker's utility weights")
    p.add_argument("--outcomes", help="a durable outcome log directory (data_dir/outcomes)")
    p.add_argument("--ranker", help="the ranker file that scores --outcomes")
    p.add_argument("--events", help="or: an event log to bootstrap lists from")
    p.add_argument("--surface", default="home")
    p.add_argument("--objective", default="purchase", help="head to maximise (purchase)")
    p.add_argument("--factor", type=_pairs, default={}, help="c per head, e.g. favorite=0.9")
    p.add_argument("--bounds", type=_pairs, default={}, help="e.g. cart=0:20 (default 0:10)")
    p.add_argument("--fix", type=_pairs, default=None, help="the scale, e.g. click=1 (default)")
    p.add_argument("--trials", type=positive_int, default=60)
    p.add_argument(
        "--held-back",
        dest="held_back",
        type=positive_float,
        default=0.3,
        help="share of lists held back to check the chosen weights (0.3)",
    )
    p.add_argument("--test-hours", dest="window_hours", type=positive_float, default=24.0)
    p.add_argument("--cuts", type=positive_int, default=4)
    p.add_argument("--apply", default=None, help="write the chosen weights to this TOML file")
    p.add_argument("--seed", type=int, default=0)
    add_import_options(p, required=False)
    p.set_defaults(func=cmd_tune)


def _read(args: argparse.Namespace) -> list[dict[str, Any]]:
    rejected: Counter[str] = Counter()
    try:
        events = list(read_events(args.events, rejected, import_spec(args)))
    except InputError:
        raise
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {args.events}: {exc}") from None
    if not events:
        raise CliError(f"{args.events}: no valid events", f"rejected: {dict(rejected)}")
    return events


def _bootstrap(args: argparse.Namespace) -> Any:
    from models.ranking.bootstrap import bootstrap_ranker

    events = _read(args)
    end = max(e["ts"] for e in events)
    try:
        return bootstrap_ranker(
            events, end, window_seconds=args.window_hours * 3600.0, cuts=args.cuts, seed=args.seed
        )
    except ValueError as exc:
        raise CliError(str(exc), "a longer log, fewer --cuts or a shorter --test-hours") from None


def cmd_rank_bootstrap(args: argparse.Namespace) -> int:
    """Bootstrap a ranker from ``--events`` and write it to ``--out``; 0 on success."""
    found = _bootstrap(args)
    path = found.ranker.save(args.out)
    print(
        f"wrote {path}: {len(found.train):,} examples at {len(found.cuts) - 1} cuts; "
        f"held out {len(found.held_out):,}"
    )
    for head, quality in found.held_out_quality().items():
        print(f"  {head}: held-out Brier {quality['brier']}")
    return 0


def _outcome_examples(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from models.ranking.ranker import RankerError, examples_of, load_ranker
    from streams.eventlog import read_logs

    if not args.ranker:
        raise CliError("--outcomes needs --ranker", "the ranker file that scores them")
    try:
        ranker = load_ranker(args.ranker)
    except RankerError as exc:
        raise CliError(str(exc)) from None
    outcomes = [o for o in read_logs(args.outcomes) if o.get("surface") == args.surface]
    x, y, ids = examples_of(outcomes)
    if not len(x):
        raise CliError(f"{args.outcomes}: no {args.surface} outcomes with features")
    lists = np.unique([i.rsplit(":", 1)[0] for i in ids], return_inverse=True)[1]
    return ranker.weights.probabilities(x), y, lists


def cmd_tune(args: argparse.Namespace) -> int:
    """Tune the utility weights on replayed examples, print the report; 0 on success."""
    from agents.ranking import surface_weights
    from agents.settings import Settings
    from models.ranking.tune import compare, split_lists, tune
    from models.ranking.utility import HEADS

    if bool(args.outcomes) == bool(args.events):
        raise CliError("give either --outcomes DIR (with --ranker) or --events FILE")
    if not 0.0 < args.held_back < 1.0:
        raise CliError(f"--held-back must be between 0 and 1, got {args.held_back}")
    baseline = surface_weights(Settings.load()).get(args.surface)
    if baseline is None:
        raise CliError(f"--surface {args.surface!r} is not ranked (see ranker_weights)")
    if args.outcomes:
        p, y, lists = _outcome_examples(args)
    else:
        found = _bootstrap(args)
        examples = found.train
        p, y, lists = found.ranker.weights.probabilities(examples.x), examples.y, examples.lists
    try:
        factors = {k: float(v) for k, v in args.factor.items()}
        bounds = {k: tuple(float(x) for x in v.split(":")) for k, v in args.bounds.items()}
        fixed = None if args.fix is None else {k: float(v) for k, v in args.fix.items()}
    except ValueError as exc:
        raise CliError(f"--factor/--bounds/--fix: {exc}", "e.g. --bounds cart=0:20") from None
    back = split_lists(lists, args.held_back, args.seed)
    try:
        result = tune(
            p[~back],
            y[~back],
            lists[~back],
            baseline,
            objective=args.objective,
            factors=factors,
            bounds=bounds,
            fixed=fixed,
            trials=args.trials,
            seed=args.seed,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(result.report())
    held = compare(
        p[back],
        y[back],
        lists[back],
        {"configured": baseline, "equal": dict.fromkeys(HEADS, 1.0), "chosen": result.chosen},
    )
    print(f"\nheld back: {len(np.unique(lists[back]))} lists, per-list PR-AUC per head:\n")
    print("| weights | " + " | ".join(HEADS) + " |")
    print("|---|" + "---|" * len(HEADS))
    for name, metrics in held.items():
        print(f"| {name} | " + " | ".join(f"{metrics[h]:.4f}" for h in HEADS) + " |")
    if args.apply:
        write_weights(Path(args.apply), args.surface, result.chosen)
        print(f"\nwrote [ranker_weights.{args.surface}] to {args.apply}")
    return 0


def write_weights(path: Path, surface: str, weights: dict[str, float]) -> None:
    """Replace (or append) the ``[ranker_weights.<surface>]`` table of a TOML file.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "c.toml"
    >>> _ = f.write_text("a = 1\\n[ranker_weights.home]\\nclick = 3.0\\n\\n[x]\\nb = 2\\n")
    >>> write_weights(f, "home", {"click": 1.0, "purchase": 4.5})
    >>> print(f.read_text())
    a = 1
    [ranker_weights.home]
    click = 1.0
    purchase = 4.5
    <BLANKLINE>
    [x]
    b = 2
    <BLANKLINE>
    """
    import tomllib

    text = path.read_text() if path.exists() else ""
    table = f"[ranker_weights.{surface}]\n" + "".join(
        f"{head} = {round(float(w), 6)!r}\n" for head, w in weights.items()
    )
    pattern = re.compile(
        rf"^\[ranker_weights\.{re.escape(surface)}\]\n(?:(?!\[).*\n?)*", re.MULTILINE
    )
    if pattern.search(text):
        text = pattern.sub(lambda m: table + "\n", text, count=1)
    else:
        text = text + ("" if text.endswith("\n") or not text else "\n") + "\n" + table
    tomllib.loads(text)  # never leave a file the worker cannot read
    path.write_text(text)
