"""Entry point of the inference service: `python -m revisit_inference`."""

from __future__ import annotations

from revisit_common import events_pb2 as pb
from revisit_common.events import OBSERVATIONS_TOPIC
from revisit_common.payload import payload_store_from_settings
from revisit_common.runtime import ServiceApp, Stage, configure_logging
from revisit_common.settings import ServiceSettings
from revisit_inference.handler import handle_observation
from revisit_inference.triton import TritonClassifier


class InferenceSettings(ServiceSettings):
    """Inference settings (plus those of `ServiceSettings`). Environment variables:

    - ``REVISIT_TRITON_GRPC_URL``: Triton's gRPC endpoint, ``host:port``.
    - ``REVISIT_LCZ_MODEL`` / ``REVISIT_LCZ_MODEL_VERSION``: the Triton model (empty
      version: the one Triton serves as latest).
    - ``REVISIT_TRITON_TIMEOUT_S``: per request.
    """

    triton_grpc_url: str = "127.0.0.1:18001"
    lcz_model: str = "lcz_sen2lcz_drop"
    lcz_model_version: str = ""
    triton_timeout_s: float = 30.0


def main() -> None:
    settings = InferenceSettings()
    configure_logging(settings.log_level)
    app = ServiceApp("inference", settings)
    app.install_signal_handlers()
    store = payload_store_from_settings(settings, "inference")
    # Inference reads the payloads last: it applies REVISIT_PAYLOAD_RETENTION_DAYS.
    store.start_sweeper(app.stop)
    lcz = TritonClassifier(
        settings.triton_grpc_url,
        settings.lcz_model,
        settings.lcz_model_version,
        timeout_s=settings.triton_timeout_s,
    )
    app.consume(
        Stage(
            service="inference",
            input_topic=OBSERVATIONS_TOPIC,
            event_type=pb.ObservationBatch,
            process=lambda batch: handle_observation(batch, store, lcz),
        )
    )


if __name__ == "__main__":
    main()
