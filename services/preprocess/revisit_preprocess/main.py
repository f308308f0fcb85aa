"""Entry point of the preprocess service: `python -m revisit_preprocess`."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Engine, create_engine

from revisit_common import events_pb2 as pb
from revisit_common.db.errors import database_errors
from revisit_common.db.parcels import parcels_in
from revisit_common.db.units import units_of
from revisit_common.events import OBSERVATIONS_TOPIC, SCENES_TOPIC
from revisit_common.payload import payload_store_from_settings
from revisit_common.runtime import Output, ServiceApp, Stage, configure_logging
from revisit_common.settings import ServiceSettings
from revisit_preprocess.handler import PRODUCER, ParcelSource, UnitSource, handle_scene
from revisit_preprocess.lcz import LczGrid
from revisit_preprocess.pixelsets import Parcel, PixelSetConfig


class PreprocessSettings(ServiceSettings):
    """Preprocess settings (plus those of `ServiceSettings`). Environment variables:

    - ``REVISIT_DATABASE_URL``: PostGIS, where the parcels of `parcels` AOIs and the area
      units of `region` AOIs are read.
    - ``REVISIT_LCZ_STRIDE_PX``: pixels between LCZ patch origins (32: no overlap;
      10: one label per 100 m, as the So2Sat map production).
    - ``REVISIT_LCZ_MIN_VALID_FRACTION``: share of valid pixels a patch needs.
    - ``REVISIT_PARCEL_PIXELS``: pixels sampled per parcel and pass (PSE-TAE's S).
    - ``REVISIT_PARCEL_BLOCK_PX``: parcels are read by blocks of this many 10 m pixels.
    """

    database_url: str = "postgresql+psycopg://revisit@127.0.0.1:15432/revisit"
    lcz_stride_px: int = 32
    lcz_min_valid_fraction: float = 1.0
    parcel_pixels: int = 64
    parcel_block_px: int = 1024


def database_parcels(engine: Engine) -> ParcelSource:
    """The parcels of an AOI under a scene footprint, from PostGIS."""

    def fetch(aoi: str, footprint_wkt: str) -> list[Parcel]:
        with database_errors():
            rows = parcels_in(engine, aoi, footprint_wkt)
        return [Parcel(pid, geom) for pid, geom in rows]

    return fetch


def database_units(engine: Engine) -> UnitSource:
    """The area units of a region AOI, from PostGIS."""

    def fetch(aoi: str) -> list[tuple[str, BaseGeometry]]:
        with database_errors():
            return units_of(engine, aoi)

    return fetch


#: What became of a scene: observations with valid pixels; none (clouds, no data,
#: reflectance out of range, the AOI off the rasters: the pass is stored as
#: `no_valid_observation`); or no product for this sensor and AOI kind (skipped).
OUTCOMES = ("observed", "no_valid_observation", "no_product")


def counted(
    handle: Callable[[pb.SceneDiscovered], list[Output]], registry: CollectorRegistry
) -> Callable[[pb.SceneDiscovered], list[Output]]:
    """`handle`, counting each scene's outcome in `revisit_preprocess_scenes_total`."""
    scenes = Counter(
        "revisit_preprocess_scenes",
        "Scenes preprocessed, by outcome (observed, no_valid_observation, no_product).",
        ["outcome"],
        registry=registry,
    )
    for outcome in OUTCOMES:
        scenes.labels(outcome)

    def process(scene: pb.SceneDiscovered) -> list[Output]:
        outputs = handle(scene)
        batches = [o.event for o in outputs if isinstance(o.event, pb.ObservationBatch)]
        if not batches:
            scenes.labels("no_product").inc()
        elif all(b.no_valid_observation for b in batches):
            scenes.labels("no_valid_observation").inc()
        else:
            scenes.labels("observed").inc()
        return outputs

    return process


def main() -> None:
    settings = PreprocessSettings()
    configure_logging(settings.log_level)
    app = ServiceApp("preprocess", settings)
    app.install_signal_handlers()
    store = payload_store_from_settings(settings, PRODUCER)
    grid = LczGrid(
        stride_px=settings.lcz_stride_px, min_valid_fraction=settings.lcz_min_valid_fraction
    )
    engine = create_engine(settings.database_url, pool_pre_ping=True)
    parcels, units = database_parcels(engine), database_units(engine)
    pixel_sets = PixelSetConfig(settings.parcel_pixels, settings.parcel_block_px)
    app.metrics.topics(produced=(OBSERVATIONS_TOPIC,))
    app.consume(
        Stage(
            service="preprocess",
            input_topic=SCENES_TOPIC,
            event_type=pb.SceneDiscovered,
            process=counted(
                lambda scene: handle_scene(scene, store, grid, parcels, pixel_sets, units),
                app.registry,
            ),
        )
    )


if __name__ == "__main__":
    main()
