"""The resnet architecture: vaetool's conformance check, its shapes, its options, and a real training run."""
from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import vaetool
from vaetool.cli import app
from vaetool.errors import VaetoolError
from vaetool.testing import check_architecture
from vaetool_resnet import ResidualBlock, ResNet

TINY = {"channels": [8, 16], "blocks": 1}


def test_keeps_the_architecture_contract():
    check_architecture("resnet", options=TINY)


@pytest.mark.parametrize("input_shape, bottleneck", [((3, 32, 32), (4, 4)), ((3, 64, 64), (8, 8)),
                                                     ((1, 28, 28), (4, 4))], ids=str)
@pytest.mark.parametrize("params_per_channel", [1, 2])
def test_default_model_shapes(input_shape, bottleneck, params_per_channel):
    torch.manual_seed(0)
    net = ResNet(input_shape, 16, params_per_channel).eval()
    assert net.bottleneck == (256, *bottleneck)  # three stride-2 stages, rounding up: 28 → 14 → 7 → 4
    x = torch.rand(2, *input_shape)
    with torch.no_grad():
        mean, raw_scale = net.encode(x)
        out = net.decode(mean)
    assert mean.shape == raw_scale.shape == (2, 16)
    assert out.shape == (2, params_per_channel * input_shape[0], *input_shape[1:])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("input_shape", [(1, 27, 13), (3, 9, 17), (1, 5, 5), (1, 1, 1)], ids=str)
def test_odd_sizes_come_back_exactly(input_shape):
    net = ResNet(input_shape, 3, 2, channels=[4, 8, 8], blocks=1)
    assert net.decode(torch.randn(3, 3)).shape == (3, 2 * input_shape[0], *input_shape[1:])


@pytest.mark.parametrize("blocks", [0, 1, 3])
def test_blocks_per_stage_in_encoder_and_decoder(blocks):
    net = ResNet((1, 16, 16), 2, channels=[4, 8], blocks=blocks)
    count = lambda module: sum(isinstance(m, ResidualBlock) for m in module.modules())  # noqa: E731
    assert count(net.encoder) == count(net.decoder) == 2 * blocks


def test_residual_blocks_start_as_the_identity():
    block = ResidualBlock(8)
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(block(x), x)


def test_created_through_vaetool_records_its_options():
    model = vaetool.create("resnet", "bernoulli", input_shape=(1, 16, 16), latent_dim=2,
                           architecture_options={"channels": [4, 8]})
    assert model.config["architecture_options"] == {"channels": [4, 8], "blocks": 1}


@pytest.mark.parametrize("options", [{"channels": []}, {"channels": [8, 0]}, {"channels": "wide"},
                                     {"channels": ["a"]}, {"blocks": -1}], ids=str)
def test_impossible_options_are_clear_errors(options):
    with pytest.raises(VaetoolError, match="resnet"):
        ResNet((1, 16, 16), 2, **options)


def test_trains_one_epoch_with_vaetool_train(tmp_path):
    result = CliRunner().invoke(app, [
        "train", "--arch", "resnet", "--channels", "8,16", "--latent-dim", "4", "--data", "shapes",
        "--data-opt", "n_train=128", "--data-opt", "n_test=32", "--data-opt", "size=32",
        "--epochs", "1", "--device", "cpu", "--runs-dir", str(tmp_path), "--name", "run"])
    assert result.exit_code == 0, result.output
    model = vaetool.load(tmp_path / "run")
    assert model.config["architecture"] == "resnet"
    assert model.config["architecture_options"] == {"channels": [8, 16], "blocks": 1}
    assert model.config["packages"]["architecture"] == "vaetool-resnet"
    with torch.no_grad():
        assert model.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 1, 32, 32)
