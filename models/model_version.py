"""Model versions on disk: one directory per version, written atomically, checksummed.

The trainer publishes, the workers load (StockX's blue/green slots,
DESIGN.md source 2). A version is a directory under a models root::

    <root>/CURRENT                          the live version id (replaced atomically)
    <root>/v20260101-120000-123456/
        manifest.json                       version, created_at, data range, params,
                                            metrics, sha256 per file, overall checksum
        embedding/...                       TokenEmbedding.save
        index/...                           TokenIndex.save (one HNSW graph per type)
        factorization/...                   MatrixFactorization.save

Why atomic: a worker may read the root at any moment. A version is built in a
hidden temp directory beside its final place, every file and directory is
fsynced, then one ``os.rename`` makes it appear whole; ``CURRENT`` is written
to a temp file and ``os.replace``-d. A reader therefore sees either no version
or a complete one, and a crash leaves at most a ``.tmp-*`` directory that
:func:`list_versions` ignores.

The overall checksum is the sha256 of the sorted ``"<path> <sha256>"`` lines of
every file; announcements carry it, so a worker can tell that the directory
it loads is the one announced, and :func:`load_version` refuses a version
whose files do not match (a flipped byte, a truncated or missing file).

Examples
--------
>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> (root / "v1").mkdir(); _ = (root / "v1" / "a.bin").write_bytes(b"abc")
>>> files = file_checksums(root / "v1")
>>> files
{'a.bin': 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'}
>>> len(overall_checksum(files))
64
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.ann_index import TokenIndex
from models.factorization import MatrixFactorization
from models.token_embedding import TokenEmbedding

if TYPE_CHECKING:  # pragma: no cover - typing only, avoids an import cycle
    from models.training import TrainedModels

MANIFEST = "manifest.json"
CURRENT = "CURRENT"
FORMAT = 1
_TMP_PREFIX = ".tmp-"


class ModelVersionError(Exception):
    """A version is missing, incomplete or corrupt; the message names the file."""


@dataclass(frozen=True)
class VersionInfo:
    """What :func:`list_versions` and :func:`write_version` tell about one version."""

    version: str
    path: Path
    created_at: str
    checksum: str
    manifest: dict[str, Any] = field(repr=False)

    @property
    def data(self) -> dict[str, Any]:
        """The data range: ``first_ts``, ``last_ts``, ``events`` (and sessions, users, items)."""
        return self.manifest.get("data", {})

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest.get("metrics", {})

    def announcement(self, action: str = "publish") -> dict[str, Any]:
        """The JSON body announced on the model-updates topic."""
        return {
            "action": action,
            "version": self.version,
            "path": str(self.path),
            "checksum": self.checksum,
            "created_at": self.created_at,
        }


# ------------------------------------------------------------------ checksums
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_checksums(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory`` except the manifest, by relative path."""
    out = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if rel != MANIFEST:
            out[rel] = _sha256(path)
    return out


