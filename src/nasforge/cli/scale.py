"""`nasforge scale family` (a baseline grown by compound scaling) and `nasforge scale search` (alpha, beta, gamma).

    nasforge scale family efficientnet_b0 --phi 0 1 2 3 [--alpha 1.2 --beta 1.1 --gamma 1.15] [--published] [--json]
    nasforge scale search efficientnet_b0 [--evaluator macs|proxy] [--dataset digits] [--step 0.05]
                          [--target 2] [--tolerance 0.1] [--run runs/NAME] [--resume] [--json]

BASE is a registered model (`nasforge models`), a family name (efficientnet, nasnet, mbconv) or an
architecture JSON file of the NASNet or MBConv space.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import time
from pathlib import Path
from typing import Any

from nasforge.cli.common import console, positive_float, positive_int, print_json, user_path
from nasforge.errors import ConfigError

DEFAULT_COEFFICIENTS = (1.2, 1.1, 1.15)


# -- parsing helpers ----------------------------------------------------------------------------------
def number(text: str) -> float:
    """A finite number (range checks are left to the scaling code, whose errors name the field)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _phi_value(phi: float) -> int | float:
    return int(phi) if float(phi).is_integer() else phi


def _si(value: Any, unit: str = "") -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3f} {suffix}{unit}"
    return f"{value:g}{unit}"


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def wide_console():
    """The rich console; when the output is not a terminal, wide enough that no number is cut short."""
    out = console()
    if not out.is_terminal:
        out.width = max(out.width, 200)
    return out


def add_base_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "base", help="registered model (efficientnet_b0, nasnet_a_cifar, ...), family name or architecture JSON file"
    )
    p.add_argument(
        "--num-classes",
        type=positive_int,
        help="classifier outputs of the members (default: the base model's; with proxy: the dataset's)",
    )
    p.add_argument(
        "--resolution",
        type=int,
        help="baseline input side in pixels (default: the base model's; with proxy: the dataset's, "
        "at least --min-resolution)",
    )
    p.add_argument(
        "--min-resolution",
        type=positive_int,
        default=32,
        help="refuse members under this many pixels (default: %(default)s)",
    )
    p.add_argument(
        "--resolution-divisor",
        type=positive_int,
        help="round member resolutions to a multiple of this many pixels (default: 8; 1 under 64 px)",
    )
    p.add_argument(
        "--width-mult",
        type=number,
        default=1.0,
        help="shrink or grow the baseline's width first, e.g. 0.25 for a small proxy baseline (default: %(default)s)",
    )
    p.add_argument(
        "--depth-mult", type=number, default=1.0, help="the same for the baseline's depth (default: %(default)s)"
    )


