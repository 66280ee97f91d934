"""Trained models on disk, and exports that run without nasforge.

A trained model is a folder of three files:

- ``weights.pt``: a plain ``state_dict`` written with ``torch.save`` (tensors only, read back with
  ``torch.load(weights_only=True)``);
- ``arch.json``: a *model description* — the architecture JSON and everything needed to rebuild
  the network around it (space, build options, classes, input channels, resolution, and the
  per-channel normalisation the network was trained with);
- ``metrics.json``: what training measured (validation and test accuracy, params, MACs, ...).

Loading reads JSON and a weights-only ``torch.load``; nothing else is ever unpickled.

Exports (`export_model`):

- ``pt2`` (the default of ``nasforge export``): a ``torch.export`` ExportedProgram written with
  ``torch.export.save``; ``torch.export.load(path).module()`` runs it with plain PyTorch;
- ``onnx``: the ``torch.export``-based ONNX exporter (``torch.onnx.export(..., dynamo=True)``,
  opset 20, needs the ``onnx`` and ``onnxscript`` packages);
- ``json``: the model description;
- ``torchscript``: legacy, deprecated by PyTorch (``torch.jit.script``, falling back to
  ``torch.jit.trace``; loads with ``torch.jit.load``). Kept for old consumers only.

By default the exported network is the *deployed* one (`nasforge.deploy`): BatchNorm folded into
the convolutions, dropout, drop path and auxiliary heads removed, checked against the eager model
before it is exported (``deploy=False``, ``nasforge export --no-deploy``, exports the eager module
as it is, BN layers and all).

The batch dimension of ``pt2`` and ``onnx`` exports is dynamic (``torch.export.Dim``); channels,
height and width are fixed to the model description's. The exported networks take normalised
``float32`` images ``(N, C, H, W)``; with ``normalize=True`` they take images scaled to [0, 1] and
normalise them themselves.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasforge.arch import space_name_of
from nasforge.errors import NasforgeError

FORMAT = "nasforge-model"
FORMAT_VERSION = 1
WEIGHTS_NAME = "weights.pt"
ARCH_NAME = "arch.json"
METRICS_NAME = "metrics.json"
EXPORT_FORMATS = ("json", "onnx", "pt2", "torchscript")
#: What `nasforge export` writes unless --format says otherwise.
DEFAULT_EXPORT_FORMAT = "pt2"
#: Formats PyTorch deprecates (still written, with a note).
DEPRECATED_FORMATS = ("torchscript",)
ONNX_OPSET = 20
#: Largest batch an exported model accepts (the batch dimension is dynamic up to here).
MAX_BATCH = 65536
#: Keys of a model description that are not build options of the network.
FIXED_KEYS = ("num_classes", "in_channels", "resolution")


class ModelFileError(NasforgeError, ValueError):
    """A saved model (weights, description) is missing, unreadable or inconsistent."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        super().__init__(f"{self.path}: {problem}")


