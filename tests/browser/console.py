"""The web console in a real headless browser (Debian's chromium and chromedriver, selenium).

    python3 tests/browser/console.py --chiso target/debug/chiso [--screenshots DIR] [--bench]

Starts `chiso serve --demo --demo-provinces 3` on a free port and checks each view against the
API a client would call for the same figures; then a second server with auth on. `--screenshots`
saves every view at projector (1920×1080) and phone (390×844) size; `--bench` measures the
budgets of BENCHMARKS.md (first view's bytes and time, re-sorting 136 communes) and prints them
as JSON instead of failing on them.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ADMIN_TOKEN = "console-test-admin-token-0123456789"
FAILURES: list[str] = []


def check(condition: bool, what: str) -> None:
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        FAILURES.append(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Chiso:
    """A `chiso serve` of its own on a free port, and its API as a client calls it."""

    def __init__(self, binary: str, data: str, *args: str, token: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        env = {**os.environ, "CHISO_LOG": "warn"}
        if token:
            env["CHISO_ADMIN_TOKEN"] = token
        self.process = subprocess.Popen(
            [binary, "serve", "--data-dir", data, "--listen", f"127.0.0.1:{self.port}",
             "--pg-listen", "off", "--flight-listen", "off", *args],
            env=env,
        )

    def get(self, path: str, **params) -> bytes:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        request = urllib.request.Request(self.url + path + query)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.read()

    def post(self, path: str, body: bytes, content_type: str = "application/json") -> bytes:
        request = urllib.request.Request(self.url + path, data=body, method="POST")
        request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.read()

    def sql(self, query: str, **params):
        return json.loads(self.get("/v1/sql", q=query, params=json.dumps(params))) if params else json.loads(self.get("/v1/sql", q=query))

    def wait(self, ready, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"chiso serve exited with {self.process.returncode}")
            try:
                if ready():
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"timed out waiting for {self.url}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=120)


def browser(downloads: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--lang=vi-VN", "--window-size=1920,1080", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    options.add_experimental_option("prefs", {
        "download.default_directory": downloads,
        "download.prompt_for_download": False,
        "intl.accept_languages": "vi-VN,vi",
    })
    # Never look for a driver online: Debian's, beside Debian's chromium.
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def rendered(driver, view: str, seconds: float = 60) -> None:
    WebDriverWait(driver, seconds).until(
        lambda d: d.execute_script("return document.documentElement.dataset.rendered") in (view, "error"))
    state = driver.execute_script("return document.documentElement.dataset.rendered")
    if state == "error":
        raise AssertionError(f"the {view} view failed: {driver.find_element(By.ID, 'main').text}")


def open_view(driver, url: str, view: str) -> None:
    # A route within the page keeps the document: forget the last drawing first.
    driver.execute_script("delete document.documentElement.dataset.rendered")
    driver.get(url)
    rendered(driver, view)


def vi_int(value: int) -> str:
    return f"{value:,}".replace(",", ".")


def vi_decimal(value: float, digits: int = 2) -> str:
    whole, _, fraction = f"{value:,.{digits}f}".partition(".")
    return whole.replace(",", ".") + ("," + fraction if fraction else "")


def table_rows(driver, selector: str) -> list[list[str]]:
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(tr => [...tr.children].map(c => c.textContent))",
        selector)


def wait_file(folder: Path, suffix: str, seconds: float = 60) -> Path:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done = [p for p in folder.iterdir() if p.name.endswith(suffix)]
        if done:
            time.sleep(0.3)
            return done[0]
        time.sleep(0.2)
    raise AssertionError(f"no {suffix} file downloaded")


def shots(driver, folder: Path | None, name: str) -> None:
    if folder is None:
        return
    for width, height, size in ((1920, 1080, "projector"), (390, 844, "phone")):
        driver.set_window_size(width, height)
        driver.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.6)  # the charts redraw at the new width
        driver.save_screenshot(str(folder / f"{name}-{size}.png"))
    driver.set_window_size(1920, 1080)
    time.sleep(0.3)


def requested_urls(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def demo_checks(binary: str, screenshots: Path | None, bench: bool) -> dict:
    figures: dict = {}
    with tempfile.TemporaryDirectory() as data, tempfile.TemporaryDirectory() as downloads:
        chiso = Chiso(binary, data, "--demo", "--demo-provinces", "3", "--demo-scale", "0.05")
        driver = None
        try:
            chiso.wait(lambda: json.loads(chiso.get("/ready")).get("ready"), 1800)
            chiso.wait(lambda: chiso.sql("SELECT count(DISTINCT month) AS n FROM rankings") == [{"n": 120}], 900)
            driver = browser(downloads)
            driver.set_page_load_timeout(60)

            # Rankings: the default view is the latest month's national scorecard.
            latest = chiso.sql("SELECT max(month) AS m FROM rankings")[0]["m"]
            open_view(driver, chiso.url + "/", "rankings")
            expected = json.loads(chiso.get("/v1/rankings", month=latest, scope="national:province", metric="scorecard"))
            shown = table_rows(driver, "#league tbody tr")
            check(len(expected) == 3 and len(shown) == len(expected), f"the national league table has the {len(expected)} provinces of /v1/rankings")
            check([(r[0], r[3], r[4]) for r in shown] == [(vi_int(e["rank"]), e["agency"], vi_decimal(e["value"])) for e in expected],
                  "each row's rank, agency and score equal /v1/rankings, in its order (vi-VN numbers)")
            check(all(r[5] in ("Xuất sắc", "Tốt", "Khá", "Trung bình", "Yếu") for r in shown), "every row names its band")
            shots(driver, screenshots, "rankings")

            # The districts of Vĩnh Phúc in a January: movement against the December before.
            month = "2019-01"
            open_view(driver, f"{chiso.url}/#/rankings?month={month}&scope=province:26:district&metric=on_time_rate", "rankings")
            now = json.loads(chiso.get("/v1/rankings", month=month, scope="province:26:district", metric="on_time_rate"))
            before = {r["agency"]: r["rank"] for r in json.loads(chiso.get("/v1/rankings", month="2018-12", scope="province:26:district", metric="on_time_rate"))}
            shown = table_rows(driver, "#league tbody tr")
            moves = []
            for e in now:
                move = before[e["agency"]] - e["rank"]
                moves.append("=" if move == 0 else f"▲ {move}" if move > 0 else f"▼ {-move}")
            check([r[1] for r in shown] == moves, "movement is the change of rank against the previous month")
            check([r[4].replace("\xa0", "") for r in shown] == [f"{vi_decimal(e['value'])}%" for e in now],
                  "percentages as Vietnamese readers write them (93,80%)")

            # 136 communes re-sorted by value and back.
            open_view(driver, f"{chiso.url}/#/rankings?month={latest}&scope=province:26:commune&metric=scorecard", "rankings")
            communes = json.loads(chiso.get("/v1/rankings", month=latest, scope="province:26:commune", metric="scorecard"))
            check(len(table_rows(driver, "#league tbody tr")) == len(communes) == 136, "the communes' table has 136 rows")
            driver.find_element(By.CSS_SELECTOR, 'th[data-key="name"] button').click()
            names = [r[2] for r in table_rows(driver, "#league tbody tr")]
            collated = driver.execute_script("return arguments[0].slice().sort((a, b) => a.localeCompare(b, 'vi'))", names)
            check(len(names) == 136 and names == collated, "sorting by name orders the communes as Vietnamese collates them")
            driver.find_element(By.CSS_SELECTOR, 'th[data-key="value"] button').click()
            values = [float(r[4].replace(".", "").replace(",", ".")) for r in table_rows(driver, "#league tbody tr")]
            check(values == sorted(values, reverse=True), "sorting by score puts the highest first")
            if bench:
                figures["resort_136_ms"] = resort_times(driver)

            # A province: one point per month of each series.
            open_view(driver, f"{chiso.url}/#/agency/26", "agency")
            months = chiso.sql("SELECT count(DISTINCT to_char(day, '%Y-%m')) AS n FROM agency_daily WHERE province = '26'")[0]["n"]
            points = driver.execute_script("return [...document.querySelectorAll('.chart')].map(c => c.dataset.points || null)")
            check(points[0] == str(months) and points[1] == str(months), f"the counts and rates charts have one point per month ({months})")
            rank_months = chiso.sql("SELECT count(*) AS n FROM rankings WHERE agency = '26' AND metric = 'scorecard'")[0]["n"]
            check(points[2] == str(rank_months), f"the rank chart has one point per ranked month ({rank_months})")
            check(points[5] == "10", "the ICT Index chart has the ten years 2010–2019")
            legend = driver.execute_script(
                "return [...[...document.querySelectorAll('.panel')].at(-1).querySelectorAll('.u-series:not(.hidden)')].map(e => e.textContent)")
            check(any("Hà Nội" in e and "giả lập" in e for e in legend), f"Hà Nội's made-up ICT ranks have their own legend entry ({legend})")
            check(not any("Vĩnh Phúc" in e and "giả lập" in e for e in legend), "Vĩnh Phúc's ranks, all real, have none")
            shots(driver, screenshots, "province")
            open_view(driver, f"{chiso.url}/#/agency/26.243", "agency")
            check(driver.find_element(By.TAG_NAME, "h1").text != "", "a district's page has its name")
            shots(driver, screenshots, "district")

            # The Biểu 06 report for 2019 in the form's rows.
            open_view(driver, f"{chiso.url}/#/report?province=26&from=2019-01-01&to=2019-12-31", "report")
            form = json.loads(chiso.get("/v1/reports/dossiers", layout="form", province="26", **{"from": "2019-01-01", "to": "2019-12-31"}))
            columns = ["carried_over", "received_online", "received_direct_postal", "received_total", "resolved_early",
                       "resolved_on_time", "resolved_late", "resolved_total", "withdrawn", "open_within_deadline",
                       "open_overdue", "open_total"]
            shown = table_rows(driver, "#report tbody tr")
            check(len(shown) == len(form), f"the report has the form's {len(form)} rows")
            check([r[1:] for r in shown] == [[vi_int(row[c]) for c in columns] for row in form], "every cell equals /v1/reports/dossiers?layout=form")
            agencies = json.loads(chiso.get("/v1/reports/dossiers", province="26", **{"from": "2019-01-01", "to": "2019-12-31"}))
            total = [sum(a[c] for a in agencies) for c in columns]
            check(shown[-1][1:] == [vi_int(v) for v in total], "the total row equals the sums of /v1/reports/dossiers")
            shots(driver, screenshots, "report")
            driver.find_element(By.ID, "report-csv").click()
            got = wait_file(Path(downloads), ".csv").read_bytes()
            want = chiso.get("/v1/reports/dossiers", layout="form", province="26", format="csv", **{"from": "2019-01-01", "to": "2019-12-31"})
            check(got == want, "the report's CSV download equals /v1/reports/dossiers?format=csv")
            driver.find_element(By.ID, "report-xlsx").click()
            workbook = wait_file(Path(downloads), ".xlsx")
            cells = json.loads(subprocess.run([sys.executable, str(ROOT / "tests/clients/xlsx_cells.py"), str(workbook)],
                                              check=True, capture_output=True).stdout)
            rows = list(csv.reader(io.StringIO(want.decode())))
            check(compare_cells(cells, rows), "the report's Excel download holds the cells of its CSV")
            for p in Path(downloads).iterdir():
                p.unlink()

            # The SQL console.
            open_view(driver, f"{chiso.url}/#/sql", "sql")
            WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".tables details"))
            tables = driver.execute_script("return [...document.querySelectorAll('.tables summary')].map(s => s.textContent)")
            check({"dossiers", "agencies", "rankings", "ict_index"} <= set(tables), "the tables are listed beside the editor")
            query = "SELECT code, name, kind FROM agencies WHERE province = '26' ORDER BY code"
            editor = driver.find_element(By.ID, "sql-editor")
            driver.execute_script("arguments[0].value = arguments[1]", editor, query)
            driver.find_element(By.ID, "sql-run").click()
            WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.ID, "sql-facts"))
            answer = chiso.sql(query)
            facts = driver.find_element(By.ID, "sql-facts").text
            check(f"{vi_int(len(answer))} dòng" in facts and "Mã truy vấn" in facts, f"the console states rows, query id and time ({facts})")
            shown = table_rows(driver, "#sql-table tbody tr")
            check(shown == [[a["code"], a["name"], a["kind"]] for a in answer[:100]], "the first page equals /v1/sql's first 100 rows")
            driver.find_element(By.ID, "sql-next").click()
            shown = table_rows(driver, "#sql-table tbody tr")
            check(shown == [[a["code"], a["name"], a["kind"]] for a in answer[100:200]], "the second page has the next rows")
            shots(driver, screenshots, "sql")
            driver.find_element(By.CSS_SELECTOR, 'button[data-format="csv"]').click()
            got = wait_file(Path(downloads), ".csv").read_bytes()
            check(got == chiso.get("/v1/sql", q=query, format="csv"), "the console's CSV download equals /v1/sql?format=csv")
            driver.execute_script("arguments[0].value = arguments[1]", editor, "SELECT * FROM generate_series(1, 20000)")
            driver.find_element(By.ID, "sql-run").click()
            WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.ID, "sql-capped"))
            check("10.000 dòng" in driver.find_element(By.ID, "sql-facts").text and "10.000" in driver.find_element(By.ID, "sql-capped").text
                  and driver.find_element(By.ID, "sql-page").text == "Trang 1 / 100",
                  "a long answer is cut at the 10 000 rows the page states, 100 pages")
            driver.execute_script("arguments[0].value = arguments[1]", editor, "SELECT nope FROM agencies")
            driver.find_element(By.ID, "sql-run").click()
            WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#sql-status .error"))
            try:
                chiso.sql("SELECT nope FROM agencies")
                code = None
            except urllib.error.HTTPError as error:
                code = json.loads(error.read())["error"]["code"]
            check(code is not None and code in driver.find_element(By.CSS_SELECTOR, "#sql-status .error").text,
                  f"an error shows with its code ({code})")

            # English.
            open_view(driver, chiso.url + "/#/rankings", "rankings")
            driver.find_element(By.ID, "lang").click()
            WebDriverWait(driver, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, '#nav a[data-view="rankings"]').text == "Rankings")
            rendered(driver, "rankings")
            check("League table" in driver.find_element(By.TAG_NAME, "h1").text, "the toggle turns the labels to English")
            driver.find_element(By.ID, "lang").click()
            WebDriverWait(driver, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, '#nav a[data-view="rankings"]').text == "Xếp hạng")

            # A hostile name is text.
            hostile = "<img src=x onerror=alert(1)>"
            event = {"id": str(uuid.uuid4()), "type": "AgencyRegistered",
                     "data": {"code": "26.XSS", "name": hostile, "kind": "department", "parent": "26", "province": "26"}}
            position = json.loads(chiso.post("/v1/streams/agency-26.XSS", json.dumps({"expected_revision": "no_stream", "events": [event]}).encode()))["last_position"]
            chiso.get("/v1/sql", q="SELECT 1", min_position=str(position))
            open_view(driver, f"{chiso.url}/#/agency/26.XSS", "agency")
            check(driver.find_element(By.TAG_NAME, "h1").text == hostile, "an agency named with markup shows its name as text")
            check(not driver.find_elements(By.CSS_SELECTOR, "main img"), "and no element is made of it")
            open_view(driver, f"{chiso.url}/#/agency?province=26", "picker")
            search = driver.find_element(By.CSS_SELECTOR, "input[type=search]")
            search.send_keys("img")
            listed = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "ul.agencies li")]
            check(len(listed) == 1 and listed[0].startswith(hostile) and not driver.find_elements(By.CSS_SELECTOR, "main img"),
                  "the agency list shows it as text too")
            try:
                driver.switch_to.alert
                check(False, "no script ran")
            except NoAlertPresentException:
                check(True, "no script ran")

            # Nothing left 127.0.0.1; nothing broke the policy.
            urls = requested_urls(driver)
            outside = [u for u in urls if not (u.startswith(chiso.url + "/") or u.startswith(("data:", "blob:")))]
            check(urls != [] and outside == [], f"every request went to {chiso.url} ({len(urls)} requests)")
            errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE" and "Content Security Policy" in e["message"]]
            check(errors == [], "no Content-Security-Policy violation")
            policy = urllib.request.urlopen(chiso.url + "/").headers["Content-Security-Policy"]
            check("script-src 'self'" in policy and "unsafe-inline" not in policy, "the page sends a strict Content-Security-Policy")

            if bench:
                figures.update(first_view(driver, chiso.url))
        finally:
            if driver:
                driver.quit()
            chiso.stop()
    return figures


def compare_cells(workbook: dict, rows: list[list[str]]) -> bool:
    """The report workbook: the form's title and column groups above, then the CSV's header and
    rows, cell for cell (numbers compared as the CSV writes them)."""
    cells = workbook["rows"]
    start = next((i for i, r in enumerate(cells) if r and r[0] == rows[0][0]), None)
    if start is None:
        return False
    def text(v):
        if v is None:
            return ""
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)
    body = [[text(v) for v in r][: len(rows[0])] for r in cells[start:]]
    return body == rows


def resort_times(driver) -> list[float]:
    """Milliseconds from a click on a header to the next frame, 20 times, alternating keys."""
    times = []
    for i in range(20):
        key = ("value", "name", "move", "rank")[i % 4]
        took = driver.execute_async_script("""
            const [key, done] = arguments;
            const button = document.querySelector(`th[data-key="${key}"] button`);
            const t0 = performance.now();
            button.click();
            requestAnimationFrame(() => setTimeout(() => done(performance.now() - t0), 0));
        """, key)
        times.append(took)
    return times


def first_view(driver, url: str) -> dict:
    """The first view's bytes over the wire and the time from navigation to its drawn data."""
    sizes, times = [], []
    for _ in range(7):
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.clearBrowserCache", {})
        driver.get("about:blank")
        driver.get(url + "/")
        rendered(driver, "rankings")
        entries = driver.execute_script("""
            const nav = performance.getEntriesByType('navigation')[0];
            const resources = performance.getEntriesByType('resource');
            const mark = performance.getEntriesByName('chiso:rendered')[0];
            return {bytes: nav.transferSize + resources.reduce((s, r) => s + r.transferSize, 0),
                    rendered_ms: mark.startTime};
        """)
        sizes.append(entries["bytes"])
        times.append(entries["rendered_ms"])
    return {"first_view_bytes": statistics.median(sizes), "first_view_rendered_ms": statistics.median(times),
            "first_view_rendered_all_ms": times}


