"""The conv decoder's transposed convolutions on the CPU, as patches or not: the same layers as nn.ConvTranspose2d."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import vaetool
from vaetool.architectures import transposed
from vaetool.architectures.transposed import ConvTranspose


def pair(c_in: int, c_out: int, output_padding: int, patches: bool = True):
    torch.manual_seed(0)
    plain = nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, output_padding=output_padding)
    ours = ConvTranspose(c_in, c_out, 4, stride=2, padding=1, output_padding=output_padding, patches=patches)
    ours.load_state_dict(plain.state_dict())
    return plain, ours


def forward_backward(layer, x, grad):
    layer.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_()
    y = layer(x)
    y.backward(grad)
    return y.detach(), x.grad, layer.weight.grad, layer.bias.grad


@pytest.mark.parametrize("c_out", [1, 3, 8])
@pytest.mark.parametrize("size,output_padding", [(14, 0), (7, 1), (5, 0), (3, 1)])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("patches", [True, False])
def test_output_and_gradients_match_the_transposed_convolution(c_out, size, output_padding, layout, patches):
    plain, patch = pair(8, c_out, output_padding, patches)
    x = torch.randn(6, 8, size, size + 1).contiguous(memory_format=layout)
    y = plain(x)
    assert y.shape == (6, c_out, 2 * size + output_padding, 2 * size + 2 + output_padding)
    grad = torch.randn_like(y)
    *theirs, their_bias = forward_backward(plain, x, grad)
    *ours, our_bias = forward_backward(patch, x, grad)
    for a, b in zip(theirs, ours):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    # The bias's gradient is a sum over thousands of values, which oneDNN adds in another order (in a plain
    # loop, the farther from the exact sum): both against the sum in float64.
    exact = grad.double().sum((0, 2, 3)).float()
    torch.testing.assert_close(our_bias, exact, rtol=1e-5, atol=5e-5)
    torch.testing.assert_close(their_bias, exact, rtol=1e-5, atol=5e-4)


def test_its_output_is_channels_last_for_the_next_layer():
    _, patch = pair(8, 4, 1)
    y = patch(torch.randn(2, 8, 3, 3).contiguous(memory_format=torch.channels_last))
    assert y.stride(1) == 1  # channels innermost, as oneDNN wants the next layer's input
    assert y.relu().is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("patches", [True, False])
def test_its_own_form_is_what_runs_on_the_cpu_in_float32(monkeypatch, patches):
    _, patch = pair(4, 1, 0, patches)
    calls = []
    real = transposed._ConvTranspose.apply
    monkeypatch.setattr(transposed._ConvTranspose, "apply", lambda *a: calls.append(a[-1]) or real(*a))
    x = torch.randn(2, 4, 5, 5)
    patch(x)
    assert calls == [patches]
    patch.double()(x.double())  # another dtype: torch's own layer
    with torch.autocast("cpu", dtype=torch.bfloat16):
        patch.float()(x)  # autocast: torch's own, so its bf16 products are kept
    assert calls == [patches]


@pytest.mark.parametrize("c_out", [1, 3])
@pytest.mark.parametrize("patches", [True, False])
def test_a_double_backward_differentiates_through_it(c_out, patches):
    plain, patch = pair(4, c_out, 1, patches)
    x = torch.randn(3, 4, 5, 5)
    penalties = []
    for layer in (plain, patch):
        inputs = x.clone().requires_grad_()
        (grad_x,) = torch.autograd.grad(layer(inputs).square().sum(), inputs, create_graph=True)
        layer.zero_grad(set_to_none=True)
        grad_x.square().sum().backward()
        penalties.append(layer.weight.grad)
    torch.testing.assert_close(penalties[1], penalties[0], rtol=1e-4, atol=1e-4)


def test_the_conv_net_uses_it_where_it_pays_and_its_model_file_is_unchanged(tmp_path):
    grey = vaetool.create("conv", "bernoulli", input_shape=(1, 28, 28), latent_dim=4)
    wide = vaetool.create("conv", "logistic", input_shape=(3, 16, 16), latent_dim=4)
    layers = [m for m in grey.architecture.net.decoder if isinstance(m, nn.ConvTranspose2d)]
    assert all(type(m) is ConvTranspose for m in layers)
    # 128 → 64 channels from 3×3 to 7×7 (an output padding), 64 → 32 from 7×7 to 14×14, 32 → 1 to 28×28.
    assert [m.patches for m in layers] == [True, False, True]
    # 16 → 8 → 4 → 2 and back, no output padding, onto 6 channels (RGB locations and scales): oneDNN's forward.
    assert not any(m.patches for m in wide.architecture.net.decoder if isinstance(m, nn.ConvTranspose2d))
    # The same parameters under the same names: a model file saved before loads, and decodes alike.
    vaetool.save(grey, tmp_path / "m.safetensors")
    loaded = vaetool.load(tmp_path / "m.safetensors")
    z = torch.randn(5, 4)
    with torch.no_grad():
        out = loaded.decode_params(z)
        for m in loaded.architecture.net.decoder:
            if isinstance(m, ConvTranspose):
                m.__class__ = nn.ConvTranspose2d
        reference = loaded.decode_params(z)
    assert out.shape == (5, 1, 28, 28)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
