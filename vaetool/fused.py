"""The textbook VAE's training step written out by hand, without autograd, for the CPU.

The model of most tutorials and papers — an MLP with ReLU or tanh layers, a diagonal Gaussian
posterior (σ² = exp of the encoder's output), the standard normal prior, a Bernoulli likelihood
summed over the pixels and the ELBO with a β — has a gradient short enough to write down: two
sweeps of matrix products through the layers and a few elementwise terms between them. On a CPU
autograd's graph, its per-op dispatch and the fresh gradient tensors of every step cost about a
sixth of that model's step (docs/benchmarks.md, "A step without autograd"); here the forward pass
keeps what the backward pass needs, the gradients are written into the parameters' ``.grad``
tensors in place, and the optimizer steps as before.

It computes what autograd computes, in the same order of random draws (the binarization, then ε),
so a run trains the same model: the weights after an epoch agree with the autograd step's to
float32 rounding (tests/test_fused.py). The trainer uses it wherever :func:`for_run` finds the
model and the run to be that case; ``--no-fused-step`` (``RunOptions(fused_step=False)``) keeps
autograd for everything.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from vaetool import gemm
from vaetool.errors import VaetoolError
from vaetool.likelihoods import bernoulli
from vaetool.model import ELBOTerms

_ACTIVATIONS = (nn.ReLU, nn.Tanh)


def why_not(model, objective, device: torch.device, precision: str, distributed: bool, compiled: bool) -> str | None:
    """Why the hand-written step does not apply to this model and run, in a few words; None when it does."""
    from vaetool.architectures.mlp import MLP
    from vaetool.latent_types.gaussian import Gaussian
    from vaetool.likelihoods.bernoulli import Bernoulli
    from vaetool.objectives.elbo import ELBO
    from vaetool.priors.standard_normal import StandardNormal

    checks = (
        (device.type == "cpu", "it is written for the CPU"),
        (precision == "fp32" and not compiled and not distributed, "it runs in fp32, uncompiled, in one process"),
        (type(model.architecture) is MLP and not model.conditional, "the architecture is not the plain mlp"),
        (type(model.latent) is Gaussian and not model.autoencoder and model.config["encoder_scale"] == "exp",
         "the latent is not a Gaussian with σ² = exp(output)"),
        (type(model.prior) is StandardNormal, "the prior is not the standard normal"),
        (type(model.likelihood) is Bernoulli and model.likelihood.reduction == "sum",
         "the likelihood is not a Bernoulli summed over the pixels"),
        (type(objective) is ELBO and objective.free_bits == 0 and objective.samples == 1,
         "the objective is not the ELBO (with β and warm-up, without free bits)"),
    )
    for holds, reason in checks:
        if not holds:
            return reason
    layers = [*model.architecture.net.encoder, *model.architecture.net.decoder]
    if not all(isinstance(m, (nn.Linear, *_ACTIVATIONS)) for m in layers):
        return "the mlp has an activation other than relu or tanh"
    covered = {id(p) for m in layers for p in m.parameters()}
    if any(p.requires_grad and id(p) not in covered for p in model.parameters()):
        return "the model has trained parameters outside the mlp"
    return None


def for_run(model, objective, device: torch.device, precision: str, distributed: bool, compiled: bool,
            asked: bool | None, optimizer: torch.optim.Optimizer | None = None) -> FusedStep | None:
    """The hand-written step when it applies and is not turned off; asked=True insists on it."""
    if asked is False:
        return None
    reason = why_not(model, objective, device, precision, distributed, compiled)
    if reason is None:
        return FusedStep(model, objective, optimizer)
    if asked:
        raise VaetoolError(f"--fused-step does not apply to this run: {reason}.")
    return None


def _layers(sequential: nn.Sequential) -> list[tuple[nn.Linear, type | None]]:
    """(linear layer, the activation after it or None), in order."""
    modules, pairs = list(sequential), []
    for i, module in enumerate(modules):
        if isinstance(module, nn.Linear):
            after = modules[i + 1] if i + 1 < len(modules) and isinstance(modules[i + 1], _ACTIVATIONS) else None
            pairs.append((module, type(after) if after is not None else None))
    return pairs


def _forward(layers, h: Tensor) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """The stack's output, and each layer's (input, output after its activation)."""
    saved = []
    for linear, activation in layers:
        given = h
        # The activation fused into the product where oneDNN computes it (vaetool.gemm).
        h = gemm.linear(given, linear.weight, linear.bias,
                        "relu" if activation is nn.ReLU else "tanh" if activation is nn.Tanh else "none")
        saved.append((given, h))
    return h, saved


def _backward(layers, saved, grad: Tensor, input_grad: bool, update: _AdamUpdate | None) -> Tensor | None:
    """Write each layer's weight and bias gradients from ``grad`` (d loss / d the stack's output, a tensor
    this may overwrite), and step the layer's parameters by ``update`` once nothing needs their old values;
    return d loss / d the stack's input when ``input_grad``."""
    for i in reversed(range(len(layers))):
        (linear, activation), (given, out) = layers[i], saved[i]
        # The activations' own backward kernels: one vectorised pass each, where a mask and
        # masked_fill_ took 30 times as long on a CPU (216 against 7 µs for 128×400, one core).
        if activation is nn.ReLU:
            grad = torch.ops.aten.threshold_backward(grad, out, 0.0)
        elif activation is nn.Tanh:
            grad = torch.ops.aten.tanh_backward(grad, out)
        linear.weight.grad = gemm.linear(grad.t(), given.t())  # gradᵀ · input, (out, in)
        torch.sum(grad, 0, out=linear.bias.grad)
        if i > 0 or input_grad:
            grad = gemm.linear(grad, linear.weight.t())  # grad · W
        if update is not None:
            update(linear)
    return grad if input_grad else None


