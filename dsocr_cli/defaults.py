"""Every user-facing default, in one place: the CLI, the library and the docs all read them from here.

This module imports nothing, so the CLI can build ``--help`` from it without loading torch or the hub client.
"""

from __future__ import annotations

DEFAULT_MODEL = "deepseek-ai/DeepSeek-OCR"
"""The hub repo ``--model`` names when it is not given."""
DPI = 144
"""PDF rendering resolution: the official DeepSeek-OCR pipeline renders PDFs at 144 dpi; the model was tuned on such pages."""
PAGE_SEPARATOR = "<!-- page {number} -->"
"""Put before each page in Markdown; ``{number}`` is the page number."""
MAX_NEW_TOKENS = 8192
"""Generated-token limit per page (the official pipeline's ``max_tokens``)."""
# The loop guard's n-gram size and window are the model family's, per input kind (images, PDF pages): see
# ``dsocr_cli.models.family.ModelFamily.guard_defaults``; ``--no-repeat-ngram`` / ``--ngram-window`` override them.
RETRY_NGRAM_SIZE = 10
RETRY_NGRAM_WINDOW = 120
"""The loop guard's second try: shorter n-grams over a longer window ban far more repetition."""
MODE = "gundam"
PROMPT = "markdown"
MAX_INPUT_BYTES = 1024**3
"""Largest stdin or special file (pipe, device) accepted: 1 GiB, spooled to a temporary file (not memory) in
``$TMPDIR``; regular files have no limit. ``--max-input-size`` / ``DSOCR_MAX_INPUT_SIZE``."""
STDIN_TIMEOUT_SECONDS = 30.0
"""How long stdin or a FIFO may stay silent before its first byte (``DSOCR_STDIN_TIMEOUT``)."""
TEXT_LAYER = "ocr"
"""``--text-layer``: every page through the model, whatever text layer a PDF page has (``dsocr_cli.text_layer``)."""
# ``dsocr compress`` (``dsocr_cli.compress``): how text is rendered into pages when the user does not say.
COMPRESS_FONT = "tiro"
"""Times (MuPDF's built-in Base-14 Times-Roman, shipped inside PyMuPDF: works offline); characters it lacks
fall back to ``cjk`` (MuPDF's built-in Droid Sans Fallback: CJK, Cyrillic, Greek)."""
COMPRESS_FONT_SIZE = 11.0
"""Points: a body-text size of articles and reports (the Fox pages are such documents)."""
COMPRESS_PAGE_SIZE = "A4"
COMPRESS_MARGIN = 72.0
"""Points (1 inch) on every side: a word processor's default page margin."""
COMPRESS_LINE_SPACING = 1.2
"""Line pitch as a multiple of the font size (single spacing in typesetting terms)."""
COMPRESS_BUCKET = 100
"""Text tokens per row of the Fox-style table (the paper's buckets: 600-700, ..., 1200-1300)."""
