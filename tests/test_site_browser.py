"""The built site in a real browser: Debian's chromium (`make browser`), driven by Playwright, opens every HTML page
over file:// at desktop and phone widths.

A page fails on a console error or uncaught exception, a request that does not start with file:// (aborted and
recorded), a file it asks for that is missing, a dead link (a relative <a href> to a file that is not there, or to
a fragment that is no id of the target page), an image that does not load, horizontal overflow of the page (wide
tables must scroll inside their own div.scroll), a results table whose rows differ from stats.json, or verdict
counts that differ from the claims JSON files. Pages are found by walking the site directory, so new pages are
covered without changing this file.

Without chromium or Playwright every test here is skipped, with the reason and the command that installs them.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import pytest

from leaderboard.site import fmt_estimate
from leaderboard.verdicts import VERDICTS
from tests.conftest import REPO
from tests.test_leaderboard import make_suite, site_of

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; `make browser` installs it (as root)
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
IMAGE_TIMEOUT_MS = 5000

# Run in each page after `load`: lazy images are made eager and awaited, then everything the checks need is read.
COLLECT = """async (timeoutMs) => {
  const images = [...document.images];
  images.forEach((img) => { img.loading = "eager"; });
  const settled = (img) => img.complete ? null : new Promise((done) => {
    img.addEventListener("load", done, { once: true });
    img.addEventListener("error", done, { once: true });
  });
  await Promise.race([Promise.all(images.map(settled)), new Promise((done) => setTimeout(done, timeoutMs))]);

  const text = (el) => el.textContent.replace(/\\s+/g, " ").trim();
  const describe = (el) => {
    const parts = [];
    for (let e = el; e && e !== document.documentElement && parts.length < 4; e = e.parentElement) {
      let s = e.tagName.toLowerCase();
      if (e.id) s += "#" + e.id;
      else if (e.classList.length) s += "." + [...e.classList].join(".");
      for (const a of ["data-env", "data-comparison", "data-paper"]) {
        if (e.hasAttribute(a)) s += `[${a}="${e.getAttribute(a)}"]`;
      }
      parts.unshift(s);
      if (e.id) break;
    }
    return parts.join(" > ");
  };
  const width = window.innerWidth;
  const clipped = (el) => {  // inside a box that scrolls or clips horizontally: its overflow is that box's
    for (let e = el.parentElement; e && e !== document.body; e = e.parentElement) {
      if (getComputedStyle(e).overflowX !== "visible") return true;
    }
    return false;
  };
  const overflowing = [];
  if (document.documentElement.scrollWidth > width) {
    const wide = new Set();
    for (const el of document.body.querySelectorAll("*")) {
      const box = el.getBoundingClientRect();
      if (box.right > width + 0.5 && !clipped(el)) {
        wide.add(el);
        if (!wide.has(el.parentElement)) overflowing.push(`${describe(el)} (${Math.round(box.right)} px)`);
      }
    }
  }
  const table = (t) => ({
    header: t.tHead && t.tHead.rows.length ? [...t.tHead.rows[0].cells].map(text) : [],
    rows: [...t.tBodies].flatMap((b) => [...b.rows]).map((r) => ({
      algo: r.dataset.algo ?? null, paper: r.dataset.paper ?? null, cells: [...r.cells].map(text),
    })),
  });
  return {
    title: document.title,
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: width,
    overflowing: overflowing.slice(0, 8),
    links: [...document.querySelectorAll("a[href]")].map((a) => a.getAttribute("href")),
    brokenImages: images.filter((img) => !img.complete || img.naturalWidth === 0)
      .map((img) => img.getAttribute("src")),
    envTables: [...document.querySelectorAll("table[data-env][data-comparison]")]
      .map((t) => ({ env: t.dataset.env, comparison: t.dataset.comparison, ...table(t) })),
    verdictCounts: [...document.querySelectorAll("table#verdict-counts")].map(table),
  };
}"""


@dataclass
class Visit:
    """What one page showed at one viewport."""

    page: str
    viewport: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page} @ {self.viewport}"


@dataclass
class Site:
    """A built site and the files its tables must agree with."""

    name: str
    root: Path
    stats: Path
    claims: Path

    def pages(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*.html"))


class Tab:
    """One browser tab that visits pages in turn (a new tab per page costs more than the page), attributing what
    it sees to the page being visited."""

    def __init__(self, context, viewport: str):
        self.viewport, self.current = viewport, Visit("", viewport)
        self.tab = context.new_page()
        self.tab.route(lambda url: not url.startswith("file://"), self._leave_file_url)
        self.tab.on("console", lambda m: m.type == "error" and self.current.console_errors.append(
            f"{m.text} ({m.location.get('url', '')})"))
        self.tab.on("pageerror", lambda e: self.current.page_errors.append(str(e)))
        self.tab.on("dialog", lambda d: (self.current.dialogs.append(f"{d.type}: {d.message}"), d.dismiss()))
        self.tab.on("requestfailed", lambda r: r.url.startswith("file://") and self.current.failed.append(
            f"{r.url}: {r.failure}"))

    def _leave_file_url(self, route) -> None:
        self.current.external.append(route.request.url)
        route.abort()

    def visit(self, site_root: Path, page: str) -> Visit:
        """Open one page over file:// and collect every problem it shows."""
        self.current = Visit(page, self.viewport)
        self.tab.goto((site_root / page).as_uri(), wait_until="load")
        self.current.data = self.tab.evaluate(COLLECT, IMAGE_TIMEOUT_MS)
        return self.current


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser():
    """One headless Debian chromium for the module, or a skip that says what is missing (a failure where
    COOPBENCH_REQUIRE_BROWSER=1, as CI sets it: there the browser must be there)."""
    missing = pytest.fail if os.environ.get("COOPBENCH_REQUIRE_BROWSER") == "1" else pytest.skip
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing(f"no {CHROMIUM}: browser tests need Debian's chromium (`make browser` as root installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright for Python is not installed: `make venv` installs it from requirements.lock")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