# -- the model description -------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a trained network, as JSON.

    Exactly one of `architecture` (a search-space architecture's JSON, built through `space`) and
    `model` (a registered model name, built with `nasforge.models.create`) is set. `network` holds
    the remaining build options (e.g. num_cells, num_filters, stem); `mean`/`std` are the
    per-channel normalisation of inputs scaled to [0, 1].
    """

    name: str
    num_classes: int
    in_channels: int
    resolution: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    architecture: Any = None
    space: dict[str, Any] | None = None  # {"name": ..., "options": {...}}
    model: str | None = None
    network: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    classes: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION, "name": self.name}
        if self.architecture is not None:
            out["architecture"] = self.architecture
            out["space"] = self.space or {"name": space_name_of(self.architecture), "options": {}}
        if self.model is not None:
            out["model"] = self.model
        out.update(
            {
                "network": dict(self.network),
                "num_classes": self.num_classes,
                "in_channels": self.in_channels,
                "resolution": self.resolution,
                "normalization": {"mean": list(self.mean), "std": list(self.std)},
                "input": {
                    "shape": ["batch", self.in_channels, self.resolution, self.resolution],
                    "dtype": "float32",
                    "note": "images scaled to [0, 1], then (x - mean) / std per channel",
                },
            }
        )
        if self.dataset is not None:
            out["dataset"] = self.dataset
        if self.classes is not None:
            out["classes"] = list(self.classes)
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str | os.PathLike = "model description") -> ModelConfig:
        def bad(problem: str) -> ModelFileError:
            return ModelFileError(source, problem)

        if not isinstance(data, dict):
            raise bad("expected a JSON object (a nasforge model description)")
        if data.get("format") != FORMAT:
            raise bad(f'not a nasforge model description (expected "format": "{FORMAT}")')
        version = data.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise bad(f"unsupported model description version {version!r} (this nasforge reads up to {FORMAT_VERSION})")
        arch, model = data.get("architecture"), data.get("model")
        if (arch is None) == (model is None):
            raise bad('needs exactly one of "architecture" and "model"')
        if model is not None and not isinstance(model, str):
            raise bad(f'"model" must be a registered model name, got {model!r}')
        space = data.get("space")
        if arch is not None:
            if space is None:
                space = {"name": space_name_of(arch), "options": {}}
            if (
                not isinstance(space, dict)
                or not isinstance(space.get("name"), str)
                or not isinstance(space.get("options", {}), dict)
            ):
                raise bad('"space" must be an object with a "name" and "options"')
            space = {"name": space["name"], "options": dict(space.get("options") or {})}
        network = data.get("network", {})
        if not isinstance(network, dict):
            raise bad('"network" must be an object of build options')
        clash = sorted(set(network) & set(FIXED_KEYS))
        if clash:
            raise bad(f'"network" must not hold {clash[0]!r} (it is a top-level field)')
        values = {}
        for key in FIXED_KEYS:
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(f'"{key}" must be a positive integer, got {value!r}')
            values[key] = value
        norm = data.get("normalization")
        if not isinstance(norm, dict):
            raise bad('"normalization" must be an object with "mean" and "std" lists')
        mean, std = norm.get("mean"), norm.get("std")
        for label, seq in (("mean", mean), ("std", std)):
            if (
                not isinstance(seq, list)
                or len(seq) != values["in_channels"]
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in seq)
            ):
                raise bad(f'"normalization.{label}" must be a list of {values["in_channels"]} numbers')
        assert isinstance(mean, list) and isinstance(std, list)  # checked just above
        if any(v <= 0 for v in std):
            raise bad('"normalization.std" values must be positive')
        classes = data.get("classes")
        if classes is not None and (not isinstance(classes, list) or len(classes) != values["num_classes"]):
            raise bad(f'"classes" must list {values["num_classes"]} class names')
        dataset = data.get("dataset")
        name = data.get("name")
        return cls(
            name=str(name) if name else "model",
            architecture=arch,
            space=space if arch is not None else None,
            model=model,
            network=dict(network),
            mean=tuple(float(v) for v in mean),
            std=tuple(float(v) for v in std),
            dataset=str(dataset) if dataset is not None else None,
            classes=tuple(str(c) for c in classes) if classes is not None else None,
            **values,
        )

    def build(self) -> nn.Module:
        """The network, freshly initialised (load weights with `load_weights`)."""
        fixed = {"num_classes": self.num_classes, "in_channels": self.in_channels, "resolution": self.resolution}
        if self.model is not None:
            from nasforge.models import create

            return create(self.model, **fixed, **self.network)
        space = build_space_for(self.space, self.architecture)
        return space.build(space.from_json(self.architecture), **fixed, **self.network)


def build_space_for(space: dict[str, Any] | None, architecture: Any):
    """The search space of a description: from its recorded options, else sized from the JSON."""
    from nasforge.errors import ConfigError
    from nasforge.spaces import SPACES, space_for_json

    if space and space.get("options"):
        name = space["name"]
        try:
            return SPACES.create(name, field="space", **space["options"])
        except TypeError as exc:
            raise ConfigError("space.options", str(exc)) from None
    if space and isinstance(architecture, dict) and "space" not in architecture:
        architecture = {**architecture, "space": space["name"]}
    return space_for_json(architecture)


def read_model_config(path: str | os.PathLike) -> ModelConfig:
    """Parse an ``arch.json`` model description (one-line `ModelFileError`s)."""
    file = Path(path)
    if not file.is_file():
        raise ModelFileError(file, "no such file")
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(file, f"cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ModelFileError(file, f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise ModelFileError(file, "not valid JSON (nested too deeply)") from None
    return ModelConfig.from_dict(data, file)


# -- weights ---------------------------------------------------------------------------------------------
def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU, contiguous copies of the model's parameters and buffers (what ``weights.pt`` holds)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A ``state_dict`` read with ``torch.load(weights_only=True)``; anything else is refused."""
    file = Path(path)
    if not file.is_file():
        raise ModelFileError(file, "no such file")
    if not zipfile.is_zipfile(file):
        raise ModelFileError(file, "not a PyTorch weights file (expected the zip format torch.save writes)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        what = f"it holds a {found.group(1)} object" if found else "it holds Python objects"
        raise ModelFileError(
            file, f"refused: not a plain tensor state_dict ({what}; nasforge loads weights only)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(file, f"not a PyTorch weights file ({first[:160]})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ModelFileError(file, "expected a state_dict (a mapping of names to tensors)")
    return state


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str | os.PathLike) -> nn.Module:
    """Load `state` strictly, turning any key or shape mismatch into one line."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    if shapes:
        k = shapes[0]
        problems.append(
            f"size mismatch for {k} (weights {list(state[k].shape)}, network "
            f"{list(expected[k].shape)})" + (f" and {len(shapes) - 1} more" if len(shapes) > 1 else "")
        )
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing, e.g. {missing[0]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[0]}")
    if problems:
        raise ModelFileError(source, f"the weights do not fit the network of {ARCH_NAME}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    return model


# -- trained model folders ---------------------------------------------------------------------------------
def save_model(
    folder: str | os.PathLike, model: nn.Module, config: ModelConfig, metrics: dict[str, Any] | None = None
) -> Path:
    """Write ``weights.pt``, ``arch.json`` (and ``metrics.json`` when given) into `folder`."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(plain_state_dict(model), out / WEIGHTS_NAME)
    (out / ARCH_NAME).write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
    if metrics is not None:
        (out / METRICS_NAME).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return out


def locate_trained(path: str | os.PathLike) -> tuple[Path, Path]:
    """(arch.json, weights) for a trained model folder or its weights file."""
    p = Path(path)
    if p.is_dir():
        return p / ARCH_NAME, p / WEIGHTS_NAME
    return p.parent / ARCH_NAME, p


def load_model(path: str | os.PathLike) -> tuple[nn.Module, ModelConfig]:
    """Rebuild a trained model (in eval mode, on the CPU) from its folder or weights file."""
    arch_file, weights_file = locate_trained(path)
    if not arch_file.is_file():
        raise ModelFileError(arch_file, "no such file (a trained model needs arch.json beside its weights)")
    config = read_model_config(arch_file)
    state = read_weights(weights_file)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = config.build()
    load_weights(model, state, weights_file)
    return model.eval(), config


# -- exports ------------------------------------------------------------------------------------------------
class Normalized(nn.Module):
    """`model` behind the per-channel normalisation it was trained with: takes images in [0, 1]."""

    mean: torch.Tensor  # buffers, [1, C, 1, 1]
    std: torch.Tensor

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def example_input(config: ModelConfig, batch_size: int = 2, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, config.in_channels, config.resolution, config.resolution, generator=gen)


def batch_dim_shapes():
    """``dynamic_shapes`` for a network with one image argument: its batch dimension is dynamic."""
    return ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},)


