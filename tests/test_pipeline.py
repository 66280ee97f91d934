"""`nasforge run` settings; the pipeline end to end, killed in every stage and resumed, is in
test_reliability.py."""

import pytest

from nasforge.errors import ConfigError
from nasforge.pipeline import BUDGETS, PipelineConfig


def test_pipeline_config_errors():
    with pytest.raises(ConfigError, match="^budget: unknown budget 'huge' \\(allowed: small, medium, large\\)"):
        PipelineConfig(budget="huge")
    with pytest.raises(ConfigError, match="^space: the pipeline cannot scale space 'nb201'"):
        PipelineConfig(space="nb201")
    with pytest.raises(ConfigError, match="^phi_max: must be an integer from 0 to 8"):
        PipelineConfig(phi_max=-1)


def test_budgets_grow_and_explicit_settings_win():
    order = [BUDGETS[b] for b in ("small", "medium", "large")]
    for key in ("trials", "epochs", "family_epochs", "filters"):
        assert order[0][key] <= order[1][key] <= order[2][key]
    config = PipelineConfig(budget="small", trials=3)
    assert config.setting("trials") == 3 and config.setting("epochs") == BUDGETS["small"]["epochs"]


def test_family_schedule_and_patience_settings():
    assert PipelineConfig().family_schedule == "grow" and PipelineConfig().test_dataset is None
    with pytest.raises(ConfigError, match="^family_schedule: unknown family schedule 'slow'"):
        PipelineConfig(family_schedule="slow")
    with pytest.raises(ConfigError, match="^patience: only applies to family_schedule 'early-stop'"):
        PipelineConfig(patience=2)
    assert PipelineConfig(family_schedule="early-stop", patience=2).patience == 2


def test_grid_seeds_reach_the_coefficient_search(tmp_path, monkeypatch, capsys):
    import nasforge.pipeline
    from nasforge.cli import main
    from nasforge.pipeline import Pipeline
    from nasforge.scaling import NASNetFamily

    with pytest.raises(ConfigError, match="^grid_seeds: must be a positive integer, got 0"):
        PipelineConfig(grid_seeds=0)
    family = NASNetFamily(num_cells=1, num_filters=8, base_resolution=8, num_classes=10)
    pipeline = Pipeline(PipelineConfig(grid_seeds=3), tmp_path / "run", progress=False)
    assert pipeline._scaled_evaluator(family, 1.0).seeds == 3
    assert Pipeline(PipelineConfig(), tmp_path / "run", progress=False)._scaled_evaluator(family, 1.0).seeds == 1
    seen = []
    monkeypatch.setattr(nasforge.pipeline, "run_pipeline", lambda config, *a, **k: seen.append(config) or {})
    main(["run", "--grid-seeds", "2", "--run", str(tmp_path / "cli"), "--no-progress", "--json"])
    assert seen[0].grid_seeds == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--grid-seeds", "0"])
    assert exit_info.value.code == 2 and "--grid-seeds" in capsys.readouterr().err


OLD_CONFIG = {"dataset": "digits", "space": "nasnet", "strategy": "evolution", "budget": "small", "trials": 2,
              "epochs": 1, "step": 0.25, "family_epochs": 1, "cells": None, "filters": None, "phi_max": 1,
              "seed": 0, "train_size": 150, "val_size": 50}  # a run stored before the family schedules


