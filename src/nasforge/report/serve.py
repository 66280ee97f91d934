"""The live report: `nasforge report RUN --serve` shows a run's report while its search runs.

What it serves
--------------
The very page `write_report` writes for `nasforge report RUN` (summary cards, search progress and
cost-quality figures, leaderboard, best cells, scaling, failures, config), redrawn whenever the
run's store changes, plus one small script that keeps an open page current without a reload:

- a refresher thread checks the store every `interval` seconds (2 by default) with one cheap query
  (trial counts by status, the last start and finish times, the markers' last update); when that
  changed, it renders the report with `write_report` into a private temporary folder, reads the
  files into memory as the next *generation* and swaps it in, then deletes the folder. After a
  render the next one waits at least as long as that one's CPU time (the figures are the costly
  part, about a second each), so a live view of a fast search takes at most about half a core
  however often trials finish;
- the page polls ``api/state`` (a few hundred bytes of JSON: the generation, the counts, when the
  store last changed) every `interval` seconds; when the generation moved on it fetches the page
  again and swaps in the header cards and each section whose HTML changed (open ``<details>``
  stay open). Links to report files carry a hash of the file's content (``?v=HASH``), so a
  section whose figure was redrawn has changed HTML and its image is fetched again, and one whose
  files are the same bytes is left alone; the last few generations are kept, so a page a little
  behind still gets the exact files its HTML names.

Reading the store
-----------------
Only through `Store.open(run, readonly=True)`: a ``file:...?mode=ro`` SQLite URI with
``query_only``, so the server cannot write the database (not even its journal mode), and each
check or render is one short read transaction on a connection that is closed right after. In
WAL mode readers never block the search's writers. (SQLite may create the empty ``-wal``/``-shm``
side files of a finished run, which it needs to read a WAL database; the database file itself is
never touched.) The server writes nothing into the run folder.

What it refuses
---------------
It answers GET and HEAD on a fixed set of routes: ``/`` (and ``/index.html``), ``/live.js``,
``/api/state``, ``/summary.json``, ``/figures/NAME`` and ``/architectures/NAME``. Files come only
from the in-memory copy of the rendered report, never from the disk at request time; that copy
takes only regular files that resolve inside the render folder (no symbolic links). A path with
``..``, ``.`` or empty segments, a backslash or a NUL, checked after percent-decoding (so
``%2e%2e`` and ``%2f`` are caught), is refused with 403; anything else unknown is 404. Bound to a
loopback address (the default, 127.0.0.1) it also refuses requests whose ``Host`` header names
another machine (a DNS-rebinding guard). Every answer has ``Cache-Control: no-store``, ``nosniff``
and a Content-Security-Policy that lets the page run its one same-origin script, fetch from its
own origin and show its own images, nothing else.

Library
-------
The standard library's `http.server.ThreadingHTTPServer`: the page is read-only, the routes are a
handful, and the browser side is a plain polling script, so no framework, websocket library or
template engine is needed, and nasforge gains no dependency (it requires only torch, numpy and
rich). One thread per request keeps a slow image from holding up the JSON poll. It is not meant
to face the internet: `--host` other than loopback exposes the run to whoever can reach the port.
"""

from __future__ import annotations

import hashlib
import html
import ipaddress
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from nasforge.errors import ConfigError, NasforgeError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
POLL_SECONDS = 2.0
#: Generations kept in memory, so a page a little behind still gets its own images.
KEEP_GENERATIONS = 4

LIVE_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".dot": "text/plain; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
#: Folders of the report whose files are served, one name deep.
FILE_FOLDERS = ("figures", "architectures")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
_STATIC_CSP_META = re.compile(r'<meta http-equiv="Content-Security-Policy" content="[^"]*">\n?')
_REPORT_LINK = re.compile(r'((?:src|href)=")((?:' + "|".join(FILE_FOLDERS) + r')/[^"?#]*)"')
VERSION_CHARS = 16

LIVE_CSS = """
#nasforge-live { position: fixed; right: 12px; bottom: 12px; z-index: 10; max-width: calc(100% - 24px);
                 background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 4px 10px;
                 font-size: .85em; color: var(--muted); box-shadow: 0 1px 4px rgba(0, 0, 0, .12); }
#nasforge-live.warn { color: #9a6700; border-color: #d4a72c; }
"""

