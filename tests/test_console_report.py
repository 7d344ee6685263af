"""``honeyjet report`` over a database filled by a real in-process sensor (see test_console_data)."""

from __future__ import annotations

import base64
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from honeyjet.cli import main
from honeyjet.console.report import MAX_PREVIEWS, PNG_MAGIC, PREVIEW_LIMIT, TRIM_AFTER, _preview_uri, example_jobs, md_text
from test_console_data import JS_URL, OTHER_SESSION, OTHER_SOURCE, TEMPLATE, XSS

pytest_plugins = ["test_console_data"]

ESCAPED_HTML = "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
ESCAPED_MD = '"&gt;&lt;script&gt;alert\\(1\\)&lt;/script&gt;'
PNG_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def report(console_data: dict[str, Any], tmp_path: Path, *args: str) -> str:
    out = tmp_path / "report.out"
    rc = main(["report", "--data-dir", str(console_data["data_dir"]), *args, "-o", str(out)])
    assert rc == 0
    return out.read_text(encoding="utf-8")


def section(html: str, ident: str) -> str:
    m = re.search(rf'<h2 id="{ident}">.*?(?=<h2 |</body>)', html, re.S)
    assert m, f"no section {ident}"
    return m.group(0)


def test_html_report_sections_numbers_and_escaping(console_data: dict[str, Any], tmp_path: Path) -> None:
    html = report(console_data, tmp_path, "--since", "7d")
    assert "<script" not in html.lower() and "javascript:alert(1)</a" not in html
    assert XSS not in html and ESCAPED_HTML in html  # the job name and the extracted text, escaped
    assert ESCAPED_HTML + TEMPLATE in html  # the LPD job name: escaped, and the template text never evaluated
    counts = dict((k, int(v)) for v, k in re.findall(r"<b>(\d+)</b>(sessions|sources|print jobs)", html))
    assert counts == {"sessions": 4, "sources": 2, "print jobs": 3}
    # activity by day: an inline SVG, three bars a day, today's sessions/sources/jobs in the table
    day = section(html, "by-day")
    assert "<svg" in day and day.count("<rect ") == 3 * day.count("<tr><td>20")
    assert re.search(r'<td class="n">4</td><td class="n">2</td><td class="n">3</td></tr>', day)
    assert len(re.findall(r"<tr><td>20", day)) == 8  # a week: every day drawn, the quiet ones too
    sources = section(html, "sources")
    assert re.search(r"<code>127\.0\.0\.1</code></td><td class=\"n\">3</td><td>[^<]*pjl_display_defacement", sources)
    assert re.search(rf"<code>{re.escape(OTHER_SOURCE)}</code></td><td class=\"n\">1</td><td>firmware_upload</td>", sources)
    classes = section(html, "classes")
    assert "<td>firmware_upload</td><td class=\"n\">1</td>" in classes  # the newer verdict of OTHER_SESSION won
    assert '<td class="sev-critical">critical</td><td class="n">1</td>' in classes
    assert '<td class="sev-low">low</td><td class="n">0</td>' in classes
    rules = section(html, "rules")
    assert re.search(r"<code>HJ-PJL-020</code></td><td>Panel message changed</td><td>session</td><td class=\"n\">1</td>", rules)
    assert re.search(r"<code>HJ-SRC-005</code></td><td>Escalation after reconnaissance</td><td>source</td><td class=\"n\">1</td>", rules)
    assert re.search(r"<code>HJ-JOB-001</code></td><td>[^<]+</td><td>session</td><td class=\"n\">1</td>", rules)
    verdicts = section(html, "source-verdicts")
    assert OTHER_SOURCE in verdicts and JS_URL in verdicts and console_data["pjl_report"]["campaign"] in verdicts
    jobs = section(html, "jobs")
    assert jobs.count('<div class="job">') == 2  # three jobs, two contents (the PJL job came from both sources)
    assert "evil.example" in jobs and "mallory" in jobs
    images = PNG_URI.findall(html)
    assert 1 <= len(images) <= MAX_PREVIEWS
    assert all(base64.b64decode(b).startswith(PNG_MAGIC) for b in images)
    assert 'content="default-src \'none\'; style-src \'unsafe-inline\'; img-src data:"' in html


