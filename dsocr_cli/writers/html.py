"""HTML: one standalone document (figures embedded), readable in any browser without scripts or MathJax."""

from __future__ import annotations

import html

from dsocr_cli.postprocess.grounding import parse_blocks
from dsocr_cli.postprocess.markdown import page_html
from dsocr_cli.results import PageResult
from dsocr_cli.writers.base import FormatDocument, StringWriter
from dsocr_cli.writers.provenance import html_meta

_STYLE = (
    "body{max-width:56em;margin:2em auto;padding:0 1em;font-family:sans-serif;line-height:1.5}"
    "section.page{border-bottom:1px solid #ccc;padding-bottom:1em}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #999;padding:.2em .5em}"
    "figure{margin:1em 0}figure img{max-width:100%}"
    ".equation{text-align:center;white-space:pre-wrap}.image_caption,.table_caption{text-align:center}"
)


class HtmlDocument(FormatDocument):
    joiner = "\n"

    def head(self) -> str:
        meta = html_meta(self.provenance) + "\n" if self.provenance else ""
        return (
            '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
            f"{meta}<title>{html.escape(self.source)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        )

    def tail(self) -> str:
        return "\n</body>\n</html>\n"

    def page(self, result: PageResult, index: int) -> str:
        return (
            f'<section class="page" id="page-{result.page.number}">\n'
            f"{page_html(parse_blocks(result.text), result.page.image)}\n</section>"
        )


class HtmlWriter(StringWriter):
    suffix = ".html"
    document_class = HtmlDocument
