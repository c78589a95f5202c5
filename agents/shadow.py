"""Shadow reports and promotion: ``tastestream model shadow`` and ``model promote``.

    tastestream train --once --candidate            write a version without making it live
    tastestream model shadow VERSION --from SRC [--since T] [--until T] [--k 200]
    tastestream model promote VERSION [--margin 0.02] [--force]

A **shadow report** scores a candidate version and the live one (``CURRENT``)
on the same window of production events, read as ``tastestream replay`` reads
them (:func:`agents.replay.open_source`: the durable event log, a contract or
CSV file, or the events topic). Each version answers the window's seeds from
its own index (:meth:`models.model_version.LoadedModel.similar`, what
``/items/{id}/similar`` serves from a model) and is scored with the offline
evaluation's purchase-intent hit rates (Etsy's ``|P ∩ S| / |P|`` and its novel
variant, per task: item-to-item, click-to-cart, cart-to-cart; see
:mod:`models.evaluation.metrics`): seeds and targets both come from the
window, in time order, so a target is predicted only from what came before it.
The report is saved beside the version, ``<models root>/<VERSION>.shadow.json``
(outside the version's directory: a published version never changes), with the
window, both versions' rows, and whether the window overlaps either version's
training data (then its scores flatter that version: pick a window after both).

**Promotion** makes the candidate ``CURRENT`` and announces it (action
``promote``: workers load it whether it is older or newer than the live one)
only when its report exists, was made against the version live now, and shows
no task where the candidate's novel hit rate (its hit rate where a task has no
novel targets) is below the live one's by more than ``--margin`` (absolute, 0.02
by default). ``--force`` promotes anyway and says what it overrode.

The same replayed window can also drive a whole **shadow stack**: a worker
with its own ``TASTESTREAM_TOPIC_PREFIX=shadow-...`` and ``TASTESTREAM_DATA_DIR``
(its own models root, its own CURRENT, surfaces or ranker weights), fed by
``tastestream replay --from LOG --to-topic --prefix shadow-...``: its lists can
be read and compared with production's while it never touches production state.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agents.cli_io import CliError, add_csv_options, positive_float, positive_int
from agents.settings import Settings

REPORT_SUFFIX = ".shadow.json"
REPORT_FORMAT = 1
#: Points of novel hit rate a candidate may lose against the live version and still be promoted.
DEFAULT_MARGIN = 0.02


def report_path(root: Path, version: str) -> Path:
    """Where the shadow report of ``version`` lives: beside its directory in ``root``."""
    return root / f"{version}{REPORT_SUFFIX}"


def score_version(model: Any, events: list[dict[str, Any]], k: int) -> dict[str, dict[str, Any]]:
    """Hit rates per task of a loaded version's index on a window of events.

    The window is the test part of an :class:`models.evaluation.EvalData` with
    no training events (seeds and targets both come from the window, in time
    order), scored by the offline evaluation's own :func:`item_targets` and
    :func:`hit_rate`; each seed is answered by :func:`similar_items` with the
    model alone, as ``/items/{id}/similar`` asks the model before its
    fallbacks. Each row is :meth:`models.evaluation.metrics.HitRate.to_dict`.
    """
    from models.candidates.similar import similar_items
    from models.evaluation import TASKS, EvalData, Protocol
    from models.evaluation.metrics import hit_rate, item_targets
    from models.sessions import INTERACTION_TYPES

    window = sorted((e for e in events if e["type"] in INTERACTION_TYPES), key=lambda e: e["ts"])
    if not window:
        return {}
    data = EvalData(train=[], test=window, cut=window[0]["ts"], protocol=Protocol(k=k))
    rows: dict[str, dict[str, Any]] = {}
    for task in TASKS.values():

        def answer(seed: tuple[str, str], to_type: str | None = task.target_type) -> list[str]:
            found = similar_items(seed[0], seed[1], to_type, k=k, now=data.cut, model=model)
            return [candidate.item_id for candidate in found.items]

        rows[task.name] = hit_rate(item_targets(data, task), answer, k=k).to_dict()
    return rows


def _overlaps(manifest_data: Mapping[str, Any], first_ts: float, last_ts: float) -> bool:
    start, end = manifest_data.get("first_ts"), manifest_data.get("last_ts")
    return start is not None and end is not None and start <= last_ts and first_ts <= end


def shadow_report(
    settings: Settings,
    version: str,
    events: Iterable[dict[str, Any]],
    window: dict[str, Any],
    k: int = 200,
) -> dict[str, Any]:
    """Score ``version`` and the live version on ``events``; save and return the report.

    Parameters
    ----------
    settings
        Where the models root is.
    version
        The candidate (a version under the models root).
    events
        The window's events (from :func:`agents.replay.open_source`).
    window
        What names the window in the report: source, since, until.
    k
        Candidates per seed.

    Raises
    ------
    CliError
        An unknown version, a window without events, a version that does not load.
    """
    from agents.cli_io import atomic_output
    from agents.serving import models_roots
    from models.model_version import (
        ModelVersionError,
        current_version,
        list_versions,
        load_version,
    )

    root = models_roots(settings)[0]
    versions = {v.version: v for v in list_versions(root)}
    if version not in versions:
        raise CliError(f"no version {version!r} in {root}", "see `tastestream model list`")
    events = list(events)
    if not events:
        raise CliError(f"no events in {window.get('source')} within the window", "check --since")
    first_ts, last_ts = min(e["ts"] for e in events), max(e["ts"] for e in events)
    live = current_version(root)
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "version": version,
        "live_version": live if live != version else None,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "window": {
            **window,
            "events": len(events),
            "users": len({e["user_id"] for e in events}),
            "first_ts": first_ts,
            "last_ts": last_ts,
        },
        "k": k,
        "rows": {},
        "overlaps_training": {},
    }
    for role, name in (("candidate", version), ("live", report["live_version"])):
        if name is None or name not in versions:
            continue
        try:
            model = load_version(versions[name].path)
        except ModelVersionError as exc:
            raise CliError(f"{role} version {name} does not load: {exc}") from None
        report["rows"][role] = score_version(model, events, k)
        report["overlaps_training"][role] = _overlaps(versions[name].data, first_ts, last_ts)
    path = report_path(root, version)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    report["path"] = str(path)
    return report


def _headline(row: Mapping[str, Any]) -> float | None:
    """The figure promotion compares: the novel hit rate, else the hit rate."""
    return row["novel_rate"] if row.get("novel_rate") is not None else row.get("rate")


def regressions(report: Mapping[str, Any], margin: float = DEFAULT_MARGIN) -> list[str]:
    """Where the candidate is worse than the live version by more than ``margin``.

    Examples
    --------
    >>> row = lambda novel: {"rate": 0.5, "novel_rate": novel}
    >>> report = {"rows": {"candidate": {"click-to-cart": row(0.30), "cart-to-cart": row(0.5)},
    ...                    "live": {"click-to-cart": row(0.40), "cart-to-cart": row(0.49)}}}
    >>> regressions(report)
    ['click-to-cart: novel hit rate 30.0% vs live 40.0% (-10.0 points; margin 2.0)']
    >>> regressions(report, margin=0.2)
    []
    """
    rows = report.get("rows", {})
    candidate, live = rows.get("candidate", {}), rows.get("live")
    if not live:
        return []
    worse = []
    for task, live_row in live.items():
        ours, theirs = _headline(candidate.get(task, {})), _headline(live_row)
        if theirs is None:
            continue
        what = "novel hit rate" if live_row.get("novel_rate") is not None else "hit rate"
        if ours is None or ours < theirs - margin:
            ours_text = "none" if ours is None else f"{ours:.1%}"
            delta = "" if ours is None else f"{(ours - theirs) * 100:+.1f} points; "
            limit = f"margin {margin * 100:.1f}"
            worse.append(f"{task}: {what} {ours_text} vs live {theirs:.1%} ({delta}{limit})")
    return worse


def report_markdown(report: Mapping[str, Any]) -> str:
    """The report as a Markdown table: per task, both versions' hit rates and the difference."""
    window = report["window"]
    live = report.get("live_version") or "none"
    lines = [
        f"Shadow report: {report['version']} vs live {live}",
        f"window: {window['events']:,} events of {window['users']:,} users from "
        f"{window.get('source')} ({_iso(window['first_ts'])} .. {_iso(window['last_ts'])}), "
        f"k={report['k']}",
        "",
        "| task | candidate hit | candidate novel | live hit | live novel | Δ novel |",
        "|---|---|---|---|---|---|",
    ]
    rows = report["rows"]
    for task, ours in rows.get("candidate", {}).items():
        theirs = rows.get("live", {}).get(task, {})
        delta = "-"
        if _headline(ours) is not None and _headline(theirs) is not None:
            delta = f"{(_headline(ours) - _headline(theirs)) * 100:+.1f} pts"
        lines.append(
            f"| {task} | {_pct(ours.get('rate'))} | {_pct(ours.get('novel_rate'))} | "
            f"{_pct(theirs.get('rate'))} | {_pct(theirs.get('novel_rate'))} | {delta} |"
        )
    for role, overlap in report.get("overlaps_training", {}).items():
        if overlap:
            lines.append(
                f"warning: the window overlaps the {role} version's training data "
                "(its scores are flattered); choose a window after both"
            )
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def promote(
    settings: Settings, version: str, margin: float = DEFAULT_MARGIN, force: bool = False
) -> dict[str, Any]:
    """Make ``version`` CURRENT in every models root and announce it, if its report allows.

    Returns what was decided: ``{"version", "previous", "forced": [reasons overridden]}``.

    Raises
    ------
    CliError
        No such version, no report, a report against another live version, or
        a candidate worse than the live version by more than ``margin`` (all
        but the first are overridden by ``force``).
    """
    from agents.serving import models_roots
    from agents.trainer import announce
    from models.model_version import current_version, list_versions, set_current

    roots = models_roots(settings)
    if version not in {v.version for v in list_versions(roots[0])}:
        raise CliError(f"no version {version!r} in {roots[0]}", "see `tastestream model list`")
    live = current_version(roots[0])
    if version == live:
        raise CliError(f"{version} is CURRENT already")
    path = report_path(roots[0], version)
    objections: list[str] = []
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        report = None
        objections.append(f"no shadow report ({path})")
    if report is not None:
        if live is not None and report.get("live_version") != live:
            objections.append(
                f"its shadow report compared it with {report.get('live_version')}, "
                f"but {live} is live now"
            )
        objections += regressions(report, margin)
    if objections and not force:
        raise CliError(
            f"not promoting {version}: {'; '.join(objections)}",
            f"run `tastestream model shadow {version} --from ...` on recent events, or --force",
        )
    info = set_current(roots[0], version)
    for root in roots[1:]:
        set_current(root, version)
    announce(settings, info.announcement("promote"))
    return {"version": version, "previous": live, "forced": objections}


