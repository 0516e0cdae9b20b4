"""Open a static page in headless Chromium through its command line: what the page shows,
whether anything went wrong while loading it, and a screenshot.

No browser-automation package: a copy of the page, beside it so its relative links still
resolve, gets a first script that records errors (script errors, resources that failed to
load, Content-Security-Policy violations) and, once loaded, writes them with the page's
visible text and width into the DOM, which ``--dump-dom`` prints. Chromium's own log
(``--enable-logging=stderr``) adds every console message the page caused.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_SECONDS = 120
CHECK_ID = "__page_check__"

# Runs before the page's Content-Security-Policy meta, so the policy does not block it.
_HOOK = (
    "<script>(function(){var errors=[];"
    "window.addEventListener('error',function(e){var t=e.target;"
    "errors.push(t&&t!==window&&(t.src||t.href)?'failed to load '+(t.src||t.href):"
    "'script error: '+e.message);},true);"
    "document.addEventListener('securitypolicyviolation',function(e){"
    "errors.push('CSP '+e.violatedDirective+' blocked '+e.blockedURI);});"
    "window.addEventListener('load',function(){var broken=[];"
    "for(var i=0;i<document.images.length;i++){var im=document.images[i];"
    "if(!im.complete||im.naturalWidth===0){broken.push(im.getAttribute('src'));}}"
    "var out=document.createElement('script');out.type='application/json';"
    "out.id='" + CHECK_ID + "';out.textContent=JSON.stringify({errors:errors,broken:broken,"
    "text:document.body.innerText,scrollWidth:document.documentElement.scrollWidth,"
    "innerWidth:window.innerWidth,images:document.images.length});"
    "document.body.appendChild(out);});})();</script>"
)


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) binary on PATH, or None."""
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    return None


@dataclass(frozen=True)
class PageCheck:
    """What loading a page in the browser gave."""

    errors: list[str]
    broken_images: list[str]
    console: list[str]
    text: str
    scroll_width: int
    inner_width: int
    num_images: int


def _run(chromium: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="autojoint_chromium_") as profile:
        command = [
            chromium,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",  # root in containers and CI
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *args,
        ]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=True
        )


def check_page(chromium: str, page: Path, *, width: int = 390, height: int = 844) -> PageCheck:
    """Load ``page`` (a file) at a ``width`` x ``height`` window and report what it showed.

    Raises:
        RuntimeError: the browser printed no result (it crashed or never loaded the page).
    """
    page = Path(page).resolve()
    text = page.read_text(encoding="utf-8")
    copy = page.with_name(f".check_{page.name}")
    copy.write_text(text.replace("<head>", "<head>" + _HOOK, 1), encoding="utf-8")
    try:
        done = _run(
            chromium,
            [
                "--dump-dom",
                "--virtual-time-budget=10000",
                "--enable-logging=stderr",
                "--v=0",
                f"--window-size={width},{height}",
                copy.as_uri(),
            ],
        )
    finally:
        copy.unlink(missing_ok=True)
    match = re.search(
        rf'<script type="application/json" id="{CHECK_ID}">(.*?)</script>', done.stdout, re.S
    )
    if match is None:
        raise RuntimeError(f"{chromium} gave no page check for {page}:\n{done.stderr[-2000:]}")
    found = json.loads(match.group(1))
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return PageCheck(
        errors=list(found["errors"]),
        broken_images=list(found["broken"]),
        console=console,
        text=str(found["text"]),
        scroll_width=int(found["scrollWidth"]),
        inner_width=int(found["innerWidth"]),
        num_images=int(found["images"]),
    )


def screenshot(chromium: str, page: Path, png: Path, *, width: int, height: int) -> Path:
    """Save a ``width`` x ``height`` screenshot of ``page`` (a file) as ``png``."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    _run(
        chromium,
        [
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            "--virtual-time-budget=10000",
            Path(page).resolve().as_uri(),
        ],
    )
    return png