LIVE_JS = r"""/* nasforge live report: poll api/state, swap in the parts of the page that changed. */
"use strict";
(() => {
  const meta = (doc, name) => {
    const m = doc.querySelector(`meta[name="${name}"]`);
    return m ? m.getAttribute("content") : null;
  };
  const poll = Math.max(250, Number(meta(document, "nasforge-poll-ms")) || 2000);
  const badge = document.getElementById("nasforge-live");
  let generation = Number(meta(document, "nasforge-generation")) || 0;
  document.documentElement.dataset.generation = String(generation);

  const summaries = (el) => [...el.querySelectorAll("details")]
    .filter((d) => d.open).map((d) => (d.querySelector("summary") || {}).textContent || "");

  function regions(doc) {
    const out = new Map();
    const header = doc.querySelector("body > header");
    if (header) out.set("header", header);
    for (const s of doc.querySelectorAll("main > section[id]")) out.set("section#" + s.id, s);
    return out;
  }

  function swap(oldEl, newEl) {
    if (!oldEl || !newEl || oldEl.innerHTML === newEl.innerHTML) return false;
    const open = new Set(summaries(oldEl));
    oldEl.replaceChildren(...[...newEl.childNodes].map((n) => document.importNode(n, true)));
    for (const d of oldEl.querySelectorAll("details")) {
      if (open.has((d.querySelector("summary") || {}).textContent || "")) d.open = true;
    }
    return true;
  }

  async function update() {
    const response = await fetch("index.html", {cache: "no-store"});
    if (!response.ok) throw new Error(`page: HTTP ${response.status}`);
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const now = regions(document), next = regions(doc);
    if ([...now.keys()].join() === [...next.keys()].join()) {
      for (const [key, el] of next) swap(now.get(key), el);
    } else {  // sections came or went: take the header and the whole of main
      swap(now.get("header"), next.get("header"));
      swap(document.querySelector("main"), doc.querySelector("main"));
    }
    document.title = doc.title;
    generation = Number(meta(doc, "nasforge-generation")) || generation;
    document.documentElement.dataset.generation = String(generation);
  }

  const clock = (t) => new Date(t * 1000).toLocaleTimeString();

  function show(state) {
    const c = state.counts || {};
    let text = `live · ${c.total || 0} trials: ${c.done || 0} done, ${c.failed || 0} failed`;
    const open = (c.pending || 0) + (c.running || 0);
    if (open) text += `, ${open} unfinished`;
    if (state.changed) text += ` · last change ${clock(state.changed)}`;
    if (state.pending) text += " · redrawing…";
    if (state.error) text += ` · ${state.error}`;
    badge.textContent = text;
    badge.classList.toggle("warn", Boolean(state.error));
  }

  async function tick() {
    try {
      const response = await fetch("api/state", {cache: "no-store"});
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const state = await response.json();
      if (state.generation !== generation) await update();
      show(state);
    } catch (err) {
      badge.textContent = `live · server not reachable (${err.message}); retrying`;
      badge.classList.add("warn");
    } finally {
      setTimeout(tick, poll);
    }
  }
  tick();
})();
"""


