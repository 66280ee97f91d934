"""The run report (`nasforge.report.write_report`): its files, its summary.json, and the page itself
opened in a real headless Chromium (every image loads, no console errors, no network requests).

The runs are real small experiments on real spaces (NASNet, MBConv, NB-201) with a tiny in-test
evaluator, so the report reads exactly what the experiment loop writes. The browser is driven
over Chromium's DevTools protocol on a pipe (`--remote-debugging-pipe`, tests/browser.py): no
Selenium, no websockets, nothing injected into the page. The browser tests skip when no Chromium
is installed (`scripts/setup.sh test` installs Debian's `chromium` when it runs as root).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from browser import chromium_or_skip

from nasforge.errors import ArchitectureError, ConfigError
from nasforge.evaluators.base import Evaluator
from nasforge.experiment import Experiment, Store
from nasforge.experiment.records import StoreError
from nasforge.report import write_report
from nasforge.spaces import SPACES, MBConvSpace
from nasforge.strategies import create_strategy

HOSTILE = '<script>alert("x")</script>&amp;'


# ------------------------------------------------------------------------------------------------
# Small real runs
# ------------------------------------------------------------------------------------------------
class TinyEvaluator(Evaluator):
    """Deterministic metrics from the architecture's key; about one architecture in six fails."""

    name = "tiny"

    def evaluate(self, space, arch, seed):
        key = space.key(arch)
        h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
        if h % 6 == 0:
            raise RuntimeError(f"out of memory {HOSTILE}")
        params = 10_000 + 37 * (h % 4096)
        return {"val_accuracy": 0.5 + (h % 1000) / 2500, "test_accuracy": 0.49 + (h % 997) / 2600,
                "params": params, "macs": params * 40 + h % 1000, "latency_ms": 1.0 + (h % 100) / 50}


def make_run(run_dir: Path, space: str = "nasnet", strategy: str = "random", trials: int = 12,
             seed: int = 0) -> Path:
    sp = SPACES[space]()
    config = {"space": space, "strategy": {"name": strategy, "options": {}},
              "evaluator": {"name": "tiny", "note": HOSTILE}, "seed": seed,
              "budget": {"max_trials": trials}}
    with Experiment(sp, create_strategy(strategy, sp, seed), TinyEvaluator(), None, run_dir,
                    budget={"max_trials": trials}, seed=seed, progress=False, config=config) as exp:
        exp.run()
    return run_dir


def scaling_markers() -> dict[str, Any]:
    def member(k, scale=(1.2, 1.1, 1.15), penalty=0.0):
        a, b, g = scale
        return {"phi": k, "depth_mult": a ** k, "width_mult": b ** k, "resolution": round(32 * g ** k),
                "params": 1e5 * 1.5 ** k, "macs": 4e6 * 2 ** k, "latency_ms": 1.5 * 1.8 ** k,
                "val_accuracy": 0.8 + 0.03 * k - 0.004 * k * k - penalty,
                "test_accuracy": 0.79 + 0.03 * k - 0.004 * k * k - penalty}

    family = {
        "coefficients": {"alpha": 1.2, "beta": 1.1, "gamma": 1.15},
        "members": [member(k) for k in range(4)],
        "alternatives": {"depth": [member(k, (2.0, 1, 1), 0.01) for k in range(4)],
                         "width": [member(k, (1, 1.41, 1), 0.015) for k in range(4)],
                         "resolution": [member(k, (1, 1, 1.41), 0.02) for k in range(4)]},
    }
    cands = [{"alpha": a, "beta": b, "gamma": g, "label": lab, "val_accuracy": v, "macs": 8e6}
             for a, b, g, lab, v in [(1.2, 1.1, 1.15, "compound", 0.84), (1.1, 1.2, 1.1, "compound", 0.835),
                                     (2.0, 1.0, 1.0, "depth-only", 0.81),
                                     (1.0, 1.0, 1.41, f"resolution-only {HOSTILE}", 0.82)]]
    return {"family": family, "coefficients": {"candidates": cands, "best": cands[0]}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    out = {
        "nasnet": make_run(root / "nasnet"),
        "evolution": make_run(root / "evolution", strategy="evolution", seed=1),
        "mbconv": make_run(root / "mbconv", space="mbconv", trials=6),
        "nb201": make_run(root / "nb201", space="nb201", trials=6),
    }
    with Store.open(out["nasnet"]) as store:
        for key, value in scaling_markers().items():
            store.set_marker(key, value)
        store.set_marker("stage", {"name": "family", "note": HOSTILE})
    empty = root / "empty"
    Store.create(empty, {"space": "nasnet", "strategy": "random"}).close()
    out["empty"] = empty
    return out


@pytest.fixture(scope="module")
def reports(runs, tmp_path_factory) -> dict[str, Path]:
    """Each report written, then moved elsewhere: a self-contained folder still works."""
    moved = tmp_path_factory.mktemp("moved")
    out = {}
    for name, run in runs.items():
        full = name == "nasnet"  # SVGs and a compared run for one report, PNGs only elsewhere (time)
        index = write_report(run, compare=[runs["evolution"]] if full else (), svg=full)
        assert index == run / "report" / "index.html"
        target = moved / name
        shutil.copytree(index.parent, target)
        out[name] = target
    return out


# ------------------------------------------------------------------------------------------------
# Reading the page
# ------------------------------------------------------------------------------------------------
class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attr, value)
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "srcset", "data", "action", "poster") and v is not None:
                self.refs.append((tag, k, v))


