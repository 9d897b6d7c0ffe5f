"""Inputs as a user meets them: real PDFs and images built here, and the exact one-line error for bad ones."""

from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pymupdf
import pytest
from PIL import Image

from dsocr_cli.errors import InputError, UsageError
from dsocr_cli.inputs import InputSource, discover, open_document, parse_page_ranges
from dsocr_cli.results import Page

A4_AT_144_DPI = (1190, 1684)  # PyMuPDF's default page is 595x842 pt; 144 dpi is a zoom of 2
PASSWORD = "open sesame"

# ---------------------------------------------------------------- builders


def make_pdf(path: str, pages: int = 3, **save_options: Any) -> bytes:
    doc = pymupdf.open()
    for number in range(1, pages + 1):
        page = doc.new_page()
        page.insert_text((72, 72), f"Page {number}: " + "the quick brown fox " * 10, fontsize=11)
    doc.save(path, **save_options)
    doc.close()
    return Path(path).read_bytes()


def make_encrypted_pdf(path: str, pages: int = 1) -> None:
    make_pdf(path, pages, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw=PASSWORD, owner_pw="owner")


def handmade_pdf(*objects: bytes) -> bytes:
    """A PDF from raw objects (object 1 is the catalog) with a correct xref: for files PyMuPDF won't write."""
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height``, without the pixels (nothing large is allocated)."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + png_chunk(b"IDAT", zlib.compress(b"")) + png_chunk(b"IEND", b"")


