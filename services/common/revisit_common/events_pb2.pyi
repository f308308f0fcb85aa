import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Header(_message.Message):
    __slots__ = ("event_id", "trace_id", "producer", "produced_at", "scene_id", "acquired_at", "discovered_at", "schema_revision", "stages")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    PRODUCED_AT_FIELD_NUMBER: _ClassVar[int]
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    ACQUIRED_AT_FIELD_NUMBER: _ClassVar[int]
    DISCOVERED_AT_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_REVISION_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    trace_id: str
    producer: str
    produced_at: _timestamp_pb2.Timestamp
    scene_id: str
    acquired_at: _timestamp_pb2.Timestamp
    discovered_at: _timestamp_pb2.Timestamp
    schema_revision: int
    stages: _containers.RepeatedCompositeFieldContainer[StageMark]
    def __init__(self, event_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., producer: _Optional[str] = ..., produced_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scene_id: _Optional[str] = ..., acquired_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., discovered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., schema_revision: _Optional[int] = ..., stages: _Optional[_Iterable[_Union[StageMark, _Mapping]]] = ...) -> None: ...

class StageMark(_message.Message):
    __slots__ = ("stage", "at")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    stage: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, stage: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Aoi(_message.Message):
    __slots__ = ("name", "kind", "geometry_wkt", "season_start", "season_end", "sensors")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    GEOMETRY_WKT_FIELD_NUMBER: _ClassVar[int]
    SEASON_START_FIELD_NUMBER: _ClassVar[int]
    SEASON_END_FIELD_NUMBER: _ClassVar[int]
    SENSORS_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    geometry_wkt: str
    season_start: str
    season_end: str
    sensors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., geometry_wkt: _Optional[str] = ..., season_start: _Optional[str] = ..., season_end: _Optional[str] = ..., sensors: _Optional[_Iterable[str]] = ...) -> None: ...

class BandAsset(_message.Message):
    __slots__ = ("band", "href", "scale", "offset", "nodata", "has_nodata", "quantity")
    BAND_FIELD_NUMBER: _ClassVar[int]
    HREF_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    NODATA_FIELD_NUMBER: _ClassVar[int]
    HAS_NODATA_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    band: str
    href: str
    scale: float
    offset: float
    nodata: float
    has_nodata: bool
    quantity: str
    def __init__(self, band: _Optional[str] = ..., href: _Optional[str] = ..., scale: _Optional[float] = ..., offset: _Optional[float] = ..., nodata: _Optional[float] = ..., has_nodata: _Optional[bool] = ..., quantity: _Optional[str] = ...) -> None: ...

