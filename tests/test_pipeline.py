"""`nasforge run` end to end on tiny settings, including a kill in stage 2 and a resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nasforge.errors import ConfigError
from nasforge.experiment import Store
from nasforge.pipeline import PipelineConfig, run_pipeline

TINY = ["--trials", "2", "--epochs", "1", "--step", "0.25", "--family-epochs", "1", "--phi-max", "1",
        "--train-size", "200", "--val-size", "60", "--no-progress"]
TINY_CONFIG = PipelineConfig(trials=2, epochs=1, step=0.25, family_epochs=1, phi_max=1, train_size=200, val_size=60)


def _done_trials(run_dir):
    if not Store.exists(run_dir):
        return 0
    store = Store.open(run_dir)
    try:
        return sum(t.status == "done" for t in store.trials())
    finally:
        store.close()


def test_pipeline_resumes_after_a_kill_in_the_coefficient_search(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "nasforge.cli", "run", *TINY, "--run", "runs/p"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    coefficients = tmp_path / "runs" / "p" / "coefficients"
    deadline = time.monotonic() + 300
    while _done_trials(coefficients) < 1:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "stage 2 never started"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    run_dir = tmp_path / "runs" / "p"
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        run_pipeline(TINY_CONFIG, run_dir, progress=False)
    other = PipelineConfig(**{**TINY_CONFIG.to_dict(), "phi_max": 2})
    with pytest.raises(ConfigError, match=r"phi_max \(1 -> 2\)"):
        run_pipeline(other, run_dir, resume=True, progress=False)

    result = run_pipeline(TINY_CONFIG, run_dir, resume=True, progress=False)
    store = Store.open(run_dir)
    markers = store.markers()
    assert len(store.trials()) == 2  # the search was not repeated
    store.close()
    coef = Store.open(coefficients)
    keys = [t.key for t in coef.trials()]
    assert len(keys) == len(set(keys)) and all(t.status == "done" for t in coef.trials())
    assert coef.integrity_check() == []
    coef.close()
    for stage in ("search", "coefficients", "family"):
        assert markers[f"pipeline.stage.{stage}"] is True
    family = markers["family"]
    assert [m["phi"] for m in family["members"]] == [0, 1]
    assert family["members"][1]["macs"] > family["members"][0]["macs"]
    assert all(0 <= m["val_accuracy"] <= 1 and 0 <= m["test_accuracy"] <= 1 for m in family["members"])
    assert markers["coefficients"]["best"]["alpha"] * markers["coefficients"]["best"]["beta"] ** 2 > 1
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    assert summary and (run_dir / "report" / "index.html").is_file()
    assert result["report"].endswith("index.html")


def test_pipeline_config_errors():
    with pytest.raises(ConfigError, match="^budget: unknown budget 'huge' \\(allowed: small, medium, large\\)"):
        PipelineConfig(budget="huge")
    with pytest.raises(ConfigError, match="^space: the pipeline cannot scale space 'nb201'"):
        PipelineConfig(space="nb201")
    with pytest.raises(ConfigError, match="^phi_max: must be an integer from 0 to 8"):
        PipelineConfig(phi_max=-1)
