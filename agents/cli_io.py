"""What the command line needs around files and errors: one clear line, nothing half-written.

:class:`CliError` is a failure the user can act on: the CLI prints its message
and hint on one line (no traceback unless ``--debug``) and exits 2.
:func:`describe_error` turns any other exception into such a line.
:func:`open_input` opens an input file or stdin and says plainly what is wrong
with a missing, directory, empty or unreadable path; :func:`atomic_output`
gives a temporary path beside an output file and renames it into place only
when the work succeeded. The ``positive_*`` functions are argparse types.

Examples
--------
>>> positive_int("3"), positive_float("0.5"), non_negative_float("0")
(3, 0.5, 0.0)
>>> positive_int("0")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: must be a whole number of at least 1, got '0'
>>> describe_error(FileNotFoundError(2, "No such file or directory", "events.jsonl"))
'events.jsonl: no such file (check the path)'
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO


class CliError(Exception):
    """A failure the user can act on: printed as ``tastestream VERB: message (hint)``.

    Parameters
    ----------
    message
        What went wrong, naming the file, option or service at fault.
    hint
        What to do about it; empty when the message says it already.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


def _type(kind: type, test, wanted: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value != value or not test(value):  # value != value: NaN
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value

    parse.__name__ = wanted  # argparse names the type in some messages
    return parse


#: argparse ``type=`` for counts (at least 1).
positive_int = _type(int, lambda v: v >= 1, "a whole number of at least 1")
#: argparse ``type=`` for rates and timeouts (above 0, finite).
positive_float = _type(float, lambda v: 0 < v < float("inf"), "a number above 0")
#: argparse ``type=`` for durations that may be 0 (finite).
non_negative_float = _type(float, lambda v: 0 <= v < float("inf"), "a number of at least 0")


#: What ``--log-level`` accepts.
LOG_LEVELS = ("debug", "info", "warning", "error")


def add_output_options(parser: argparse.ArgumentParser, default: object = None) -> None:
    """``--log-level`` and ``--debug`` on ``parser``.

    On a verb's parser pass ``default=argparse.SUPPRESS``, so that the same
    options given before the verb are not reset by the verb's defaults.
    """
    parser.add_argument(
        "--log-level",
        dest="log_level",
        choices=LOG_LEVELS,
        default=default,
        help="how much to log (default warning; a worker: its log_level setting)",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default if default is argparse.SUPPRESS else False,
        help="show the Python traceback when a command fails",
    )


def add_wait_timeout(parser: argparse.ArgumentParser, waiting_for: str) -> None:
    """``--wait-timeout SECONDS`` (default 300) for a verb that waits for the workers."""
    parser.add_argument(
        "--wait-timeout",
        dest="wait_timeout",
        type=positive_float,
        default=300.0,
        metavar="SECONDS",
        help=f"give up {waiting_for} after this long (default 300)",
    )


def add_csv_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """``--columns``, ``--types`` and ``--ts-unit``: how a CSV log maps onto the event contract.

    ``import`` requires them; ``replay`` and ``model shadow`` take them for a CSV source.
    """
    when = "" if required else "CSV: "
    parser.add_argument("--columns", required=required, help=f"{when}field=csv_column,...")
    parser.add_argument("--types", required=required, help=f"{when}csv_value=event_type,...")
    parser.add_argument(
        "--ts-unit",
        dest="ts_unit",
        default="auto",
        choices=["auto", "s", "ms", "iso"],
        help=f"{when}unit of the ts column (default: decided from the first rows)",
    )


def describe_error(exc: BaseException) -> str:
    """One line for an exception: the cause, and a hint where one helps.

    Parameters
    ----------
    exc
        Any exception that reached the command line.

    Returns
    -------
    str
        ``"<file>: no such file (check the path)"`` and the like; an unexpected
        error is named by its type, with a pointer to ``--debug``.
    """
    if isinstance(exc, CliError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename}: no such file (check the path)"
    if isinstance(exc, IsADirectoryError):
        return f"{exc.filename} is a directory (pass a file)"
    if isinstance(exc, PermissionError):
        return f"{exc.filename}: permission denied"
    if isinstance(exc, UnicodeDecodeError):
        return f"the input is not UTF-8 text (a binary file?): {exc.reason} at byte {exc.start}"
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror.lower()}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    module = type(exc).__module__
    if module.split(".")[0] in ("agents", "streams", "models"):
        return text or type(exc).__name__  # our own errors are written for the user
    if module.startswith(("confluent_kafka", "cimpl")) and exc.args:
        err = exc.args[0]
        reason = err.str() if hasattr(err, "str") else str(err)
        return f"Kafka: {reason} (is the broker running? check TASTESTREAM_KAFKA_URL)"
    return f"{type(exc).__name__}: {text} (an unexpected error: --debug shows the traceback)"


def check_input_path(path: str) -> Path:
    """The input file at ``path``, or a :class:`CliError` saying why it cannot be one.

    Examples
    --------
    >>> check_input_path("/")
    Traceback (most recent call last):
    ...
    agents.cli_io.CliError: / is a directory (pass a file)
    """
    file = Path(path)
    if not file.exists():
        raise CliError(f"{path}: no such file", "check the path")
    if file.is_dir():
        raise CliError(f"{path} is a directory", "pass a file")
    if not os.access(file, os.R_OK):
        raise CliError(f"{path}: permission denied")
    if file.is_file() and file.stat().st_size == 0:
        raise CliError(f"{path} is empty", "nothing to read")
    return file


def open_input(path: str) -> IO[bytes]:
    """``path`` opened for binary reading, or stdin's bytes for ``-``.

    Raises
    ------
    CliError
        As :func:`check_input_path` does.
    """
    if path == "-":
        return sys.stdin.buffer
    return check_input_path(path).open("rb")


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed to ``path`` only if the block succeeds.

    A failed or interrupted run leaves neither a half-written file nor an empty
    one behind (and an existing file at ``path`` untouched).

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_output(out) as tmp:
    ...     _ = tmp.write_text("done")
    >>> out.read_text()
    'done'
    >>> try:
    ...     with atomic_output(out.with_name("failed.txt")) as tmp:
    ...         _ = tmp.write_text("half")
    ...         raise RuntimeError("interrupted")
    ... except RuntimeError:
    ...     pass
    >>> sorted(p.name for p in out.parent.iterdir())
    ['out.txt']
    """
    final = Path(path)
    if final.is_dir():
        raise CliError(f"{path} is a directory", "name an output file")
    if not final.parent.exists():
        raise CliError(f"{final.parent}: no such directory", "create it first")
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
