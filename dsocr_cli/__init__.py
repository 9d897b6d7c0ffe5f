"""dsocr: DeepSeek-OCR as a command-line document converter."""

__version__ = "0.1.0"
