"""The payload store: arrays travel by reference (claim check), not inside events.

Keys are deterministic (derived from scene, AOI and product), so a replay overwrites the
same object instead of adding one. The store is a directory of an fsspec filesystem: a
local directory by default, or any S3-compatible object store (``s3://bucket/prefix``,
through s3fs). Writes are atomic: a temporary file, then a rename, on a local disk; a
single PUT, visible only once complete, on S3.

Errors follow the stage policy (`revisit_common.errors`): a key that is missing, escapes
the store or whose content does not match its reference is a `PoisonError`; a store that
cannot be reached, read or written is a `TransientError`.

Retention: `PayloadStore.sweep` deletes the objects older than a maximum age (by their
modification time, which a replay refreshes), `PayloadStore.start_sweeper` does it
periodically. Metrics (one set per registry): ``revisit_payload_written_bytes_total``
and, as counted by the last `usage` or `sweep` of the whole store,
``revisit_payload_store_objects`` and ``revisit_payload_store_bytes``, all labelled by
the service that owns the store.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import hashlib
import importlib
import io
import logging
import os
import posixpath
import tempfile
import threading
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import fsspec  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt
from fsspec.implementations.local import LocalFileSystem  # type: ignore[import-untyped]
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError, TransientError
from revisit_common.settings import ServiceSettings

log = logging.getLogger(__name__)

#: Prefix of the temporary files of local writes (hidden from `list` and `usage`).
TMP_PREFIX = ".tmp-"
#: How often `start_sweeper` applies the retention policy.
SWEEP_INTERVAL_S = 3600.0


class PayloadObject(NamedTuple):
    """One stored object: its key (relative to the store), size and modification time."""

    key: str
    size: int
    modified: datetime


class Usage(NamedTuple):
    objects: int
    bytes: int


class SweepResult(NamedTuple):
    deleted_objects: int
    deleted_bytes: int
    kept_objects: int
    kept_bytes: int


class PayloadMetrics:
    """The payload store's metrics in one registry (created once per registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.written = Counter(
            "revisit_payload_written_bytes",
            "Bytes written to the payload store.",
            ["service"],
            registry=registry,
        )
        self.objects = Gauge(
            "revisit_payload_store_objects",
            "Objects in the payload store, at its last usage count or sweep.",
            ["service"],
            registry=registry,
        )
        self.bytes = Gauge(
            "revisit_payload_store_bytes",
            "Bytes in the payload store, at its last usage count or sweep.",
            ["service"],
            registry=registry,
        )


_metrics: weakref.WeakKeyDictionary[CollectorRegistry, PayloadMetrics] = weakref.WeakKeyDictionary()
_metrics_lock = threading.Lock()


def payload_metrics(registry: CollectorRegistry = REGISTRY) -> PayloadMetrics:
    """The payload metrics of `registry`, registered there on first use only."""
    with _metrics_lock:
        metrics = _metrics.get(registry)
        if metrics is None:
            metrics = _metrics[registry] = PayloadMetrics(registry)
        return metrics


