"""Bring the embedded stack up, report on it and tear it down, across CLI invocations."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import kafka, postgres, prometheus, triton
from .config import StackConfig
from .process import ManagedProcess, StackError, managed_names, tail

log = logging.getLogger("revisit.stack")

Progress = Callable[[str], None]

COMPONENTS: tuple[str, ...] = ("postgres", "kafka", "triton", "postgres-exporter", "prometheus")
# Services (anything else with a pid file) stop first; postgres, which they write to, last.
_INFRA_STOP_ORDER: tuple[str, ...] = (
    "prometheus",
    "postgres-exporter",
    "triton",
    "kafka",
    "postgres",
)


@dataclass(frozen=True)
class _Component:
    name: str
    start: Callable[[StackConfig], ManagedProcess]
    is_healthy: Callable[[StackConfig], bool]
    port: Callable[[StackConfig], int]
    #: ready to be used after a start (default: healthy)
    ready: Callable[[StackConfig], bool] | None = None
    #: run once it is ready (schema, topics)
    after_ready: Callable[[StackConfig], object] | None = None

    def is_ready(self, config: StackConfig) -> bool:
        return (self.ready or self.is_healthy)(config)


_REGISTRY: dict[str, _Component] = {
    c.name: c
    for c in (
        _Component(
            "postgres",
            postgres.start,
            postgres.is_healthy,
            lambda c: c.postgres_port,
            ready=postgres.is_ready,
            after_ready=postgres.after_ready,
        ),
        _Component(
            "kafka",
            kafka.start,
            kafka.is_healthy,
            lambda c: c.kafka_port,
            after_ready=kafka.after_ready,
        ),
        _Component("triton", triton.start, triton.is_healthy, lambda c: c.triton_http_port),
        _Component(
            "postgres-exporter",
            prometheus.start_exporter,
            prometheus.exporter_is_healthy,
            lambda c: c.postgres_exporter_port,
        ),
        _Component(
            "prometheus", prometheus.start, prometheus.is_healthy, lambda c: c.prometheus_port
        ),
    )
}


@dataclass(frozen=True)
class ComponentStatus:
    """One line of ``revisit stack status``; ``port`` is None for services."""

    name: str
    running: bool
    pid: int | None
    port: int | None
    healthy: bool
    log_file: Path


_ERROR_WORDS = re.compile(r"error|fatal|exception|unavailable|failed|panic", re.IGNORECASE)


def _failure(name: str, proc: ManagedProcess, why: str) -> StackError:
    lines = [line[:200].rstrip() for line in tail(proc.log_file, 400).splitlines()]
    # Only this run: ManagedProcess writes a "===== <time> starting <name>" header.
    starts = [i for i, line in enumerate(lines) if line.startswith("===== ")]
    lines = lines[starts[-1] + 1 :] if starts else lines
    last = lines[-20:]
    # Servers often print the cause above a long banner (Triton's option table).
    earlier = [line for line in lines[:-20] if _ERROR_WORDS.search(line)][-15:]
    shown = [*earlier, "[...]", *last] if earlier else last
    return StackError(
        f"{name}: {why}; read {proc.log_file}\n"
        f"--- from {proc.log_file.name} ---\n" + "\n".join(shown)
    )


def _bring_up(comp: _Component, config: StackConfig, progress: Progress) -> float:
    proc = ManagedProcess.attach(comp.name, config.state_dir)
    t0 = time.monotonic()
    already = proc.is_running()
    if not already:
        if proc.alive_members():
            # The leader died but children (backends, stubs) linger and may hold the ports.
            proc.stop(timeout=10)
        progress(f"{comp.name}: starting (log {proc.log_file})")
        try:
            proc = comp.start(config)
        except StackError as exc:
            if str(exc).startswith(f"{comp.name}:"):
                raise
            raise type(exc)(f"{comp.name}: {exc}") from exc
    deadline = time.monotonic() + config.startup_timeout_s
    while not comp.is_ready(config):
        if not proc.is_running():
            proc.stop(timeout=10)  # children (stubs, backends) may outlive the leader
            raise _failure(comp.name, proc, "exited during startup")
        if time.monotonic() > deadline:
            proc.stop(timeout=10)
            raise _failure(comp.name, proc, f"not ready after {config.startup_timeout_s:.0f} s")
        time.sleep(0.25)
    if comp.after_ready is not None:
        comp.after_ready(config)
    if not comp.is_healthy(config):
        raise _failure(comp.name, proc, "started but its health check fails")
    elapsed = 0.0 if already else time.monotonic() - t0
    if already:
        progress(f"{comp.name}: already running (pid {proc.pid})")
    else:
        progress(f"{comp.name}: ready in {elapsed:.1f} s")
    return elapsed


def up(
    config: StackConfig | None = None,
    components: Iterable[str] = COMPONENTS,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Start the components not already running, concurrently, and wait until healthy.

    Returns startup seconds per component (0.0 for one that was already running). On a
    failure, raises :class:`StackError` naming every failed component and its log file;
    the components that did come up stay up (``down`` stops them).
    """
    config = config or StackConfig()
    report = progress or log.info
    names = list(dict.fromkeys(components))
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise ValueError(f"unknown components {unknown}; choose from {list(_REGISTRY)}")
    config.logs_dir.mkdir(parents=True, exist_ok=True)
    config.run_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        futures = {n: pool.submit(_bring_up, _REGISTRY[n], config, report) for n in names}
    times: dict[str, float] = {}
    errors: list[str] = []
    for name, future in futures.items():
        exc = future.exception()
        if exc is None:
            times[name] = future.result()
        else:
            errors.append(str(exc) if isinstance(exc, StackError) else f"{name}: {exc!r}")
    if errors:
        raise StackError("stack up failed:\n" + "\n\n".join(errors))
    return times


