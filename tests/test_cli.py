import argparse
import json
import subprocess
import sys

import pytest
from toys import run_main
from torch import nn

from nasforge.arch.nasnet_cells import DARTS_V2, NASNET_A
from nasforge.cli import build_parser, main
from nasforge.profile import count_macs, measure_peak_memory
from nasforge.spaces import NASNetSpace


def run_cli(*args):
    """The real console entry point, in a subprocess: exit code, stdout, stderr. For the missing
    file below; the other bad inputs run `main()` in this process (`run_main`), which saves seconds
    of imports per call."""
    proc = subprocess.run([sys.executable, "-m", "nasforge.cli", *args], capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert {"nasnet_a_mobile", "nasnet_a_large", "nasnet_a_cifar", "amoebanet_a_cifar"} <= set(listed)
    assert listed["nasnet_a_large"]["resolution"] == 331


def test_the_models_listing_is_the_registry():
    """`nasforge models` lists a written-out copy of the registry (no torch at start-up): it must
    name every registered model, with the registry's own facts."""
    from nasforge.cli.models import MODELS
    from nasforge.models import get_model_spec, list_models

    registry = [(s.name, s.family, s.resolution, s.num_classes, s.description)
                for s in map(get_model_spec, list_models())]
    assert [tuple(m) for m in MODELS] == registry


def test_models_pattern(capsys):
    assert main(["models", "efficientnet_b[01]", "--json"]) == 0
    assert [m["name"] for m in json.loads(capsys.readouterr().out)] == ["efficientnet_b0", "efficientnet_b1"]


def test_the_export_help_names_every_format():
    from nasforge.cli.export import EXPORT_FORMAT_NAMES
    from nasforge.export import EXPORT_FORMATS

    assert EXPORT_FORMAT_NAMES == EXPORT_FORMATS


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("nasforge",)):
    """(command words, parser) of `parser` and of every sub-command under it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_option_of_every_command_has_help():
    parsers = list(_parsers(build_parser()))
    assert len(parsers) > 12  # the walk reached the sub-commands (scale's included)
    missing = [f"{' '.join(path)} {'/'.join(a.option_strings) or a.dest}" for path, parser in parsers
               for a in parser._actions if not isinstance(a, argparse._SubParsersAction)
               and (a.help is None or a.help == argparse.SUPPRESS or not a.help.strip())]
    assert missing == []
    for _, parser in parsers:
        parser.format_help()  # a stray '%' in a help text fails only here


def test_help_and_models_import_no_heavy_package():
    """Start-up stays fast: parsing, every command's help and the model listing load no torch,
    numpy, rich or matplotlib (benchmarks/cli_startup.py times it)."""
    code = ("import contextlib, io, sys\n"
            "from nasforge.cli import build_parser, main\n"
            "parser = build_parser()\n"
            "for cmd in ('search', 'show', 'run', 'report', 'train', 'export', 'scale', 'bench', 'check-evaluator'):\n"
            "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "        parser.parse_args([cmd, '--help'])\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['models', '--json'])\n"
            "print(' '.join(m for m in ('torch', 'numpy', 'rich', 'matplotlib', 'sklearn', 'PIL') "
            "if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""


def test_profile_json_of_a_registered_model(capsys):
    assert main(["profile", "nasnet_a_mobile", "--json", "--no-latency"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == 5_289_978 and out["resolution"] == 224
    assert abs(out["macs"] / 564e6 - 1) < 0.02
    assert out["latency_ms"] is None and out["peak_memory_bytes"] > 0


def test_profile_resolution_and_classes_override(capsys):
    assert main(["profile", "nasnet_a_cifar", "--resolution", "64", "--num-classes", "100", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["resolution"] == 64 and out["latency_ms"] > 0
    assert main(["profile", "nasnet_a_cifar", "--json", "--no-latency"]) == 0
    base = json.loads(capsys.readouterr().out)
    assert abs(out["macs"] / base["macs"] - 4) < 0.05       # 2x resolution -> ~4x MACs
    assert out["params"] - base["params"] == 90 * (768 + 1)  # 100 vs 10 classes


def test_profile_architecture_file(tmp_path, capsys):
    arch = tmp_path / "cells.json"
    arch.write_text(NASNetSpace().dumps(NASNET_A))
    assert main(["profile", "--arch", str(arch), "--stem", "cifar", "--cells", "6", "--filters", "32",
                 "--num-classes", "10", "--json", "--no-latency"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == 3_346_538  # the same as the registered nasnet_a_cifar
    darts = tmp_path / "darts.json"
    darts.write_text(NASNetSpace(num_blocks=4).dumps(DARTS_V2))
    assert main(["profile", "--arch", str(darts), "--cells", "2", "--filters", "16", "--json", "--no-latency"]) == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["profile", "nasnet_a_mobil"], "unknown model 'nasnet_a_mobil'; did you mean: nasnet_a_mobile"),
        (["profile", "nasnet_a_cifar", "--resolution", "0"], "--resolution: expected a positive integer"),
        (["profile"], "give a registered model name or --arch FILE"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(capfd, args, message):
    code, out, err = run_main(capfd, *args)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "content, message",
    [
        ("{broken", "not valid JSON"),
        ('{"normal": {"blocks": []}}', "reduction: expected an object with a 'blocks' list"),
        (None, "normal.blocks[3].ops[0]"),
        ('{"space": "transformer"}', "space: unknown space 'transformer' (allowed:"),
    ],
)
def test_bad_architecture_files(tmp_path, capfd, content, message):
    path = tmp_path / "arch.json"
    if content is None:
        data = json.loads(NASNetSpace().dumps(NASNET_A))
        data["normal"]["blocks"][3]["ops"][0] = "conv_11x11"
        content = json.dumps(data)
        message = "normal.blocks[3].op_a: unknown op 'conv_11x11' (allowed: identity"
    path.write_text(content)
    code, _, err = run_main(capfd, "profile", "--arch", str(path))
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_architecture_file(tmp_path):
    """In a fresh interpreter: one line on stderr, nothing printed on import."""
    code, out, err = run_cli("profile", "--arch", str(tmp_path / "nope.json"))
    assert code == 2 and "--arch: no such file" in err and out == ""
    assert err.startswith("nasforge: error: ") and err.count("\n") == 1, err


def test_macs_of_a_known_layer():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 10 * 10, 5))
    assert count_macs(conv, 10) == 3 * 8 * 9 * 100 + 800 * 5


def test_peak_memory_sees_live_activations():
    big = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 1, 3, padding=1))
    peak = measure_peak_memory(big, 64, batch_size=2)
    activation = 2 * 64 * 64 * 64 * 4  # the 64-channel map, held while the next conv runs
    assert activation <= peak <= 3 * activation