def to_exported_program(model: nn.Module, example: torch.Tensor, dynamic_batch: bool = True):
    """(``torch.export.export`` of the eval-mode model, whether its batch dimension is dynamic).

    With `dynamic_batch` a network whose code pins the batch size (none of nasforge's does) is
    exported again with every dimension static rather than failing.
    """
    model = model.eval()
    with torch.no_grad():
        if dynamic_batch:
            try:
                return torch.export.export(model, (example,), dynamic_shapes=batch_dim_shapes()), True
            except Exception:  # noqa: BLE001 - a constraint violation or a specialised shape: go static
                pass
        return torch.export.export(model, (example,)), False


def to_torchscript(model: nn.Module, example: torch.Tensor) -> tuple[torch.jit.ScriptModule, str]:
    """Legacy (PyTorch deprecates TorchScript): (scripted or traced module, "script" | "trace").

    Scripting keeps control flow, so it comes first. PyTorch's deprecation warnings are silenced
    here: the caller asked for this format, and `nasforge export` tells it is deprecated.
    """
    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.jit.script(model), "script"
        except Exception:  # noqa: BLE001 - any scripting failure: fall back to tracing
            with torch.no_grad():
                return torch.jit.trace(model, example, check_trace=False), "trace"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    method: str | None = None  # how it was written: torch.export, torch.onnx (dynamo), script, trace
    max_abs_diff: float | None = None  # exported vs in-process logits on an example batch (None: not checked)
    dynamic_batch: bool | None = None  # pt2/onnx: whether the batch dimension is dynamic
    deprecated: bool = False  # a format PyTorch deprecates (torchscript)
    deployed: bool | None = None  # the network went through `nasforge.deploy` first (None: json)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "method": self.method,
            "max_abs_diff": self.max_abs_diff,
            "dynamic_batch": self.dynamic_batch,
            "deprecated": self.deprecated,
            "deployed": self.deployed,
        }


