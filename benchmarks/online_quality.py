"""Benchmark: online quality of served lists on the simulator, per candidate source.

No Kafka: the agents' streaming state is replayed in-process, exactly as the
agents fold events, and lists are served with :func:`models.surfaces.generate`.

1. Simulate ``--events`` events (models/simulator.py, seed ``--seed``) and cut
   them in time: train on everything before the last ``--test-hours``.
2. Train one model version on the training part (:func:`models.training.train_version`).
3. Replay the training part, in ``ts`` order, through the per-user
   :class:`~models.trajectory.UserTrajectory`, :class:`~models.bandit.UserBandit`
   and :class:`~models.cooccurrence.SessionWindow` (whose pairs feed per-token
   :class:`~models.cooccurrence.TokenNeighbours`), and the shared
   :class:`~models.popularity.Popularity` and :class:`~models.catalogue.ItemCatalogue`,
   with the agents' default settings.
4. Walk the test window in ``ts`` order, folding every event into that state.
   At the first event of every session that starts in the window, before
   folding it in (``--serve-at first-click``: right after folding the session's
   first click in), serve ``--k`` items from each source alone (a one-source
   :class:`~models.surfaces.Surface`), from the full ``home`` recipe and from
   two references: global trending (the popularity source without a category)
   and ``k`` random catalogue items.
5. Score each list two ways (leave-one-out rows: ``home`` without one source,
   on every ``--ablation-every``-th session, beside ``home`` on those sessions):

   * **observed**: did the user click (click-through) / cart or buy
     (conversion) any served item later in that session; *novel*
     click-through counts only items the user had not interacted with before;
   * **expected**: the simulator's own probabilities for the served items, had
     the user been shown them at the serve point: with ``g`` the user's
     gain for the item's category (from :meth:`ClickstreamSimulator.user_taste`),
     P(click) = min(.95, click_rate * g) and P(conversion) = P(click) *
     min(.9, cart_rate * g) (a cart follows the click, of the item or of one
     of its complements), both 0 when the item's seller is offline then. They
     depend on the category and availability only: the simulator's engagement
     model has no item-level taste, so "expected" grades category fit and
     availability, "observed" grades predicting the very items the user went to.

Prints the command line, one Markdown table (per row: lists served, mean list
length, catalogue coverage, observed CTR, novel CTR and conversion per list,
expected CTR and conversion per served item, each with its ratio to
``popularity``, and ms per list), which sources home's items came from, and
the stage times.

``--variant JSON`` adds a row for home with other weights (``load_surfaces`` syntax),
to price a recipe change before making it.

Run: ``python benchmarks/online_quality.py [--events 300000] [--max-sessions N]
[--ablation-every 2] [--variant '{"thompson": 0}']``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.bandit import UserBandit
from models.candidates.types import ModelParts
from models.catalogue import ItemCatalogue
from models.cooccurrence import SessionWindow, TokenNeighbours, iter_pairs
from models.popularity import Popularity
from models.simulator import ClickstreamSimulator, SimulatorConfig
from models.surfaces import (
    DEFAULT_SURFACES,
    SOURCES,
    SourceSpec,
    Surface,
    SurfaceContext,
    generate,
    load_surfaces,
)
from models.token_embedding import EmbeddingParams
from models.training import TrainingParams, train_version
from models.trajectory import UserTrajectory

#: The home recipe's sources, each served alone; popularity is the baseline.
HOME_SOURCES = tuple(DEFAULT_SURFACES["home"].weights)
BASELINE = "popularity"
#: Rows that are not a surface: served by this script as references.
GLOBAL_TRENDING = "popularity (global)"
RANDOM = "random"
HOME_SUBSET = "home (leave-one-out sessions)"
CONVERSION_TYPES = frozenset({"cart", "purchase"})


# -- the simulator's ground truth ------------------------------------------------
def expected_rates(
    sim: ClickstreamSimulator, user_id: str, items: Sequence[str], ts: float
) -> tuple[list[float], list[float]]:
    """P(click) and P(click, then cart) per item for ``user_id`` shown it at ``ts``.

    The simulator's funnel for a viewed item (see models/simulator.py): gain
    ``g = 2a / (1 + a)`` with ``a = categories * taste[category]`` at ``ts``;
    click with ``min(.95, click_rate * g)``; after a click, a cart (of the item
    or a complement) with ``min(.9, cart_rate * g)``. An item whose seller is
    offline at ``ts`` can be neither.

    Examples
    --------
    >>> sim = ClickstreamSimulator(SimulatorConfig(users=3, items=40, categories=4, sellers=5))
    >>> clicks, carts = expected_rates(sim, "u0", ["i0", "i1"], sim.config.start_ts)
    >>> all(0.0 <= c <= 0.95 for c in clicks), all(a <= c for a, c in zip(carts, clicks))
    (True, True)
    """
    cfg = sim.config
    taste = sim.user_taste(user_id, ts)
    categories = {name: c for c, name in enumerate(sim.categories())}
    clicks: list[float] = []
    carts: list[float] = []
    for item in items:
        if not sim.item_available(item, ts):
            clicks.append(0.0)
            carts.append(0.0)
            continue
        affinity = cfg.categories * float(taste[categories[sim.item_category(item)]])
        gain = 2.0 * affinity / (1.0 + affinity)
        click = min(0.95, cfg.click_rate * gain)
        clicks.append(click)
        carts.append(click * min(0.9, cfg.cart_rate * gain))
    return clicks, carts


# -- the agents' streaming state, replayed -----------------------------------------
class ReplayedState:
    """Everything the agents keep, folded event by event as they fold it.

    Same defaults as ``deploy/tastestream.toml``: 7-day state half-life,
    20-token co-occurrence window, 200 counters per token, 30-minute impression
    window, 1-day popularity half-life.
    """

    def __init__(self) -> None:
        self.trajectories: dict[str, UserTrajectory] = {}
        self.bandits: dict[str, UserBandit] = {}
        self.windows: dict[str, SessionWindow] = {}
        self.neighbours: dict[tuple[str, str], TokenNeighbours] = {}
        self.popularity = Popularity()
        self.catalogue = ItemCatalogue()

    def fold(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Fold events in, in the given order; return how many."""
        n = 0
        for event in events:
            user = event["user_id"]
            trajectory = self.trajectories.get(user)
            if trajectory is None:
                trajectory = self.trajectories[user] = UserTrajectory()
                self.bandits[user] = UserBandit()
            trajectory.update(event)
            self.bandits[user].update(event)
            self.catalogue.update(event)
            self.popularity.update(event)
            # The trajectories agent's session window -> the cooccurrence agent's tables.
            for p, q, weight, ts in iter_pairs((event,), self.windows):
                key = q if p is None else p
                neighbours = self.neighbours.get(key)
                if neighbours is None:
                    neighbours = self.neighbours[key] = TokenNeighbours()
                if p is None:
                    neighbours.add_total(weight, ts)
                else:
                    neighbours.add(q, weight, ts)
            n += 1
        return n

    def context(self, user_id: str, now: float, model: ModelParts, **extra: Any) -> SurfaceContext:
        """The request context ``agents/recommend.py`` builds, on this state."""
        catalogue = self.catalogue
        return SurfaceContext(
            user_id,
            now=now,
            trajectory=self.trajectories.get(user_id),
            bandit=self.bandits.get(user_id),
            neighbours=self.neighbours.get,
            popularity=self.popularity,
            model=model,
            unavailable=lambda item: not catalogue.available(item),
            offline_sellers=lambda seller: catalogue.seller_online.get(seller, True) is False,
            category_of=catalogue.category,
            seller_of=catalogue.seller,
            seller_items=catalogue.items_of_seller,
            **extra,
        )


