"""The Python API's inference methods give plain tensors outside training; training keeps its gradients."""
from __future__ import annotations

import torch

import vaetool


def tiny(tmp_path):
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 8, 8), latent_dim=2, architecture_options={"hidden": [8]})
    vaetool.save(model, tmp_path / "m.safetensors")
    return model, vaetool.load(tmp_path / "m.safetensors")


def test_a_loaded_model_gives_numpy_ready_tensors(tmp_path):
    _, model = tiny(tmp_path)
    x = torch.rand(3, 1, 8, 8)
    results = {"sample": model.sample(2, generator=torch.Generator().manual_seed(0)),
               "encode": model.encode(x).mean, "decode": model.decode(torch.zeros(1, 2)),
               "reconstruct": model.reconstruct(x)}
    for name, tensor in results.items():
        assert not tensor.requires_grad, name
        tensor.numpy()  # raises on a tensor that requires grad


def test_training_mode_and_the_bound_keep_their_gradients(tmp_path):
    fresh, loaded = tiny(tmp_path)
    x = torch.rand(3, 1, 8, 8)
    assert fresh.training and fresh.encode(x).mean.requires_grad and fresh.sample(2).requires_grad
    loaded.elbo(x).elbo.sum().backward()  # in eval mode too: the bound is differentiable
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in loaded.architecture.parameters())
    assert not loaded.encode(x).mean.requires_grad  # and the methods around it are plain again afterwards
