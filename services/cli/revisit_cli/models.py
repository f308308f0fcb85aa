"""`revisit models build`, `revisit train …`: the models, reproducible from the repository.

Trained models live in data/models/<name>/<version>/ (model.pt + card); the pretrained
LCZ model is converted from its Keras weights. `models build` writes the Triton model
repository (infra/triton/models) from both.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from revisit_cli.stack import REPO_ROOT

LCZ_WEIGHTS = REPO_ROOT / "data" / "so2sat-lcz" / "sen2lcz_drop_32_weights.best.hdf5"
TRAINED = REPO_ROOT / "data" / "models"
BACKEND = REPO_ROOT / "infra" / "triton" / "backend" / "model.py"
WORLDCEREAL = REPO_ROOT / "data" / "worldcereal"


def build_models(
    repository: Path, force: bool = False, instance_kind: str = "cpu", instances: int | None = None
) -> list[Path]:
    """Write every model of the repository that is missing or changed; the paths written."""
    from revisit_models.lcz import export_pretrained  # torch is slow to import
    from revisit_models.repository import build_repository

    pretrained = repository.parent / ".pretrained"  # the LCZ model, converted from Keras
    export_pretrained(LCZ_WEIGHTS, pretrained, force)
    built = build_repository(
        repository, [pretrained, TRAINED], BACKEND, instance_kind, force, instances
    )
    return [path for b in built for path in b.written]


def cmd_train(args: argparse.Namespace) -> int:
    command = "revisit train " + " ".join(shlex.quote(a) for a in args.argv)
    if args.model == "convert-worldcereal":
        from revisit_models.worldcereal import convert_cube, convert_extractions

        out = Path(args.out)
        convert_extractions(WORLDCEREAL / "test_public_extractions.parquet", out / "points")
        convert_cube(
            WORLDCEREAL / "worldcereal_preprocessed_inputs.nc",
            WORLDCEREAL / "worldcereal_cropland_classification.nc",
            out / "cube",
        )
        return 0
    if args.model == "pse-tae":
        from revisit_models.train_psetae import train_psetae

        if not args.data:
            raise SystemExit("--data DIR is required (a PSE-TAE/S2-Agri layout directory)")
        train_psetae(
            [Path(d) for d in args.data],
            Path(args.out),
            modality=args.modality,
            label_type=args.label_type,
            holdout_regions=args.holdout_region,
            holdout_years=args.holdout_year,
            holdout_fraction=args.holdout_fraction,
            min_samples=args.min_samples,
            pixels=args.pixels,
            epochs=args.epochs or 30,
            seed=args.seed,
            threads=args.threads or 1,
            norm=Path(args.norm) if args.norm else None,
            name=args.name,
            version=Path(args.out).name if Path(args.out).name.isdigit() else "1",
            reproduce=command,
        )
        return 0
    if args.model == "landcover":
        from revisit_models.landcover import train_landcover

        kwargs = {"epochs": args.epochs} if args.epochs else {}
        card = train_landcover(
            Path(args.data[0]) if args.data else REPO_ROOT / "data" / "eo-learn",
            Path(args.out),
            seed=args.seed,
            threads=args.threads or 2,
            **kwargs,
        )
        print(f"wrote {args.out} ({card.name})")
        return 0
    if args.model == "biophys":
        from revisit_models.biophys import train_biophys

        kwargs = {"epochs": args.epochs} if args.epochs else {}
        if args.samples:
            kwargs["samples"] = args.samples
        card = train_biophys(
            Path(args.out),
            seed=args.seed,
            threads=args.threads or 2,
            srf_dir=REPO_ROOT / "data" / "pyrsr",
            worldcereal_dir=WORLDCEREAL,
            **kwargs,
        )
        print(f"wrote {args.out} ({card.name})")
        return 0
    raise SystemExit(f"unknown model {args.model}")


def add_train_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = sub.add_parser(
        "train",
        help="train a model (or convert the WorldCereal data to the PSE-TAE layout)",
        description=(
            "Models: pse-tae (crop type; --data DIR in the PSE-TAE/S2-Agri layout, "
            "--modality s2|s1s2), landcover (eo-learn NDVI series), biophys (PROSAIL "
            "simulations). convert-worldcereal writes the repository's WorldCereal data "
            "in the PSE-TAE layout (OUT/points, OUT/cube)."
        ),
    )
    train.add_argument("model", choices=["pse-tae", "landcover", "biophys", "convert-worldcereal"])
    train.add_argument("--data", action="append", help="dataset directory (repeatable)")
    train.add_argument("--out", required=True, help="output directory (…/<name>/<version>)")
    train.add_argument("--modality", choices=["s2", "s1s2"], default="s2")
    train.add_argument("--label-type", help="nomenclature of META/labels.json [first]")
    train.add_argument("--holdout-region", action="append", default=[], help="spatial hold-out")
    train.add_argument(
        "--holdout-year", action="append", type=int, default=[], help="temporal hold-out"
    )
    train.add_argument("--holdout-fraction", type=float, default=0.2, help="random hold-out share")
    train.add_argument("--min-samples", type=int, default=5, help="rarer classes become 'other'")
    train.add_argument("--pixels", type=int, default=64, help="pixels sampled per set")
    train.add_argument("--norm", help="normalisation file (S2-Agri .pkl or JSON)")
    train.add_argument("--name", help="model name [psetae_s2 / psetae_s1s2]")
    train.add_argument("--epochs", type=int)
    train.add_argument("--samples", type=int, help="biophys: PROSAIL simulations")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads [pse-tae 1: its tensors are too small to gain from more; 2]",
    )
    train.set_defaults(func=cmd_train)