# ------------------------------------------------------------------------------------------------
# Paths
# ------------------------------------------------------------------------------------------------
class Refused(Exception):
    """A request path that is refused: `status` 400 (malformed), 403 (escapes) or 404 (unknown)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def parse_request_path(target: str) -> tuple[str, dict[str, list[str]]]:
    """The decoded path and the query of a request target; `Refused` when it is not a plain
    absolute path of plain names (no ``..``/``.``/empty segments, backslashes or control
    characters, checked after percent-decoding)."""
    if not target.startswith("/"):
        raise Refused(400, "only origin-form request targets ('/path')")
    raw, _, query = target.partition("?")
    raw = raw.partition("#")[0]
    try:
        path = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise Refused(400, "the path is not UTF-8") from None
    if any(ord(c) < 32 or c == "\x7f" for c in path) or "\\" in path:
        raise Refused(403, "control characters or backslashes in the path")
    if path != "/":
        segments = path[1:].split("/")
        if any(s in ("", ".", "..") for s in segments):
            raise Refused(403, "the path leaves its folder ('..', '.', or an empty or absolute part)")
    try:
        params = parse_qs(query, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "the query is not UTF-8") from None
    return path, params


def inside(root: Path, path: Path) -> bool:
    """Whether `path`, with every symbolic link resolved, lies inside folder `root` (resolved)."""
    root = root.resolve()
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return target == root or root in target.parents


def read_report_files(folder: Path, names: Iterable[str]) -> dict[str, bytes]:
    """The files `names` (relative posix paths) of a report folder: only regular files, not
    symbolic links, that resolve inside `folder`; anything else is left out."""
    folder = folder.resolve()
    out: dict[str, bytes] = {}
    for rel in names:
        parts = Path(rel).parts
        if not parts or Path(rel).is_absolute() or ".." in parts:
            continue
        path = folder.joinpath(*parts)
        if path.is_symlink() or not path.is_file() or not inside(folder, path):
            continue
        out[Path(*parts).as_posix()] = path.read_bytes()
    return out


# ------------------------------------------------------------------------------------------------
# The live report: store checks, renders, generations
# ------------------------------------------------------------------------------------------------
_SIGNATURE_SQL = (
    "SELECT COUNT(*), TOTAL(status = 'pending'), TOTAL(status = 'running'), TOTAL(status = 'done'), "
    "TOTAL(status = 'failed'), TOTAL(reused_from IS NOT NULL), TOTAL(attempts), TOTAL(failures), "
    "MAX(created), MAX(started), MAX(finished) FROM trials"
)
_MARKERS_SQL = "SELECT COUNT(*), MAX(updated) FROM markers"


@dataclass(frozen=True)
class StoreSignature:
    """What one cheap look at a run's store tells: its trial counts, the time of its last change
    (a trial asked, started or finished, a marker set), and a value that changes with any of it."""

    counts: dict[str, int]
    changed: float | None
    key: tuple


def store_signature(run_dir: str | os.PathLike) -> StoreSignature:
    """Read the signature of a run's store: one read transaction on a read-only connection that
    is closed again at once."""
    from nasforge.experiment.store import Store

    store = Store.open(run_dir, readonly=True)
    try:
        with store.snapshot():
            row = store._read(lambda c: c.execute(_SIGNATURE_SQL).fetchone())
            markers = store._read(lambda c: c.execute(_MARKERS_SQL).fetchone())
    finally:
        store.close()
    names = ("pending", "running", "done", "failed", "reused")
    counts = {name: int(row[i + 1]) for i, name in enumerate(names)}
    counts["total"] = int(row[0])
    times = [t for t in (*row[8:11], markers[1]) if isinstance(t, (int, float))]
    return StoreSignature(counts, max(times) if times else None, tuple(row) + tuple(markers))


@dataclass
class Generation:
    """One rendering of the report, held in memory."""

    number: int
    files: dict[str, bytes]
    versions: dict[str, str]  # name -> hash of its content, as in the page's links
    page: bytes
    rendered: float
    seconds: float


@dataclass
class _State:
    counts: dict[str, int] = field(default_factory=dict)
    signature: tuple | None = None
    rendered_signature: tuple | None = None
    changed: float | None = None
    checked: float | None = None
    error: str | None = None


class LiveReport:
    """The report of one run, re-rendered into memory when its store changes (thread-safe reads)."""

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        compare: Sequence[str | os.PathLike] = (),
        top: int = 10,
        archs: int = 3,
        interval: float = POLL_SECONDS,
    ):
        if not isinstance(interval, (int, float)) or not interval > 0:
            raise ConfigError("interval", f"must be a positive number of seconds, got {interval!r}")
        self.run_dir = Path(run_dir)
        self.compare = [Path(c) for c in compare]
        self.top, self.archs, self.interval = top, archs, float(interval)
        self._lock = threading.Lock()  # guards the generations and the state
        self._render_lock = threading.Lock()  # one check-and-render at a time
        self._generations: OrderedDict[int, Generation] = OrderedDict()
        self._state = _State()
        self._next_render = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="nasforge-live-", ignore_cleanup_errors=True)

    # -- checking and rendering ---------------------------------------------------------------------
    def _signature(self) -> StoreSignature:
        main = store_signature(self.run_dir)
        key = main.key + tuple(store_signature(other).key for other in self.compare)
        return StoreSignature(main.counts, main.changed, key)

    def refresh(self, force: bool = False) -> bool:
        """Check the store; render a new generation when it changed (or `force`). Whether it
        rendered. After a render the next waits at least as long as its CPU time took."""
        with self._render_lock:
            return self._refresh(force)

    def _refresh(self, force: bool) -> bool:
        look = self._signature()
        sig = look.key
        with self._lock:
            st = self._state
            st.counts, st.changed, st.signature, st.checked = look.counts, look.changed, sig, time.time()
            due = force or sig != st.rendered_signature
        if not due or (not force and time.monotonic() < self._next_render):
            return False
        self._render(sig)
        return True

    def _render(self, sig: tuple) -> None:
        from nasforge.report.run_report import write_report

        start, cpu = time.monotonic(), time.thread_time()
        with self._lock:
            number = (next(reversed(self._generations)) if self._generations else 0) + 1
        out = Path(self._tmp.name) / f"gen-{number}"
        try:
            index = write_report(self.run_dir, out, compare=self.compare, top=self.top, archs=self.archs, svg=False)
            summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
            names = [f for f in summary.get("files", []) if isinstance(f, str)]
            files = read_report_files(out, names)
            versions = {n: hashlib.sha256(b).hexdigest()[:VERSION_CHARS] for n, b in files.items()}
            page = _live_page(index.read_text(encoding="utf-8"), number, self.interval, versions)
        finally:
            shutil.rmtree(out, ignore_errors=True)
            # the next render waits as long as this one's CPU time, failed or not
            self._next_render = time.monotonic() + time.thread_time() - cpu
        gen = Generation(number, files, versions, page.encode("utf-8"), time.time(), time.monotonic() - start)
        with self._lock:
            self._generations[number] = gen
            while len(self._generations) > KEEP_GENERATIONS:
                self._generations.popitem(last=False)
            self._state.rendered_signature = sig
            self._state.error = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except NasforgeError as exc:
                self._set_error(f"cannot read the run: {exc}")
            except Exception as exc:  # noqa: BLE001 - keep serving the last good page
                self._set_error(f"refresh failed: {type(exc).__name__}: {exc}")

    def _set_error(self, message: str) -> None:
        with self._lock:
            self._state.error = message[:500]

    def start(self) -> LiveReport:
        """Render now if nothing was rendered yet, then keep checking in a background thread."""
        if not self._generations:
            self.refresh(force=True)
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="nasforge-live-refresh", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self._tmp.cleanup()

    # -- what the server reads ----------------------------------------------------------------------
    def current(self) -> Generation | None:
        with self._lock:
            return self._generations[next(reversed(self._generations))] if self._generations else None

    def file(self, name: str, version: str | None = None) -> bytes | None:
        """The report file `name` with content hash `version` while a kept generation has it,
        else the newest one of that name (None when no kept generation has the name)."""
        with self._lock:
            gens = list(self._generations.values())[::-1]
        if version:
            for gen in gens:
                if gen.versions.get(name) == version:
                    return gen.files[name]
        for gen in gens:
            if name in gen.files:
                return gen.files[name]
        return None

    def state(self) -> dict[str, Any]:
        with self._lock:
            st = self._state
            gen = self._generations[next(reversed(self._generations))] if self._generations else None
            return {
                "generation": gen.number if gen else 0,
                "counts": dict(st.counts),
                "changed": st.changed,
                "checked": st.checked,
                "rendered": gen.rendered if gen else None,
                "render_seconds": round(gen.seconds, 3) if gen else None,
                "pending": st.signature != st.rendered_signature,
                "error": st.error,
                "interval": self.interval,
                "run": self.run_dir.resolve().name,
            }


def _live_page(page: str, generation: int, interval: float, versions: dict[str, str]) -> str:
    """The static report page made live: its meta CSP dropped (the server sends its own as a
    header), the generation and poll period as meta tags, the script and the status badge added,
    and links to report files tagged with their content hash."""
    page = _STATIC_CSP_META.sub("", page, count=1)
    head = (
        f'<meta name="nasforge-generation" content="{generation}">\n'
        f'<meta name="nasforge-poll-ms" content="{int(interval * 1000)}">\n'
        f"<style>{LIVE_CSS}</style>\n"
        '<script src="live.js" defer></script>\n</head>'
    )
    page = page.replace("</head>", head, 1)
    badge = '<body>\n<div id="nasforge-live">live view: connecting…</div>'
    page = page.replace("<body>", badge, 1)

    def tag(m: re.Match) -> str:
        version = versions.get(html.unescape(m.group(2)))
        return f'{m.group(1)}{m.group(2)}?v={version}"' if version else m.group(0)

    return _REPORT_LINK.sub(tag, page)


# ------------------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------------------
def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    server: ReportServer
    server_version = "nasforge-report"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(head=True)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: the page polls
        if self.server.verbose:
            super().log_message(format, *args)

    def _host_allowed(self) -> bool:
        if not self.server.loopback:
            return True
        host = self.headers.get("Host")
        if host is None:
            return True
        name = host.rsplit("]", 1)[0] + "]" if host.startswith("[") else host.rsplit(":", 1)[0]
        return _is_loopback(name)

    def _answer(self, head: bool) -> None:
        try:
            if not self._host_allowed():
                raise Refused(403, "this server answers only requests addressed to the local machine")
            path, params = parse_request_path(self.path)
            status, ctype, body = self._route(path, params)
        except Refused as exc:
            status, ctype, body = exc.status, "text/plain; charset=utf-8", f"{exc.status}: {exc.reason}\n".encode()
        self._send(status, ctype, body, head)

    def _route(self, path: str, params: dict[str, list[str]]) -> tuple[int, str, bytes]:
        live = self.server.live
        if path in ("/", "/index.html"):
            gen = live.current()
            if gen is None:
                raise Refused(404, "no report rendered yet")
            return 200, CONTENT_TYPES[".html"], gen.page
        if path == "/live.js":
            return 200, CONTENT_TYPES[".js"], LIVE_JS.encode("utf-8")
        if path == "/api/state":
            return 200, CONTENT_TYPES[".json"], json.dumps(live.state(), allow_nan=False).encode()
        if path == "/summary.json":
            name = "summary.json"
        else:
            folder, _, name = path[1:].partition("/")
            if folder not in FILE_FOLDERS or not _NAME.fullmatch(name):
                raise Refused(404, "no such page")
            name = f"{folder}/{name}"
        data = live.file(name, params.get("v", [""])[0])
        if data is None:
            raise Refused(404, "no such file in the report")
        return 200, CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream"), data

    def _send(self, status: int, ctype: str, body: bytes, head: bool) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Content-Security-Policy", LIVE_CSP)
            self.end_headers()
            if not head:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away


class ReportServer(ThreadingHTTPServer):
    """The live report of `run_dir` on http://host:port/ (port 0: a free one; see `url`).

    `start()` renders the first generation (a `StoreError` when the folder holds no run), starts
    the refresher and serves in background threads; `close()` stops everything. `serve()` is the
    blocking form the CLI uses."""

    daemon_threads = True

    def __init__(
        self,
        run_dir: str | os.PathLike,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        compare: Sequence[str | os.PathLike] = (),
        top: int = 10,
        archs: int = 3,
        interval: float = POLL_SECONDS,
        verbose: bool = False,
    ):
        from nasforge.experiment.store import Store

        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ConfigError("port", f"must be a TCP port number from 0 to 65535, got {port!r}")
        if not isinstance(host, str) or not host.strip():
            raise ConfigError("host", f"must name an address to listen on, got {host!r}")
        for folder in (run_dir, *compare):
            Store.open(folder, readonly=True).close()  # a StoreError now, before binding
        self.live = LiveReport(run_dir, compare=compare, top=top, archs=archs, interval=interval)
        self.loopback = _is_loopback(host)
        self.verbose = verbose
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            super().__init__((host.strip("[]"), port), _Handler)
        except OSError as exc:
            self.live.close()
            raise ConfigError("port", f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        assert isinstance(host, str)  # getsockname() of an AF_INET(6) socket
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def start(self) -> ReportServer:
        """Render, then refresh and serve in background threads (for tests and programs)."""
        self.live.start()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="nasforge-live-http", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=10)
        self.server_close()
        self.live.close()

    def __enter__(self) -> ReportServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    run_dir: str | os.PathLike,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    compare: Sequence[str | os.PathLike] = (),
    top: int = 10,
) -> int:
    """Serve the live report until Ctrl-C (then 0); prints the address first."""
    server = ReportServer(run_dir, host, port, compare=compare, top=top)
    try:
        server.live.start()
        print(f"{server.url}  live report of {Path(run_dir).resolve()} (Ctrl-C to stop)", flush=True)
        if not server.loopback:
            print(
                f"nasforge: warning: listening on {host}: anyone who can reach this address can read the run's report",
                file=sys.stderr,
                flush=True,
            )
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.close()
    return 0


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "LiveReport",
    "Refused",
    "ReportServer",
    "StoreSignature",
    "inside",
    "parse_request_path",
    "read_report_files",
    "serve",
    "store_signature",
]