def page_refs(index: Path) -> _Refs:
    parser = _Refs()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser


def local_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------------------------
# Files and summary.json
# ------------------------------------------------------------------------------------------------
def test_report_folder_is_self_contained(reports):
    for name, folder in reports.items():
        index = folder / "index.html"
        text = index.read_text(encoding="utf-8")
        refs = page_refs(index)
        assert "script" not in refs.tags and "iframe" not in refs.tags, name
        # no style sheets, fonts or icons from elsewhere: the one <link> is the empty inline icon
        assert refs.tags.count("link") == 1 and ("link", "href", "data:,") in refs.refs, name
        assert "@import" not in text and "url(" not in text, name
        assert 'http-equiv="Content-Security-Policy"' in text
        for tag, attr, value in refs.refs:
            if (tag, value) == ("link", "data:,"):
                continue
            if value.startswith("#"):
                assert f'id="{value[1:]}"' in text, (name, value)
                continue
            parsed = urlparse(value)
            assert not parsed.scheme and not parsed.netloc, (name, value)
            assert not value.startswith("/") and ".." not in Path(parsed.path).parts, (name, value)
            assert (folder / parsed.path).is_file(), (name, value)
        summary = json.loads((folder / "summary.json").read_text())
        assert set(summary["files"]) == local_files(folder), name
        for fig in summary["figures"]:
            for f in fig["files"]:
                assert (folder / f).stat().st_size > 500, (name, f)


def test_run_text_is_escaped(reports):
    text = (reports["nasnet"] / "index.html").read_text(encoding="utf-8")
    assert "<script" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;amp;" in text  # the failure's error
    assert text.count("&lt;script&gt;") >= 3  # config, failure, coefficient label, marker


def test_summary_matches_the_store(runs, reports):
    summary = json.loads((reports["nasnet"] / "summary.json").read_text())
    with Store.open(runs["nasnet"]) as store:
        assert summary["counts"] == store.counts()
        best = store.best(10)
        assert summary["config"] == store.config()
    assert summary["generator"] == "nasforge report"
    assert [b["trial"] for b in summary["best"]] == [t.id for t in best]
    assert [b["reward"] for b in summary["best"]] == [t.reward for t in best]
    assert summary["best"][0]["metrics"] == best[0].metrics
    assert summary["best"][0]["files"]["kind"] == "nasnet"
    assert {f["id"] for f in summary["figures"]} == {"progress", "cost_quality", "scaling_macs",
                                                     "scaling_params"}
    markers = scaling_markers()
    assert summary["scaling"]["family"] == markers["family"]
    assert summary["scaling"]["coefficients"] == markers["coefficients"]
    assert set(summary["scaling"]["curves"]) == {"compound", "depth", "width", "resolution"}
    assert [r["label"] for r in summary["compare"]] == ["random", "evolution"]
    assert summary["errors"] and summary["errors"][0]["error"].startswith("RuntimeError: out of memory")
    assert summary["notes"] == []
    json.dumps(summary, allow_nan=False)


