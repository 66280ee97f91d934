"""`nasforge export`: a trained model (or a run's best, as JSON) as pt2, ONNX, TorchScript or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nasforge.cli.common import console, print_json
from nasforge.errors import ConfigError

#: `nasforge.export.EXPORT_FORMATS`, named here so that building the parser imports no torch (a test
#: keeps the two equal; `nasforge export` itself checks --format against the real tuple).
EXPORT_FORMAT_NAMES = ("json", "onnx", "pt2", "torchscript")


def cmd_export(args: Any) -> int:
    from nasforge.experiment import Store
    from nasforge.export import (
        ARCH_NAME,
        EXPORT_FORMATS,
        WEIGHTS_NAME,
        ModelFileError,
        export_model,
        load_model,
        locate_trained,
        read_model_config,
    )

    if args.format not in EXPORT_FORMATS:
        raise ConfigError("--format", f"unknown export format {args.format!r}", EXPORT_FORMATS)
    if args.normalize and args.format == "json":
        raise ConfigError("--normalize", "only applies to pt2, onnx and torchscript exports")
    path = Path(args.source)
    if not path.exists():
        raise ModelFileError(path, "no such file or folder")
    out = Path(args.out)
    home = (path if path.is_dir() else path.parent).resolve()
    if out.is_file() and (home in out.resolve().parents or Store.exists(out.parent)):
        raise ConfigError(
            "--out",
            f"{args.out} would overwrite a file of a nasforge run or trained model; "
            "write the export to another file (nothing was overwritten)",
        )
    trained = not path.is_dir() or (path / ARCH_NAME).is_file()
    if trained:
        arch_file, weights_file = locate_trained(path)
        if args.format == "json":
            config, model = read_model_config(arch_file), None
        else:
            model, config = load_model(path)
    elif Store.exists(path):
        if args.format != "json":
            raise ConfigError(
                "--format",
                f"{args.source} is a search run without trained weights; only "
                f"--format json exports it (train it first: nasforge train "
                f"{args.source}, then export that folder)",
            )
        from nasforge.train import make_plan, model_config, plan_splits

        plan = make_plan(str(path))
        config, model = model_config(plan, plan_splits(plan)), None
    else:
        raise ConfigError(
            "RUN_OR_WEIGHTS",
            f"{args.source} holds neither a trained model ({ARCH_NAME} + "
            f"{WEIGHTS_NAME}) nor a nasforge run (nasforge.db)",
        )
    if args.no_deploy and args.format == "json":
        raise ConfigError("--no-deploy", "only applies to pt2, onnx and torchscript exports")
    result = export_model(
        model, config, args.format, args.out, normalize=args.normalize, trained=trained, deploy=not args.no_deploy
    )
    if args.json:
        print_json(result.to_dict())
        return 0
    note = ""
    if result.method:
        note = f" via {result.method}"
    if result.dynamic_batch is not None:
        note += "; dynamic batch" if result.dynamic_batch else "; static batch"
    if result.max_abs_diff is not None:
        note += f"; checked against the original: max |diff| {result.max_abs_diff:.2g}"
    elif args.format == "onnx":
        note += "; not checked (onnxruntime is not installed)"
    if result.deployed:
        note += "; deployed: BatchNorm folded, dropout and drop path removed (--no-deploy keeps them)"
    console().print(f"wrote {result.path} ({result.format}{note})", soft_wrap=True)
    if result.deprecated:
        console().print(
            f"note: PyTorch deprecates {result.format}; the default --format pt2 (torch.export) replaces it",
            soft_wrap=True,
        )
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help=f"export a trained model: {', '.join(EXPORT_FORMAT_NAMES)}")
    p.add_argument(
        "source",
        metavar="RUN_OR_WEIGHTS",
        help="a `nasforge train` folder (or its weights.pt), or a search run folder (json only)",
    )
    p.add_argument(
        "--format",
        default="pt2",
        help="pt2 (default: a torch.export ExportedProgram), onnx (torch.export-based exporter), "
        "json (the model description) or torchscript (legacy: deprecated by PyTorch)",
    )
    p.add_argument("--out", required=True, help="file to write (never one of a run's or a trained model's own files)")
    p.add_argument(
        "--normalize",
        action="store_true",
        help="bake the training normalisation in: the exported model takes images in [0, 1]",
    )
    p.add_argument(
        "--no-deploy",
        action="store_true",
        help="export the eager network as trained (BatchNorm, dropout and drop path kept) instead "
        "of the deployed one (nasforge.deploy: BN folded into the convolutions, faster)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_export)
