"""The docs site as a reader browses it: every page in linkable sections, code coloured and the
report's figures shown, with nothing fetched from the internet (it must read the same offline).

The page checks read ``docs/*.md``. The site checks build it with MkDocs in strict mode into a
temporary folder (about 3 s) and read the HTML; they need MkDocs and pymdown-extensions, which
``nox -s docs`` installs and then runs this file. The build is run without ``--quiet``: MkDocs
1.6 drops warnings under ``--quiet`` before strict mode counts them (mkdocs/mkdocs#4126), so a
quiet strict build passes a broken link.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FIGURES = ROOT / "report" / "figures"
REMOTE = re.compile(r"^(https?:)?//", re.IGNORECASE)
#: the attribute through which each tag loads something into the page
LOADS = {"script": "src", "link": "href", "img": "src", "iframe": "src", "source": "src"}


def _pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def _prose(text: str) -> str:
    """The page without its fenced code, whose ``# comment`` lines are not headings."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def test_nine_pages_in_ten_are_split_into_sections() -> None:
    pages = _pages()
    flat = [p.name for p in pages if not re.search(r"^## ", _prose(p.read_text()), re.MULTILINE)]
    assert len(pages) >= 10, "docs/ holds the reference pages"
    assert len(flat) * 10 <= len(pages), f"pages without a ## section: {flat}"


def test_no_bold_paragraph_stands_in_for_a_heading() -> None:
    """A paragraph that opens in bold (``**Times.** ...``) is a heading the table of contents
    cannot list and no one can link to; list items may open in bold."""
    found = []
    for page in _pages():
        for block in re.split(r"\n\s*\n", _prose(page.read_text())):
            if block.lstrip("\n").startswith("**"):
                found.append(f"{page.name}: {block.strip().splitlines()[0][:60]}")
    assert not found, "make these ## or ### headings:\n" + "\n".join(found)


class _Tags(HTMLParser):
    """Every start tag of a page with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def _tags(page: Path) -> list[tuple[str, dict[str, str]]]:
    parser = _Tags()
    parser.feed(page.read_text())
    return parser.tags


def _hrefs(tags: list[tuple[str, dict[str, str]]], css_class: str) -> set[str]:
    return {a.get("href", "") for t, a in tags if t == "a" and css_class in a.get("class", "")}


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("mkdocs", reason="MkDocs is not installed here (nox -s docs runs this)")
    pytest.importorskip("pymdownx", reason="pymdown-extensions is not installed (nox -s docs)")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--clean"]
    command += ["--config-file", str(config), "--site-dir", str(site)]
    return subprocess.run(command, capture_output=True, text=True, cwd=config.parent, timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built as ``nox -s docs`` builds it."""
    out = tmp_path_factory.mktemp("site")
    result = _build(ROOT / "mkdocs.yml", out)
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def test_the_site_loads_nothing_from_the_internet(site: Path) -> None:
    remote = []
    for page in sorted(site.rglob("*.html")):
        for tag, attrs in _tags(page):
            url = attrs.get(LOADS.get(tag, ""), "")
            if REMOTE.match(url) and attrs.get("rel") != "canonical":
                remote.append(f"{page.relative_to(site)}: <{tag}> {url}")
    for sheet in sorted(site.rglob("*.css")):
        for url in re.findall(r"""(?:url\(|@import)\s*["']?([^"')\s]+)""", sheet.read_text()):
            if REMOTE.match(url):
                remote.append(f"{sheet.relative_to(site)}: {url}")
    assert not remote, "\n".join(remote)


def test_every_link_of_the_site_opens_a_file_from_disk(site: Path) -> None:
    """Pages are NAME.html (``use_directory_urls: false``): a link to a folder would show a
    directory listing when build/site/ is opened without a server. 404.html is a server's page,
    with links from the site's root."""
    broken = []
    for page in sorted(set(site.rglob("*.html")) - {site / "404.html"}):
        for tag, attrs in _tags(page):
            url = attrs.get("href", "").split("#")[0] if tag == "a" else ""
            if url and not re.match(r"^[a-z]+:|^//", url) and not (page.parent / url).is_file():
                broken.append(f"{page.relative_to(site)}: {attrs['href']}")
    assert not broken, "\n".join(broken)


def test_every_section_is_in_the_table_of_contents_with_a_link(site: Path) -> None:
    for source in _pages():
        page = site / f"{source.stem}.html"
        tags = _tags(page)
        toc, links = _hrefs(tags, "nav-link"), _hrefs(tags, "headerlink")
        for tag, attrs in tags:
            if tag in ("h2", "h3"):
                anchor = "#" + attrs["id"]
                assert anchor in toc, f"{page.name}: {anchor} not in the table of contents"
                assert anchor in links, f"{page.name}: {anchor} has no permanent link"


def test_the_report_page_shows_every_figure_of_the_report(site: Path) -> None:
    figures = sorted(FIGURES.glob("*.svg"))
    assert figures, "report/figures/ holds the report's figures"
    page = site / "report.html"
    shown = {(page.parent / a["src"]).resolve() for t, a in _tags(page) if t == "img"}
    for figure in figures:
        copy = (site / "figures" / figure.name).resolve()
        assert copy in shown, f"docs/report.md does not show {figure.name}"
        assert copy.read_bytes() == figure.read_bytes(), f"{figure.name} is not the report's"


def test_code_is_coloured_by_a_stylesheet_of_the_site(site: Path) -> None:
    page = (site / "trial.html").read_text()
    assert '<div class="highlight">' in page
    assert re.search(r'<span class="(k|nb|c1|s2)">', page), "no highlighted token"
    sheets = {a["href"] for t, a in _tags(site / "trial.html") if t == "link"}
    assert "css/pygments.css" in sheets
    assert ".highlight .k " in (site / "css" / "pygments.css").read_text()


def test_a_figure_the_report_did_not_draw_fails_the_strict_build(tmp_path: Path) -> None:
    """The hook copies report/figures/ into the site, so the strict build checks each embed."""
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    shutil.copytree(DOCS, tmp_path / "docs")
    missing = "fig8_pareto.svg"
    kept = shutil.ignore_patterns(missing)
    shutil.copytree(FIGURES, tmp_path / "report" / "figures", ignore=kept)
    result = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert f"'figures/{missing}'" in result.stderr and "not found" in result.stderr
