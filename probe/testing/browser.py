"""Open an HTML page in headless Chromium and report what a reader would see.

The check drives the system's Chromium through the Chrome DevTools Protocol over
``--remote-debugging-pipe`` (file descriptors 3 and 4 of the browser, JSON messages ended by a NUL
byte), so it needs no driver, no websocket library and no browser download. It loads the page,
waits for its ``load`` event, reads every ``<img>``'s ``naturalWidth`` and ``complete`` flag,
collects the console errors, uncaught exceptions and failed loads the browser logs, and takes a
full-page screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ProbeError

__all__ = ["find_chromium", "open_page", "PageCheck"]

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

_IMAGES = """JSON.stringify(Array.from(document.images, img => ({
    alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
    src: img.currentSrc.slice(0, 40)})))"""


@dataclass(frozen=True)
class PageCheck:
    """What a page looked like in the browser.

    Attributes
    ----------
    url : str
    title : str
        ``document.title``.
    images : list of dict
        One per ``<img>``: ``alt``, ``complete``, ``naturalWidth``, ``naturalHeight`` and the first
        characters of ``src``.
    console_errors : list of str
        Console messages of level error, uncaught exceptions and resources that failed to load.
    screenshot : pathlib.Path or None
        The full-page PNG, when one was asked for.
    """

    url: str
    title: str
    images: list
    console_errors: list
    screenshot: Path | None

    @property
    def broken_images(self) -> list:
        """The images that did not load (``naturalWidth == 0``)."""
        return [img for img in self.images if not img["complete"] or img["naturalWidth"] == 0]


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable: ``$PROBE_CHROMIUM``, else the first of the usual names on PATH."""
    explicit = os.environ.get("PROBE_CHROMIUM")
    if explicit:
        return explicit
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def open_page(path: str | Path, *, screenshot: str | Path | None = None, width: int = 1280, timeout: float = 60.0,
              executable: str | None = None) -> PageCheck:
    """Load a local HTML file in headless Chromium and check it.

    Parameters
    ----------
    path : str or pathlib.Path
        The page (opened as a ``file://`` URL).
    screenshot : str or pathlib.Path, optional
        Where to write a full-page PNG screenshot.
    width : int, default 1280
        Viewport width in CSS pixels.
    timeout : float, default 60.0
        Seconds to wait for the browser at each step.
    executable : str, optional
        The browser; default :func:`find_chromium`.

    Returns
    -------
    PageCheck

    Raises
    ------
    ProbeError
        If no browser is found, the page does not exist, or the browser does not answer in time.
    """
    path = Path(path).resolve()
    if not path.exists():
        raise ProbeError(f"page {str(path)!r} does not exist")
    exe = executable or find_chromium()
    if exe is None:
        raise ProbeError("no Chromium found: install it (Debian: apt-get install chromium) or set PROBE_CHROMIUM")
    with tempfile.TemporaryDirectory(prefix="probe-chromium-") as profile, _Browser(exe, profile, timeout) as b:
        target = b.call("Target.createTarget", url="about:blank")["targetId"]
        session = b.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            b.call(f"{domain}.enable", session=session)
        b.call("Emulation.setDeviceMetricsOverride", session=session, width=width, height=900,
               deviceScaleFactor=1, mobile=False)
        url = path.as_uri()
        nav = b.call("Page.navigate", session=session, url=url)
        if nav.get("errorText"):
            raise ProbeError(f"{url}: {nav['errorText']}")
        b.wait_for("Page.loadEventFired", session)
        images = json.loads(b.evaluate(session, _IMAGES))
        title = b.evaluate(session, "document.title")
        shot = None
        if screenshot is not None:
            height = int(b.evaluate(session, "Math.ceil(document.documentElement.scrollHeight)"))
            data = b.call("Page.captureScreenshot", session=session, format="png", captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": width, "height": min(height, 16384), "scale": 1})["data"]
            shot = Path(screenshot)
            shot.write_bytes(base64.b64decode(data))
        b.drain(0.2)  # messages logged while the page settled
        return PageCheck(url=url, title=title, images=images, console_errors=b.errors(session), screenshot=shot)


def _above(fd: int, lowest: int) -> int:
    import fcntl

    new = fcntl.fcntl(fd, fcntl.F_DUPFD, lowest)
    os.close(fd)
    return new


class _Browser:
    """One headless Chromium spoken to over the DevTools pipe."""

    def __init__(self, exe: str, profile: str, timeout: float) -> None:
        self.timeout = timeout
        to_browser_r, self._out = os.pipe()
        self._in, from_browser_w = os.pipe()
        # above 4, so that placing them on 3 and 4 in the child cannot overwrite one with the other
        to_browser_r, from_browser_w = (_above(fd, 10) for fd in (to_browser_r, from_browser_w))
        # the browser reads commands on fd 3 and writes replies on fd 4
        args = [exe, "--headless=new", "--remote-debugging-pipe", f"--user-data-dir={profile}", "--no-first-run",
                "--no-default-browser-check", "--disable-gpu", "--disable-extensions", "--hide-scrollbars",
                "--allow-file-access-from-files", "about:blank"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to sandbox as root (containers, CI)
        # posix_spawn places the pipe ends on 3 and 4 in the child without running Python code between fork
        # and exec (safe beside the caller's threads); every other descriptor of ours is close-on-exec
        actions = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
        actions += [(os.POSIX_SPAWN_DUP2, to_browser_r, 3), (os.POSIX_SPAWN_DUP2, from_browser_w, 4)]
        try:
            self._pid = os.posix_spawn(exe, args, os.environ, file_actions=actions)
        except OSError as err:
            os.close(self._out)
            os.close(self._in)
            raise ProbeError(f"could not start the browser {exe!r}: {err}") from None
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)
        self._buffer = b""
        self._next = 0
        self._events: list[dict] = []

    def __enter__(self) -> _Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            with contextlib.suppress(OSError):  # a browser that already went away
                self._send("Browser.close", None, {})
            deadline = time.monotonic() + 10
            while os.waitpid(self._pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(self._pid, signal.SIGKILL)
                    os.waitpid(self._pid, 0)
                    break
                time.sleep(0.05)
        finally:
            os.close(self._out)
            os.close(self._in)

    def _send(self, method: str, session: str | None, params: dict) -> int:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params}
        if session is not None:
            msg["sessionId"] = session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        return self._next

    def _receive(self, deadline: float) -> dict | None:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._in], [], [], left)
            if not ready:
                return None
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise ProbeError("Chromium closed the DevTools pipe (did it start? try it by hand with --headless)")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, *, session: str | None = None, **params: object) -> dict:
        ident = self._send(method, session, params)
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._receive(deadline)
            if msg is None:
                raise ProbeError(f"Chromium did not answer {method} within {self.timeout:.0f} s")
            if msg.get("id") == ident:
                if "error" in msg:
                    raise ProbeError(f"Chromium: {method} failed: {msg['error'].get('message')}")
                return msg.get("result", {})
            if "method" in msg:
                self._events.append(msg)

    def evaluate(self, session: str, expression: str) -> object:
        res = self.call("Runtime.evaluate", session=session, expression=expression, returnByValue=True)
        if "exceptionDetails" in res:
            raise ProbeError(f"Chromium: evaluating the check failed: {res['exceptionDetails'].get('text')}")
        return res["result"].get("value")

    def wait_for(self, event: str, session: str) -> None:
        if any(e["method"] == event and e.get("sessionId") == session for e in self._events):
            return
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._receive(deadline)
            if msg is None:
                raise ProbeError(f"Chromium: no {event} within {self.timeout:.0f} s")
            if "method" in msg:
                self._events.append(msg)
                if msg["method"] == event and msg.get("sessionId") == session:
                    return

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (msg := self._receive(deadline)) is not None:
            if "method" in msg:
                self._events.append(msg)

    def errors(self, session: str) -> list[str]:
        found = []
        for e in self._events:
            if e.get("sessionId") != session:
                continue
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
            elif e["method"] == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                found.append("exception: " + str(d.get("exception", {}).get("description", d.get("text"))))
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                entry = p["entry"]
                found.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
        return found
