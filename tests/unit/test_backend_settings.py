"""Process settings of the Triton Python-backend runner (infra/triton/backend/model.py):
torch threads per CPU instance, and glibc keeping the memory a forward pass frees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backend import BACKEND, load_backend

backend = load_backend()


def _config(*groups: tuple[str, int]) -> dict[str, object]:
    return {"instance_group": [{"kind": kind, "count": count} for kind, count in groups]}


def test_cpu_instances_share_the_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "_usable_cpus", lambda: 16)
    assert backend._cpu_threads(_config(("KIND_CPU", 2))) == 8
    assert backend._cpu_threads(_config(("KIND_CPU", 1), ("KIND_CPU", 3))) == 4
    assert backend._cpu_threads(_config(("KIND_CPU", 32))) == 1  # never 0
    assert backend._cpu_threads(_config(("KIND_GPU", 2))) == 16  # not CPU instances


def test_a_cgroup_cpu_quota_caps_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    affinity = len(backend.os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(backend, "CPU_MAX", str(cpu_max))
    assert backend._usable_cpus() == affinity  # no cgroup v2 file
    cpu_max.write_text("max 100000\n")
    assert backend._usable_cpus() == affinity
    cpu_max.write_text("50000 100000\n")  # half a core: still one thread
    assert backend._usable_cpus() == 1
    cpu_max.write_text(f"{(affinity + 4) * 100000} 100000\n")  # more than the affinity
    assert backend._usable_cpus() == affinity


# A fresh interpreter: an 8 MiB block, freed, then the bytes glibc has mmapped and the
# free bytes it keeps in its heap (mallinfo2, glibc >= 2.33).
_PROBE = """
import ctypes, json, sys
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
libc.mallinfo2.restype = Info
if sys.argv[1] == "tuned":
    sys.path.insert(0, sys.argv[2])
    from tests.backend import load_backend
    load_backend()._keep_freed_memory()
block = libc.malloc(8 << 20)
mapped = libc.mallinfo2().hblkhd
libc.free(block)
print(json.dumps({"mapped": mapped, "kept": libc.mallinfo2().fordblks}))
"""


def _probe(mode: str) -> dict[str, int]:
    root = str(BACKEND.parents[3])
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode, root], capture_output=True, text=True, check=True
    )
    result: dict[str, int] = json.loads(out.stdout)
    return result


def test_freed_memory_stays_for_the_next_forward_pass() -> None:
    default, tuned = _probe("default"), _probe("tuned")
    # glibc's defaults: the block is mmapped and unmapped again when freed
    assert default["mapped"] >= 8 << 20 and default["kept"] < 8 << 20
    # the backend's setting: the block comes from the heap, which keeps it once freed
    assert tuned["mapped"] < 8 << 20 and tuned["kept"] >= 8 << 20
