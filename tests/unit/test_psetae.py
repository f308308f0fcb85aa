"""PSE-TAE: masks and padding, the dataset layout, the WorldCereal conversion, training."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from revisit_cli.stack import REPO_ROOT
from revisit_common.cards import load_card
from revisit_models.metrics import classification_report
from revisit_models.pixelset_data import DatasetError, collate, load_dataset, write_meta
from revisit_models.psetae import PseTae, PseTaeFusion
from revisit_models.train_psetae import legend, split, train_psetae
from revisit_models.worldcereal import s1_db
from tests.model_inputs import latest_version

WORLDCEREAL = REPO_ROOT / "data" / "worldcereal"


def _inputs(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b, t, c, s = 4, 9, 10, 16
    pixels = torch.rand(b, t, c, s, generator=g) * 0.4
    mask = (torch.rand(b, t, s, generator=g) > 0.3).float()
    mask[0, :, 1:] = 0  # a one-pixel set
    mask[1, 4:] = 0  # a season of 4 dates so far
    positions = torch.arange(t).float().expand(b, t) * 20
    return [pixels, mask, positions, torch.rand(b, 4, generator=g)]


def _padded(inputs: list[torch.Tensor], dates: int, pixels: int) -> list[torch.Tensor]:
    x, mask, positions, geom = inputs
    b, t, c, s = x.shape
    big = torch.full((b, t + dates, c, s + pixels), 0.7)  # padding values must not matter
    big[:, :t, :, :s] = x
    big_mask = torch.zeros(b, t + dates, s + pixels)
    big_mask[:, :t, :s] = mask
    big_positions = torch.cat([positions, torch.full((b, dates), 999.0)], dim=1)
    return [big, big_mask, big_positions, geom]


@pytest.mark.parametrize("scripted", [False, True])
def test_padding_dates_and_pixels_changes_nothing(scripted: bool) -> None:
    torch.manual_seed(0)
    model: torch.nn.Module = PseTae(num_classes=6).eval()
    if scripted:
        model = torch.jit.script(model)
    inputs = _inputs()
    expected = model(*inputs)
    assert torch.allclose(expected.sum(1), torch.ones(4))
    assert torch.allclose(model(*_padded(inputs, dates=5, pixels=7)), expected, atol=1e-6)


def test_masked_pixels_and_dates_are_ignored() -> None:
    torch.manual_seed(0)
    model = PseTae(num_classes=6).eval()
    inputs = _inputs()
    changed = [inputs[0].clone(), *inputs[1:]]
    changed[0][inputs[1].unsqueeze(2).expand_as(inputs[0]) == 0] = 5.0
    assert torch.allclose(model(*changed), model(*inputs), atol=1e-6)
    # a date observed changes the output: the mask is what decides
    more = [inputs[0], inputs[1].clone(), *inputs[2:]]
    more[1][1, 6] = 1.0
    assert not torch.allclose(model(*more)[1], model(*inputs)[1])


def test_pixel_sets_pool_to_the_mean_and_spread_of_their_observed_pixels() -> None:
    """The encoder pools only the observed rows (index_add); each date's vector must be
    what the paper defines: mean and std of the embedded pixels of that date's set."""
    torch.manual_seed(0)
    pse = PseTae(num_classes=6, use_geomfeat=False).eval().s2.pse
    pixels, mask, _, geom = _inputs()
    pooled: list[torch.Tensor] = []
    hook = pse.mlp2.mlp.register_forward_hook(lambda _m, args, _o: pooled.append(args[0]))
    with torch.no_grad():
        pse(pixels, mask, geom)
        hook.remove()
        rows = iter(pooled[0])  # the observed dates' pooled vectors, in (B, T) order
        for b, t in zip(*torch.nonzero(mask.sum(2) > 0, as_tuple=True), strict=True):
            observed = pixels[b, t][:, mask[b, t] > 0].T  # (n, C)
            embedded = pse.mlp1.mlp(pse.normalise(observed))
            std = embedded.std(0, unbiased=False) if len(observed) > 1 else embedded[0] * 0
            expected = torch.cat([embedded.mean(0), std])
            assert torch.allclose(next(rows), expected, atol=1e-4)
        assert next(rows, None) is None


