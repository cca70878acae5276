"""Fixtures for the browser tests: the real processes a user's browser reaches, and Chromium.

A test calls ``start_portal(job_seconds=…, cut_after=…)`` and gets a :class:`Portal`:

    Chromium ──▶ CuttingProxy ──▶ web server (Daphne, runner inside) ──▶ reference Agent Generator
                 tests/e2e/proxy    daphne copilot.asgi:application        agent_generator.reference

all on 127.0.0.1, on free ports, sharing the test's database, and stopped (by pid) when the
test ends. The web server is a bare ``python -m daphne copilot.asgi:application``, as in
production: the app serves its own static files, and the runner starts inside it.

``chromium`` is Debian's, driven by Playwright; nothing is downloaded. ``browser_page`` is a
fresh page in a fresh context whose every ``copilot:event`` and ``[data-stream-state]`` change
is recorded on the Python side (:class:`PageRecorder`), so the record survives the page's own
reloads.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from tests.e2e.proxy import CuttingProxy
from tests.support.live import LiveProcess, ServerStartError, free_port, run_server
from tests.support.portal import ROOT, portal_env

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_SECONDS = 30.0
PAGE_TIMEOUT_MS = 20_000
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


@dataclass
class Portal:
    """The running processes of one test; the browser uses :attr:`url` (the proxy)."""

    reference: LiveProcess
    web: LiveProcess
    proxy: CuttingProxy

    @property
    def url(self) -> str:
        return self.proxy.url


@contextlib.contextmanager
def web_server(*, env: dict[str, str]) -> Iterator[LiveProcess]:
    """``daphne copilot.asgi:application`` with exactly ``env``."""
    port = free_port()
    args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    with tempfile.TemporaryDirectory(prefix="e2e-web-") as tmp:
        log_path = Path(tmp) / "output.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*args, "copilot.asgi:application"],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        live = LiveProcess(process=process, port=port, log_path=log_path)
        try:
            _wait_until_ready(live, path="/accounts/login/")
            yield live
        finally:
            live.stop()
            print(f"--- web server output (pid {live.pid}) ---\n{live.output()[-20_000:]}")


def _wait_until_ready(live: LiveProcess, *, path: str) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        if live.poll() is not None:
            raise ServerStartError(f"web server exited with {live.poll()}:\n{live.output()}")
        try:
            httpx.get(f"{live.url}{path}", timeout=1.0)
            return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise ServerStartError(f"web server silent for {SERVER_START_SECONDS} s")
        time.sleep(0.05)


@pytest.fixture
def start_portal(transactional_db) -> Iterator[Callable[..., Portal]]:
    """``start_portal(job_seconds=12, cut_after=3.0)``: start everything; stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(*, job_seconds: float, cut_after: float | None) -> Portal:
            ref_port = free_port()
            reference = stack.enter_context(
                run_server(
                    args=[
                        "-m", "agent_generator.reference", "--host", "127.0.0.1",
                        "--port", str(ref_port), "--job-seconds", str(job_seconds),
                    ],
                    port=ref_port,
                )
            )  # fmt: skip
            env = portal_env(
                AGENT_GENERATOR_URL=reference.url,
                COPILOT_RUNNER_IN_PROCESS="true",
                COPILOT_HEARTBEAT_SECONDS="1",
            )
            env.pop(ASYNC_UNSAFE, None)  # the portal keeps Django's check (see ``chromium``)
            web = stack.enter_context(web_server(env=env))
            proxy = CuttingProxy(target_port=web.port, cut_after=cut_after).start()
            stack.callback(proxy.stop)
            return Portal(reference=reference, web=web, proxy=proxy)

        yield start


# -- the browser --------------------------------------------------------------------------