class SceneDiscovered(_message.Message):
    __slots__ = ("header", "collection", "platform", "tile_id", "footprint_wkt", "cloud_cover", "processing_baseline", "reprocessed", "bands", "aoi", "acquisition_key", "sensor", "source", "item_href", "product_generated_at", "replaces_scene_id", "relative_orbit", "orbit_state", "view", "polarizations")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    TILE_ID_FIELD_NUMBER: _ClassVar[int]
    FOOTPRINT_WKT_FIELD_NUMBER: _ClassVar[int]
    CLOUD_COVER_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_BASELINE_FIELD_NUMBER: _ClassVar[int]
    REPROCESSED_FIELD_NUMBER: _ClassVar[int]
    BANDS_FIELD_NUMBER: _ClassVar[int]
    AOI_FIELD_NUMBER: _ClassVar[int]
    ACQUISITION_KEY_FIELD_NUMBER: _ClassVar[int]
    SENSOR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ITEM_HREF_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_GENERATED_AT_FIELD_NUMBER: _ClassVar[int]
    REPLACES_SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_ORBIT_FIELD_NUMBER: _ClassVar[int]
    ORBIT_STATE_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    POLARIZATIONS_FIELD_NUMBER: _ClassVar[int]
    header: Header
    collection: str
    platform: str
    tile_id: str
    footprint_wkt: str
    cloud_cover: float
    processing_baseline: str
    reprocessed: bool
    bands: _containers.RepeatedCompositeFieldContainer[BandAsset]
    aoi: Aoi
    acquisition_key: str
    sensor: str
    source: str
    item_href: str
    product_generated_at: _timestamp_pb2.Timestamp
    replaces_scene_id: str
    relative_orbit: int
    orbit_state: str
    view: ViewGeometry
    polarizations: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., collection: _Optional[str] = ..., platform: _Optional[str] = ..., tile_id: _Optional[str] = ..., footprint_wkt: _Optional[str] = ..., cloud_cover: _Optional[float] = ..., processing_baseline: _Optional[str] = ..., reprocessed: _Optional[bool] = ..., bands: _Optional[_Iterable[_Union[BandAsset, _Mapping]]] = ..., aoi: _Optional[_Union[Aoi, _Mapping]] = ..., acquisition_key: _Optional[str] = ..., sensor: _Optional[str] = ..., source: _Optional[str] = ..., item_href: _Optional[str] = ..., product_generated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., replaces_scene_id: _Optional[str] = ..., relative_orbit: _Optional[int] = ..., orbit_state: _Optional[str] = ..., view: _Optional[_Union[ViewGeometry, _Mapping]] = ..., polarizations: _Optional[_Iterable[str]] = ...) -> None: ...

class ViewGeometry(_message.Message):
    __slots__ = ("sun_zenith", "sun_azimuth", "view_zenith", "view_azimuth")
    SUN_ZENITH_FIELD_NUMBER: _ClassVar[int]
    SUN_AZIMUTH_FIELD_NUMBER: _ClassVar[int]
    VIEW_ZENITH_FIELD_NUMBER: _ClassVar[int]
    VIEW_AZIMUTH_FIELD_NUMBER: _ClassVar[int]
    sun_zenith: float
    sun_azimuth: float
    view_zenith: float
    view_azimuth: float
    def __init__(self, sun_zenith: _Optional[float] = ..., sun_azimuth: _Optional[float] = ..., view_zenith: _Optional[float] = ..., view_azimuth: _Optional[float] = ...) -> None: ...

class ArrayRef(_message.Message):
    __slots__ = ("key", "dtype", "shape", "sha256")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    key: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    sha256: str
    def __init__(self, key: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., sha256: _Optional[str] = ...) -> None: ...

class LczPatch(_message.Message):
    __slots__ = ("cell_id", "cell_wkt", "valid_fraction")
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    CELL_WKT_FIELD_NUMBER: _ClassVar[int]
    VALID_FRACTION_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    cell_wkt: str
    valid_fraction: float
    def __init__(self, cell_id: _Optional[str] = ..., cell_wkt: _Optional[str] = ..., valid_fraction: _Optional[float] = ...) -> None: ...

class ObservationBatch(_message.Message):
    __slots__ = ("header", "tile_id", "aoi", "kind", "epsg", "patches", "lcz_patches", "no_valid_observation", "notes", "parcels", "region")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TILE_ID_FIELD_NUMBER: _ClassVar[int]
    AOI_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    EPSG_FIELD_NUMBER: _ClassVar[int]
    PATCHES_FIELD_NUMBER: _ClassVar[int]
    LCZ_PATCHES_FIELD_NUMBER: _ClassVar[int]
    NO_VALID_OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    PARCELS_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    header: Header
    tile_id: str
    aoi: Aoi
    kind: str
    epsg: int
    patches: ArrayRef
    lcz_patches: _containers.RepeatedCompositeFieldContainer[LczPatch]
    no_valid_observation: bool
    notes: _containers.RepeatedScalarFieldContainer[str]
    parcels: ParcelObservation
    region: RegionPixels
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., tile_id: _Optional[str] = ..., aoi: _Optional[_Union[Aoi, _Mapping]] = ..., kind: _Optional[str] = ..., epsg: _Optional[int] = ..., patches: _Optional[_Union[ArrayRef, _Mapping]] = ..., lcz_patches: _Optional[_Iterable[_Union[LczPatch, _Mapping]]] = ..., no_valid_observation: _Optional[bool] = ..., notes: _Optional[_Iterable[str]] = ..., parcels: _Optional[_Union[ParcelObservation, _Mapping]] = ..., region: _Optional[_Union[RegionPixels, _Mapping]] = ...) -> None: ...