def _synthetic_site(root: Path) -> Site:
    site = site_of(root, make_suite(root))
    return Site("synthetic", site, root / "stats.json", root / "claims")


def _smoke_site(root: Path) -> Site:
    """The smoke suite through Snakemake, as tests/test_workflow.py runs it (about 25 s)."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [str(bin_dir / "snakemake"), "-s", str(REPO / "Snakefile"), "--cores", str(min(4, os.cpu_count() or 1)),
         "--config", "suite=smoke", f"site_dir={root / 'site'}", "bootstrap_reps=200"],
        cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = root / "results" / "smoke"
    return Site("smoke", root / "site", results / "stats.json", results / "claims")


@pytest.fixture(scope="module", params=["synthetic", pytest.param("smoke", marks=pytest.mark.slow)])
def site(request, tmp_path_factory, browser) -> Site:
    """The site under test; asks for the browser first, so that a skip costs no build."""
    root = tmp_path_factory.mktemp(f"site-{request.param}")
    return _synthetic_site(root) if request.param == "synthetic" else _smoke_site(root)


@pytest.fixture(scope="module")
def visits(browser, site: Site) -> list[Visit]:
    """Every page of the site at every viewport, visited once for all the checks below."""
    pages = site.pages()
    assert "index.html" in pages and len(pages) > 10, pages
    seen = []
    for viewport, size in VIEWPORTS.items():
        context = browser.new_context(viewport=size)
        try:
            tab = Tab(context, viewport)
            seen += [tab.visit(site.root, page) for page in pages]
        finally:
            context.close()
    return seen


def _report(problems: list[str], what: str) -> str:
    shown = "\n  ".join(problems[:40])
    more = f"\n  ... and {len(problems) - 40} more" if len(problems) > 40 else ""
    return f"{len(problems)} {what}:\n  {shown}{more}"


# ---------------------------------------------------------------- the checks


def test_no_console_error_page_error_or_missing_file(visits: list[Visit]):
    problems = [f"{v.where}: {kind}: {message}" for v in visits
                for kind, messages in (("console error", v.console_errors), ("uncaught exception", v.page_errors),
                                       ("dialog", v.dialogs), ("failed request", v.failed))
                for message in messages]
    assert not problems, _report(problems, "errors in the browser")


def test_no_request_leaves_file_url(visits: list[Visit]):
    problems = [f"{v.where}: {url}" for v in visits for url in v.external]
    assert not problems, _report(problems, "requests that leave file:// (aborted)")


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value or "")


def _dead_links(root: Path, page: str, hrefs: list[str], ids: dict[Path, set[str]]) -> tuple[int, list[str]]:
    """How many of a page's links are relative (file://), and those whose file or fragment is missing."""
    problems, checked = [], 0
    base = (root / page).as_uri()
    for href in hrefs:
        url, fragment = urldefrag(urljoin(base, href))
        parts = urlsplit(url)
        if parts.scheme != "file":
            continue  # a link out (never loaded here); requests out are test_no_request_leaves_file_url's
        checked += 1
        target = Path(unquote(parts.path))
        if not target.is_file():
            problems.append(f"{page}: href={href!r}: {target} does not exist")
            continue
        if fragment and target.suffix == ".html":
            if target not in ids:
                parser = _Ids()
                parser.feed(target.read_text())
                ids[target] = parser.ids
            if unquote(fragment) not in ids[target]:
                problems.append(f"{page}: href={href!r}: no id {fragment!r} in {target.relative_to(root)}")
    return checked, problems