def test_markdown_report(console_data: dict[str, Any], tmp_path: Path) -> None:
    md = report(console_data, tmp_path, "--since", "24h", "--format", "md")
    assert md.startswith("# honeyjet report: ")
    assert "**4** sessions from **2** sources, **3** print jobs" in md
    for heading in ("Activity by day", "Top sources", "Classes", "Severities", "Rules that fired",
                    "Source verdicts and campaigns", "Example jobs"):
        assert f"\n## {heading}\n" in md
    assert "<script" not in md and XSS not in md and ESCAPED_MD in md
    assert "\\{\\{7\\*7\\}\\}" in md and TEMPLATE not in md
    assert "| HJ-PJL-020 | Panel message changed | session | 1 |" in md
    assert "| critical | 1 |" in md
    assert f"| {OTHER_SOURCE} | 1 | firmware\\_upload |" in md
    # every table row has as many cells as its header (escaped pipes do not split cells)
    for block in re.findall(r"(?:^\|.*\|\n)+", md, re.M):
        widths = {len(re.split(r"(?<!\\)\|", line)) for line in block.splitlines()}
        assert len(widths) == 1, block
    assert 1 <= len(PNG_URI.findall(md)) <= MAX_PREVIEWS


def test_stdout_by_default_and_an_old_iso_date(console_data: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--data-dir", str(console_data["data_dir"]), "--since", "2000-01-01", "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "**4** sessions" in out and OTHER_SESSION not in out
    days = re.findall(r"^\| (\d{4}-\d\d-\d\d) \|", out, re.M)
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert len(days) == TRIM_AFTER and days[-1] == today  # quiet days since 2000 are left out (the last month stays)
    assert main(["report", "--data-dir", str(console_data["data_dir"]), "--since", "2999-01-01", "--format", "md"]) == 0
    assert "**0** sessions from **0** sources, **0** print jobs" in capsys.readouterr().out


@pytest.mark.parametrize("since", ["yesterday", "7x", "2026-13-45"])
def test_bad_since_is_one_line_and_exit_2(console_data: dict[str, Any], since: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    assert main(["report", "--data-dir", str(console_data["data_dir"]), "--since", since, "-o", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and "--since" in captured.err
    assert not out.exists()


def test_previews_are_checked_and_capped(tmp_path: Path) -> None:
    store = tmp_path / "artifacts"
    store.mkdir()
    png = PNG_MAGIC + b"\x00" * 64
    names = {"png": "a" * 64, "gif": "b" * 64, "big": "c" * 64, "png2": "d" * 64, "png3": "e" * 64, "png4": "f" * 64}
    (store / names["png"]).write_bytes(png)
    (store / names["gif"]).write_bytes(b"GIF89a" + b"\x00" * 64)
    (store / names["big"]).write_bytes(PNG_MAGIC + b"\x00" * PREVIEW_LIMIT)
    for k in ("png2", "png3", "png4"):
        (store / names[k]).write_bytes(png)
    assert _preview_uri(tmp_path, names["png"]) == "data:image/png;base64," + base64.b64encode(png).decode()
    assert _preview_uri(tmp_path, names["gif"]) == ""  # not a PNG
    assert _preview_uri(tmp_path, names["big"]) == ""  # over 1 MiB
    assert _preview_uri(tmp_path, "0" * 64) == ""  # missing
    rows = [{"shasum": str(i) * 64, "job": i, "previews": [names[k]], "indicators": [], "errors": []}
            for i, k in enumerate(["gif", "big", "png", "png2", "png3", "png4"])]
    jobs = example_jobs(tmp_path, rows)
    assert len(jobs) == 5
    assert [bool(j["preview"]) for j in jobs] == [False, False, True, True, True]  # at most three embedded


def test_md_text_escapes_markup_and_pipes() -> None:
    assert md_text("a|b") == "a\\|b"
    assert md_text("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert\\(1\\)&gt;"
    assert md_text("[x](javascript:alert(1))\nnext") == "\\[x\\]\\(javascript:alert\\(1\\)\\) next"
    assert md_text(None) == ""