class RunOnce:
    """Run each source once per request context, however many surfaces ask.

    While active it wraps the entries of :data:`models.surfaces.SOURCES`, so
    ``generate`` is unchanged: the one-source lists and ``home`` built from one
    context share each source's output (and one Thompson draw) instead of running
    every source twice. :func:`~models.candidates.merge.merge` and the filters
    never mutate a source's candidates, so sharing them changes no list.
    ``seconds`` accumulates each source's own run time.
    """

    def __init__(self) -> None:
        self.ctx: SurfaceContext | None = None
        self.outputs: dict[str, Any] = {}
        self.seconds: dict[str, float] = {}
        self.saved: dict[str, SourceSpec] = {}

    def __enter__(self) -> RunOnce:
        self.saved = dict(SOURCES)
        for name, spec in self.saved.items():
            SOURCES[name] = SourceSpec(self._wrap(name, spec.run), spec.fallback)
        return self

    def __exit__(self, *exc: object) -> None:
        SOURCES.update(self.saved)

    def _wrap(self, name: str, run: Any) -> Any:
        def once(ctx: SurfaceContext) -> Any:
            if ctx is not self.ctx:
                self.ctx, self.outputs = ctx, {}
            if name not in self.outputs:
                t0 = time.perf_counter()
                self.outputs[name] = run(ctx)
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            return self.outputs[name]

        return once


