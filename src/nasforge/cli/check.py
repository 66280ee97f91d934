"""`nasforge check-evaluator`: how well an evaluator ranks a table's architectures (see
nasforge.evaluators.quality)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    from nasforge.cli.common import positive_int

    p = sub.add_parser(
        "check-evaluator",
        help="measure how well an evaluator ranks a table's architectures (Kendall tau, ...)",
        description="Score a seeded random sample of a table's architectures with an evaluator "
        "and compare its ranking with the table's truth column. The evaluator never "
        "reads the table.",
    )
    p.add_argument(
        "--space",
        help="space of the table's architectures (default: implied by a shared table; required with a file)",
    )
    p.add_argument(
        "--table",
        required=True,
        help="CSV table (gzip or plain), or a shared table by its evaluator's name (nasforge list evaluators)",
    )
    p.add_argument(
        "--truth-column",
        required=True,
        help="the column that is the truth, e.g. c10_test_acc_200ep (only read to grade)",
    )
    p.add_argument("--arch-column", help="architecture column (default: arch_str / arch / architecture)")
    p.add_argument(
        "--evaluator",
        required=True,
        help="evaluator to check: naswot, synflow, snip, grasp, fisher, jacob_cov, params, flops, "
        "zc_ensemble, proxy, ... or auto (the recommended one)",
    )
    p.add_argument(
        "--evaluator-option",
        action="append",
        metavar="KEY=VALUE",
        help="evaluator option, a JSON value where it parses, e.g. batch_size=64 or "
        "train='{\"epochs\": 1}' (repeatable; default: the evaluator's own values)",
    )
    p.add_argument(
        "--dataset",
        help="images the evaluator scores or trains on: digits, npz:PATH, folder:PATH "
        "(default: the evaluator's, digits)",
    )
    p.add_argument(
        "--network-option",
        action="append",
        metavar="KEY=VALUE",
        help="option of the space's network, e.g. channels=8 (repeatable; default: the evaluator's network)",
    )
    p.add_argument("--metric", help="metric ranked (default: the evaluator's reward metric)")
    p.add_argument(
        "--sample", type=positive_int, default=500, help="architectures sampled from the table (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of which architectures are sampled (default: %(default)s)")
    p.add_argument(
        "--eval-seed", type=int, default=0, help="seed of the evaluations: weights, batches (default: %(default)s)"
    )
    p.add_argument(
        "--cache",
        help="JSON-lines file of scored cells: a rerun scores only the missing ones "
        "(default: none, every cell is scored)",
    )
    p.add_argument("--per-cell", action="store_true", help="with --json: include every cell's score and truth")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from nasforge.cli.common import print_json
    from nasforge.cli.search import _parse_options
    from nasforge.data.paths import require_data
    from nasforge.errors import ConfigError
    from nasforge.evaluators import create_evaluator, evaluator_options, resolve_evaluator
    from nasforge.evaluators.quality import check_evaluator
    from nasforge.evaluators.table import shared_tables
    from nasforge.experiment.config import Component, build_space

    shortcut = shared_tables().get(args.table)
    table = require_data(*shortcut.file) if shortcut else args.table
    space_name = args.space or (shortcut.space if shortcut else None)
    if space_name is None:
        shared = ", ".join(sorted(shared_tables()))
        raise ConfigError("--space", f"is required with a table file (or use a shared table: {shared})")
    if shortcut and space_name != shortcut.space:
        raise ConfigError(
            "--space", f"the {args.table!r} table lists {shortcut.space!r} architectures, not {space_name!r}"
        )
    space = build_space(Component(space_name))
    arch_column = args.arch_column or (shortcut.arch_column if shortcut else None)
    name = resolve_evaluator(args.evaluator)
    options = _parse_options(args.evaluator_option or [], "--evaluator-option")
    allowed = evaluator_options(name)
    if args.dataset is not None:
        if "dataset" not in allowed:
            raise ConfigError("--dataset", f"evaluator {name!r} does not read a dataset")
        options["dataset"] = args.dataset
    if args.network_option:
        if "network" not in allowed:
            raise ConfigError("--network-option", f"evaluator {name!r} builds no network")
        options["network"] = {
            **(options.get("network") or {}),
            **_parse_options(args.network_option, "--network-option"),
        }
    evaluator = create_evaluator(name, space=space, **options)
    show_progress = not args.json and sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        print(f"\rcell {done}/{total}", end="", file=sys.stderr, flush=True)

    result = check_evaluator(
        space,
        evaluator,
        table,
        args.truth_column,
        sample=args.sample,
        seed=args.seed,
        eval_seed=args.eval_seed,
        metric=args.metric,
        arch_column=arch_column,
        cache=args.cache,
        progress=progress if show_progress else None,
    )
    if show_progress:
        print("\r" + " " * 30 + "\r", end="", file=sys.stderr)
    if args.json:
        print_json(result.to_dict(with_cells=args.per_cell))
        return 0
    q = result.quality
    print(
        f"{name} ({result.metric}) on {q.cells} cells of {table} (sample seed {args.seed}), truth {args.truth_column}"
    )
    print(
        f"Kendall tau {q.kendall_tau:.3f}   Spearman rho {q.spearman_rho:.3f}   "
        f"top-10% precision {q.top10_precision:.3f}"
    )
    print(f"{result.seconds_per_cell:.3f} s per cell; failed cells: {q.failed} (ranked last)")
    return 0
