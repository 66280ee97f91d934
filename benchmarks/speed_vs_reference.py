"""nasforge against timm (and torchvision where it has the model): CPU inference and training speed.

timm and torchvision do not install beside the project's own torch, so run this in an environment
of its own, where nasforge is installed without its dependencies:

    python3 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm
    /tmp/refenv/bin/pip install -e /work/main --no-deps
    /tmp/refenv/bin/python benchmarks/speed_vs_reference.py [--repeats 5] [--batch 16] [--threads 2]
        [--models efficientnet_b0,efficientnet_b3,nasnet_a_large] [--train efficientnet_b0,efficientnet_b3]
        [--compile efficientnet_b0,nasnet_a_large] [--memory-repeats 3]

Every library runs in the same process, with the same torch, threads and inputs; the models are
randomly initialised (only the architectures are compared: timm's ``efficientnet_b0``,
``efficientnet_b3`` and ``nasnetalarge`` from its efficientnet.py and nasnet.py, torchvision's
``efficientnet_b0``/``b3``). Runs are interleaved -- repeat r times every variant once, each round
starting one variant later -- so that a change in machine load hits all of them alike and no
variant always runs after the same neighbour; each figure is the median of the repeats after one
untimed warm-up call each. The timed process runs with glibc's mmap and heap trimming off
(`ALLOCATOR`; the script restarts itself with them): with the defaults, a figure depends on which
variants ran before it in the process.

Inference (eval mode, ``torch.inference_mode``), per model: nasforge eager with a contiguous
(NCHW) input and weights, nasforge eager channels_last (weights and input), nasforge deployed
(`nasforge.deploy`: BN folded, channels_last weights, contiguous input as a caller passes it),
optionally nasforge deployed + ``torch.compile`` (its compile time reported apart), timm and
torchvision eager in both layouts. Training: one SGD step (momentum 0.9, cross-entropy on random
labels, forward + backward + update) in both layouts, with the published regularisation
(dropout and stochastic depth 0.2 for B0; timm gets the same rates). NASNet-A Large trains only
when --train names it (a batch of 16 at 331 px needs tens of GiB).

Peak memory of a training step: for each library and layout a fresh subprocess builds the model,
the optimiser and the batch, resets its peak resident set size (Linux's /proc/self/clear_refs),
runs two training steps and reads the peak (VmHWM); the growth -- activations, gradients, momentum
buffers, oneDNN scratch space -- is the figure (median of --memory-repeats processes).
tracemalloc does not see torch's allocations, hence the RSS.

The table gives median milliseconds per batch and the speed ratio against timm's eager model in
the same layout (above 1: nasforge is faster). The goals checked at the end: deploy >= 1.25x
timm's faster eager layout (B0, NASNet-A Large; the eager deploy and, apart, the opt-in compiled
one), deployed outputs within 1e-4 of the eager model's (relative to its largest output),
nasforge eager >= 1.0x timm in both layouts, a training step >= 1.05x timm in channels_last (B0)
and a B0 training step's peak memory <= timm's.
Writes benchmarks/results/speed_vs_reference.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, print_table, write_json  # noqa: E402

#: nasforge name -> (timm name, torchvision name or None, input resolution)
MODELS: dict[str, tuple[str, str | None, int]] = {
    "efficientnet_b0": ("efficientnet_b0", "efficientnet_b0", 224),
    "efficientnet_b3": ("efficientnet_b3", "efficientnet_b3", 300),
    "nasnet_a_large": ("nasnetalarge", None, 331),
}
#: glibc malloc settings of the timed process (its environment variables, read at start-up): no
#: mmap'd blocks and no trimming, so that freed activations stay in the heap and every call of every
#: variant allocates from a warm heap. With glibc's defaults a map over the dynamic mmap threshold
#: (32 MiB at most) is fresh zeroed pages on every call, and which maps fall under the threshold
#: depends on what the process ran before: timings then depend on the other variants of the run
#: (EfficientNet-B0 eager channels_last: 146 ms beside every variant with these settings, 180 ms
#: without them; 143 vs 227 ms when only two variants alternate).
ALLOCATOR = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}
#: The published regularisation of the nasforge builds, given to timm as well (dropout, drop path).
REGULARISATION = {"efficientnet_b0": (0.2, 0.2), "efficientnet_b3": (0.3, 0.2), "nasnet_a_large": (0.5, 0.0)}


def reference_libraries() -> tuple[Any, Any] | None:
    """(timm, torchvision or None), or None when timm cannot be imported here."""
    try:
        import timm
    except Exception as exc:  # noqa: BLE001 - ImportError, or a torchvision built for another torch
        print(f"skipped: timm is not importable in this environment ({type(exc).__name__}: {exc}).\n"
              "Run this benchmark in its own environment (see the docstring): timm and torchvision do not "
              "install beside the project's torch.")
        return None
    try:
        import torchvision
    except Exception:  # noqa: BLE001
        torchvision = None
    return timm, torchvision


def build(lib: str, name: str) -> nn.Module:
    """A randomly initialised model of library `lib` for nasforge model `name` (1000 classes)."""
    timm_name, tv_name, _ = MODELS[name]
    dropout, drop_path = REGULARISATION[name]
    torch.manual_seed(0)
    if lib == "nasforge":
        from nasforge.models import create

        return create(name)
    if lib == "timm":
        import timm

        kwargs = {"drop_rate": dropout}
        if drop_path:
            kwargs["drop_path_rate"] = drop_path
        return timm.create_model(timm_name, pretrained=False, **kwargs)
    import torchvision

    return getattr(torchvision.models, tv_name)(weights=None)  # dropout, stochastic depth: the paper's


def _channels_last(model: nn.Module) -> nn.Module:
    return model.to(memory_format=torch.channels_last)


def inference_variants(name: str, libs: list[str], batch: torch.Tensor, compile_model: bool,
                       notes: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """name -> a zero-argument call timing one batch (inputs and models bound)."""
    from nasforge.deploy import deploy, deploy_report

    x = batch
    x_cl = batch.contiguous(memory_format=torch.channels_last)
    variants: dict[str, Callable[[], Any]] = {}
    eager = build("nasforge", name).eval()
    variants["nasforge eager"] = lambda m=eager: m(x)
    eager_cl = _channels_last(build("nasforge", name).eval())
    variants["nasforge eager channels_last"] = lambda m=eager_cl: m(x_cl)
    deployed = deploy(eager, x)
    variants["nasforge deploy"] = lambda m=deployed: m(x)
    notes["deploy"] = deploy_report(deployed).to_dict()
    with torch.inference_mode():
        expected = eager(x)
    scale = float(expected.abs().max())
    notes["max_rel_diff"] = {"deploy": _max_rel_diff(deployed, x, expected, scale)}
    if compile_model:
        try:
            compiled = deploy(eager, x, compile=True)
        except Exception as exc:  # noqa: BLE001 - a missing compiler or an inductor bug: report, go on
            notes["compile_error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
            print(f"  torch.compile failed: {notes['compile_error']}", flush=True)
        else:
            notes["compile_seconds"] = deploy_report(compiled).compile_seconds
            notes["max_rel_diff"]["deploy+compile"] = _max_rel_diff(compiled, x, expected, scale)
            variants["nasforge deploy+compile"] = lambda m=compiled: m(x)
    print(f"  outputs vs eager, max |diff| / max |output|: {notes['max_rel_diff']}", flush=True)
    for lib in libs:
        if lib == "torchvision" and MODELS[name][1] is None:
            continue
        ref = build(lib, name).eval()
        variants[f"{lib} eager"] = lambda m=ref: m(x)
        ref_cl = _channels_last(build(lib, name).eval())
        variants[f"{lib} eager channels_last"] = lambda m=ref_cl: m(x_cl)
    return variants


def _max_rel_diff(model: nn.Module, x: torch.Tensor, expected: torch.Tensor, scale: float) -> float:
    """The deployed model's largest output difference from the eager one, relative to the largest
    eager output (randomly initialised networks reach logits of 1e5, so an absolute figure says little)."""
    with torch.inference_mode():
        return float((model(x) - expected).abs().max()) / max(scale, 1e-12)


def training_variants(name: str, libs: list[str], batch: torch.Tensor,
                      labels: torch.Tensor) -> dict[str, Callable[[], Any]]:
    variants: dict[str, Callable[[], Any]] = {}
    for lib in ["nasforge", *libs]:
        if lib == "torchvision" and MODELS[name][1] is None:
            continue
        for layout in ("contiguous", "channels_last"):
            model = build(lib, name).train()
            x = batch
            if layout == "channels_last":
                model = _channels_last(model)
                x = batch.contiguous(memory_format=torch.channels_last)
            variants[f"{lib} train {layout}"] = _train_step(model, x, labels)
    return variants


def _train_step(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> Callable[[], float]:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def interleaved(variants: dict[str, Callable[[], Any]], repeats: int, inference: bool,
                label: str) -> dict[str, list[float]]:
    """Milliseconds of every variant, `repeats` rounds each running every variant once.

    Each round starts one variant later than the one before, so that no variant always follows
    the same neighbour (a variant inherits the allocator and cache state the previous one left)."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    keys = list(variants)
    context = torch.inference_mode if inference else torch.enable_grad
    with context():
        for fn in variants.values():  # warm-up: oneDNN primitives, allocator, compiled kernels
            fn()
        for r in range(repeats):
            for key in keys[r % len(keys):] + keys[:r % len(keys)]:
                fn = variants[key]
                start = time.perf_counter()
                fn()
                times[key].append((time.perf_counter() - start) * 1e3)
            print(f"  {label}: round {r + 1}/{repeats} done", flush=True)
    return times


