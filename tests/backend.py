"""The project's Triton Python-backend runner (infra/triton/backend/model.py) imported
outside Triton, for its process settings. `triton_python_backend_utils` exists only in a
Triton stub; the functions used here do not touch it, so an empty module stands in."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

BACKEND = Path(__file__).resolve().parents[1] / "infra" / "triton" / "backend" / "model.py"


def load_backend() -> types.ModuleType:
    sys.modules.setdefault("triton_python_backend_utils", types.ModuleType("pb_utils_stand_in"))
    spec = importlib.util.spec_from_file_location("revisit_triton_backend", BACKEND)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
