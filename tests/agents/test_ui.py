"""The user page in a real headless browser (Debian's chromium over the DevTools protocol).

A real worker on the suite's broker and Redis, simulator traffic, one user:
the page shows their history and recommendations with reasons, updates when a
new event arrives (no reload), says plainly that no model is live, then draws
the map once ``train --once`` publishes one, with the simulator's categories
grouped on it. Screenshots are kept for a person to look at, under
``test-artifacts/`` (git-ignored; the test prints their paths).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from http.client import HTTPConnection
from pathlib import Path

import numpy as np
import pytest
from browser import keep, open_page, start_chromium
from support import REPO, WorkerProcess, http, make_settings, settings_env, wait_until

from agents.producer import EventProducer
from agents.provision import ensure_topics
from agents.ui import ItemMap, MapCache
from models.simulator import ClickstreamSimulator, SimulatorConfig
from models.token_embedding import EmbeddingParams, TokenEmbedding


# ------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def worker(stack, tmp_path_factory):
    base = tmp_path_factory.mktemp("ui")
    settings = make_settings(stack, base / "data")
    ensure_topics(settings)
    started = WorkerProcess(settings, base / "worker.log").start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def world(worker):
    """Simulator traffic through the worker: catalogue, co-occurrence, an event log to train on."""
    sim = ClickstreamSimulator(
        SimulatorConfig(users=60, items=150, categories=6, sellers=10, seed=7)
    )
    events = list(sim.events(3000))
    send(worker, events)
    items = {}
    for e in events:
        items.setdefault(e["item_id"], e["item"])
    last_user = events[-1]["user_id"]
    wait_until(lambda: worker.history(last_user), what="the simulator's events")
    return items


def send(worker, events):
    producer = EventProducer(worker.settings)
    producer.send_many(events)
    producer.flush()


def train(worker) -> str:
    """``train --once`` on the worker's own event log; wait until the worker serves it."""
    # epochs by log size (the CLI's default): 3,000 events get enough passes to converge
    done = subprocess.run(
        [sys.executable, "-m", "agents.trainer", "train", "--once", "--dim", "16"],
        env=settings_env(worker.settings),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    live = wait_until(
        lambda: http("GET", worker.url + "/models")[1].get("live"), what="the model to go live"
    )
    return live["version"]


def event(user, item_id, etype, ts, info=None):
    body = {"user_id": user, "item_id": item_id, "type": etype, "ts": ts}
    if info is not None:
        body["item"] = {"category": info["category"], "seller": info["seller"]}
    return body


# ---------------------------------------------------------------------- tests
def test_page_shows_history_and_recommendations_updates_live_and_draws_the_map(
    worker, world, tmp_path
):
    user = f"shopper-{uuid.uuid4().hex[:6]}"
    ids = list(world)
    now = time.time() - 60
    first = [
        event(user, ids[0], "view", now, world[ids[0]]),
        event(user, ids[0], "click", now + 5, world[ids[0]]),
        event(user, ids[1], "view", now + 10),  # no attributes: the page asks the catalogue
        event(user, ids[2], "view", now + 15, world[ids[2]]),
        event(user, ids[2], "click", now + 20, world[ids[2]]),
    ]
    send(worker, first)
    wait_until(lambda: len(worker.history(user)) == len(first), what="the user's history")
    assert http("GET", worker.url + "/models")[1]["live"] is None  # the map's first state

    profile = tmp_path / "chromium-profile"
    browser, ws_url = start_chromium(f"{worker.url}/ui/users/{user}", profile, "/ui/users/")
    try:
        screenshot = asyncio.run(drive(worker, user, ws_url, world, tmp_path))
    finally:
        browser.terminate()
        browser.wait(10)
    assert screenshot.stat().st_size > 10_000
    keep(screenshot, "ui-page.png")


async def drive(worker, user, ws_url, world, tmp_path) -> Path:
    ids = list(world)
    async with open_page(ws_url, height=1100) as page:
        # history: every item, newest first, with the category the catalogue knows
        rows = await page.wait_for(
            "(() => { const r = [...document.querySelectorAll('#history tr')]"
            ".map(tr => tr.innerText); return r.length === 5 && r.every(t => /\\w/.test(t))"
            " && r })()",
            "five history rows",
        )
        assert ids[2] in rows[0] and "click" in rows[0] and world[ids[2]]["category"] in rows[0]
        assert ids[1] in rows[2] and world[ids[1]]["category"] in rows[2], rows[2]
        # recommendations per surface, each with its reason and sources
        home = await page.wait_for(
            "(() => { const li = [...document.querySelectorAll('#surface-home li[data-item]')];"
            " return li.length && li.map(l => [l.dataset.item, l.querySelector('.reason')"
            ".innerText, [...l.querySelectorAll('.src')].map(s => s.innerText)]) })()",
            "home recommendations",
        )
        assert all(reason and sources for _, reason, sources in home), home
        item_title = await page.eval("document.querySelector('#surface-item h3').innerText")
        assert ids[2] in item_title  # the item surface follows the last viewed item
        item_recs = await page.wait_for(
            "document.querySelectorAll('#surface-item li[data-item]').length", "item-page list"
        )
        assert item_recs > 0
        # no model yet: the map says so in words, in a short note rather than an empty box
        message = await page.wait_for(
            "(() => { const m = document.querySelector('#map-message');"
            " return !m.hidden && m.innerText.includes('No model') && m.innerText })()",
            "the map's message",
        )
        assert "No model is live yet" in message and "tastestream train --once" in message
        assert await page.eval("document.querySelector('#map-body').offsetHeight") == 0
        # categories have colours before any map ranks them
        swatch = await page.eval(
            "getComputedStyle(document.querySelector('#history .swatch')).backgroundColor"
        )
        assert swatch not in ("rgb(196, 201, 207)", ""), swatch  # not the grey of "other"
        assert await page.eval("document.querySelector('#map-message').offsetHeight") < 120
        await page.screenshot(tmp_path / "before.png")
        keep(tmp_path / "before.png", "ui-page-before-a-model.png")

        # a new event shows up without a reload
        await page.eval("window.__sameDocument = 'yes'")
        new_item = ids[3]
        send(worker, [event(user, new_item, "cart", time.time(), world[new_item])])
        top = await page.wait_for(
            "(() => { const tr = document.querySelector('#history tr');"
            f" return tr && tr.dataset.item === {json.dumps(new_item)} && tr.innerText }})()",
            "the cart-add at the top of the history",
        )
        assert "cart" in top
        assert await page.eval("window.__sameDocument") == "yes"

        # a model goes live: the map draws items, the trajectory and the user
        version = await asyncio.to_thread(train, worker)
        drawn = await page.wait_for(
            "(() => { const n = document.querySelectorAll('#map circle.item-point').length;"
            " const u = document.querySelectorAll('#map circle.user-point').length;"
            " const t = document.querySelectorAll('#map polyline.trajectory').length;"
            " return n > 50 && u === 1 && t === 1 && [n, u, t] })()",
            "the map's points",
            timeout=120,  # UMAP, where installed, compiles for ~20 s on its first map
        )
        assert drawn[0] > 50
        assert version in await page.eval("document.querySelector('#map-method').innerText")
        legend = await page.eval("document.querySelector('#legend').innerText")
        assert world[ids[0]]["category"] in legend and f"path of {user}" in legend
        # one colour per category, none repeated
        fills = await page.eval(
            "[...new Set([...document.querySelectorAll('#map circle.item-point')]"
            ".map(c => c.getAttribute('fill')))]"
        )
        categories = {info["category"] for info in world.values()}
        assert len(fills) == len(categories), (fills, categories)
        # every point inside the frame: nothing clamped onto an edge
        inside = await page.eval(
            "[...document.querySelectorAll('#map circle.item-point')].every(c =>"
            " +c.getAttribute('cx') >= 10 && +c.getAttribute('cx') <= 750 &&"
            " +c.getAttribute('cy') >= 10 && +c.getAttribute('cy') <= 510)"
        )
        assert inside
        await asyncio.sleep(0.5)  # let the last frame paint
        path = tmp_path / "ui-page.png"
        await page.screenshot(path)

        # a new user: the page explains itself and the legend speaks of no path
        newcomer = f"newcomer-{uuid.uuid4().hex[:6]}"
        await page.call("Page.navigate", url=f"{worker.url}/ui/users/{newcomer}")
        empty = await page.wait_for(
            "(() => { const e = document.querySelector('#history-empty');"
            " return e && !e.hidden && e.innerText })()",
            "the new user's empty history",
        )
        assert "No events for this user yet" in empty
        legend = await page.wait_for(
            "(() => { const l = document.querySelector('#legend');"
            " return l && !document.querySelector('#map-body').hidden && l.innerText })()",
            "the new user's legend",
        )
        assert "trajectory" not in legend.lower() and "path" not in legend.lower(), legend
        assert f"{newcomer} has no events" in legend
        return path


def test_map_endpoint_projects_the_live_model(worker, world):
    user = f"mapper-{uuid.uuid4().hex[:6]}"
    ids = list(world)
    now = time.time()
    send(worker, [event(user, ids[i], "click", now + i, world[ids[i]]) for i in range(4)])
    wait_until(lambda: len(worker.history(user)) == 4, what="the user's clicks")
    if http("GET", worker.url + "/models")[1]["live"] is None:
        train(worker)
    body = wait_until(
        lambda: (
            lambda r: r[1] if r[1]["status"] == "ready" and len(r[1]["trajectory"]) == 4 else None
        )(http("GET", f"{worker.url}/ui/api/users/{user}/map")),
        what="a ready map with the user's trajectory",
        timeout=120,
    )
    assert body["method"] in ("graph", "umap") and body["model_version"]
    assert 50 < len(body["items"]) <= 3000
    # the simulator's categories group on the map: an item's nearest items on it share its
    # category far more often than chance (benchmarks/map_structure.py has the full figures)
    points = np.array([(i["x"], i["y"]) for i in body["items"]])
    categories = np.array([i["category"] for i in body["items"]])
    distance = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(distance, np.inf)
    nearest = np.argpartition(distance, 10, axis=1)[:, :10]
    purity = (categories[nearest] == categories[:, None]).mean()
    chance = sum((n / len(categories)) ** 2 for n in Counter(categories.tolist()).values())
    assert purity > 2 * chance, (purity, chance)
    by_id = {i["item_id"]: i for i in body["items"]}
    assert by_id[ids[0]]["category"] == world[ids[0]]["category"]
    assert [p["item_id"] for p in body["trajectory"]] == ids[:4]
    assert set(body["user"]) == {"x", "y"}
    status, page = http("GET", f"{worker.url}/ui/users/{user}")
    assert status == 200 and "<svg" in page
    # everything is served by the worker: nothing loaded from the internet
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", page)


def test_root_redirects_to_the_page_of_a_user_the_worker_has_seen(worker, world):
    connection = HTTPConnection(worker.settings.web_host, worker.settings.web_port)
    try:
        connection.request("GET", "/")
        answer = connection.getresponse()
        answer.read()
    finally:
        connection.close()
    assert answer.status == 302
    location = answer.getheader("Location")
    assert location.startswith("/ui/users/")
    # the user it names has events here
    assert worker.history(location.rsplit("/", 1)[1])


def test_map_cache_builds_each_version_once_in_the_background():
    sim = ClickstreamSimulator(SimulatorConfig(users=30, items=60, categories=4, sellers=5))
    sessions = {}
    for e in sim.events(1500):
        sessions.setdefault(e["session_id"], []).append((e["item_id"], e["type"]))
    embedding = TokenEmbedding(EmbeddingParams(dim=8, epochs=1)).fit(list(sessions.values()))

    class Model:
        version = "v-test"

    model = Model()
    model.embedding = embedding
    cache = MapCache(method="pca", max_items=40)
    assert cache.get(model) is None  # building starts; the caller answers "computing"
    built = wait_until(lambda: cache.get(model), what="the map")
    assert cache.get(model) is built and built.method == "pca" and len(built.items) == 40
    # an item outside the sample is placed by the same projection
    outside = next(str(t[0]) for t in embedding.vocab if str(t[0]) not in set(built.items))
    where = built.locate([outside, "never-seen"])
    assert list(where) == [outside]
    expected = ItemMap.build("again", embedding, "pca", 40).projection.transform(
        built.vector(outside)
    )[0]
    assert np.allclose(where[outside], expected)