# -- tallies ---------------------------------------------------------------------
@dataclass
class Tally:
    """One row: what a source served and how it scored."""

    lists: int = 0
    sessions: int = 0  # test sessions asked (served or not)
    items: int = 0
    distinct: set[str] = field(default_factory=set)
    clicked_lists: int = 0
    converted_lists: int = 0
    novel_clicked_lists: int = 0
    expected_click: float = 0.0
    expected_convert: float = 0.0
    seconds: float = 0.0

    def add(self, served: list[str], clicks: list[float], converts: list[float]) -> None:
        self.sessions += 1
        if not served:
            return
        self.lists += 1
        self.items += len(served)
        self.distinct.update(served)
        self.expected_click += math.fsum(clicks)
        self.expected_convert += math.fsum(converts)

    def observe(
        self, served: list[str], clicked: set[str], converted: set[str], known: set[str]
    ) -> None:
        """Score one served list against its session (``known``: items engaged before)."""
        if served:
            self.clicked_lists += not clicked.isdisjoint(served)
            self.converted_lists += not converted.isdisjoint(served)
            self.novel_clicked_lists += not (clicked - known).isdisjoint(served)

    def figures(self, catalogue_size: int) -> dict[str, float]:
        lists, items = max(self.lists, 1), max(self.items, 1)
        return {
            "lists": self.lists,
            "served_share": self.lists / max(self.sessions, 1),
            "length": self.items / lists,
            "coverage": len(self.distinct) / catalogue_size,
            "ctr": self.clicked_lists / lists,
            "novel_ctr": self.novel_clicked_lists / lists,
            "conversion": self.converted_lists / lists,
            "exp_ctr": self.expected_click / items,
            "exp_conversion": self.expected_convert / items,
            "ms": 1000.0 * self.seconds / max(self.sessions, 1),
        }


def _ratio(value: float, base: float) -> str:
    return f"x{value / base:.2f}" if base > 0 else "-"


def report_markdown(rows: Mapping[str, dict[str, float]], baseline: str = BASELINE) -> str:
    """The table: one row per source, percentages, ratios to ``baseline``."""
    base = rows[baseline]
    lines = [
        "| source | lists (share of sessions) | mean length | coverage "
        "| observed CTR | x pop | novel CTR | x pop | observed conversion | x pop "
        "| expected CTR / item | x pop | expected conversion / item | x pop | ms / list |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['lists']:,} ({100 * r['served_share']:.0f}%) | {r['length']:.1f} "
            f"| {100 * r['coverage']:.1f}% "
            f"| {100 * r['ctr']:.2f}% | {_ratio(r['ctr'], base['ctr'])} "
            f"| {100 * r['novel_ctr']:.2f}% | {_ratio(r['novel_ctr'], base['novel_ctr'])} "
            f"| {100 * r['conversion']:.2f}% | {_ratio(r['conversion'], base['conversion'])} "
            f"| {100 * r['exp_ctr']:.2f}% | {_ratio(r['exp_ctr'], base['exp_ctr'])} "
            f"| {100 * r['exp_conversion']:.3f}% "
            f"| {_ratio(r['exp_conversion'], base['exp_conversion'])} | {r['ms']:.1f} |"
        )
    return "\n".join(lines)


# -- the run -----------------------------------------------------------------------
def record_outcome(
    outcomes: dict[tuple[str, str], tuple[set[str], set[str]]], event: Mapping[str, Any]
) -> None:
    """Add a session's click or cart/purchase to ``outcomes[(user, session)]``.

    >>> out = {}
    >>> record_outcome(out, {"user_id": "u", "session_id": "s", "item_id": "a", "type": "cart"})
    >>> out
    {('u', 's'): (set(), {'a'})}
    """
    etype = event["type"]
    if etype != "click" and etype not in CONVERSION_TYPES:
        return
    key = (event["user_id"], event["session_id"])
    clicked, converted = outcomes.setdefault(key, (set(), set()))
    (clicked if etype == "click" else converted).add(event["item_id"])


