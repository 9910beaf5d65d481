"""The report in a real browser (issue 16): ``snakemake --report`` on the tiny demo, opened
in headless Chromium (Debian's ``chromium``; ``bash setup.sh test`` installs it).

A reader's path through it: the front page (report/workflow.rst) must render, with its
title in view and its text in the DOM; the QC category must list its tables, figure and
page; the QC page and figure, opened with their eye buttons, must show. Nothing may log an
error to the console, and the page must be drawn (a screenshot that is not one flat
colour). Negative controls: a copy of the report with a script error, and a blank page,
must fail the same checks; so must the front page without its style.

The browser is driven over the DevTools protocol through a pipe (``--remote-debugging-pipe``),
with the standard library only. Without Chromium the tests fail, saying how to install it:
they are part of the suite, not optional.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from support.workflow import run_snakemake

pytestmark = pytest.mark.workflow

WINDOW = (1400, 1000)
QC_CATEGORY = "0. Quality control"
FRONT_PAGE_TEXT = (
    "traitlens: what CNNs see in apparent personality",
    "What was run",
    "On which data",
    "How to read it",
    "data set tiny",
)
QC_FILES = ("qc/videos.tsv", "qc/ingest.tsv", "qc/faces.tsv", "qc/summary.html", "figures/qc.png")


def chromium_binary() -> str:
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if not found:
        pytest.fail(
            "Chromium is not installed: the report's browser test needs Debian's chromium "
            "package. `bash setup.sh test` installs it (ensure_browser); by hand: "
            "apt-get install chromium fonts-dejavu-core"
        )
    return found


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe: commands go to the
    browser's fd 3, replies and events come back on its fd 4, each a JSON text ended by a
    NUL byte. Events that arrive while waiting for a reply are kept in ``events``."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()

        def onto_fds_3_and_4() -> None:  # in the child, before exec
            # copies above 10 first, so neither dup2 overwrites the other's source
            ours = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
            os.dup2(ours[0], 3)
            os.dup2(ours[1], 4)

        self.process = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--mute-audio",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            preexec_fn=onto_fds_3_and_4,
            pass_fds=(3, 4),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from Chromium")
            if select.select([self._replies], [], [], left)[0]:
                chunk = os.read(self._replies, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium exited (code {self.process.poll()})")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(
        self,
        method: str,
        params: dict | None = None,
        session: str | None = None,
        timeout: float = 60,
    ) -> dict:
        self._next_id += 1
        command = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            command["sessionId"] = session
        os.write(self._commands, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)


class Tab:
    """One page of the browser: navigate, evaluate JavaScript, screenshot, and the console
    errors it logged."""

    def __init__(self, browser: Chromium) -> None:
        self.browser = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        width, height = WINDOW
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.send("Emulation.setDeviceMetricsOverride", metrics)

    def send(self, method: str, params: dict | None = None) -> dict:
        return self.browser.send(method, params, self.session)

    def evaluate(self, expression: str, context: int | None = None):
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        if context is not None:
            params["contextId"] = context
        reply = self.send("Runtime.evaluate", params)
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def open(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'")

    def wait_for(self, condition: str, timeout: float = 30) -> bool:
        """Poll a JavaScript condition until it holds; False when it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate(f"Boolean({condition})"):
                return True
            time.sleep(0.1)
        return False

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])

    def console_errors(self) -> list[str]:
        """What this tab logged as an error: uncaught exceptions, console.error and failed
        console.assert calls, and the browser's own error entries (a resource that failed to
        load, a blocked script)."""
        errors = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                errors.append(details.get("exception", {}).get("description") or details["text"])
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                errors.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                )
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                errors.append(params["entry"]["text"])
        return errors

    def frame_text(self) -> str:
        """The text of the page's first iframe (the report shows an HTML result in one)."""
        frames = self.send("Page.getFrameTree")["frameTree"].get("childFrames", [])
        assert frames, "no iframe on the page"
        world = self.send("Page.createIsolatedWorld", {"frameId": frames[0]["frame"]["id"]})
        return self.evaluate(
            "document.body ? document.body.innerText : ''", world["executionContextId"]
        )