# -- peak memory of a training step, one subprocess per measurement -------------------------------------
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(spec: str, threads: int, batch_size: int) -> None:
    """Print the peak RSS growth over two training steps (one `lib:name:layout` configuration),
    and the tensors the forward pass saves for backward (a figure the allocator cannot blur).

    Every child imports timm and torchvision and builds its model the same way, so the processes
    differ only in the model measured. The process's high-water mark is reset first (Linux:
    writing 5 to /proc/self/clear_refs resets VmHWM to the current RSS), so that importing and
    building never count; where that is not possible, ``ru_maxrss`` before and after is used and
    the import peak may hide part of a small step's memory."""
    lib, name, layout = spec.split(":")
    torch.set_num_threads(threads)
    # every child imports the same libraries, whichever one it measures: heap that imports leave
    # free would otherwise absorb part of one library's step and not the other's
    import timm  # noqa: F401
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001, S110 - a torchvision built for another torch: measured without it
        pass
    resolution = MODELS[name][2]
    model = build(lib, name).train()
    x = torch.randn(batch_size, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 1000, (batch_size,), generator=torch.Generator().manual_seed(1))
    if layout == "channels_last":
        model = _channels_last(model)
        x = x.contiguous(memory_format=torch.channels_last)
    step = _train_step(model, x, labels)
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before, method = _status_kib("VmRSS"), "VmHWM after clear_refs"
        step()
        step()
        after = _status_kib("VmHWM")
    except OSError:
        before, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"  # KiB on Linux
        step()
        step()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    saved: dict[int, int] = {}  # storage address -> bytes, each storage once

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)  # after the measured steps, so that it never counts in their peak
    print(json.dumps({"peak_delta_mib": (after - before) / 1024, "peak_mib": after / 1024, "method": method,
                      "saved_for_backward_mib": sum(saved.values()) / 2**20}))