def test_links_resolve(site: Site, visits: list[Visit]):
    """Every relative link points at a file of the site, and every fragment at an id of its target page."""
    ids: dict[Path, set[str]] = {}
    problems, checked = [], 0
    for v in visits:
        if v.viewport == "desktop":  # the same HTML at every width
            n, found = _dead_links(site.root, v.page, v.data["links"], ids)
            checked, problems = checked + n, problems + found
    assert checked > 0
    assert not problems, _report(problems, "dead links")


def test_images_load(visits: list[Visit]):
    problems = [f"{v.where}: <img src={src!r}> did not load (naturalWidth 0)" for v in visits
                for src in v.data["brokenImages"]]
    assert not problems, _report(problems, "images that do not load")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_no_horizontal_overflow(visits: list[Visit], viewport: str):
    """The page is never wider than the window: wide tables scroll inside their own box (div.scroll)."""
    problems = [f"{v.page}: page {v.data['scrollWidth']} px wide in a {v.data['innerWidth']} px window; "
                f"wider than the window: {'; '.join(v.data['overflowing']) or '?'}"
                for v in visits if v.viewport == viewport and v.data["scrollWidth"] > v.data["innerWidth"]]
    assert not problems, _report(problems, f"pages wider than the {viewport} window")


def _column(header: list[str], starts: str, where: str) -> int:
    found = [i for i, name in enumerate(header) if name.lower().startswith(starts.lower())]
    assert found, f"{where}: no column starting {starts!r} in {header}"
    return found[0]


def test_results_tables_match_stats(site: Site, visits: list[Visit]):
    """Each env table (data-env, data-comparison) lists stats.json's per_env rows: algorithms, seeds and the final
    return estimate as the site formats it; every env of every comparison has a table somewhere."""
    comparisons = json.loads(site.stats.read_text())["comparisons"]
    problems, shown = [], set()
    for v in visits:
        if v.viewport != "desktop":
            continue
        for t in v.data["envTables"]:
            where = f"{v.page}: table[data-env={t['env']!r}][data-comparison={t['comparison']!r}]"
            shown.add((t["comparison"], t["env"]))
            if t["comparison"] not in comparisons:
                problems.append(f"{where}: no comparison {t['comparison']!r} in {site.stats.name}")
                continue
            expected = {r["algo"]: r for r in comparisons[t["comparison"]]["per_env"] if r["env"] == t["env"]}
            rows = {r["algo"]: r["cells"] for r in t["rows"] if r["algo"] is not None}
            if set(rows) != set(expected):
                problems.append(f"{where}: algorithms {sorted(rows)}, stats.json has {sorted(expected)}")
            final, seeds = _column(t["header"], "Final return", where), _column(t["header"], "Seeds", where)
            for algo in sorted(set(rows) & set(expected)):
                cells, row = rows[algo], expected[algo]
                want = {"algorithm": algo, "seeds": str(row["n_seeds"]),
                        "final return": fmt_estimate(row["return_mean"])}
                got = {"algorithm": cells[0], "seeds": cells[seeds], "final return": cells[final]}
                if got != want:
                    problems.append(f"{where} row {algo}: shows {got}, stats.json gives {want}")
    missing = sorted({(c, env) for c, cstats in comparisons.items() for env in cstats["envs"]} - shown)
    problems += [f"no table on any page for env {env!r} of comparison {c!r}" for c, env in missing]
    assert shown, "no table[data-env][data-comparison] on any page"
    assert not problems, _report(problems, "results tables that differ from stats.json")


