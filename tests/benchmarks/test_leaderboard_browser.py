"""The leaderboard page in real headless Chromium: it loads, shows every entry, and sorts.

Needs Debian's ``chromium`` and ``chromium-driver`` (``scripts/test.sh`` installs them); the
test is skipped, saying so, only where they are absent.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_trainer.benchmarks.leaderboard import write_leaderboard

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="headless Chromium is not installed (scripts/test.sh installs Debian's chromium "
        "and chromium-driver)",
    ),
]


@pytest.fixture(scope="module")
def served_board(
    smoke_results: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The leaderboard page, served over HTTP on 127.0.0.1 by a real server."""
    out = tmp_path_factory.mktemp("board")
    write_leaderboard(smoke_results.values(), out)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/leaderboard.html"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="llm-trainer-chromium-")
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1400,1000", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _column(driver: object, table: str, header: str) -> list[str]:
    """The ``data-value`` of every row of the column headed ``header``, in display order."""
    script = """
        const table = document.querySelector(arguments[0]);
        const heads = Array.from(table.tHead.rows[0].cells).map(c => c.textContent.trim());
        const col = heads.indexOf(arguments[1]);
        return Array.from(table.tBodies[0].rows).map(r => r.cells[col].getAttribute("data-value"));
    """
    return list(driver.execute_script(script, table, header))  # type: ignore[attr-defined]


def _header(driver: object, table: str, label: str) -> object:
    from selenium.webdriver.common.by import By

    for th in driver.find_elements(By.CSS_SELECTOR, f"{table} thead th"):  # type: ignore[attr-defined]
        if th.text.strip() == label:
            return th
    raise AssertionError(f"no column {label!r}")


def test_page_loads_and_shows_every_entry_with_intervals(
    browser: object, served_board: str, smoke_results: dict[str, Path]
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(served_board)  # type: ignore[attr-defined]
    assert driver.title == "llm-trainer leaderboard"  # type: ignore[attr-defined]
    agents = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "table.board td.agent")]  # type: ignore[attr-defined]
    assert sorted(agents) == sorted(smoke_results)
    assert agents[0] == "oracle"  # ranked order on load
    rows = driver.find_elements(By.CSS_SELECTOR, "table.board tbody tr")  # type: ignore[attr-defined]
    for row in rows:
        assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", row.text), row.text
    ranks = [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows]
    assert ranks == ["1", "2", "3=", "3="]
    chart = driver.find_element(By.CSS_SELECTOR, "img")  # type: ignore[attr-defined]
    assert driver.execute_script("return arguments[0].naturalWidth", chart) > 500  # type: ignore[attr-defined]


def test_clicking_a_header_sorts_and_clicking_again_reverses(
    browser: object, served_board: str
) -> None:
    driver = browser
    driver.get(served_board)  # type: ignore[attr-defined]
    board = "table.board"
    _header(driver, board, "success").click()  # type: ignore[attr-defined]
    values = [float(v) for v in _column(driver, board, "success")]
    assert values == sorted(values, reverse=True)  # higher is better: best first
    assert _header(driver, board, "success").get_attribute("aria-sort") == "descending"  # type: ignore[attr-defined]
    _header(driver, board, "success").click()  # type: ignore[attr-defined]
    values = [float(v) for v in _column(driver, board, "success")]
    assert values == sorted(values)
    assert values[0] < values[-1]
    _header(driver, board, "agent").click()  # type: ignore[attr-defined]
    names = _column(driver, board, "agent")
    assert names == sorted(names, key=str.casefold)
    _header(driver, board, "turns").click()  # type: ignore[attr-defined]
    turns = [float(v) for v in _column(driver, board, "turns")]
    assert turns == sorted(turns)  # lower is better: fewest first


def test_headers_sort_from_the_keyboard_too(browser: object, served_board: str) -> None:
    from selenium.webdriver.common.keys import Keys

    driver = browser
    driver.get(served_board)  # type: ignore[attr-defined]
    table = "table.cells"
    header = _header(driver, table, "MultiTool-v0")
    header.send_keys(Keys.ENTER)  # type: ignore[attr-defined]
    values = [float(v) for v in _column(driver, table, "MultiTool-v0")]
    assert values == sorted(values, reverse=True)
