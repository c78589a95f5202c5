"""Import an existing interaction log (CSV with any columns and vocabulary) as contract events.

An :class:`ImportSpec` says which CSV column holds each contract field and how the
log's event names map to :data:`streams.events.EVENT_TYPES`. :func:`import_csv`
yields canonical events (checked by :func:`streams.events.validate_event`, which
also derives a deterministic ``event_id`` when the log has none) and counts the
rows it rejects by reason in an :class:`ImportStats`.

Mapping keys
    ``ts``, ``user_id``, ``item_id``, ``type`` (required); ``event_id``,
    ``session_id``, ``value``, ``category``, ``seller``, ``price``, ``available``
    (optional; ``category`` .. ``available`` go into the event's ``item`` object).
Timestamps
    ``ts_unit`` is ``"s"`` (epoch seconds), ``"ms"`` (epoch milliseconds),
    ``"iso"`` (ISO-8601; naive means UTC) or ``"auto"``: decided once per file
    from the first rows (numbers above 1e11 are milliseconds, other numbers
    seconds, anything else ISO-8601). A row that does not fit the decided unit is
    rejected, never guessed at.
Types
    ``types`` maps the log's values to contract types (e.g. ``addtocart=cart``).
    With a mapping, any other value is rejected; with an empty mapping the log's
    values must already be contract types.
Files as they are
    A path ending in ``.gz`` (or starting with gzip's magic bytes) is read
    through gzip. ``delimiter="auto"`` takes the most frequent of ``,`` tab
    ``;`` ``|`` in the first line (MovieLens' ``u.data`` is tab-separated).
    ``header=False`` reads a file without a header row, its columns named by
    position: ``columns={"user_id": "0", "item_id": "1", ...}`` (Taobao's
    UserBehavior.csv); every row must then have as many fields as the first.
Time range
    ``since``/``until`` (epoch seconds) keep ``since <= ts < until``; other rows
    are rejected as ``"<ts column>: outside the time range"`` (a log's
    documented window, e.g. Taobao's nine days).
Rejections
    Counted under ``"<csv column>: <problem>"`` (e.g. ``"event: unknown value"``;
    a positional column is named ``"column 3 (type)"``), with the line number of
    the first example. A mapped column missing from the header (or a position
    beyond the first row) is an :class:`ImportSpecError` before any row is read.

Examples
--------
>>> import io
>>> text = "timestamp,visitorid,event,itemid\\n1433221332117,257597,view,355908\\n"
>>> spec = ImportSpec(
...     columns=parse_mapping("ts=timestamp,user_id=visitorid,item_id=itemid,type=event"),
...     types=parse_mapping("view=view,addtocart=cart,transaction=purchase"),
... )
>>> stats = ImportStats()
>>> [(e["user_id"], e["item_id"], e["type"], e["ts"]) for e in
...  import_csv(io.StringIO(text), spec, stats=stats)]
[('257597', '355908', 'view', 1433221332.117)]
>>> stats.ts_unit, stats.accepted
('ms', 1)
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import Any, TextIO

from streams.events import (
    EVENT_TYPE_SET,
    EVENT_TYPES,
    MAX_ID_CHARS,
    MAX_TS,
    EventError,
    parse_ts,
    validate_event,
)

REQUIRED_COLUMNS: tuple[str, ...] = ("ts", "user_id", "item_id", "type")
EVENT_COLUMNS: tuple[str, ...] = ("event_id", "session_id", "value")
ITEM_COLUMNS: tuple[str, ...] = ("category", "seller", "price", "available")
MAPPABLE_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + EVENT_COLUMNS + ITEM_COLUMNS
TS_UNITS: tuple[str, ...] = ("auto", "s", "ms", "iso")
#: Separators ``delimiter="auto"`` chooses from (named for the command line).
DELIMITERS: dict[str, str] = {"comma": ",", "tab": "\t", "semicolon": ";", "pipe": "|"}
GZIP_MAGIC = b"\x1f\x8b"
#: Rows read ahead to decide the timestamp unit of a file.
DETECT_ROWS = 100
#: ``progress`` is called after this many rows, and once at the end.
PROGRESS_EVERY = 10_000

_TRUE = frozenset({"1", "true", "t", "yes", "y"})
_FALSE = frozenset({"0", "false", "f", "no", "n"})
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


class ImportSpecError(ValueError):
    """The mapping or the file's header cannot work; raised before rows are read."""


