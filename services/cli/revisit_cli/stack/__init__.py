"""The embedded stack: Kafka (KRaft), PostgreSQL + PostGIS and Triton on one machine.

``up(config)`` starts them as background processes under ``config.state_dir``,
``status(config)`` reports on them and ``down(config)`` stops every process recorded
there (including services started with :class:`ManagedProcess`).
"""

from .config import (
    REPO_ROOT,
    StackConfig,
    command_database_url,
    command_kafka_bootstrap,
    free_port,
    free_ports,
)
from .kafka import TopicSpec, ensure_topics, load_topics, partition_counts
from .process import (
    ManagedProcess,
    MissingDependencyError,
    PortInUseError,
    ProcessStatus,
    StackError,
    ensure_port_free,
    managed_names,
)
from .stack import COMPONENTS, ComponentStatus, Progress, down, format_status, status, up

__all__ = [
    "COMPONENTS",
    "REPO_ROOT",
    "ComponentStatus",
    "ManagedProcess",
    "MissingDependencyError",
    "PortInUseError",
    "ProcessStatus",
    "Progress",
    "StackConfig",
    "StackError",
    "TopicSpec",
    "command_database_url",
    "command_kafka_bootstrap",
    "down",
    "ensure_port_free",
    "ensure_topics",
    "format_status",
    "free_port",
    "free_ports",
    "load_topics",
    "managed_names",
    "partition_counts",
    "status",
    "up",
]