@functools.cache
def _unavailable() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the store cannot be reached, read or written now".

    OSError covers local disks and what s3fs translates (timeouts included); botocore
    and aiohttp errors are what an unreachable endpoint raises through s3fs.
    """
    errors: list[type[BaseException]] = [OSError]
    for module, names in (
        ("botocore.exceptions", ("BotoCoreError", "ClientError")),
        ("aiohttp", ("ClientError",)),
    ):
        try:
            found = importlib.import_module(module)
        except ImportError:
            continue
        errors.extend(getattr(found, name) for name in names)
    return tuple(errors)


def _modified(info: Mapping[str, Any]) -> datetime | None:
    """The modification time in an fsspec `info` (the field depends on the filesystem)."""
    for field in ("LastModified", "mtime", "last_modified", "updated", "created"):
        value = info.get(field)
        if isinstance(value, datetime):
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                continue
            return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


class PayloadStore:
    """A payload store: a directory `root` of the fsspec filesystem `fs` (local if None).

    `service` labels the metrics, which go to `registry` (None: no metrics). `retention`
    is the maximum age that `start_sweeper` enforces (None: objects are kept forever).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        fs: Any = None,
        *,
        service: str = "unknown",
        registry: CollectorRegistry | None = REGISTRY,
        retention: timedelta | None = None,
    ) -> None:
        self.fs: Any = LocalFileSystem() if fs is None else fs
        self.local = isinstance(self.fs, LocalFileSystem)
        if self.local:
            self.root = os.path.abspath(os.fspath(root))
            self._real_root = os.path.realpath(self.root)
            self.url = self.root
        else:
            self.root = str(self.fs._strip_protocol(os.fspath(root))).rstrip("/")
            self.url = str(self.fs.unstrip_protocol(self.root))
        self.service = service
        self.retention = retention
        self._metrics = payload_metrics(registry) if registry is not None else None

    def __repr__(self) -> str:
        return f"PayloadStore({self.url!r})"

    # Keys and paths.

    def _path(self, key: str) -> str:
        """The filesystem path of `key`; PoisonError if the key leaves the store."""
        normal = posixpath.normpath(key) if key else "."
        if key.startswith("/") or normal in (".", "..") or normal.startswith("../"):
            raise PoisonError(f"payload key {key!r} escapes the payload store")
        path = f"{self.root}/{normal}"
        if self.local:
            real = os.path.realpath(path)
            if os.path.commonpath([real, self._real_root]) != self._real_root:
                raise PoisonError(f"payload key {key!r} escapes the payload store")
        return path

    def _where(self, path: str) -> str:
        """`path` as the errors tell it: a local path or a URL."""
        return path if self.local else str(self.fs.unstrip_protocol(path))

    # Bytes.

    def put_bytes(self, key: str, data: bytes) -> str:
        """Store `data` under `key` (replacing what was there); its sha256, hex."""
        path = self._path(key)
        try:
            if self.local:
                self._write_local(path, data)
            else:
                self.fs.pipe_file(path, data)
        except _unavailable() as exc:
            where = self._where(posixpath.dirname(path))
            raise TransientError(f"payload store not writable at {where}: {exc}") from exc
        if self._metrics is not None:
            self._metrics.written.labels(self.service).inc(len(data))
        return hashlib.sha256(data).hexdigest()

    @staticmethod
    def _write_local(path: str, data: bytes) -> None:
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX)
        except FileNotFoundError:  # a sweep pruned the empty directory meanwhile
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def get_bytes(self, key: str) -> bytes | None:
        """The bytes stored under `key`, None if there are none."""
        path = self._path(key)
        try:
            data: bytes = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        except _unavailable() as exc:
            where = self._where(path)
            raise TransientError(f"payload store not readable at {where}: {exc}") from exc
        return data

    def delete(self, key: str) -> None:
        """Delete the object under `key`; nothing happens if there is none."""
        path = self._path(key)
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            pass
        except _unavailable() as exc:
            where = self._where(path)
            raise TransientError(f"payload store not writable at {where}: {exc}") from exc

    # Arrays (the claim checks of the events).

    def put_array(self, key: str, array: npt.NDArray[np.generic]) -> pb.ArrayRef:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        sha256 = self.put_bytes(key + ".npy", buffer.getvalue())
        return pb.ArrayRef(key=key, dtype=str(array.dtype), shape=list(array.shape), sha256=sha256)

    def get_array(self, ref: pb.ArrayRef) -> npt.NDArray[np.generic]:
        data = self.get_bytes(ref.key + ".npy")
        if data is None:
            raise PoisonError(f"payload {ref.key!r} not found in {self.url}")
        if ref.sha256 and hashlib.sha256(data).hexdigest() != ref.sha256:
            raise PoisonError(f"payload {ref.key!r} does not match its sha256: overwritten?")
        array: npt.NDArray[np.generic] = np.load(io.BytesIO(data), allow_pickle=False)
        if list(array.shape) != list(ref.shape) or str(array.dtype) != ref.dtype:
            raise PoisonError(
                f"payload {ref.key!r} is {array.dtype}{array.shape}, "
                f"the event says {ref.dtype}{tuple(ref.shape)}"
            )
        return array

    # Listing, usage and retention.

    def _find(
        self, prefix: str, maxdepth: int | None = None
    ) -> builtins.list[tuple[str, PayloadObject]]:
        """(path, object) of every file whose key starts with `prefix`, temporaries too."""
        base = self.root
        if prefix:
            self._path(prefix)  # the same escape check as for keys
            head = posixpath.dirname(prefix)
            if head:
                base = self._path(head)
        try:
            self.fs.invalidate_cache(base)
            found: dict[str, dict[str, Any]] = self.fs.find(base, maxdepth=maxdepth, detail=True)
            found_objects = []
            for path, info in sorted(found.items()):
                if not path.startswith(self.root + "/") or info.get("type", "file") != "file":
                    continue
                key = path[len(self.root) + 1 :]
                if not key.startswith(prefix):
                    continue
                modified = _modified(info) or self.fs.modified(path)
                if modified.tzinfo is None:
                    modified = modified.replace(tzinfo=UTC)
                found_objects.append((path, PayloadObject(key, int(info["size"]), modified)))
        except FileNotFoundError:
            return []
        except _unavailable() as exc:
            where = self._where(base)
            raise TransientError(f"payload store not readable at {where}: {exc}") from exc
        return found_objects

    @staticmethod
    def _temporary(key: str) -> bool:
        return posixpath.basename(key).startswith(TMP_PREFIX)

    def list(self, prefix: str = "", maxdepth: int | None = None) -> builtins.list[PayloadObject]:
        """The objects whose key starts with `prefix`, by key (array keys end in .npy);
        with `maxdepth`, only those at most that many levels below the prefix's folder
        (1: the files of that folder)."""
        found = self._find(prefix, maxdepth)
        return [obj for _, obj in found if not self._temporary(obj.key)]

    def usage(self, prefix: str = "") -> Usage:
        """Objects and bytes under `prefix`; for the whole store, also set the gauges."""
        listed = self.list(prefix)
        usage = Usage(len(listed), sum(found.size for found in listed))
        if not prefix:
            self._set_gauges(usage)
        return usage

    def _set_gauges(self, usage: Usage) -> None:
        if self._metrics is not None:
            self._metrics.objects.labels(self.service).set(usage.objects)
            self._metrics.bytes.labels(self.service).set(usage.bytes)

    def sweep(
        self, max_age: timedelta, now: datetime | None = None, prefix: str = ""
    ) -> SweepResult:
        """Delete the objects under `prefix` last modified more than `max_age` before `now`.

        Temporary files left by interrupted local writes are deleted when that old too.
        For the whole store, the gauges are set to what is kept.
        """
        if max_age < timedelta(0):
            raise ValueError(f"max_age must not be negative, not {max_age}")
        now = datetime.now(UTC) if now is None else now
        cutoff = (now if now.tzinfo else now.replace(tzinfo=UTC)) - max_age
        expired: builtins.list[tuple[str, PayloadObject]] = []
        kept = Usage(0, 0)
        for path, found in self._find(prefix):
            if found.modified < cutoff:
                expired.append((path, found))
            elif not self._temporary(found.key):
                kept = Usage(kept.objects + 1, kept.bytes + found.size)
        self._remove([path for path, _ in expired])
        if not prefix:
            self._set_gauges(kept)
        result = SweepResult(
            len(expired), sum(found.size for _, found in expired), kept.objects, kept.bytes
        )
        if expired:
            log.info("payload store %s: %s", self.url, result)
        return result

    def _remove(self, paths: builtins.list[str]) -> None:
        if not paths:
            return
        try:
            if self.local:
                for path in paths:
                    with contextlib.suppress(FileNotFoundError):  # another sweeper was faster
                        os.unlink(path)
                self._prune_directories({os.path.dirname(path) for path in paths})
            else:
                self.fs.rm(paths)
        except _unavailable() as exc:
            raise TransientError(f"payload store not writable at {self.url}: {exc}") from exc

    def _prune_directories(self, directories: set[str]) -> None:
        """Remove the directories left empty by a sweep, up to (not including) the root."""
        for directory in sorted(directories, key=len, reverse=True):
            while directory.startswith(self.root + "/"):
                try:
                    os.rmdir(directory)
                except OSError:
                    break  # not empty (or gone): leave it and its parents
                directory = os.path.dirname(directory)

    def start_sweeper(
        self, stop: threading.Event, interval_s: float = SWEEP_INTERVAL_S
    ) -> threading.Thread | None:
        """Sweep with `retention` now and every `interval_s` until `stop` is set.

        Returns the daemon thread, or None when the store keeps objects forever.
        """
        retention = self.retention
        if retention is None:
            return None

        def loop() -> None:
            while True:
                try:
                    self.sweep(retention)
                except Exception:
                    log.exception(
                        "payload store %s: sweep failed, next in %ss", self.url, interval_s
                    )
                if stop.wait(interval_s):
                    return

        thread = threading.Thread(target=loop, name="payload-sweeper", daemon=True)
        thread.start()
        return thread


