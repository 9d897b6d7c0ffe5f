"""The lab's results: what was measured per page and mode, and its three renderings (rich tables, JSON, CSV).

Pure apart from rich's table objects: nothing here reads or writes files (``run`` does, atomically).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from dsocr_cli import __version__
from dsocr_cli.compress.metrics import FOX_REFERENCE, Bucket, Measurement, fox_table

CSV_FIELDS = (
    "source",
    "page",
    "width",
    "height",
    "text_tokens",
    "mode",
    "vision_tokens",
    "ratio",
    "precision",
    "edit_distance",
    "finished",
    "error",
)


@dataclass
class ModeResult:
    """One page in one mode: the counts always; the decoded figures with ``--decode``."""

    vision_tokens: int
    ratio: float
    """text tokens / vision tokens, exact (not rounded)."""
    precision: float | None = None
    edit_distance: float | None = None
    output: str | None = None
    """The model's text (with ``--decode``)."""
    generated_tokens: int | None = None
    finished: bool | None = None
    """Whether the model ended the page itself (False: it hit ``--max-tokens``)."""
    error: str | None = None
    """Why the page could not be decoded in this mode."""


@dataclass
class PageReport:
    source: str
    number: int
    width: int
    height: int
    """Pixels of the page image the model is given."""
    text_tokens: int
    """The ground truth's length in the decoder's tokenizer (no special tokens)."""
    image: str | None = None
    """Where the page image was written (``-o``), else None."""
    modes: dict[str, ModeResult] = field(default_factory=dict)


@dataclass
class LabReport:
    family: str
    """The model family's description (its modes and token rules were used)."""
    model: str
    modes: list[str]
    unsupported_modes: list[str]
    settings: dict[str, Any]
    decoded: bool
    bucket: int
    pages: list[PageReport] = field(default_factory=list)
    failed_inputs: list[str] = field(default_factory=list)
    """One-line reasons of inputs that gave no page."""

    def measurements(self) -> list[tuple[object, Measurement]]:
        """(page identity, measurement) per page and mode that has figures (failed decodes left out)."""
        items: list[tuple[object, Measurement]] = []
        for page in self.pages:
            for mode, result in page.modes.items():
                if result.error is not None:
                    continue
                measurement = Measurement(
                    page.text_tokens, mode, result.vision_tokens, result.precision, result.edit_distance
                )
                items.append(((page.source, page.number), measurement))
        return items

    def table(self) -> list[Bucket]:
        return fox_table(self.measurements(), self.bucket, self.modes)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "dsocr": __version__,
            "family": self.family,
            "model": self.model,
            "modes": self.modes,
            "unsupported_modes": self.unsupported_modes,
            "settings": self.settings,
            "decoded": self.decoded,
            "pages": [
                {
                    "source": page.source,
                    "page": page.number,
                    "width": page.width,
                    "height": page.height,
                    "text_tokens": page.text_tokens,
                    "image": page.image,
                    "modes": {
                        mode: {key: value for key, value in asdict(result).items() if self.decoded or key in COUNTS}
                        for mode, result in page.modes.items()
                    },
                }
                for page in self.pages
            ],
            "failed_inputs": self.failed_inputs,
        }
        if self.decoded:
            document["fox_table"] = [
                {
                    "text_tokens": [bucket.low, bucket.high],
                    "pages": bucket.pages,
                    "modes": {mode: asdict(cell) for mode, cell in bucket.cells.items()},
                }
                for bucket in self.table()
            ]
            document["paper_reference"] = [asdict(point) for point in FOX_REFERENCE]
        return document

    def json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"

    def csv_text(self) -> str:
        """One row per page and mode (``CSV_FIELDS``); decoded columns empty without ``--decode``."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_FIELDS)
        for page in self.pages:
            for mode, result in page.modes.items():
                writer.writerow(
                    [
                        page.source,
                        page.number,
                        page.width,
                        page.height,
                        page.text_tokens,
                        mode,
                        result.vision_tokens,
                        repr(result.ratio),
                        "" if result.precision is None else repr(result.precision),
                        "" if result.edit_distance is None else repr(result.edit_distance),
                        "" if result.finished is None else str(result.finished).lower(),
                        result.error or "",
                    ]
                )
        return buffer.getvalue()


COUNTS = frozenset({"vision_tokens", "ratio"})
"""What a page's mode entry holds in JSON without ``--decode``."""


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def cell_text(vision: float, ratio: float, precision: float | None, distance: float | None, decoded: bool) -> str:
    """``73 tok 10.5x`` and, decoded, ``P 96.5% ED 0.031``."""
    text = f"{vision:.0f} tok {ratio:.1f}x"
    if decoded:
        text += f" P {percent(precision)}" + ("" if distance is None else f" ED {distance:.3f}")
    return text


def page_table(report: LabReport) -> Any:
    """Per page: text tokens, and per mode its vision tokens and ratio (and precision / edit distance)."""
    from rich.table import Table

    table = Table(title="Optical compression per page", title_justify="left")
    table.add_column("Page", no_wrap=True)
    table.add_column("Pixels", justify="right", no_wrap=True)
    table.add_column("Text tokens", justify="right")
    for mode in report.modes:
        table.add_column(mode, justify="right", no_wrap=True)
    for page in report.pages:
        cells = []
        for mode in report.modes:
            result = page.modes.get(mode)
            if result is None:
                cells.append("-")
            elif result.error is not None:
                cells.append(f"{result.vision_tokens} tok {result.ratio:.1f}x failed")
            else:
                cells.append(
                    cell_text(
                        result.vision_tokens, result.ratio, result.precision, result.edit_distance, report.decoded
                    )
                )
        table.add_row(f"{page.source} p{page.number}", f"{page.width}x{page.height}", str(page.text_tokens), *cells)
    return table


def fox_style_table(report: LabReport) -> Any:
    """The paper's Table 2 layout: text-token buckets x modes (mean vision tokens, compression, precision, edit
    distance), pages per bucket."""
    from rich.table import Table

    table = Table(title="Fox-style table (mean per bucket)", title_justify="left")
    table.add_column("Text tokens", no_wrap=True)
    for mode in report.modes:
        table.add_column(mode, justify="right", no_wrap=True)
    table.add_column("Pages", justify="right")
    for bucket in report.table():
        cells = []
        for mode in report.modes:
            cell = bucket.cells.get(mode)
            cells.append(
                "-"
                if cell is None
                else cell_text(cell.vision_tokens, cell.ratio, cell.precision, cell.edit_distance, True)
            )
        table.add_row(f"{bucket.low}-{bucket.high}", *cells, str(bucket.pages))
    return table
