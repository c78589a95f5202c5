"""Markdown of an evaluation result, laid out as ``../shared/data/BASELINES.md``'s tables.

Examples
--------
>>> row = {"name": "popularity", "group": "library", "train_seconds": 0.1, "coverage": 0.5,
...        "tasks": {"click-to-cart": {"rate": 0.02, "ci": [0.01, 0.03], "novel_rate": 0.01,
...                                    "auc": 0.6}}, "home": {}}
>>> print(item_table({"rows": [row]}).splitlines()[2])
| popularity | - | 0.0200 [0.010-0.030] (novel 0.0100) | - |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from models.evaluation.metrics import TASKS

Result = Mapping[str, Any]
DASH = "-"


def _rows(result: Result) -> list[Mapping[str, Any]]:
    return list(result.get("rows", []))


def _tasks(result: Result) -> list[str]:
    present = {name for row in _rows(result) for name in row.get("tasks", {})}
    return [name for name in TASKS if name in present]


def _fraction(value: float | None, digits: int = 4) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def _cell(entry: Mapping[str, Any] | None) -> str:
    if not entry or entry.get("rate") is None:
        return DASH
    ci = entry.get("ci")
    interval = f" [{ci[0]:.3f}-{ci[1]:.3f}]" if ci else ""
    return f"{entry['rate']:.4f}{interval} (novel {_fraction(entry.get('novel_rate'))})"


def item_table(result: Result) -> str:
    """Hit rate [95% CI] (novel) per row and item-level task."""
    tasks = _tasks(result)
    lines = [
        "| row | " + " | ".join(TASKS[t].label for t in TASKS) + " |",
        "|---" * (len(TASKS) + 1) + "|",
    ]
    for row in _rows(result):
        if not row.get("tasks"):
            continue
        cells = [_cell(row["tasks"].get(t)) if t in tasks else DASH for t in TASKS]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def auc_table(result: Result) -> str:
    """AUC per row and item-level task."""
    lines = ["| row | " + " | ".join(TASKS[t].label for t in TASKS) + " |"]
    lines.append("|---" * (len(TASKS) + 1) + "|")
    for row in _rows(result):
        if not row.get("tasks"):
            continue
        cells = [_fraction((row["tasks"].get(t) or {}).get("auc")) for t in TASKS]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def home_table(result: Result) -> str:
    """hit@K and novel@K per row that makes home lists."""
    lengths = sorted({int(k) for row in _rows(result) for k in row.get("home", {})})
    header = " | ".join(f"hit@{k} | novel@{k}" for k in lengths)
    lines = [f"| list | {header} |", "|---" * (2 * len(lengths) + 1) + "|"]
    for row in _rows(result):
        home = row.get("home") or {}
        if not home:
            continue
        cells = []
        for k in lengths:
            entry = home.get(str(k)) or {}
            cells += [_fraction(entry.get("rate")), _fraction(entry.get("novel_rate"))]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def extras_table(result: Result) -> str:
    """Coverage, category cosine and train seconds per row."""
    lines = ["| row | coverage | cos same-cat | cos cross-cat | train s |", "|---|---|---|---|---|"]
    for row in _rows(result):
        cosine = row.get("category_cosine") or {}
        coverage = row.get("coverage")
        lines.append(
            f"| {row['name']} | {DASH if coverage is None else f'{100 * coverage:.1f}%'} | "
            f"{_fraction(cosine.get('same'), 2)} | {_fraction(cosine.get('cross'), 2)} | "
            f"{_fraction(row.get('train_seconds'), 1)} |"
        )
    return "\n".join(lines)


def columns(result: Result) -> list[tuple[str, str, Any]]:
    """``(column label, metric, getter)`` for the served-vs-best comparison."""
    out: list[tuple[str, str, Any]] = []
    for name in _tasks(result):
        out.append(
            (
                f"novel {TASKS[name].label}",
                name,
                lambda r, n=name: _get(r, "tasks", n, "novel_rate"),
            )
        )
    lengths = sorted({int(k) for row in _rows(result) for k in row.get("home", {})})
    for k in lengths:
        out.append((f"home hit@{k}", str(k), lambda r, k=k: _get(r, "home", str(k), "rate")))
    return out


def _get(row: Mapping[str, Any], part: str, key: str, metric: str) -> float | None:
    return ((row.get(part) or {}).get(key) or {}).get(metric)


def comparison(result: Result) -> list[dict[str, Any]]:
    """Per served row and column: its value, the best other row's, and the ratio.

    Examples
    --------
    >>> rows = [{"name": "s", "group": "served", "home": {"20": {"rate": 0.12}}},
    ...         {"name": "b", "group": "library", "home": {"20": {"rate": 0.1}}}]
    >>> [(c["row"], c["best"], round(c["ratio"], 2)) for c in comparison({"rows": rows})]
    [('s', 'b', 1.2)]
    """
    out = []
    rows = _rows(result)
    others = [r for r in rows if r.get("group") != "served"]
    for label, _, get in columns(result):
        scored = [(get(r), r["name"]) for r in others if get(r) is not None]
        if not scored:
            continue
        best_value, best_name = max(scored)
        for row in rows:
            value = get(row)
            if row.get("group") != "served" or value is None:
                continue
            out.append(
                {
                    "row": row["name"],
                    "column": label,
                    "value": value,
                    "best": best_name,
                    "best_value": best_value,
                    "ratio": value / best_value if best_value > 0 else None,
                }
            )
    return out


def comparison_table(result: Result) -> str:
    """The served rows against the best library or reference row in each column."""
    lines = [
        "| served row | column | served | best other row | its value | x |",
        "|---|---|---|---|---|---|",
    ]
    for c in comparison(result):
        ratio = DASH if c["ratio"] is None else f"{c['ratio']:.2f}"
        lines.append(
            f"| {c['row']} | {c['column']} | {c['value']:.4f} | {c['best']} | "
            f"{c['best_value']:.4f} | {ratio} |"
        )
    return "\n".join(lines)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def ranker_table(result: Result) -> str:
    """Held-out Brier score and reliability (predicted / observed per bin) per head, per ranked row.

    Empty when no row has a learned ranker.
    """
    lines: list[str] = []
    for row in _rows(result):
        params = row.get("params") or {}
        brier = params.get("ranker_brier")
        if not brier:
            continue
        tables = params.get("ranker_reliability") or {}
        lines += [
            f"{row['name']}: {params.get('bootstrap_examples', 0):,} bootstrap examples, "
            f"{params.get('held_out_examples', 0):,} held out; weights {params.get('weights')}",
            "",
            "| head | Brier | reliability: bin n predicted/observed |",
            "|---|---|---|",
        ]
        for head, value in brier.items():
            bins = "; ".join(
                f"{b['bin'][0]:.1f} {b['n']} {b['predicted']:.3f}/{b['observed']:.3f}"
                for b in tables.get(head, [])
            )
            lines.append(f"| {head} | {_fraction(value, 5)} | {bins or DASH} |")
        lines.append("")
    return "\n".join(lines)


def report_markdown(result: Result, title: str = "Offline evaluation") -> str:
    """The whole report: data, item-level hit rates, AUC, home lists, extras, comparison."""
    data = result.get("data", {})
    config = result.get("config", {})
    lines = [f"# {title}", ""]
    if data:
        tasks = data.get("tasks", {})
        seeded = ", ".join(
            f"{TASKS[name].label} {t['with_seeds']:,}/{t['targets']:,} seeded"
            for name, t in tasks.items()
        )
        lines += [
            f"Train: {data['train_events']:,} interactions before {_iso(data['cut'])}; test: "
            f"{data['test_events']:,} interactions in the next {config.get('test_hours', 0):g} h, "
            f"{data['targets']:,} targets ({', '.join(config.get('target_types', []))}) of "
            f"{data['test_users']:,} users. {data['users']:,} users, "
            f"{data['train_items']:,} training items. K = {config.get('k')} per seed, up to "
            f"{config.get('seeds')} seeds ({seeded}).",
            "",
        ]
    lines += ["## Item level: hit rate [95% CI] (novel)", "", item_table(result), ""]
    lines += ["## AUC", "", auc_table(result), ""]
    lines += ["## Home lists (asked once at the cut)", "", home_table(result), ""]
    lines += ["## Coverage, category cosine, train time", "", extras_table(result), ""]
    ranked = ranker_table(result)
    if ranked:
        lines += ["## Learned ranker: held-out calibration per head", "", ranked]
    lines += ["## Served rows against the best other row", "", comparison_table(result), ""]
    return "\n".join(lines)


__all__: Sequence[str] = (
    "auc_table",
    "comparison",
    "comparison_table",
    "extras_table",
    "home_table",
    "item_table",
    "ranker_table",
    "report_markdown",
)