def export_model(
    model: nn.Module | None,
    config: ModelConfig,
    fmt: str,
    out: str | os.PathLike,
    *,
    normalize: bool = False,
    trained: bool = True,
    check: bool = True,
    deploy: bool = True,
) -> ExportResult:
    """Write `model` (or, for ``json``, just its description) to `out` in format `fmt`.

    With `deploy` the network is first made inference-only by `nasforge.deploy` (BN folded,
    training-only modules removed), which is checked against the eager model on an example batch;
    what is written then holds fewer layers and runs faster wherever it is loaded.

    pt2, onnx and torchscript exports are checked against the model on example batches (a dynamic
    batch dimension on a batch of another size too): the ExportedProgram as saved, the ONNX file
    through onnxruntime (where it is installed), the TorchScript file as reloaded. A difference
    beyond 1e-4 (relative to the largest logit, when that is above 1) is an error.
    """
    from nasforge.errors import ConfigError

    if fmt not in EXPORT_FORMATS:
        raise ConfigError("--format", f"unknown export format {fmt!r}", EXPORT_FORMATS)
    path = Path(out)
    if path.is_dir():
        raise ConfigError("--out", f"{path} is a folder; name the file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("--out", f"cannot create {path.parent} ({exc.strerror})") from None
    if fmt == "json":
        data = {**config.to_dict(), "trained": trained}
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return ExportResult(path, fmt)
    if model is None:
        raise ConfigError("--format", f"{fmt} needs a trained model")
    model = model.eval().to("cpu")
    example = example_input(config)
    if deploy:
        from nasforge.deploy import deploy as deployed_copy

        # contiguous weights: a portable file (loaders pick their own layout), and no strided storages
        model = deployed_copy(model, example, check=True, channels_last=False)
    net: nn.Module = Normalized(model, config.mean, config.std).eval() if normalize else model
    other = example_input(config, batch_size=3, seed=1)  # another batch size: checks a dynamic batch
    if normalize:
        example, other = example.sigmoid(), other.sigmoid()  # inside [0, 1], like real images
    with torch.no_grad():
        expected = net(example)
        expected_other = net(other)
    diffs: list[float] = []
    dynamic = None
    if fmt == "pt2":
        program, dynamic = _failing_export(fmt, to_exported_program, net, example)
        torch.export.save(program, str(path))
        if check:  # the program as saved; reading it back (torch.export.load) would cost seconds more
            loaded = program.module()
            with torch.no_grad():
                diffs.append((loaded(example) - expected).abs().max().item())
                if dynamic:
                    diffs.append((loaded(other) - expected_other).abs().max().item())
        method = "torch.export"
    elif fmt == "onnx":
        dynamic = _failing_export(fmt, to_onnx, net, example, path)
        run = onnx_runner(path) if check else None
        if run is not None:
            diffs.append(float(abs(run(example.numpy()) - expected.numpy()).max()))
            if dynamic:
                diffs.append(float(abs(run(other.numpy()) - expected_other.numpy()).max()))
        method = "torch.onnx (dynamo)"
    else:
        scripted, method = to_torchscript(net, example)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.save/load are deprecated in favour of torch.export
            torch.jit.save(scripted, str(path))
            if check:  # without the profiling executor's warm-up runs, which cost seconds here
                loaded = torch.jit.load(str(path), map_location="cpu")
                with torch.no_grad(), torch.jit.optimized_execution(False):
                    diffs.append((loaded(example) - expected).abs().max().item())
    result = ExportResult(
        path, fmt, method, max(diffs) if diffs else None, dynamic, deprecated=fmt in DEPRECATED_FORMATS, deployed=deploy
    )
    scale = float(max(expected.abs().max(), expected_other.abs().max()))
    if result.max_abs_diff is not None and not result.max_abs_diff <= 1e-4 + 1e-4 * scale:
        raise ModelFileError(
            path,
            f"the exported {fmt} model disagrees with the original by "
            f"{result.max_abs_diff:.3g} on an example batch (logits up to {scale:.3g})",
        )
    return result


def _failing_export(fmt: str, export, *args):
    """`export(*args)`, with an exporter's failure turned into one line."""
    try:
        return export(*args)
    except NasforgeError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch.export's and torch.onnx's errors are many and deep
        first = next((line for line in str(exc).strip().splitlines() if line.strip()), type(exc).__name__)
        from nasforge.errors import ConfigError

        raise ConfigError(
            "--format", f"PyTorch cannot export this network as {fmt} ({type(exc).__name__}: {first[:200]})"
        ) from exc


#: Loggers of PyTorch's ONNX exporter that warn about optional packages nasforge does not use
#: ("torchvision is not installed. Skipping torchvision::nms").
_ONNX_LOGGERS = ("torch.onnx._internal.exporter._registration",)
#: The ONNX file holds the weights up to this size; larger models keep them in FILE.data beside it.
_ONNX_INLINE_BYTES = 1 << 30


def to_onnx(net: nn.Module, example: torch.Tensor, path: str | os.PathLike) -> bool:
    """Write `net` to `path` through ``torch.onnx.export(..., dynamo=True)`` (opset `ONNX_OPSET`, input
    ``input``, output ``logits``, the batch dimension ``batch`` where it is dynamic); returns whether
    it is. The exporter takes the `torch.export` program of `to_exported_program`."""
    import logging

    from nasforge.errors import ConfigError

    loggers = [logging.getLogger(name) for name in _ONNX_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        # the exporter's own internals raise FutureWarnings (torch.utils._pytree) that are PyTorch's business
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program, dynamic = to_exported_program(net, example)
            outputs = len(program.graph_signature.user_outputs)
            onnx_program = torch.onnx.export(
                program,
                (example,),
                dynamo=True,
                opset_version=ONNX_OPSET,
                verbose=False,
                optimize=True,
                dynamic_shapes=batch_dim_shapes() if dynamic else None,  # names the ONNX dimension "batch"
                input_names=["input"],
                output_names=["logits"] if outputs == 1 else [f"logits_{i}" for i in range(outputs)],
            )
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "--format", f"onnx export needs the {exc.name!r} package (pip install onnx onnxscript)"
        ) from None
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    size = sum(p.numel() * p.element_size() for p in net.parameters())
    assert onnx_program is not None  # the dynamo exporter returns its program
    onnx_program.save(str(path), external_data=size > _ONNX_INLINE_BYTES)
    return dynamic


def onnx_runner(path: str | os.PathLike):
    """A function numpy input -> numpy logits through onnxruntime, or None when it is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]
