"""Event input for the commands that read a log: ``import``, ``evaluate``, ``train --events``.

One set of command-line options describes a CSV log (:func:`add_import_options`,
turned into a :class:`streams.importer.ImportSpec` by :func:`import_spec`), and
one reader (:func:`read_events`) gives canonical events from any input the
commands accept: contract events as JSONL or msgpack (a file or ``-`` for
stdin), a durable event-log directory, or a CSV log read through the importer
(when ``--columns`` is given), gzip or not. Rejected input is counted by reason,
never raised.

Examples
--------
>>> import argparse
>>> p = argparse.ArgumentParser()
>>> add_import_options(p, required=False)
>>> args = p.parse_args(["--no-header", "--columns", "user_id=0,item_id=1,type=3,ts=4",
...                      "--types", "pv=click,buy=purchase"])
>>> spec = import_spec(args)
>>> spec.header, spec.columns["type"], spec.types["pv"]
(False, '3', 'click')
>>> import_spec(p.parse_args([])) is None
True
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from agents.cli_io import CliError, check_input_path, open_input
from streams.events import EVENT_TYPES, EventError, parse_ts
from streams.importer import (
    DELIMITERS,
    TS_UNITS,
    ImportSpec,
    ImportSpecError,
    ImportStats,
    import_csv,
    parse_mapping,
)


class InputError(CliError):
    """The input cannot be read at all (bad options, missing file); one line for the CLI."""


def _time(text: str) -> float:
    try:
        return parse_ts(text if not text.replace(".", "", 1).isdigit() else float(text))
    except EventError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc.reason}") from None


def add_import_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """The options that describe a CSV log (``required``: ``--columns`` must be given)."""
    group = parser.add_argument_group("CSV log (read through the importer)")
    group.add_argument(
        "--columns",
        required=required,
        default=None,
        help="field=csv_column,... (0-based positions with --no-header), e.g. "
        "user_id=0,item_id=1,category=2,type=3,ts=4",
    )
    group.add_argument(
        "--types", default=None, help="csv_value=event_type,... e.g. pv=click,buy=purchase"
    )
    group.add_argument(
        "--type",
        dest="every_type",
        default=None,
        choices=EVENT_TYPES,
        help="every row has this type (a log of one interaction type, e.g. ratings)",
    )
    group.add_argument(
        "--no-header", dest="no_header", action="store_true", help="the file has no header row"
    )
    group.add_argument(
        "--delimiter",
        default="auto",
        help=f"auto (default), {', '.join(DELIMITERS)} or one character",
    )
    group.add_argument("--ts-unit", dest="ts_unit", default="auto", choices=list(TS_UNITS))
    group.add_argument(
        "--since", type=_time, default=None, help="keep rows at or after (epoch s or ISO)"
    )
    group.add_argument("--until", type=_time, default=None, help="keep rows before this time")


def import_spec(args: argparse.Namespace) -> ImportSpec | None:
    """The :class:`ImportSpec` the options describe, or ``None`` without ``--columns``.

    Raises
    ------
    InputError
        A mapping or option that cannot work, with the importer's reason.
    """
    if not getattr(args, "columns", None):
        return None
    delimiter = DELIMITERS.get(args.delimiter, args.delimiter)
    try:
        return ImportSpec(
            columns=parse_mapping(args.columns),
            types=parse_mapping(args.types) if args.types else {},
            ts_unit=args.ts_unit,
            delimiter=delimiter,
            header=not args.no_header,
            since=args.since,
            until=args.until,
            every_type=args.every_type,
        )
    except ImportSpecError as exc:
        raise InputError(str(exc)) from None


def read_events(
    path: str,
    rejected: Counter[str],
    spec: ImportSpec | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Canonical events from a CSV log (with ``spec``), JSONL/msgpack, ``-`` or a log directory.

    Parameters
    ----------
    path
        The input; ``-`` is stdin (JSONL or msgpack only).
    rejected
        Filled with rejected rows or lines by reason: the importer's reasons for
        a CSV log, ``"undecodable line"`` and the field at fault otherwise.
    spec
        Read ``path`` as a CSV log with this mapping.
    progress
        For a CSV log, called with the rows read so far (see
        :func:`streams.importer.import_csv`).

    Raises
    ------
    InputError
        The file is missing or unreadable, or the mapping does not fit its header.
    """
    if spec is not None:
        if path == "-":
            raise InputError("a CSV log is read from a file, not stdin")
        try:
            check_input_path(path)
        except CliError as exc:
            raise InputError(exc.message, exc.hint) from None
        stats = ImportStats()
        try:
            yield from import_csv(path, spec, stats=stats, progress=progress)
        except ImportSpecError as exc:
            raise InputError(f"{path}: {exc}") from None
        except OSError as exc:
            raise InputError(f"{path}: {exc.strerror or exc}") from None
        finally:
            rejected.update(stats.rejected)
        return
    if path != "-" and Path(path).is_dir():
        from streams.eventlog import read_logs

        yield from read_logs(path)  # validated when they were appended
        return
    from agents.producer import read_event_file

    try:
        stream = open_input(path)
    except CliError as exc:
        raise InputError(exc.message, exc.hint) from None
    try:
        # Canonical events: each line is validated, rejects are counted by field.
        yield from read_event_file(stream, rejected, name=path)
    except ValueError as exc:  # neither JSON lines nor msgpack (a binary file, a zip)
        raise InputError(str(exc)) from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
