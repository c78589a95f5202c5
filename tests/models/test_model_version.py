"""Model versions on disk: atomic layout, checksums, CURRENT, clear refusals."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from models.factorization import FactorizationParams
from models.model_version import (
    ModelVersionError,
    copy_version,
    current_version,
    list_versions,
    load_version,
    set_current,
    verify_version,
    write_version,
)
from models.simulator import ClickstreamSimulator, SimulatorConfig
from models.token_embedding import EmbeddingParams
from models.training import TrainingParams, train_version


@pytest.fixture(scope="module")
def trained():
    sim = ClickstreamSimulator(SimulatorConfig(users=60, items=120, categories=6, sellers=10))
    params = TrainingParams(
        embedding=EmbeddingParams(dim=8, epochs=1),
        factorization=FactorizationParams(factors=4, epochs=2),
    )
    return train_version(sim.events(5000), params)


def test_write_list_load_round_trip(tmp_path, trained):
    root = tmp_path / "models"
    first = write_version(root, trained, {"source": "test"})
    second = write_version(root, trained)
    assert [v.version for v in list_versions(root)] == [first.version, second.version]
    assert first.version < second.version
    manifest = json.loads((first.path / "manifest.json").read_text())
    assert manifest["source"] == "test" and manifest["version"] == first.version
    assert manifest["data"]["events"] == 5000 and manifest["checksum"] == first.checksum
    assert {"embedding/vectors.npy", "index/index.json"} <= set(manifest["files"])
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp dirs left
    loaded = load_version(first.path)
    np.testing.assert_array_equal(loaded.embedding.vectors, trained.embedding.vectors)
    token = trained.embedding.vocab[0]
    assert loaded.similar(token[0], token[1], "click", 3) is not None
    assert loaded.similar("no-such-item", "click", "cart", 3) is None
    user = trained.factorization.users[0]
    assert len(loaded.user_scores(user, 5)) == 5
    assert loaded.user_scores("no-such-user", 5) is None


def test_current_pointer(tmp_path, trained):
    root = tmp_path / "models"
    assert current_version(root) is None
    a, b = write_version(root, trained), write_version(root, trained)
    assert current_version(root) is None  # writing does not publish
    set_current(root, b.version)
    assert current_version(root) == b.version
    set_current(root, a.version)
    assert current_version(root) == a.version
    with pytest.raises(ModelVersionError, match="missing"):
        set_current(root, "v-nope")
    assert current_version(root) == a.version


def test_flipped_byte_is_refused_with_the_file_named(tmp_path, trained):
    info = write_version(tmp_path, trained)
    target = info.path / "index" / "index_0.bin"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ModelVersionError, match=r"index_0\.bin: checksum mismatch"):
        load_version(info.path)


def test_missing_file_and_wrong_announced_checksum(tmp_path, trained):
    info = write_version(tmp_path, trained)
    with pytest.raises(ModelVersionError, match="not the announced"):
        verify_version(info.path, expected_checksum="0" * 64)
    os.remove(info.path / "embedding" / "vectors.npy")
    with pytest.raises(ModelVersionError, match=r"vectors\.npy: missing"):
        load_version(info.path)


def test_copy_to_another_root(tmp_path, trained):
    info = write_version(tmp_path / "a", trained)
    copied = copy_version(info, tmp_path / "b")
    assert copied.path == tmp_path / "b" / info.version
    assert copied.checksum == info.checksum
    verify_version(copied.path, info.checksum)
    assert copy_version(info, tmp_path / "b").checksum == info.checksum  # idempotent
