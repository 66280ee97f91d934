"""`nasforge bench`: a strategy against a tabulated benchmark over many seeds (see nasforge.benchmarking)."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    from nasforge.cli.common import positive_int

    p = sub.add_parser("bench", help="run a strategy against a tabulated benchmark over many seeds")
    p.add_argument("--table", required=True, help="CSV table (gzip or plain), or nb201 / macro for the shared tables")
    p.add_argument(
        "--space", help="space of the table's architectures (default: implied by nb201 / macro; required with a file)"
    )
    p.add_argument(
        "--reward-column",
        help="column searched on (default: nb201 c10_valid_acc_12ep, macro mean_acc; required with a file)",
    )
    p.add_argument(
        "--report-column",
        help="column reported for each seed's best-by-reward architecture, or several joined by "
        "commas to report their mean (nb201: c10_test_acc_200ep; macro: test_acc_run2,"
        "test_acc_run3; default: the reward column)",
    )
    p.add_argument("--arch-column", help="architecture column (default: arch_str / arch / architecture)")
    p.add_argument("--strategy", required=True, help="random, evolution, local, predictor, grid, ppo, reinforce")
    p.add_argument(
        "--strategy-option",
        action="append",
        metavar="KEY=VALUE",
        help="strategy option, e.g. population_size=10 (repeatable; default: the strategy's own values)",
    )
    p.add_argument(
        "--queries",
        type=positive_int,
        default=100,
        help="evaluated architectures per seed; with --duplicates reuse, asks per seed (default: %(default)s)",
    )
    p.add_argument(
        "--duplicates",
        choices=["reask", "reuse"],
        default="reask",
        help="a proposal already asked in the seed's search: reask (default, as nasforge search: not "
        "a query, the strategy is asked again) or reuse (the published protocol: every ask is "
        "a query, a repeat is looked up again)",
    )
    p.add_argument(
        "--reask-limit",
        type=int,
        default=100,
        metavar="N",
        help="with --duplicates reask: end a seed's search after N repeats in a row (default: %(default)s)",
    )
    p.add_argument(
        "--seeds", type=positive_int, default=100, help="independent searches, seeds 0..N-1 (default: %(default)s)"
    )
    p.add_argument(
        "--percent",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the reward column is an accuracy in percent, told to strategies as a fraction "
        "(default: nb201/macro yes; a file: guessed from the column's name and values)",
    )
    p.add_argument("--per-seed", action="store_true", help="with --json: include every seed's result")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the controller's tensors are tiny: threads only add synchronisation
    try:
        return _bench(args)
    finally:
        torch.set_num_threads(threads)


def _bench(args: argparse.Namespace) -> int:
    from nasforge.benchmarking import BenchTable, run_bench
    from nasforge.cli.common import print_json
    from nasforge.cli.search import _parse_options

    options = _parse_options(args.strategy_option or [], "--strategy-option")
    table = BenchTable(
        args.table,
        space=args.space,
        reward_column=args.reward_column,
        report_column=args.report_column,
        arch_column=args.arch_column,
        percent=args.percent,
    )
    show_progress = not args.json and sys.stderr.isatty()

    def progress(seed_result) -> None:
        print(f"\rseed {seed_result.seed + 1}/{args.seeds}", end="", file=sys.stderr, flush=True)

    result = run_bench(
        table,
        args.strategy,
        args.queries,
        args.seeds,
        options,
        progress=progress if show_progress else None,
        duplicates=args.duplicates,
        reask_limit=args.reask_limit,
    )
    if show_progress:
        print("\r" + " " * 30 + "\r", end="", file=sys.stderr)
    if args.json:
        print_json(_jsonable(result.to_dict(per_seed=args.per_seed)))
        return 0
    info = result.table
    opts = ", ".join(f"{k}={v}" for k, v in options.items())
    print(
        f"{args.strategy}{f' ({opts})' if opts else ''} on {info['space']}, table {info['table']} "
        f"({info['rows']} rows): {result.queries} queries x {result.seeds} seeds"
    )
    print(
        f"reward {info['reward_column']}, report {info['report_column']}"
        f"{' (the same column: the report is the reward)' if info['reward_is_report'] else ''}"
    )
    print(
        f"report of the best-by-reward architecture: mean {result.mean:.3f}  std {result.std:.3f}  "
        f"(sem {result.sem:.3f})"
    )
    print(f"best reward: mean {result.mean_best_reward:.3f}  std {result.std_best_reward:.3f}")
    print(
        f"distinct architectures per seed: {result.mean_distinct:.1f} of {result.queries} queries "
        f"({result.mean_asks:.1f} proposals; duplicates: {result.duplicates}); failed lookups: {result.failures}"
        + (f"; seeds without a result: {result.seeds_without_result}" if result.seeds_without_result else "")
    )
    print(
        f"strategy compute: {result.seconds_per_query * 1e3:.3f} ms per query (ask + tell); "
        f"wall {result.wall_seconds:.2f} s"
    )
    return 0


def _jsonable(value: Any) -> Any:
    """NaN/inf become null: the output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