def pinned_allocator() -> bool:
    """Whether this process runs with `ALLOCATOR`'s settings."""
    return all(os.environ.get(k) == v for k, v in ALLOCATOR.items())


def default_allocator_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ALLOCATOR}


def measure_memory(libs: list[str], name: str, threads: int, batch_size: int, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in range(repeats):  # interleaved too
        for lib in ["nasforge", *libs]:
            if lib == "torchvision" and MODELS[name][1] is None:
                continue
            for layout in ("contiguous", "channels_last"):
                spec = f"{lib}:{name}:{layout}"
                proc = subprocess.run([sys.executable, __file__, "--memory-child", spec, "--threads", str(threads),
                                       "--batch", str(batch_size)], capture_output=True, text=True, check=True,
                                      env=default_allocator_env())  # the allocator a user has
                figures = json.loads(proc.stdout.strip().splitlines()[-1])
                out.setdefault(f"{lib} train {layout}", []).append(figures)
        print(f"  memory {name}: round {r + 1}/{repeats} done", flush=True)
    return {k: {"peak_delta_mib": statistics.median(f["peak_delta_mib"] for f in runs),
                "runs_mib": [f["peak_delta_mib"] for f in runs],
                "saved_for_backward_mib": runs[0]["saved_for_backward_mib"]} for k, runs in out.items()}


# -- the report ------------------------------------------------------------------------------------------------
def _ratio(reference_ms: float | None, ms: float) -> float | None:
    return None if reference_ms is None else reference_ms / ms


def _reference_for(variant: str) -> str:
    """The timm figure a variant is compared with: the same layout (deploy: timm's faster layout)."""
    if "deploy" in variant:
        return "timm best"
    if "train" in variant:
        return "timm train " + variant.rsplit(" ", 1)[1]
    return "timm eager channels_last" if variant.endswith("channels_last") else "timm eager"


def summarise(times: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    med = {k: statistics.median(v) for k, v in times.items()}
    timm_eager = [v for k, v in med.items() if k.startswith("timm eager")]
    best = min(timm_eager) if timm_eager else None
    out = {}
    for key, ms in med.items():
        ref_key = _reference_for(key)
        ref = best if ref_key == "timm best" else med.get(ref_key)
        out[key] = {"median_ms": ms, "times_ms": times[key], "vs": ref_key,
                    "speedup_vs_timm": _ratio(ref, ms)}
    return out


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []

    def add(goal: str, value: float | None, target: float, lower_is_better: bool = False) -> None:
        met = None if value is None else (value <= target if lower_is_better else value >= target)
        checks.append({"goal": goal, "value": value, "target": target, "met": met,
                       "direction": "<=" if lower_is_better else ">="})

    for name in ("efficientnet_b0", "nasnet_a_large"):
        inf = results.get(name, {}).get("inference", {})
        if "nasforge deploy" in inf:
            add(f"{name}: deploy vs timm eager (faster layout)", inf["nasforge deploy"]["speedup_vs_timm"], 1.25)
        if "nasforge deploy+compile" in inf:
            add(f"{name}: deploy + compile (opt-in) vs timm eager (faster layout)",
                inf["nasforge deploy+compile"]["speedup_vs_timm"], 1.25)
        diffs = results.get(name, {}).get("max_rel_diff", {})
        if diffs:
            add(f"{name}: deployed outputs, max relative difference from eager", max(diffs.values()), 1e-4,
                lower_is_better=True)
    for name, res in results.items():
        inf = res.get("inference", {})
        for layout in ("eager", "eager channels_last"):
            if f"nasforge {layout}" in inf:
                add(f"{name}: nasforge {layout} vs timm", inf[f"nasforge {layout}"]["speedup_vs_timm"], 1.0)
    b0 = results.get("efficientnet_b0", {})
    if "nasforge train channels_last" in b0.get("training", {}):
        add("efficientnet_b0: training step channels_last vs timm",
            b0["training"]["nasforge train channels_last"]["speedup_vs_timm"], 1.05)
    memory = b0.get("memory", {})
    for layout in ("contiguous", "channels_last"):
        nf, tm = memory.get(f"nasforge train {layout}"), memory.get(f"timm train {layout}")
        if nf and tm:
            add(f"efficientnet_b0: training peak memory {layout}, nasforge / timm",
                nf["peak_delta_mib"] / tm["peak_delta_mib"], 1.0, lower_is_better=True)
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per variant (median; >= 5)")
    parser.add_argument("--batch", type=int, default=16, help="images per batch")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--models", default=",".join(MODELS), help="models timed in inference")
    parser.add_argument("--train", default="efficientnet_b0,efficientnet_b3",
                        help="models timed for a training step ('' for none)")
    parser.add_argument("--compile", default="efficientnet_b0,nasnet_a_large",
                        help="models also timed deployed + torch.compile ('' for none)")
    parser.add_argument("--memory-repeats", type=int, default=3,
                        help="subprocesses per B0 training-memory figure (0 skips it)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child, args.threads, args.batch)
        return 0
    found = reference_libraries()
    if found is None:
        return 0
    if not pinned_allocator() and sys.platform.startswith("linux"):  # glibc reads them at start-up: start again
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **ALLOCATOR})
    libs = ["timm"] + (["torchvision"] if found[1] is not None else [])
    split = (lambda s: [m for m in s.split(",") if m])
    results: dict[str, Any] = {}
    rows = []
    started = time.perf_counter()
    for name in split(args.models):
        resolution = MODELS[name][2]
        gen = torch.Generator().manual_seed(0)
        batch = torch.randn(args.batch, 3, resolution, resolution, generator=gen)
        labels = torch.randint(0, 1000, (args.batch,), generator=gen)
        notes: dict[str, Any] = {}
        print(f"{name} at {resolution}px, batch {args.batch}, {args.threads} threads", flush=True)
        inf = summarise(interleaved(inference_variants(name, libs, batch, name in split(args.compile), notes),
                                    args.repeats, True, f"{name} inference"))
        results[name] = {"resolution": resolution, "inference": inf, **notes}
        if name in split(args.train):
            results[name]["training"] = summarise(interleaved(training_variants(name, libs, batch, labels),
                                                              args.repeats, False, f"{name} training"))
        if name == "efficientnet_b0" and args.memory_repeats > 0:
            results[name]["memory"] = measure_memory(libs, name, args.threads, args.batch, args.memory_repeats)
        _write(args, found, results, started, final=False)  # what is measured so far survives an interruption
        for part in ("inference", "training"):
            for key, r in results[name].get(part, {}).items():
                ratio = r["speedup_vs_timm"]
                rows.append([name, key, r["median_ms"], args.batch / r["median_ms"] * 1e3,
                             "-" if ratio is None else f"{ratio:.2f}x", r["vs"]])
        if "compile_seconds" in notes:
            rows.append([name, "(compile time of deploy+compile)", notes["compile_seconds"] * 1e3, "-", "-", "-"])
        for key, r in results[name].get("memory", {}).items():
            rows.append([name, f"{key}: peak RSS delta (MiB)", r["peak_delta_mib"], "-", "-", "-"])
            rows.append([name, f"{key}: saved for backward (MiB)", r["saved_for_backward_mib"], "-", "-", "-"])
    print_table(f"nasforge vs timm{' and torchvision' if 'torchvision' in libs else ''} (CPU, batch {args.batch}, "
                f"{args.threads} threads, median of {args.repeats})",
                ["model", "variant", "ms / batch", "images / s", "speed vs timm", "compared with"], rows, width=150)
    checked = goals(results)
    for g in checked:
        value = "n/a" if g["value"] is None else f"{g['value']:.3g}"
        verdict = {True: "met", False: "NOT met", None: "n/a"}[g["met"]]
        print(f"  {g['goal']}: {value} (target {g['direction']} {g['target']}) {verdict}")
    print(f"wrote {_write(args, found, results, started, final=True)}")
    return 0


def _write(args: argparse.Namespace, found: tuple[Any, Any], results: dict[str, Any], started: float,
           final: bool) -> Path:
    """The results file, keeping the figures of models this run did not measure (``--models``
    reruns some); each model's entry says when it was measured."""
    for entry in results.values():
        entry.setdefault("measured", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    path = RESULTS / "speed_vs_reference.json"
    kept = json.loads(path.read_text()).get("results", {}) if path.exists() else {}
    results = {**{k: v for k, v in kept.items() if k not in results}, **results}
    return write_json("speed_vs_reference", {
        "config": {"repeats": args.repeats, "batch": args.batch, "threads": args.threads,
                   "timm": found[0].__version__,
                   "torchvision": found[1].__version__ if found[1] is not None else None,
                   "allocator": ALLOCATOR if pinned_allocator() else "glibc defaults",
                   "memory_method": "peak RSS (VmHWM, reset through /proc/self/clear_refs) growth over two "
                                    "training steps in a fresh subprocess",
                   "seconds": time.perf_counter() - started, "complete": final},
        "results": results, "goals": goals(results)})


if __name__ == "__main__":
    sys.exit(main())