def parse_mapping(text: str) -> dict[str, str]:
    """Parse ``"a=b,c=d"`` into ``{"a": "b", "c": "d"}``.

    Examples
    --------
    >>> parse_mapping("ts=timestamp, user_id=visitorid")
    {'ts': 'timestamp', 'user_id': 'visitorid'}
    >>> parse_mapping("ts")
    Traceback (most recent call last):
    ...
    streams.importer.ImportSpecError: 'ts': expected key=value
    """
    mapping: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ImportSpecError(f"{part!r}: expected key=value")
        if key in mapping:
            raise ImportSpecError(f"{key!r} is given twice")
        mapping[key] = value
    if not mapping:
        raise ImportSpecError(f"{text!r}: expected key=value pairs separated by commas")
    return mapping


@dataclass
class ImportSpec:
    """How a CSV log maps onto the event contract.

    Parameters
    ----------
    columns
        Contract field -> CSV column name.
    types
        CSV event value -> contract type (empty: values are contract types already).
    ts_unit
        ``"auto"``, ``"s"``, ``"ms"`` or ``"iso"``.
    fieldnames
        Column names for a file without a header row; ``None`` means the first
        row is the header (unless ``header`` is false).
    delimiter
        The CSV field separator, or ``"auto"`` (decided from the first line).
    header
        ``False``: the file has no header row and ``columns`` name columns by
        0-based position (``"type": "3"``).
    since, until
        Keep rows with ``since <= ts < until`` (epoch seconds; ``None``: open).
    every_type
        Every row is this contract type (a log of one interaction type, e.g.
        MovieLens ratings); then ``columns`` maps no ``type``.
    """

    columns: dict[str, str]
    types: dict[str, str] = field(default_factory=dict)
    ts_unit: str = "auto"
    fieldnames: tuple[str, ...] | None = None
    delimiter: str = ","
    header: bool = True
    since: float | None = None
    until: float | None = None
    every_type: str | None = None

    def __post_init__(self) -> None:
        unknown = [key for key in self.columns if key not in MAPPABLE_COLUMNS]
        if unknown:
            raise ImportSpecError(
                f"unknown column key(s) {', '.join(unknown)}; "
                f"expected {', '.join(MAPPABLE_COLUMNS)}"
            )
        if self.every_type is not None:
            if self.every_type not in EVENT_TYPE_SET:
                raise ImportSpecError(
                    f"every_type {self.every_type!r} is not one of {', '.join(EVENT_TYPES)}"
                )
            if "type" in self.columns or self.types:
                raise ImportSpecError("a type column (or types) and every_type: give one")
        required = [k for k in REQUIRED_COLUMNS if k != "type" or self.every_type is None]
        missing = [key for key in required if key not in self.columns]
        if missing:
            raise ImportSpecError(f"columns must map {', '.join(missing)}")
        bad = {raw: t for raw, t in self.types.items() if t not in EVENT_TYPE_SET}
        if bad:
            raw, target = next(iter(bad.items()))
            raise ImportSpecError(
                f"types: {raw}={target}: {target!r} is not one of {', '.join(EVENT_TYPES)}"
            )
        if self.ts_unit not in TS_UNITS:
            raise ImportSpecError(
                f"ts_unit {self.ts_unit!r}; expected one of {', '.join(TS_UNITS)}"
            )
        if self.delimiter != "auto" and len(self.delimiter) != 1:
            raise ImportSpecError(
                f"delimiter {self.delimiter!r}: one character, or auto, {', '.join(DELIMITERS)}"
            )
        if not self.header:
            bad_positions = [
                f"{key}={col}" for key, col in self.columns.items() if not col.isdigit()
            ]
            if bad_positions:
                raise ImportSpecError(
                    f"without a header, columns are 0-based positions: "
                    f"{', '.join(bad_positions)} is not a number"
                )
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ImportSpecError(f"since {self.since:g} is not before until {self.until:g}")

    def label(self, key: str) -> str:
        """How rejection reasons name the column mapped to ``key``.

        >>> ImportSpec(columns={"ts": "4", "user_id": "0", "item_id": "1", "type": "3"},
        ...            header=False).label("type")
        'column 3 (type)'
        """
        column = self.columns[key]
        return column if self.header else f"column {column} ({key})"


@dataclass
class ImportStats:
    """What an import did: rows read, accepted, and rejected by reason."""

    rows: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    #: First line number (1-based, header included) of each rejection reason.
    first_line: dict[str, int] = field(default_factory=dict)
    #: The timestamp unit used ("s", "ms" or "iso"), decided from the first rows if "auto".
    ts_unit: str | None = None

    def reject(self, reason: str, line: int) -> None:
        self.rejected[reason] += 1
        self.first_line.setdefault(reason, line)


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _is_number(text: str) -> bool:
    return _NUMBER.fullmatch(text) is not None


