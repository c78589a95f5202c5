"""Shadow reports and promotion: a candidate goes live only when a report shows it no worse."""

from __future__ import annotations

import json
import random

import pytest

from agents.cli import main
from agents.serving import models_roots
from agents.settings import Settings
from models.model_version import current_version
from models.simulator import ClickstreamSimulator, SimulatorConfig
from models.training import TrainingParams, train_version


@pytest.fixture
def shop(tmp_path, monkeypatch):
    """A simulated shop's log split in time: training events and a later window (a file)."""
    monkeypatch.setenv("TASTESTREAM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TASTESTREAM_KAFKA_URL", raising=False)  # no broker: nothing announced
    events = list(ClickstreamSimulator(SimulatorConfig(users=200, items=300, seed=1)).events(6000))
    cut = events[int(len(events) * 0.7)]["ts"]
    window = tmp_path / "window.jsonl"
    window.write_text("".join(json.dumps(e) + "\n" for e in events if e["ts"] >= cut))
    return Settings.load(), [e for e in events if e["ts"] < cut], window


def write_version(settings: Settings, events: list[dict], shuffled: bool, candidate: bool) -> str:
    """Train and write a version; ``shuffled``: on items renamed at random (a bad model)."""
    from agents.trainer import publish

    if shuffled:
        items = sorted({e["item_id"] for e in events})
        renamed = dict(zip(items, random.Random(5).sample(items, len(items)), strict=True))
        events = [{**e, "item_id": renamed[e["item_id"]]} for e in events]
    params = TrainingParams(seed=0)
    params.embedding.epochs, params.embedding.dim = 3, 16
    return publish(settings, train_version(events, params), "test", candidate).version


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_promote_only_after_a_shadow_report_that_is_not_worse(shop, capsys):
    settings, train, window = shop
    live = write_version(settings, train, shuffled=True, candidate=False)
    good = write_version(settings, train, shuffled=False, candidate=True)
    bad = write_version(settings, train, shuffled=True, candidate=True)
    root = models_roots(settings)[0]
    assert current_version(root) == live

    code, _, err = run(capsys, "model", "promote", good)
    assert code == 2 and "no shadow report" in err and len(err.strip().splitlines()) == 1, err

    shadow = ["--from", str(window), "--k", "20", "--json"]
    code, out, _ = run(capsys, "model", "shadow", good, *shadow)
    assert code == 0
    report = json.loads(out[out.index("{") :])
    assert report["version"] == good and report["live_version"] == live
    assert not any(report["overlaps_training"].values())
    ours, theirs = report["rows"]["candidate"], report["rows"]["live"]
    assert ours["click-to-cart"]["targets"] == theirs["click-to-cart"]["targets"] > 50
    assert ours["click-to-cart"]["novel_rate"] > theirs["click-to-cart"]["novel_rate"] + 0.05
    code, out, _ = run(capsys, "model", "promote", good)
    assert code == 0 and current_version(root) == good, out

    # Against the good live version, the bad one is worse: refused, unless forced.
    assert run(capsys, "model", "shadow", bad, *shadow)[0] == 0
    code, _, err = run(capsys, "model", "promote", bad)
    assert code == 2 and "click-to-cart: novel hit rate" in err, err
    assert len(err.strip().splitlines()) == 1 and current_version(root) == good
    code, out, _ = run(capsys, "model", "promote", bad, "--force")
    assert code == 0 and current_version(root) == bad
    assert "forced over:" in out and "click-to-cart: novel hit rate" in out, out

    # The good version's report was made against another live version: stale, so refused.
    code, _, err = run(capsys, "model", "promote", good)
    assert code == 2 and f"but {bad} is live now" in err, err
