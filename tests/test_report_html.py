"""`maild report --html`: one self-contained page whose five charts render in a real headless
Chromium (Debian's; scripts/test installs it): each chart's area of a screenshot is drawn on,
and the page logs no console error, exception or failed load."""

from __future__ import annotations

import io
import re
from pathlib import Path

from PIL import Image

from maild.cli import main
from maild.reports.charts import CHARTS
from tests.browser import open_page
from tests.kit import write_config
from tests.test_report import SLA_YAML, build_desk


def _inked(image: Image.Image, box: dict[str, float]) -> tuple[float, int]:
    """The share of pixels in `box` that are not white, and how many colours it holds."""
    crop = image.convert("RGB").crop((int(box["x"]), int(box["y"]),
                                      int(box["x"] + box["width"]),
                                      int(box["y"] + box["height"])))
    total = crop.width * crop.height
    colours = crop.getcolors(total) or []
    white = sum(n for n, colour in colours if colour == (255, 255, 255))
    return (total - white) / total, len(colours)


def test_the_page_renders_every_chart_in_chromium(tmp_path: Path, sqlite_url: str) -> None:
    (tmp_path / "sla.yaml").write_text(SLA_YAML, encoding="utf-8")
    config = write_config(tmp_path, db_url=sqlite_url, sla="sla.yaml", timezone="Europe/Berlin")
    build_desk(sqlite_url)
    page_file = tmp_path / "report.html"
    assert main(["-c", str(config), "report", "--from", "2026-11-23", "--to", "2026-11-29",
                 "--html", str(page_file)]) == 0
    html = page_file.read_text(encoding="utf-8")
    # self-contained: nothing referenced by URL, no script at all
    assert not re.search(r'(src|href)="(?!#)', html) and "<script" not in html
    assert "url(http" not in html and "@import" not in html

    names = [name for name, _, _ in CHARTS]
    page = open_page(page_file, {n: f"#chart-{n} svg" for n in names})
    assert page.problems == []
    image = Image.open(io.BytesIO(page.screenshot))
    for name in names:
        box = page.boxes[name]
        assert box is not None and box["width"] > 300 and box["height"] > 150, name
        share, colours = _inked(image, box)
        assert share > 0.02 and colours > 5, (name, share, colours)


def test_a_blank_area_is_seen_as_blank() -> None:
    """The check above can fail: a white area has no ink."""
    white = Image.new("RGB", (100, 100), (255, 255, 255))
    assert _inked(white, {"x": 0, "y": 0, "width": 100, "height": 100}) == (0.0, 1)


def test_the_browser_check_sees_console_errors_and_failed_fetches(tmp_path: Path) -> None:
    """The check above can fail: a page that logs an error and fetches from outside is seen."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><script>console.error("broken")</script>'
                   '<img src="http://127.0.0.1:9/x.png"></body></html>', encoding="utf-8")
    page = open_page(bad, {"img": "img"})
    assert any("broken" in p for p in page.problems)
    assert any("127.0.0.1:9" in p or "ERR_" in p for p in page.problems), page.problems
