"""Headless Chromium for the web view's browser tests and bench: Debian's /usr/bin/chromium driven by Playwright
(never a downloaded browser), axe-core from npm for accessibility, screenshots under tests/artifacts/ui/.

`make deps` installs what this needs: Chromium (scripts/system-deps.sh), Playwright (pyproject.toml) and
axe-core (scripts/browser-deps.sh, into the shared cache).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts" / "ui"
CHROMIUM = Path(os.environ.get("RAYOP_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium keeps dialling Google's hosts, which this machine's closed
# network refuses; the others keep a fresh profile quiet.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _versions() -> dict[str, str]:
    text = (REPO / "versions.env").read_text()
    return dict(re.findall(r"^(RAYOP_\w+)=(\S+)", text, flags=re.MULTILINE))


def axe_source() -> str:
    version = _versions()["RAYOP_AXE_CORE_VERSION"]
    cache = Path(os.environ.get("RAYOP_CACHE_DIR") or Path.home() / ".cache" / "rayop")
    path = cache / "npm" / f"axe-core-{version}" / "node_modules" / "axe-core" / "axe.min.js"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make deps` (scripts/browser-deps.sh)")
    return path.read_text()


def require_chromium() -> None:
    if not CHROMIUM.exists():
        raise FileNotFoundError(
            f"{CHROMIUM} is missing: run `make deps` (scripts/system-deps.sh installs Debian's chromium)"
        )


class Browser:
    """One Chromium for a module (Playwright gives it a fresh temporary profile); a context per page."""

    def __init__(self) -> None:
        self._pw: Any = None
        self.browser: Any = None

    async def start(self) -> Browser:
        from playwright.async_api import async_playwright

        require_chromium()
        self._pw = await async_playwright().start()
        self.browser = await self._pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
        )
        return self

    async def page(self, width: int = 1280, height: int = 800) -> Any:
        ctx = await self.browser.new_context(viewport={"width": width, "height": height})
        page = await ctx.new_page()
        page.errors = []  # uncaught script errors, asserted empty by the tests
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        return page

    async def stop(self) -> None:
        if self.browser is not None:
            await self.browser.close()
        if self._pw is not None:
            await self._pw.stop()


async def axe_violations(
    page: Any, impacts: tuple[str, ...] = ("serious", "critical")
) -> list[dict[str, Any]]:
    """axe-core's violations of the page as it is now, at the given impact levels."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        await page.evaluate(axe_source())
    result = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))"
    )
    return [v for v in result if v.get("impact") in impacts]


async def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
