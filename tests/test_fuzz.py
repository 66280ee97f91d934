"""Property-based fuzzing of every user input of the `nasforge` CLI.

Users hand `nasforge` architecture files, search configs, datasets and command lines, and any of
them can be wrong in ways nobody thought of. Whatever they give, a mistake must end as ONE line
on stderr (``nasforge ...: error: ...``) that names the file, flag or field at fault, with a
non-zero exit status, no traceback, and nothing changed on disk: an existing run in particular
must come out of a rejected command byte for byte as it went in. These properties feed the real
`main()` random and mutated inputs (hypothesis) and check exactly that. Every generated case is
invalid, or checked to be invalid before it is run, so nothing here trains a network for real.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import math
import os
import re
import shlex
import shutil
import string
import struct
import tempfile
import zlib
from datetime import date, datetime, time
from pathlib import Path

import numpy as np
import pytest
import tomllib
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nasforge.arch.nasnet_cells import NASNET_A
from nasforge.cli import build_parser, main
from nasforge.data.paths import data_path
from nasforge.errors import NasforgeError
from nasforge.nn.ops import OP_NAMES
from nasforge.spaces import SPACES, NASNetSpace, space_for_json

# Function-scoped fixtures (capsys, tmp_path, monkeypatch) are shared by the examples of a test on
# purpose: each example makes its own temporary folder where it needs a fresh one.
FUZZ = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                    HealthCheck.filter_too_much]}

#: NASFORGE_FUZZ_SCALE=10 multiplies every property's examples, for a longer hunt than the test run's.
SCALE = float(os.environ.get("NASFORGE_FUZZ_SCALE", "1"))


def examples(n: int) -> int:
    return max(1, round(n * SCALE))


NB201 = data_path("nasbench201", "nb201_cifar10.csv.gz")
ERROR_LINE = re.compile(r"^nasforge(?: [\w-]+)*: error: (.*)$")


# -- helpers ------------------------------------------------------------------------------------------
def run_cli(argv, capsys) -> tuple[int, str]:
    """`main(argv)` in-process: its exit code (SystemExit's for argparse errors) and its stderr."""
    capsys.readouterr()  # drop what earlier examples printed
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code
    return code, capsys.readouterr().err


def assert_one_line_error(code, err: str) -> str:
    """Non-zero exit, exactly one line on stderr in the CLI's error format; returns the message."""
    assert "Traceback" not in err, err
    assert code != 0, f"exit 0 on bad input; stderr: {err!r}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    match = ERROR_LINE.match(lines[0])
    assert match, f"not a nasforge error line: {lines[0]!r}"
    return match.group(1)


def words(text: str) -> list[str]:
    """The printable runs of `text` (line breaks and control characters may be escaped in a message)."""
    return [w for w in re.split(r"[\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+", text) if w]


def mentions(message: str, name: str) -> bool:
    """`message` names `name`: as it is, as a flag's field name, or (with escapes) its printable parts."""
    name = str(name)
    if not name.strip():  # only quoted can it show
        return repr(name) in message or shlex.quote(name) in message
    if name in message or repr(name)[1:-1] in message:
        return True
    if name.startswith("--") and name[2:].replace("-", "_") in message:
        return True
    parts = words(name)
    return bool(parts) and all(p in message or repr(p)[1:-1] in message for p in parts)


def names_any(message: str, names) -> bool:
    return any(mentions(message, n) for n in names)


def tree(root: Path) -> dict[str, str]:
    """Every file under `root` with a hash of its bytes (folders as '/').

    An empty write-ahead log and the shared-memory index next to the database are left out:
    SQLite makes them for any reader of a WAL database (a read-only one included), and they
    hold no data of the run.
    """
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.name.endswith("-shm") or (p.name.endswith("-wal") and p.stat().st_size == 0):
            continue
        out[rel] = "/" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@contextlib.contextmanager
def fresh_dir(monkeypatch):
    """A new empty folder, made the current directory, for one example."""
    with tempfile.TemporaryDirectory(prefix="nasforge-fuzz-") as tmp:
        with monkeypatch.context() as m:
            m.chdir(tmp)
            yield Path(tmp)


@contextlib.contextmanager
def environment_kept():
    """`--ray-address` sets RAY_ADDRESS for Ray to read; no example may leak it into the next."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# -- strategies: JSON ---------------------------------------------------------------------------------
SPACE_NAMES = sorted(SPACES)
ARCH_KEYS = ["space", "normal", "reduction", "blocks", "inputs", "ops", "combine", "concat", "stages", "kernel",
             "expansion", "se_ratio", "repeats", "channels", "layers", "height", "width", "filters", "stride",
             "arch", "format", "version", "architecture", "model", "network", "normalization", "mean", "std",
             "num_classes", "in_channels", "resolution", "options", "name"]
json_scalars = (st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.integers(-3, 10)
                | st.floats() | st.text(max_size=12)
                | st.sampled_from(SPACE_NAMES + list(OP_NAMES) + ["add", "concat", "nasforge-model"]))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=6)
    | st.dictionaries(st.sampled_from(ARCH_KEYS) | st.text(max_size=6), inner, max_size=6),
    max_leaves=25)
# objects that claim a space, so every space's reader is reached, not only NASNet's
space_objects = st.builds(lambda name, rest: {**rest, "space": name}, st.sampled_from(SPACE_NAMES),
                          st.dictionaries(st.sampled_from(ARCH_KEYS), json_values, max_size=4))


def _valid_jsons() -> dict[str, dict]:
    rng = np.random.default_rng(0)
    out = {"nasnet_a": NASNetSpace().to_json(NASNET_A)}
    for name, factory in SPACES.items():
        space = factory()
        out[name] = space.to_json(space.sample(rng))
    return out


VALID_ARCHS = _valid_jsons()
MODEL_DESCRIPTION = {"format": "nasforge-model", "version": 1, "name": "fuzz",
                     "architecture": VALID_ARCHS["nasnet_a"],
                     "space": {"name": "nasnet", "options": {}}, "network": {"num_cells": 1, "num_filters": 4},
                     "num_classes": 10, "in_channels": 1, "resolution": 8,
                     "normalization": {"mean": [0.5], "std": [0.25]}}


def _paths(value, prefix=()):
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _retype(value):
    """The same value in another JSON type."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return [str(value), float(value) + 0.5, value == 1, {"value": value}][value % 4]
    if isinstance(value, float):
        return str(value)
    if isinstance(value, str):
        return [value] if len(value) % 2 else {value: value}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, dict):
        return list(value.values())
    return 0


