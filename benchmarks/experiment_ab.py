"""Benchmark: an A/B experiment end to end on the simulator, against its ground truth.

Popularity ("no personalisation", the control) against the personalised home
surface, on a real worker over the embedded broker and Redis:

1. Simulate ``--events`` events of ``--users`` users (models/simulator.py,
   timed to end now) and send them to the worker; wait until it applied them.
2. ``experiment start`` a definition with both variants at 50% (the CLI's code).
3. Serve every user who has events one home list of ``--k`` items over HTTP:
   bucketing decides the variant. A simulated client then engages with the
   shown items exactly as the simulator's funnel would (its ground truth,
   ``online_quality.expected_rates``): click with P(click) = min(.95,
   click_rate * g) (g: the user's gain for the item's category now; 0 when
   the seller is offline), then cart with min(.9, cart_rate * g), then
   purchase with min(.95, purchase_rate * g) (value = price), each event
   carrying the list's ``request_id``.
4. Wait until the per-variant sums reached ``GET /experiments/{name}`` (an
   engagement counts when it arrives, within ``--window`` of its list); read
   the reported difference of click-through (and conversion) with its 95%
   interval.

The **truth** is the expected difference given the lists actually served: the
mean simulator probability per impression, per variant. The report says
whether it lies inside the reported interval (it should, 95% of the time),
and checks that every impression and engagement was counted exactly.

Run: ``python benchmarks/experiment_ab.py [--users 1500] [--events 40000] [--k 10] [--seed 0]``
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shlex
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness
from online_quality import expected_rates

from agents.experiment_command import run_command
from agents.producer import EventProducer
from agents.provision import ensure_topics
from agents.stack import start_stack
from models.simulator import ClickstreamSimulator, SimulatorConfig

NAME = "home-personalisation"
DEFINITION = {
    "surfaces": ["home"],
    "control": "popularity",
    "variants": {
        "popularity": {"share": 0.5, "personalised": False},
        "personalised": {"share": 0.5},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--window", type=float, default=600.0, help="outcome window, s (longer than serving takes)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("command:", shlex.join([sys.executable, *sys.argv]), flush=True)

    work = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    stack = start_stack("", "", work / "stack")
    proc = None
    try:
        overrides, settings = harness.worker_overrides(stack, work, "ab")
        overrides.update(
            experiments=json.dumps({NAME: DEFINITION}),
            outcome_window_seconds=str(args.window),
            outcome_tick_seconds="0.5",
            experiment_metrics_seconds="1",
            log_requests="false",
        )
        settings = settings.replace(experiments={NAME: DEFINITION})
        ensure_topics(settings)
        proc, url = harness.start_worker(overrides, work / "worker.log")

        # 1. history
        span = 4 * 3600.0
        sim = ClickstreamSimulator(
            SimulatorConfig(
                users=args.users,
                items=args.items,
                seed=args.seed,
                start_ts=time.time() - span,
                events_per_day=args.events * 86400.0 / span,
            )
        )
        events = list(sim.events(args.events))
        producer = EventProducer(settings)
        producer.send_many(events)
        producer.flush()
        harness.wait_for(
            lambda: (
                harness.read_metrics(url).get("tastestream_events_accepted_total", 0) >= len(events)
            ),
            300,
            "the history to be applied",
        )
        users = sorted({e["user_id"] for e in events})
        print(f"history: {len(events):,} events of {len(users):,} users applied", flush=True)

        # 2. the experiment
        record = run_command(
            settings, argparse.Namespace(experiment_command="start", name=NAME, shares=None)
        )
        harness.wait_for(
            lambda: (
                harness.get_json(f"{url}/experiments/{NAME}")[1] is not None
                and harness.get_json(f"{url}/experiments/{NAME}")[1]["run"] == record["run"]
            ),
            30,
            "the worker to run the experiment",
        )

        # 3. serve, engage as the simulator would
        rng = random.Random(args.seed)
        truth = defaultdict(Counter)  # variant -> sums of probabilities and counts
        sent = defaultdict(Counter)
        engagements = []
        started = time.monotonic()
        for user in users:
            with urllib.request.urlopen(
                f"{url}/users/{user}/recommendations?surface=home&k={args.k}", timeout=30
            ) as resp:
                body = json.loads(resp.read())
            variant = body["variant"]
            if variant is None:
                continue
            items = [it["item_id"] for it in body["items"]]
            now = time.time()
            clicks, carts = expected_rates(sim, user, items, now)
            cfg = sim.config
            t = truth[variant]
            t["impressions"] += len(items)
            sent[variant]["impressions"] += len(items)
            sent[variant]["requests"] += 1
            for item, p_click, p_cart in zip(items, clicks, carts, strict=True):
                gain_cart = p_cart / p_click if p_click else 0.0
                p_purchase_given_cart = (
                    min(0.95, cfg.purchase_rate * gain_cart / cfg.cart_rate) if p_cart else 0.0
                )
                t["p_click"] += p_click
                t["p_purchase"] += p_cart * p_purchase_given_cart
                context = {"request_id": body["request_id"], "surface": "home"}
                base = {"user_id": user, "item_id": item, "ts": now, "context": context}
                if rng.random() < p_click:
                    engagements.append({**base, "type": "click", "event_id": f"ab-{user}-{item}-c"})
                    sent[variant]["clicks"] += 1
                    if rng.random() < gain_cart:
                        engagements.append(
                            {**base, "type": "cart", "event_id": f"ab-{user}-{item}-k"}
                        )
                        sent[variant]["carts"] += 1
                        if rng.random() < p_purchase_given_cart:
                            engagements.append(
                                {
                                    **base,
                                    "type": "purchase",
                                    "event_id": f"ab-{user}-{item}-p",
                                    "value": round(sim.item_price(item), 2),
                                }
                            )
                            sent[variant]["purchases"] += 1
        serve_seconds = time.monotonic() - started
        producer.send_many(engagements)
        producer.flush()
        print(
            f"served {sum(c['requests'] for c in sent.values()):,} lists in {serve_seconds:.1f} s;"
            f" {len(engagements):,} engagements sent",
            flush=True,
        )

        # 4. the report, once every impression and engagement is counted
        def settled():
            _, body = harness.get_json(f"{url}/experiments/{NAME}")
            if body is None:
                return None
            for variant, want in sent.items():
                got = body["variants"][variant]["counts"]
                if any(
                    got[q] != want[q]
                    for q in ("requests", "impressions", "clicks", "carts", "purchases")
                ):
                    return None
            return body

        body = harness.wait_for(settled, 120, "the per-variant counts")
        print_report(body, truth, sent)
    finally:
        if proc is not None:
            harness.stop_worker(proc)
        stack.stop()


def print_report(body: dict, truth: dict, sent: dict) -> None:
    print(f"\ntest: {body['test']}")
    print(
        "\n| variant | users | impressions | clicks | CTR [95% CI] | true CTR "
        "| conversion [95% CI] | true conversion |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for variant, row in body["variants"].items():
        m, t = row["metrics"], truth[variant]
        ctr, conv = m["click_through"], m["conversion"]
        print(
            f"| {variant} | {row['users']} | {row['counts']['impressions']:.0f} | "
            f"{row['counts']['clicks']:.0f} | {ctr['value']:.4f} [{ctr['ci_low']:.4f}, "
            f"{ctr['ci_high']:.4f}] | {t['p_click'] / t['impressions']:.4f} | "
            f"{conv['value']:.4f} [{conv['ci_low']:.4f}, {conv['ci_high']:.4f}] | "
            f"{t['p_purchase'] / t['impressions']:.4f} |"
        )
    control = body["control"]
    print("\n| comparison | metric | reported difference [95% CI] | p | true difference | inside |")
    print("|---|---|---|---|---|---|")
    for variant, rows in body["comparisons"].items():
        for metric, key in (("click_through", "p_click"), ("conversion", "p_purchase")):
            c = rows[metric]
            true = truth[variant][key] / truth[variant]["impressions"] - (
                truth[control][key] / truth[control]["impressions"]
            )
            inside = c["ci_low"] <= true <= c["ci_high"]
            print(
                f"| {variant} - {control} | {metric} | {c['difference']:+.4f} "
                f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] | {c['p_value']:.2g} | "
                f"{true:+.4f} | {'yes' if inside else 'NO'} |"
            )
    exact = all(
        body["variants"][v]["counts"][q] == sent[v][q]
        for v in sent
        for q in ("requests", "impressions", "clicks", "carts", "purchases")
    )
    print(f"\nevery list, impression and engagement counted exactly: {exact}")
    if not math.isfinite(body["comparisons"]["personalised"]["click_through"]["difference"]):
        raise SystemExit("no difference reported")


if __name__ == "__main__":
    main()
