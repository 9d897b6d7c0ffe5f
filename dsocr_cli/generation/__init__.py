"""Generation helpers shared by the engine and the model families: the loop guard, the KV cache, the token streamer,
and what generation hands back (``outcome``: ``Generation``, ``Prefill``, the NaN/inf-logits check).

The rule: this package sits below both ``dsocr_cli.engine`` and ``dsocr_cli.models``; it imports neither
(only the standard library, torch, transformers and ``dsocr_cli.errors``), so a model family can use it
without depending on the engine.
"""
