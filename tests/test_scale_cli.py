"""`nasforge scale family` and `nasforge scale search` (the cheap MACs evaluator; no training)."""

import json
import os
import subprocess
import sys

import pytest

from nasforge.cli import main
from nasforge.experiment import Store
from nasforge.scaling.coefficients import MACsScore

# A small baseline (B0 at a quarter of its width and depth, 64 px) keeps each candidate cheap; the
# MACs score depends on the multipliers relative to the baseline only, so it ranks as for B0 itself.
SMALL = ["efficientnet_b0", "--width-mult", "0.25", "--depth-mult", "0.25", "--resolution", "64",
         "--num-classes", "10", "--step", "0.25", "--no-progress"]


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_json(capsys, *args):
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def essence(result):
    """What must not depend on how the run was interrupted."""
    return [(c["alpha"], c["beta"], c["gamma"], c["label"], c["status"], c["reward"], c["params"], c["macs"])
            for c in result["candidates"]], result["best"]


def trial_keys(run_dir):
    with Store.open(run_dir) as store:
        return [t.key for t in store.trials()], store.counts(), store.get_marker("coefficients")


# -- scale family --------------------------------------------------------------------------------------
def test_family_json_grows_monotonically_with_phi(capsys):
    rows = run_json(capsys, "scale", "family", "efficientnet_b0", "--phi", "0", "1", "2", "3",
                    "--width-mult", "0.25", "--depth-mult", "0.25")
    assert [r["phi"] for r in rows] == [0, 1, 2, 3]
    assert [r["resolution"] for r in rows] == [224, 256, 296, 344]  # 224 x 1.15^phi, to multiples of 8
    assert rows[1]["depth_mult"] == pytest.approx(1.2) and rows[1]["width_mult"] == pytest.approx(1.1)
    macs = [r["macs"] for r in rows]
    params = [r["params"] for r in rows]
    assert macs == sorted(macs) and len(set(macs)) == 4
    assert params == sorted(params)
    assert rows[1]["macs_ratio"] == pytest.approx(macs[1] / macs[0])
    assert rows[2]["ideal_ratio"] == pytest.approx((1.2 * 1.1 ** 2 * 1.15 ** 2) ** 2)
    assert rows[0]["structure"]["repeats"] == [1] * 7  # B0's repeats x 0.25, ceiling


def test_family_published_rows_beside_the_formula(capsys):
    rows = run_json(capsys, "scale", "family", "efficientnet_b0", "--phi", "0", "1", "--published")
    assert [r["params"] for r in rows] == [5_288_548, 9_109_994]  # phi = 1 has B2's widths and depths
    assert [r["published"]["params"] for r in rows] == [5_288_548, 7_794_184]  # the released B0 and B1
    assert rows[1]["published"]["resolution"] == 240 and rows[1]["resolution"] == 256


def test_family_table(capsys):
    small = ["efficientnet_b0", "--width-mult", "0.25", "--depth-mult", "0.25", "--resolution", "64"]
    assert main(["scale", "family", *small, "--phi", "0", "1", "0.5", "--published"]) == 0
    out = capsys.readouterr().out
    assert "α·β²·γ² = 1.920" in out and "published w/d/r" in out
    lines = [line for line in out.splitlines() if line.startswith("│")]
    assert len(lines) == 3 and "│ 1 / 1.1 / 72 " in lines[1]  # B1's 240 px x 64 / 224, to a multiple of 8
    assert lines[2].startswith("│ 0.5 ") and lines[2].rstrip("│ ").endswith("-")  # no published row for 0.5
    rows = run_json(capsys, "scale", "family", *small, "--phi", "1", "--alpha", "1.1", "--beta", "1", "--gamma", "1")
    assert rows[0]["resolution"] == 64 and rows[0]["width_mult"] == 1 and rows[0]["depth_mult"] == pytest.approx(1.1)


def test_family_of_an_architecture_file_with_a_smaller_baseline(in_tmp, capsys):
    from nasforge.arch.mbconv import B0_ARCH
    from nasforge.spaces.mbconv import MBConvSpace

    (in_tmp / "arch.json").write_text(json.dumps(MBConvSpace().to_json(B0_ARCH)))
    rows = run_json(capsys, "scale", "family", "arch.json", "--phi", "0", "1", "2", "--width-mult", "0.5",
                    "--depth-mult", "0.5", "--resolution", "48", "--num-classes", "10", "--alpha", "1.2",
                    "--beta", "1.1", "--gamma", "1.15")
    assert [r["resolution"] for r in rows] == [48, 55, 63]  # under 64 px resolutions step by 1 px, not 8
    assert [r["macs"] for r in rows] == sorted(r["macs"] for r in rows)
    assert rows[0]["params"] < 5_288_548 // 2


