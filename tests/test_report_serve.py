"""`nasforge report RUN --serve`: the live report of a running search.

A real search (NASNet cells scored by the `params` zero-cost evaluator on a tiny image file the
test writes: no training, no shared data, no download) is served by `nasforge report RUN --serve
--port 0` in its own process, as a user starts it. The page is opened in headless Chromium
(tests/browser.py); a second search process resumes the run with more trials, and the open page
must show them without a reload and without a console error. The server's paths are probed for
escapes, and the store is checked to be left exactly as the search wrote it. Only the browser
test skips, and only when no Chromium is installed.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from browser import chromium_or_skip

from nasforge.cli import main
from nasforge.experiment import Store
from nasforge.experiment.records import StoreError
from nasforge.report.serve import (DEFAULT_HOST, DEFAULT_PORT, Refused, inside, parse_request_path,
                                   read_report_files)

SEARCH = ["search", "--space", "nasnet", "--strategy", "random", "--evaluator", "params", "--seed", "0",
          "--dataset", "npz:images.npz", "--no-progress", "--run", "run"]
FIRST, MORE = 3, 8
SECRET = "not for the web"
WAIT = 90.0  # seconds; generous for a loaded machine, a pass takes a fraction of it


#: `nasforge ARGS...` that imports what it needs first, then waits for file GO to exist: both
#: processes start at once and are let go when their turn comes (the server once the run exists,
#: the second search once the page is open), so the seconds Python takes to import torch and
#: matplotlib are not spent while the test waits.
GATED = """import pathlib, sys, time
import torch, nasforge.cli, nasforge.cli.search, nasforge.evaluators, nasforge.experiment, nasforge.spaces
import nasforge.report.serve, matplotlib.figure, matplotlib.backends.backend_agg
go = pathlib.Path(sys.argv[1])
while not go.exists():
    time.sleep(0.05)
sys.exit(nasforge.cli.main(sys.argv[2:]))
"""


def cli_process(cwd: Path, *args: str, go: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")  # one torch thread, as conftest.py
    command = ["-c", GATED, str(go)] if go is not None else ["-m", "nasforge.cli"]
    # a test run started in the background of a non-interactive shell inherits SIGINT ignored;
    # the child gets the default back, so Ctrl-C (SIGINT) reaches it as it would a user's command
    return subprocess.Popen([sys.executable, *command, *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def first_line(proc: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        raise TimeoutError(f"no output in {timeout} s; stderr: {proc.communicate()[1][-2000:]}")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"exited with {proc.wait()}: {proc.stderr.read()[-2000:]}")
    return line


def request(url: str, path: str, method: str = "GET", host: str | None = None) -> tuple[int, bytes]:
    """`path` sent exactly as given (no normalisation), optionally with another Host header."""
    m = re.match(r"http://([^:/]+):(\d+)/", url)
    conn = http.client.HTTPConnection(m.group(1), int(m.group(2)), timeout=20)
    try:
        conn.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def db_state(run: Path) -> tuple[str, int]:
    db = run / "nasforge.db"
    return hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A run of FIRST trials, searched in this process, and its live report served by the CLI in
    another; a search process that resumes it with MORE trials once `go` exists; a secret file
    beside it and symbolic links to it inside the run folder."""
    root = tmp_path_factory.mktemp("live")
    run, go = root / "run", root / "go"
    rng = np.random.default_rng(0)  # 160 grey 8x8 images of 4 classes
    np.savez(root / "images.npz", x=rng.integers(0, 256, (160, 8, 8), dtype=np.uint8), y=np.arange(160) % 4)
    server = cli_process(root, "report", "run", "--serve", "--port", "0", go=root / "serve")
    search = cli_process(root, *SEARCH, "--trials", str(MORE), "--resume", go=go)
    try:
        old = os.getcwd()
        os.chdir(root)
        try:
            assert main([*SEARCH, "--trials", str(FIRST)]) == 0
        finally:
            os.chdir(old)
        (root / "secret.txt").write_text(SECRET)
        (run / "figures").mkdir()
        (run / "figures" / "leak.png").symlink_to("../../secret.txt")
        (run / "leak").symlink_to(root / "secret.txt")
        (root / "serve").touch()
        line = first_line(server, WAIT)
        url = re.match(r"(http://127\.0\.0\.1:\d+/)\s", line)
        assert url, line
        yield SimpleNamespace(root=root, run=run, url=url.group(1), server=server, search=search, go=go)
    finally:
        for proc in (search, server):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.fixture(scope="module")