@st.composite
def mutated(draw, base: dict):
    """`base` with one to three random changes: a key dropped, a value replaced by a random value,
    an out-of-range index, an unknown op name, or a value of the wrong type."""
    data = copy.deepcopy(base)
    changed = []
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(data))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        kind = draw(st.sampled_from(["drop", "replace", "index", "op", "type"]))
        if kind == "drop":
            del parent[key]
        elif kind == "replace":
            parent[key] = draw(json_values)
        elif kind == "index":
            parent[key] = draw(st.integers(-(2 ** 63), -1) | st.integers(7, 2 ** 64) | st.integers(-2, 9))
        elif kind == "op":
            parent[key] = draw(st.sampled_from(list(OP_NAMES)) | st.text(max_size=15))
        else:
            parent[key] = _retype(parent[key])
        changed.append(path)
    return data, changed


def changed(base: dict, path: tuple, value) -> dict:
    """A copy of `base` with the value at `path` replaced (for the explicit examples)."""
    data = copy.deepcopy(base)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def arch_is_valid(data) -> bool:
    """What the CLI's readers accept (a NasforgeError means invalid; anything else is a bug and
    propagates, so the failing example shows it)."""
    try:
        space = space_for_json(data)
        space.from_json(data)
    except NasforgeError:
        return False
    return True


def keys_of(value) -> set[str]:
    out = set()
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(str(k))
            out |= keys_of(v)
    elif isinstance(value, list):
        for v in value:
            out |= keys_of(v)
    return out


#: What architecture errors are about (the first part of 'FIELD: problem').
ARCH_FIELDS = {"architecture", "space", "normal", "reduction", "stages", "layers", "arch", "json", "model",
               "network", "--arch", "ARCH_OR_RUN", "train"}


def assert_names_arch_problem(message: str, path: Path, data=None) -> None:
    field = message.split(": ", 1)[0]
    root = re.split(r"[.\[ ]", field)[0]
    assert (str(path) in message or root in ARCH_FIELDS or root.startswith("edge")
            or (data is not None and names_any(field, keys_of(data)))
            or message.startswith("unknown ")), f"{message!r} names no field of {path.name}"


def arch_argv(command: str, path: Path, data, missing_data: Path) -> list[str]:
    if command == "profile":
        nasnet = isinstance(data, dict) and data.get("space", "nasnet") == "nasnet"
        return ["profile", "--arch", path, "--no-latency", "--resolution", "8", "--json",
                *(["--cells", "1", "--filters", "4"] if nasnet else [])]
    # train validates the architecture before it loads data; a missing dataset stops valid ones
    return ["train", path, "--dataset", f"npz:{missing_data}", "--epochs", "1", "--out", "runs/t", "--no-progress"]


def check_arch_file(command, path: Path, data, capsys, valid: bool) -> None:
    missing = path.parent / "missing.npz"
    code, err = run_cli(arch_argv(command, path, data, missing), capsys)
    if valid:
        if command == "profile":
            assert code == 0 or len(err.strip().splitlines()) == 1, err
            assert "Traceback" not in err, err
        else:
            message = assert_one_line_error(code, err)
            assert str(missing) in message, message
        return
    assert_names_arch_problem(assert_one_line_error(code, err), path, data)


