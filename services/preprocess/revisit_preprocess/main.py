"""Entry point of the preprocess service: `python -m revisit_preprocess`."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine

from revisit_common import events_pb2 as pb
from revisit_common.db.errors import database_errors
from revisit_common.db.parcels import parcels_in
from revisit_common.events import OBSERVATIONS_TOPIC, SCENES_TOPIC
from revisit_common.payload import payload_store_from_settings
from revisit_common.runtime import ServiceApp, Stage, configure_logging
from revisit_common.settings import ServiceSettings
from revisit_preprocess.handler import PRODUCER, ParcelSource, handle_scene
from revisit_preprocess.lcz import LczGrid
from revisit_preprocess.pixelsets import Parcel, PixelSetConfig


class PreprocessSettings(ServiceSettings):
    """Preprocess settings (plus those of `ServiceSettings`). Environment variables:

    - ``REVISIT_DATABASE_URL``: PostGIS, where the parcels of `parcels` AOIs are read.
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


def main() -> None:
    settings = PreprocessSettings()
    configure_logging(settings.log_level)
    app = ServiceApp("preprocess", settings)
    app.install_signal_handlers()
    store = payload_store_from_settings(settings, PRODUCER)
    grid = LczGrid(
        stride_px=settings.lcz_stride_px, min_valid_fraction=settings.lcz_min_valid_fraction
    )
    parcels = database_parcels(create_engine(settings.database_url, pool_pre_ping=True))
    pixel_sets = PixelSetConfig(settings.parcel_pixels, settings.parcel_block_px)
    app.metrics.topics(produced=(OBSERVATIONS_TOPIC,))
    app.consume(
        Stage(
            service="preprocess",
            input_topic=SCENES_TOPIC,
            event_type=pb.SceneDiscovered,
            process=lambda scene: handle_scene(scene, store, grid, parcels, pixel_sets),
        )
    )


if __name__ == "__main__":
    main()