# -- scale search --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: a coefficient search run in one go."""
    folder = tmp_path_factory.mktemp("reference")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        import contextlib
        import io

        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            assert main(["scale", "search", *SMALL, "--run", "runs/ref", "--json"]) == 0
        return json.loads(buffer.getvalue()), folder / "runs" / "ref"
    finally:
        os.chdir(cwd)


def test_search_end_to_end_with_the_macs_evaluator(uninterrupted, capsys, monkeypatch):
    result, run_dir = uninterrupted
    assert result["complete"] and result["metric"] == "score"
    labels = [c["label"] for c in result["candidates"]]
    assert labels == ["compound", "compound", "depth-only", "width-only", "resolution-only"]
    best = result["best"]
    assert best["label"] == "compound" and best["admissible"]
    assert abs(best["alpha"] * best["beta"] ** 2 * best["gamma"] ** 2 - 2) <= 0.1
    assert best["reward"] == pytest.approx(max(c["reward"] for c in result["candidates"] if c["label"] == "compound"))
    # with a balanced-returns score compound scaling beats every single dimension of the same budget
    assert [a["label"] for a in result["alternatives"]] == ["depth-only", "width-only", "resolution-only"]
    assert all(a["reward_vs_best"] < 0 for a in result["alternatives"])
    for c in result["candidates"]:
        assert c["status"] == "done" and c["params"] > 0 and c["macs"] > 0 and c["resolution"] >= 64
    keys, counts, marker = trial_keys(run_dir)
    assert counts["total"] == 5 and len(set(keys)) == 5
    assert marker["best"] == best and len(marker["candidates"]) == 5  # what the HTML report reads
    # the human table names the chosen triple and every alternative
    capsys.readouterr()
    monkeypatch.chdir(run_dir.parent.parent)
    assert main(["scale", "search", *SMALL, "--run", "runs/ref", "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"alpha={best['alpha']:.4g} beta={best['beta']:.4g} gamma={best['gamma']:.4g}" in out
    assert all(label in out for label in ("depth-only", "width-only", "resolution-only"))
    assert trial_keys(run_dir)[1]["total"] == 5  # resuming a finished search evaluates nothing
    # uncertainty (a deterministic score: se 0), the baseline row and the verdict sentence
    assert "±" in out and "baseline (φ = 0)" in out
    assert ("clear winner:" in out) or ("no clear winner:" in out)
    assert all(c["se"] == 0.0 for c in result["candidates"]) and result["verdict"]["best"]["index"] == best["index"]
    assert result["baseline"]["label"] == "baseline" and result["baseline"]["macs"] < best["macs"]
    assert result["verdict"]["alternative"]["better"] == "compound"


def test_search_stopped_by_a_budget_resumes_to_the_same_result(uninterrupted, in_tmp, capsys):
    partial = run_json(capsys, "scale", "search", *SMALL, "--run", "runs/r", "--trials", "2")
    assert not partial["complete"]
    assert [c["status"] for c in partial["candidates"]] == ["done", "done", "not run", "not run", "not run"]
    assert trial_keys(in_tmp / "runs" / "r")[1]["total"] == 2
    resumed = run_json(capsys, "scale", "search", *SMALL, "--run", "runs/r", "--resume")
    assert resumed["complete"] and essence(resumed) == essence(uninterrupted[0])
    keys, counts, _ = trial_keys(in_tmp / "runs" / "r")
    assert counts["total"] == 5 and len(set(keys)) == 5 and counts["done"] == 5


def test_search_in_a_folder_outside_the_current_directory(uninterrupted, tmp_path, capsys, monkeypatch):
    """--run is the user's path ('..' and ~ included); resumed from elsewhere by its absolute path
    it finishes the same search."""
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    partial = run_json(capsys, "scale", "search", *SMALL, "--run", "../runs/r", "--trials", "2")
    assert not partial["complete"] and trial_keys(tmp_path / "runs" / "r")[1]["total"] == 2
    monkeypatch.chdir(tmp_path)
    resumed = run_json(capsys, "scale", "search", *SMALL, "--run", str(tmp_path / "runs" / "r"), "--resume")
    assert essence(resumed) == essence(uninterrupted[0])
    assert resumed["run"] == str(tmp_path / "runs" / "r")
    home = run_json(capsys, "scale", "search", *SMALL, "--run", "~/scale", "--trials", "1")
    assert home["run"] == str(tmp_path / "home" / "scale")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "runs", "work"]
    assert list((tmp_path / "work").iterdir()) == []


def test_search_interrupted_during_an_evaluation_resumes_without_repeats(uninterrupted, in_tmp, capsys,
                                                                         monkeypatch):
    original = MACsScore.evaluate
    calls = []

    def interrupted(self, space, arch, seed):
        calls.append(arch)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, space, arch, seed)

    monkeypatch.setattr(MACsScore, "evaluate", interrupted)
    assert main(["scale", "search", *SMALL, "--run", "runs/k"]) == 130
    keys, counts, _ = trial_keys(in_tmp / "runs" / "k")
    assert counts["done"] == 2 and counts["total"] == 3  # the third was cut off mid-evaluation
    monkeypatch.setattr(MACsScore, "evaluate", original)
    resumed = run_json(capsys, "scale", "search", *SMALL, "--run", "runs/k", "--resume")
    assert essence(resumed) == essence(uninterrupted[0])
    keys, counts, _ = trial_keys(in_tmp / "runs" / "k")
    assert counts["total"] == 5 and len(set(keys)) == 5


