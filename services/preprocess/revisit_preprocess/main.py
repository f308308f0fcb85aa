"""Entry point of the preprocess service: `python -m revisit_preprocess`."""

from __future__ import annotations

from revisit_common import events_pb2 as pb
from revisit_common.events import SCENES_TOPIC
from revisit_common.payload import LocalPayloadStore
from revisit_common.runtime import ServiceApp, Stage, configure_logging
from revisit_common.settings import ServiceSettings
from revisit_preprocess.handler import handle_scene
from revisit_preprocess.lcz import LczGrid


class PreprocessSettings(ServiceSettings):
    """Preprocess settings (plus those of `ServiceSettings`). Environment variables:

    - ``REVISIT_LCZ_STRIDE_PX``: pixels between LCZ patch origins (32: no overlap;
      10: one label per 100 m, as the So2Sat map production).
    - ``REVISIT_LCZ_MIN_VALID_FRACTION``: share of valid pixels a patch needs.
    """

    lcz_stride_px: int = 32
    lcz_min_valid_fraction: float = 1.0


def main() -> None:
    settings = PreprocessSettings()
    configure_logging(settings.log_level)
    app = ServiceApp("preprocess", settings)
    app.install_signal_handlers()
    store = LocalPayloadStore(settings.payload_dir)
    grid = LczGrid(
        stride_px=settings.lcz_stride_px, min_valid_fraction=settings.lcz_min_valid_fraction
    )
    app.consume(
        Stage(
            service="preprocess",
            input_topic=SCENES_TOPIC,
            event_type=pb.SceneDiscovered,
            process=lambda scene: handle_scene(scene, store, grid),
        )
    )


if __name__ == "__main__":
    main()