@pytest.mark.parametrize("scripted", [False, True])
def test_inference_in_chunks_of_samples_gives_the_whole_batch_result(scripted: bool) -> None:
    torch.manual_seed(0)
    model = PseTae(num_classes=6).eval()
    inputs = _inputs()
    whole = model(*inputs)
    model.s2.pse.chunk_pixels = 1  # one sample a chunk
    run: torch.nn.Module = torch.jit.script(model) if scripted else model
    assert torch.allclose(run(*inputs), whole, atol=1e-6)


def test_fusion_without_sentinel1_is_the_optical_branch_alone() -> None:
    torch.manual_seed(0)
    model = PseTaeFusion(num_classes=5).eval()
    scripted = torch.jit.script(model)
    inputs = _inputs()
    s1 = torch.randn(4, 6, 5)
    valid = torch.ones(4, 6)
    valid[2] = 0  # parcel 2 has no Sentinel-1 pass yet
    positions = torch.arange(6).float().expand(4, 6) * 12
    out = scripted(*inputs, s1, valid, positions)
    assert torch.allclose(out, model(*inputs, s1, valid, positions), atol=1e-6)
    other = s1.clone()
    other[2] = 100.0  # values of a parcel without passes do not matter
    assert torch.allclose(scripted(*inputs, other, valid, positions)[2], out[2], atol=1e-6)
    other[0] += 3.0  # a parcel with passes: its backscatter counts
    assert not torch.allclose(scripted(*inputs, other, valid, positions)[0], out[0])


def test_a_feature_constant_in_training_is_held_at_its_training_value() -> None:
    """psetae_s1s2 was trained on one-pixel samples: their S1 spread is always 0. The
    committed model ignores a real parcel's spread; the drift monitor gives it no shift."""
    from revisit_inference.drift import Reference, shift_sigma
    from tests.model_inputs import LocalModel

    model = LocalModel(latest_version(REPO_ROOT / "data" / "models" / "psetae_s1s2"))
    stats = model.card.input_statistics["s1"]
    constant = [i for i, s in enumerate(stats["std"]) if s == 0]
    assert [stats["features"][i] for i in constant] == ["VV_db_std", "VH_db_std"]
    rng = np.random.default_rng(3)
    inputs = {
        "pixels": rng.uniform(0.0, 0.4, (4, 3, 10, 8)).astype(np.float32),
        "pixel_mask": np.ones((4, 3, 8), np.float32),
        "positions": np.tile(np.array([30.0, 90.0, 150.0], np.float32), (4, 1)),
        "geomfeat": np.zeros((4, 4), np.float32),
        "s1": np.tile(np.array([-11.0, -18.0, 0.0, 0.0, -7.0], np.float32), (4, 3, 1)),
        "s1_valid": np.ones((4, 3), np.float32),
        "s1_positions": np.tile(np.array([30.0, 90.0, 150.0], np.float32), (4, 1)),
    }
    trained, _ = model.infer(inputs, "probabilities")
    spread = {**inputs, "s1": inputs["s1"].copy()}
    spread["s1"][:, :, constant] = 1.5  # a real parcel's spread of its pixels, in dB
    assert np.array_equal(model.infer(spread, "probabilities")[0], trained)
    moved = {**inputs, "s1": inputs["s1"] + np.float32(3.0) * np.eye(5, dtype=np.float32)[0]}
    assert not np.allclose(model.infer(moved, "probabilities")[0], trained)  # VV still counts
    reference = Reference.of(stats["features"], stats["mean"], stats["std"])
    shift = shift_sigma(spread["s1"].reshape(-1, 5), reference)
    assert shift[constant].tolist() == [0.0, 0.0] and abs(shift[0]) < 1


def test_extractions_keep_the_parquet_values(worldcereal_datasets: Path) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(WORLDCEREAL / "test_public_extractions.parquet").to_pydict()
    data = load_dataset(worldcereal_datasets / "points", "sampling_label")
    assert len(data) == 500 and data.pixels[0].shape == (12, 10, 1)
    assert data.labels[7] == table["sampling_label"][7]
    assert data.regions[7] == table["h3_l3_cell"][7]
    for i in (0, 123, 499):
        for t in (0, 5, 11):
            dn = table[f"OPTICAL-B04-ts{t}-10m"][i]
            expected = 0.0 if dn == 65535 else dn / 10000
            assert data.pixels[i][t, 2, 0] == pytest.approx(expected)
            vv = table[f"SAR-VV-ts{t}-20m"][i]
            assert data.s1 is not None
            if vv in (0, 65535):
                assert np.isnan(data.s1[i][t, 0])
            else:
                assert data.s1[i][t, 0] == pytest.approx(20 * np.log10(vv) - 83, abs=1e-4)
    # a month of no data is an unobserved date, not a dark pixel
    missing = [i for i in range(500) if table["OPTICAL-B02-ts4-10m"][i] == 65535]
    assert missing and all((data.pixels[i][4] == 0).all() for i in missing)


