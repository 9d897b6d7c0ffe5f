"""Local conversion against ``convert --server`` with one and two local ``dsocr serve`` processes, in one run.

    python benchmarks/scale_out.py [--pages N] [--tokens T] [--mode M] --json OUT.json

The model is the tests' tiny random-weight checkpoint in the official v1 layout (``dsocr_cli.testing``),
which does not emit EOS, so every page runs to ``--max-tokens`` T and all sides generate the same tokens
(the outputs are compared). The same N synthetic pages (one PDF)
are converted three ways, each as ``dsocr`` processes started from here:

- local: ``dsocr convert pages.pdf --model CKPT`` (the batched engine in-process);
- one server: ``dsocr serve`` on a free port, then ``dsocr convert pages.pdf --server URL``;
- two servers: two ``dsocr serve`` processes, then ``convert --server URL1 --server URL2``.

Times are wall-clock for the ``convert`` command only (servers are started and warmed up first, and their
model loading is reported apart); the ratios are against the local run of the same invocation. On a CPU
machine the servers share the cores with each other and with the client, so the figures measure the cost of
the HTTP path and the scheduling, not a speed-up: on one GPU per server the second server is a second GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pymupdf

DSOCR = Path(sys.executable).with_name("dsocr")
READY = re.compile(r"serving .* on (http://\S+)")


def make_pdf(path: Path, pages: int) -> Path:
    from dsocr_cli.testing.images import make_page_image

    doc = pymupdf.open()
    for number in range(pages):
        image = make_page_image(1190, 1684, seed=number)
        png = path.with_suffix(f".{number}.png")
        image.save(png)
        page = doc.new_page(width=595, height=842)
        page.insert_image(page.rect, filename=str(png))
        png.unlink()
    doc.save(path)
    return path


def make_checkpoint(directory: Path) -> Path:
    from dsocr_cli.testing.checkpoint import write_checkpoint

    return write_checkpoint(directory / "model", seed=0)


def start_server(model: Path, env: dict[str, str], extra: list[str]) -> tuple[subprocess.Popen[str], str, float]:
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(DSOCR), "serve", "--model", str(model), "--port", "0", "--device", "cpu", *extra],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        found = READY.search(line)
        if found:
            return process, found.group(1), time.perf_counter() - started
    raise RuntimeError(f"dsocr serve did not start (exit {process.wait()})")


def convert(args: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([str(DSOCR), "convert", *args], env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 2):  # 2: pages truncated at --max-tokens, which every page here is
        raise RuntimeError(f"dsocr convert failed ({done.returncode}): {done.stderr.strip()}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--mode", default="tiny")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSOCR_")}
    env.update({"HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "DSOCR_DTYPE": "float32"})
    with tempfile.TemporaryDirectory(prefix="dsocr-scale-") as tmp:
        work = Path(tmp)
        env["XDG_CONFIG_HOME"] = str(work / "config")
        model = make_checkpoint(work)
        make_pdf(work / "pages.pdf", args.pages)
        common = ["pages.pdf", "--mode", args.mode, "--max-tokens", str(args.tokens), "--no-provenance", "-q"]
        results: dict[str, float] = {}
        outputs: dict[str, str] = {}

        def run(name: str, *extra: str) -> None:
            out = work / f"out-{name}"
            results[name] = convert([*common, "-o", str(out), *extra], env, work)
            outputs[name] = (out / "pages.md").read_text(encoding="utf-8")

        run("local", "--model", str(model), "--device", "cpu")
        servers, load_seconds = [], []
        try:
            for _ in range(2):
                process, url, seconds = start_server(model, env, [])
                servers.append((process, url))
                load_seconds.append(seconds)
            run("one server", "--server", servers[0][1])
            run("two servers", "--server", servers[0][1], "--server", servers[1][1])
        finally:
            for process, _ in servers:
                process.terminate()
                process.wait(timeout=60)
        identical = len(set(outputs.values())) == 1
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "pages": args.pages,
        "tokens_per_page": args.tokens,
        "mode": args.mode,
        "seconds": results,
        "pages_per_second": {name: args.pages / s for name, s in results.items()},
        "ratio_to_local": {name: results["local"] / s for name, s in results.items()},
        "server_start_seconds": load_seconds,
        "outputs_identical": identical,
    }
    args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    for name, seconds in results.items():
        print(f"{name:12} {seconds:7.1f} s  {args.pages / seconds:5.2f} pages/s  {results['local'] / seconds:4.2f}x local")
    print(f"outputs identical: {identical}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