def test_verdict_counts_match_claims(site: Site, visits: list[Visit]):
    """table#verdict-counts: one row per claims/<paper>.json with its counts and total, and an 'All' row."""
    papers = {p["paper"]: p for p in (json.loads(f.read_text()) for f in sorted(site.claims.glob("*.json")))}
    assert papers, f"no claims JSON in {site.claims}"
    tables = [(v.page, t) for v in visits if v.viewport == "desktop" for t in v.data["verdictCounts"]]
    assert tables, "no table#verdict-counts on any page"
    problems = []
    for page, t in tables:
        where = f"{page}: table#verdict-counts"
        columns = {v: _column(t["header"], v, where) for v in VERDICTS}
        total = _column(t["header"], "Total", where)
        rows = {r["paper"]: r["cells"] for r in t["rows"] if r["paper"]}
        if set(rows) != set(papers):
            problems.append(f"{where}: papers {sorted(rows)}, claims JSON files {sorted(papers)}")
        for name in sorted(set(rows) & set(papers)):
            got = {v: rows[name][i] for v, i in columns.items()} | {"total": rows[name][total]}
            want = {v: str(papers[name]["counts"].get(v, 0)) for v in VERDICTS} | {
                "total": str(len(papers[name]["claims"]))}
            if got != want:
                problems.append(f"{where} row {name}: shows {got}, claims/{name}.json gives {want}")
        everything = [r["cells"] for r in t["rows"] if r["cells"] and r["cells"][0] == "All"]
        want = {v: str(sum(p["counts"].get(v, 0) for p in papers.values())) for v in VERDICTS} | {
            "total": str(sum(len(p["claims"]) for p in papers.values()))}
        got = None
        if everything:
            got = {v: everything[0][i] for v, i in columns.items()} | {"total": everything[0][total]}
        if got != want:
            problems.append(f"{where} row All: shows {got}, the claims JSON files sum to {want}")
    assert not problems, _report(problems, "verdict counts that differ from the claims JSON files")


# ---------------------------------------------------------------- the checks catch what they should


BROKEN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>broken</title>
<link rel="stylesheet" href="missing.css"></head><body>
<script>console.error("boom"); undefinedFunction();</script>
<img src="https://example.invalid/remote.png" alt="remote"> <img src="nothing.png" alt="missing">
<table id="wide"><tr><td style="white-space: nowrap">{wide}</td></tr></table>
<div class="scroll" style="overflow-x: auto"><table id="boxed"><tr><td style="white-space: nowrap">{wide}</td></tr>
</table></div>
<a href="other.html">dead</a> <a href="#nowhere">no such id</a> <a href="#wide">fine</a>
<div style="height: 5000px"></div><img src="dot.png" alt="below the fold" loading="lazy">
<img src="gone.png" alt="missing, below the fold" loading="lazy">
</body></html>""".replace("{wide}", "x" * 300)


def test_the_checks_see_a_broken_page(browser, tmp_path: Path):
    """A page with every fault the checks look for: each one is seen (so a clean site is clean, not unchecked)."""
    (tmp_path / "index.html").write_text(BROKEN_PAGE)
    (tmp_path / "dot.png").write_bytes(base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="))
    context = browser.new_context(viewport=VIEWPORTS["phone"])
    try:
        seen = Tab(context, "phone").visit(tmp_path, "index.html")
    finally:
        context.close()
    assert any("boom" in m for m in seen.console_errors)
    assert any("undefinedFunction" in m for m in seen.page_errors)
    assert seen.external == ["https://example.invalid/remote.png"]
    assert any("missing.css" in f for f in seen.failed) and any("nothing.png" in f for f in seen.failed)
    assert sorted(seen.data["brokenImages"]) == ["gone.png", "https://example.invalid/remote.png", "nothing.png"]
    assert seen.data["scrollWidth"] > seen.data["innerWidth"]
    assert [o.split(" (")[0] for o in seen.data["overflowing"]] == ["table#wide"]  # not the one in div.scroll
    checked, dead = _dead_links(tmp_path, "index.html", seen.data["links"], {})
    assert checked == 3 and [d.split(":")[1].strip() for d in dead] == ["href='other.html'", "href='#nowhere'"]
