"""NVIDIA Triton Inference Server on CPU, Python backend only.

The ``tritonserver`` binary, the Python backend and its per-version stubs come from the
PyPI wheel ``nvidia-pytriton`` in the venv of ``config.python``. What the plain binary
needs on CPU is documented in ``shared/notes/triton-on-cpu.md``: a backend directory
assembled from the wheel's files, the interpreter's own libpython first on
``LD_LIBRARY_PATH`` and the venv's ``bin`` first on ``PATH`` (the stub finds numpy/torch
through the ``python3`` it finds there).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .config import StackConfig
from .process import (
    ManagedProcess,
    MissingDependencyError,
    StackError,
    ensure_port_free,
    http_ok,
)

NAME = "triton"

# Run by config.python: find_spec does not import pytriton (which pulls in numpy etc.).
_LOCATE = """
import importlib.util, json, sys, sysconfig
spec = importlib.util.find_spec("pytriton")
print(json.dumps({
    "pytriton": list(spec.submodule_search_locations)[0] if spec else None,
    "libdir": sysconfig.get_config_var("LIBDIR"),
    "version": "%d.%d" % sys.version_info[:2],
}))
"""


@dataclass(frozen=True)
class TritonInstall:
    """Paths of the server and the Python backend inside the nvidia-pytriton wheel."""

    server: Path
    backend_files: tuple[Path, ...]  # libtriton_python.so, utils .py, stub
    wheel_libs: Path
    python_libdir: Path
    python_bin_dir: Path


def locate(config: StackConfig) -> TritonInstall:
    """Find tritonserver and the Python backend for ``config.python``."""
    python = Path(config.python)
    try:
        out = subprocess.run(
            [str(python), "-c", _LOCATE], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        info = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise MissingDependencyError(f"triton: cannot run {python} ({exc})") from exc
    if not info["pytriton"]:
        raise MissingDependencyError(
            f"triton: nvidia-pytriton is not installed for {python}; "
            f"`{python} -m pip install nvidia-pytriton` or set python (env REVISIT_PYTHON)"
        )
    root = Path(info["pytriton"]) / "tritonserver"
    install = TritonInstall(
        server=root / "bin" / "tritonserver",
        backend_files=(
            root / "backends" / "python" / "libtriton_python.so",
            root / "backends" / "python" / "triton_python_backend_utils.py",
            root / "python_backend_stubs" / info["version"] / "triton_python_backend_stub",
        ),
        wheel_libs=Path(info["pytriton"]).parent / "nvidia_pytriton.libs",
        python_libdir=Path(info["libdir"]),
        # Not resolved: the venv's bin, not the base interpreter's, must come first on PATH.
        python_bin_dir=python.parent,
    )
    for path in (install.server, *install.backend_files, install.wheel_libs):
        if not path.exists():
            raise MissingDependencyError(
                f"triton: {path} is missing from the nvidia-pytriton wheel "
                f"(Python {info['version']} unsupported or a broken install)"
            )
    return install


def backend_dir(config: StackConfig, install: TritonInstall) -> Path:
    """``<state_dir>/triton/backends/python/`` made of symlinks into the wheel."""
    root = config.state_dir / "triton" / "backends"
    python_dir = root / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for target in install.backend_files:
        link = python_dir / target.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    return root


def server_env(install: TritonInstall) -> dict[str, str]:
    # The interpreter's own libpython before the wheel's libs (and any system one), or the
    # stub mixes Debian's libpython with this interpreter's standard library.
    ld_path = [str(install.python_libdir), str(install.wheel_libs)]
    path = [str(install.python_bin_dir)]
    for var, head in (("LD_LIBRARY_PATH", ld_path), ("PATH", path)):
        if os.environ.get(var):
            head.append(os.environ[var])
    return {"LD_LIBRARY_PATH": ":".join(ld_path), "PATH": ":".join(path)}


def server_argv(config: StackConfig, install: TritonInstall, backends: Path) -> list[str]:
    # Servers side by side (tests) must not share the Python backend's shm regions.
    shm_prefix = f"revisit_{config.triton_http_port}_{secrets.token_hex(4)}_"
    return [
        str(install.server),
        f"--model-repository={config.triton_model_repository}",
        f"--backend-directory={backends}",
        "--http-address=127.0.0.1",
        f"--http-port={config.triton_http_port}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={config.triton_grpc_port}",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={config.triton_metrics_port}",
        "--allow-gpu-metrics=false",
        "--pinned-memory-pool-byte-size=0",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        "--model-control-mode=explicit",
        "--load-model=*",
        "--strict-readiness=true",
        "--exit-on-error=true",
    ]


def process(config: StackConfig) -> ManagedProcess:
    return ManagedProcess.attach(NAME, config.state_dir)


def start(config: StackConfig) -> ManagedProcess:
    """Assemble the backend directory and spawn tritonserver."""
    repo = config.triton_model_repository
    if not repo.is_dir():
        raise StackError(
            f"triton: model repository {repo} does not exist; create it or set "
            f"triton_model_repository (env REVISIT_TRITON_MODEL_REPOSITORY)"
        )
    for port, setting in (
        (config.triton_http_port, "triton_http_port"),
        (config.triton_grpc_port, "triton_grpc_port"),
        (config.triton_metrics_port, "triton_metrics_port"),
    ):
        ensure_port_free(port, setting)
    install = locate(config)
    backends = backend_dir(config, install)
    proc = ManagedProcess(
        NAME,
        server_argv(config, install, backends),
        server_env(install),
        config.state_dir / "triton",
        config.state_dir,
    )
    proc.start()
    return proc


def is_healthy(config: StackConfig) -> bool:
    """``GET /v2/health/ready`` answers 200 (all models loaded, with strict readiness)."""
    return http_ok(f"{config.triton_http_url}/v2/health/ready")


def model_ready(config: StackConfig, model: str) -> bool:
    return http_ok(f"{config.triton_http_url}/v2/models/{model}/ready")