def test_library_call_and_resume_flag_checks(in_tmp, capsys):
    from nasforge.errors import ConfigError
    from nasforge.scaling.search import search_coefficients

    result = search_coefficients("efficientnet_b0", None, in_tmp / "lib", step=0.25, progress=False,
                                 max_trials=1)
    assert result.best is not None and not result.complete and result.metric == "score"
    with pytest.raises(ConfigError, match="already holds a run"):
        search_coefficients("efficientnet_b0", None, in_tmp / "lib", step=0.25, progress=False)
    with pytest.raises(ConfigError, match="different config"):  # another grid cannot continue this run
        search_coefficients("efficientnet_b0", None, in_tmp / "lib", step=0.1, progress=False, resume=True)


# -- bad input ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, expected", [
    (["family", "efficientnet_b0", "--alpha", "0.9"], "alpha: must be >= 1"),
    (["family", "efficientnet_b0", "--gamma", "0.5"], "got 0.5"),
    (["family", "efficientnet_b0", "--resolution", "16"], "--resolution: 16 px is under the minimum of 32 px"),
    (["family", "efficientnet_b0", "--width-mult", "-1"], "--width-mult: the baseline's width multiplier must be a "
                                                          "positive number, got -1"),
    (["family", "no_such_model"], "'no_such_model' is neither a registered model"),
    (["search", "efficientnet_b0", "--alpha-range", "0.8", "2"], "alpha_range: coefficients must be >= 1, got a "
                                                                 "lower bound of 0.8"),
    (["search", "efficientnet_b0", "--step", "0.3", "--tolerance", "0.001"], "grid: no admissible triple"),
    (["search", "efficientnet_b0", "--step", "0.5", "--tolerance", "0.01"], "are only (2, 1, 1)"),
    (["search", "efficientnet_b0", "--resolution", "24"], "--resolution: 24 px is under the minimum"),
    (["search", "efficientnet_b0", "--depth-mult", "0"], "--depth-mult: the baseline's depth multiplier"),
    (["search", "efficientnet_b0", "--target", "0.5"], "target: must be a number >= 1"),
    (["search", "efficientnet_b0", "--resume"], "--resume: needs --run"),
    (["search", "efficientnet_b0", "--epochs", "2"], "--epochs: only applies with --evaluator proxy"),
    (["search", "efficientnet_b0", "--seeds", "2"], "--seeds: only applies with --evaluator proxy"),
])
def test_bad_input_is_one_line_and_exit_2(args, expected, in_tmp, capsys):
    assert main(["scale", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nasforge: error: ") and expected in err, err
    assert not (in_tmp / "runs").exists()  # refused before any run folder is made


def test_bad_input_from_the_real_command(in_tmp):
    proc = subprocess.run([sys.executable, "-m", "nasforge.cli", "scale", "family", "efficientnet_b0",
                           "--beta", "0.95"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "nasforge: error: beta: must be >= 1 (compound scaling only grows a baseline), got 0.95\n"