def _stop_order(names: Iterable[str]) -> list[str]:
    names = list(names)
    services = [n for n in names if n not in _INFRA_STOP_ORDER]
    return services + [n for n in _INFRA_STOP_ORDER if n in names]


def down(
    config: StackConfig | None = None,
    progress: Progress | None = None,
    timeout: float = 60.0,
) -> list[str]:
    """Stop every process with a pid file in ``state_dir/run`` (services, then triton,
    kafka, postgres) and check that none of them is left. Returns the names stopped."""
    config = config or StackConfig()
    report = progress or log.info
    stopped: list[str] = []
    names = _stop_order(managed_names(config.state_dir))
    for name in names:
        t0 = time.monotonic()
        if name == "postgres":
            was_running = postgres.stop(config, timeout=timeout)
        else:
            was_running = ManagedProcess.attach(name, config.state_dir).stop(timeout=timeout)
        if was_running:
            stopped.append(name)
            report(f"{name}: stopped in {time.monotonic() - t0:.1f} s")
    left = {
        name: pids
        for name in names
        if (pids := ManagedProcess.attach(name, config.state_dir).alive_members())
    }
    if left:
        raise StackError(f"stack down left processes running: {left}")
    return stopped


def status(config: StackConfig | None = None) -> dict[str, ComponentStatus]:
    """Per component (and per service with a pid file): running, pid, port, healthy."""
    config = config or StackConfig()
    names = list(COMPONENTS) + [n for n in managed_names(config.state_dir) if n not in COMPONENTS]
    result: dict[str, ComponentStatus] = {}
    for name in names:
        st = ManagedProcess.attach(name, config.state_dir).status()
        comp = _REGISTRY.get(name)
        healthy = st.alive and (comp.is_healthy(config) if comp is not None else True)
        result[name] = ComponentStatus(
            name=name,
            running=st.alive,
            pid=st.pid if st.alive else None,
            port=comp.port(config) if comp is not None else None,
            healthy=healthy,
            log_file=st.log_file,
        )
    return result


def format_status(statuses: dict[str, ComponentStatus]) -> str:
    """A small table for the CLI."""
    lines = [f"{'component':<20} {'running':<8} {'pid':<8} {'port':<6} healthy"]
    for s in statuses.values():
        lines.append(
            f"{s.name:<20} {('yes' if s.running else 'no'):<8} {s.pid or '-'!s:<8} "
            f"{s.port or '-'!s:<6} {'yes' if s.healthy else 'no'}"
        )
    return "\n".join(lines)


__all__ = [
    "COMPONENTS",
    "ComponentStatus",
    "Progress",
    "down",
    "format_status",
    "status",
    "up",
]
