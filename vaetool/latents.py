"""Operations in latent space: interpolation paths, traversals, the 2-D manifold grid, per-dimension KL.

These are plain functions on tensors and a loaded model; the CLI commands call them and only render.
"""
from __future__ import annotations

import torch
from torch import Tensor

from vaetool.errors import VaetoolError

METHODS = ("slerp", "lerp")


def lerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Points (1 − t)·a + t·b for each t: ``(T, L)`` from ``a, b: (L,)`` and ``t: (T,)``."""
    t = t[:, None]
    return (1 - t) * a + t * b


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016 for generative models).

    The direction moves along the great circle from a to b at constant angular speed, and the norm
    moves linearly from ‖a‖ to ‖b‖, so the path keeps the norm a Gaussian prior makes typical
    (√L) instead of cutting through the low-density region near the origin as lerp does. Falls back
    to lerp when a and b are (anti)parallel or zero, where the great circle is undefined.
    """
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return lerp(a, b, t)
    ua, ub = a / na, b / nb
    omega = torch.arccos((ua * ub).sum().clamp(-1, 1))
    if omega < 1e-6 or torch.pi - omega < 1e-6:
        return lerp(a, b, t)
    t = t[:, None]
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / torch.sin(omega)
    return direction * ((1 - t) * na + t * nb)


def path(points: Tensor, steps: int, method: str = "slerp") -> Tensor:
    """A path through ``points`` (K ≥ 2, L) in order, ``steps`` points per segment, endpoints included.

    Consecutive segments share their joint, so K points give (K − 1)·(steps − 1) + 1 latents.
    """
    if method not in METHODS:
        raise VaetoolError(f"The interpolation method must be one of {', '.join(METHODS)}, not {method!r}.")
    if len(points) < 2:
        raise VaetoolError("Interpolation needs at least two points.")
    if steps < 2:
        raise VaetoolError(f"Interpolation needs at least 2 steps, not {steps}.")
    step = slerp if method == "slerp" else lerp
    t = torch.linspace(0, 1, steps, device=points.device, dtype=points.dtype)
    segments = [step(a, b, t if i == 0 else t[1:]) for i, (a, b) in enumerate(zip(points[:-1], points[1:]))]
    return torch.cat(segments)


def code_path(points: Tensor, steps: int) -> Tensor:
    """A path through discrete codes ``points`` (K ≥ 2, L) int64, laid out as :func:`path`'s.

    Codes have no straight line between them, so a segment from a to b swaps a's codes for b's one
    position after another: at fraction t of the way, the first round(t·L) positions hold b's codes.
    """
    if len(points) < 2:
        raise VaetoolError("Interpolation needs at least two points.")
    if steps < 2:
        raise VaetoolError(f"Interpolation needs at least 2 steps, not {steps}.")
    length = points.shape[1]
    swapped = torch.round(torch.linspace(0, length, steps, device=points.device)).long()
    positions = torch.arange(length, device=points.device)
    segments = []
    for i, (a, b) in enumerate(zip(points[:-1], points[1:])):
        taken = positions[None, :] < swapped[:, None]  # (steps, L): which positions already hold b's code
        segment = torch.where(taken, b, a)
        segments.append(segment if i == 0 else segment[1:])
    return torch.cat(segments)


def traversal(start: Tensor, dims: list[int], values: Tensor) -> Tensor:
    """Latents ``(len(dims), len(values), L)``: row i is ``start`` with dimension ``dims[i]`` set to each value.

    Only the traversed dimension changes along a row, so the row shows what that dimension alone
    encodes (Higgins et al. 2017).
    """
    latent_dim = start.shape[-1]
    bad = [d for d in dims if not 0 <= d < latent_dim]
    if bad:
        raise VaetoolError(f"Latent dimensions must lie in 0 to {latent_dim - 1}; got {bad}.")
    z = start.expand(len(dims), len(values), latent_dim).clone()
    for row, d in enumerate(dims):
        z[row, :, d] = values
    return z


def manifold(n: int, low: float = 0.05, high: float = 0.95, device=None) -> Tensor:
    """An n×n grid of 2-D latents at the prior's quantiles (Kingma & Welling 2014, fig. 4): ``(n·n, 2)``.

    Rows go from high to low z₂ so that the picture's y axis points up.
    """
    q = torch.linspace(low, high, n, device=device)
    values = torch.distributions.Normal(0.0, 1.0).icdf(q)
    z1, z2 = torch.meshgrid(values, values.flip(0), indexing="xy")
    return torch.stack([z1.reshape(-1), z2.reshape(-1)], -1)


def kl_per_dimension(model, images: Tensor, labels: Tensor | None = None, batch_size: int = 500) -> Tensor:
    """Average KL(q(z|x) ‖ N(0, I)) of each latent dimension over ``images`` (float in [0, 1]): ``(L,)``.

    Dimensions the model does not use have KL ≈ 0; the informative ones carry the most. An
    autoencoder has no KL, so for it this is the variance of each code dimension over the images; so
    too for a layer below the top of a hierarchical latent, whose prior is not N(0, I).
    """
    from vaetool.metrics import posterior_moments

    means, log_vars = posterior_moments(model, images, labels, batch_size)
    below_top = model.latent.layer < len(model.latent.layers)
    if model.autoencoder or not model.prior.analytic_kl or below_top:  # no KL per dimension: the codes' variance
        return means.var(0, unbiased=False).float()
    # KL(N(μ, σ²) ‖ N(0, 1)) = ½(μ² + σ² − 1 − log σ²), as DiagonalGaussian.kl
    return (0.5 * (means ** 2 + log_vars.exp() - 1 - log_vars)).mean(0).float()
