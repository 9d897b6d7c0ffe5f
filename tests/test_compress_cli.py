"""``dsocr compress`` end to end, in-process through ``main``, on the tiny random-weight checkpoints of both
families: the counts a user reads (text tokens = the tokenizer's, vision tokens = the model's, exact ratios),
the images, the decoded table, JSON, CSV and plot, ``--from-pdf``, ``--server`` against ``dsocr serve``, and
the failures (a missing mode, no tokenizer offline, a bad input among good ones)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from dsocr_cli.compress.plot import COLOURS, HEIGHT, WIDTH
from dsocr_cli.compress.render import Layout, parse_page_size, render_text
from dsocr_cli.models.tokenizer import load_tokenizer
from tests.conftest import Family
from tests.hubserver import StandInRepo, serve, use_environment

PROSE = " ".join(f"Line {n}: the document text is rendered into a page image." for n in range(100))
"""About one and a half A4 pages at the default layout."""


def write_text(path: Path, text: str = PROSE) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def text_tokens(checkpoint: Path, text: str) -> int:
    tokenizer, _ = load_tokenizer(checkpoint)
    return len(tokenizer.encode(text, add_special_tokens=False))


def test_counts_per_page_and_mode_are_the_tokenizers_and_the_models(
    dsocr, family: Family, family_checkpoint: Path, tmp_path: Path
) -> None:
    write_text(tmp_path / "essay.txt")
    run = dsocr(
        "compress",
        "essay.txt",
        "--model",
        family_checkpoint,
        "--page-size",
        "letter",
        "--dpi",
        "100",
        "--json",
        "-",
        "-o",
        "lab",
    )
    assert run.code == 0, run.stderr
    report = json.loads(run.stdout)
    expected = render_text(PROSE, "essay.txt", Layout(page_size=parse_page_size("letter"), dpi=100)).pages
    assert len(report["pages"]) == len(expected) == 2
    assert report["modes"] == list(family.family.modes) and report["unsupported_modes"] == []
    for page, rendered in zip(report["pages"], expected, strict=True):
        assert (page["width"], page["height"]) == rendered.image.size == (850, 1100)
        assert page["text_tokens"] == text_tokens(family_checkpoint, rendered.text) > 0
        for name, mode in family.family.modes.items():
            entry = page["modes"][name]
            assert entry["vision_tokens"] == mode.image_tokens(850, 1100)
            assert entry["ratio"] == page["text_tokens"] / entry["vision_tokens"]
        image = Image.open(tmp_path / page["image"])
        assert image.size == (850, 1100) and image.tobytes() == rendered.image.tobytes()
    assert json.loads((tmp_path / "lab" / "report.json").read_text()) == report
    rows = list(csv.DictReader(io.StringIO((tmp_path / "lab" / "report.csv").read_text())))
    assert len(rows) == 2 * len(family.family.modes) and rows[0]["precision"] == ""
    assert float(rows[0]["ratio"]) == report["pages"][0]["modes"][rows[0]["mode"]]["ratio"]
    assert "Optical compression per page" in run.stderr and "Fox-style" not in run.stderr


def test_decode_on_a_random_weight_model_writes_the_fox_table_json_and_a_plot(
    dsocr, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    write_text(tmp_path / "essay.txt")
    run = dsocr(
        "compress",
        "essay.txt",
        "--model",
        tiny_checkpoint,
        "--decode",
        "--modes",
        "tiny,small",
        "--max-tokens",
        "3",
        "-o",
        "lab",
        "--json",
        "report.json",
    )
    assert run.code == 0, run.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["decoded"] and report["settings"]["prompt"] == "free"
    for page in report["pages"]:
        for mode in ("tiny", "small"):
            entry = page["modes"][mode]
            assert entry["generated_tokens"] == 3 and entry["finished"] is False and entry["error"] is None
            assert 0 <= entry["precision"] <= 1 and 0 <= entry["edit_distance"] <= 1
    table = report["fox_table"]
    assert sum(bucket["pages"] for bucket in table) == 2 and set(table[0]["modes"]) == {"tiny", "small"}
    assert len(report["paper_reference"]) == 4
    assert "Fox-style table" in run.stderr and "tiny" in run.stderr
    plot = Image.open(tmp_path / "lab" / "plot.png").convert("RGB")
    assert plot.size == (WIDTH, HEIGHT)
    counts = {colour: count for count, colour in plot.getcolors(maxcolors=WIDTH * HEIGHT)}
    assert COLOURS[0] in counts and COLOURS[1] in counts  # the tiny and small points were drawn
    assert sum(count for colour, count in counts.items() if colour != (255, 255, 255)) > WIDTH * HEIGHT // 100


def test_a_model_that_ends_at_once_scores_zero_precision_and_full_distance(
    dsocr, family: Family, family_eos_checkpoint: Path, tmp_path: Path
) -> None:
    """Known model text: the EOS checkpoint answers every page with the empty string."""
    write_text(tmp_path / "essay.txt")
    run = dsocr(
        "compress",
        "essay.txt",
        "--model",
        family_eos_checkpoint,
        "--decode",
        *("--modes", family.fast_mode),
        "--csv",
        "-",
    )
    assert run.code == 0, run.stderr
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    assert [(r["mode"], r["precision"], r["edit_distance"], r["finished"]) for r in rows] == [
        (family.fast_mode, "0.0", "1.0", "true")
    ] * 2


def test_a_mode_the_family_lacks_is_reported_and_left_out(dsocr, v2_checkpoint: Path, tmp_path: Path) -> None:
    write_text(tmp_path / "essay.txt")
    run = dsocr("compress", "essay.txt", "--model", v2_checkpoint, "--modes", "tiny,base,large", "--json", "-")
    assert run.code == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["modes"] == ["base"] and report["unsupported_modes"] == ["tiny", "large"]
    assert "DeepSeek-OCR-2" in run.stderr and "no tiny, large mode" in run.stderr
    assert set(report["pages"][0]["modes"]) == {"base"}
    only = dsocr("compress", "essay.txt", "--model", v2_checkpoint, "--modes", "tiny")
    assert only.code == 1 and only.stderr.count("\n") == 1 and "no tiny mode" in only.stderr


def test_from_pdf_pairs_each_pages_image_with_its_text_layer(dsocr, tiny_checkpoint: Path, tmp_path: Path) -> None:
    document = pymupdf.open()
    for number in (1, 2):
        page = document.new_page()
        page.insert_text((72, 72), f"Page {number}: the quick brown fox jumps over the lazy dog.", fontsize=11)
    document.new_page()  # no text: nothing to compare with
    document.save(tmp_path / "real.pdf")
    run = dsocr(
        "compress", "real.pdf", "--from-pdf", "--model", tiny_checkpoint, "--modes", "base,gundam", "--json", "-"
    )
    assert run.code == 0, run.stderr
    pages = json.loads(run.stdout)["pages"]
    assert [p["page"] for p in pages] == [1, 2]
    for page in pages:
        truth = f"Page {page['page']}: the quick brown fox jumps over the lazy dog."
        assert page["text_tokens"] == text_tokens(tiny_checkpoint, truth)
        assert (page["width"], page["height"]) == (1190, 1684)  # PyMuPDF's 595 x 842 pt page at 144 dpi
        assert page["modes"]["gundam"]["vision_tokens"] == 16 * 17 + 1 + (10 * 3) * (10 * 2 + 1)  # 2x3 tiles of 640 px


def test_by_hub_name_only_config_and_tokenizer_are_fetched_and_then_it_works_offline(
    dsocr, v2_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_text(tmp_path / "essay.txt")
    repo = StandInRepo()
    repo.add_revision(v2_checkpoint, "main")
    with serve(monkeypatch, tmp_path / "hf", {"deepseek-ai/DeepSeek-OCR-2": repo}) as server:
        online = dsocr("compress", "essay.txt", "--model", "v2", "--json", "-")
        assert online.code == 0, online.stderr
        fetched = {request.path.rsplit("/", 1)[-1] for request in server.requests if request.method == "GET"}
        assert {"config.json", "tokenizer.json"} <= fetched
        assert not [name for name in fetched if name.endswith(".safetensors")]  # never the weights
        server.requests.clear()
        offline = dsocr("compress", "essay.txt", "--model", "v2", "--offline", "--json", "-")
        assert server.requests == []
    assert offline.code == 0 and json.loads(offline.stdout) == json.loads(online.stdout)
    assert json.loads(online.stdout)["modes"] == ["base", "gundam"]  # v2's family, from its config.json


def test_without_the_tokenizer_offline_it_is_one_line_and_exit_4(
    dsocr, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_text(tmp_path / "essay.txt")
    use_environment(monkeypatch, HF_HOME=str(tmp_path / "empty-hf"), HF_HUB_OFFLINE="1")
    run = dsocr("compress", "essay.txt")
    assert run.code == 4 and run.stdout == ""
    assert run.stderr.count("\n") == 1
    assert "deepseek-ai/DeepSeek-OCR: its tokenizer is not in the model cache" in run.stderr
    assert "offline mode is on" in run.stderr and "dsocr download deepseek-ai/DeepSeek-OCR" in run.stderr


def test_a_bad_input_is_one_line_and_the_others_are_measured(dsocr, tiny_checkpoint: Path, tmp_path: Path) -> None:
    write_text(tmp_path / "good.txt")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    run = dsocr(
        "compress",
        "missing.txt",
        "binary.txt",
        "good.txt",
        "--model",
        tiny_checkpoint,
        "--modes",
        "tiny",
        "--json",
        "-",
    )
    assert run.code == 2
    assert "missing.txt: cannot read" in run.stderr and "binary.txt: not UTF-8 text" in run.stderr
    report = json.loads(run.stdout)
    assert {p["source"] for p in report["pages"]} == {"good.txt"} and len(report["failed_inputs"]) == 2
    nothing = dsocr("compress", "missing.txt", "--model", tiny_checkpoint)
    assert nothing.code == 3


def test_decode_on_a_dsocr_serve_server(
    dsocr, family: Family, family_runner, family_checkpoint: Path, tmp_path: Path
) -> None:
    from tests.test_serve import over_http, serving

    write_text(tmp_path / "essay.txt")
    settings = ("--decode", "--modes", family.fast_mode, "--max-tokens", "3", "--json", "-")
    local = dsocr("compress", "essay.txt", "--model", family_checkpoint, *settings)
    with serving(family_runner) as served, over_http(served) as url:
        remote = dsocr("compress", "essay.txt", "--server", url, "--model", family_checkpoint, *settings)
    assert (local.code, remote.code) == (0, 0), remote.stderr
    mine, theirs = json.loads(local.stdout), json.loads(remote.stdout)
    assert theirs["family"] == family.family.description
    for page, other in zip(mine["pages"], theirs["pages"], strict=True):
        assert page["text_tokens"] == other["text_tokens"]
        for key in ("vision_tokens", "ratio", "output", "precision", "edit_distance"):
            assert page["modes"][family.fast_mode][key] == other["modes"][family.fast_mode][key], key