class ParcelObservation(_message.Message):
    __slots__ = ("parcel_ids", "values", "n_valid", "geomfeat", "channels", "value_scale", "day_of_year", "season", "series_key", "series_length", "parcels_in_scene", "parcels_observed", "view", "season_series", "later_passes")
    PARCEL_IDS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    N_VALID_FIELD_NUMBER: _ClassVar[int]
    GEOMFEAT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    VALUE_SCALE_FIELD_NUMBER: _ClassVar[int]
    DAY_OF_YEAR_FIELD_NUMBER: _ClassVar[int]
    SEASON_FIELD_NUMBER: _ClassVar[int]
    SERIES_KEY_FIELD_NUMBER: _ClassVar[int]
    SERIES_LENGTH_FIELD_NUMBER: _ClassVar[int]
    PARCELS_IN_SCENE_FIELD_NUMBER: _ClassVar[int]
    PARCELS_OBSERVED_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    SEASON_SERIES_FIELD_NUMBER: _ClassVar[int]
    LATER_PASSES_FIELD_NUMBER: _ClassVar[int]
    parcel_ids: ArrayRef
    values: ArrayRef
    n_valid: ArrayRef
    geomfeat: ArrayRef
    channels: _containers.RepeatedScalarFieldContainer[str]
    value_scale: float
    day_of_year: int
    season: str
    series_key: str
    series_length: int
    parcels_in_scene: int
    parcels_observed: int
    view: ViewGeometry
    season_series: _containers.RepeatedCompositeFieldContainer[SeriesPasses]
    later_passes: int
    def __init__(self, parcel_ids: _Optional[_Union[ArrayRef, _Mapping]] = ..., values: _Optional[_Union[ArrayRef, _Mapping]] = ..., n_valid: _Optional[_Union[ArrayRef, _Mapping]] = ..., geomfeat: _Optional[_Union[ArrayRef, _Mapping]] = ..., channels: _Optional[_Iterable[str]] = ..., value_scale: _Optional[float] = ..., day_of_year: _Optional[int] = ..., season: _Optional[str] = ..., series_key: _Optional[str] = ..., series_length: _Optional[int] = ..., parcels_in_scene: _Optional[int] = ..., parcels_observed: _Optional[int] = ..., view: _Optional[_Union[ViewGeometry, _Mapping]] = ..., season_series: _Optional[_Iterable[_Union[SeriesPasses, _Mapping]]] = ..., later_passes: _Optional[int] = ...) -> None: ...

