"""The operator's page: experiments with their live metrics, model versions, dead letters.

``GET /ui/operator``
    HTML (``agents/ui_operator.html``, no build step, nothing from the
    internet), refreshed every two seconds from the worker's own API:

    * **experiments** (``GET /experiments``, ``GET /experiments/{name}``): status,
      shares, per-variant users, impressions, click-through, cart rate,
      conversion, revenue per user, error rate and latency with 95% intervals,
      each variant against the control, stops with their reasons;
    * **model versions** (``GET /operator/models``): every version with its
      data range, training metrics and evaluation reports (any ``*report*.json``
      or ``evaluation*.json`` beside its manifest), which one is live, and a
      rollback button (``POST /operator/models/rollback``, behind the API
      token: the page asks for it and keeps it in the tab's session storage);
    * **dead letters** (``GET /operator/dead-letters?limit=&before=``): the
      dead-letter topic newest first, with reason, field, source, size and
      digest; the first bytes of each original only with the token.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

PAGE = Path(__file__).with_name("ui_operator.html")
#: Dead letters per page at most.
MAX_DEAD_LETTERS = 200
#: Characters of an original shown to a holder of the token.
PREVIEW_CHARS = 200


def model_versions(settings: Any, models: Any) -> dict[str, Any]:
    """Every model version under the first models root, with its reports, and what is live."""
    from agents.serving import models_roots
    from models.model_version import current_version, list_versions

    root = models_roots(settings)[0]
    status = models.status()
    live = (status.get("live") or {}).get("version")
    versions = []
    for info in reversed(list_versions(root)) if root.exists() else []:
        reports = {}
        for path in sorted(info.path.glob("*.json")):
            if path.name != "manifest.json" and (
                "report" in path.name or "evaluation" in path.name
            ):
                try:
                    reports[path.name] = json.loads(path.read_text())
                except (OSError, ValueError) as exc:
                    reports[path.name] = {"error": f"unreadable: {exc}"}
        versions.append(
            {
                "version": info.version,
                "created_at": info.created_at,
                "data": info.data,
                "metrics": info.metrics,
                "reports": reports,
                "live": info.version == live,
            }
        )
    return {
        "root": str(root),
        "current": current_version(root) if root.exists() else None,
        "live": live,
        "refused": status.get("refused", []),
        "versions": versions,
    }


def dead_letters(
    settings: Any, limit: int, before: int | None, with_preview: bool
) -> dict[str, Any]:
    """A page of the dead-letter topic, newest first (blocking: run it in a thread)."""
    from agents.offsets import read_partition, true_end_offsets

    topic = settings.topics.dead_letter.name
    end = true_end_offsets(settings.kafka_client_config(), [(topic, 0)])[(topic, 0)]
    stop = end if before is None else max(min(before, end), 0)
    start = max(stop - limit, 0)
    records = []
    for offset, value in enumerate(
        read_partition(settings.kafka_client_config(), topic, 0, start, stop), start
    ):
        records.append(describe_dead_letter(offset, value, with_preview))
    records.reverse()
    return {"topic": topic, "end": end, "next_before": start if start > 0 else None,
            "records": records}  # fmt: skip


def describe_dead_letter(offset: int, value: bytes, with_preview: bool) -> dict[str, Any]:
    """What the page shows of one dead-letter record (its original only with the token).

    >>> from streams.deadletter import dead_letter_record, dead_letter_value
    >>> rec = dead_letter_record(b'{"type": "like"}', "type: unknown", {"topic": "t"}, field="type")
    >>> row = describe_dead_letter(3, dead_letter_value(rec), with_preview=False)
    >>> row["offset"], row["field"], row["reason"], "preview" in row
    (3, 'type', 'type: unknown', False)
    """
    try:
        record = json.loads(value)
    except ValueError:
        return {
            "offset": offset,
            "reason": "(an undecodable dead-letter record)",
            "size": len(value),
        }
    row = {
        "offset": offset,
        "reason": record.get("reason"),
        "field": record.get("field"),
        "source": record.get("source"),
        "index": record.get("index"),
        "size": record.get("original_size"),
        "sha256": record.get("original_sha256"),
        "received_at": record.get("received_at"),
    }
    if with_preview:
        if "original_base64" in record:
            raw = base64.b64decode(record["original_base64"])[: PREVIEW_CHARS * 4]
            text = raw.decode("utf-8", errors="replace")
        else:  # a recommendation request's record keeps its original as text
            text = str(record.get("original", ""))
        row["preview"] = text[:PREVIEW_CHARS]
    return row


def register(app: Any) -> None:
    """Add the operator page and its endpoints to ``app``."""
    from faust import web

    from agents.views import BadRequest, authorised, error, parse_limit

    services = app.services
    settings = services.settings

    @app.page("/ui/operator")
    class OperatorPage(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.html(PAGE.read_text(encoding="utf-8"))

    @app.page("/operator/models")
    class Models(web.View):
        async def get(self, request: web.Request) -> web.Response:
            if not authorised(services, request, write=False):
                return error(self, 401, "missing or wrong Authorization: Bearer token")
            body = await asyncio.to_thread(model_versions, settings, services.models)
            return self.json(body)

    @app.page("/operator/models/rollback")
    class Rollback(web.View):
        async def post(self, request: web.Request) -> web.Response:
            if not authorised(services, request, write=True):
                return error(self, 401, "missing or wrong Authorization: Bearer token")
            try:
                raw = await request.read()
                to = json.loads(raw).get("to") if raw.strip() else None
                if to is not None and not isinstance(to, str):
                    raise ValueError("to must be a version name")
            except (ValueError, AttributeError) as exc:
                return error(self, 400, f"to: {exc}", field="to")
            from agents.trainer import TrainerError, rollback

            try:
                info = await asyncio.to_thread(rollback, settings, to)
            except TrainerError as exc:
                return error(self, 409, str(exc))
            return self.json({"current": info.version})

    @app.page("/operator/dead-letters")
    class DeadLetters(web.View):
        async def get(self, request: web.Request) -> web.Response:
            if not authorised(services, request, write=False):
                return error(self, 401, "missing or wrong Authorization: Bearer token")
            try:
                limit = parse_limit(request.query.get("limit")) or 50
                before = parse_limit(request.query.get("before"))
            except BadRequest as exc:
                return error(self, 400, str(exc), field=exc.field)
            # the rejected bytes may hold anything a producer sent: only for the token's holder
            preview = authorised(services, request, write=True)
            body = await asyncio.to_thread(
                dead_letters, settings, min(limit, MAX_DEAD_LETTERS), before, preview
            )
            return self.json(body)
