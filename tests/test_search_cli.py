"""`nasforge search` / `nasforge show` through the real CLI (tables: no training needed)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from toys import run_main

from nasforge.cli import main
from nasforge.data.paths import data_path
from nasforge.experiment import Store

NB201 = data_path("nasbench201", "nb201_cifar10.csv.gz")
needs_nb201 = pytest.mark.skipif(NB201 is None, reason="shared NAS-Bench-201 table not found (set NASFORGE_DATA)")


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli(*args):
    """The real console entry point, in a subprocess (test_bad_config_file); the other tests run
    `main()` in this process (`run_main`), which saves seconds of imports per call."""
    proc = subprocess.run([sys.executable, "-m", "nasforge.cli", *args], capture_output=True, text=True,
                          cwd=os.getcwd())
    return proc.returncode, proc.stdout, proc.stderr


@needs_nb201
def test_search_show_and_resume_on_the_nb201_table(in_tmp, capsys):
    args = ["search", "--space", "nb201", "--strategy", "evolution", "--strategy-option", "population_size=5",
            "--strategy-option", "sample_size=2", "--run", "runs/evo", "--json"]
    assert main(args + ["--trials", "12"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["trials"] == 12 and 0.3 < out["top"][0]["reward"] <= 1.0
    assert (in_tmp / "runs" / "evo" / "nasforge.db").is_file()
    # more budget on resume continues the same run
    assert main(args + ["--trials", "20", "--resume"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["trials"] == 20
    assert main(["show", "runs/evo", "--json", "--top", "3"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert len(shown["top"]) == 3 and shown["counts"]["total"] == 20 and shown["counts"]["done"] == 20


@needs_nb201
def test_toml_config_holds_the_same_settings_as_flags(in_tmp, capsys):
    (in_tmp / "search.toml").write_text(
        'space = "nb201"\nseed = 3\n[strategy]\nname = "random"\n[budget]\nmax_trials = 6\n')
    assert main(["search", "--config", "search.toml", "--run", "runs/a", "--json"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(["search", "--space", "nb201", "--strategy", "random", "--seed", "3", "--trials", "6",
                 "--run", "runs/b", "--json"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert [t["key"] for t in a["top"]] == [t["key"] for t in b["top"]]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--strategy", "annealing"], "strategy: unknown strategy 'annealing' (allowed:"),
        (["--space", "transformer"], "unknown space 'transformer'"),
        (["--space", "nb201", "--evaluator", "nb201", "--dataset", "digits"],
         "--dataset: evaluator 'nb201' reads no dataset"),
        (["--min-epochs", "2"], "--min-epochs: needs --scheduler (sh, hyperband, asha or median)"),
        (["--scheduler", "sh", "--min-epochs", "4", "--max-epochs", "2"], "--min-epochs: must be at most --max-epochs (2), got 4"),
        (["--scheduler", "sh", "--eta", "1"], "scheduler.eta: must be an integer >= 2, got 1"),
        (["--trials", "0"], "--trials: expected a positive integer"),
        (["--run", ""], "--run: '' names no folder"),
        (["--run", "runs/a\nb"], "--run: 'runs/a\\nb' must not contain control characters"),
        (["--config", "missing.toml"], "--config: no such file"),
        (["--ray-address", "127.0.0.1:1"], "--ray-address: only applies with --executor ray"),
        (["--space", "nb201", "--arch-column", "arch"], "--arch-column: only applies to the table evaluator"),
        (["--space", "nb201", "--evaluator", "table", "--reward-column", "acc"],
         "--reward-column: needs the table it names a column of: add --table FILE"),
    ],
)
def test_bad_search_input(in_tmp, capfd, args, message):
    code, _, err = run_main(capfd, "search", *args)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_search_any_table_by_its_column_names(in_tmp, capfd):
    from toys import write_synthetic_nb201_table

    write_synthetic_nb201_table(in_tmp / "t.csv")  # columns arch_str, valid, test
    table = ["search", "--space", "nb201", "--table", "t.csv", "--strategy", "ppo", "--trials", "6"]
    code, out, _ = run_main(capfd, *table, "--reward-column", "valid", "--report-column", "test", "--run", "runs/t",
                            "--json")
    assert code == 0
    out = json.loads(out)
    assert out["trials"] == 6 and all(50 <= t["reward"] <= 90 for t in out["top"])  # the column's own units
    rows = {r.split(",")[0]: r.split(",")[1:] for r in (in_tmp / "t.csv").read_text().splitlines()[1:]}
    from nasforge.experiment import Store

    with Store.open(in_tmp / "runs" / "t") as store:
        assert store.config()["evaluator"]["name"] == "table"
        for t in store.trials():
            assert [t.metrics["val_accuracy"], t.metrics["test_accuracy"]] == [float(v) for v in rows[t.arch["arch"]]]
    for args, message in (
        (["--reward-column", "nope"], "reward_column: no column 'nope' in t.csv (allowed: arch_str, valid, test)"),
        (["--reward-column", "valid", "--report-column", "tst"], "report_column: no column 'tst'"),
        (["--reward-column", "valid", "--evaluator", "nb201"], "--table: only applies to the table evaluator"),
    ):
        code, _, err = run_main(capfd, *table, *args, "--run", "runs/bad")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert not (in_tmp / "runs" / "bad").exists()


def test_bad_config_file(in_tmp, capfd):
    """The TOML case in a fresh interpreter (the module's one real command: one line on stderr,
    nothing printed on import), the JSON case in this process."""
    (in_tmp / "bad.toml").write_text("space = [\n")
    code, out, err = cli("search", "--config", "bad.toml")
    assert code == 2 and "is not valid TOML" in err and out == ""
    assert err.startswith("nasforge: error: ") and err.count("\n") == 1, err
    (in_tmp / "keys.json").write_text('{"space": "nb201", "colour": "red"}')
    code, out, err = run_main(capfd, "search", "--config", "keys.json")
    assert code == 2 and "colour: unknown config key" in err and out == ""
    assert err.startswith("nasforge: error: ") and err.count("\n") == 1, err


def _trials(run_dir: Path) -> list[tuple[int, str, str]]:
    from nasforge.experiment import Store

    with Store.open(run_dir) as store:
        return [(t.id, t.key, t.status) for t in store.trials()]


@pytest.mark.parametrize("form", ["absolute", "relative", "home"])
def test_a_run_lives_where_the_user_says_and_resumes_from_anywhere(tmp_path, monkeypatch, capsys, form):
    """--run is the user's path: absolute, relative to the current directory ('..' included) or
    under ~. Resumed from another directory, by its absolute path or another relative one, the run
    continues in the same folder with the trials of an uninterrupted run."""
    from toys import write_synthetic_nb201_table

    work, elsewhere, home = tmp_path / "work", tmp_path / "elsewhere" / "deeper", tmp_path / "home"
    for folder in (work, elsewhere, home):
        folder.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    write_synthetic_nb201_table(tmp_path / "t.csv")
    search = ["search", "--space", "nb201", "--table", str(tmp_path / "t.csv"), "--reward-column", "valid",
              "--strategy", "ppo", "--seed", "1", "--no-progress", "--json"]
    typed, folder = {"absolute": (str(tmp_path / "data" / "exp" / "x"), tmp_path / "data" / "exp" / "x"),
                     "relative": ("../runs/x", tmp_path / "runs" / "x"),
                     "home": ("~/exp/x", home / "exp" / "x")}[form]
    monkeypatch.chdir(work)
    assert main([*search, "--trials", "8", "--run", str(tmp_path / "reference")]) == 0
    assert main([*search, "--trials", "3", "--run", typed]) == 0
    assert (folder / "nasforge.db").is_file() and list(work.iterdir()) == []
    monkeypatch.chdir(elsewhere)
    assert main([*search, "--trials", "5", "--run", str(folder), "--resume"]) == 0
    capsys.readouterr()
    assert main([*search, "--trials", "8", "--run", os.path.relpath(folder), "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["trials"] == 8
    assert main(["show", typed if form != "relative" else os.path.relpath(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["total"] == 8
    assert list(elsewhere.iterdir()) == [] and list(work.iterdir()) == []
    assert _trials(folder) == _trials(tmp_path / "reference")


@pytest.mark.parametrize("typed", ["../runs/x", "ABSOLUTE", "~/x"])
def test_the_pipeline_run_folder_is_the_users_path(tmp_path, monkeypatch, capsys, typed):
    """`nasforge run --run` takes the same paths (the run found there proves where it looked)."""
    from nasforge.experiment import Store

    folder = tmp_path / "runs" / "x"
    Store.create(folder, {"space": {"name": "nasnet", "options": {}}}).close()
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("HOME", str(tmp_path / "runs"))
    assert main(["run", "--run", str(folder) if typed == "ABSOLUTE" else typed, "--no-progress"]) == 2
    assert f"run: {folder} already holds a run; pass --resume to continue it" in capsys.readouterr().err


@pytest.mark.parametrize("name, message", [
    ("../outside", "run: '../outside' must not contain '..'"),
    ("ABSOLUTE", "not an absolute path"),
    (3, "run: must be a run name (a string), got 3"),
])
def test_a_config_files_run_name_stays_inside_the_current_directory(in_tmp, capfd, name, message):
    """A config file may come from someone else: its run name is refused if it leaves the current
    directory (--run, typed by the user, goes anywhere)."""
    if name == "ABSOLUTE":
        name = str(in_tmp.parent / "elsewhere")
    (in_tmp / "search.json").write_text(json.dumps({"space": "nb201", "run": name}))
    code, out, err = run_main(capfd, "search", "--config", "search.json")
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and out == ""
    assert sorted(p.name for p in in_tmp.iterdir()) == ["search.json"]


def test_a_config_files_run_name_and_the_flag_over_it(in_tmp, capsys):
    from toys import write_synthetic_nb201_table

    write_synthetic_nb201_table(in_tmp / "t.csv")
    (in_tmp / "search.json").write_text(json.dumps(
        {"space": "nb201", "strategy": "random", "budget": 2, "run": "runs/from-config",
         "evaluator": {"name": "table", "options": {"table": "t.csv", "reward_column": "valid"}}}))
    assert main(["search", "--config", "search.json", "--no-progress", "--json"]) == 0
    assert (in_tmp / "runs" / "from-config" / "nasforge.db").is_file()
    (in_tmp / "sub").mkdir()
    assert main(["search", "--config", "search.json", "--run", "sub/../flag", "--no-progress", "--json"]) == 0
    assert (in_tmp / "flag" / "nasforge.db").is_file() and not (in_tmp / "runs" / "flag").exists()
    from nasforge.experiment import Store

    with Store.open(in_tmp / "flag") as store:  # where to write is not part of the search's config
        assert "run" not in store.config()


@needs_nb201
def test_existing_and_corrupt_runs_are_never_overwritten(in_tmp, capfd):
    base = ["search", "--space", "nb201", "--strategy", "random", "--trials", "3", "--no-progress"]
    assert run_main(capfd, *base, "--run", "runs/one")[0] == 0
    db = in_tmp / "runs" / "one" / "nasforge.db"
    before = db.read_bytes()
    code, _, err = run_main(capfd, *base, "--run", "runs/one")  # no --resume: refuse, keep the run
    assert code == 2 and len(err.strip().splitlines()) == 1
    code, _, err = run_main(capfd, *base[:-3], "--strategy", "ppo", "--trials", "5", "--run", "runs/one", "--resume")
    assert code == 2 and "strategy" in err  # another config: refuse, name the key
    assert db.read_bytes() == before
    corrupt = in_tmp / "runs" / "bad"
    corrupt.mkdir(parents=True)
    (corrupt / "nasforge.db").write_bytes(b"this is not a database" * 100)
    code, _, err = run_main(capfd, *base, "--run", "runs/bad", "--resume")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert (corrupt / "nasforge.db").read_bytes() == b"this is not a database" * 100
    code, _, err = run_main(capfd, "show", "runs/nothing")
    assert code == 2 and "no nasforge run" in err


def test_search_under_a_scheduler_trains_children_live_and_show_gives_their_rungs(in_tmp, capsys):
    (in_tmp / "sh.toml").write_text('space = "nb201"\nstrategy = "random"\n'
                                    '[scheduler]\nname = "sh"\noptions = { eta = 2, n = 4 }\n')
    args = ["search", "--config", "sh.toml", "--dataset", "digits", "--train-size", "256", "--val-size", "128",
            "--network-option", "channels=4", "--network-option", "cells_per_stage=1", "--min-epochs", "1",
            "--max-epochs", "2", "--trials", "4", "--run", "runs/sh", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["trials"] == 4 and out["done"] == 4
    assert out["best"]["metrics"]["epochs"] == 2.0  # a dataset given: the proxy trained it, to the top rung
    assert main(["show", "runs/sh", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert sorted((r["rung"], r["decision"]) for r in shown["rungs"]) == [
        (0, "promote"), (0, "promote"), (0, "stop"), (0, "stop"), (1, "stop"), (1, "stop")]
    with Store.open(in_tmp / "runs/sh") as store:
        stored = store.config()
    assert stored["scheduler"] == {"name": "sh", "options": {"eta": 2, "n": 4, "min_epochs": 1, "max_epochs": 2}}


def _config_for(*flags):
    from nasforge.cli import build_parser
    from nasforge.cli.search import search_config_dict

    return search_config_dict(build_parser().parse_args(["search", *flags]))


@pytest.mark.parametrize(
    ("flags", "evaluator", "budget"),
    [
        # a dataset alone: the recommended zero-cost search with its own trial budget
        (["--dataset", "npz:my.npz"], "zc_ensemble", {"max_trials": 300}),
        (["--dataset", "npz:my.npz", "--time", "1800"], "zc_ensemble", {"max_seconds": 1800.0}),
        # any setting of training says the children are to be trained
        (["--dataset", "npz:my.npz", "--epochs", "5"], "proxy", None),
        (["--dataset", "npz:my.npz", "--scheduler", "sh"], "proxy", None),
        (["--dataset", "npz:my.npz", "--prescreen", "naswot"], "proxy", None),
        (["--dataset", "npz:my.npz", "--evaluator", "proxy"], "proxy", None),
        (["--dataset", "npz:my.npz", "--evaluator", "auto"], "zc_ensemble", None),
        # no dataset: the space's own default (the built-in digits for NASNet, the table for NB201)
        ([], "proxy", None),
        (["--space", "nb201"], "nb201", None),
    ],
)
def test_a_dataset_given_means_the_recommended_live_search(flags, evaluator, budget):
    config = _config_for(*flags)
    assert config["evaluator"]["name"] == evaluator
    assert config.get("budget") == budget
    if evaluator != "nb201":
        assert config["evaluator"]["options"]["dataset"] == ("npz:my.npz" if flags else "digits")
