"""`nasforge train` and `nasforge export` end to end, on a tiny slice of the digits data.

Everything trains NASNet-A at N=1, F=8 for one epoch on 135 images. Training takes seconds; the
exports take most of the module's time (torch.export and the ONNX exporter trace the network
through PyTorch's Python layers, several seconds each), and each format is loaded once in a fresh
process where nasforge cannot be imported (one process for the module, started before the model
trains, so that its import of torch is not waited for three times).
"""

import json
import os
import select
import shutil
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from toys import deprecations_are_errors

from nasforge.arch.nasnet_cells import NASNET_A
from nasforge.cli import main
from nasforge.evaluators.proxy import cached_splits
from nasforge.evaluators.training import TrainConfig, evaluate_accuracy
from nasforge.export import ModelConfig, export_model, load_model, read_model_config, read_weights
from nasforge.spaces import NASNetSpace

TINY = ["--epochs", "1", "--cells", "1", "--filters", "8", "--no-progress"]


@pytest.fixture(scope="module")
def work(tmp_path_factory, without_nasforge):
    """A folder (made the cwd) with a tiny digits npz dataset, NASNet-A's JSON and one trained model.
    (`without_nasforge` is requested first so that its interpreter starts before the training.)"""
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


#: Run first in the fresh process below: nasforge (installed in editable mode here) cannot be imported there.
NO_NASFORGE = """
import sys
sys.modules["nasforge"] = None  # any import of nasforge, or of a module of it, now fails
try:
    import nasforge  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("nasforge is importable")
"""


#: The fresh interpreter's loop: each line it reads is a script and the folder to run it in; it runs
#: the script in a namespace of its own (its warning filters restored after) and answers with one
#: line: what the script printed, its traceback if it raised, and whether nasforge imports after it.
CHECKER = NO_NASFORGE + """
import contextlib, io, json, os, sys, traceback, warnings
import torch  # what the pt2 and torchscript checks load with: imported while the test trains the model
for line in sys.stdin:
    request = json.loads(line)
    os.chdir(request["folder"])
    printed, error = io.StringIO(), None
    with warnings.catch_warnings(), contextlib.redirect_stdout(printed):
        try:
            exec(compile(request["script"], "<check>", "exec"), {"__name__": "__main__"})
        except BaseException:
            error = traceback.format_exc()
    try:
        import nasforge.export
    except ImportError:
        importable = False
    else:
        importable = True
    print(json.dumps({"printed": printed.getvalue(), "error": error, "nasforge": importable}), flush=True)
"""


@pytest.fixture(scope="module")
def without_nasforge(tmp_path_factory):
    """`run(folder, script)`: run `script` in a fresh isolated interpreter (-I: no PYTHONPATH, no cwd
    on sys.path) where nasforge cannot be imported, and return the float it prints last. One such
    interpreter serves the module's three formats."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    log = tmp_path_factory.mktemp("checker") / "stderr.txt"
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-I", "-c", CHECKER], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)

    def run(folder, script) -> float:
        proc.stdin.write(json.dumps({"folder": str(folder), "script": textwrap.dedent(script)}) + "\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 300)
        assert ready, f"no answer in 300 s; stderr: {log.read_text()[-3000:]}"
        line = proc.stdout.readline()
        assert line, f"exited with {proc.wait()}: {log.read_text()[-3000:]}"
        answer = json.loads(line)
        assert answer["error"] is None, answer["error"][-3000:]
        assert answer["nasforge"] is False  # still not importable after the script
        return float(answer["printed"].split()[-1])

    try:
        yield run
    finally:
        proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_pt2_is_the_default_export_and_runs_without_nasforge(work, without_nasforge, capsys):
    model, _ = load_model(work / "runs" / "trained")
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))  # the export's example has 2
    with torch.no_grad():
        expected = model(x)
    capsys.readouterr()
    with deprecations_are_errors():
        assert main(["export", "runs/trained", "--out", "out/model.pt2"]) == 0  # no --format: pt2
    assert ("wrote out/model.pt2 (pt2 via torch.export; dynamic batch; checked against the original"
            in capsys.readouterr().out)
    torch.save({"x": x, "expected": expected}, work / "out" / "check_pt2.pt")
    diff = without_nasforge(work / "out", """
        import torch
        data = torch.load("check_pt2.pt", weights_only=True)
        model = torch.export.load("model.pt2").module()
        with torch.no_grad():
            print((model(data["x"]) - data["expected"]).abs().max().item())
    """)
    assert diff < 1e-5


def test_onnx_export_runs_with_onnxruntime_without_nasforge(work, without_nasforge, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -e '.[test]')")
    pytest.importorskip("onnxscript", reason="onnxscript not installed (torch.onnx's exporter needs it)")
    onnx = pytest.importorskip("onnx")
    capsys.readouterr()
    # from the weights file, with the normalisation baked in: the ONNX model takes images in [0, 1]
    with deprecations_are_errors():
        assert main(["export", "runs/trained/weights.pt", "--format", "onnx", "--normalize",
                     "--out", "out/model.onnx", "--json"]) == 0
    result = _json_out(capsys)
    assert result["method"] == "torch.onnx (dynamo)" and result["dynamic_batch"] is True
    assert result["max_abs_diff"] is not None and result["max_abs_diff"] < 1e-4
    proto = onnx.load(str(work / "out" / "model.onnx"))
    assert proto.opset_import[0].version == 20
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["logits"]
    assert [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == ["batch", 1, 8, 8]
    model, config = load_model(work / "runs" / "trained")
    images = torch.rand(5, 1, 8, 8)  # another batch size than the export's example: the batch axis is dynamic
    mean, std = torch.tensor(config.mean).view(1, -1, 1, 1), torch.tensor(config.std).view(1, -1, 1, 1)
    with torch.no_grad():
        expected = model((images - mean) / std)
    np.savez(work / "out" / "check_onnx.npz", images=images.numpy(), expected=expected.numpy())
    diff = without_nasforge(work / "out", """
        import numpy as np
        import onnxruntime as ort
        data = np.load("check_onnx.npz")
        session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
        (logits,) = session.run(None, {"input": data["images"]})
        print(float(np.abs(logits - data["expected"]).max()))
    """)
    assert diff < 1e-4


def test_torchscript_is_a_legacy_export_that_still_runs_without_nasforge(work, without_nasforge, capsys):
    model, _ = load_model(work / "runs" / "trained")
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(x)
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["export", "runs/trained", "--format", "torchscript", "--out", "out/model.ts"]) == 0
    # torch.jit's own deprecation warnings stay inside nasforge; the command says it once, in words
    assert [str(w.message) for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))] == []
    out = capsys.readouterr().out
    assert "wrote out/model.ts (torchscript via script; checked against the original" in out
    assert "note: PyTorch deprecates torchscript; the default --format pt2" in out
    torch.save({"x": x, "expected": expected}, work / "out" / "check_ts.pt")
    diff = without_nasforge(work / "out", """
        import warnings
        import torch
        warnings.simplefilter("ignore")  # torch.jit.load is deprecated: what this legacy format costs
        data = torch.load("check_ts.pt", weights_only=True)
        model = torch.jit.load("model.ts")
        with torch.no_grad():
            print((model(data["x"]) - data["expected"]).abs().max().item())
    """)
    assert diff < 1e-5


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


class _PinnedBatch(torch.nn.Module):
    """Code that fixes the batch size at 2: torch.export cannot make that dimension dynamic."""

    def forward(self, x):
        return x.reshape(2, -1)[:, :3]


class _DataDependent(torch.nn.Module):
    """Control flow on a tensor's value: torch.export cannot export it at all."""

    def forward(self, x):
        return x.flatten(1)[:, :3] if x.sum() > 0 else -x.flatten(1)[:, :3]