def auth_checks(binary: str, screenshots: Path | None) -> None:
    with tempfile.TemporaryDirectory() as data, tempfile.TemporaryDirectory() as downloads:
        chiso = Chiso(binary, data, token=ADMIN_TOKEN)
        driver = None
        try:
            chiso.wait(lambda: json.loads(chiso.get("/ready")).get("ready"), 300)
            driver = browser(downloads)
            open_view(driver, chiso.url + "/", "signin")
            check(not driver.find_element(By.ID, "nav").is_displayed(), "with auth on and no token, no navigation")
            check(driver.find_elements(By.CSS_SELECTOR, "main table, main .panel") == [], "and no figures")
            shots(driver, screenshots, "signin")
            driver.find_element(By.ID, "token").send_keys("not-a-token-of-this-server")
            driver.find_element(By.CSS_SELECTOR, "#signin button").click()
            WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#signin .error"))
            check(True, "a wrong token is refused")
            token = json.loads(chiso.post("/v1/tokens", json.dumps({"scopes": ["query"]}).encode()))["token"]
            driver.find_element(By.ID, "token").send_keys(token)
            driver.find_element(By.CSS_SELECTOR, "#signin button").click()
            rendered(driver, "rankings")
            check(driver.find_element(By.ID, "nav").is_displayed(), "a query token opens the console")
            check(driver.execute_script("return sessionStorage.getItem('chiso.token')") == token
                  and driver.execute_script("return localStorage.getItem('chiso.token')") is None,
                  "the token is kept for the browser session only")
        finally:
            if driver:
                driver.quit()
            chiso.stop()


