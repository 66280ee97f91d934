"""Turning `nasforge search` flags (and an optional config file) into a `SearchConfig`.

Kept apart from `cli.py` so the mapping can be tested, and reused by `nasforge run`, without
argparse. Precedence: built-in defaults < config file < flags given on the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

from nasforge.arch import DEFAULT_SPACE
from nasforge.cli.common import console, print_json, user_path
from nasforge.errors import ConfigError

#: `nasforge search` flags that are the table evaluator's options of the same names.
TABLE_FLAGS = ("table", "reward_column", "report_column", "arch_column")


def read_config_file(path: str) -> dict[str, Any]:
    """A JSON or TOML search config (by suffix), with one-line errors."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError("--config", f"no such file: {path}")
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("--config", f"cannot read {path} ({exc})") from None
    if file.suffix.lower() == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{path} is not valid TOML ({exc})") from None
        except RecursionError:
            raise ConfigError("--config", f"{path} is not valid TOML (nested too deeply)") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("--config", f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        except RecursionError:
            raise ConfigError("--config", f"{path} is not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise ConfigError("--config", f"{path} must hold an object of config keys")
    return data


def _component(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, str):
        return {"name": value, "options": {}}
    if isinstance(value, dict):
        name, options = value.get("name"), value.get("options") or {}
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name", f"must be a non-empty string, got {name!r}")
        if not isinstance(options, dict):
            raise ConfigError(f"{where}.options", f"must be an object of keyword options, got {options!r}")
        return {**value, "name": name, "options": dict(options)}  # other keys stay, to be refused by name
    raise ConfigError(where, f"must be a name or an object with name and options, got {value!r}")


def search_config_dict(args: Any, file_data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `SearchConfig` dict for parsed `search`/`run` arguments (attributes None = not given)."""
    data: dict[str, Any] = dict(file_data or {})
    space = _component(args.space or data.get("space", DEFAULT_SPACE), "space")
    data["space"] = space
    if args.strategy is None and "strategy" not in data:
        data["strategy"] = {"name": "evolution"}  # its population is fitted to the budget
    data["strategy"] = _component(args.strategy or data["strategy"], "strategy")
    if args.strategy_option:
        data["strategy"]["options"].update(_parse_options(args.strategy_option, "--strategy-option"))
    table_given = {k: getattr(args, k) for k in TABLE_FLAGS if getattr(args, k, None) is not None}
    default_eval = "table" if "table" in table_given else _space_default(space["name"], "default_evaluator", "proxy")
    recommended_search = False  # the evaluator and budget left to nasforge's recommendation
    if args.dataset is not None and "table" not in table_given and "evaluator" not in data:
        # a dataset given means a live search on it: the recommended evaluator, unless a training
        # flag says the children are to be trained
        training = _asks_for_training(args, data)
        default_eval = "proxy" if training else "auto"
        recommended_search = args.evaluator is None and not training
    evaluator = _component(args.evaluator or data.get("evaluator", default_eval), "evaluator")
    evaluator["name"] = _resolve_evaluator(evaluator["name"])
    if table_given:
        flag = "--" + next(iter(table_given)).replace("_", "-")
        if evaluator["name"] != "table":
            raise ConfigError(
                flag, f"only applies to the table evaluator (implied by --table), not {evaluator['name']!r}"
            )
        evaluator["options"].update(table_given)
        if "table" not in evaluator["options"]:
            raise ConfigError(flag, "needs the table it names a column of: add --table FILE")
    takes = _evaluator_options(evaluator["name"])
    if "dataset" in takes:
        _data_options(args, evaluator["options"], space["name"], takes)
    prescreen = data.get("prescreen")
    if getattr(args, "prescreen", None) is not None:
        prescreen = {**(prescreen if isinstance(prescreen, dict) else {}), "evaluator": args.prescreen}
    if getattr(args, "prescreen_candidates", None) is not None:
        if prescreen is None:
            raise ConfigError("--prescreen-candidates", "needs --prescreen EVALUATOR")
        prescreen = {**prescreen, "candidates": args.prescreen_candidates}
    if prescreen is not None:
        if not isinstance(prescreen, dict) or "evaluator" not in prescreen:
            raise ConfigError("prescreen", f"must be an object with evaluator and candidates, got {prescreen!r}")
        screener = _component(prescreen["evaluator"], "prescreen.evaluator")
        screener["name"] = _resolve_evaluator(screener["name"])
        screen_takes = _evaluator_options(screener["name"])
        if "dataset" in screen_takes and "dataset" not in takes:
            # a table search screened on real images: the data flags are the screener's
            _data_options(args, screener["options"], space["name"], screen_takes)
        for key in ("dataset", "network", "train_size", "val_size", "resolution", "val_fraction", "split_seed"):
            if key in screen_takes and key in evaluator["options"]:
                screener["options"].setdefault(key, evaluator["options"][key])
        prescreen = {**prescreen, "evaluator": screener}
        data["prescreen"] = prescreen
        takes = takes + screen_takes
    if args.dataset is not None and "dataset" not in takes:
        raise ConfigError(
            "--dataset", f"evaluator {evaluator['name']!r} reads no dataset (it looks results up in its table)"
        )
    data["evaluator"] = evaluator
    if args.objective is not None:
        data["objective"] = args.objective
    budget = (
        dict(data.get("budget") or {})
        if isinstance(data.get("budget"), dict)
        else ({"max_trials": data["budget"]} if "budget" in data else {})
    )
    for flag, key in (("trials", "max_trials"), ("time", "max_seconds"), ("cost", "max_cost")):
        if getattr(args, flag, None) is not None:
            budget[key] = getattr(args, flag)
    if not budget and recommended_search:
        from nasforge.evaluators import RECOMMENDED_TRIALS

        budget = {"max_trials": RECOMMENDED_TRIALS}  # the recommended search's own budget
    if budget:
        data["budget"] = budget
    else:
        data.pop("budget", None)  # SearchConfig's default budget
    limits = dict(data.get("limits") or {})
    for flag in ("max_params", "max_macs", "max_latency_ms"):
        if getattr(args, flag, None) is not None:
            limits[flag] = getattr(args, flag)
    if limits:
        data["limits"] = limits
    for flag in ("seed", "workers", "executor", "timeout", "retries", "duplicates", "reask_limit"):
        if getattr(args, flag, None) is not None:
            data[flag] = getattr(args, flag)
    _scheduler_options(args, data)
    return data


def _scheduler_options(args: Any, data: dict[str, Any]) -> None:
    """--scheduler and its rung flags into the config; the top rung defaults to the children's
    training epochs, so a scheduler never trains a child longer than a plain search would."""
    scheduler = data.get("scheduler")
    flags = {key: getattr(args, key, None) for key in ("min_epochs", "max_epochs", "eta")}
    if getattr(args, "scheduler", None) is not None:
        scheduler = {"name": args.scheduler, "options": {}} if args.scheduler != "none" else None
    if scheduler is None:
        given = [f"--{k.replace('_', '-')}" for k, v in flags.items() if v is not None]
        if given:
            raise ConfigError(given[0], "needs --scheduler (sh, hyperband, asha or median)")
        data.pop("scheduler", None)
        return
    scheduler = _component(scheduler, "scheduler")
    options = scheduler["options"]
    options.update({k: v for k, v in flags.items() if v is not None})
    train = (data["evaluator"].get("options") or {}).get("train") or {}
    if "max_epochs" not in options and isinstance(train.get("epochs"), int):
        options["max_epochs"] = train["epochs"]
    if "min_epochs" in options and "max_epochs" in options and options["min_epochs"] > options["max_epochs"]:
        raise ConfigError(
            "--min-epochs", f"must be at most --max-epochs ({options['max_epochs']}), got {options['min_epochs']}"
        )
    data["scheduler"] = scheduler


#: settings that only mean something when children are trained: given with a dataset and no
#: evaluator, they choose the training evaluator over the recommended zero-cost search
TRAINING_FLAGS = ("epochs", "batch_size", "lr", "scheduler", "min_epochs", "max_epochs", "eta", "prescreen")


def _asks_for_training(args: Any, data: dict[str, Any]) -> bool:
    return any(getattr(args, flag, None) is not None or flag in data for flag in TRAINING_FLAGS)


def _resolve_evaluator(name: str) -> str:
    from nasforge.evaluators import resolve_evaluator

    return resolve_evaluator(name)


def _evaluator_options(name: str) -> list[str]:
    from nasforge.evaluators import EVALUATORS, evaluator_options

    return evaluator_options(name) if name in EVALUATORS else []  # an unknown name is refused later


def _space_default(name: str, attribute: str, default: Any) -> Any:
    """What the space registered as `name` says about itself (see `SearchSpace`)."""
    from nasforge.spaces import SPACES

    return getattr(SPACES[name], attribute, default)


def _data_options(args: Any, opts: dict[str, Any], space: str, takes: list[str]) -> None:
    """Dataset, network and (for evaluators that train) training flags into an evaluator's options."""
    opts.setdefault("dataset", "digits")
    if args.dataset is not None:
        opts["dataset"] = args.dataset
    network = dict(_space_default(space, "proxy_network", {}))
    network.update(opts.get("network") or {})
    for flag, key in (("cells", "num_cells"), ("filters", "num_filters")):
        if getattr(args, flag, None) is not None:
            network[key] = getattr(args, flag)
    if getattr(args, "network_option", None):
        network.update(_parse_options(args.network_option, "--network-option"))
    opts["network"] = network
    if "train" in takes:
        train = dict(opts.get("train") or {})
        train.setdefault("epochs", 3)
        for flag in ("epochs", "batch_size", "lr"):
            if getattr(args, flag, None) is not None:
                train[flag] = getattr(args, flag)
        if getattr(args, "device", None) is not None:
            train["device"] = args.device
        opts["train"] = train
    elif getattr(args, "device", None) is not None and "device" in takes:
        opts["device"] = args.device
    for flag in ("train_size", "val_size", "resolution"):
        if getattr(args, flag, None) is not None:
            opts[flag] = getattr(args, flag)


def _parse_options(items: list[str], where: str) -> dict[str, Any]:
    """KEY=VALUE pairs; values are read as JSON where they parse (numbers, true, lists)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(where, f"expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def default_run_name(config: dict[str, Any]) -> str:
    return f"runs/{config['space']['name']}-{config['strategy']['name']}-{time.strftime('%Y%m%d-%H%M%S')}"


# -- nasforge search / show ----------------------------------------------------------------------
def add_search_flags(p: argparse.ArgumentParser) -> None:
    """The flags of `search` (None means "not given", so a config file can fill in; the defaults named
    in the help are what applies when neither says)."""
    from nasforge.cli.common import add_scheduler_arguments, positive_float, positive_int

    g = p.add_argument_group("what to search")
    g.add_argument(
        "--config",
        help="JSON or TOML search config file (docs/search.md); flags given here override "
        "its values, and a flag left out takes the file's value before its default",
    )
    g.add_argument("--space", help=f"search space, a registered name (nasforge list spaces; default: {DEFAULT_SPACE})")
    g.add_argument("--strategy", help="random, evolution (default), local, predictor, grid, ppo, reinforce")
    g.add_argument(
        "--strategy-option",
        action="append",
        metavar="KEY=VALUE",
        help="strategy option, e.g. population_size=20 (repeatable; default: the strategy's own "
        "values, docs/strategies.md)",
    )
    g.add_argument(
        "--evaluator",
        help="proxy (train children), nb201, macro, table, a zero-cost score "
        "(naswot, synflow, snip, grasp, fisher, jacob_cov, params, flops), "
        "zc_ensemble, or auto (the recommended one, recorded under its name); "
        "default: the space's own (proxy; nb201 and macro look results up), "
        "table with --table; with --dataset and no training flag, the recommended "
        "search (zc_ensemble, 300 trials unless a budget is given)",
    )
    g.add_argument(
        "--prescreen",
        metavar="EVALUATOR",
        help="score several proposals per trial with this cheap evaluator (e.g. zc_ensemble) and "
        "evaluate only the best; it reads the main evaluator's dataset and network (or, "
        "in a table search, --dataset and the network flags); default: none, every "
        "proposal is evaluated",
    )
    g.add_argument(
        "--prescreen-candidates",
        type=positive_int,
        metavar="N",
        help="proposals scored per evaluated trial with --prescreen (default: 10)",
    )
    add_scheduler_arguments(g, "--epochs")
    g.add_argument(
        "--objective",
        help="the reward: accuracy (validation accuracy; the default) or mnasnet (accuracy traded against MACs)",
    )
    g = p.add_argument_group("proxy training")
    g.add_argument(
        "--dataset",
        help="images the children are scored or trained on: digits (built in), npz:PATH, folder:PATH (default: digits)",
    )
    g.add_argument("--epochs", type=positive_int, help="training epochs per child (default: 3)")
    g.add_argument("--batch-size", type=positive_int, help="images per training batch (default: 64)")
    g.add_argument(
        "--lr", type=positive_float, help="SGD learning rate at the start of the cosine schedule (default: 0.05)"
    )
    g.add_argument(
        "--network-option",
        action="append",
        metavar="KEY=VALUE",
        help="option of the space's network, e.g. channels=8 or cells_per_stage=1 for nb201 "
        "(repeatable; default: a small proxy network, docs/search.md)",
    )
    g.add_argument("--cells", type=positive_int, help="NASNet children: normal cells per stack, N (default: 1)")
    g.add_argument("--filters", type=positive_int, help="NASNet children: filters of the first stack, F (default: 8)")
    g.add_argument(
        "--train-size",
        type=positive_int,
        help="train on a stratified subset of this many images (default: the whole training split)",
    )
    g.add_argument(
        "--val-size",
        type=positive_int,
        help="validate on a stratified subset of this many images (default: the whole validation "
        "split, 10%% of the training images)",
    )
    g.add_argument(
        "--resolution", type=positive_int, help="resize images to this side in pixels (default: the dataset's own)"
    )
    g.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        help="where children train; auto takes cuda when there is one (default: auto)",
    )
    g = p.add_argument_group("tabulated benchmark (--evaluator table, implied by --table)")
    g.add_argument(
        "--table",
        help="CSV table (gzip or plain) with an architecture column and metric columns "
        "(default: none, children are evaluated)",
    )
    g.add_argument("--reward-column", help="column searched on, e.g. c10_valid_acc_12ep (required with --table)")
    g.add_argument(
        "--report-column", help="column reported beside it, a test column is never searched on (default: none)"
    )
    g.add_argument("--arch-column", help="architecture column (default: arch_str / arch / architecture)")
    g = p.add_argument_group("budget and limits")
    g.add_argument(
        "--trials",
        type=positive_int,
        help="stop after this many trials (default: 48 when no --time, --cost or config budget is set)",
    )
    g.add_argument(
        "--time",
        type=positive_float,
        help="stop after this many seconds of wall-clock time, over all sessions; a child still training "
        "then is stopped and recorded at the epochs it reached (default: no limit)",
    )
    g.add_argument(
        "--cost",
        type=positive_float,
        help="stop after this many seconds of simulated training time, a table's cost column (default: no limit)",
    )
    g.add_argument(
        "--max-params", type=positive_int, help="reject architectures with more parameters (default: no limit)"
    )
    g.add_argument(
        "--max-macs",
        type=positive_int,
        help="reject architectures with more multiply-adds per image (default: no limit)",
    )
    g.add_argument(
        "--max-latency-ms",
        type=positive_float,
        help="reject architectures slower than this many milliseconds per forward pass of one image "
        "(default: no limit)",
    )
    g = p.add_argument_group("execution")
    g.add_argument("--seed", type=int, help="seed of the strategy and of every trial's training (default: 0)")
    g.add_argument("--workers", type=positive_int, help="evaluate this many children at once (default: 1)")
    g.add_argument("--executor", help="serial, process, ray (default: serial for 1 worker, else process)")
    g.add_argument("--ray-address", help="with --executor ray: the cluster to join (default: start a local Ray)")
    g.add_argument(
        "--timeout",
        type=positive_float,
        help="fail a trial that runs longer than this many seconds (default: no limit)",
    )
    g.add_argument(
        "--retries",
        type=int,
        help="re-run a failed trial (an error, a NaN loss, a timeout) up to this many times with a new "
        "seed (default: 0)",
    )
    g.add_argument(
        "--duplicates",
        choices=["reask", "reuse", "evaluate"],
        help="a proposal already asked in the run: reask (default: not a trial, the strategy is "
        "asked again), reuse (a trial that reuses the stored result, counted in the budget) "
        "or evaluate (evaluated again)",
    )
    g.add_argument(
        "--reask-limit",
        type=int,
        metavar="N",
        help="with --duplicates reask: stop the search after N repeats in a row (default 100)",
    )
    g.add_argument(
        "--run",
        metavar="FOLDER",
        help="run folder, any path: absolute, relative to the current directory or under ~ "
        "(default: the config file's run, else runs/SPACE-STRATEGY-TIME)",
    )
    g.add_argument("--resume", action="store_true", help="continue the run in --run where it stopped")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of tables")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("search", help="search architectures (train children, or look them up in a table)")
    add_search_flags(p)
    p.set_defaults(func=cmd_search)


def search_run_dir(flag: str | None, from_file: Any, default: str) -> tuple[str, Path]:
    """(name to show, folder) of a search run: --run, else the config file's `run`, else `default`.

    --run is the user's own path (anywhere). A config file may come from someone else, so its `run`
    must name a folder inside the current directory: no '..', no absolute path, no link out of it.
    """
    if flag is not None:
        return flag, user_path(flag, "--run")
    if from_file is not None:
        from nasforge.experiment import resolve_run_dir

        return from_file, resolve_run_dir(from_file, Path.cwd())
    return default, user_path(default, "--run")


def configure_executor(args: Any) -> None:
    """`--ray-address` becomes Ray's own RAY_ADDRESS, which the Ray executor (and Ray) read."""
    if getattr(args, "ray_address", None):
        if getattr(args, "executor", None) != "ray":
            raise ConfigError("--ray-address", "only applies with --executor ray")
        os.environ["RAY_ADDRESS"] = args.ray_address


def cmd_search(args: Any) -> int:
    from nasforge.experiment import Experiment, SearchConfig

    configure_executor(args)
    file_data = read_config_file(args.config) if args.config else {}
    file_run = file_data.pop("run", None)  # where to write, not part of the search's config
    config = SearchConfig.from_dict(search_config_dict(args, file_data))
    run_name, run_dir = search_run_dir(args.run, file_run, default_run_name(config.to_dict()))
    with Experiment.from_config(
        config, run_dir, resume=args.resume, progress=not (args.no_progress or args.json)
    ) as experiment:
        summary = experiment.run()
        best = experiment.store.best(5)
        rungs = _rungs_reached(experiment.store)
    if args.json:
        print_json({**summary.to_dict(), "top": [t.to_dict() for t in best]})
        return 0
    out = console()
    out.print(
        f"[bold]{summary.stop_reason}[/bold]: {summary.done} done, {summary.failed} failed, "
        f"{summary.reused} reused, in {summary.elapsed:.1f} s"
    )
    _print_leaderboard(best, f"best of {run_dir}", rungs)
    shown = shlex.quote(run_name)
    out.print(f"run folder: {run_dir}   (nasforge show {shown}; resume with --run {shown} --resume)")
    return 0


def _rungs_reached(store: Any) -> dict[int, int]:
    """Trial -> the highest rung it reached under a multi-fidelity scheduler."""
    reached: dict[int, int] = {}
    for r in store.rungs():
        reached[r.trial_id] = max(r.rung, reached.get(r.trial_id, 0))
    return reached


def _print_leaderboard(trials: list, title: str, rungs: dict[int, int] | None = None) -> None:
    """The top trials; `rungs` (trial -> highest rung reached) under a multi-fidelity scheduler."""
    rungs = rungs or {}
    from rich.table import Table

    table = Table(title=title)
    fidelity = any("epochs" in (t.metrics or {}) for t in trials)  # a multi-fidelity or timed run
    columns = ["trial", "reward", "val acc", "params", "MACs"] + (["epochs", "rung"] if fidelity else [])
    for col in columns + ["key"]:
        table.add_column(col)
    for t in trials:
        m = t.metrics or {}
        row = [
            str(t.id),
            f"{t.reward:.4f}" if t.reward is not None else "-",
            f"{m['val_accuracy']:.4f}" if "val_accuracy" in m else "-",
            f"{int(m['params']):,}" if "params" in m else "-",
            f"{int(m['macs']):,}" if "macs" in m else "-",
        ]
        if fidelity:
            stopped = " (stopped)" if m.get("stopped") else ""
            row += [f"{m['epochs']:g}{stopped}" if "epochs" in m else "-", str(rungs[t.id]) if t.id in rungs else "-"]
        table.add_row(*row, t.key)
    console().print(table)