def test_a_network_that_pins_its_batch_exports_static_and_one_that_cannot_export_is_one_line(tmp_path):
    from nasforge.errors import ConfigError

    config = ModelConfig(name="tiny", num_classes=3, in_channels=1, resolution=2, mean=(0.0,), std=(1.0,),
                         model="none")
    result = export_model(_PinnedBatch(), config, "pt2", tmp_path / "pinned.pt2")
    assert result.dynamic_batch is False and result.max_abs_diff == 0
    loaded = torch.export.load(tmp_path / "pinned.pt2").module()
    x = torch.randn(2, 1, 2, 2)
    assert torch.equal(loaded(x), _PinnedBatch()(x))
    with pytest.raises(ConfigError, match=r"^--format: PyTorch cannot export this network as pt2 \(\w+: "):
        export_model(_DataDependent(), config, "pt2", tmp_path / "dependent.pt2")


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
    _one_line_error(capsys, ["export", "runs/broken", "--out", "out/b.pt2"],
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
    _one_line_error(capsys, ["export", "runs/broken", "--out", "out/b.pt2"],
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
    (["train", "cells.json", "--out", ""], "--out: '' names no folder"),
    (["train", "cells.json", "--out", "runs/trained"], "already holds a trained model"),
    (["train", "efficientnet_b0", "--cells", "2"], "--cells: only applies to NASNet networks"),
    (["train", "cells.json", "--seed", "-1"], "--seed: must be a non-negative integer"),
    (["export", "runs/trained", "--format", "json", "--normalize", "--out", "x.json"],
     "--normalize: only applies to pt2, onnx and torchscript"),
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
                                   "(allowed: json, onnx, pt2, torchscript)")


def test_train_takes_a_separate_test_dataset_and_refuses_one_that_does_not_fit(work, capsys):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images * 16).clip(0, 255).astype(np.uint8)
    np.savez(work / "other_test.npz", x=x[300:340], y=digits.target[300:340])
    np.savez(work / "wide.npz", x=np.zeros((20, 9, 9), np.uint8), y=np.arange(20) % 10)
    np.savez(work / "three.npz", x=x[:30], y=digits.target[:30] % 3)
    assert main(["train", "cells.json", "--dataset", "npz:tiny", "--test-dataset", "npz:other_test.npz",
                 "--out", "runs/other-test", "--json", *TINY]) == 0
    metrics = _json_out(capsys)
    assert metrics["splits"]["test"] == 40 and metrics["test_dataset"] == "npz:other_test.npz"
    assert 0 <= metrics["test_accuracy"] <= 1
    _one_line_error(capsys, ["train", "cells.json", "--dataset", "npz:tiny", "--test-dataset", "npz:wide.npz",
                             "--out", "runs/wide", *TINY], "--test-dataset: npz:wide.npz holds 9x9 images")
    _one_line_error(capsys, ["train", "cells.json", "--dataset", "npz:tiny", "--test-dataset", "npz:three.npz",
                             "--out", "runs/three", *TINY], "--test-dataset: npz:three.npz has 3 classes, not the 10")
    _one_line_error(capsys, ["train", "cells.json", "--dataset", "npz:tiny", "--test-dataset", "npz:nowhere.npz",
                             "--out", "runs/nowhere", *TINY], "--test-dataset: cannot load 'npz:nowhere.npz'")
    assert not (work / "runs" / "wide").exists()
