"""The optical-compression lab behind ``dsocr compress`` (docs/compression.md).

DeepSeek-OCR's claim is that text rendered as an image can be read back from far fewer vision tokens than it
has text tokens. The lab renders a user's text into pages (``render``), counts text tokens with the decoder's
tokenizer and vision tokens with the family's exact per-mode rule, optionally decodes the pages with the Free
OCR prompt and scores them (``metrics``: Fox precision, normalised edit distance, the Fox-style table), and
reports (``report``: rich tables, JSON, CSV; ``plot``: a PNG). ``run`` ties it together.

Layering: above the engine (it builds requests for a ``Backend``), beside ``dsocr_cli.convert``; it reaches
a model family only through ``dsocr_cli.models.family`` / ``dsocr_cli.models.registry``.
"""