def test_page_content(runs, reports):
    text = (reports["nasnet"] / "index.html").read_text(encoding="utf-8")
    for anchor in ("search", "leaderboard", "architectures", "scaling", "compare", "failures", "config"):
        assert f'<section id="{anchor}">' in text
    with Store.open(runs["nasnet"]) as store:
        best = store.best(10)
    for t in best[:3]:  # distinct keys here: the three best are drawn
        assert f'id="trial-{t.id}"' in text
        assert f'src="architectures/trial-{t.id}-cells.png"' in text
        dot = (reports["nasnet"] / "architectures" / f"trial-{t.id}-cells.dot").read_text()
        assert "normal_b0" in dot and "reduction_out" in dot
        arch = json.loads((reports["nasnet"] / "architectures" / f"trial-{t.id}.json").read_text())
        assert arch == t.arch
    leaderboard = text.split('<section id="leaderboard">')[1].split("</section>")[0]
    assert leaderboard.count("<tr>") == len(best) + 1
    scaling = text.split('<section id="scaling">')[1].split("</section>")[0]
    assert "1.920" in scaling  # alpha * beta^2 * gamma^2
    assert scaling.count('<tr class="best">') == 1
    assert 'src="figures/scaling_macs.png"' in scaling

    mb = (reports["mbconv"] / "index.html").read_text(encoding="utf-8")
    summary = json.loads((reports["mbconv"] / "summary.json").read_text())
    first = summary["best"][0]
    assert first["files"]["kind"] == "mbconv" and first["files"]["diagram"].endswith("-stages.png")
    n_stages = len(first["arch"]["stages"])
    assert len(first["files"]["stages"]) == n_stages
    # the stage strides are the space's (an MBConv architecture keeps none), not the report's guess
    assert [r["stride"] for r in first["files"]["stages"]] == list(MBConvSpace().strides())
    assert "MBConv" in mb and f'src="{first["files"]["diagram"]}"' in mb

    nb = (reports["nb201"] / "index.html").read_text(encoding="utf-8")
    summary = json.loads((reports["nb201"] / "summary.json").read_text())
    assert summary["best"][0]["files"]["kind"] == "json"
    assert "diagram" not in summary["best"][0]["files"]
    arch_text = summary["best"][0]["arch"]["arch"]
    assert arch_text in nb and 'src="architectures/' not in nb

    empty = (reports["empty"] / "index.html").read_text(encoding="utf-8")
    assert "no trials yet" in empty and "<img" not in empty
    assert json.loads((reports["empty"] / "summary.json").read_text())["best"] == []


def test_rewrite_replaces_an_old_report_and_refuses_other_folders(runs, reports, tmp_path):
    out = tmp_path / "rep"
    shutil.copytree(reports["nasnet"], out)  # an earlier report, with SVGs and three diagrams
    write_report(runs["nasnet"], out, archs=1, svg=False)
    assert not any(p.suffix == ".svg" for p in out.rglob("*"))
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["files"]) == local_files(out)  # the dropped files are gone, nothing else
    assert len(list((out / "architectures").glob("*.png"))) == 1
    write_report(runs["nasnet"], out, compare=[runs["evolution"]])
    # the same run gives the same page and summary
    assert (out / "index.html").read_bytes() == (reports["nasnet"] / "index.html").read_bytes()
    assert (out / "summary.json").read_bytes() == (reports["nasnet"] / "summary.json").read_bytes()

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="holds no nasforge report"):
        write_report(runs["nasnet"], precious)
    assert local_files(precious) == {"notes.txt"}
    with pytest.raises(StoreError):
        write_report(tmp_path / "nowhere", tmp_path / "x")
    with pytest.raises(ConfigError):
        write_report(runs["nasnet"], tmp_path / "y", top=0)


