"""``tastestream experiment``: start, ramp, stop and list A/B experiments.

    tastestream experiment start NAME [--shares control=0.01,treatment=0.01 | --shares 0.01]
    tastestream experiment ramp NAME --shares control=0.3,treatment=0.3
    tastestream experiment stop NAME [--variant V]
    tastestream experiment list

``start`` reads NAME's definition from the config (``[experiments.NAME]`` in
deploy/tastestream.toml or ``TASTESTREAM_EXPERIMENTS``), checks it, and writes
a new run to the control topic ``<prefix>.experiments``, which every worker
reads (:mod:`agents.experiments`). ``ramp`` raises shares (users only move out
of exempt); ``stop`` stops a variant (its users get the control) or the whole
experiment. Every error is one line naming what is wrong.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from agents.cli_io import CliError
from agents.settings import Settings
from models.experiments import Experiment, ExperimentError, parse_shares


def _current(settings: Settings, name: str) -> Experiment:
    from agents.experiments import read_experiments

    found = read_experiments(settings).get(name)
    if found is None:
        raise CliError(
            f"no experiment {name!r} on {settings.topics.experiments.name}",
            f"start it first: tastestream experiment start {name}",
        )
    return found


def _definition(settings: Settings, name: str) -> Experiment:
    from agents.experiments import check_definition

    raw = (settings.experiments or {}).get(name)
    if raw is None:
        known = ", ".join(sorted(settings.experiments or {})) or "none"
        raise CliError(
            f"no experiment {name!r} in the config (defined: {known})",
            "define it under [experiments.NAME] in the config file or TASTESTREAM_EXPERIMENTS",
        )
    experiment = Experiment.from_definition(name, raw)
    check_definition(settings, experiment)
    return experiment


def run_command(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """Carry out one ``experiment`` command; return the record written (or the list)."""
    from agents.experiments import publish_experiment, read_experiments
    from agents.provision import ensure_topics

    if not settings.kafka_url:
        raise CliError(
            "experiment needs a broker: set TASTESTREAM_KAFKA_URL",
            "`tastestream broker` or `tastestream demo` prints the export line",
        )
    ensure_topics(settings)
    action = args.experiment_command
    now = time.time()
    if action == "list":
        return {"experiments": [e.as_record() for e in read_experiments(settings).values()]}
    if action == "start":
        definition = _definition(settings, args.name)
        running = read_experiments(settings)
        for other in running.values():
            overlap = set(other.surfaces) & set(definition.surfaces)
            if other.status == "running" and other.name != args.name and overlap:
                raise CliError(
                    f"experiment {other.name!r} already runs on {', '.join(sorted(overlap))}",
                    f"stop it first: tastestream experiment stop {other.name}",
                )
        names = [v.name for v in definition.variants]
        shares = parse_shares(args.shares, names) if args.shares else None
        previous = running.get(args.name)
        if previous is not None:
            definition = Experiment.from_definition(
                args.name, {**definition.as_record(), "revision": previous.revision}
            )
        record = definition.started(now, shares)
    elif action == "ramp":
        current = _current(settings, args.name)
        record = current.ramped(now, parse_shares(args.shares, [v.name for v in current.variants]))
    else:  # stop
        current = _current(settings, args.name)
        record = current.stopped(now, args.variant, "stopped by an operator")
    publish_experiment(settings, record)
    return record.as_record()


def cmd_experiment(args: argparse.Namespace) -> int:
    settings = Settings.load()
    try:
        result = run_command(settings, args)
    except ExperimentError as exc:
        raise CliError(str(exc)) from None
    print(json.dumps(result, indent=None if args.experiment_command != "list" else 2), flush=True)
    return 0


def add_parser(subparsers: Any, verb: Any = None) -> None:
    """Register the ``experiment`` verb (start, ramp, stop, list) on ``subparsers``."""
    from agents.cli_io import add_output_options

    verb = verb or (lambda name, text: subparsers.add_parser(name, help=text, description=text))
    p = verb("experiment", "start, ramp, stop or list A/B experiments (read by every worker)")
    sub = p.add_subparsers(dest="experiment_command", required=True, parser_class=type(p))

    def command(name: str, text: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=text, description=text[:1].upper() + text[1:])
        q.set_defaults(func=cmd_experiment, verb_parser=q)
        add_output_options(q, argparse.SUPPRESS)
        return q

    q = command("start", "start a new run of an experiment defined in the config")
    q.add_argument("name", help="the experiment ([experiments.NAME] in the config)")
    q.add_argument(
        "--shares",
        default=None,
        help="NAME=SHARE,... or one share for every variant (e.g. 0.01 for a canary); "
        "default: the config's",
    )
    q = command("ramp", "raise the traffic shares of a running experiment")
    q.add_argument("name", help="the running experiment")
    q.add_argument("--shares", required=True, help="NAME=SHARE,... or one share for every variant")
    q = command("stop", "stop an experiment, or one variant of it (its users get the control)")
    q.add_argument("name", help="the running experiment")
    q.add_argument("--variant", default=None, help="stop only this variant")
    command("list", "the experiments on the control topic, with their shares and stops")