def add_parser(sub: Any) -> None:
    p = sub.add_parser("scale", help="compound scaling: grow a baseline into a family, search alpha/beta/gamma")
    scale = p.add_subparsers(dest="scale_command", required=True)

    f = scale.add_parser("family", help="members phi = 0..K of a baseline: multipliers, resolution, params, MACs")
    add_base_flags(f)
    f.add_argument(
        "--phi",
        type=number,
        nargs="+",
        default=[0, 1, 2, 3],
        help="members to show, compound coefficients phi (default: 0 1 2 3)",
    )
    f.add_argument(
        "--alpha",
        type=number,
        default=DEFAULT_COEFFICIENTS[0],
        help="depth coefficient, >= 1: depth grows as alpha^phi (default: %(default)s, EfficientNet's)",
    )
    f.add_argument(
        "--beta",
        type=number,
        default=DEFAULT_COEFFICIENTS[1],
        help="width coefficient, >= 1: width grows as beta^phi (default: %(default)s, EfficientNet's)",
    )
    f.add_argument(
        "--gamma",
        type=number,
        default=DEFAULT_COEFFICIENTS[2],
        help="resolution coefficient, >= 1: resolution grows as gamma^phi (default: %(default)s, EfficientNet's)",
    )
    f.add_argument(
        "--published", action="store_true", help="also show EfficientNet's published B0-B7 rows applied to the baseline"
    )
    f.add_argument("--json", action="store_true", help="print a list of objects, one per phi")
    f.set_defaults(func=cmd_family)

    s = scale.add_parser("search", help="grid-search alpha, beta, gamma at phi = 1 (EfficientNet's step 1)")
    add_base_flags(s)
    g = s.add_argument_group("the grid")
    g.add_argument(
        "--step", type=positive_float, default=0.05, help="grid step of alpha, beta and gamma (default: %(default)s)"
    )
    g.add_argument(
        "--target",
        type=number,
        default=2.0,
        help="alpha beta^2 gamma^2 target: the MACs factor of one phi step (default: %(default)s)",
    )
    g.add_argument(
        "--tolerance",
        type=number,
        default=0.1,
        help="largest |alpha beta^2 gamma^2 - target| admitted (default: %(default)s)",
    )
    for name, hi in (("alpha", 2.0), ("beta", 1.5), ("gamma", 1.5)):
        g.add_argument(
            f"--{name}-range",
            type=number,
            nargs=2,
            metavar=("LOW", "HIGH"),
            default=[1.0, hi],
            help=f"grid range of {name} (default: 1 {hi:g})",
        )
    g = s.add_argument_group("evaluation")
    g.add_argument(
        "--evaluator",
        choices=["macs", "proxy"],
        help="macs: a cheap deterministic score of the member, no data; proxy: train each phi = 1 "
        "member on --dataset (default: proxy when --dataset is given, else macs)",
    )
    g.add_argument("--dataset", help="with proxy: images, digits (built in), npz:PATH, folder:PATH (default: digits)")
    g.add_argument("--epochs", type=positive_int, help="with proxy: training epochs per member (default: 3)")
    g.add_argument(
        "--seeds",
        type=positive_int,
        help="with proxy: trainings of each member from different seeds; the table shows their mean, "
        "and ± adds their spread (default: 1)",
    )
    g.add_argument("--batch-size", type=positive_int, help="with proxy: images per training batch (default: 64)")
    g.add_argument(
        "--train-size",
        type=positive_int,
        help="with proxy: train on a stratified subset of this many images (default: the whole training split)",
    )
    g.add_argument(
        "--val-size",
        type=positive_int,
        help="with proxy: validate on a stratified subset of this many images (default: the whole validation split)",
    )
    g.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        help="with proxy: where members train; auto takes cuda when there is one (default: auto)",
    )
    g = s.add_argument_group("run")
    g.add_argument(
        "--trials",
        type=positive_int,
        help="stop after this many candidates, resume to finish (default: all of the grid)",
    )
    g.add_argument(
        "--time", type=positive_float, help="stop after this many seconds, resume to finish (default: no limit)"
    )
    g.add_argument(
        "--seed", type=int, default=0, help="seed of the data split and the members' training (default: %(default)s)"
    )
    g.add_argument(
        "--run",
        metavar="FOLDER",
        help="run folder, any path: absolute, relative to the current directory or under ~ "
        "(default: runs/scale-BASE-TIME)",
    )
    g.add_argument("--resume", action="store_true", help="continue the coefficient search in --run")
    s.add_argument("--top", type=int, default=10, help="admissible triples to list, 0 for all (default: %(default)s)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    s.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    s.set_defaults(func=cmd_search)


# -- the baseline ---------------------------------------------------------------------------------------
def _check_resolution(value: int | None, minimum: int, flag: str = "--resolution") -> None:
    if value is not None and value < minimum:
        raise ConfigError(flag, f"{value} px is under the minimum of {minimum} px (lower --min-resolution to allow it)")


def baseline(args: argparse.Namespace, num_classes: int | None = None, resolution: int | None = None):
    """The family BASE names, with --num-classes, --resolution and the baseline multipliers applied."""
    from nasforge.scaling.family import family_from
    from nasforge.scaling.search import rebase

    for flag, value in (("--width-mult", args.width_mult), ("--depth-mult", args.depth_mult)):
        if not value > 0:
            raise ConfigError(flag, f"the baseline's {flag[2:7]} multiplier must be a positive number, got {value:g}")
    resolution = args.resolution if resolution is None else resolution
    _check_resolution(resolution, args.min_resolution)
    classes = args.num_classes if args.num_classes is not None else num_classes
    family = family_from(args.base, num_classes=classes, base_resolution=resolution)
    _check_resolution(family.base_resolution, args.min_resolution, "resolution")
    return rebase(family, args.width_mult, args.depth_mult)


def _divisor(args: argparse.Namespace, base_resolution: int) -> int:
    if args.resolution_divisor is not None:
        return args.resolution_divisor
    return 8 if base_resolution >= 64 else 1


# -- nasforge scale family ---------------------------------------------------------------------------------
def family_rows(args: argparse.Namespace) -> tuple[list[dict[str, Any]], Any]:
    from nasforge.scaling.compound import CompoundScaler, PublishedScaler

    # coefficients first: their errors do not depend on the baseline
    probe = CompoundScaler(args.alpha, args.beta, args.gamma, min_resolution=args.min_resolution)
    family = baseline(args)
    scaler_kw = {"resolution_divisor": _divisor(args, family.base_resolution), "min_resolution": args.min_resolution}
    scaler = CompoundScaler(probe.alpha, probe.beta, probe.gamma, **scaler_kw)
    members = scaler.family(family, args.phi)
    rows = []
    for m in members:
        row = m.to_dict()
        row["phi"] = _phi_value(m.phi)
        rows.append(row)
    if args.published:
        published = PublishedScaler(**scaler_kw)
        phis = [p for p in dict.fromkeys(args.phi) if float(p).is_integer() and int(p) in published.table]
        counted = {m.phi: m for m in published.family(family, phis, describe=False)} if phis else {}
        for row in rows:
            pm = counted.get(float(row["phi"]))
            row["published"] = (
                None
                if pm is None
                else {
                    "model": f"efficientnet_b{int(pm.phi)}",
                    "width_mult": pm.width_mult,
                    "depth_mult": pm.depth_mult,
                    "resolution": pm.resolution,
                    "params": pm.params,
                    "macs": pm.macs,
                    "macs_ratio": pm.macs_ratio,
                }
            )
    return rows, scaler


def cmd_family(args: argparse.Namespace) -> int:
    rows, scaler = family_rows(args)
    if args.json:
        print_json(rows)
        return 0
    from rich.table import Table

    table = Table(
        title=f"{args.base}: depth {scaler.alpha:g}^φ, width {scaler.beta:g}^φ, resolution "
        f"{scaler.gamma:g}^φ (α·β²·γ² = {scaler.product:.3f})"
    )
    cols = ["φ", "depth ×", "width ×", "resolution", "params", "MACs", "MACs ratio", "(α·β²·γ²)^φ", "2^φ"]
    if args.published:
        cols += ["published w/d/r", "published params", "published MACs", "published ratio"]
    for c in cols:
        table.add_column(c, justify="left" if c.startswith("published w") else "right")
    for r in rows:
        cells = [
            f"{r['phi']:g}",
            f"{r['depth_mult']:.3f}",
            f"{r['width_mult']:.3f}",
            str(r["resolution"]),
            f"{r['params']:,}",
            _si(r["macs"]),
            f"{r['macs_ratio']:.2f}",
            f"{r['ideal_ratio']:.2f}",
            f"{r['target_ratio']:g}",
        ]
        if args.published:
            p = r.get("published")
            cells += (
                ["-"] * 4
                if p is None
                else [
                    f"{p['width_mult']:g} / {p['depth_mult']:g} / {p['resolution']}",
                    f"{p['params']:,}",
                    _si(p["macs"]),
                    f"{p['macs_ratio']:.2f}",
                ]
            )
        table.add_row(*cells)
    out = wide_console()
    out.print(table)
    out.print(
        "MACs ratio is measured (to φ = 0); the ceiling on repeats and widths rounded to multiples of 8 "
        "make it differ from (α·β²·γ²)^φ (docs/scaling.md)."
    )
    return 0


# -- nasforge scale search ---------------------------------------------------------------------------------
def _run_name(base: str) -> str:
    stem = Path(base).stem if base.lower().endswith(".json") else base
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "base"
    return f"runs/scale-{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


PROXY_FLAGS = ("dataset", "epochs", "seeds", "batch_size", "train_size", "val_size", "device")


def search_parts(args: argparse.Namespace) -> tuple[Any, Any]:
    """(family, ScaledMemberEvaluator) for parsed `scale search` arguments."""
    from nasforge.scaling.coefficients import MACsScore, ScaledMemberEvaluator

    kind = args.evaluator or ("proxy" if args.dataset is not None else "macs")
    if kind == "macs":
        for flag in PROXY_FLAGS:
            if getattr(args, flag) is not None:
                raise ConfigError(
                    f"--{flag.replace('_', '-')}",
                    "only applies with --evaluator proxy (the macs evaluator trains nothing)",
                )
        family = baseline(args)
        inner: Any = MACsScore()
    else:
        from nasforge.evaluators.proxy import ProxyTrainer, cached_splits

        dataset = args.dataset or "digits"
        splits = cached_splits(dataset, 0.1, args.seed, args.train_size, args.val_size)
        # Images smaller than --min-resolution are upsampled to it (unless --resolution says otherwise).
        resolution = args.resolution if args.resolution is not None else max(splits.resolution, args.min_resolution)
        family = baseline(args, num_classes=splits.num_classes, resolution=resolution)
        train: dict[str, Any] = {"epochs": args.epochs or 3}
        for flag in ("batch_size", "device"):
            if getattr(args, flag) is not None:
                train[flag] = getattr(args, flag)
        inner = ProxyTrainer(
            dataset=dataset,
            train=train,
            split_seed=args.seed,
            train_size=args.train_size,
            val_size=args.val_size,
            latency=False,
        )
    evaluator = ScaledMemberEvaluator(
        family,
        inner,
        resolution_divisor=_divisor(args, family.base_resolution),
        min_resolution=args.min_resolution,
        seeds=args.seeds or 1,
    )
    return family, evaluator


def cmd_search(args: argparse.Namespace) -> int:
    from nasforge.scaling.search import search_coefficients

    if args.resume and args.run is None:
        raise ConfigError("--resume", "needs --run NAME, the run to continue")
    if args.top < 0:
        raise ConfigError("--top", f"must be 0 (all) or a positive number of rows, got {args.top}")
    if args.seed < 0:
        raise ConfigError("--seed", f"must be a non-negative integer, got {args.seed}")
    family, evaluator = search_parts(args)
    run_name = args.run if args.run is not None else _run_name(args.base)
    run_dir = user_path(run_name, "--run")
    result = search_coefficients(
        family,
        evaluator,
        run_dir,
        step=args.step,
        target=args.target,
        tolerance=args.tolerance,
        alpha_range=tuple(args.alpha_range),
        beta_range=tuple(args.beta_range),
        gamma_range=tuple(args.gamma_range),
        seed=args.seed,
        resume=args.resume,
        progress=not (args.no_progress or args.json),
        max_trials=args.trials,
        max_seconds=args.time,
    )
    if args.json:
        print_json(result.to_dict())
        return 0
    print_result(result, args, shlex.quote(run_name))
    return 0


def print_result(result: Any, args: argparse.Namespace, run_name: str) -> None:
    from rich.table import Table

    out = wide_console()
    metric = result.metric
    n = result.settings.get("admissible", 0)
    done = sum(1 for c in result.candidates if c["status"] in ("done", "failed"))
    best = result.best
    if best is not None:
        out.print(
            f"[bold]coefficients: alpha={best['alpha']:.4g} beta={best['beta']:.4g} gamma={best['gamma']:.4g}"
            f"[/bold] (α·β²·γ² = {best['product']:.3f}; {metric} {best['reward']:.4f}) — best of {n} "
            f"admissible triples at φ = 1"
        )
    if not result.complete:
        out.print(
            f"[yellow]stopped after {done} of {len(result.candidates)} candidates[/yellow]; continue with "
            f"--run {run_name} --resume"
        )
    table = Table(title=f"coefficient search of {args.base} ({metric} is the reward)")
    for c in (
        "candidate",
        "α",
        "β",
        "γ",
        "α·β²·γ²",
        metric,
        "±",
        "vs best",
        "params",
        "MACs",
        "MACs ratio",
        "resolution",
        "depth ×",
        "width ×",
    ):
        table.add_column(c, justify="left" if c == "candidate" else "right")
    compound = result.compound
    shown = compound if args.top == 0 else compound[: args.top]

    def add(c: dict[str, Any], gap: Any, style: str | None = None) -> None:
        label = c["label"] + (" *" if best is not None and c["index"] == best["index"] else "")
        value = c.get("reward") if c["status"] == "done" else None
        status = "" if c["status"] == "done" else f" ({c['status']})"
        se = c.get("se") if value is not None else None
        table.add_row(
            label + status,
            f"{c['alpha']:.4g}",
            f"{c['beta']:.4g}",
            f"{c['gamma']:.4g}",
            f"{c['product']:.3f}",
            _fmt(value, ".4f"),
            _fmt(se, ".4f"),
            _fmt(gap, "+.4f"),
            _fmt(c.get("params"), ",d"),
            _si(c.get("macs")),
            _fmt(c.get("macs_ratio"), ".2f"),
            _fmt(c.get("resolution"), "d"),
            _fmt(c.get("depth_mult"), ".3f"),
            _fmt(c.get("width_mult"), ".3f"),
            style=style,
        )

    top = best.get("reward") if best else None
    for c in shown:
        gap = c["reward"] - top if c.get("reward") is not None and top is not None else None
        add(c, gap, "bold" if best is not None and c["index"] == best["index"] else None)
    if len(shown) < len(compound):
        table.add_row(f"... {len(compound) - len(shown)} more (--top 0)", *[""] * 13)
    if result.alternatives:
        table.add_section()
    for c in result.alternatives:
        add(c, c.get("reward_vs_best"))
    base = result.baseline
    if base is not None and base.get("status") == "done":
        table.add_section()
        table.add_row(
            "baseline (φ = 0)",
            "1",
            "1",
            "1",
            "1.000",
            _fmt(base.get("reward"), ".4f"),
            _fmt(base.get("se"), ".4f"),
            _fmt(base["reward"] - top if top is not None else None, "+.4f"),
            _fmt(base.get("params"), ",d"),
            _si(base.get("macs")),
            "1.00",
            _fmt(base.get("resolution"), "d"),
            "1.000",
            "1.000",
        )
    out.print(table)
    schedule = result.settings.get("schedule") or {}
    if schedule.get("epochs") is not None:
        seeds = schedule.get("seeds") or 1
        out.print(
            f"every row: {schedule['epochs']} epochs of training, {schedule.get('val_images')} validation "
            + (
                f"images, the mean of {seeds} seeds; ± is one standard error (√(p(1−p)/n) and the seeds' spread)"
                if seeds > 1
                else "images; ± is one standard error (√(p(1−p)/n))"
            ),
            soft_wrap=True,
        )
    if result.verdict is not None:
        out.print(
            ("" if result.verdict.get("clear") is not False else "[yellow]")
            + result.verdict["text"]
            + ("" if result.verdict.get("clear") is not False else "[/yellow]"),
            soft_wrap=True,
        )
    out.print(
        f"* chosen. The alternatives spend the same MACs budget (×{result.settings.get('target', 2):g}) on one "
        f"dimension; 'vs best' is their {metric} minus the chosen triple's."
    )
    out.print(f"run folder: {result.run_dir}   (nasforge show {run_name}; nasforge report {run_name})")