def open_payload_store(
    url: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    service: str = "unknown",
    registry: CollectorRegistry | None = REGISTRY,
    retention: timedelta | None = None,
) -> PayloadStore:
    """The store at `url`: a local path, ``file://path`` or ``s3://bucket/prefix`` (or
    any fsspec URL); `storage_options` go to the filesystem (for S3: s3fs's, such as
    ``endpoint_url``; credentials come from the ``AWS_*`` environment variables)."""
    fs, root = fsspec.core.url_to_fs(os.fspath(url), **dict(storage_options or {}))
    return PayloadStore(root, fs, service=service, registry=registry, retention=retention)


def payload_store_from_settings(
    settings: ServiceSettings, service: str, registry: CollectorRegistry | None = REGISTRY
) -> PayloadStore:
    """The store of a service: ``REVISIT_PAYLOAD_URL``, else ``REVISIT_PAYLOAD_DIR``."""
    url = settings.payload_url or str(settings.payload_dir)
    options: dict[str, Any] = {}
    if settings.payload_s3_endpoint_url and url.startswith(("s3://", "s3a://")):
        options["endpoint_url"] = settings.payload_s3_endpoint_url
    days = settings.payload_retention_days
    retention = timedelta(days=days) if days > 0 else None
    return open_payload_store(url, options, service=service, registry=registry, retention=retention)