# -- 1. architecture files ----------------------------------------------------------------------------
@settings(max_examples=examples(40), **FUZZ)
@given(data=json_values | space_objects, command=st.sampled_from(["profile", "train"]))
@example(data={"space": []}, command="profile")  # an unhashable space name: TypeError
def test_random_json_architecture_files(data, command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "random.json"
    path.write_text(json.dumps(data))
    check_arch_file(command, path, data, capsys, arch_is_valid(data))
    assert not (tmp_path / "runs").exists()


mutants = st.one_of(
    st.sampled_from(sorted(VALID_ARCHS)).flatmap(lambda name: mutated(VALID_ARCHS[name])).map(
        lambda m: ("architecture", *m)),
    mutated(MODEL_DESCRIPTION).map(lambda m: ("description", *m)),
)


@settings(max_examples=examples(40), **FUZZ)
@given(case=mutants, command=st.sampled_from(["profile", "train"]))
@example(case=("architecture", changed(VALID_ARCHS["layerwise"], ("layers", 0, "stride"), []), []),
         command="profile")  # an unhashable stride: TypeError
@example(case=("description", changed(MODEL_DESCRIPTION, ("architecture", "normal", "concat", 0), []), []),
         command="train")  # an unhashable concat state: TypeError
def test_mutated_architecture_files(case, command, tmp_path, monkeypatch, capsys):
    """NASNet-A (and a sample of every other space, and a model description) with keys dropped,
    values replaced, indices out of range, unknown ops and wrong types."""
    kind, data, _changed = case  # _changed: the mutated paths, shown with a failing example
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "mutant.json"
    path.write_text(json.dumps(data))
    if kind == "architecture":
        check_arch_file(command, path, data, capsys, arch_is_valid(data))
        return
    # only train reads model descriptions; valid ones stop at the missing dataset
    code, err = run_cli(arch_argv("train", path, data, tmp_path / "missing.npz"), capsys)
    message = assert_one_line_error(code, err)
    if "missing.npz" not in message:
        assert_names_arch_problem(message, path, data)


def _nested(n: int, kind: str) -> str:
    """JSON nested `n` deep (deeper than Python's recursion limit for large `n`)."""
    return "[" * n + "]" * n if kind == "list" else '{"a": ' * n + "1" + "}" * n


undecodable = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda raw, cut: raw[:cut], st.sampled_from([json.dumps(v).encode() for v in VALID_ARCHS.values()]),
              st.integers(0, 400)),  # truncated
    st.builds(lambda raw, at, bad: raw[:at] + bad + raw[at:], st.just(json.dumps(VALID_ARCHS["nasnet_a"]).encode()),
              st.integers(0, 300), st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80", b"\xfe\xff"])),
    st.builds(_nested, st.integers(500, 50_000), st.sampled_from(["list", "dict"])).map(str.encode),
    st.sampled_from([b"", b"\xef\xbb\xbf{}", b"\x00", b"NaN", b"{" * 3, b'{"space": "nasnet"']),
)


