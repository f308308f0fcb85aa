"""Writes docker/requirements/<image>.txt: the pinned distributions each image installs.

An image installs, with `pip install --no-deps`, the closure of the requirements.in
entries its code imports, at the versions of requirements.lock, so that the service
images carry no torch, no training and no test tooling. Run after `make lock`:

    python docker/requirements.py          # rewrite the files
    python docker/requirements.py --check  # exit 1 when a file is stale (the tests do this)

The closure is read from the installed distributions' metadata (the project venv, which
`make install` builds from requirements.lock on Linux x86_64, Python 3.11: the platform
of the images).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docker" / "requirements"

#: image -> the service packages (services/<dir>) whose imports it must satisfy.
IMAGES: dict[str, tuple[str, ...]] = {
    "catalog": ("common", "catalog"),
    "preprocess": ("common", "preprocess"),
    "inference": ("common", "inference"),
    "store": ("common", "store"),
    # the `revisit` command (migrations, demo data, models build, backfills): everything
    # but the embedded stack's Triton wheel; torch comes from the CPU wheel index.
    "tools": ("common", "models", "catalog", "preprocess", "inference", "store", "cli"),
}
#: requirements.in entries never installed in an image (tests, linters, the embedded
#: stack's tritonserver binary, code generation).
TOOLING = {
    "pytest",
    "pytest-timeout",
    "moto",
    "ruff",
    "mypy",
    "types-protobuf",
    "types-pyyaml",
    "mypy-protobuf",
    "nvidia-pytriton",
    "grpcio-tools",
}
#: torch's CUDA wheels: the images install the CPU build (tools) or Triton brings CUDA.
GPU_ONLY = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")
#: drivers loaded by URL scheme, never imported: the database URL's psycopg, the payload
#: store's s3:// filesystem.
PLUGINS = {"sqlalchemy": "psycopg[binary]", "fsspec": "s3fs"}


def direct_requirements() -> list[Requirement]:
    lines = (ROOT / "requirements.in").read_text().splitlines()
    reqs = [Requirement(line.split("#")[0].strip()) for line in lines if line.split("#")[0].strip()]
    return [r for r in reqs if canonicalize_name(r.name) not in TOOLING]


def lock_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def imported_modules(dirs: tuple[str, ...]) -> set[str]:
    """Top-level names imported anywhere in the packages (lazy imports included)."""
    names: set[str] = set()
    for d in dirs:
        for path in (ROOT / "services" / d).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    return names


def closure(roots: list[Requirement]) -> set[str]:
    """Every distribution the roots need on this platform (markers evaluated here)."""
    seen: set[str] = set()
    todo = [(r, frozenset(r.extras)) for r in roots]
    done_extras: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if GPU_ONLY.match(name) or (name, extras) in done_extras:
            continue
        done_extras.add((name, extras))
        seen.add(name)
        for spec in metadata.requires(req.name) or []:
            child = Requirement(spec)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if child.marker is None or any(child.marker.evaluate(env) for env in envs):
                todo.append((child, frozenset(child.extras)))
    return seen


def image_requirements(image: str) -> list[str]:
    modules = imported_modules(IMAGES[image])
    provides = metadata.packages_distributions()
    imported_dists = {canonicalize_name(d) for m in modules for d in provides.get(m, [])}
    pins = lock_pins()
    direct = {canonicalize_name(r.name): r for r in direct_requirements()}
    for dist, plugin in PLUGINS.items():
        if dist in imported_dists:
            imported_dists.add(canonicalize_name(Requirement(plugin).name))
            direct.setdefault(canonicalize_name(Requirement(plugin).name), Requirement(plugin))
    # a direct entry keeps its extras; an imported dependency of one is a root of its own
    roots = [
        direct.get(d) or Requirement(d) for d in sorted(imported_dists) if d in pins
    ]  # pip freeze leaves out pip's own setuptools: take the venv's
    return [f"{n}=={pins.get(n) or metadata.version(n)}" for n in sorted(closure(roots))]


def render(image: str) -> str:
    header = (
        f"# {image} image: pinned closure of what services/{{{','.join(IMAGES[image])}}} "
        "imports,\n# at requirements.lock's versions. Generated by docker/requirements.py; "
        "do not edit.\n"
    )
    return header + "\n".join(image_requirements(image)) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a file is stale")
    args = parser.parse_args()
    stale = []
    for image in IMAGES:
        path = OUT / f"{image}.txt"
        text = render(image)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text)
    if stale:
        print("stale (run python docker/requirements.py):", *stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
