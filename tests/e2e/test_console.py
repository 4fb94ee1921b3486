"""The web console in a real browser: `rgrid console` against the real embedded stack,
driven by headless Chromium (Debian's chromium + chromium-driver) through selenium.

Set RGRID_CONSOLE_SCREENSHOTS=DIR to keep a screenshot of each page (docs/console/ holds
the ones the README links)."""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.conftest import Cli

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT_S = 90  # an upper bound on events the tests wait for, never a measured window

if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip(
        "Chromium is not installed: `apt-get install chromium chromium-driver` "
        "(scripts/test.sh does it as root)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402  (only once Chromium is known to be there)
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@dataclass
class Console:
    base: str
    login_url: str
    token: str


@pytest.fixture(scope="module")
def console(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    port = free_port()
    log = tmp_path_factory.mktemp("console") / "console.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rgrid", "console", "--port", str(port)],
            env={**cli.env, "RGRID_NO_COMMAND_SERVER": "1"},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()  # printed once the port is bound
    try:
        assert url.startswith(f"http://127.0.0.1:{port}/?token="), log.read_text()
        yield Console(f"http://127.0.0.1:{port}", url, url.split("token=", 1)[1])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(
    console: Console, downloads: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.execute_cdp_cmd(
            "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        driver.get(console.login_url)  # trades the token for the session cookie
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], object]) -> object:
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(condition)


def text_of(driver: WebDriver, css: str) -> str:
    """The element's text, or "" while it is absent or being swapped by htmx."""
    try:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        return found[0].text if found else ""
    except StaleElementReferenceException:
        return ""


def screenshot(driver: WebDriver, name: str) -> None:
    target = os.environ.get("RGRID_CONSOLE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(target) / f"{name}.png"))


def write(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))


def session_cookie(driver: WebDriver) -> dict[str, str]:
    cookie = driver.get_cookie("rgrid_console")
    assert cookie is not None and cookie["httpOnly"], "the session cookie must be HttpOnly"
    return {"rgrid_console": cookie["value"]}


def run_json(cli: Cli, work: Path, *args: str) -> dict[str, object]:
    result = cli("run", *args, "--json", cwd=work)
    payload = result.json()
    assert isinstance(payload, dict), result.stderr
    return payload


def test_a_run_appears_in_the_list_and_its_page_shows_its_log_without_secrets(
    cli: Cli, console: Console, browser: WebDriver, work: Path
) -> None:
    marker = f"console-marker-{random.randrange(10**9)}"
    write(work, "hello.py", f'import sys\nprint("{marker}")\nprint("on stderr", file=sys.stderr)\n')
    ran = run_json(cli, work, "hello.py", "-e", "API_TOKEN=hunter2-secret", "-e", "MODE=fast")
    assert ran["status"] == "succeeded", ran
    execution_id = str(ran["id"])
    browser.get(f"{console.base}/executions")
    link = wait_for(browser, lambda d: d.find_elements(By.LINK_TEXT, execution_id))
    screenshot(browser, "executions")
    link[0].click()  # type: ignore[index]
    wait_for(browser, lambda d: marker in text_of(d, "#log"))
    assert "on stderr" in text_of(browser, "#log .err")
    wait_for(browser, lambda d: "execute" in text_of(d, "#timeline"))
    env = text_of(browser, "#env")
    assert "MODE=fast" in env and "API_TOKEN=••••••" in env
    assert "hunter2-secret" not in browser.page_source
    link_to_ui = browser.find_element(By.PARTIAL_LINK_TEXT, "Temporal Web UI")
    assert link_to_ui.get_attribute("href").endswith(f"/workflows/{execution_id}")
    screenshot(browser, "execution")