@settings(max_examples=examples(30), **FUZZ)
@given(raw=undecodable, command=st.sampled_from(["profile", "train"]))
@example(raw=_nested(5000, "list").encode(), command="profile")  # RecursionError
@example(raw=_nested(5000, "dict").encode(), command="train")
def test_undecodable_architecture_files(raw, command, tmp_path, monkeypatch, capsys):
    """Random bytes, invalid UTF-8, truncated and absurdly nested JSON: the message names the file
    (or, where the bytes happen to be JSON, the field)."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "broken.json"
    path.write_bytes(raw)
    try:
        data = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        data = None
        valid = False
    else:
        valid = arch_is_valid(data)
    missing = tmp_path / "missing.npz"
    code, err = run_cli(arch_argv(command, path, data, missing), capsys)
    if valid:
        assert code == 0 or len(err.strip().splitlines()) == 1, err
        return
    message = assert_one_line_error(code, err)
    if data is None:
        assert str(path) in message, message
    else:
        assert_names_arch_problem(message, path, data)


# -- 2. search configs ---------------------------------------------------------------------------------
def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_text(data: dict) -> str:
    return "".join(f"{toml_value(str(k))} = {toml_value(v)}\n" for k, v in data.items())


toml_scalars = (st.booleans() | st.integers(-(2 ** 63), 2 ** 63 - 1) | st.integers(-2, 20) | st.floats()
                | st.text(max_size=10) | st.sampled_from(["nb201", "nasnet", "random", "evolution", "proxy", "digits",
                                                          "serial", "accuracy", "mnasnet", "npz:nope.npz"])
                | st.datetimes(min_value=datetime(1000, 1, 1)) | st.dates(min_value=date(1000, 1, 1)) | st.times())
toml_values = st.recursive(toml_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=10)
option_keys = st.sampled_from(["population_size", "sample_size", "dataset", "train", "network", "epochs",
                               "max_params", "num_blocks", "lr", "x"]) | st.text(max_size=8)
#: Where a config value can go (a None is filled with a random option name).
CONFIG_PLACES = [("space",), ("space", "name"), ("space", "options", None), ("seed",), ("strategy",),
                 ("strategy", "name"), ("strategy", "options", None), ("budget",), ("budget", "max_trials"),
                 ("budget", "max_seconds"), ("budget", "max_cost"), ("budget", None), ("evaluator",),
                 ("evaluator", "name"), ("evaluator", "options", None), ("workers",), ("retries",), ("timeout",),
                 ("executor",), ("dedup",), ("duplicates",), ("reask_limit",), ("limits", None), ("limits", "max_params"), ("objective",),
                 ("max_outstanding",), (None,)]
BASE_CONFIG = {"space": "nb201", "strategy": "random", "budget": {"max_trials": 2}}
SEARCH_CONFIG_ARGS = ["--run", "runs/x", "--no-progress"]


def set_path(data: dict, path: tuple, value) -> None:
    node = data
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {"name": child} if isinstance(child, str) else {}
            node[key] = child
        node = child
    node[path[-1]] = value


@st.composite
def config_changes(draw):
    data = copy.deepcopy(BASE_CONFIG)
    changed = []
    for _ in range(draw(st.integers(1, 3))):
        place = draw(st.sampled_from(CONFIG_PLACES))
        path = tuple(draw(option_keys) if k is None else k for k in place)
        set_path(data, path, draw(toml_values))
        changed.append(path)
    return data, changed


@pytest.fixture
def nb201_table(tmp_path_factory, monkeypatch):
    """The config fuzzers' base config searches NB201; without the shared table, a synthetic one
    with its columns stands in (else every valid config would fail on the missing file)."""
    if NB201 is None:
        from toys import write_synthetic_nb201_table

        root = tmp_path_factory.getbasetemp() / "synthetic_data"
        table = root / "nasbench201" / "nb201_cifar10.csv.gz"
        if not table.is_file():
            table.parent.mkdir(parents=True, exist_ok=True)
            write_synthetic_nb201_table(table, real_columns=True)
        monkeypatch.setenv("NASFORGE_DATA", str(root))


def config_is_valid(data: dict) -> bool:
    """Whether `nasforge search --config` would accept it and start searching."""
    from nasforge.cli.search import search_config_dict
    from nasforge.experiment import SearchConfig
    from nasforge.experiment.config import build_components

    args = build_parser().parse_args(["search", "--config", "c.toml", *SEARCH_CONFIG_ARGS])
    data = {k: v for k, v in data.items() if k != "run"}  # where to write: --run in SEARCH_CONFIG_ARGS wins
    try:
        config = SearchConfig.from_dict(search_config_dict(args, data))
        parts = build_components(config)
        prepare = getattr(parts.evaluator, "prepare", None)
        if callable(prepare):
            prepare()
    except Exception:  # noqa: BLE001 - invalid (a non-nasforge error shows when the CLI runs it)
        return False
    return True


@settings(max_examples=examples(30), **FUZZ)
@given(text=st.text(max_size=80)
       | st.builds(lambda a, b: a + b, st.sampled_from(["[", "a = ", "[[x]]\n", '"', "a.b = 1\na = 2\n"]),
                   st.text(max_size=30))
       | st.builds(_nested, st.integers(500, 20_000), st.just("list")).map(lambda b: "a = " + b),
       suffix=st.sampled_from([".toml", ".json"]))
@example(text="a = " + _nested(5000, "list"), suffix=".toml")  # RecursionError
@example(text=_nested(5000, "dict"), suffix=".json")
def test_config_files_with_broken_syntax(text, suffix, monkeypatch, capsys, nb201_table):
    """Random text, broken TOML/JSON and nesting deeper than Python's stack: the message names the
    config file (a file that parses as a valid config is not run)."""
    with fresh_dir(monkeypatch) as cwd:
        path = cwd / f"search{suffix}"
        path.write_text(text, encoding="utf-8")
        try:
            parsed = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
        except (ValueError, RecursionError):
            parsed = None
        assume(parsed is None or not isinstance(parsed, dict) or not config_is_valid(parsed))
        code, err = run_cli(["search", "--config", path.name, *SEARCH_CONFIG_ARGS], capsys)
        message = assert_one_line_error(code, err)
        if parsed is None or not isinstance(parsed, dict):
            assert path.name in message, message
        assert not (cwd / "runs").exists(), "a rejected config left a run folder behind"


@settings(max_examples=examples(50), **FUZZ)
@given(case=config_changes())
@example(case=({**BASE_CONFIG, "space": {"name": []}}, [("space", "name")]))  # unhashable name: TypeError
@example(case=({**BASE_CONFIG, "space": {"name": "nb201", "options": [1]}}, [("space", "options")]))
@example(case=({**BASE_CONFIG, "seed": 0}, [("seed",)]))  # valid: not run (found without the shared data)
@example(case=({**BASE_CONFIG, "executor": []}, [("executor",)]))  # unhashable executor: TypeError
@example(case=({**BASE_CONFIG, "limits": {"network": 1}}, [("limits", "network")]))  # dict(1): TypeError
@example(case=({**BASE_CONFIG, "": 1}, [("",)]))  # ": unknown config key" named no key
@example(case=({**BASE_CONFIG, "space": {"name": "nb201", "options": {"x": {"\x1e": datetime(2000, 1, 1)}}}},
               [("space", "options", "x")]))  # a key with a line break: a two-line message
def test_config_files_with_bad_values(case, monkeypatch, capsys, nb201_table):
    """A valid NB201 config with random values at the places a config has (unknown keys, wrong
    types, negative numbers, unknown names); valid results are not run."""
    data, changed = case
    text = toml_text(data)
    assert tomllib.loads(text).keys() == data.keys()  # the generator writes real TOML
    assume(not config_is_valid(data))
    with fresh_dir(monkeypatch) as cwd:
        (cwd / "search.toml").write_text(text, encoding="utf-8")
        code, err = run_cli(["search", "--config", "search.toml", *SEARCH_CONFIG_ARGS], capsys)
        message = assert_one_line_error(code, err)
        names = {str(k) for path in changed for k in path} | {"search.toml"}
        assert names_any(message, names), f"{message!r} names none of {sorted(names)}"
        assert not (cwd / "runs").exists(), "a rejected config left a run folder behind"


# -- 3. datasets ---------------------------------------------------------------------------------------
def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


GOOD_NPZ = _npz_bytes(x=np.zeros((20, 8, 8), np.uint8), y=np.arange(20) % 2)


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def _huge_shape(digits: int) -> bytes:
    """GOOD_NPZ whose x header declares 10**digits images (same length, so the zip still opens)."""
    old = b"'shape': (20, 8, 8), }" + b" " * 40
    new = f"'shape': ({'9' * digits}, 8, 8), }}".encode().ljust(len(old))
    assert len(new) == len(old) and old in GOOD_NPZ
    return GOOD_NPZ.replace(old, new, 1)


int_dtypes = st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.int64, np.uint16, np.uint64])
any_dtypes = (int_dtypes | st.sampled_from([np.float32, np.float64, np.bool_, np.complex64])
              | hnp.unicode_string_dtypes(max_len=3))


@st.composite
def npz_defects(draw) -> dict:
    """A valid x (uint8 N×S×S[×C]) and y (labels 0..K-1), then one or two things made wrong: x's
    dtype or shape, empty images, y's length, dtype, shape or values (negative, huge, beyond
    int64), a missing array."""
    n, side, k = draw(st.integers(2, 12)), draw(st.integers(1, 6)), draw(st.integers(1, 3))
    x = np.zeros((n, side, side, *draw(st.sampled_from([(), (1,), (3,)]))), np.uint8)
    y = np.arange(n) % k
    for defect in draw(st.lists(st.sampled_from(["x dtype", "x shape", "empty images", "y length", "y dtype",
                                                 "y shape", "y values", "missing"]), min_size=1, max_size=2)):
        if defect == "x dtype":
            x = x.astype(draw(any_dtypes.filter(lambda d: d != np.uint8)))
        elif defect == "x shape":
            x = np.zeros(draw(hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5)), x.dtype)
        elif defect == "empty images":
            x = np.zeros((n, 0, 0), np.uint8)
        elif defect == "y length":
            y = np.resize(y, draw(st.integers(0, 14).filter(lambda m: m != n)))
        elif defect == "y dtype":
            y = y.astype(draw(any_dtypes))
        elif defect == "y shape":
            y = (np.arange(n) % k).reshape(-1, 1) if draw(st.booleans()) else np.asarray(0)
        elif defect == "y values":
            dtype = draw(int_dtypes)
            info = np.iinfo(dtype)
            values = draw(st.lists(st.integers(int(info.min), int(info.max))
                                   | st.sampled_from([int(info.max), -1, 2 ** 40]), min_size=1, max_size=3))
            y = (np.arange(n) % k).astype(dtype)
            values = [min(max(v, int(info.min)), int(info.max)) for v in values[:n]]
            y[:len(values)] = values
        else:
            return {"y": y} if draw(st.booleans()) else {"x": x}
    return {"x": x, "y": y}


@st.composite
def npz_arrays(draw) -> dict:
    """Arrays named x and y (or not) of random dtypes and shapes, label counts and values."""
    n = draw(st.integers(0, 12))
    x_shape = draw(st.sampled_from([(n, 4, 4), (n, 4, 4, 1), (n, 4, 4, 3)])
                   | hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5))
    x = draw(hnp.arrays(st.just(np.uint8) | any_dtypes, x_shape))
    y_len = draw(st.just(n) | st.integers(0, 14))
    y_dtype = draw(int_dtypes | any_dtypes)
    y = draw(hnp.arrays(y_dtype, draw(st.just((y_len,)) | hnp.array_shapes(min_dims=0, max_dims=2, max_side=4))))
    arrays = {"x": x, "y": y}
    for name in draw(st.lists(st.sampled_from(["x", "y"]), max_size=1, unique=True)):
        del arrays[name]
    if draw(st.booleans()):
        arrays[draw(st.text(string.ascii_letters, min_size=1, max_size=4))] = np.zeros(2)
    return arrays


npz_files = st.one_of(
    npz_defects().map(lambda a: _npz_bytes(**a)),
    npz_arrays().map(lambda a: _npz_bytes(**a)),
    st.integers(0, len(GOOD_NPZ) - 1).map(lambda cut: GOOD_NPZ[:cut]),  # truncated
    st.binary(max_size=300),
    st.builds(lambda at, junk: GOOD_NPZ[:at] + junk + GOOD_NPZ[at + len(junk):], st.integers(0, len(GOOD_NPZ)),
              st.binary(min_size=1, max_size=16)),  # overwritten in the middle
    st.integers(3, 30).map(_huge_shape),  # a header that declares more data than the file holds
    hnp.arrays(any_dtypes, hnp.array_shapes(min_dims=0, max_dims=3)).map(_npy_bytes),  # a .npy, not an .npz
    st.just(_npy_bytes(np.array([{"x": 1}], dtype=object))),  # pickled objects, which are never loaded
)


def _zip_central(raw: bytes, flags: int | None = None, method: int | None = None) -> bytes:
    """A zip whose central directory claims other flag bits (encryption...) or compression method."""
    out, i = bytearray(raw), 0
    while (i := out.find(b"PK\x01\x02", i)) != -1:
        if flags is not None:
            out[i + 8:i + 10] = struct.pack("<H", flags)
        if method is not None:
            out[i + 10:i + 12] = struct.pack("<H", method)
        i += 4
    return bytes(out)


def dataset_is_valid(spec: str) -> bool:
    from nasforge.data.datasets import load_dataset
    from nasforge.data.loader import make_splits

    try:
        make_splits(load_dataset(spec), 0.1, 0, None, None)
    except Exception:  # noqa: BLE001 - invalid (a non-nasforge error shows when the CLI runs it)
        return False
    return True


def dataset_argv(command: str, spec: str) -> list[str]:
    if command == "search":
        return ["search", "--dataset", spec, "--trials", "1", "--epochs", "1", "--cells", "1", "--filters", "4",
                "--run", "runs/x", "--no-progress"]
    (Path("cells.json")).write_text(json.dumps(VALID_ARCHS["nasnet_a"]))
    return ["train", "cells.json", "--dataset", spec, "--epochs", "1", "--cells", "1", "--filters", "4",
            "--out", "runs/t", "--no-progress"]


@settings(max_examples=examples(30), **FUZZ)
@given(raw=npz_files, as_folder=st.booleans(), command=st.sampled_from(["search", "train"]))
@example(raw=b"", as_folder=False, command="search")  # the search ran, every trial failed, exit 0
@example(raw=_npz_bytes(x=np.zeros((2, 1, 1), np.uint8), y=np.array([3_623_878_655, 0])), as_folder=False,
         command="train")  # bincount of a huge label: MemoryError
@example(raw=_npz_bytes(x=np.zeros((2, 4, 4), np.uint8), y=np.array([2 ** 63 + 5, 0], np.uint64)), as_folder=True,
         command="train")  # a uint64 label that wraps negative: ValueError
@example(raw=_npy_bytes(np.zeros(3)), as_folder=False, command="train")  # a .npy: TypeError
@example(raw=_zip_central(GOOD_NPZ, flags=1), as_folder=False, command="train")  # "encrypted": RuntimeError
@example(raw=_zip_central(GOOD_NPZ, method=99), as_folder=False, command="train")  # NotImplementedError
@example(raw=_npz_bytes(x=np.zeros((1, 4, 4), np.uint8), y=np.array([0])), as_folder=False,
         command="train")  # one image: the message did not name the file
def test_broken_npz_datasets(raw, as_folder, command, monkeypatch, capsys):
    """Truncated and overwritten .npz files, random bytes, wrong dtypes, shapes and label counts."""
    with fresh_dir(monkeypatch) as cwd:
        if as_folder:  # a folder of train.npz (+ test.npz)
            (cwd / "data").mkdir()
            (cwd / "data" / "train.npz").write_bytes(raw)
            target = cwd / "data"
        else:
            target = cwd / "data.npz"
            target.write_bytes(raw)
        spec = f"npz:{target}"
        assume(not dataset_is_valid(spec))
        code, err = run_cli(dataset_argv(command, spec), capsys)
        message = assert_one_line_error(code, err)
        assert str(target) in message, message
        assert not (cwd / "runs").exists(), "a rejected dataset left a run folder behind"


def _png(size: tuple[int, int], mode: str, seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if channels == 1 else arr, mode).save(buf, format="PNG")
    return buf.getvalue()


def _png_header(width: int, height: int, rest: bytes) -> bytes:
    """A PNG signature, a well-formed IHDR chunk (CRC included) declaring any size, then an IDAT
    chunk of junk: what PIL opens before it reads any pixel."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", len(rest)) + b"IDAT" + rest


