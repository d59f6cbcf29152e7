"""vaetool.gemm: dense layers' products through oneDNN on AMD's x86-64 CPUs, torch's (MKL's) on Intel's and
elsewhere — the same numbers either way."""
from __future__ import annotations

import platform

import pytest
import torch

from vaetool import gemm


@pytest.fixture
def backend(monkeypatch, request):
    """The product's backend for one test: by the CPU ("auto"), torch's, or oneDNN's wherever it works."""
    monkeypatch.setenv("VAETOOL_CPU_GEMM", request.param)
    gemm.onednn_available.cache_clear()
    yield request.param
    monkeypatch.undo()
    gemm.onednn_available.cache_clear()


def reference(x, weight, bias, activation):
    y = x.double() @ weight.double().t() + (0 if bias is None else bias.double())
    return {"none": y, "relu": y.relu(), "tanh": y.tanh()}[activation]


@pytest.mark.parametrize("backend", ["auto", "torch", "onednn"], indirect=True)
@pytest.mark.parametrize("activation", gemm.ACTIVATIONS)
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_linear_is_the_activation_of_x_times_w_transposed_plus_b(backend, activation, layout):
    generator = torch.Generator().manual_seed(3)
    # Large enough for oneDNN (gemm.MIN_MULTIPLY_ADDS), where the machine has it.
    x, weight, bias = torch.randn(137, 153, generator=generator), torch.randn(129, 153, generator=generator), \
        torch.randn(129, generator=generator)
    if layout == "transposed":  # what the backward pass hands it: views of (B, in) and (in, B) tensors
        x, weight = x.t().contiguous().t(), weight.t().contiguous().t()
        assert not x.is_contiguous()
    y = gemm.linear(x, weight, bias, activation)
    assert y.shape == (137, 129) and y.dtype == torch.float32
    torch.testing.assert_close(y.double(), reference(x, weight, bias, activation), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gemm.linear(x, weight).double(), reference(x, weight, None, "none"),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch"], indirect=True)
def test_turned_off_it_is_torchs_own_product_bit_for_bit(backend):
    x, weight, bias = torch.randn(8, 5), torch.randn(3, 5), torch.randn(3)
    assert not gemm.onednn_available()
    assert torch.equal(gemm.linear(x, weight, bias, "relu"), torch.addmm(bias, x, weight.t()).relu())


@pytest.mark.parametrize("backend", ["onednn"], indirect=True)
def test_onednn_is_used_on_x86_64_builds_that_have_it_and_never_for_float64(backend):
    has_op = hasattr(torch.ops.mkldnn, "_linear_pointwise") and torch.backends.mkldnn.is_available()
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    assert gemm.onednn_available() == gemm.onednn_works() == (has_op and x86)
    x, weight = torch.randn(4, 6, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64)
    assert torch.equal(gemm.linear(x, weight, None, "tanh"), torch.mm(x, weight.t()).tanh())


@pytest.mark.parametrize("backend", ["auto", "torch", "onednn"], indirect=True)
@pytest.mark.parametrize("vendor", ["GenuineIntel", "AuthenticAMD", ""])
def test_by_default_intel_cpus_keep_mkl_and_others_take_onednn(backend, vendor, monkeypatch):
    monkeypatch.setattr(gemm, "cpu_vendor", lambda: vendor)
    expected = {"torch": False, "onednn": gemm.onednn_works(),
                "auto": gemm.onednn_works() and vendor != "GenuineIntel"}[backend]
    assert gemm.onednn_available() == expected


def test_the_vendor_is_read_where_the_system_says_it(monkeypatch):
    def no_proc(*args, **kwargs):
        raise OSError("no /proc here")

    gemm.cpu_vendor.cache_clear()
    monkeypatch.setattr("builtins.open", no_proc)
    monkeypatch.setattr(platform, "processor", lambda: "Intel64 Family 6 Model 85 Stepping 7, GenuineIntel")
    assert gemm.cpu_vendor() == "GenuineIntel"
    gemm.cpu_vendor.cache_clear()
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    assert gemm.cpu_vendor() == ""
    monkeypatch.undo()
    gemm.cpu_vendor.cache_clear()
    if platform.system() == "Linux" and platform.machine().lower() in ("x86_64", "amd64"):
        with open("/proc/cpuinfo") as cpuinfo:
            assert gemm.cpu_vendor() in cpuinfo.read() and gemm.cpu_vendor() != ""


@pytest.mark.parametrize("backend", ["auto"], indirect=True)
def test_small_products_stay_with_torch_where_its_call_is_cheaper(backend):
    x, weight, bias = torch.randn(20, 200), torch.randn(200, 200), torch.randn(200)
    assert 20 * 200 * 200 < gemm.MIN_MULTIPLY_ADDS
    assert torch.equal(gemm.linear(x, weight, bias, "relu"), torch.addmm(bias, x, weight.t()).relu())


def test_the_linear_module_trains_as_nn_linear_does():
    torch.manual_seed(0)
    ours = gemm.Linear(300, 200)
    theirs = torch.nn.Linear(300, 200)
    theirs.load_state_dict(ours.state_dict())  # the same parameters, under the same names
    assert list(ours.state_dict()) == ["weight", "bias"]
    x = torch.randn(3, 40, 300)  # leading dimensions are kept, as nn.Linear keeps them
    grads = []
    for layer in (ours, theirs):
        leaf = x.clone().requires_grad_()
        y = layer(leaf)
        assert y.shape == (3, 40, 200)
        y.tanh().square().sum().backward()
        grads.append((y.detach(), leaf.grad, layer.weight.grad, layer.bias.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_the_linear_module_has_second_derivatives():
    # A gradient penalty differentiates the backward pass itself; that pass is then torch's own.
    torch.manual_seed(1)
    ours = gemm.Linear(300, 200)
    x = torch.randn(64, 300, requires_grad=True)

    def penalty(layer):
        (dx,) = torch.autograd.grad(torch.tanh(layer(x)).sum(), x, create_graph=True)
        return torch.autograd.grad(dx.square().sum(), ours.weight)[0]

    plain = lambda t: torch.nn.functional.linear(t, ours.weight, ours.bias)  # noqa: E731
    torch.testing.assert_close(penalty(ours), penalty(plain), rtol=1e-4, atol=1e-5)


def test_the_linear_module_leaves_autocast_its_low_precision_products():
    layer = gemm.Linear(300, 200)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(64, 300)).dtype == torch.bfloat16


@pytest.mark.parametrize("backend", ["tourch"], indirect=True)
def test_an_unknown_choice_is_said_and_ignored(backend, capsys):
    plain = gemm.onednn_available()
    assert "VAETOOL_CPU_GEMM=tourch is not a choice" in capsys.readouterr().err
    gemm.onednn_available.cache_clear()
    import os

    os.environ["VAETOOL_CPU_GEMM"] = "auto"  # the fixture's monkeypatch restores it
    assert gemm.onednn_available() == plain and capsys.readouterr().err == ""