class _AdamUpdate:
    """torch's fused Adam kernel applied to one layer at a time, as the backward pass finishes with it.

    ``optimizer.step()`` after the backward pass reads every parameter, gradient and moment once
    more, when the products of the pass have pushed them out of the caches: on the 2-core machine
    of docs/benchmarks.md it took 0.6 ms of the MLP's 3.3 ms step, three times the 0.2 ms the same
    kernel takes on data in cache. Here each layer is stepped right after its weight gradient is
    written and its weight last read, while both are still in cache. It is the same kernel
    (``torch._fused_adam_``, which ``Adam(fused=True).step()`` calls) on the same values, elementwise,
    so the parameters and moments are bit for bit those of ``optimizer.step()`` (tests/test_fused.py).

    Only for the optimizer :func:`vaetool.training.adam` makes, once its moments exist (its first
    step makes them): :meth:`ready` says whether this step can do it, else the trainer steps as before.
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        # The group is looked up at every step: load_state_dict (a resume) replaces it.
        self.optimizer = optimizer

    @staticmethod
    def applies(optimizer: torch.optim.Optimizer | None, parameters: list[Tensor]) -> bool:
        if type(optimizer) is not torch.optim.Adam or len(optimizer.param_groups) != 1:
            return False
        group = optimizer.param_groups[0]
        plain = (group.get("fused") and not group.get("amsgrad") and not group.get("maximize")
                 and not group.get("capturable") and not group.get("differentiable")
                 and not group.get("decoupled_weight_decay", False) and hasattr(torch, "_fused_adam_"))
        return bool(plain) and {id(p) for p in group["params"]} == {id(p) for p in parameters}

    def ready(self) -> bool:
        """Whether every parameter has its moments, so this step can update them (a float rate too)."""
        (group,), state = self.optimizer.param_groups, self.optimizer.state
        return isinstance(group["lr"], float) and all("exp_avg" in state.get(p, ()) for p in group["params"])

    def begin(self) -> None:
        """Count this step in every parameter's state, in one call for all of them (as ``step()`` does)."""
        (group,), state = self.optimizer.param_groups, self.optimizer.state
        torch._foreach_add_([state[p]["step"] for p in group["params"]], 1)

    def __call__(self, linear: nn.Linear) -> None:
        """Step one layer's weight and bias, once :meth:`begin` has counted the step."""
        (group,), state = self.optimizer.param_groups, self.optimizer.state
        params = [linear.weight, linear.bias]
        states = [state[p] for p in params]
        beta1, beta2 = group["betas"]
        torch._fused_adam_(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                           [s["exp_avg_sq"] for s in states], [], [s["step"] for s in states], lr=group["lr"],
                           beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                           amsgrad=False, maximize=False, grad_scale=None, found_inf=None)