def browser():
    yield from chromium_or_skip()


CARD = """(name => {
    const card = [...document.querySelectorAll('.card')]
        .find(c => c.querySelector('.k').textContent === name);
    return card ? card.querySelector('.v').textContent : null;
})"""


def test_live_page_shows_new_trials_without_a_reload(live, browser):
    tab = browser.open(live.url)
    try:
        assert tab.wait_for(f"{CARD}('trials') === '{FIRST}' && document.documentElement.dataset.generation",
                            WAIT)
        first_generation = int(tab.evaluate("document.documentElement.dataset.generation"))
        first_images = {i["src"].split("?")[0]: i["src"] for i in tab.probe()["images"]}
        tab.evaluate("window.nasforgeTestMark = 'same page'")
        assert tab.evaluate("document.querySelectorAll('#leaderboard tbody tr').length") == FIRST

        live.go.touch()  # the search process resumes the run with more trials
        _, err = live.search.communicate(timeout=WAIT)
        assert live.search.returncode == 0, err[-2000:]
        finished = time.time()
        before = db_state(live.run)

        tab.wait_for(f"{CARD}('trials') === '{MORE}' && {CARD}('done') === '{MORE}'", WAIT)
        tab.wait_for("[...document.images].every(i => i.complete && i.naturalWidth > 0)", WAIT)
        assert tab.evaluate("window.nasforgeTestMark") == "same page"  # never reloaded
        assert tab.evaluate("performance.getEntriesByType('navigation').length") == 1
        generation = int(tab.evaluate("document.documentElement.dataset.generation"))
        assert generation > first_generation
        assert tab.evaluate("document.querySelectorAll('#leaderboard tbody tr').length") == MORE
        page = tab.probe()
        assert len(page["images"]) >= 3  # progress, cost-quality, cell diagrams
        for img in page["images"]:  # each image is the file of this generation, by content hash
            version = img["src"].partition("?v=")[2]
            status, data = request(live.url, "/" + img["src"])
            assert status == 200 and version and hashlib.sha256(data).hexdigest().startswith(version), img
        redrawn = {i["src"].split("?")[0]: i["src"] for i in page["images"]}
        assert redrawn["figures/progress.png"] != first_images["figures/progress.png"]
        assert page["scripts"] == 1
        tab.wait_for(f"document.getElementById('nasforge-live').textContent.includes('{MORE} trials')", WAIT)
        problems = tab.problems()
        # an image load the page cancelled itself, by swapping in a newer section, is no error
        problems["failed"] = [f for f in problems["failed"] if not f.get("canceled")]
        assert problems == {"console": [], "exceptions": [], "log_errors": [], "failed": []}, problems
        assert all(u.startswith(live.url) or u.startswith("data:") for u in tab.requests()), tab.requests()
    finally:
        tab.close()

    # the server read the store after the search ended, and left it as the search wrote it
    deadline = time.monotonic() + WAIT
    while json.loads(request(live.url, "/api/state")[1])["checked"] <= finished:
        assert time.monotonic() < deadline, "the server stopped checking the store"
        time.sleep(0.2)
    assert db_state(live.run) == before


@pytest.mark.parametrize("path, statuses", [
    ("/../secret.txt", {403}),
    ("/%2e%2e/secret.txt", {403}),
    ("/%2E%2E/%2e%2e/secret.txt", {403}),
    ("/figures/..%2f..%2fsecret.txt", {403}),
    ("/figures/%2e%2e/%2e%2e/secret.txt", {403}),
    ("/%2f" + str(Path(__file__).resolve()).lstrip("/").replace("/", "%2f"), {403}),
    ("//etc/passwd", {403, 404}),
    ("/figures/a%5c..%5c..%5csecret.txt", {403}),
    ("/figures/x%00.png", {403}),
    ("/figures/leak.png", {404}),   # a symbolic link out of the run folder
    ("/leak", {404}),
    ("/nasforge.db", {404}),
    ("/run/nasforge.db", {404}),
    ("/figures/.hidden", {404}),
    ("/%ff", {400}),
])
def test_paths_outside_the_report_are_refused(live, path, statuses):
    status, body = request(live.url, path)
    assert status in statuses, (path, status, body)
    assert SECRET.encode() not in body and b"SQLite format" not in body