def test_cube_blocks_follow_the_reference_map(worldcereal_datasets: Path) -> None:
    from revisit_models.worldcereal import read_cropland

    reference = read_cropland(WORLDCEREAL / "worldcereal_cropland_classification.nc")
    data = load_dataset(worldcereal_datasets / "cube")
    described = json.loads((worldcereal_datasets / "cube" / "META" / "dataset.json").read_text())
    assert len(data) == described["parcels"] == 400 - described["blocks_skipped_as_mixed"]
    for pid, label in zip(data.ids, data.labels, strict=True):
        r, c = int(pid[1:4]), int(pid[5:8])
        share = reference[r : r + 5, c : c + 5].mean()
        assert label == ("cropland" if share >= 0.8 else "non_cropland")
        assert share >= 0.8 or share <= 0.2
    assert data.geomfeat is not None
    assert data.geomfeat[0].tolist() == pytest.approx([200.0, 25.0, 1.0, 0.08])
    assert data.pixels[0].shape == (12, 10, 25)
    assert (data.pixels[0][1:3] == 0).all()  # 2020-12 and 2021-01 hold no data
    assert (data.pixels[0][:, 7] == data.pixels[0][:, 6]).all()  # B8A := B08


def test_the_cropland_map_reads_as_the_named_geotiff_band() -> None:
    """The .nc map's classes are unnamed; the GeoTIFF of the same patch names its band."""
    import rasterio

    from revisit_models.worldcereal import read_cropland

    cropland = read_cropland(WORLDCEREAL / "worldcereal_cropland_classification.nc")
    with rasterio.open(WORLDCEREAL / "cropland-croptype_2020-11-01_2021-10-31.tif") as tif:
        band = tif.descriptions.index("cropland_classification") + 1
        named = tif.read(band) == 1
        offset = round((tif.transform.f - 5612120.0) / 10.0)  # the .nc's top edge
    assert offset == 2
    agree = (cropland[: 101 - offset] == named[offset:]).mean()
    assert agree > 0.97


def test_s1_decoding_matches_the_openeo_encoding() -> None:
    # compress_backscatter_uint16: dn = 10^((dB + 83) / 20)
    db = np.array([-25.0, -12.5, 0.0])
    dn = np.round(10 ** ((db + 83) / 20))
    assert np.allclose(s1_db(dn), db, atol=0.01)  # dn is rounded to an integer
    assert np.isnan(s1_db(np.array([0, 65535]))).all()


def test_s2agri_layout_with_integer_labels_and_pickled_normalisation(
    worldcereal_datasets: Path, tmp_path: Path
) -> None:
    """A directory laid out like S2-Agri: int labels, class names, a (mean, std) pickle."""
    source = worldcereal_datasets / "cube"
    target = tmp_path / "s2agri"
    (target / "DATA").mkdir(parents=True)
    data = load_dataset(source)
    names = sorted(set(data.labels))
    for pid in data.ids[:40]:
        (target / "DATA" / f"{pid}.npy").write_bytes((source / "DATA" / f"{pid}.npy").read_bytes())
    labels = {
        pid: names.index(label) for pid, label in zip(data.ids[:40], data.labels, strict=False)
    }
    write_meta(target, "labels", {"label_2class": labels})
    write_meta(target, "classes", {"label_2class": names})
    (target / "META" / "dates.json").write_text((source / "META" / "dates.json").read_text())
    with (target / "norm.pkl").open("wb") as f:
        pickle.dump((np.full((12, 10), 1000.0), np.full((12, 10), 500.0)), f)
    loaded = load_dataset(target, "label_2class", norm=target / "norm.pkl")
    assert loaded.labels == data.labels[:40]
    assert loaded.s1 is None and loaded.geomfeat is None
    assert loaded.sources[0]["normalisation"]["mean"] == [0.1] * 10
    with pytest.raises(DatasetError, match="no nomenclature 'label_44class'"):
        load_dataset(target, "label_44class")