def detect_ts_unit(samples: Iterable[str]) -> str:
    """The unit of a file's timestamps from sample cells: ``"ms"``, ``"s"`` or ``"iso"``.

    Numbers win if most non-empty samples are numbers; they are milliseconds if
    their median exceeds 1e11 (year 5138 in seconds, 1973 in milliseconds).

    Examples
    --------
    >>> detect_ts_unit(["1433221332117", "1433224214164"]), detect_ts_unit(["1511544070"])
    ('ms', 's')
    >>> detect_ts_unit(["2017-11-25T01:21:10Z", ""])
    'iso'
    """
    values = [s.strip() for s in samples if s and s.strip()]
    numbers = sorted(float(v) for v in values if _is_number(v))
    if not numbers or len(numbers) * 2 <= len(values):
        return "iso"
    return "ms" if numbers[len(numbers) // 2] > MAX_TS else "s"


def _parse_ts(text: str, unit: str, column: str) -> float:
    if unit == "iso":
        if _is_number(text):
            raise _Rejected(f"{column}: a number, but the file's timestamps are ISO-8601")
        try:
            return parse_ts(text)
        except EventError:
            raise _Rejected(f"{column}: not an ISO-8601 time") from None
    if not _is_number(text):
        raise _Rejected(f"{column}: not a number (file uses epoch {unit})")
    number = float(text)
    if not math.isfinite(number) or number < 0:
        raise _Rejected(f"{column}: negative or not finite")
    seconds = number / 1000.0 if unit == "ms" else number
    if seconds > MAX_TS:
        raise _Rejected(f"{column}: too large for epoch {unit}")
    return seconds


def _parse_number(text: str, column: str) -> float:
    if not _is_number(text):
        raise _Rejected(f"{column}: not a number")
    return float(text)


def _parse_bool(text: str, column: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _Rejected(f"{column}: not a boolean (1/0, true/false, yes/no)")


def is_gzip(path: str | os.PathLike[str]) -> bool:
    """Whether a file is gzip-compressed (its magic bytes, whatever its name)."""
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def _open(source: str | os.PathLike[str] | TextIO) -> tuple[TextIO, bool]:
    if isinstance(source, str | os.PathLike):
        # utf-8-sig: spreadsheet exports often start with a byte-order mark.
        if is_gzip(source):
            return gzip.open(source, "rt", newline="", encoding="utf-8-sig"), True
        return open(source, newline="", encoding="utf-8-sig"), True
    return source, False


def detect_delimiter(line: str) -> str:
    """The most frequent of comma, tab, semicolon and pipe in ``line`` (comma if none).

    Examples
    --------
    >>> detect_delimiter("196\\t242\\t3\\t881250949"), detect_delimiter("1,2,pv,3")
    ('\\t', ',')
    """
    counts = {sep: line.count(sep) for sep in DELIMITERS.values()}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def _header_index(header: list[str], spec: ImportSpec) -> dict[str, int]:
    if not spec.header:
        beyond = [f"{k}={c}" for k, c in spec.columns.items() if int(c) >= len(header)]
        if beyond:
            raise ImportSpecError(
                f"column position(s) {', '.join(beyond)} beyond the first row's "
                f"{len(header)} fields"
            )
        return {key: int(col) for key, col in spec.columns.items()}
    positions = {name.strip(): i for i, name in enumerate(header)}
    missing = [f"{key}={col}" for key, col in spec.columns.items() if col not in positions]
    if missing:
        raise ImportSpecError(
            f"column(s) not in the header: {', '.join(missing)}; "
            f"the header has {', '.join(repr(h) for h in header)}"
        )
    return {key: positions[col] for key, col in spec.columns.items()}


def _row_to_event(
    row: list[str], index: dict[str, int], spec: ImportSpec, unit: str, width: int
) -> dict[str, Any]:
    if len(row) > width:
        raise _Rejected(
            f"row: more fields than the header's {width}"
            if spec.header
            else f"row: more fields than the first row's {width}"
        )
    cells: dict[str, str] = {}
    for key, position in index.items():
        column = spec.label(key)
        if position >= len(row):
            raise _Rejected(f"{column}: missing (row too short)")
        text = row[position].strip()
        if text:
            cells[key] = text
        elif key in REQUIRED_COLUMNS:
            raise _Rejected(f"{column}: empty")
    if spec.every_type is not None:
        etype: str | None = spec.every_type
    else:
        raw_type = cells["type"]
        etype = spec.types.get(raw_type) if spec.types else raw_type
    if etype not in EVENT_TYPE_SET:
        raise _Rejected(f"{spec.label('type')}: unknown value")
    ts = _parse_ts(cells["ts"], unit, spec.label("ts"))
    if (spec.since is not None and ts < spec.since) or (
        spec.until is not None and ts >= spec.until
    ):
        raise _Rejected(f"{spec.label('ts')}: outside the time range")
    raw: dict[str, Any] = {
        "user_id": cells["user_id"],
        "item_id": cells["item_id"],
        "type": etype,
        "ts": ts,
    }
    for key in ("event_id", "session_id", "user_id", "item_id", "category", "seller"):
        if key in cells and len(cells[key]) > MAX_ID_CHARS:
            raise _Rejected(f"{spec.label(key)}: longer than {MAX_ID_CHARS} characters")
    for key in ("event_id", "session_id"):
        if key in cells:
            raw[key] = cells[key]
    if "value" in cells:
        raw["value"] = _parse_number(cells["value"], spec.label("value"))
    item: dict[str, Any] = {}
    for key in ("category", "seller"):
        if key in cells:
            item[key] = cells[key]
    if "price" in cells:
        price = _parse_number(cells["price"], spec.label("price"))
        if price < 0:
            raise _Rejected(f"{spec.label('price')}: negative")
        item["price"] = price
    if "available" in cells:
        item["available"] = _parse_bool(cells["available"], spec.label("available"))
    if item:
        raw["item"] = item
    try:
        return validate_event(raw)
    except EventError as exc:
        # Our own checks above catch what a log can get wrong; this is a last guard.
        field_name = (exc.field or "row").split(".")[-1]
        column = spec.label(field_name) if field_name in spec.columns else field_name
        # Values are masked so that reasons stay few enough to count.
        reason = re.sub(r"'[^']*'|[-\d.]+", "N", exc.reason)
        raise _Rejected(f"{column}: {reason}") from None


def import_csv(
    source: str | os.PathLike[str] | TextIO,
    spec: ImportSpec,
    *,
    stats: ImportStats | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the log's rows as canonical events, rejecting (and counting) bad rows.

    Parameters
    ----------
    source
        A path, or an open text file (opened with ``newline=""``).
    spec
        The column and type mapping.
    stats
        Filled in as rows are read: rows, accepted, rejected by reason.
    progress
        Called with the number of data rows read so far, every
        :data:`PROGRESS_EVERY` rows and once at the end.

    Raises
    ------
    ImportSpecError
        A mapped column is not in the header (before any row is yielded).
    """
    stats = stats if stats is not None else ImportStats()
    handle, owned = _open(source)
    try:
        delimiter = spec.delimiter
        lines: Iterable[str] = handle
        if delimiter == "auto":
            first = handle.readline()
            delimiter = detect_delimiter(first)
            lines = chain([first], handle)
        reader = csv.reader(lines, delimiter=delimiter)
        # (line number, row) pairs; the first rows are read ahead to detect the ts unit.
        numbered = ((reader.line_num, row) for row in reader)
        if spec.fieldnames is not None:
            header = list(spec.fieldnames)
        elif spec.header:
            header = next(reader, None)
            if header is None:
                raise ImportSpecError("the file is empty: no header row")
        head = list(islice(numbered, DETECT_ROWS))
        if spec.fieldnames is None and not spec.header:
            first_row = next((row for _, row in head if row), None)
            if first_row is None:
                raise ImportSpecError("the file is empty: no rows")
            header = [str(n) for n in range(len(first_row))]
        # Strip a byte-order mark a caller's own open() left on the first name.
        header[0] = header[0].lstrip("\ufeff")
        if not spec.header and head and head[0][1]:
            head[0][1][0] = head[0][1][0].lstrip("\ufeff")
        index = _header_index(header, spec)
        unit = spec.ts_unit
        if unit == "auto":
            ts_pos = index["ts"]
            unit = detect_ts_unit(r[ts_pos] for _, r in head if ts_pos < len(r))
        stats.ts_unit = unit
        width = len(header)
        for line, row in chain(head, numbered):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            stats.rows += 1
            try:
                event = _row_to_event(row, index, spec, unit, width)
            except _Rejected as rejected:
                stats.reject(rejected.reason, line)
            else:
                stats.accepted += 1
                yield event
            if progress is not None and stats.rows % PROGRESS_EVERY == 0:
                progress(stats.rows)
        if progress is not None:
            progress(stats.rows)
    finally:
        if owned:
            handle.close()


def import_text(text: str, spec: ImportSpec, *, stats: ImportStats | None = None) -> list[dict]:
    """:func:`import_csv` over CSV text already in memory (handy in tests and notebooks)."""
    return list(import_csv(io.StringIO(text, newline=""), spec, stats=stats))