def test_routes_methods_and_hosts(live):
    status, page = request(live.url, "/")
    assert status == 200 and b'<script src="live.js" defer></script>' in page
    assert request(live.url, "/index.html")[1] == page
    status, state = request(live.url, "/api/state")
    assert status == 200 and json.loads(state)["counts"]["total"] >= FIRST
    status, summary = request(live.url, "/summary.json")
    assert status == 200 and json.loads(summary)["generator"] == "nasforge report"
    status, png = request(live.url, "/figures/progress.png?v=0123")
    assert status == 200 and png.startswith(b"\x89PNG")
    assert request(live.url, "/live.js")[0] == 200
    assert request(live.url, "/", method="HEAD") == (200, b"")
    assert request(live.url, "/", method="POST")[0] in (405, 501)
    # bound to loopback: a page on another name (DNS rebinding) is refused
    assert request(live.url, "/api/state", host="attacker.example:80")[0] == 403
    assert request(live.url, "/api/state", host="localhost:1")[0] == 200


def test_store_read_only(live, tmp_path):
    with Store.open(live.run, readonly=True) as store:
        with store.snapshot():
            assert store.counts()["total"] == len(store.trials()) >= FIRST
        with pytest.raises(StoreError, match="readonly"):
            store.set_marker("x", 1)
    with Store.open(live.run, readonly=True) as store:
        assert "x" not in store.markers()
    # a database in another journal mode stays in it: a read-only open changes nothing
    copy = tmp_path / "copy"
    copy.mkdir()
    src = sqlite3.connect(f"{(live.run / 'nasforge.db').as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(copy / "nasforge.db")
    src.backup(dst)
    dst.execute("PRAGMA journal_mode = DELETE")
    src.close()
    dst.close()
    before = (copy / "nasforge.db").read_bytes()
    with Store.open(copy, readonly=True) as store:
        assert store.counts()["total"] >= FIRST
    assert (copy / "nasforge.db").read_bytes() == before
    assert sorted(p.name for p in copy.iterdir()) == ["nasforge.db"]


def test_report_files_never_follow_links_out(tmp_path):
    folder = tmp_path / "report"
    (folder / "figures").mkdir(parents=True)
    (folder / "figures" / "a.png").write_bytes(b"png")
    (tmp_path / "secret.txt").write_text(SECRET)
    (folder / "figures" / "out.png").symlink_to(tmp_path / "secret.txt")
    (folder / "figures" / "in.png").symlink_to("a.png")
    names = ["figures/a.png", "figures/out.png", "figures/in.png", "../secret.txt",
             str(tmp_path / "secret.txt"), "figures/missing.png"]
    assert read_report_files(folder, names) == {"figures/a.png": b"png"}
    assert inside(folder, folder / "figures" / "a.png")
    assert not inside(folder, folder / "figures" / "out.png")
    assert not inside(folder, folder / ".." / "secret.txt")
    assert parse_request_path("/figures/a.png?g=3") == ("/figures/a.png", {"g": ["3"]})
    for bad in ("/a/../b", "/%2e%2e", "/a//b", "/a/./b", "relative", "http://x/a"):
        with pytest.raises(Refused):
            parse_request_path(bad)


def test_cli_flags(live, capsys):
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--serve" in text and f"default: {DEFAULT_PORT}; 0 picks a free one" in text
    assert f"default: {DEFAULT_HOST}, this machine only" in text and "exposes the run's report" in text
    run = str(live.run)
    assert main(["report", run, "--port", "9"]) == 2
    assert "--port: only applies with --serve" in capsys.readouterr().err
    assert main(["report", run, "--serve", "--out", "x"]) == 2
    assert "--out: not used with --serve" in capsys.readouterr().err
    assert main(["report", run, "--serve", "--port", "70000"]) == 2
    assert "port: must be a TCP port number" in capsys.readouterr().err
    assert main(["report", str(live.root / "nowhere"), "--serve", "--port", "0"]) == 2
    assert "no nasforge run database" in capsys.readouterr().err


def test_ctrl_c_stops_the_server(live):
    live.server.send_signal(signal.SIGINT)
    out, err = live.server.communicate(timeout=WAIT)
    assert live.server.returncode == 0, err[-2000:]
    assert "stopped" in out and "Traceback" not in err


# -- under load ------------------------------------------------------------------------------------
WRITERS, READERS, PER_WRITER = 16, 16, 20


def _writer(run: str, worker: int, go, errors) -> None:
    """Record PER_WRITER NB201 trials as the search does: added running, then finished done with
    metrics and reward in one transaction. Any exception ("database is locked") is reported."""
    from nasforge.spaces import NB201Space

    try:
        space, rng = NB201Space(), np.random.default_rng(worker)
        go.wait(WAIT)
        with Store.open(run) as store:
            for i in range(PER_WRITER):
                arch = space.sample(rng)
                tid = store.add_trial(space.to_json(arch), space.key(arch), 1000 * worker + i, status="running")
                value = float(rng.uniform(0.5, 0.9))
                store.finish_trial(tid, "done", metrics={"val_accuracy": value, "test_accuracy": value - 0.01},
                                   reward=value)
    except BaseException as exc:  # noqa: BLE001 - whatever it is, the test shows it
        errors.put(f"writer {worker}: {exc!r}")


def test_sixteen_readers_while_sixteen_writers_record(tmp_path, monkeypatch):
    """The live report served while 16 processes record trials into its run and 16 readers poll
    its page, state and summary: no writer sees an error ("database is locked"), every page
    answers, every trial a summary shows is complete, the counts only grow, and at the end the
    server shows every trial."""
    import multiprocessing
    import threading

    from toys import write_synthetic_nb201_table

    from nasforge.report.serve import ReportServer

    write_synthetic_nb201_table(tmp_path / "nb201.csv")
    monkeypatch.chdir(tmp_path)
    first = 3
    assert main(["search", "--space", "nb201", "--evaluator", "table", "--table", "nb201.csv", "--reward-column",
                 "valid", "--report-column", "test", "--trials", str(first), "--no-progress", "--run", "run"]) == 0
    ctx = multiprocessing.get_context("fork")  # forked before the server starts a thread
    go, errors = ctx.Event(), ctx.Queue()
    writers = [ctx.Process(target=_writer, args=(str(tmp_path / "run"), w, go, errors)) for w in range(WRITERS)]
    for p in writers:
        p.start()
    total = first + WRITERS * PER_WRITER
    problems: list[str] = []
    seen_totals: list[int] = []
    done = threading.Event()

    def reader(n: int) -> None:
        last = 0
        while not done.is_set():
            for path in ("/", "/api/state", "/summary.json"):
                status, body = request(server.url, path)
                if status != 200:
                    problems.append(f"reader {n}: {path} -> {status}")
                    continue
                if path == "/api/state":
                    counts = json.loads(body)["counts"]
                    if counts["total"] < last:
                        problems.append(f"reader {n}: total went from {last} to {counts['total']}")
                    last = counts["total"]
                    seen_totals.append(last)
                elif path == "/summary.json":
                    for t in json.loads(body)["best"]:
                        if t["reward"] is None or set(t["metrics"]) < {"val_accuracy", "test_accuracy"}:
                            problems.append(f"reader {n}: half-written trial {t}")

    with ReportServer(tmp_path / "run", port=0, interval=0.2) as server:
        server.start()
        readers = [threading.Thread(target=reader, args=(n,)) for n in range(READERS)]
        for t in readers:
            t.start()
        go.set()
        for p in writers:
            p.join(WAIT)
        deadline = time.monotonic() + WAIT
        while True:  # the page is redrawn at most as often as drawing it takes CPU time
            state = json.loads(request(server.url, "/api/state")[1])
            if state["counts"]["total"] == total and not state["pending"]:
                break
            assert time.monotonic() < deadline, f"the server never showed every trial: {state}"
            time.sleep(0.1)
        done.set()
        for t in readers:
            t.join(WAIT)
        summary = json.loads(request(server.url, "/summary.json")[1])
    assert [p.exitcode for p in writers] == [0] * WRITERS
    assert errors.empty(), errors.get()
    assert not problems, problems[:5]
    # polled while the writers wrote, and to the end
    assert len(seen_totals) > READERS and min(seen_totals) < total and max(seen_totals) == total
    assert summary["counts"]["done"] == total
    with Store.open(tmp_path / "run") as store:
        assert store.count() == total and store.integrity_check() == []