image_files = st.one_of(
    st.tuples(st.integers(1, 12), st.integers(1, 12), st.sampled_from(["L", "RGB", "RGBA"]), st.integers(0, 9)).map(
        lambda t: ("good", _png(t[:2], t[2], t[3]))),
    st.binary(max_size=64).map(lambda b: ("corrupt", b)),
    st.builds(lambda w, h, rest: ("corrupt", _png_header(w, h, rest)), st.integers(0, 2 ** 31 - 1),
              st.integers(0, 2 ** 31 - 1), st.binary(max_size=32)),
    st.builds(lambda png, cut: ("corrupt", png[:cut]), st.just(_png((6, 6), "L", 0)), st.integers(0, 60)),
)
class_folders = st.dictionaries(st.sampled_from(["cat", "dog", "emu", ".hidden", "zebra"]),
                                st.lists(st.tuples(st.sampled_from(["a.png", "b.PNG", "c.jpg", "d.jpeg", "e.txt"]),
                                                   image_files), max_size=3, unique_by=lambda t: t[0]),
                                max_size=3)


@settings(max_examples=examples(20), **FUZZ)
@given(classes=class_folders, split=st.booleans(), test_classes=class_folders,
       command=st.sampled_from(["search", "train"]))
@example(classes={}, split=False, test_classes={}, command="search")  # the search ran, every trial failed, exit 0
@example(classes={"cat": [("a.png", ("corrupt", _png_header(224, 798_916, b"")))]}, split=False, test_classes={},
         command="train")  # DecompressionBombError