def say(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000, help="simulated events")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-hours", type=float, default=24.0)
    parser.add_argument("--k", type=int, default=20, help="items per served list")
    parser.add_argument(
        "--per-source", type=int, default=50, help="candidates per source (recs_per_source)"
    )
    parser.add_argument("--epochs", type=int, default=5, help="embedding epochs")
    parser.add_argument(
        "--max-sessions", type=int, default=None, help="serve only the first N test sessions"
    )
    parser.add_argument(
        "--serve-at",
        choices=("start", "first-click"),
        default="start",
        help="serve before a session's first event, or right after its first click",
    )
    parser.add_argument(
        "--ablation-every",
        type=int,
        default=2,
        help="leave-one-out home rows on every Nth served session (0: none)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="JSON",
        help="an extra home row: weights laid over home, e.g. '{\"thompson\": 0}' (repeatable)",
    )
    args = parser.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"command: python {shlex.join(sys.argv)}  (cpus={os.cpu_count()}, load {load})")
    began = time.perf_counter()

    sim = ClickstreamSimulator(SimulatorConfig(users=args.users, items=args.items, seed=args.seed))
    events = list(sim.events(args.events))
    cut = events[-1]["ts"] - args.test_hours * 3600.0
    train = [e for e in events if e["ts"] < cut]
    test = [e for e in events if e["ts"] >= cut]
    say(f"simulated {len(events):,} events: {len(train):,} train, {len(test):,} test")

    started = time.perf_counter()
    params = TrainingParams(seed=args.seed, embedding=EmbeddingParams(epochs=args.epochs))
    trained = train_version(train, params)
    model = ModelParts(index=trained.index, factorization=trained.factorization, version="bench")
    train_seconds = time.perf_counter() - started
    say(f"trained in {train_seconds:.1f}s ({len(trained.index):,} tokens)")

    started = time.perf_counter()
    state = ReplayedState()
    state.fold(train)
    replay_seconds = time.perf_counter() - started
    say(f"replayed the training events into the streaming state in {replay_seconds:.1f}s")

    surfaces: dict[str, Surface] = {name: Surface(name, {name: 1.0}) for name in HOME_SOURCES}
    home = surfaces["home"] = DEFAULT_SURFACES["home"]
    for variant in args.variant:
        surfaces[f"home {variant}"] = load_surfaces({"home": json.loads(variant)})["home"]
    # Leave-one-out (does home lose anything without this source?), on a share of the
    # sessions to keep the run short, beside home's own lists on those same sessions.
    ablations: dict[str, Surface] = {}
    if args.ablation_every > 0:
        for source in home.sources(False):
            ablations[f"home - {source}"] = Surface("home", {**home.weights, source: 0.0})
    names = [*surfaces, GLOBAL_TRENDING, RANDOM]
    if ablations:
        names[names.index("home") + 1 : names.index("home") + 1] = [HOME_SUBSET, *ablations]
    tallies = {name: Tally() for name in names}
    catalogue_items = [row["item_id"] for row in sim.catalogue()]
    server = Server(
        sim,
        state,
        model,
        surfaces,
        ablations,
        tallies,
        catalogue_items,
        args,
        random.Random(args.seed),
    )

    outcomes: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    served: dict[tuple[str, str], dict[str, list[str]]] = {}
    known: dict[tuple[str, str], set[str]] = {}
    # Sessions already running at the cut are not test sessions.
    running = {(e["user_id"], e["session_id"]) for e in train}
    at_click = args.serve_at == "first-click"
    started = time.perf_counter()
    pending: list[dict[str, Any]] = []
    with RunOnce():
        for n, event in enumerate(test):
            key = (event["user_id"], event["session_id"])
            if key in served:
                record_outcome(outcomes, event)  # what the user did after the serve point
            elif (
                key not in running
                and (not at_click or event["type"] == "click")
                and (args.max_sessions is None or len(served) < args.max_sessions)
            ):
                if at_click:
                    pending.append(event)  # served right after the click: the state has it
                state.fold(pending)
                pending = []
                trajectory = state.trajectories.get(event["user_id"])
                known[key] = set(trajectory.items) if trajectory is not None else set()
                ablate = bool(ablations) and len(served) % args.ablation_every == 0
                served[key] = server.serve(event, n, ablate)
                if len(served) % 250 == 0:
                    say(f"{len(served):,} sessions served ({time.perf_counter() - started:.0f}s)")
                if at_click:
                    continue
                record_outcome(outcomes, event)
            pending.append(event)
    state.fold(pending)
    serve_seconds = time.perf_counter() - started
    say(f"served {len(served):,} sessions in {serve_seconds:.1f}s")

    for key, lists in served.items():
        clicked, converted = outcomes.get(key, (set(), set()))
        for name, items in lists.items():
            tallies[name].observe(items, clicked, converted, known[key])

    rows = {name: tallies[name].figures(len(catalogue_items)) for name in names}
    print()
    print(
        f"## Online quality, simulator {args.events:,} events, seed {args.seed}, "
        f"last {args.test_hours:g} h served at {args.serve_at}, k = {args.k}\n"
    )
    print(
        f"{len(served):,} test sessions of {len({u for u, _ in served}):,} users; "
        f"{sum(1 for o in outcomes.values() if o[0]):,} of them with a click, "
        f"{sum(1 for o in outcomes.values() if o[1]):,} with a cart or purchase "
        f"after the serve point ({args.serve_at}). "
        "Observed: share of served lists holding an item the user clicked (carted or "
        "bought) later in that session; novel: clicked and not among the user's earlier "
        "interactions. Expected: the simulator's P(click) and P(click then cart) per "
        "served item at the serve point. ms / list: a source's own rows include its "
        "run; home and its leave-one-out rows reuse those outputs (merge and filters only).\n"
    )
    print(report_markdown(rows))
    home_items = max(tallies["home"].items, 1)
    print("\nWhere home's served items come from (share of its items):\n")
    print("| source | strongest contributor | any contribution |")
    print("|---|---|---|")
    for source in HOME_SOURCES:
        top = server.home_sources["top"].get(source, 0) / home_items
        anywhere = server.home_sources["any"].get(source, 0) / home_items
        print(f"| {source} | {100 * top:.1f}% | {100 * anywhere:.1f}% |")
    print(
        f"\ntrain {train_seconds:.0f}s, replay {replay_seconds:.0f}s, "
        f"serve {serve_seconds:.0f}s, total {time.perf_counter() - began:.0f}s"
    )