RECORDER_SCRIPT = """
(() => {
  const doc = String(performance.timeOrigin) + ":" + Math.random().toString(36).slice(2);
  const send = (kind, payload) => {
    const record = Object.assign({kind: kind, doc: doc, path: location.pathname}, payload);
    if (typeof window.e2eRecord === "function") window.e2eRecord(record).catch(() => {});
  };
  // copilot:event is dispatched on [data-copilot-stream] and does not bubble: capture it.
  document.addEventListener("copilot:event", (e) => {
    const d = e.detail || {};
    send("event", {id: d.id === undefined ? null : d.id, type: d.type});
  }, true);
  // Every value [data-stream-state] takes, with the text shown for it.
  new MutationObserver((mutations) => {
    mutations.forEach((m, i) => {
      const next = mutations[i + 1];
      const value = next && next.target === m.target
        ? next.oldValue : m.target.getAttribute("data-stream-state");
      send("state", {state: value, text: m.target.textContent});
    });
  }).observe(document, {
    subtree: true, attributes: true, attributeOldValue: true,
    attributeFilter: ["data-stream-state"],
  });
  // What the server rendered, before any script of the page runs.
  document.addEventListener("DOMContentLoaded", () => {
    const seqs = Array.from(document.querySelectorAll("[data-job-log] li[data-seq]"))
      .map((li) => Number(li.getAttribute("data-seq")));
    send("load", {seqs: seqs, streaming: !!document.querySelector("[data-copilot-stream]")});
  });
})();
"""


@dataclass
class PageRecorder:
    """Everything the page reported, in order: ``load``, ``event`` and ``state`` records."""

    records: list[dict] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def add(self, record: dict) -> None:
        self.records.append(record)

    def loads(self, path: str) -> list[dict]:
        """The page loads of ``path``, first first (one per document)."""
        return [r for r in self.records if r["kind"] == "load" and r["path"] == path]

    def event_ids(self, doc: str) -> list[int]:
        """The ids of the ``copilot:event``s one document received (snapshots have none)."""
        return [
            r["id"]
            for r in self.records
            if r["kind"] == "event" and r["doc"] == doc and r["id"] is not None
        ]

    def states(self, doc: str) -> list[tuple[str, str]]:
        """``(state, text)`` for every value ``[data-stream-state]`` took in one document."""
        return [
            (r["state"], r["text"])
            for r in self.records
            if r["kind"] == "state" and r["doc"] == doc
        ]


@pytest.fixture
def chromium(monkeypatch):
    """Debian's Chromium, headless, through Playwright; closed when the test ends.

    Playwright's sync API runs an event loop in this thread for as long as it is started, so
    Django would refuse the test's own (synchronous, safe) ORM calls:
    ``DJANGO_ALLOW_ASYNC_UNSAFE`` is set for this test only, and never passed to the portal's
    processes (see ``start_portal``). Per test, not per session, so that no later test of the
    suite runs beside a Playwright loop.
    """
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    monkeypatch.setenv(ASYNC_UNSAFE, "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


PASSWORD = "carol-pass-123"


@pytest.fixture
def person(django_user_model):
    """A user who logs in through the form (password :data:`PASSWORD`).

    The suite's ``user`` has an MD5 hash (fast tests), which the portal's own processes, on
    Django's default hashers, cannot check: this one gets a PBKDF2 hash, made directly.
    """
    password = PBKDF2PasswordHasher().encode(PASSWORD, PBKDF2PasswordHasher().salt())
    return django_user_model.objects.create(username="carol", password=password)


@pytest.fixture
def recorder() -> PageRecorder:
    return PageRecorder()


@pytest.fixture
def browser_page(chromium, recorder: PageRecorder):
    """A page in a fresh context (own cookies), recording into ``recorder``."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    context.expose_function("e2eRecord", recorder.add)
    context.add_init_script(RECORDER_SCRIPT)
    page = context.new_page()
    page.on("pageerror", lambda error: recorder.page_errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def screenshot(request, browser_page) -> Callable[..., Path]:
    """``screenshot(label="")``: save the whole page as ``screenshots/<test>[-<label>].png``."""

    def take(label: str = "") -> Path:
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{request.node.name}{'-' + label if label else ''}.png"
        browser_page.screenshot(path=str(path), full_page=True)
        return path

    return take
