"""``dsocr serve``: an OpenAI-compatible HTTP server over dsocr's own batched engine.

Layers: ``wire`` (the chat-completions format: requests checked and turned into ``PageRequest`` objects,
answers, stream chunks and errors built; no web framework) < ``app`` (the FastAPI application: routes,
authentication, limits, streaming, metrics, over one ``engine.scheduler.Scheduler`` that batches every
client's pages together) < ``run`` (uvicorn on a socket bound before the model loads, graceful shutdown on
SIGTERM/SIGINT). The package reaches a model family only through ``dsocr_cli.models.family`` (the runner
protocol) and the engine; FastAPI and uvicorn are imported only here, so ``dsocr --help`` never pays for them.
"""
