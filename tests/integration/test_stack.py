"""The embedded stack for real: Kafka, PostgreSQL + PostGIS and Triton on free ports."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from revisit_cli.stack import (
    COMPONENTS,
    ManagedProcess,
    StackConfig,
    down,
    load_topics,
    status,
    up,
)
from revisit_cli.stack import kafka as stack_kafka
from revisit_cli.stack import triton as stack_triton
from tests.conftest import stack_config_on_free_ports

pytestmark = pytest.mark.integration

_IDENTITY_CONFIG = """
name: "identity"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
instance_group [ { kind: KIND_CPU, count: 1 } ]
"""

_IDENTITY_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out = pb_utils.Tensor("OUTPUT0", x)
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""


def _missing_prerequisites() -> list[str]:
    missing = [p for p in ("java", "runuser") if shutil.which(p) is None]
    if not Path("/usr/lib/postgresql/15/bin/postgres").exists():
        missing.append("postgresql-15")
    try:
        stack_triton.locate(StackConfig())
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable Triton here
        missing.append(f"nvidia-pytriton ({exc})")
    return missing


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not tmp_path: /tmp/pytest-of-root is 0700 and the `postgres` user must traverse it.
    path = Path(tempfile.mkdtemp(prefix="revisit-stack-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def model_repository(state_dir: Path) -> Path:
    repo = state_dir / "models"
    (repo / "identity" / "1").mkdir(parents=True)
    (repo / "identity" / "config.pbtxt").write_text(textwrap.dedent(_IDENTITY_CONFIG))
    (repo / "identity" / "1" / "model.py").write_text(textwrap.dedent(_IDENTITY_MODEL))
    return repo


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.timeout(900)
def test_stack_up_status_down(state_dir: Path, model_repository: Path) -> None:
    missing = _missing_prerequisites()
    assert not missing, f"embedded stack prerequisites missing: {missing}: run `make install`"
    config = stack_config_on_free_ports(
        state_dir / "state",
        triton_model_repository=model_repository,
        python=Path(sys.executable),
        startup_timeout_s=180,
    )
    lines: list[str] = []
    try:
        times = up(config, progress=lines.append)
        print("startup seconds:", times)
        assert set(times) == set(COMPONENTS)

        st = status(config)
        for name in COMPONENTS:
            assert st[name].running and st[name].healthy, st[name]
            assert st[name].pid is not None

        # PostgreSQL: the app role reaches its database, with PostGIS.
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=config.postgres_port, user="revisit", dbname="revisit"
        ) as conn:
            row = conn.execute("SELECT postgis_version(), current_user").fetchone()
        assert row is not None and row[1] == "revisit" and row[0]

        # Kafka: every topic of topics.yaml exists with its partition count.
        specs = load_topics(config.kafka_topics_file)
        described = stack_kafka.partition_counts(config.kafka_bootstrap, [s.name for s in specs])
        assert described == {s.name: s.partitions for s in specs}
        assert stack_kafka.ensure_topics(config.kafka_bootstrap, specs) == []  # idempotent

        # Triton: server and model ready, and the model answers.
        assert stack_triton.model_ready(config, "identity")
        body = json.dumps(
            {"inputs": [{"name": "INPUT0", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]}]}
        ).encode()
        request = urllib.request.Request(
            f"{config.triton_http_url}/v2/models/identity/infer",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            answer = json.loads(resp.read())
        assert answer["outputs"][0]["data"] == [1.0, 2.0, 3.0]

        # A second `up` starts nothing.
        assert up(config, progress=lines.append) == dict.fromkeys(COMPONENTS, 0.0)

        # A service started the way the lead's services are: `down` must stop it too.
        service = ManagedProcess("demo-service", ["sleep", "600"], None, None, config.state_dir)
        service.start()

        pids = {
            name: ManagedProcess.attach(name, config.state_dir).alive_members()
            for name in (*COMPONENTS, "demo-service")
        }
        assert all(pids.values()), pids
    finally:
        stopped = down(config, progress=lines.append)
    print(*lines, sep="\n")
    assert set(stopped) == {*COMPONENTS, "demo-service"}
    left = [pid for group in pids.values() for pid in group if _alive(pid)]
    assert left == []
    assert not list((config.state_dir / "run").glob("*.pid"))
    assert not any(s.running for s in status(config).values())
    assert os.path.isfile(config.log_file("kafka"))