def test_report_of_partial_and_bad_scaling_markers(tmp_path):
    run = make_run(tmp_path / "run", trials=4)
    with Store.open(run) as store:  # stage 2 done, no family yet
        store.set_marker("coefficients", scaling_markers()["coefficients"])
    text = write_report(run, tmp_path / "partial", archs=0, svg=False).read_text(encoding="utf-8")
    scaling = text.split('<section id="scaling">')[1].split("</section>")[0]
    assert "1.920" in scaling and scaling.count('<tr class="best">') == 1 and "<img" not in scaling
    with Store.open(run) as store:
        store.set_marker("family", [1, 2, 3])
        store.set_marker("coefficients", {"candidates": "nope"})
    index = write_report(run, tmp_path / "out", archs=0)
    text = index.read_text(encoding="utf-8")
    assert '<section id="scaling">' in text and "not an object" in text
    assert "No candidates recorded yet" in text


def test_the_stages_of_any_space_that_describes_them_are_drawn(tmp_path, request):
    """A stage-list space that is not MBConv (tests/toys.py's towers, with a "roof" column and no
    kernels) is drawn as its `stage_rows` say, with its own columns in the page's stage table."""
    from toys import TowerSpace

    SPACES.register(TowerSpace.name, TowerSpace)
    request.addfinalizer(lambda: SPACES.unregister(TowerSpace.name))
    run = make_run(tmp_path / "towers", space=TowerSpace.name, trials=5)
    index = write_report(run, tmp_path / "out", archs=2, svg=False)
    summary = json.loads((index.parent / "summary.json").read_text())
    assert not [n for n in summary.get("notes", []) if "diagram" in n]
    first = summary["best"][0]
    assert first["files"]["kind"] == TowerSpace.name and first["files"]["diagram"].endswith("-stages.png")
    assert (index.parent / first["files"]["diagram"]).is_file()
    described = TowerSpace().stage_rows(TowerSpace().from_json(first["arch"]))
    rows = first["files"]["stages"]
    assert [{k: r[k] for k in described[0]} for r in rows] == described
    page = index.read_text(encoding="utf-8")
    section = page.split(f'id="trial-{first["trial"]}"')[1].split('<div class="arch"')[0]
    assert "<th>roof</th>" in section and "<th>kernel</th>" not in section and "expansion" not in section


def test_architectures_of_a_space_searched_with_options_are_read_by_that_space(tmp_path):
    """A run whose space had options (only 7x7 kernels, which the default MBConv space does not
    allow) has its architectures read and drawn by the run's own space, not the default one."""
    space = MBConvSpace(kernels=(7,))
    config = {"space": {"name": "mbconv", "options": {"kernels": [7]}}, "strategy": {"name": "random"},
              "evaluator": {"name": "tiny"}, "seed": 0, "budget": {"max_trials": 4}}
    run = tmp_path / "k7"
    with Experiment(space, create_strategy("random", space, 0), TinyEvaluator(), None, run,
                    budget={"max_trials": 4}, seed=0, progress=False, config=config) as exp:
        exp.run()
    with pytest.raises(ArchitectureError):  # what the report would have met with the default space
        MBConvSpace().from_json(Store.open(run, readonly=True).trials()[0].arch)
    index = write_report(run, tmp_path / "out", archs=2, svg=False)
    summary = json.loads((index.parent / "summary.json").read_text())
    assert not [n for n in summary.get("notes", []) if "not readable" in n or "diagram" in n]
    first = summary["best"][0]
    assert first["files"]["kind"] == "mbconv" and (index.parent / first["files"]["diagram"]).is_file()
    assert {row["kernel"] for row in first["files"]["stages"]} == {7}


# ------------------------------------------------------------------------------------------------
# The page in headless Chromium, over the DevTools protocol on a pipe (tests/browser.py)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    yield from chromium_or_skip()


