"""Start-up time of the `nasforge` command: `--help`, `search --help` and `models` in fresh processes.

    .venv/bin/python benchmarks/cli_startup.py [--repeats 5]

Each command runs once to warm the file cache and write its bytecode, then `--repeats` times; the
table gives the median wall-clock seconds (process start to exit, output discarded) and the heavy
packages the command imported (read from `python -X importtime`). A bare `python -c pass` is the
floor no command can go under. The bytecode goes to a temporary PYTHONPYCACHEPREFIX, even where
PYTHONDONTWRITEBYTECODE is set: an installed package has its bytecode, and compiling nasforge's
sources on every start would be timed otherwise. Results go to benchmarks/results/cli_startup.json.
The target is under 0.5 s for `nasforge --help` and `nasforge models`: they load no torch, numpy
or matplotlib (`nasforge models` loads rich for its table).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

#: Packages a command should import only when it needs them.
HEAVY = ("torch", "numpy", "rich", "matplotlib", "sklearn", "PIL", "scipy")
COMMANDS = (["--help"], ["search", "--help"], ["models"])


def nasforge_command() -> list[str]:
    """The console script of this interpreter's environment (what a user runs), else `-m nasforge.cli`."""
    script = Path(sys.executable).parent / "nasforge"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "nasforge.cli"]


def wall_seconds(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def heavy_imports(args: list[str], env: dict[str, str]) -> list[str]:
    """The HEAVY packages `nasforge ARGS` imports (one run under -X importtime)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "nasforge.cli", *args], check=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    loaded = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in proc.stderr.splitlines()
              if line.startswith("import time:")}
    return [name for name in HEAVY if name in loaded]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per command (default: %(default)s)")
    args = parser.parse_args()
    nasforge = nasforge_command()
    cases = [("python -c pass", [sys.executable, "-c", "pass"], None)]
    cases += [(" ".join(["nasforge", *c]), [*nasforge, *c], c) for c in COMMANDS]
    pycache = tempfile.TemporaryDirectory(prefix="cli_startup_pycache_")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = pycache.name
    rows, results = [], []
    for label, argv, cli_args in cases:
        wall_seconds(argv, env)  # warm the file cache, write the bytecode
        times = [wall_seconds(argv, env) for _ in range(args.repeats)]
        heavy = heavy_imports(cli_args, env) if cli_args is not None else []
        median = statistics.median(times)
        rows.append([label, median, min(times), max(times), ", ".join(heavy) or "-"])
        results.append({"command": label, "median_s": median, "times_s": times, "heavy_imports": heavy})
    print_table(f"nasforge start-up, seconds (median of {args.repeats} fresh processes)",
                ["command", "median s", "min s", "max s", "heavy imports"], rows)
    pycache.cleanup()
    path = write_json("cli_startup", {"repeats": args.repeats, "cpus": os.cpu_count(),
                                      "load_average": os.getloadavg(), "commands": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