def test_broken_image_folders(classes, split, test_classes, command, monkeypatch, capsys):
    """Corrupt PNGs (random bytes, truncated, absurd sizes), images of mixed sizes and modes, empty
    class folders, train/ and test/ folders that disagree."""
    with fresh_dir(monkeypatch) as cwd:
        root = cwd / "images"
        root.mkdir()
        layout = {"train": classes, "test": test_classes} if split else {"": classes}
        for part, folders in layout.items():
            for name, files in folders.items():
                folder = root / part / name
                folder.mkdir(parents=True)
                for filename, (_, content) in files:
                    (folder / filename).write_bytes(content)
        spec = f"folder:{root}"
        assume(not dataset_is_valid(spec))
        code, err = run_cli(dataset_argv(command, spec), capsys)
        message = assert_one_line_error(code, err)
        assert str(root) in message, message
        assert not (cwd / "runs").exists(), "a rejected dataset left a run folder behind"


# -- 4. command lines ----------------------------------------------------------------------------------
def _flags(*path: str) -> list[str]:
    parser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = sub._name_parser_map[name]
    return sorted(s for a in parser._actions for s in a.option_strings if s not in ("-h", "--help"))


#: A folder no command accepts (a path typed on the command line may go anywhere, '..' included).
NO_FOLDER = ""
#: command -> (positional arguments, a last bad pair that stops it before any work is done).
COMMANDS = {
    "search": ([], ["--run", NO_FOLDER]),
    "run": ([], ["--run", NO_FOLDER]),
    "train": (["SOURCE"], ["--out", NO_FOLDER]),
    "show": (["MISSING"], []),
    "report": (["MISSING"], []),
    "scale family": (["BASE"], ["--alpha", "0.5"]),
    "scale search": (["BASE"], ["--run", NO_FOLDER]),
    "profile": (["nasnet_a_cifar"], ["--arch", "cells.json"]),
    "bench": ([], ["--strategy-option", "novalue"]),
    "export": (["MISSING"], ["--format", "bogus"]),
}
FLAGS = {name: _flags(*name.split()) for name in COMMANDS}
text_values = st.text(max_size=12).filter(lambda s: not s.startswith("-"))
bad_values = st.one_of(
    st.integers(-(10 ** 30), 10 ** 30).map(str), st.integers(-5, 5).map(str), st.floats().map(str),
    st.floats(-10, 10).map(lambda f: f"{f:.3f}"), text_values,
    st.sampled_from(["", "../x", "0", "-1", "1e400", "nan", "inf", "-inf", "1.5", "10000000000000000000000",
                     "digits", "npz:", "npz:missing.npz", "folder:", "nb201", "nasnet", "mbconv", "random",
                     "evolution", "cpu", "auto", "serial", "small", "efficientnet_b0", "nasnet", "json", "onnx",
                     "population_size=3", "=1", "a=b", ".", "/", "runs", "runs/x"]),
)