def test_collate_truncates_seasons_and_masks_s1(worldcereal_datasets: Path) -> None:
    data = load_dataset(worldcereal_datasets / "cube")
    rng = np.random.default_rng(0)
    batch = collate(data, [0, 1], rng, pixels=32, until_day=[100.0, float("inf")])
    assert batch.pixels.shape == (2, 12, 10, 32)
    assert batch.positions[0, 4:].eq(0).all() and batch.pixel_mask[0, 4:].eq(0).all()
    assert batch.pixel_mask[0, :, 25:].eq(0).all()  # 25 pixels, padded to 32
    assert batch.s1_valid is not None and batch.s1_valid[0].sum() == 4
    dropped = collate(data, [0], rng, until_day=None, drop_s1=np.array([True]))
    assert dropped.s1_valid is not None and dropped.s1_valid.sum() == 0


def test_spatial_split_holds_out_whole_regions(worldcereal_datasets: Path) -> None:
    data = load_dataset(worldcereal_datasets / "points", "sampling_label")
    classes, mapping = legend(data.labels, 5)
    assert "other" in classes and mapping["built_up"] == "other" and mapping["maize"] == "maize"
    targets = np.array([classes.index(mapping[x]) for x in data.labels])
    rng = np.random.default_rng(0)
    train, held, card = split(data, targets, rng, holdout_regions=["837a4dfffffffff"])
    assert {data.regions[i] for i in held} == {"837a4dfffffffff"}
    assert "837a4dfffffffff" not in {data.regions[i] for i in train}
    assert card["holdout_parcels"] == 21 and card["train_parcels"] == 479
    with pytest.raises(DatasetError, match="leaves 0 training"):  # every sample is of 2017
        split(data, targets, rng, holdout_years=[2017])
    with pytest.raises(DatasetError, match="no parcel in region"):
        split(data, targets, rng, holdout_regions=["nowhere"])
    train, held, card = split(data, targets, rng, holdout_fraction=0.2)
    assert card["kind"] == "stratified random" and 90 <= len(held) <= 110


def test_classification_report_against_a_hand_count() -> None:
    truth = [0, 0, 0, 1, 1, 2]
    predicted = [0, 0, 1, 1, 1, 0]
    report = classification_report(truth, predicted, ["a", "b", "c"])
    assert report["overall_accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    # expected agreement: (3·3 + 2·3 + 1·0) / 36
    assert report["kappa"] == pytest.approx((4 / 6 - 15 / 36) / (1 - 15 / 36), abs=1e-4)
    assert report["per_class"]["a"]["f1"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["per_class"]["b"]["iou"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["per_class"]["c"]["f1"] == 0.0
    assert report["mean_iou"] == pytest.approx((2 / 4 + 2 / 3 + 0) / 3, abs=1e-4)


def test_short_training_writes_a_model_and_its_card(
    worldcereal_datasets: Path, tmp_path: Path
) -> None:
    out = tmp_path / "psetae_s1s2" / "1"
    card = train_psetae(
        [worldcereal_datasets / "cube"],
        out,
        modality="s1s2",
        holdout_regions=["SE"],
        epochs=2,
        pixels=16,
        reproduce="revisit train pse-tae --data cube --modality s1s2 --holdout-region SE",
        log=str,
    )
    assert load_card(out) == card
    assert card.classes == ["cropland", "non_cropland"]
    assert card.split["holdout_parcels"] == 91
    full = card.metrics["holdout_full_season"]
    assert full["samples"] == 91 and 0.0 <= full["overall_accuracy"] <= 1.0
    assert set(card.metrics) >= {"holdout_first_90_days", "majority_class_baseline_oa"}
    assert [t.name for t in card.inputs] == [
        "pixels", "pixel_mask", "positions", "geomfeat", "s1", "s1_valid", "s1_positions"
    ]  # fmt: skip
    model = torch.jit.load(str(out / "model.pt"))
    batch = collate(
        load_dataset(worldcereal_datasets / "cube"), [0, 1, 2], np.random.default_rng(0), 16
    )
    probabilities = model(*batch.inputs(fusion=True))
    assert probabilities.shape == (3, 2)
    assert torch.allclose(probabilities.sum(1), torch.ones(3))
    assert (out / "card.md").read_text().startswith("# psetae_s1s2 (version 1)")
