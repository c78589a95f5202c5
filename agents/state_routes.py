"""HTTP routes of the streaming state's operations (worker to operator).

internal   ``GET /internal/state/checksum``: a checksum per store and partition
           this worker owns, over its live state (:func:`agents.checksums.live_checksums`),
           the same as ``tastestream state checksum`` computes from what a worker
           would recover. Behind the API token, as every ``/internal/*`` route.
"""

from __future__ import annotations

from typing import Any

from faust import web

from agents.app import Services, TastestreamApp


def register(app: TastestreamApp, services: Services) -> None:
    """Add the routes to ``app``."""
    from agents.checksums import live_checksums
    from agents.views import authorised, error

    @app.page("/internal/state/checksum")
    class StateChecksum(web.View):
        async def get(self, request: web.Request) -> web.Response:
            if not authorised(services, request, write=True):
                return error(self, 401, "missing or wrong Authorization: Bearer token")
            body: dict[str, Any] = await live_checksums(services.state)
            body["worker_id"] = app.worker_id
            return self.json(body)