@dataclass
class Server:
    """Serves and tallies every row's list for one test session at a time."""

    sim: ClickstreamSimulator
    state: ReplayedState
    model: ModelParts
    surfaces: Mapping[str, Surface]
    ablations: Mapping[str, Surface]
    tallies: Mapping[str, Tally]
    catalogue_items: list[str]
    args: argparse.Namespace
    pick: random.Random = field(default_factory=random.Random)
    #: "top" / "any": source -> home items it was the strongest / any contributor of.
    home_sources: dict[str, dict[str, int]] = field(default_factory=lambda: {"top": {}, "any": {}})

    def serve(self, event: Mapping[str, Any], n: int, ablate: bool) -> dict[str, list[str]]:
        """Every row's list for the session starting with ``event``; tally the expected."""
        user, now, args = event["user_id"], event["ts"], self.args
        lists: dict[str, list[str]] = {}

        def record(name: str, items: list[str], seconds: float) -> None:
            clicks, converts = expected_rates(self.sim, user, items, now)
            self.tallies[name].add(items, clicks, converts)
            self.tallies[name].seconds += seconds
            lists[name] = items

        # One context per session, as the agent builds one per request; its rng seeds
        # Thompson sampling.
        ctx = self.state.context(
            user,
            now,
            self.model,
            k=args.k,
            per_source=args.per_source,
            rng=np.random.default_rng((args.seed, n)),
        )
        for name, surface in self.surfaces.items():
            t0 = time.perf_counter()
            chosen = generate(surface, ctx)
            seconds = time.perf_counter() - t0
            record(name, [c.item_id for c in chosen], seconds)
            if name == "home":
                self._attribute(chosen)
                if ablate:
                    record(HOME_SUBSET, lists[name], seconds)
        for name, surface in self.ablations.items() if ablate else ():
            t0 = time.perf_counter()
            record(name, [c.item_id for c in generate(surface, ctx)], time.perf_counter() - t0)
        t0 = time.perf_counter()
        # The popularity source without the user's top category: plain trending.
        ctx = self.state.context(user, now, self.model, k=args.k, per_source=args.per_source)
        ctx.category_of = None
        items = [c.item_id for c in generate(self.surfaces[BASELINE], ctx)]
        record(GLOBAL_TRENDING, items, time.perf_counter() - t0)
        record(RANDOM, self.pick.sample(self.catalogue_items, args.k), 0.0)
        return lists

    def _attribute(self, chosen: Iterable[Any]) -> None:
        top, anywhere = self.home_sources["top"], self.home_sources["any"]
        for c in chosen:
            top[c.source] = top.get(c.source, 0) + 1
            for source in c.sources:
                anywhere[source] = anywhere.get(source, 0) + 1


if __name__ == "__main__":
    main()