def looks_rendered(png: bytes) -> bool:
    """A screenshot with something drawn on it: more than a handful of colours, none
    covering nearly all of it (a blank or one-colour page fails)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    if len(colours) < 50:
        return False
    commonest = max(count for count, _ in colours)
    return commonest < 0.9 * image.width * image.height


def click_eye_button(tab: Tab, path_end: str) -> None:
    """Press the view (eye) button of the result whose path ends with ``path_end``, in the
    category shown in the menu, as a reader would."""
    clicked = tab.evaluate(f"""(() => {{
        const row = [...document.querySelectorAll('tr')]
            .find(r => r.cells.length
                       && r.cells[0].innerText.trim().endsWith({json.dumps(path_end)}));
        if (!row) return false;
        row.querySelector('a[type=button]').click();
        return true;
    }})()""")
    assert clicked, f"no result ending with {path_end} in the menu"


@pytest.fixture(scope="module")
def report_html(tiny_demo, tmp_path_factory) -> Path:
    """The tiny demo's report, one self-contained HTML file."""
    workdir, configfile = tiny_demo
    report = tmp_path_factory.mktemp("report") / "report.html"
    result = run_snakemake(workdir, configfile, "--report", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    return report


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    browser = Chromium(chromium_binary(), tmp_path_factory.mktemp("chromium-profile"))
    yield browser
    browser.close()


def open_front_page(chromium: Chromium, report: Path) -> Tab:
    tab = Tab(chromium)
    tab.open(report.as_uri())
    tab.wait_for("document.querySelector('h1.title')")
    return tab


def title_in_view(tab: Tab) -> bool:
    return tab.evaluate("""(() => {
        const box = document.querySelector('h1.title').getBoundingClientRect();
        return box.top >= 0 && box.bottom <= window.innerHeight && box.height > 0;
    })()""")


def test_front_page_and_qc_section_render_without_console_errors(report_html, chromium, tmp_path):
    tab = open_front_page(chromium, report_html)
    text = tab.text()
    missing = [t for t in FRONT_PAGE_TEXT if t not in text]
    assert missing == [], f"front page text missing: {missing}\n{text[:2000]}"
    assert title_in_view(tab), "the front page's title is out of view"
    front = tab.screenshot()
    (tmp_path / "front_page.png").write_bytes(front)
    assert looks_rendered(front), f"blank front page: {tmp_path / 'front_page.png'}"

    # the QC category from the front page's own link, as a reader would follow it
    tab.evaluate(
        f"[...document.querySelectorAll('.prose a')].find(a => a.innerText === "
        f"{json.dumps(QC_CATEGORY)}).click()"
    )
    assert tab.wait_for("document.body.innerText.includes('results/tiny/qc/summary.html')")
    text = tab.text()
    assert [f for f in QC_FILES if f"results/tiny/{f}" not in text] == [], text[:2000]

    click_eye_button(tab, "qc/summary.html")
    assert tab.wait_for("document.querySelector('iframe[src^=\"data:text/html\"]')")
    time.sleep(0.3)  # the frame's document loads after the element appears
    page = tab.frame_text()
    for heading in (
        "Quality control",
        "in the manifest",
        "Videos that failed extraction (0)",
        "Videos left out at ingest (0)",
    ):
        assert heading in page, f"{heading!r} not on the QC page:\n{page[:2000]}"
    shot = tab.screenshot()
    (tmp_path / "qc_page.png").write_bytes(shot)
    assert looks_rendered(shot)

    click_eye_button(tab, "figures/qc.png")
    assert tab.wait_for("""(() => {
        const img = document.querySelector('img[src^="data:image/png"]');
        return img && img.complete && img.naturalWidth > 500;
    })()""")
    assert tab.console_errors() == []


def test_a_script_error_in_the_report_is_caught(report_html, chromium, tmp_path):
    # negative control of the console check: the same report with one failing script
    broken = tmp_path / "broken.html"
    html = report_html.read_text(encoding="utf-8")
    head, tail = html.rsplit("</body>", 1)  # the page's own end (scripts may hold one too)
    failing = "<script>traitlensNoSuchFunction();</script>\n</body>"
    broken.write_text(head + failing + tail, encoding="utf-8")
    tab = open_front_page(chromium, broken)
    errors = tab.console_errors()
    assert any("traitlensNoSuchFunction" in e for e in errors), errors


def test_the_front_page_title_leaves_view_without_its_style(report_html, chromium):
    # negative control of the in-view check, and why report/workflow.rst carries a style:
    # Snakemake centres the front page in a screen-high box, which pushes a long page's top
    # out of reach
    tab = open_front_page(chromium, report_html)
    assert title_in_view(tab)
    tab.evaluate("document.getElementById('traitlens-front-page').remove()")
    assert not title_in_view(tab)


def test_a_blank_page_is_not_taken_for_a_rendered_one(chromium, tmp_path):
    blank = tmp_path / "blank.html"
    blank.write_text("<!doctype html><html><body></body></html>", encoding="utf-8")
    tab = Tab(chromium)
    tab.open(blank.as_uri())
    assert not looks_rendered(tab.screenshot())
    assert tab.console_errors() == []
