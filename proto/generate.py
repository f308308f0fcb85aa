"""Generate the Python code of proto/ into services/common/revisit_common/ (`make proto`).

`python proto/generate.py --check` exits 1 when the committed generated code differs from
what the schemas produce now (the unit tests run it, so a stale file fails CI).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = [Path("revisit/events/v1/events.proto")]
TARGET = ROOT / "services/common/revisit_common"


def generate(out_dir: Path) -> list[Path]:
    """Run protoc for every schema; return the generated files (flattened into out_dir)."""
    include = str(resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        for schema in SCHEMAS:
            code = protoc.main(
                [
                    "protoc",
                    f"-I{ROOT / 'proto'}",
                    f"-I{include}",
                    f"--python_out={tmp}",
                    f"--pyi_out={tmp}",
                    str(ROOT / "proto" / schema),
                ]
            )
            if code != 0:
                raise SystemExit(f"protoc failed on {schema} (exit {code})")
        produced = []
        for path in sorted(Path(tmp).rglob("*_pb2.py*")):
            dest = out_dir / path.name
            shutil.copyfile(path, dest)
            produced.append(dest)
    return produced


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    args = parser.parse_args()
    if not args.check:
        for path in generate(TARGET):
            print(f"generated {path.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        stale = [
            p.name
            for p in generate(Path(tmp))
            if not (TARGET / p.name).exists() or not filecmp.cmp(p, TARGET / p.name, False)
        ]
    if stale:
        print(f"generated protobuf code is stale: {', '.join(stale)}; run `make proto`")
        return 1
    print("generated protobuf code is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
