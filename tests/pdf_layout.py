"""Where things are on a PDF's pages, read back with pypdf: every run of text and every image, as boxes in
points, so tests can check the layout a reader sees (nothing overlaps, nothing is off the page, no page is
left nearly blank) and not only the words.

A text box runs from the run's baseline start to its width in its font (measured with fontTools from the
font file the PDF names), and from a little below the baseline (descenders) to the top of capitals: the
parts of glyphs that would visibly collide. Fonts are looked up in the folders given, by the name the PDF
gives them (``/ABCDEF+DejaVuSans-Bold`` is ``DejaVuSans-Bold``).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fontTools.ttLib import TTFont
from pypdf import PdfReader

DESCENT, ASCENT = 0.2, 0.74  # of the font size: below the baseline, and cap height above it


@dataclass(frozen=True)
class Box:
    page: int  # 1-based
    kind: str  # "text" or "image"
    text: str
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: Box, tolerance: float = 0.4) -> bool:
        return (
            min(self.x1, other.x1) - max(self.x0, other.x0) > tolerance
            and min(self.y1, other.y1) - max(self.y0, other.y0) > tolerance
        )

    def inside(self, width: float, height: float) -> bool:
        return self.x0 >= 0 and self.y0 >= 0 and self.x1 <= width and self.y1 <= height


@dataclass(frozen=True)
class Page:
    number: int
    width: float
    height: float
    boxes: tuple[Box, ...]

    @property
    def text(self) -> tuple[Box, ...]:
        return tuple(b for b in self.boxes if b.kind == "text")


def layout(pdf: bytes, font_dirs: list[Path]) -> list[Page]:
    """Every page's text and image boxes."""
    pages = []
    for number, page in enumerate(PdfReader(io.BytesIO(pdf)).pages, start=1):
        width, height = float(page.mediabox.width), float(page.mediabox.height)
        boxes: list[Box] = []

        def text_run(text, cm, tm, font_dict, font_size, *, _boxes=boxes, _n=number):
            run = text.strip()
            if not run or not font_dict:
                return
            scale = font_size * tm[0] * cm[0]
            x = cm[0] * tm[4] + cm[4]
            y = cm[3] * tm[5] + cm[5]
            advance = _width(str(font_dict["/BaseFont"]), run, tuple(font_dirs)) * scale
            _boxes.append(Box(_n, "text", run, x, y - DESCENT * scale, x + advance, y + ASCENT * scale))

        matrices: list[list[float]] = []

        def operator(op, args, cm, tm, *, _boxes=boxes, _n=number, _m=matrices):
            if op == b"cm":
                _m.append([float(a) for a in args])
            elif op == b"Do" and _m:
                a, _, _, d, e, f = _m[-1]
                _boxes.append(Box(_n, "image", str(args[0]), e, f, e + a, f + d))

        page.extract_text(visitor_text=text_run, visitor_operand_before=operator)
        pages.append(Page(number, width, height, tuple(boxes)))
    return pages


def overlapping(page: Page) -> list[tuple[Box, Box]]:
    """Pairs of boxes on the page that overlap (text with text, text with images)."""
    boxes = page.boxes
    pairs = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            if a.kind == "image" and b.kind == "image":
                continue
            if a.overlaps(b):
                pairs.append((a, b))
    return pairs


def used_height(page: Page, *, top_margin: float, bottom_margin: float) -> float:
    """The share (0-1) of the page's body, between its running header and footer, that content reaches down to."""
    body = [b for b in page.boxes if top_margin < page.height - b.y1 and b.y0 > bottom_margin]
    if not body:
        return 0.0
    lowest = min(b.y0 for b in body)
    return (page.height - top_margin - lowest) / (page.height - top_margin - bottom_margin)


@cache
def _font(base_font: str, font_dirs: tuple[Path, ...]) -> TTFont:
    name = re.sub(r"^/?[A-Z]{6}\+", "", base_font.lstrip("/"))
    wanted = {name, name.replace("Book", "")}
    for directory in font_dirs:
        for path in sorted(directory.glob("*.ttf")):
            font = TTFont(path, lazy=True)
            names = {str(font["name"].getDebugName(i) or "").replace(" ", "") for i in (4, 6)}
            if names & wanted:
                return font
    raise LookupError(f"no font file for {base_font} in {font_dirs}")


def _width(base_font: str, text: str, font_dirs: tuple[Path, ...]) -> float:
    """The advance width of ``text`` in the font, in ems."""
    font = _font(base_font, font_dirs)
    cmap, metrics = font.getBestCmap(), font["hmtx"].metrics
    per_em = font["head"].unitsPerEm
    return sum(metrics[cmap.get(ord(c), ".notdef")][0] for c in text) / per_em