class FusedStep:
    """One training step's forward and backward pass for the case :func:`why_not` accepts.

    ``step(x, epochs_done)`` returns the batch's :class:`~vaetool.model.ELBOTerms`, as ``model(x)`` would
    (without a graph: the objective's loss of them is the value to report), and leaves in every
    parameter's ``.grad`` the gradient of that loss, ``−mean log p(x|z) + β · mean KL``. Given the
    run's optimizer (the fused Adam of :func:`vaetool.training.adam`), it also takes that optimizer's
    step, layer by layer (:class:`_AdamUpdate`), and says so in :attr:`stepped`; the trainer calls
    ``optimizer.step()`` itself when it did not.
    """

    def __init__(self, model, objective, optimizer: torch.optim.Optimizer | None = None):
        self.model, self.objective = model, objective
        self.encoder = _layers(model.architecture.net.encoder)
        self.decoder = _layers(model.architecture.net.decoder)
        self.latent_dim = model.latent_dim
        self.stepped = False
        parameters = [p for linear, _ in (*self.encoder, *self.decoder) for p in (linear.weight, linear.bias)]
        for p in parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.update = _AdamUpdate(optimizer) if _AdamUpdate.applies(optimizer, parameters) else None

    @torch.no_grad()
    def __call__(self, x: Tensor, epochs_done: float) -> ELBOTerms:
        model, L = self.model, self.latent_dim
        update = self.update if self.update is not None and self.update.ready() else None
        if update is not None:
            update.begin()
        # As VAE.elbo: the likelihood's target (a binarization draws here), which the encoder sees too.
        target = model.likelihood.target(x).flatten(1)
        out, encoded = _forward(self.encoder, target)
        mean, raw = out[:, :L], out[:, L:]
        posterior = model.latent.posterior(mean, raw)  # log σ² clamped to [−30, 20], σ
        eps = torch.randn(mean.shape, dtype=mean.dtype)  # drawn here, as rsample would, for the backward pass
        z = posterior.rsample(noise=eps)
        logits, decoded = _forward(self.decoder, z)
        reconstruction, grad = bernoulli.log_prob_and_mean(target, logits)
        kl = model.prior.kl(posterior)
        std, variance = posterior.std, torch.exp(posterior.log_var)
        beta, n = self.objective.beta_at(epochs_done), len(x)

        # d loss / d logits = (σ(logits) − x) / B: the Bernoulli's gradient, averaged over the batch.
        grad = grad.sub_(target).div_(n)
        grad_z = _backward(self.decoder, decoded, grad, input_grad=True, update=update)
        grad_out = torch.empty_like(out)
        # z = μ + σ ε and KL = ½(μ² + σ² − 1 − log σ²), σ = exp(½ log σ²):
        torch.add(grad_z, mean, alpha=beta / n, out=grad_out[:, :L])
        grad_log_var = grad_z.mul_(eps).mul_(std).mul_(0.5).add_(variance.sub_(1.0), alpha=0.5 * beta / n)
        # The clamp passes no gradient where it moved the value.
        grad_out[:, L:] = grad_log_var.masked_fill_(posterior.log_var != raw, 0.0)
        _backward(self.encoder, encoded, grad_out, input_grad=False, update=update)
        self.stepped = update is not None
        return ELBOTerms(reconstruction, kl, z)
