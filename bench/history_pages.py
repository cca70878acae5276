"""What ``bench/history.py`` reads in the pages: "next" links and the admin's sidebar filters.

Regular expressions over the HTML, written to follow the pages whatever their pagination
(page numbers or cursors) and whatever the admin's filters are (links or a text box).
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from bench._support import SetupError

NEXT_LINK = re.compile(
    r'<a\b[^>]*href="([^"]+)"[^>]*>\s*(?:Older|Next|&rsaquo;|\u203a)', re.IGNORECASE
)
REL_NEXT = re.compile(
    r'<a\b[^>]*rel="next"[^>]*href="([^"]+)"|<a\b[^>]*href="([^"]+)"[^>]*rel="next"'
)
FILTER_BLOCK = re.compile(r"<nav id=\"changelist-filter\".*?</nav>", re.S)
FILTER_SECTION = re.compile(r"<details\b[^>]*data-filter-title=\"([^\"]*)\".*?</details>", re.S)
HREF = re.compile(r'<a\b[^>]*href="(\?[^"]*)"[^>]*>([^<]*)</a>')
TEXT_INPUT = re.compile(r'<input\b[^>]*type="text"[^>]*name="([^"]+)"')
TOPLINKS = re.compile(r'<nav class="toplinks">(.*?)</nav>', re.S)


def html_next(answer) -> str | None:
    match = REL_NEXT.search(answer.text) or NEXT_LINK.search(answer.text)
    if match is None:
        return None
    href = html.unescape(next(g for g in match.groups() if g))
    return href if href.startswith("/") else urlsplit(str(answer.url)).path + href


def api_next(answer) -> str | None:
    link = answer.json().get("next")
    if not link:
        return None
    parts = urlsplit(link)
    return parts.path + ("?" + parts.query if parts.query else "")


def walk(client, path: str, *, pages: int, next_of: Callable) -> tuple[str, float]:
    """The path ``pages`` "next" links after ``path``, and the seconds the walk took."""
    started = time.monotonic()
    for number in range(pages):
        answer = client.get(path)
        following = next_of(answer) if answer.status_code == 200 else None
        if following is None:
            raise SetupError(f"no next link after {number} page(s) at {path}")
        path = following
    return path, time.monotonic() - started


def admin_filters(page: str, *, typed: str) -> list[tuple[str, str]]:
    """One link per filter of the changelist's sidebar (a failed status where there is one;
    ``typed`` in a filter that is a text box), and the date hierarchy's first link."""
    found = []
    block = FILTER_BLOCK.search(page)
    for section in FILTER_SECTION.finditer(block.group(0) if block else ""):
        links = [(h, t.strip()) for h, t in HREF.findall(section.group(0)) if h != "?"]
        failed = [link for link in links if "failed" in link[0]]
        box = TEXT_INPUT.search(section.group(0))
        if box is not None:
            found.append((f"{section.group(1)} = {typed} (typed)", f"?{box.group(1)}={typed}"))
        elif failed or links:
            href, text = (failed or links)[0]
            found.append((f"{section.group(1)} = {text}", html.unescape(href)))
    top = TOPLINKS.search(page)
    if top:
        links = HREF.findall(top.group(1))
        if links:
            found.append((f"date hierarchy = {links[0][1].strip()}", html.unescape(links[0][0])))
    return found