def test_browser_check_catches_broken_pages(browser, tmp_path):
    """The harness itself: a missing image, a console error and a remote request are all seen."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><title>t</title></head><body>'
                    '<img src="missing.png"><img src="http://127.0.0.1:9/remote.png">'
                    '<script>console.error("boom")</script></body></html>')
    result = browser.load(page.as_uri())
    assert [i["width"] for i in result["images"]] == [0, 0]
    assert any(url.startswith("http://127.0.0.1:9/") for url in result["requests"])
    assert [c["args"][0]["value"] for c in result["console"]] == ["boom"]
    assert any("missing.png" in e.get("url", "") for e in result["log_errors"])
    assert result["failed"]


@pytest.mark.parametrize("name", ["nasnet", "mbconv", "nb201", "empty"])
def test_report_in_headless_chromium(browser, reports, name):
    index = reports[name] / "index.html"
    page = browser.load(index.resolve().as_uri())
    expected_images = [src for tag, attr, src in page_refs(index).refs if tag == "img"]
    assert [i["src"] for i in page["images"]] == expected_images
    if name != "empty":
        assert len(expected_images) >= 2
    for img in page["images"]:
        assert img["complete"] and img["width"] > 0 and img["height"] > 0, img
    assert page["console"] == [] and page["exceptions"] == [] and page["log_errors"] == [], page
    assert page["failed"] == []
    assert all(url.startswith("file://") for url in page["requests"]), page["requests"]
    assert page["scripts"] == 0 and page["sheets"] == [None]  # one inline style sheet
    assert page["title"].endswith("nasforge report")


def test_scaling_section_shows_the_uncertainty_the_shared_schedule_and_the_family_schedule():
    """The new markers: ± and the verdict in the coefficient table; the single-dimension table from
    rows trained with one schedule, saying which; each member's epochs and why it stopped."""
    from types import SimpleNamespace

    from nasforge.report.run_report import _scaling_section
    from nasforge.scaling.search import verdict

    writer = SimpleNamespace(figure=lambda *a, **k: "")  # the figures are tested elsewhere; no drawing here
    markers = scaling_markers()
    cands = markers["coefficients"]["candidates"]
    for i, c in enumerate(cands):
        c.update(index=i, reward=c["val_accuracy"], se=0.012)
    base = {"label": "baseline", "phi": 0, "alpha": 1.0, "beta": 1.0, "gamma": 1.0, "val_accuracy": 0.79,
            "reward": 0.79, "se": 0.013, "macs": 4e6, "status": "done"}
    schedule = {"evaluator": "proxy", "epochs": 2, "val_images": 1000}
    markers["coefficients"].update(verdict=verdict(cands), baseline=base, schedule=schedule)
    family = markers["family"]
    family["members"] = [dict(m, epochs=4 + 2 * m["phi"], max_epochs=4 + 2 * m["phi"], stopped="schedule",
                              stop_reason=f"end of its schedule ({4 + 2 * m['phi']} epochs)")
                         for m in family["members"]]
    family["schedule"] = {"name": "grow", "base_epochs": 4, "patience": None}
    family["comparison"] = {"schedule": schedule,
                            "rows": [dict(base, method="baseline"), dict(cands[0], phi=1, method="compound"),
                                     dict(cands[2], phi=1, method="depth only")]}
    text = _scaling_section(writer, markers)
    assert "Verdict:</b> no clear winner" in text and "<th>±</th>" in text
    assert "Every row was trained for the same 2 epochs and scored on the same 1000 validation images." in text
    assert "baseline (φ = 0)" in text and "end of its schedule (10 epochs)" in text
    assert "Schedule “grow”" in text and "<th>epochs</th>" in text
    assert "made by an older nasforge" not in text
    assert "the same network as" not in text and "spread of one network" not in text
    # the depth-only row is the compound row's own network (the family rounded both alike)
    cands[2]["same_network_as"] = 0
    for row in family["comparison"]["rows"][2:]:
        row["same_network_as"] = 0
    markers["coefficients"]["verdict"] = dict(verdict(cands), training_spread={"sd": 0.02, "df": 1, "groups": []})
    twin = _scaling_section(writer, markers)
    name = f"(α={cands[0]['alpha']:.4g}, β={cands[0]['beta']:.4g}, γ={cands[0]['gamma']:.4g})"
    assert f"{cands[2]['label']} (the same network as {name})" in twin
    assert "depth only (the same network as compound)" in twin and "spread of one network" in twin
    # a run of an older nasforge: no comparison rows, so the mixed table carries a warning
    del family["comparison"], family["schedule"]
    html = _scaling_section(writer, markers)
    assert "made by an older nasforge" in html and "a run of an older nasforge" in html