def test_resuming_a_run_of_an_older_nasforge_says_what_changed(tmp_path, capsys):
    from nasforge.cli import main
    from nasforge.experiment import Store
    from nasforge.pipeline import Pipeline

    run = tmp_path / "old"
    with Store.create(run, {}) as store:
        store.set_marker("pipeline.config", OLD_CONFIG)
    argv = ["run", "--run", str(run), "--resume", "--trials", "2", "--epochs", "1", "--step", "0.25",
            "--family-epochs", "1", "--phi-max", "1", "--train-size", "150", "--val-size", "50", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert 'family_schedule ("fixed" -> "grow")' in err and "resume it with --family-schedule fixed" in err
    fixed = PipelineConfig(**{k: v for k, v in OLD_CONFIG.items()}, family_schedule="fixed")
    with Store.open(run) as store:
        Pipeline(fixed, run, resume=True, progress=False)._check_config(store)  # the old run's own settings


def test_run_refuses_a_test_dataset_that_does_not_fit_before_training(tmp_path, capsys):
    import numpy as np

    from nasforge.cli import main
    from nasforge.pipeline import Pipeline

    np.savez(tmp_path / "rgb.npz", x=np.zeros((20, 8, 8, 3), np.uint8), y=np.arange(20) % 10)
    np.savez(tmp_path / "grey.npz", x=np.zeros((20, 8, 8), np.uint8), y=np.arange(20) % 10)
    run = tmp_path / "r"
    assert main(["run", "--run", str(run), "--test-dataset", f"npz:{tmp_path}/rgb.npz", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--test-dataset:" in err and "3 channel(s)" in err
    assert not run.exists()
    splits = Pipeline(PipelineConfig(test_dataset=f"npz:{tmp_path}/grey.npz"), run)._check_test_dataset()
    assert len(splits.test) == 20 and splits.num_classes == 10


def test_the_search_stage_runs_under_the_scheduler_the_run_names(tmp_path, capsys):
    from nasforge.cli import main
    from nasforge.experiment import Experiment, SearchConfig
    from nasforge.pipeline import search_config

    config = PipelineConfig(trials=3, epochs=2, scheduler="sh", eta=2, train_size=120, val_size=40)
    data = search_config(config)
    assert data["scheduler"] == {"name": "sh", "options": {"eta": 2, "max_epochs": 2}}  # top rung: --epochs
    with Experiment.from_config(SearchConfig.from_dict(data), tmp_path / "run", progress=False) as experiment:
        experiment.run()
        store = experiment.store
        epochs = sorted(t.metrics["epochs"] for t in store.trials("done"))
        promoted = [r for r in store.rungs() if r.decision == "promote"]
    # every child trained 1 epoch first; only the promoted went on to the top rung (--epochs)
    assert epochs[0] == 1 and set(epochs) == {1, 2} and epochs.count(2) == len(promoted)
    assert "scheduler" not in search_config(PipelineConfig())
    for argv, message in ((["--eta", "3"], "eta: only applies with a scheduler"),
                          (["--scheduler", "sh", "--min-epochs", "3", "--epochs", "2"],
                           "scheduler.min_epochs: must be at most max_epochs (2), got 3")):
        assert main(["run", *argv, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err


def test_a_real_dataset_searches_its_baseline_with_the_recommended_zero_cost_search(tmp_path, capsys):
    import numpy as np

    from nasforge.cli import main
    from nasforge.evaluators import RECOMMENDED, RECOMMENDED_TRIALS
    from nasforge.experiment import SearchConfig
    from nasforge.pipeline import search_config

    rng = np.random.default_rng(0)
    images = tmp_path / "images.npz"
    np.savez(images, x=rng.integers(0, 255, (100, 8, 8, 3), np.uint8), y=np.arange(100) % 3)
    real = PipelineConfig(dataset=f"npz:{images}")
    assert real.search_evaluator == RECOMMENDED and PipelineConfig().search_evaluator == "proxy"
    data = search_config(real)
    assert data["evaluator"]["name"] == RECOMMENDED and "train" not in data["evaluator"]["options"]
    assert data["evaluator"]["options"]["network"] == search_config(PipelineConfig())["evaluator"]["options"]["network"]
    assert data["budget"] == {"max_trials": RECOMMENDED_TRIALS}  # not the preset's, sized for trained children
    assert search_config(PipelineConfig(dataset=f"npz:{images}", trials=3))["budget"] == {"max_trials": 3}
    assert PipelineConfig(dataset=f"npz:{images}", scheduler="sh").search_evaluator == "proxy"
    assert PipelineConfig(dataset=f"npz:{images}", search_evaluator="proxy").search_evaluator == "proxy"
    assert PipelineConfig(search_evaluator="auto").search_evaluator == RECOMMENDED

    SearchConfig.from_dict(data).build()  # the options are the evaluator's own: it checks them

    for argv, message in ((["--search-evaluator", "nb201_table"], "search_evaluator: unknown or table-only evaluator"),
                          (["--search-evaluator", "zc_ensemble", "--scheduler", "sh"],
                           "scheduler: needs children that train")):
        assert main(["run", *argv, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err


def test_a_real_dataset_run_of_an_older_nasforge_resumes_with_the_proxy_search(tmp_path, capsys):
    from nasforge.cli import main
    from nasforge.experiment import Store

    run = tmp_path / "old"
    with Store.create(run, {}) as store:
        store.set_marker("pipeline.config", {**OLD_CONFIG, "dataset": "npz:/data/x.npz"})
    assert main(["run", "--run", str(run), "--resume", "--dataset", "npz:/data/x.npz", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert 'search_evaluator ("proxy" -> "zc_ensemble")' in err and "--search-evaluator proxy" in err
