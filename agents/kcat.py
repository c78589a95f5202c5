"""Debian's ``kcat`` against any broker, the embedded one included: ``tastestream kcat -- ARGS``.

Debian's kcat links Debian's librdkafka 2.0, which cannot parse the embedded
broker's (Tansu's) ApiVersions reply (``Local: Read underflow``). The
confluent-kafka wheel ships a current librdkafka as
``confluent_kafka.libs/librdkafka-<hash>.so.1``; a folder holding a symlink
``librdkafka.so.1`` to it, first on ``LD_LIBRARY_PATH``, makes kcat load that
one instead. It works on Apache Kafka too, so the CLI always does it.

Examples
--------
>>> kcat_argv(["-L"], "127.0.0.1:9092")[1:]
['-b', '127.0.0.1:9092', '-L']
>>> kcat_argv(["-b", "other:9092", "-L"], "127.0.0.1:9092")[1:]
['-b', 'other:9092', '-L']
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from agents.cli_io import CliError


def wheel_librdkafka() -> Path:
    """The librdkafka shared library inside the installed confluent-kafka wheel."""
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka-*.so*"))
    if not found:
        raise CliError(
            f"no librdkafka in {libs}",
            "install confluent-kafka from its manylinux wheel (pip install confluent-kafka)",
        )
    return found[0]


def librdkafka_dir(cache_dir: str | Path | None = None) -> Path:
    """A folder whose ``librdkafka.so.1`` is the wheel's library (made once, then reused).

    Parameters
    ----------
    cache_dir
        Where to make it; default: a folder per library under the system's temp directory.
    """
    library = wheel_librdkafka()
    folder = Path(cache_dir or Path(tempfile.gettempdir()) / f"tastestream-kcat-{library.stem}")
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "librdkafka.so.1"
    if not (link.is_symlink() and link.resolve() == library):
        staged = folder / f".librdkafka.so.1.{os.getpid()}"
        staged.unlink(missing_ok=True)
        staged.symlink_to(library)
        os.replace(staged, link)  # atomic: concurrent callers never see a missing link
    return folder


def kcat_env(base: Mapping[str, str] | None = None, cache_dir: str | Path | None = None) -> dict:
    """``base`` (default: this process's environment) with the wheel's librdkafka first."""
    env = dict(os.environ if base is None else base)
    path = [str(librdkafka_dir(cache_dir))]
    if env.get("LD_LIBRARY_PATH"):
        path.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(path)
    return env


def kcat_binary() -> str:
    """Path of the ``kcat`` (or older ``kafkacat``) executable."""
    found = shutil.which("kcat") or shutil.which("kafkacat")
    if not found:
        raise CliError("kcat is not installed", "on Debian/Ubuntu: apt-get install kcat")
    return found


def names_broker(args: Sequence[str]) -> bool:
    """Whether kcat ARGS name a broker themselves (``-b`` or ``bootstrap.servers``)."""
    return any(a.startswith(("-b", "-Xbootstrap.servers=", "bootstrap.servers=")) for a in args)


def kcat_argv(args: Sequence[str], bootstrap: str) -> list[str]:
    """``kcat ARGS`` with ``-b bootstrap`` added unless ARGS name a broker already."""
    args = list(args)
    return [kcat_binary(), *([] if names_broker(args) else ["-b", bootstrap]), *args]


def printable(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """A copy-pasteable shell line that runs ``argv`` with the librdkafka from ``env``."""
    return f"LD_LIBRARY_PATH={shlex.quote(env['LD_LIBRARY_PATH'])} " + shlex.join(argv)


def run_kcat(args: Sequence[str], bootstrap: str, print_only: bool = False) -> int:
    """Run kcat (stdin and stdout pass through) and return its exit code, or print the line."""
    argv = kcat_argv(args, bootstrap)
    env = kcat_env()
    if print_only:
        print(printable(argv, env), flush=True)
        return 0
    return subprocess.run(argv, env=env, check=False).returncode
