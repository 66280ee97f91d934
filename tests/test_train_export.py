"""`nasforge train` and `nasforge export` end to end, on a tiny slice of the digits data.

Everything trains NASNet-A at N=1, F=8 for one epoch on 135 images, so the whole module stays
well under a minute on two busy cores.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from nasforge.cli import main
from nasforge.evaluators.proxy import cached_splits
from nasforge.evaluators.training import TrainConfig, evaluate_accuracy
from nasforge.export import ModelConfig, export_model, load_model, read_model_config, read_weights
from nasforge.spaces import NASNetSpace
from nasforge.spaces.nasnet_cells import NASNET_A

TINY = ["--epochs", "1", "--cells", "1", "--filters", "8", "--no-progress"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder (made the cwd) with a tiny digits npz dataset, NASNet-A's JSON and one trained model."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("train_export")
    digits = load_digits()
    x = (digits.images * 16).clip(0, 255).astype(np.uint8)
    (root / "tiny").mkdir()
    np.savez(root / "tiny" / "train.npz", x=x[:150], y=digits.target[:150])
    np.savez(root / "tiny" / "test.npz", x=x[150:200], y=digits.target[150:200])
    (root / "cells.json").write_text(json.dumps(NASNetSpace().to_json(NASNET_A)))
    old_cwd, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(root)
    torch.set_num_threads(1)  # two shared cores: one thread is several times faster than two here
    try:
        assert main(["train", "cells.json", "--dataset", "npz:tiny", "--out", "runs/trained", "--json", *TINY]) == 0
        yield root
    finally:
        torch.set_num_threads(threads)
        os.chdir(old_cwd)


def _json_out(capsys):
    return json.loads(capsys.readouterr().out)


def _one_line_error(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_train_from_an_arch_file_writes_a_model_that_reloads_exactly(work, capsys):
    capsys.readouterr()
    out = work / "runs" / "trained"
    assert {p.name for p in out.iterdir()} == {"weights.pt", "arch.json", "metrics.json"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["source"]["kind"] == "architecture" and metrics["dataset"] == "npz:tiny"
    assert 0 <= metrics["val_accuracy"] <= 1 and 0 <= metrics["test_accuracy"] <= 1
    assert metrics["splits"] == {"train": 135, "val": 15, "test": 50}
    assert metrics["params"] > 0 and metrics["macs"] > 0 and len(metrics["train_loss"]) == 1
    # weights.pt is a plain state_dict; arch.json alone rebuilds the same network
    state = torch.load(out / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    desc = json.loads((out / "arch.json").read_text())
    assert desc["architecture"] == NASNetSpace().to_json(NASNET_A)
    assert desc["network"] == {"num_cells": 1, "num_filters": 8, "stem": "cifar"}
    assert (desc["num_classes"], desc["in_channels"], desc["resolution"]) == (10, 1, 8)
    assert len(desc["normalization"]["mean"]) == 1
    model, config = load_model(out)
    assert sum(p.numel() for p in model.parameters()) == metrics["params"]
    # the reloaded model scores exactly what training measured on the validation split
    splits = cached_splits("npz:tiny", 0.1, 0, None, None)
    acc, loss = evaluate_accuracy(model, splits.val, splits, TrainConfig(device="cpu"))
    assert acc == metrics["val_accuracy"] and loss == pytest.approx(metrics["val_loss"], rel=1e-5, abs=1e-6)
    again, _ = load_model(out / "weights.pt")
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_train_from_a_run_folder_takes_its_best_and_its_settings(work, capsys):
    assert main(["search", "--space", "nasnet", "--trials", "1", "--epochs", "1", "--cells", "1", "--filters", "8",
                 "--dataset", "npz:tiny", "--train-size", "60", "--run", "runs/search", "--no-progress", "--json"]) == 0
    best = _json_out(capsys)["top"][0]
    # no --dataset, --cells or --filters: the run's settings are used, flags override them
    assert main(["train", "runs/search", "--epochs", "1", "--filters", "12", "--out", "runs/from-run",
                 "--json", "--no-progress"]) == 0
    metrics = _json_out(capsys)
    assert metrics["source"]["kind"] == "run" and metrics["source"]["trial"] == best["id"]
    assert metrics["dataset"] == "npz:tiny" and metrics["splits"]["train"] == 135  # no proxy subset
    desc = read_model_config(work / "runs" / "from-run" / "arch.json")
    assert desc.architecture == best["arch"]
    assert desc.network == {"num_cells": 1, "num_filters": 12, "stem": "cifar"}
    model, _ = load_model(work / "runs" / "from-run")
    assert sum(p.numel() for p in model.parameters()) == metrics["params"]
    # a search run exports as JSON only (its weights were never kept)
    assert main(["export", "runs/search", "--format", "json", "--out", "search.json"]) == 0
    exported = json.loads((work / "search.json").read_text())
    assert exported["trained"] is False and exported["architecture"] == best["arch"]
    _one_line_error(capsys, ["export", "runs/search", "--format", "onnx", "--out", "x.onnx"],
                    "is a search run without trained weights; only --format json")


def test_retrain_from_arch_json_and_from_a_registered_model(work, capsys):
    assert main(["train", "runs/trained/arch.json", "--out", "runs/again", "--json", "--epochs", "1",
                 "--no-progress"]) == 0
    again = _json_out(capsys)
    first = json.loads((work / "runs" / "trained" / "metrics.json").read_text())
    assert again["dataset"] == "npz:tiny" and again["source"]["kind"] == "description"
    assert again["val_loss"] == first["val_loss"]  # same seed, same everything: same result on CPU
    assert main(["train", "nasnet_a_cifar", "--dataset", "npz:tiny", "--out", "runs/registered", "--json",
                 *TINY]) == 0
    reg = _json_out(capsys)
    desc = read_model_config(work / "runs" / "registered" / "arch.json")
    assert desc.model == "nasnet_a_cifar" and desc.network["num_filters"] == 8
    assert reg["params"] == first["params"]  # NASNet-A at N=1, F=8 either way


def test_torchscript_export_runs_without_nasforge(work, capsys):
    model, _ = load_model(work / "runs" / "trained")
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
    assert main(["export", "runs/trained", "--format", "torchscript", "--out", "out/model.ts"]) == 0
    assert "checked against the original" in capsys.readouterr().out
    torch.save({"x": x, "expected": expected}, work / "out" / "check.pt")
    script = textwrap.dedent("""
        import sys
        sys.modules["nasforge"] = None  # any import of nasforge now fails
        import torch
        data = torch.load("check.pt", weights_only=True)
        model = torch.jit.load("model.ts")
        with torch.no_grad():
            print((model(data["x"]) - data["expected"]).abs().max().item())
        try:
            import nasforge  # noqa: F401
            print("nasforge importable")
        except ImportError:
            pass
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-I", "-c", script], cwd=work / "out", capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "nasforge importable" not in proc.stdout
    assert float(proc.stdout.split()[0]) < 1e-5