@st.composite
def command_lines(draw):
    name = draw(st.sampled_from(sorted(COMMANDS)))
    positional, guard = COMMANDS[name]
    argv = name.split()
    pool = {"SOURCE": st.sampled_from(["cells.json", "nasnet_a_cifar", "runs/missing"]) | text_values,
            "BASE": st.sampled_from(["efficientnet_b0", "nasnet", "mbconv", "cells.json"]) | text_values,
            "MISSING": st.sampled_from(["runs/missing", "nope", ".", ""]) | text_values}
    argv += [draw(pool[p]) if p in pool else p for p in positional]
    tokens = draw(st.lists(st.tuples(st.sampled_from(FLAGS[name]), st.lists(bad_values, max_size=2)), max_size=5))
    for flag, values in tokens:
        argv += [flag, *values]
    return argv + guard


@settings(max_examples=examples(80), **FUZZ)
@given(argv=command_lines())
@example(argv=["search", "--config", "a\nb", "--run", NO_FOLDER])  # a two-line message
@example(argv=["show", "runs/missing", "--json", ""])  # "unrecognized arguments: " named nothing
@example(argv=["report", ""])  # "nasforge.db: no nasforge run database here"
@example(argv=["scale", "search", "efficientnet_b0", "--seed", "-1", "--run", NO_FOLDER])  # ValueError
def test_bad_command_lines(argv, monkeypatch, capsys):
    """Random flags of each command with random values (negative, huge, NaN, text, '', '../x'), and
    always one bad value last, so nothing runs: one line, naming something the user typed."""
    with fresh_dir(monkeypatch) as cwd, environment_kept():
        (cwd / "cells.json").write_text(json.dumps(VALID_ARCHS["nasnet_a"]))
        before = tree(cwd)
        code, err = run_cli(argv, capsys)
        message = assert_one_line_error(code, err)
        n = 2 if argv[0] == "scale" else 1  # the message names what was typed, or a missing flag
        assert names_any(message, argv[n:] + FLAGS[" ".join(argv[:n])]), message
        assert tree(cwd) == before, "a rejected command changed the current folder"


