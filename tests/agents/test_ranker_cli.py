"""``tastestream tune`` over a durable outcome log, ``--apply``, and its one-line errors."""

from __future__ import annotations

import tomllib

import numpy as np

from agents.cli import main
from models.ranking.features import FEATURE_NAMES
from models.ranking.ranker import LearnedRanker, pack_features
from models.ranking.utility import HEADS
from streams.eventlog import EventLog


def test_tune_replays_logged_outcomes_and_applies_the_weights(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    width = len(FEATURE_NAMES)
    ranker = LearnedRanker(min_examples=1)
    x = rng.normal(size=(4000, width))
    # Purchases follow feature 0, clicks feature 1: the heads learn both.
    p_click = 1 / (1 + np.exp(-(x[:, 1] - 1)))
    p_buy = 1 / (1 + np.exp(-(2 * x[:, 0] - 3)))
    y = np.stack(
        [
            rng.random(4000) < p_click,
            np.zeros(4000, bool),
            rng.random(4000) < p_buy,
            rng.random(4000) < p_buy,
        ],
        axis=1,
    ).astype(np.int8)
    ranker.learn(x, y, [str(i) for i in range(4000)])
    ranker.save(tmp_path / "ranker.npz")
    packed = pack_features(x)
    outcomes = [
        {
            "event_id": f"L{i // 20}:{i % 20}",
            "ts": float(i),
            "surface": "home",
            "features": packed[i],
            **{f"y_{h}": int(y[i, j]) for j, h in enumerate(HEADS)},
        }
        for i in range(4000)
    ]
    with EventLog(tmp_path / "outcomes" / "w0", fsync="never") as log:
        log.append(outcomes)
    config = tmp_path / "tastestream.toml"
    config.write_text('log_level = "info"\n')
    code = main(
        [
            "tune",
            "--outcomes",
            str(tmp_path / "outcomes"),
            "--ranker",
            str(tmp_path / "ranker.npz"),
            "--trials",
            "15",
            "--apply",
            str(config),
        ]
    )
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, captured.err
    assert "constraint margins" in out and "| chosen |" in out and "held back" in out
    written = tomllib.loads(config.read_text())
    assert written["log_level"] == "info"
    assert set(written["ranker_weights"]["home"]) == set(HEADS)
    assert written["ranker_weights"]["home"]["click"] == 1.0  # the fixed scale


def test_tune_and_bootstrap_errors_are_one_line(tmp_path, capsys):
    assert main(["tune"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--outcomes" in err
    (tmp_path / "bad.npz").write_bytes(b"x")
    assert main(["tune", "--outcomes", str(tmp_path), "--ranker", str(tmp_path / "bad.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot read a ranker" in err
