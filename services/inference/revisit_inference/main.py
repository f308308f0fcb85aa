"""Entry point of the inference service: `python -m revisit_inference`."""

from __future__ import annotations

from pathlib import Path

from revisit_common import events_pb2 as pb
from revisit_common.cards import load_card
from revisit_common.events import OBSERVATIONS_TOPIC, PREDICTIONS_TOPIC
from revisit_common.payload import payload_store_from_settings
from revisit_common.runtime import ServiceApp, Stage, configure_logging
from revisit_common.settings import ServiceSettings
from revisit_inference.drift import DriftMetrics
from revisit_inference.handler import (
    handle_observation,
    handle_observations,
    start_revision_series,
)
from revisit_inference.served import MERGE_BYTES, ServedModel
from revisit_inference.triton import TritonClassifier, TritonModel


class InferenceSettings(ServiceSettings):
    """Inference settings (plus those of `ServiceSettings`). Environment variables:

    - ``REVISIT_TRITON_GRPC_URL``: Triton's gRPC endpoint, ``host:port``.
    - ``REVISIT_LCZ_MODEL`` / ``REVISIT_LCZ_MODEL_VERSION``: the Triton model (empty
      version: the one Triton serves as latest).
    - ``REVISIT_TRITON_TIMEOUT_S``: per request.
    - ``REVISIT_TRITON_CONCURRENCY``: requests of one call in flight at once [4].
    - ``REVISIT_CROP_MODEL`` / ``REVISIT_CROP_MODEL_VERSION``: the crop-type model of
      "parcels" AOIs, on each Sentinel-2 pass (empty model: parcels are not predicted).
    - ``REVISIT_CROP_FUSION_MODEL`` / ``REVISIT_CROP_FUSION_MODEL_VERSION``: the S1+S2
      crop-type model, on each Sentinel-1 pass of "parcels" AOIs watched with a
      Sentinel-1 collection (empty model: not predicted).
    - ``REVISIT_BIOPHYS_MODEL`` / ``REVISIT_BIOPHYS_MODEL_VERSION``: LAI, CCC, FCOVER of
      "region" AOIs (empty model: not predicted).
    - ``REVISIT_LANDCOVER_MODEL`` / ``REVISIT_LANDCOVER_MODEL_VERSION``: land-cover
      fractions of "region" AOIs (empty model: not predicted).
    - ``REVISIT_INFERENCE_MERGE_BYTES``: the calls of a poll's events to one model are
      merged; their inputs are answered whenever they reach this size [256 MiB].
    - ``REVISIT_MODEL_REPOSITORY``: the model repository built by `revisit models build`
      (the service reads each model's card there: classes, training statistics).
    """

    triton_grpc_url: str = "127.0.0.1:18001"
    lcz_model: str = "lcz_sen2lcz_drop"
    lcz_model_version: str = ""
    triton_timeout_s: float = 30.0
    triton_concurrency: int = 4
    crop_model: str = "psetae_s2"
    crop_model_version: str = ""
    crop_fusion_model: str = "psetae_s1s2"
    crop_fusion_model_version: str = ""
    biophys_model: str = "biophys_prosail"
    biophys_model_version: str = ""
    landcover_model: str = "landcover_tae"
    landcover_model_version: str = ""
    inference_merge_bytes: int = MERGE_BYTES
    model_repository: Path = Path(__file__).resolve().parents[3] / "infra" / "triton" / "models"


def served_model(settings: InferenceSettings, name: str, version: str) -> ServedModel | None:
    """The Triton client of a configured model and its card from the model repository
    (empty version: the highest version directory; empty name: not configured)."""
    if not name:
        return None
    home = settings.model_repository / name
    card_version = version
    if not version:  # Triton serves the latest: read that version's card
        versions = sorted(int(p.name) for p in home.glob("[0-9]*") if p.is_dir())
        if not versions:
            raise SystemExit(f"no version of {name} in {home.parent}: run `revisit models build`")
        card_version = str(versions[-1])
    try:
        card = load_card(home / card_version)
    except FileNotFoundError as exc:
        raise SystemExit(f"{exc}: run `revisit models build`") from exc
    model = TritonModel.for_card(
        settings.triton_grpc_url,
        card,
        model_version=version,
        timeout_s=settings.triton_timeout_s,
        concurrency=settings.triton_concurrency,
    )
    return ServedModel(model, card)


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
        concurrency=settings.triton_concurrency,
    )
    crops = served_model(settings, settings.crop_model, settings.crop_model_version)
    bio = served_model(settings, settings.biophys_model, settings.biophys_model_version)
    land = served_model(settings, settings.landcover_model, settings.landcover_model_version)
    fusion = served_model(settings, settings.crop_fusion_model, settings.crop_fusion_model_version)
    drift = DriftMetrics()
    start_revision_series(m.name for m in (crops, fusion) if m is not None)
    app.metrics.topics(produced=(PREDICTIONS_TOPIC,))
    app.consume(
        Stage(
            service="inference",
            input_topic=OBSERVATIONS_TOPIC,
            event_type=pb.ObservationBatch,
            process=lambda batch: handle_observation(
                batch, store, lcz, crops, drift, bio, land, fusion
            ),
            # the LCZ patches of a poll's batches (up to REVISIT_MAX_POLL_RECORDS) together
            process_many=lambda batches: handle_observations(
                batches, store, lcz, crops, drift, bio, land, fusion, settings.inference_merge_bytes
            ),
        )
    )


if __name__ == "__main__":
    main()