# -- 5. an existing run is never changed --------------------------------------------------------------
RUN = "runs/fz"
if NB201 is not None:  # 3 trials looked up in the NAS-Bench-201 table
    SEARCH = ["search", "--space", "nb201", "--strategy", "random"]
    TRIALS = "3"
else:  # 2 tiny proxy trials on digits
    SEARCH = ["search", "--space", "nasnet", "--strategy", "random", "--epochs", "1", "--cells", "1", "--filters",
              "4", "--train-size", "40", "--val-size", "20"]
    TRIALS = "2"


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory):
    """A folder holding one small real run (RUN) and a copy of it (pristine/)."""
    root = tmp_path_factory.mktemp("existing_run")
    old = os.getcwd()
    os.chdir(root)
    try:
        assert main([*SEARCH, "--trials", TRIALS, "--run", RUN, "--no-progress", "--json"]) == 0
    finally:
        os.chdir(old)
    pristine = root / "pristine"
    shutil.copytree(root / RUN, pristine)
    return root, pristine


#: Options that make `nasforge train RUN` fail before it trains, whatever else is given.
TRAIN_STOPS = [["--seed", "-1"], ["--lr", "1e400"], ["--epochs", "0"], ["--device", "tpu"],
               ["--dataset", "npz:missing.npz", "--out", NO_FOLDER]]
if NB201 is not None:
    TRAIN_STOPS += [["--cells", "2"], ["--filters", "8"]]  # NASNet-only flags on an NB201 architecture


@st.composite
def commands_on_the_run(draw):
    kind = draw(st.sampled_from(["search", "run", "show", "report", "train", "export", "scale"]))
    resume = ["--resume"] if draw(st.booleans()) else []

    def extras(command, exclude=()):
        flags = [f for f in FLAGS[command] if f not in exclude]
        pairs = draw(st.lists(st.tuples(st.sampled_from(flags), st.lists(bad_values, max_size=1)), max_size=3))
        return [t for flag, values in pairs for t in (flag, *values)]

    if kind == "search":  # the same search again, changed at random; a different seed always last
        return [*SEARCH, *extras("search", ("--run", "--seed", "--ray-address", "--executor")), "--run", RUN,
                "--no-progress", *resume, "--seed", str(draw(st.integers(1, 10 ** 6)))]
    if kind == "run":  # the pipeline on a search run: refused with or without --resume
        return ["run", *extras("run", ("--run",)), *resume, "--no-progress", "--run", RUN]
    if kind == "show":
        return ["show", RUN, *extras("show"), "--top", draw(st.sampled_from(["0", "-1", "x", "", "1e3"]))]
    if kind == "report":
        bad = draw(st.sampled_from([["--top", "0"], ["--compare", "runs/nope"], ["--out", RUN],
                                    ["--out", f"{RUN}/nasforge.db"], ["--compare", RUN, "nope"]]))
        return ["report", RUN, *extras("report", ("--out", "--compare")), *bad]
    if kind == "train":
        return ["train", RUN, *extras("train", ("--out",)), *draw(st.sampled_from(TRAIN_STOPS))]
    if kind == "export":
        fmt, out = draw(st.sampled_from([("json", f"{RUN}/nasforge.db"), ("json", RUN),
                                         ("json", f"{RUN}/nasforge.db/x"), ("onnx", f"{RUN}/nasforge.db"),
                                         ("torchscript", "model.pt"), ("pickle", "m.pkl")]))
        return ["export", RUN, "--format", fmt, "--out", out]
    return ["scale", "search", "efficientnet_b0", *extras("scale search", ("--run", "--dataset", "--evaluator")),
            "--no-progress", *resume, "--run", RUN]


@settings(max_examples=examples(50), **FUZZ)
@given(argv=commands_on_the_run())
@example(argv=["export", RUN, "--format", "json", "--out", f"{RUN}/nasforge.db"])  # overwrote the database
@example(argv=["run", "--resume", "--no-progress", "--run", RUN])  # wrote a pipeline marker, then failed
def test_commands_never_change_an_existing_run(existing_run, argv, monkeypatch, capsys):
    """search / run / scale search on the run's folder (with and without --resume), show, report,
    train and export of it with bad options: each fails with one line and the run's files (the
    database bytes, the folder listing) are exactly as before."""
    root, pristine = existing_run
    monkeypatch.chdir(root)
    folder = root / RUN
    before = tree(folder)
    try:
        with environment_kept():
            code, err = run_cli(argv, capsys)
        after = tree(folder)
        leftovers = sorted(p.name for p in root.iterdir())
    finally:
        if tree(folder) != tree(pristine):  # put the run back, so a failing example does not spoil the others
            shutil.rmtree(folder)
            shutil.copytree(pristine, folder)
    assert after == before, f"{argv} changed the run: {sorted(set(after.items()) ^ set(before.items()))}"
    assert leftovers == ["pristine", "runs"], f"{argv} left files behind: {leftovers}"
    assert sorted(p.name for p in (root / "runs").iterdir()) == [Path(RUN).name]
    message = assert_one_line_error(code, err)
    assert names_any(message, argv[1:]), message
