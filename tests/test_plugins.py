"""The registries and third-party plug-ins.

The plug-in test installs tests/plugin_pkg the way pip leaves a package behind (the module on the
path and a ``dist-info`` folder whose entry_points.txt names it in the ``nasforge.plugins`` group)
and runs the real CLI in a fresh process, so nothing of this test process's imports leaks in.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nasforge.errors import ConfigError, NasforgeError, UnknownNameError
from nasforge.registry import PLUGIN_GROUP, Registry

PLUGIN_SOURCE = Path(__file__).resolve().parent / "plugin_pkg"


def plugin_env(tmp_path: Path, target: str = "nasforge_toyplugin") -> dict[str, str]:
    """An environment whose Python sees the toy plug-in package as installed."""
    site = tmp_path / "site"
    dist = site / "nasforge_toyplugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: nasforge-toyplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{PLUGIN_GROUP}]\ntoy = {target}\n")
    path = [str(site), str(PLUGIN_SOURCE), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}


def nasforge(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nasforge.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)


SEARCH = ["search", "--space", "dial", "--strategy", "hill", "--evaluator", "target", "--trials", "25",
          "--seed", "3", "--no-progress", "--json"]


def test_a_plugin_package_adds_a_space_a_strategy_and_an_evaluator_to_the_cli(tmp_path):
    env = plugin_env(tmp_path)
    proc = nasforge(env, *SEARCH, "--run", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["trials"] == 25 and summary["failed"] == 0

    shown = nasforge(env, "show", str(tmp_path / "run"), "--json", "--top", "25")
    assert shown.returncode == 0, shown.stderr
    trials = json.loads(shown.stdout)["top"]
    assert len(trials) == 25 and all(t["key"].startswith("dial-") for t in trials)
    # the evaluator's reward is 1 / (1 + distance to dials 5,5,5,5); the hill climber, which only
    # turns one dial of the best so far, ends closer than where it started
    first = min(trials, key=lambda t: t["id"])
    assert trials[0]["reward"] > first["reward"]
    for t in trials:
        dials = t["arch"]["dials"]
        assert t["reward"] == pytest.approx(1 / (1 + sum(abs(d - 5) for d in dials)))

    listed = json.loads(nasforge(env, "list", "--json").stdout)
    for kind, name in [("spaces", "dial"), ("strategies", "hill"), ("evaluators", "target")]:
        [row] = [r for r in listed[kind] if r["name"] == name]
        assert row["origin"] == "nasforge_toyplugin" and row["description"]
    assert {r["origin"] for r in listed["models"]} == {"nasforge"}

    again = nasforge(env, *SEARCH, "--run", str(tmp_path / "again"))
    best, best_again = summary["best"], json.loads(again.stdout)["best"]
    assert (best_again["key"], best_again["id"]) == (best["key"], best["id"])  # same seed, same search


def test_plugin_names_are_checked_like_built_in_ones(tmp_path):
    env = plugin_env(tmp_path)
    proc = nasforge(env, *SEARCH, "--run", str(tmp_path / "run"), "--strategy-option", "restarts=2")
    assert proc.returncode != 0
    assert proc.stderr.strip() == "nasforge: error: strategy.restarts: unknown option for strategy 'hill' (allowed: none)"

    proc = nasforge(env, "search", "--space", "dail", "--run", str(tmp_path / "r2"))
    assert proc.returncode != 0 and "unknown space 'dail'; did you mean: dial?" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_without_the_plugin_its_names_are_unknown(tmp_path, capfd):
    """In this process, which has not installed the plug-in (a fresh interpreter would add only
    seconds of imports: an import that leaked the plug-in's names in would fail this test)."""
    from toys import run_main

    code, _, err = run_main(capfd, *SEARCH, "--run", str(tmp_path / "run"))
    assert code != 0
    assert "space: unknown space 'dial'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_broken_plugin_is_named_in_one_line(tmp_path):
    env = plugin_env(tmp_path, target="nasforge_no_such_plugin")
    proc = nasforge(env, *SEARCH, "--run", str(tmp_path / "run"))
    assert proc.returncode != 0
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "plug-in 'toy' (nasforge_no_such_plugin) failed to load: ModuleNotFoundError" in line


# -- the registry type ---------------------------------------------------------------------------------
class Base:
    def __init__(self, space, seed: int = 0, depth: int = 2):
        self.space, self.seed, self.depth = space, seed, depth


class Derived(Base):
    """A subclass that passes its options on to its base."""

    def __init__(self, space, seed: int = 0, *, width: int, **options):
        super().__init__(space, seed, **options)
        self.width = width


def test_registry_registers_creates_and_checks_options():
    reg: Registry = Registry("widget", supplied=("space", "seed"))

    @reg.register("derived")
    class _Local(Derived):
        pass

    reg.register("base", Base, description="plain")
    assert sorted(reg) == ["base", "derived"] and "base" in reg and len(reg) == 2
    assert [(e.name, e.description) for e in reg.entries()] == [
        ("base", "plain"), ("derived", "A subclass that passes its options on to its base.")]
    assert reg.options("derived") == ["width", "depth"]  # **options reach the base class's
    w = reg.create("derived", "S", 4, width=3, depth=5)
    assert (w.space, w.seed, w.width, w.depth) == ("S", 4, 3, 5)

    with pytest.raises(ConfigError, match=r"^widget.height: unknown option for widget 'derived' \(allowed: width, depth\)$"):
        reg.create("derived", "S", height=1)
    with pytest.raises(ConfigError, match=r"^widget.width: is required for widget 'derived'$"):
        reg.create("derived", "S")
    with pytest.raises(UnknownNameError) as info:
        reg.create("derivd", "S")
    assert str(info.value) == "widget: unknown widget 'derivd'; did you mean: derived? (allowed: base, derived)"
    assert isinstance(info.value, KeyError) and isinstance(info.value, ConfigError)
    with pytest.raises(ConfigError, match="^widget: widget 'base' is already registered"):
        reg.register("base", Derived)
    reg.register("base", Derived, overwrite=True)
    assert reg["base"] is Derived
    reg.unregister("base")
    assert "base" not in reg


def test_partials_and_lazy_targets():
    reg: Registry = Registry("thing")
    reg.register("fixed", functools.partial(Base, "S", depth=7))
    assert reg.options("fixed") == ["seed"]  # the partial's arguments are not options
    assert reg.create("fixed", seed=2).depth == 7
    reg.register("lazy", "json:JSONDecoder")  # imported on first use
    assert reg.create("lazy", strict=False).strict is False
    reg.register("anything", lambda **options: options)
    assert reg.options("anything") == [] and reg.create("anything", a=1) == {"a": 1}  # unchecked
    with pytest.raises(NasforgeError):
        reg.register("", Base)
