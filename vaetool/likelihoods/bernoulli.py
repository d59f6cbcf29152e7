"""Bernoulli decoder on logits: the textbook choice for MNIST-like data."""
from __future__ import annotations

import torch
from torch import Tensor

from vaetool.contracts import Likelihood
from vaetool.errors import VaetoolError
from vaetool.likelihoods import check_reduction

BINARIZATIONS = ("none", "dynamic", "static", "threshold")
_PRIME = 2 ** 31 - 1  # every hash below stays under 2**62, inside int64


class Bernoulli(Likelihood):
    """p(x|z) = Π Bernoulli(x_i; sigmoid(logit_i)).

    ``binarize`` chooses what the data looks like to this distribution; the encoder sees the same
    data as the likelihood scores (see :meth:`vaetool.model.VAE.elbo`):

    - ``none`` scores grey levels directly (the cross-entropy most tutorials use). For non-binary x
      this is not a normalised density of the data, so its nats are not comparable with papers.
    - ``dynamic`` draws a fresh binarization x ~ Bernoulli(grey) for every batch (Salakhutdinov &
      Murray 2008): the "dynamically binarized MNIST" of the literature.
    - ``static`` is one stochastic binarization fixed once (as Larochelle & Murray 2011 did for
      their binarized MNIST): each pixel is 1 with probability equal to its grey level, drawn from a
      pseudo-random number that depends only on the image, the pixel and ``binarize_seed``, so an
      image gets the same binary version in every epoch, in every command and on every machine.
    - ``threshold`` is grey > 0.5, the same in every epoch (deterministic; not the literature's
      static MNIST).

    ``reduction="mean"`` trains on the averaged reconstruction term (see
    :class:`vaetool.contracts.Likelihood`).
    """

    params_per_channel = 1
    levels = 2  # a mass on {0, 1}, also when it scores grey levels (which is why those are no likelihood)

    def __init__(self, binarize: str = "none", binarize_seed: int = 0, reduction: str = "sum"):
        super().__init__()
        if binarize not in BINARIZATIONS:
            raise VaetoolError(f"binarize must be one of {', '.join(BINARIZATIONS)}, not {binarize!r}.")
        if not isinstance(binarize_seed, int) or isinstance(binarize_seed, bool) or not 0 <= binarize_seed < _PRIME:
            raise VaetoolError(f"binarize_seed must be an integer from 0 to {_PRIME - 1}, not {binarize_seed!r}.")
        self.binarize = binarize
        self.binarize_seed = binarize_seed
        self.reduction = check_reduction(reduction)
        self.discrete = binarize != "none"

    def target(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.binarize == "dynamic":
            return draw(x, generator)
        if self.binarize == "static":
            return (fixed_uniforms(x, self.binarize_seed) < x).to(x.dtype)
        if self.binarize == "threshold":
            return (x > 0.5).to(x.dtype)
        return x

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        return log_prob(x, params)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)

    def protocol(self, dataset: str) -> tuple[str, bool]:
        # A Bernoulli over grey levels is a cross-entropy, not a density of the data; over a
        # stochastic binarization (dynamic, or fixed once) it is the binarized-MNIST tables' protocol.
        if self.binarize == "none":
            return (f"Bernoulli cross-entropy on grey levels of {dataset}: not a density of the data, "
                    "not comparable with published log-likelihoods", False)
        if self.binarize == "threshold":
            return (f"Bernoulli on {dataset} thresholded at 0.5: a deterministic binarization, "
                    "not the literature's binarized data", False)
        if dataset == "binarized-mnist":
            return "Bernoulli on the fixed binarized MNIST of Larochelle & Murray 2011 (static MNIST tables)", True
        what = ("a fresh binarization each batch in training; one seeded binarization of the test set here "
                "(dynamic-binarization tables)" if self.binarize == "dynamic" else
                f"one fixed stochastic binarization (seed {self.binarize_seed}; static-binarization tables)")
        return f"Bernoulli on binarized {dataset}, {what}", True

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return draw(torch.sigmoid(params), generator)

    def params_at(self, mean: Tensor) -> Tensor:
        # The logit of the mean image, kept within [0.001, 0.999] as the IWAE paper's code does: a pixel that
        # is always 0 in the training set does not start at an infinite logit.
        p = mean.clamp(1e-3, 1 - 1e-3)
        return torch.log(p) - torch.log1p(-p)


def log_prob(x: Tensor, logits: Tensor) -> Tensor:
    """Σ_i x_i log σ(l_i) + (1 − x_i) log(1 − σ(l_i)) per example: −BCE(l, x) summed over every pixel.

    Written out from σ(l), which the gradient x − σ(l) needs anyway (:func:`log_prob_and_mean`), with
    its own backward pass. Low-precision logits (under autocast) are scored in float32, as autocast
    scores ``binary_cross_entropy_with_logits``.
    """
    if logits.shape != x.shape:  # no broadcasting: a decoder of the wrong shape is an error, as in torch's BCE
        raise ValueError(f"the Bernoulli's logits have shape {tuple(logits.shape)} and the images {tuple(x.shape)}; "
                         "they must be the same")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return _BernoulliLogProb.apply(logits, x.to(logits.dtype))