# -- the verbs --------------------------------------------------------------------------------


def add_model_parsers(model_sub: Any, data_dir: Any) -> None:
    """Add ``model shadow`` and ``model promote`` to the ``model`` verb's subparsers."""
    from agents.cli_io import add_output_options

    q = model_sub.add_parser(
        "shadow",
        help="score a version against the live one on a window of production events",
        description="Score VERSION and the live version on the same window of events (the "
        "sources of `tastestream replay`); save the report beside the version.",
    )
    q.add_argument("version", help="the candidate version (see `tastestream model list`)")
    q.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="DIR|FILE|kafka:TOPIC",
        help="where the window's events are: an event-log directory, a file, or kafka:TOPIC",
    )
    q.add_argument("--since", default=None, help="window start (epoch s or ISO)")
    q.add_argument("--until", default=None, help="window end, exclusive (epoch s or ISO)")
    q.add_argument("--k", type=positive_int, default=200, help="candidates per seed (default 200)")
    add_csv_options(q)
    q.add_argument("--json", action="store_true", help="print the report as JSON")
    q.set_defaults(func=cmd_shadow, verb_parser=q)
    add_output_options(q, argparse.SUPPRESS)
    data_dir(q)

    q = model_sub.add_parser(
        "promote",
        help="make a version CURRENT once its shadow report shows it no worse than the live one",
    )
    q.add_argument("version", help="the version to make CURRENT")
    q.add_argument(
        "--margin",
        type=positive_float,
        default=DEFAULT_MARGIN,
        help="novel hit-rate points (as a fraction) it may lose per task (default 0.02)",
    )
    q.add_argument("--force", action="store_true", help="promote without a report, or despite it")
    q.set_defaults(func=cmd_promote, verb_parser=q)
    add_output_options(q, argparse.SUPPRESS)
    data_dir(q)


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.load()
    return settings.replace(data_dir=args.data_dir) if args.data_dir else settings


def cmd_shadow(args: argparse.Namespace) -> int:
    from agents.replay import csv_options, open_source, parse_time

    settings = _settings(args)
    since = parse_time(args.since, "--since") if args.since is not None else None
    until = parse_time(args.until, "--until") if args.until is not None else None
    source = open_source(args.source, settings, since, until, csv_options(args))
    window = {"source": source.name, "since": since, "until": until}
    report = shadow_report(settings, args.version, source.events, window, args.k)
    print(json.dumps(report, indent=2) if args.json else report_markdown(report), flush=True)
    print(f"saved {report['path']}", file=sys.stderr, flush=True)
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    settings = _settings(args)
    decision = promote(settings, args.version, args.margin, args.force)
    line = f"CURRENT is now {decision['version']} (was {decision['previous'] or 'none'})"
    if decision["forced"]:
        line += f"; forced over: {'; '.join(decision['forced'])}"
    print(line, flush=True)
    return 0
