"""One-shot set-up jobs of the compose stack, run in the revisit-tools image.

- ``topics``: create the topics of infra/kafka/topics.yaml on REVISIT_KAFKA_BOOTSTRAP
  (idempotent: existing topics are kept, partitions only grow).
- ``demo``: write the demo's static STAC catalog and Cloud-Optimized GeoTIFFs into
  REVISIT_DEMO_DIR (/demo), then migrate the schema and save the demo AOIs and parcels
  into REVISIT_DATABASE_URL (the schema owner's URL), as `revisit demo` does on the
  embedded stack.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from revisit_cli.demo import prepare_database
from revisit_cli.demo_data import build_catalog
from revisit_cli.services import ServicesConfig
from revisit_cli.stack import REPO_ROOT, ensure_topics, load_topics


def main(argv: list[str]) -> int:
    job = argv[0] if argv else ""
    if job == "topics":
        specs = load_topics(REPO_ROOT / "infra" / "kafka" / "topics.yaml")
        created = ensure_topics(os.environ["REVISIT_KAFKA_BOOTSTRAP"], specs)
        print(f"topics created: {', '.join(created) or 'none, all there'}")
        return 0
    if job == "demo":
        catalog = build_catalog(Path(os.environ.get("REVISIT_DEMO_DIR", "/demo")))
        print(f"demo catalog: {catalog}")
        for line in prepare_database(os.environ["REVISIT_DATABASE_URL"], ServicesConfig()):
            print(line)
        return 0
    print("usage: setup_stack.py topics|demo", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