# 112 factors of max(σ, 1 − σ) ∈ [½, 1] multiply to at least 2⁻¹¹², above float32's smallest normal number
# (2⁻¹²⁶), so their product neither underflows nor loses precision to subnormals; 784 = 7 · 112.
_FACTORS = 112


def log_prob_and_mean(x: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`log_prob` per example and σ(logits), the Bernoulli's mean, without autograd.

    x·l − softplus(l), with softplus(l) = relu(l) − log max(σ(l), 1 − σ(l)): the one transcendental
    function besides the sigmoid is a logarithm of a number in [½, 1], which float32 holds to 6e-8,
    so the log-probability is as exact as ``binary_cross_entropy_with_logits``'s, and for logits
    far into either tail too. ``exp``, ``log`` and ``log1p`` cost each 2–4 times ``sigmoid`` on
    the CPUs measured (and ``log1p`` on one of them 20 times, docs/benchmarks.md); this form has one
    ``sigmoid``, and its logarithms are taken of products of :data:`_FACTORS` of those numbers
    (Σ log m = log Π m), one logarithm per 112 pixels: the product is a pass as cheap as a sum, where
    a logarithm per pixel took three times as long. Each product carries a relative rounding error
    of about √112 · 6e-8, some 1e-6 nats in an MNIST image's log-probability of about −100.
    """
    mean = torch.sigmoid(logits)
    flat, larger = logits.flatten(1), torch.maximum(mean, 1.0 - mean).flatten(1)  # σ(|l|) = 1 / (1 + exp(−|l|))
    values = (x.flatten(1) * flat).sum(1).sub_(flat.clamp(min=0).sum(1))
    return values.add_(sum_of_logs(larger)), mean


def sum_of_logs(m: Tensor) -> Tensor:
    """Σ log m over each row of ``m`` ``(N, D)``, for values in [½, 1]: the logarithms of products of
    :data:`_FACTORS` of them, and of the shorter last product where D does not divide."""
    pixels = m.shape[1]
    whole = pixels - pixels % _FACTORS
    if not whole:  # fewer than 112 (or no pixels: a product of none is 1)
        return m.prod(1).log_()
    total = m[:, :whole].reshape(len(m), -1, _FACTORS).prod(2).log_().sum(1)
    return total.add_(m[:, whole:].prod(1).log_()) if whole < pixels else total


class _BernoulliLogProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, x: Tensor) -> Tensor:
        values, mean = log_prob_and_mean(x, logits)
        ctx.save_for_backward(logits, x, mean)
        return values

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        logits, x, mean = ctx.saved_tensors
        if torch.is_grad_enabled():  # a double backward: σ(l) as a function of the logits, which autograd knows
            mean = torch.sigmoid(logits)
        grad = grad.reshape(-1, *([1] * (logits.dim() - 1)))
        grad_logits = (x - mean).mul_(grad) if ctx.needs_input_grad[0] else None
        grad_x = logits * grad if ctx.needs_input_grad[1] else None
        return grad_logits, grad_x


def draw(p: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A 0/1 sample of each Bernoulli(p), drawn as U < p with U uniform on [0, 1).

    The same distribution as ``torch.bernoulli(p)``, a few times faster on a CPU (0.31 against 1.14 ms
    for a 128×784 batch on one core, docs/benchmarks.md): in training under ``binarize=dynamic``
    it is drawn every step.
    """
    return (torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype) < p).to(p.dtype)


def fixed_uniforms(x: Tensor, seed: int) -> Tensor:
    """One number in [0, 1) per pixel of each image in ``x`` ``(B, ...)`` (values in [0, 1], 8-bit levels),
    a function of that image's content, the pixel's position and ``seed`` only.

    The image's 8-bit levels are hashed to a key (a random linear hash drawn from ``seed``), and the
    key, the position and the seed are mixed by rounds of xor-shifts and the MINSTD multiplier mod
    2³¹ − 1. No state: batches, epochs, devices and processes all see the same numbers for an image,
    which is what makes a static binarization possible without knowing the images' indices.
    A binary image (levels 0 and 255) is its own binarization, since u < 1 and never u < 0.
    """
    levels = torch.round(x.detach().flatten(1).float() * 255).long()
    pixels = levels.shape[1]
    weights = torch.randint(1, 2 ** 20, (pixels,), generator=torch.Generator().manual_seed(seed)).to(x.device)
    key = (levels * weights).sum(1) % _PRIME  # levels·weights < 2**28 each: the sum fits easily
    position = torch.arange(pixels, device=x.device)
    h = (key[:, None] * 1_103_515_245 + position * 12_345 + seed * 2_654_435_761) % _PRIME
    for _ in range(4):
        h = h ^ (h >> 13)
        h = (h * 48_271) % _PRIME
        h = h ^ (h >> 7)
    return (h.to(torch.float64) / _PRIME).to(x.dtype).view_as(x)
