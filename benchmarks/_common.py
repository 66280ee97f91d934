"""Shared bits of the benchmark scripts: where results go and how tables print."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """What a figure was measured on. The CPU's vector instruction set is recorded because the same
    "2-core machine" has been an AVX2 and an AVX-512 one across sittings, and CPU timings differ."""
    return {"python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor(),
            "cpu": _cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")


def write_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2, sort_keys=True))
    return path


def nb201_on_cifar10():
    """(space, table path, dataset spec): NAS-Bench-201's space, its shared table and the shared
    CIFAR-10 training images that live evaluators score or train on."""
    from nasforge.data.paths import require_data
    from nasforge.spaces.nb201 import NB201Space

    return (NB201Space(), require_data("nasbench201", "nb201_cifar10.csv.gz"),
            f"npz:{require_data('cifar10', 'train.npz')}")


def progress_printer(label: str, every: int = 25):
    """A `progress(done, total)` callback printing every `every` cells with the seconds so far."""
    import time

    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % every == 0 or done == total:
            print(f"  {label}: {done}/{total} cells, {time.perf_counter() - start:.0f} s", flush=True)

    return progress


def print_table(title: str, columns: list[str], rows: list[list], width: int | None = None) -> None:
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r])
    Console(width=width).print(table)


def run_nasforge(command: str, folder: Path, flags: list[str], threads: int, cwd: Path) -> dict:
    """Run (or resume) `nasforge COMMAND` (search, run) into run folder FOLDER in a child process.

    Returns its JSON result with what the whole process of this sitting took (`process_s`: loading
    the data and a zero-cost reference sample come before a search's own clock starts), the 1-minute
    load averages before and after (near the command's own threads means the machine was otherwise
    idle) and the command, so a result says how it was produced.
    """
    import os
    import subprocess
    import sys
    import time

    from nasforge.experiment import Store

    cmd = [sys.executable, "-m", "nasforge.cli", command, *flags, "--run", str(folder), "--no-progress", "--json"]
    if Store.exists(folder):
        cmd.append("--resume")
    print(f"  {' '.join(cmd[3:])}", flush=True)
    start, load_before = time.time(), os.getloadavg()
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{folder} failed:\n{proc.stderr[-2000:]}")
    return {**json.loads(proc.stdout), "process_s": time.time() - start,
            "load_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "command": " ".join(["nasforge", *cmd[3:]])}