def test_a_running_executions_page_follows_its_log_and_shows_its_end_without_reload(
    cli: Cli, console: Console, browser: WebDriver, work: Path
) -> None:
    # The script's pause only keeps it running while the page opens; the test waits for
    # what the page shows, in order, never for a length of time.
    write(
        work,
        "slow.py",
        """
        import time
        print("first half", flush=True)
        time.sleep(15)
        print("second half")
        open("done.txt", "w").write("done")
        """,
    )
    started = cli("run", "slow.py", "--detach", "--no-cache", cwd=work)
    assert started.code == 0, started.stderr
    execution_id = started.stdout.strip()
    browser.get(f"{console.base}/executions/{execution_id}")
    browser.execute_script("window.__same_page = 'yes';")
    wait_for(browser, lambda d: "first half" in text_of(d, "#log"))
    wait_for(browser, lambda d: "second half" in text_of(d, "#log"))
    wait_for(browser, lambda d: text_of(d, "#phase") == "succeeded")
    wait_for(browser, lambda d: "done.txt" in text_of(d, "#outputs"))
    assert text_of(browser, "#log").count("first half") == 1  # appended, never repeated
    assert browser.execute_script("return window.__same_page;") == "yes"


def test_a_file_downloaded_from_the_page_has_the_outputs_bytes(
    cli: Cli, console: Console, browser: WebDriver, downloads: Path, work: Path
) -> None:
    write(
        work,
        "make.py",
        """
        import random
        rng = random.Random(17)
        open("blob.bin", "wb").write(bytes(rng.randrange(256) for _ in range(300_000)))
        open("notes.txt", "w").write("first line\\nsecond line\\n")
        """,
    )
    ran = run_json(cli, work, "make.py", "--remote-only")
    assert ran["status"] == "succeeded", ran
    rng = random.Random(17)
    expected = bytes(rng.randrange(256) for _ in range(300_000))
    browser.get(f"{console.base}/executions/{ran['id']}")
    row = wait_for(
        browser, lambda d: d.find_elements(By.XPATH, "//tr[td[text()='blob.bin']]//a[@download]")
    )
    row[0].click()  # type: ignore[index]
    target = downloads / "blob.bin"
    wait_for(browser, lambda _: target.exists() and target.stat().st_size == len(expected))
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(expected).digest()
    # The text output previews in the page.
    browser.find_element(By.XPATH, "//tr[td[text()='notes.txt']]//a[text()='preview']").click()
    wait_for(browser, lambda d: "second line" in text_of(d, "#preview"))
    browser.find_element(By.ID, "download-all").click()
    archive = downloads / f"{ran['id']}-outputs.zip"
    wait_for(browser, lambda _: archive.exists())
    with zipfile.ZipFile(io.BytesIO(archive.read_bytes())) as bundle:
        assert bundle.read("blob.bin") == expected
        assert bundle.read("notes.txt") == b"first line\nsecond line\n"


UPPER = """
import sys
text = open(sys.argv[-1]).read()
if "boom" in text:
    print("cannot shout at", sys.argv[-1], file=sys.stderr)
    sys.exit(5)
open("upper.txt", "w").write(text.upper())
"""


def test_retry_failed_requeues_the_failed_item_and_the_page_updates_without_reload(
    cli: Cli, console: Console, browser: WebDriver, work: Path
) -> None:
    write(work, "upper.py", UPPER)
    write(work, "in/a.txt", "alpha")
    write(work, "in/b.txt", "boom")
    ran = run_json(cli, work, "upper.py", "--batch", "in/*.txt", "--remote-only")
    assert (ran["succeeded"] + ran["cached"], ran["failed"]) == (1, 1), ran  # type: ignore[operator]
    batch_id = str(ran["batch_id"])
    first_try = f"exec-{batch_id.removeprefix('batch-')}-1"
    browser.get(f"{console.base}/batches/{batch_id}")
    wait_for(browser, lambda d: "cannot shout at" in text_of(d, "#failures"))
    assert first_try in text_of(browser, "#failures")
    screenshot(browser, "batch")
    browser.execute_script("window.__same_page = 'yes';")  # gone if the page reloads
    browser.find_element(By.ID, "retry-failed").click()
    wait_for(browser, lambda d: "1 failed item(s) queued again" in text_of(d, "#flash"))
    # The item runs again as a new execution, and the live table shows it.
    wait_for(browser, lambda d: f"{first_try}-r1" in text_of(d, "#items"))
    wait_for(browser, lambda d: f"{first_try}-r1" in text_of(d, "#failures"))
    assert browser.execute_script("return window.__same_page;") == "yes"
    wait_for(browser, lambda d: text_of(d, "#batch-state") in ("done", "ended"))
    browser.get(f"{console.base}/batches")
    wait_for(browser, lambda d: batch_id in text_of(d, "#batches"))
    screenshot(browser, "batches")