def test_onnx_export_matches_with_onnxruntime(work, capsys):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -e '.[test]')")
    # from the weights file, with the normalisation baked in: the ONNX model takes images in [0, 1]
    assert main(["export", "runs/trained/weights.pt", "--format", "onnx", "--normalize",
                 "--out", "out/model.onnx", "--json"]) == 0
    result = _json_out(capsys)
    assert result["max_abs_diff"] is not None and result["max_abs_diff"] < 1e-4
    model, config = load_model(work / "runs" / "trained")
    images = torch.rand(5, 1, 8, 8)  # another batch size than the export's example: the batch axis is dynamic
    mean, std = torch.tensor(config.mean).view(1, -1, 1, 1), torch.tensor(config.std).view(1, -1, 1, 1)
    session = ort.InferenceSession(str(work / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": images.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(logits, model((images - mean) / std).numpy(), atol=1e-4, rtol=1e-4)
    onnx = pytest.importorskip("onnx")
    assert onnx.load(str(work / "out" / "model.onnx")).opset_import[0].version == 17


def test_json_export_is_the_model_description(work, capsys):
    assert main(["export", "runs/trained", "--format", "json", "--out", "out/model.json"]) == 0
    data = json.loads((work / "out" / "model.json").read_text())
    assert data.pop("trained") is True
    assert data == json.loads((work / "runs" / "trained" / "arch.json").read_text())
    config = ModelConfig.from_dict(data)
    fresh = config.build()
    assert sum(p.numel() for p in fresh.parameters()) == json.loads(
        (work / "runs" / "trained" / "metrics.json").read_text())["params"]


def test_export_model_function_rejects_unknown_formats(work):
    from nasforge.errors import ConfigError

    config = read_model_config(work / "runs" / "trained" / "arch.json")
    with pytest.raises(ConfigError, match="unknown export format 'tflite'"):
        export_model(None, config, "tflite", work / "out" / "x")


@pytest.fixture()
def broken(work):
    """A copy of the trained model folder to damage."""
    target = work / "runs" / "broken"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(work / "runs" / "trained", target)
    return target


def test_weights_that_do_not_fit_the_architecture(broken, capsys):
    desc = json.loads((broken / "arch.json").read_text())
    desc["network"]["num_filters"] = 12
    (broken / "arch.json").write_text(json.dumps(desc))
    _one_line_error(capsys, ["export", "runs/broken", "--format", "torchscript", "--out", "out/b.ts"],
                    "the weights do not fit the network of arch.json: size mismatch for")


def test_weights_that_are_not_a_plain_state_dict_are_refused(broken, capsys):
    torch.save({"model": TrainConfig()}, broken / "weights.pt")  # a pickled object, not tensors
    _one_line_error(capsys, ["export", "runs/broken", "--format", "onnx", "--out", "out/b.onnx"],
                    "refused: not a plain tensor state_dict")
    with pytest.raises(ValueError, match="refused"):
        read_weights(broken / "weights.pt")
    torch.save([1, 2, 3], broken / "weights.pt")
    _one_line_error(capsys, ["export", "runs/broken", "--format", "onnx", "--out", "out/b.onnx"],
                    "expected a state_dict")
    (broken / "weights.pt").write_bytes(b"not a torch file")
    _one_line_error(capsys, ["export", "runs/broken", "--format", "onnx", "--out", "out/b.onnx"],
                    "not a PyTorch weights file")


def test_damaged_or_missing_files(broken, capsys):
    (broken / "weights.pt").unlink()
    _one_line_error(capsys, ["export", "runs/broken", "--format", "torchscript", "--out", "out/b.ts"],
                    "weights.pt: no such file")
    (broken / "arch.json").write_text("{not json")
    _one_line_error(capsys, ["export", "runs/broken", "--format", "json", "--out", "out/b.json"],
                    "arch.json: not valid JSON")
    (broken / "arch.json").write_text('{"normal": {}}')
    _one_line_error(capsys, ["export", "runs/broken", "--format", "json", "--out", "out/b.json"],
                    "not a nasforge model description")


@pytest.mark.parametrize("argv, message", [
    (["export", "missing", "--format", "json", "--out", "x.json"], "missing: no such file or folder"),
    (["export", "runs/trained", "--format", "tflite", "--out", "x"], "--format: unknown export format 'tflite'"),
    (["export", "tiny", "--format", "json", "--out", "x.json"], "holds neither a trained model"),
    (["train", "tiny"], "is a folder without a nasforge run"),
    (["train", "missing.json"], "is neither a file, a run folder nor a registered model"),
    (["train", "cells.json", "--out", "../outside"], "--out: '../outside' must not contain '..'"),
    (["train", "cells.json", "--out", "runs/trained"], "already holds a trained model"),
    (["train", "efficientnet_b0", "--cells", "2"], "--cells: only applies to NASNet networks"),
    (["train", "cells.json", "--seed", "-1"], "--seed: must be a non-negative integer"),
    (["export", "runs/trained", "--format", "json", "--normalize", "--out", "x.json"],
     "--normalize: only applies to onnx and torchscript"),
])
def test_bad_input_is_one_line_and_exit_2(work, capsys, argv, message):
    _one_line_error(capsys, argv, message)


def test_a_run_without_a_finished_trial(work, capsys):
    from nasforge.experiment import Store

    Store.create(work / "runs" / "empty", {"space": {"name": "nasnet", "options": {}}}).close()
    _one_line_error(capsys, ["train", "runs/empty"], "has no finished trial to train")
    _one_line_error(capsys, ["train", "cells.json", "--out", "runs/empty"], "holds a search run")
    _one_line_error(capsys, ["export", "runs/empty", "--format", "json", "--out", "x.json"],
                    "has no finished trial to train")


def test_the_real_command_line(work):
    proc = subprocess.run([sys.executable, "-m", "nasforge.cli", "export", "runs/trained", "--format", "onnnx",
                           "--out", "x"], capture_output=True, text=True, cwd=work, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("nasforge: error: --format: unknown export format 'onnnx' "
                                   "(allowed: json, onnx, torchscript)")
