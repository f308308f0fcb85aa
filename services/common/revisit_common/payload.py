"""The payload store: arrays travel by reference (claim check), not inside events.

Keys are deterministic (derived from scene, AOI and product), so a replay overwrites the
same object instead of adding one. Writes are atomic (temporary file, then rename).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError, TransientError


class LocalPayloadStore:
    """A payload store in a local directory (the default; S3-compatible in production)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise PoisonError(f"payload key {key!r} escapes the payload store")
        return path

    def put_array(self, key: str, array: npt.NDArray[np.generic]) -> pb.ArrayRef:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        data = buffer.getvalue()
        path = self._path(key + ".npy")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise TransientError(f"payload store not writable at {path.parent}: {exc}") from exc
        return pb.ArrayRef(
            key=key,
            dtype=str(array.dtype),
            shape=list(array.shape),
            sha256=hashlib.sha256(data).hexdigest(),
        )

    def get_array(self, ref: pb.ArrayRef) -> npt.NDArray[np.generic]:
        path = self._path(ref.key + ".npy")
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise PoisonError(f"payload {ref.key!r} not found in {self.root}") from exc
        except OSError as exc:
            raise TransientError(f"payload store not readable at {path}: {exc}") from exc
        if ref.sha256 and hashlib.sha256(data).hexdigest() != ref.sha256:
            raise PoisonError(f"payload {ref.key!r} does not match its sha256: overwritten?")
        array: npt.NDArray[np.generic] = np.load(io.BytesIO(data), allow_pickle=False)
        if list(array.shape) != list(ref.shape) or str(array.dtype) != ref.dtype:
            raise PoisonError(
                f"payload {ref.key!r} is {array.dtype}{array.shape}, "
                f"the event says {ref.dtype}{tuple(ref.shape)}"
            )
        return array