def test_a_request_without_the_token_or_the_csrf_token_is_refused(
    console: Console, browser: WebDriver
) -> None:
    anonymous = httpx.get(f"{console.base}/executions")
    assert anonymous.status_code == 401 and "refused" in anonymous.text
    wrong = httpx.get(f"{console.base}/executions?token=not-the-token")
    assert wrong.status_code == 403
    # The other side: the cookie the browser holds lets the same request through.
    cookies = session_cookie(browser)
    assert httpx.get(f"{console.base}/executions", cookies=cookies).status_code == 200
    # An action with the cookie but without the page's CSRF token (another site's form).
    forged = httpx.post(f"{console.base}/batches/batch-x/pause", cookies=cookies)
    assert forged.status_code == 403 and "CSRF" in forged.text
    # A browser without the cookie sees the refusal, not the page.
    browser.delete_all_cookies()
    try:
        browser.get(f"{console.base}/executions")
        assert "refused: no console session" in browser.find_element(By.TAG_NAME, "body").text
    finally:
        browser.get(console.login_url)


def test_a_path_traversal_download_is_refused(
    cli: Cli, console: Console, browser: WebDriver, work: Path
) -> None:
    write(work, "one.py", 'open("result.txt", "w").write("mine")\n')
    ran = run_json(cli, work, "one.py", "--remote-only")
    other = run_json(cli, work, "one.py", "--no-cache", "--remote-only")
    base = f"{console.base}/executions/{ran['id']}/outputs"
    cookies = session_cookie(browser)
    assert httpx.get(f"{base}/result.txt", cookies=cookies).content == b"mine"
    for attempt in (
        f"{base}/%2e%2e/%2e%2e/ledger.db",
        f"{base}/..%2F..%2F..%2Fetc%2Fpasswd",
        f"{base}/%2Fetc%2Fpasswd",
        f"{base}/..%2F{other['id']}%2Fresult.txt",
        f"{base}/..%5C..%5Cledger.db",
        f"{base}/not-an-output.txt",
    ):
        refused = httpx.get(attempt, cookies=cookies)
        assert refused.status_code in (400, 404), (attempt, refused.status_code)
        assert b"mine" not in refused.content and b"root:" not in refused.content
    # A browser resolves `%2e%2e/` itself (to another page, which 404s); `..%2F` it keeps.
    browser.get(f"{base}/..%2F..%2Fledger.db")
    assert "unsafe path '../../ledger.db'" in text_of(browser, "#error")


def test_costs_and_nodes_pages_show_the_ledger(
    cli: Cli, console: Console, browser: WebDriver
) -> None:
    assert cli("cost", "set-limit", "€5/month", "--alert-at", "80").code == 0
    browser.get(f"{console.base}/costs")
    wait_for(browser, lambda d: "€5.00/month for all projects" in text_of(d, "#limits"))
    # Local nodes cost nothing: the chart says so rather than drawing empty bars.
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart") or (
        "every day in this window cost €0.00" in text_of(browser, "main")
    )
    assert "default" in text_of(browser, "#by-project")
    screenshot(browser, "costs")
    browser.get(f"{console.base}/nodes")
    wait_for(browser, lambda d: "local" in text_of(d, "#nodes"))
    screenshot(browser, "nodes")
