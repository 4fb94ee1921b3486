"""The real Temporal Web UI of the embedded stack, in headless Chromium, through rgrid's
codec server: the project filter lists a batch's children, and an execution's input is
readable with its secret masked."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rgrid.worker.dev import temporal_binary
from tests.e2e.conftest import Cli

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip(
        "Debian's chromium and chromium-driver are not installed (scripts/test.sh installs them)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

PAGE_WAIT_S = 90  # how long a page may take to render on a loaded machine; not asserted on


@pytest.fixture
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="rgrid-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# The UI shows payloads in CodeMirror views, which render only the lines in sight: scroll
# each through, a frame at a time, and keep every line it rendered.
_ALL_TEXT = """
const done = arguments[arguments.length - 1];
const frame = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
(async () => {
  const parts = [document.body.innerText];
  for (const view of document.querySelectorAll('.cm-scroller')) {
    for (let y = 0; y <= view.scrollHeight; y += Math.max(view.clientHeight / 2, 20)) {
      view.scrollTop = y;
      await frame();
      parts.push(view.innerText);
    }
  }
  done(parts.join('\\n'));
})();
"""


def page_text(browser: Any) -> str:
    """Everything the page shows, payload views scrolled through."""
    return str(browser.execute_async_script(_ALL_TEXT))


def wait_for_text(browser: Any, *texts: str) -> str:
    """The page's text once every one of `texts` shows (the UI renders asynchronously)."""
    try:
        WebDriverWait(browser, PAGE_WAIT_S, poll_frequency=0.5).until(
            lambda d: all(t in page_text(d) for t in texts)
        )
    except TimeoutException:
        shown = page_text(browser)
        missing = [t for t in texts if t not in shown]
        shot = Path(tempfile.gettempdir()) / f"rgrid-web-ui-{secrets.token_hex(4)}.png"
        browser.save_screenshot(str(shot))
        pytest.fail(f"{browser.current_url} never showed {missing} (screenshot {shot}):\n{shown}")
    return page_text(browser)


def listed(cli: Cli, query: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [temporal_binary(), "workflow", "list", "--query", query, "-o", "json", "--address",
         f"127.0.0.1:{cli.env['RGRID_DEV_PORT']}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(done.stdout) if done.stdout.strip() else []


def test_the_web_ui_filters_by_project_and_shows_an_input_with_its_secret_masked(
    cli: Cli, work: Path, browser: Any
) -> None:
    project = f"ui-{secrets.token_hex(4)}"
    token = f"tok-{secrets.token_hex(8)}"
    for name in ("north", "south"):
        (work / f"{name}.csv").write_text(name)
    (work / "job.py").write_text("import os, sys\nprint(len(os.environ['API_TOKEN']))\n")
    result = cli(
        "run", "job.py", "--batch", "*.csv", "--project", project, "-e", f"API_TOKEN={token}",
        cwd=work,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    children = [w for w in listed(cli, f'RgridProject = "{project}"')
                if w["type"]["name"] == "ExecutionWorkflow"]  # fmt: skip
    assert len(children) == 2
    ui = f"http://127.0.0.1:{cli.env['RGRID_DEV_UI_PORT']}"

    query = urllib.parse.quote(f'RgridProject = "{project}"')
    browser.get(f"{ui}/namespaces/default/workflows?query={query}")
    ids = [w["execution"]["workflowId"] for w in children]
    page = wait_for_text(browser, *ids)
    assert "BatchWorkflow" in page  # the batch itself carries the project too

    child = children[0]["execution"]
    browser.get(f"{ui}/namespaces/default/workflows/{child['workflowId']}/{child['runId']}/history")
    # The input, decoded by the codec server: the script's name and the secret's name
    # are readable, its value is masked.
    page = wait_for_text(browser, "job.py", "API_TOKEN", "[secret]")
    assert token not in page and token not in browser.page_source