def reorganised_checks(binary: str, screenshots: Path | None) -> None:
    """The 2025 merger on a short demo history (2025, a hundredth of the volume): Phú Thọ's page
    names the provinces merged into it and draws their history with its own; Vĩnh Phúc's says
    when it ceased and links to Phú Thọ."""
    with tempfile.TemporaryDirectory() as data, tempfile.TemporaryDirectory() as downloads:
        chiso = Chiso(binary, data, "--demo", "--demo-reorganise-2025", "--demo-from-year", "2025", "--demo-scale", "0.01")
        driver = None
        try:
            chiso.wait(lambda: json.loads(chiso.get("/ready")).get("ready"), 600)
            chiso.wait(lambda: chiso.sql("SELECT count(DISTINCT month) AS n FROM rankings") == [{"n": 12}], 300)
            driver = browser(downloads)
            driver.set_page_load_timeout(60)
            open_view(driver, f"{chiso.url}/#/agency/25", "agency")
            lineage = driver.find_element(By.CSS_SELECTOR, ".lineage")
            links = [a.get_attribute("href").rsplit("/", 1)[-1] for a in lineage.find_elements(By.TAG_NAME, "a")]
            check(links == ["17", "26"], f"Phú Thọ's page names the provinces merged into it ({links})")
            points = driver.execute_script("return [...document.querySelectorAll('.chart')].map(c => c.dataset.points || null)")
            check(points[0] == "12", f"its counts run through 2025, before the merger too ({points[0]} months)")
            shots(driver, screenshots, "merged-province")
            open_view(driver, f"{chiso.url}/#/agency/26", "agency")
            facts = driver.find_element(By.CSS_SELECTOR, "p.muted").text
            check("2025-07-01" in facts and "Phú Thọ" in facts, f"Vĩnh Phúc's page says it ceased and where it went ({facts})")
            months = chiso.sql("SELECT count(DISTINCT to_char(day, '%Y-%m')) AS n FROM agency_daily WHERE province = '26'")[0]["n"]
            points = driver.execute_script("return [...document.querySelectorAll('.chart')].map(c => c.dataset.points || null)")
            check(points[0] == str(months), f"its counts are its own ({months} months)")
            shots(driver, screenshots, "ceased-province")
            driver.execute_script("delete document.documentElement.dataset.rendered")
            driver.find_element(By.CSS_SELECTOR, "p.muted a[href='#/agency/25']").click()
            rendered(driver, "agency")
            check(driver.find_element(By.TAG_NAME, "h1").text == "Tỉnh Phú Thọ", "its link leads to Phú Thọ")
        finally:
            if driver:
                driver.quit()
            chiso.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chiso", required=True, help="the chiso binary")
    parser.add_argument("--screenshots", type=Path, help="save every view at both sizes here")
    parser.add_argument("--bench", action="store_true", help="measure the budgets; print them as JSON")
    args = parser.parse_args()
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    try:
        figures = demo_checks(args.chiso, args.screenshots, args.bench)
        auth_checks(args.chiso, args.screenshots)
        reorganised_checks(args.chiso, args.screenshots)
    except (AssertionError, TimeoutException) as error:
        FAILURES.append(f"{type(error).__name__}: {error}")
        print(f"FAIL {FAILURES[-1]}", flush=True)
        figures = {}
    if args.bench and figures:
        resort = figures["resort_136_ms"]
        print(f"first view: {figures['first_view_bytes']:.0f} bytes over the wire (median of 7 loads, empty cache); "
              f"drawn with its data {figures['first_view_rendered_ms']:.0f} ms after navigation "
              f"(median; all: {', '.join(f'{t:.0f}' for t in figures['first_view_rendered_all_ms'])})")
        print(f"re-sorting the 136 communes: median {statistics.median(resort):.1f} ms, max {max(resort):.1f} ms (20 clicks)")
        print(json.dumps(figures))
    print(f"web console: {'FAILED: ' + '; '.join(FAILURES) if FAILURES else 'ok'}", flush=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
