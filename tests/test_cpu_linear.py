"""Decode-sized linear layers on the CPU as ``W @ x^T``: ``nn.Linear``'s results within float32 rounding (the
same bits at one row), only for float32 CPU inputs of 2-32 rows, and on every plain linear of a CPU model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dsocr_cli.models import cpu_linear


@pytest.mark.parametrize("shape", [(1, 96), (2, 96), (4, 96), (2, 3, 96), (32, 96), (200, 96)])
@pytest.mark.parametrize("bias", [True, False])
def test_it_gives_nn_linears_results(shape: tuple[int, ...], bias: bool) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(96, 160, bias=bias)
    inputs = torch.randn(*shape)
    expected = layer(inputs)
    cpu_linear.use_transposed_linears(layer)
    got = layer(inputs)
    assert got.shape == expected.shape and got.is_contiguous()
    if shape[0] == 1 or len(shape) == 2 and shape[0] > cpu_linear.MAX_ROWS:
        assert torch.equal(got, expected)  # F.linear itself, or the same product
    else:
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("rows", "dtype", "taken"),
    [(1, torch.float32, False), (2, torch.float32, True), (32, torch.float32, True), (33, torch.float32, False),
     (900, torch.float32, False), (4, torch.bfloat16, False)],
)  # fmt: skip
def test_only_float32_decode_sizes_take_it(rows: int, dtype: torch.dtype, taken: bool) -> None:
    weight = torch.zeros(8, 16, dtype=dtype)
    assert cpu_linear.takes_transposed(weight, torch.zeros(rows, 16, dtype=dtype)) is taken


def test_a_cpu_model_gets_it_on_its_plain_linears(tiny_runner) -> None:
    linears = [m for m in tiny_runner.loaded.model.modules() if type(m) is nn.Linear]
    assert linears and all(m.forward.__func__ is cpu_linear.linear_forward for m in linears)


needs_onednn = pytest.mark.skipif(cpu_linear.onednn_linear() is None, reason="this torch build has no oneDNN")


@needs_onednn
@pytest.mark.parametrize("shape", [(1, 96), (1, 1, 96)])
@pytest.mark.parametrize("bias", [True, False])
def test_one_row_in_inference_is_onednns_product_within_rounding(
    shape: tuple[int, ...], bias: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(96, 160, bias=bias)
    inputs = torch.randn(*shape)
    calls = []
    real = cpu_linear._ONEDNN

    def spy(*args):
        calls.append(args[0].shape)
        return real(*args)

    with torch.inference_mode():
        expected = layer(inputs)
        cpu_linear.use_transposed_linears(layer)
        monkeypatch.setattr(cpu_linear, "_ONEDNN", spy)
        got = layer(inputs)
    assert calls == [(1, 96)] and got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@needs_onednn
@pytest.mark.parametrize(
    ("rows", "dtype", "grad", "taken"),
    [(1, torch.float32, False, True), (1, torch.float32, True, False), (2, torch.float32, False, False),
     (1, torch.bfloat16, False, False)],
)  # fmt: skip
def test_only_float32_single_rows_without_autograd_take_onednn(
    rows: int, dtype: torch.dtype, grad: bool, taken: bool
) -> None:
    weight = torch.zeros(8, 16, dtype=dtype)
    with torch.set_grad_enabled(grad):
        assert cpu_linear.takes_onednn(weight, torch.zeros(rows, 16, dtype=dtype)) is taken
