"""`nasforge search` / `nasforge show` through the real CLI (tables: no training needed)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nasforge.cli import main
from nasforge.data.paths import data_path

NB201 = data_path("nasbench201", "nb201_cifar10.csv.gz")
needs_nb201 = pytest.mark.skipif(NB201 is None, reason="shared NAS-Bench-201 table not found (set NASFORGE_DATA)")


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli(*args):
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
        (["--space", "nb201", "--dataset", "digits"], "--dataset: evaluator 'nb201' reads no dataset"),
        (["--trials", "0"], "--trials: expected a positive integer"),
        (["--run", "../outside"], "must not contain '..'"),
        (["--config", "missing.toml"], "--config: no such file"),
        (["--ray-address", "127.0.0.1:1"], "--ray-address: only applies with --executor ray"),
        (["--space", "nb201", "--arch-column", "arch"], "--arch-column: only applies to the table evaluator"),
        (["--space", "nb201", "--evaluator", "table", "--reward-column", "acc"],
         "--reward-column: needs the table it names a column of: add --table FILE"),
    ],
)
def test_bad_search_input(in_tmp, args, message):
    code, _, err = cli("search", *args)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_search_any_table_by_its_column_names(in_tmp, capsys):
    from test_reliability import write_synthetic_nb201_table

    write_synthetic_nb201_table(in_tmp / "t.csv")  # columns arch_str, valid, test
    table = ["search", "--space", "nb201", "--table", "t.csv", "--strategy", "ppo", "--trials", "6"]
    assert main([*table, "--reward-column", "valid", "--report-column", "test", "--run", "runs/t", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
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
        code, _, err = cli(*table, *args, "--run", "runs/bad")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert not (in_tmp / "runs" / "bad").exists()


def test_bad_config_file(in_tmp):
    (in_tmp / "bad.toml").write_text("space = [\n")
    code, _, err = cli("search", "--config", "bad.toml")
    assert code == 2 and "is not valid TOML" in err
    (in_tmp / "keys.json").write_text('{"space": "nb201", "colour": "red"}')
    code, _, err = cli("search", "--config", "keys.json")
    assert code == 2 and "colour: unknown config key" in err


@needs_nb201
def test_existing_and_corrupt_runs_are_never_overwritten(in_tmp):
    base = ["search", "--space", "nb201", "--strategy", "random", "--trials", "3", "--no-progress"]
    assert cli(*base, "--run", "runs/one")[0] == 0
    db = in_tmp / "runs" / "one" / "nasforge.db"
    before = db.read_bytes()
    code, _, err = cli(*base, "--run", "runs/one")  # no --resume: refuse, keep the run
    assert code == 2 and len(err.strip().splitlines()) == 1
    code, _, err = cli(*base[:-3], "--strategy", "ppo", "--trials", "5", "--run", "runs/one", "--resume")
    assert code == 2 and "strategy" in err  # another config: refuse, name the key
    assert db.read_bytes() == before
    corrupt = in_tmp / "runs" / "bad"
    corrupt.mkdir(parents=True)
    (corrupt / "nasforge.db").write_bytes(b"this is not a database" * 100)
    code, _, err = cli(*base, "--run", "runs/bad", "--resume")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert (corrupt / "nasforge.db").read_bytes() == b"this is not a database" * 100
    code, _, err = cli("show", "runs/nothing")
    assert code == 2 and "no nasforge run" in err