class SeriesPasses(_message.Message):
    __slots__ = ("series_key", "acquisition_keys")
    SERIES_KEY_FIELD_NUMBER: _ClassVar[int]
    ACQUISITION_KEYS_FIELD_NUMBER: _ClassVar[int]
    series_key: str
    acquisition_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, series_key: _Optional[str] = ..., acquisition_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class RegionPixels(_message.Message):
    __slots__ = ("reflectance", "valid", "indices", "bands", "index_names", "geotransform", "view", "valid_fraction", "season", "series_key", "series_length", "units", "unit_keys")
    REFLECTANCE_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    INDICES_FIELD_NUMBER: _ClassVar[int]
    BANDS_FIELD_NUMBER: _ClassVar[int]
    INDEX_NAMES_FIELD_NUMBER: _ClassVar[int]
    GEOTRANSFORM_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    VALID_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SEASON_FIELD_NUMBER: _ClassVar[int]
    SERIES_KEY_FIELD_NUMBER: _ClassVar[int]
    SERIES_LENGTH_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    UNIT_KEYS_FIELD_NUMBER: _ClassVar[int]
    reflectance: ArrayRef
    valid: ArrayRef
    indices: ArrayRef
    bands: _containers.RepeatedScalarFieldContainer[str]
    index_names: _containers.RepeatedScalarFieldContainer[str]
    geotransform: _containers.RepeatedScalarFieldContainer[float]
    view: ViewGeometry
    valid_fraction: float
    season: str
    series_key: str
    series_length: int
    units: ArrayRef
    unit_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, reflectance: _Optional[_Union[ArrayRef, _Mapping]] = ..., valid: _Optional[_Union[ArrayRef, _Mapping]] = ..., indices: _Optional[_Union[ArrayRef, _Mapping]] = ..., bands: _Optional[_Iterable[str]] = ..., index_names: _Optional[_Iterable[str]] = ..., geotransform: _Optional[_Iterable[float]] = ..., view: _Optional[_Union[ViewGeometry, _Mapping]] = ..., valid_fraction: _Optional[float] = ..., season: _Optional[str] = ..., series_key: _Optional[str] = ..., series_length: _Optional[int] = ..., units: _Optional[_Union[ArrayRef, _Mapping]] = ..., unit_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("entity_id", "geometry_wkt", "class_code", "confidence", "probabilities", "observations", "season_days", "values")
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    GEOMETRY_WKT_FIELD_NUMBER: _ClassVar[int]
    CLASS_CODE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    SEASON_DAYS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    geometry_wkt: str
    class_code: int
    confidence: float
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    observations: int
    season_days: int
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, entity_id: _Optional[str] = ..., geometry_wkt: _Optional[str] = ..., class_code: _Optional[int] = ..., confidence: _Optional[float] = ..., probabilities: _Optional[_Iterable[float]] = ..., observations: _Optional[int] = ..., season_days: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class PredictionBatch(_message.Message):
    __slots__ = ("header", "tile_id", "aoi", "indicator", "model_name", "model_version", "epsg", "predictions", "no_valid_observation", "notes", "classes", "season", "value_names", "revision")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TILE_ID_FIELD_NUMBER: _ClassVar[int]
    AOI_FIELD_NUMBER: _ClassVar[int]
    INDICATOR_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    EPSG_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    NO_VALID_OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    SEASON_FIELD_NUMBER: _ClassVar[int]
    VALUE_NAMES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    header: Header
    tile_id: str
    aoi: Aoi
    indicator: str
    model_name: str
    model_version: str
    epsg: int
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    no_valid_observation: bool
    notes: _containers.RepeatedScalarFieldContainer[str]
    classes: _containers.RepeatedScalarFieldContainer[str]
    season: str
    value_names: _containers.RepeatedScalarFieldContainer[str]
    revision: bool
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., tile_id: _Optional[str] = ..., aoi: _Optional[_Union[Aoi, _Mapping]] = ..., indicator: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., epsg: _Optional[int] = ..., predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., no_valid_observation: _Optional[bool] = ..., notes: _Optional[_Iterable[str]] = ..., classes: _Optional[_Iterable[str]] = ..., season: _Optional[str] = ..., value_names: _Optional[_Iterable[str]] = ..., revision: _Optional[bool] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("stage", "source_topic", "partition", "offset", "key", "value", "error_type", "error", "failed_at", "value_cut_from")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FAILED_AT_FIELD_NUMBER: _ClassVar[int]
    VALUE_CUT_FROM_FIELD_NUMBER: _ClassVar[int]
    stage: str
    source_topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    error_type: str
    error: str
    failed_at: _timestamp_pb2.Timestamp
    value_cut_from: int
    def __init__(self, stage: _Optional[str] = ..., source_topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., error_type: _Optional[str] = ..., error: _Optional[str] = ..., failed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value_cut_from: _Optional[int] = ...) -> None: ...