def overall_checksum(files: dict[str, str]) -> str:
    """One sha256 over the per-file checksums (sorted by path)."""
    text = "".join(f"{name} {files[name]}\n" for name in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------- durable I/O
def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(directory: Path) -> None:
    """fsync every file, then every directory bottom-up, so a rename publishes durable data."""
    for current, _, files in os.walk(directory, topdown=False):
        for name in files:
            _fsync_path(Path(current) / name)
        _fsync_path(Path(current))


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}-{os.getpid()}")
    with tmp.open("w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_path(path.parent)


def _publish_dir(build: Callable[[Path], None], root: Path, name: str) -> Path:
    """Build a directory with ``build(tmp)`` beside ``root/name``, fsync, rename into place."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    if final.exists():
        raise ModelVersionError(f"{final} already exists")
    tmp = root / f"{_TMP_PREFIX}{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        build(tmp)
        _fsync_tree(tmp)
        os.rename(tmp, final)
        _fsync_path(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def new_version_id(root: Path, now: float | None = None) -> str:
    """``vYYYYMMDD-HHMMSS-ffffff`` (UTC): sorts by time; unique under ``root``."""
    stamp = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    base = "v" + stamp.strftime("%Y%m%d-%H%M%S-%f")
    version, n = base, 1
    while (root / version).exists():
        version, n = f"{base}-{n}", n + 1
    return version


# --------------------------------------------------------------------- write
def write_version(
    root: str | Path, trained: TrainedModels, manifest_extra: dict[str, Any] | None = None
) -> VersionInfo:
    """Write ``trained`` as a new version under ``root``, atomically. CURRENT is not changed.

    Parameters
    ----------
    root
        The models root (``<data_dir>/models``); created if missing.
    trained
        Output of :func:`models.training.train_version`.
    manifest_extra
        More manifest keys (e.g. the event source); they cannot replace the
        checksums or the version id.

    Returns
    -------
    VersionInfo
    """
    root = Path(root)
    version = new_version_id(root)
    created_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    holder: dict[str, Any] = {}

    def build(tmp: Path) -> None:
        trained.embedding.save(tmp / "embedding")
        trained.index.save(tmp / "index")
        if trained.factorization is not None:
            trained.factorization.save(tmp / "factorization")
        files = file_checksums(tmp)
        manifest = {
            **(manifest_extra or {}),
            "format": FORMAT,
            "version": version,
            "created_at": created_at,
            "data": trained.data_range,
            "params": trained.params_dict(),
            "metrics": trained.metrics,
            "files": files,
            "checksum": overall_checksum(files),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        holder["manifest"] = manifest

    path = _publish_dir(build, root, version)
    manifest = holder["manifest"]
    return VersionInfo(version, path, created_at, manifest["checksum"], manifest)


def copy_version(info: VersionInfo, root: str | Path) -> VersionInfo:
    """Copy a version into another models root (atomically); return it there.

    An existing copy with the same checksum is kept as it is.
    """
    root = Path(root)
    final = root / info.version
    if final.exists():
        there = read_manifest(final)
        if there.get("checksum") != info.checksum:
            raise ModelVersionError(f"{final} exists with another checksum")
    else:
        _publish_dir(
            lambda tmp: shutil.copytree(info.path, tmp, dirs_exist_ok=True), root, info.version
        )
    return _info(final, read_manifest(final))


# ---------------------------------------------------------------------- read
def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the version at ``path``; :class:`ModelVersionError` if unreadable."""
    file = Path(path) / MANIFEST
    try:
        return json.loads(file.read_text())
    except FileNotFoundError:
        raise ModelVersionError(f"{file}: missing (not a model version)") from None
    except (OSError, ValueError) as exc:
        raise ModelVersionError(f"{file}: unreadable: {exc}") from None


def _info(path: Path, manifest: dict[str, Any]) -> VersionInfo:
    return VersionInfo(
        manifest.get("version", path.name),
        path,
        manifest.get("created_at", ""),
        manifest.get("checksum", ""),
        manifest,
    )


def list_versions(root: str | Path) -> list[VersionInfo]:
    """Every complete version under ``root``, oldest first (empty if ``root`` is missing)."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or not (path / MANIFEST).is_file():
            continue
        try:
            out.append(_info(path, read_manifest(path)))
        except ModelVersionError:
            continue  # unreadable manifest: not a version we can offer
    return out


def current_version(root: str | Path) -> str | None:
    """The version id in ``root/CURRENT``, or ``None``."""
    try:
        text = (Path(root) / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def set_current(root: str | Path, version: str) -> VersionInfo:
    """Point ``root/CURRENT`` at ``version`` (atomic replace); the version must exist."""
    root = Path(root)
    path = root / version
    info = _info(path, read_manifest(path))
    tmp = root / f"{_TMP_PREFIX}{CURRENT}-{os.getpid()}"
    with tmp.open("w") as fh:
        fh.write(version + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / CURRENT)
    _fsync_path(root)
    return info


def verify_version(path: str | Path, expected_checksum: str | None = None) -> dict[str, Any]:
    """Check every file against the manifest; return the manifest.

    Raises
    ------
    ModelVersionError
        Naming the missing or mismatching file, or the checksum that differs
        from ``expected_checksum`` (the announced one).
    """
    path = Path(path)
    manifest = read_manifest(path)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelVersionError(f"{path / MANIFEST}: no file checksums")
    if overall_checksum(files) != manifest.get("checksum"):
        raise ModelVersionError(f"{path / MANIFEST}: overall checksum does not match its files")
    if expected_checksum is not None and manifest["checksum"] != expected_checksum:
        raise ModelVersionError(
            f"{path}: checksum {manifest['checksum'][:12]}… is not the announced "
            f"{expected_checksum[:12]}…"
        )
    for name, digest in files.items():
        file = path / name
        if not file.is_file():
            raise ModelVersionError(f"{file}: missing")
        actual = _sha256(file)
        if actual != digest:
            raise ModelVersionError(f"{file}: checksum mismatch (corrupt or modified)")
    return manifest


# ---------------------------------------------------------------------- load
@dataclass
class LoadedModel:
    """A version loaded for serving: token embedding, per-type HNSW index, MF.

    The query methods are what the worker's views call; they never raise for
    an unknown id, they return ``None``.
    """

    info: VersionInfo
    embedding: TokenEmbedding
    index: TokenIndex
    factorization: MatrixFactorization | None

    @property
    def version(self) -> str:
        return self.info.version

    def similar(
        self, item_id: str, from_type: str, to_type: str, k: int = 10
    ) -> list[dict[str, Any]] | None:
        """The ``k`` nearest ``to_type`` tokens to ``(item_id, from_type)``.

        ``None`` when the token is not in the model. Cosine scores, best first.
        """
        if (item_id, from_type) not in self.index:
            return None
        found = self.index.neighbours((item_id, from_type), to_type, k)
        return [{"item_id": item, "score": score} for item, score in found]

    def user_scores(
        self, user_id: str, k: int = 10, exclude: tuple[str, ...] | list[str] = ()
    ) -> list[dict[str, Any]] | None:
        """The user's top ``k`` items by MF score; ``None`` for an unknown user or no MF."""
        mf = self.factorization
        if mf is None or mf.user_vector(user_id) is None:
            return None
        return [{"item_id": i, "score": s} for i, s in mf.recommend(user_id, k, exclude)]


def load_version(
    path: str | Path, verify: bool = True, expected_checksum: str | None = None
) -> LoadedModel:
    """Load the version at ``path``, checking its files first when ``verify``.

    Raises
    ------
    ModelVersionError
        A missing or corrupt file (checked before anything is parsed), or any
        failure to parse the parts.

    Examples
    --------
    >>> try:
    ...     load_version("/nonexistent/v1")
    ... except ModelVersionError as exc:
    ...     print(exc)
    /nonexistent/v1/manifest.json: missing (not a model version)
    """
    path = Path(path)
    manifest = verify_version(path, expected_checksum) if verify else read_manifest(path)
    try:
        embedding = TokenEmbedding.load(path / "embedding")
        index = TokenIndex.load(path / "index")
        mf_dir = path / "factorization"
        mf = MatrixFactorization.load(mf_dir) if mf_dir.is_dir() else None
    except Exception as exc:  # any parse failure is a bad version, said once and clearly
        raise ModelVersionError(f"{path}: cannot load: {type(exc).__name__}: {exc}") from exc
    if not np.isfinite(embedding.vectors).all():
        raise ModelVersionError(f"{path}: embedding has non-finite values")
    return LoadedModel(_info(path, manifest), embedding, index, mf)


__all__ = [
    "CURRENT",
    "LoadedModel",
    "ModelVersionError",
    "VersionInfo",
    "copy_version",
    "current_version",
    "file_checksums",
    "list_versions",
    "load_version",
    "new_version_id",
    "overall_checksum",
    "read_manifest",
    "set_current",
    "verify_version",
    "write_version",
]