def split_colors(width: int, height: int) -> Image.Image:
    """Left half red, right half blue: shows where the image's left edge ends up after rotation."""
    image = Image.new("RGB", (width, height), "blue")
    image.paste((255, 0, 0), (0, 0, width // 2, height))
    return image


def touch(*names: str) -> None:
    for name in names:
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_bytes(b"x")


def pages_of(name: str, **options: Any) -> list[Page]:
    """Every page of the input ``name``, as the convert loop gets them."""
    [source] = discover([name])
    return pages_of_source(source, **options)


def pages_of_source(source: InputSource, **options: Any) -> list[Page]:
    with open_document(source, **options) as document:
        return list(document.pages())


def error_opening(name: str, **options: Any) -> str:
    """The one-line error a user sees for ``name``, whether raised when opening or while rendering."""
    with pytest.raises(InputError) as caught:
        pages_of(name, **options)
    return str(caught.value)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in tmp_path, so inputs are named as a user types them (``report.pdf``, not a long path)."""
    monkeypatch.chdir(tmp_path)


# ---------------------------------------------------------------- discovery


def test_files_are_kept_in_command_line_order_with_their_names_and_stems() -> None:
    touch("b.pdf", "a.png")
    sources = discover(["b.pdf", "a.png"])
    assert [(s.name, s.stem) for s in sources] == [("b.pdf", "b"), ("a.png", "a")]


def test_directory_is_walked_recursively_in_sorted_order_skipping_hidden_and_unsupported_files() -> None:
    touch("scans/b.png", "scans/a.pdf", "scans/sub/c.JPG", "scans/notes.txt")
    touch("scans/.hidden.png", "scans/.git/d.png")
    assert [s.name for s in discover(["scans"])] == ["scans/a.pdf", "scans/b.png", "scans/sub/c.JPG"]


def test_glob_selects_files_inside_directories_by_name_but_never_drops_named_files() -> None:
    touch("scans/p1.png", "scans/p2.pdf", "scans/deep/p3.png", "cover.pdf")
    sources = discover(["cover.pdf", "scans"], glob="*.png")
    assert [s.name for s in sources] == ["cover.pdf", "scans/deep/p3.png", "scans/p1.png"]


def test_directory_with_nothing_to_convert_is_that_inputs_error() -> None:
    touch("empty/readme.txt")
    [source] = discover(["empty"])
    with pytest.raises(InputError) as caught:
        open_document(source)
    assert str(caught.value) == (
        "empty: no supported files (.bmp, .gif, .jpeg, .jpg, .pdf, .png, .tif, .tiff, .webp)"
    )
    [source] = discover(["empty"], glob="*.png")
    assert str(source.error) == "empty: no files match '*.png'"


def test_missing_file_fails_alone_and_the_other_inputs_still_convert() -> None:
    split_colors(8, 8).save("ok.png")
    missing, ok = discover(["missing.pdf", "ok.png"])
    with pytest.raises(InputError) as caught:
        open_document(missing)
    assert str(caught.value) == "missing.pdf: no such file or directory"
    with open_document(ok) as document:
        assert len(list(document.pages())) == 1


def test_same_file_reached_twice_is_converted_once() -> None:
    touch("scans/a.png")
    assert [s.name for s in discover(["scans/a.png", "scans", "./scans/a.png"])] == ["scans/a.png"]


def test_pdf_from_stdin_is_named_dash_and_outputs_as_stdin() -> None:
    pdf = make_pdf("in.pdf", pages=2)
    [source] = discover(["-"], stdin=io.BytesIO(pdf))
    assert (source.name, source.stem) == ("-", "stdin")
    with open_document(source) as document:
        pages = list(document.pages())
    assert [(p.source, p.number) for p in pages] == [("-", 1), ("-", 2)]


def test_image_from_stdin_converts() -> None:
    buffer = io.BytesIO()
    split_colors(40, 20).save(buffer, "JPEG")
    [source] = discover(["-"], stdin=io.BytesIO(buffer.getvalue()))
    with open_document(source) as document:
        [page] = list(document.pages())
    assert (document.kind, page.source, page.image.size) == ("image", "-", (40, 20))


def test_stdin_from_a_terminal_is_refused_instead_of_waiting_forever() -> None:
    class Terminal(io.BytesIO):
        def isatty(self) -> bool:
            return True

    with pytest.raises(UsageError) as caught:
        discover(["-"], stdin=Terminal())
    assert str(caught.value) == "-: stdin is a terminal; pipe a file into it (dsocr convert - < scan.pdf)"


def test_named_pipe_is_read_once_like_stdin() -> None:
    os.mkfifo("scan.pipe")
    buffer = io.BytesIO()
    split_colors(40, 20).save(buffer, "PNG")
    writer = threading.Thread(target=Path("scan.pipe").write_bytes, args=(buffer.getvalue(),), daemon=True)
    writer.start()
    [source] = discover(["scan.pipe"])
    writer.join(timeout=5)
    assert [p.image.size for p in pages_of_source(source)] == [(40, 20)]


def test_stdin_named_twice_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        discover(["-", "-"], stdin=io.BytesIO(b"%PDF-1.4"))
    assert str(caught.value) == "-: stdin can be given only once"


# ---------------------------------------------------------------- file type


def test_text_file_with_pdf_extension_is_rejected_as_plain_text() -> None:
    Path("notes.pdf").write_text("Meeting notes\nnot really a PDF\n")
    assert error_opening("notes.pdf") == (
        "notes.pdf: unsupported file type (looks like plain text despite the .pdf extension)"
    )


def test_html_error_page_saved_as_pdf_is_recognised() -> None:
    Path("download.pdf").write_text("<!DOCTYPE html><html><body>403 Forbidden</body></html>")
    assert error_opening("download.pdf") == (
        "download.pdf: unsupported file type (looks like an HTML page despite the .pdf extension)"
    )


def test_word_document_is_recognised_as_zip_or_office() -> None:
    Path("letter.docx").write_bytes(b"PK\x03\x04" + b"\x00" * 60)
    assert error_opening("letter.docx") == (
        "letter.docx: unsupported file type"
        " (looks like a ZIP archive or Office document (docx/xlsx/pptx/odt))"
    )


def test_empty_file_is_rejected_with_its_size() -> None:
    Path("empty.png").write_bytes(b"")
    assert error_opening("empty.png") == "empty.png: empty file (0 bytes)"


def test_content_not_extension_decides_the_type() -> None:
    split_colors(40, 20).save("scan.pdf", format="PNG")
    [source] = discover(["scan.pdf"])
    with open_document(source) as document:
        assert document.kind == "image"
        assert [p.image.size for p in document.pages()] == [(40, 20)]


# ---------------------------------------------------------------- PDF


def test_pdf_pages_render_as_rgb_at_144_dpi_with_their_text() -> None:
    make_pdf("report.pdf", pages=3)
    [source] = discover(["report.pdf"])
    with open_document(source) as document:
        assert (document.kind, document.stem, document.page_numbers) == ("pdf", "report", [1, 2, 3])
        pages = list(document.pages())
    assert [(p.source, p.number, p.image.mode, p.image.size) for p in pages] == [
        ("report.pdf", n, "RGB", A4_AT_144_DPI) for n in (1, 2, 3)
    ]
    assert np.asarray(pages[0].image).min() < 64  # the text is drawn, not a blank page


def test_dpi_sets_the_rendered_size() -> None:
    make_pdf("report.pdf", pages=1)
    [page] = pages_of("report.pdf", dpi=72)
    assert page.image.size == (595, 842)


def test_pages_render_lazily_so_a_bad_page_fails_only_when_reached() -> None:
    Path("loop.pdf").write_bytes(
        handmade_pdf(
            b"<</Type/Catalog/Pages 2 0 R>>",
            b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
            b"<</Type/Pages/Parent 2 0 R/Kids[2 0 R]/Count 1>>",  # the page tree points back at itself
        )
    )
    [source] = discover(["loop.pdf"])
    with open_document(source) as document:
        pages = document.pages()
        with pytest.raises(InputError) as caught:
            next(pages)
    assert str(caught.value) == "loop.pdf: page 1 cannot be rendered (cycle in page tree)"


def test_page_selection_renders_only_the_chosen_pages() -> None:
    make_pdf("report.pdf", pages=5)
    assert [p.number for p in pages_of("report.pdf", pages=parse_page_ranges("4-,2"))] == [2, 4, 5]


def test_encrypted_pdf_without_password_names_file_and_asks_for_password() -> None:
    make_encrypted_pdf("secret.pdf")
    assert error_opening("secret.pdf") == "secret.pdf: encrypted PDF, needs --password"


def test_encrypted_pdf_with_wrong_password_says_the_password_is_wrong() -> None:
    make_encrypted_pdf("secret.pdf")
    assert error_opening("secret.pdf", password="guess") == "secret.pdf: encrypted PDF, wrong password"


def test_encrypted_pdf_with_right_password_converts() -> None:
    make_encrypted_pdf("secret.pdf", pages=2)
    assert [p.number for p in pages_of("secret.pdf", password=PASSWORD)] == [1, 2]


def test_password_given_for_an_unencrypted_pdf_is_ignored() -> None:
    make_pdf("plain.pdf", pages=1)
    assert len(pages_of("plain.pdf", password="unused")) == 1


def test_pdf_with_zero_pages_is_rejected() -> None:
    Path("blank.pdf").write_bytes(
        handmade_pdf(b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[]/Count 0>>")
    )
    assert error_opening("blank.pdf") == "blank.pdf: PDF has no pages"


def test_corrupt_pdf_is_rejected_in_one_line() -> None:
    Path("broken.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8)
    assert error_opening("broken.pdf") == "broken.pdf: corrupt PDF, cannot be opened"


def test_truncated_pdf_that_mupdf_can_repair_still_converts() -> None:
    whole = make_pdf("whole.pdf", pages=3)
    Path("half.pdf").write_bytes(whole[: len(whole) // 2])
    assert [(p.number, p.image.mode) for p in pages_of("half.pdf")] == [(1, "RGB"), (2, "RGB"), (3, "RGB")]


def test_truncated_pdf_with_no_recoverable_page_is_reported_as_corrupt() -> None:
    whole = make_pdf("whole.pdf", pages=3, garbage=3, deflate=True, use_objstms=1)
    Path("half.pdf").write_bytes(whole[: len(whole) // 2])
    assert error_opening("half.pdf") == "half.pdf: corrupt PDF, no pages could be recovered"


def test_poster_sized_pdf_page_is_rendered_within_the_pixel_limit() -> None:
    poster = pymupdf.open()
    poster.new_page(width=2000, height=1000)  # 4000x2000 = 8 MP at 144 dpi
    poster.save("poster.pdf")
    [page] = pages_of("poster.pdf", max_pixels=1_000_000)
    assert page.image.size == (1414, 707)  # the largest 2:1 image within 1 MP


# ---------------------------------------------------------------- page ranges


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1-3,7,10-", [1, 2, 3, 7, 10, 11, 12]),
        ("-3", [1, 2, 3]),
        ("7, 1-2,2", [1, 2, 7]),
        ("12", [12]),
        ("12-", [12]),
    ],
)
def test_page_ranges_select_pages_in_document_order(spec: str, expected: list[int]) -> None:
    assert parse_page_ranges(spec).resolve(12, "doc.pdf") == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "--pages: invalid page range '' (expected e.g. 1-3,7,10-)"),
        ("1,,3", "--pages: invalid page range '' (expected e.g. 1-3,7,10-)"),
        ("-", "--pages: invalid page range '-' (expected e.g. 1-3,7,10-)"),
        ("a-b", "--pages: invalid page range 'a-b' (expected e.g. 1-3,7,10-)"),
        ("1-2-3", "--pages: invalid page range '1-2-3' (expected e.g. 1-3,7,10-)"),
        ("0-2", "--pages: invalid page range '0-2' (pages are numbered from 1)"),
        ("5-2", "--pages: invalid page range '5-2' (5 comes after 2)"),
    ],
)
def test_bad_page_range_syntax_is_a_usage_error(spec: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_page_ranges(spec)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("1-3,12-14", "doc.pdf: page range 12-14 out of bounds (document has 10 pages)"),
        ("8-11", "doc.pdf: page range 8-11 out of bounds (document has 10 pages)"),
        ("11", "doc.pdf: page 11 out of bounds (document has 10 pages)"),
        ("11-", "doc.pdf: page range 11- out of bounds (document has 10 pages)"),
    ],
)
def test_pages_beyond_the_document_are_an_error_for_that_document(spec: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_page_ranges(spec).resolve(10, "doc.pdf")
    assert str(caught.value) == message


def test_page_beyond_the_pdf_is_reported_when_opening() -> None:
    make_pdf("report.pdf", pages=2)
    [source] = discover(["report.pdf"])
    with pytest.raises(InputError) as caught:
        open_document(source, pages=parse_page_ranges("3"))
    assert str(caught.value) == "report.pdf: page 3 out of bounds (document has 2 pages)"


def test_second_page_of_a_single_image_is_out_of_bounds() -> None:
    split_colors(8, 8).save("scan.png")
    [source] = discover(["scan.png"])
    with pytest.raises(InputError) as caught:
        open_document(source, pages=parse_page_ranges("2"))
    assert str(caught.value) == "scan.png: page 2 out of bounds (document has 1 page)"


# ---------------------------------------------------------------- images


@pytest.mark.parametrize(
    ("name", "options"), [("scan.png", {}), ("scan.bmp", {}), ("scan.webp", {"lossless": True})]
)
def test_lossless_images_convert_to_the_same_rgb_pixels(name: str, options: dict[str, Any]) -> None:
    original = split_colors(40, 20)
    original.save(name, **options)
    [page] = pages_of(name)
    assert (page.source, page.number, page.image.mode) == (name, 1, "RGB")
    assert np.array_equal(np.asarray(page.image), np.asarray(original))


def test_jpeg_with_exif_orientation_is_turned_upright() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    split_colors(40, 20).save("photo.jpg", exif=exif, quality=95)
    [page] = pages_of("photo.jpg")
    assert page.image.size == (20, 40)
    top, bottom = page.image.getpixel((10, 5)), page.image.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # the stored left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_multi_page_tiff_gives_one_page_per_frame() -> None:
    frames = [Image.new("RGB", (30, 20), "red"), Image.new("L", (20, 30), 0), Image.new("1", (10, 10), 1)]
    frames[0].save("fax.tiff", save_all=True, append_images=frames[1:])
    assert [(p.number, p.image.size, p.image.getpixel((0, 0))) for p in pages_of("fax.tiff")] == [
        (1, (30, 20), (255, 0, 0)),
        (2, (20, 30), (0, 0, 0)),
        (3, (10, 10), (255, 255, 255)),
    ]


def test_animated_gif_contributes_its_first_frame_only() -> None:
    frames = [Image.new("RGB", (16, 16), color) for color in ("red", "lime", "blue")]
    frames[0].save("anim.gif", save_all=True, append_images=frames[1:], duration=100)
    [page] = pages_of("anim.gif")
    assert page.image.getpixel((8, 8)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("name", "image", "options"),
    [
        ("alpha.png", Image.new("RGBA", (8, 8), (255, 0, 0, 0)), {}),
        ("gray-alpha.png", Image.new("LA", (8, 8), (0, 0)), {}),
        ("palette.gif", Image.new("P", (8, 8), 0), {"transparency": 0}),
    ],
)
def test_transparent_areas_become_white_as_viewers_show_them(
    name: str, image: Image.Image, options: dict[str, Any]
) -> None:
    image.save(name, **options)
    [page] = pages_of(name)
    assert (page.image.mode, page.image.getpixel((4, 4))) == ("RGB", (255, 255, 255))


def test_sixteen_bit_grayscale_keeps_its_tones() -> None:
    Image.fromarray(np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))).save("scan16.png")
    [page] = pages_of("scan16.png")
    row = np.asarray(page.image)[0, :, 0]
    assert (row[0], row[32], row[-1]) == (0, 130, 255)


def test_one_pixel_image_is_too_small() -> None:
    Image.new("RGB", (1, 1)).save("dot.png")
    assert error_opening("dot.png") == "dot.png: image too small: 1x1 pixels"


def test_huge_image_is_refused_from_its_header_when_opening() -> None:
    Path("huge.png").write_bytes(png_header_only(20000, 20000))
    [source] = discover(["huge.png"])
    with pytest.raises(InputError) as caught:
        open_document(source)
    assert str(caught.value) == "huge.png: image too large: 20000x20000 pixels (limit 100 MP)"


def test_pixel_limit_can_be_lowered() -> None:
    split_colors(100, 100).save("scan.png")
    assert error_opening("scan.png", max_pixels=5000) == (
        "scan.png: image too large: 100x100 pixels (limit 0.005 MP)"
    )


def test_image_pillow_refuses_as_a_decompression_bomb_gets_the_same_error() -> None:
    canvas = (16000 - 1).to_bytes(3, "little") * 2  # VP8X stores width-1 and height-1
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + canvas
    Path("bomb.webp").write_bytes(b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x)
    assert error_opening("bomb.webp") == "bomb.webp: image too large (limit 100 MP)"


def test_truncated_image_fails_in_one_line_when_decoded() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = io.BytesIO()
    Image.fromarray(noise).save(whole, "PNG")
    Path("cut.png").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    assert error_opening("cut.png") == "cut.png: corrupt or truncated PNG image (image file is truncated)"


def test_corrupt_image_header_fails_in_one_line() -> None:
    Path("bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 4)
    assert error_opening("bad.png") == "bad.png: corrupt PNG image, cannot be opened"


def test_unreadable_file_says_permission_denied() -> None:
    split_colors(8, 8).save("locked.png")
    os.chmod("locked.png", 0)
    try:
        if os.access("locked.png", os.R_OK):
            pytest.skip("running as root: a chmod 000 file is still readable")
        assert error_opening("locked.png") == "locked.png: cannot read: Permission denied"
    finally:
        os.chmod("locked.png", 0o644)
