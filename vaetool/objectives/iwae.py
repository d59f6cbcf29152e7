"""Importance-weighted bounds: IWAE (Burda, Grosse & Salakhutdinov, ICLR 2016) and the MIWAE, CIWAE
and PIWAE variants of Rainforth et al., "Tighter Variational Bounds are Not Necessarily Better", ICML 2018."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from vaetool.contracts import Objective
from vaetool.errors import VaetoolError

VARIANTS = ("iwae", "miwae", "ciwae", "piwae")


class IWAE(Objective):
    """Maximise an importance-weighted bound on log p(x), with ``k`` samples of z per image.

    ``variant``:

    - ``iwae``: log (1/k) Σ_k w_k, w = p(x, z) / q(z|x) (Burda et al. 2016, eq. 8); tighter as k grows.
    - ``miwae``: the mean of ``m`` independent k-sample IWAE bounds (Rainforth et al. 2018, §5): a
      looser bound whose encoder gradient has a better signal-to-noise ratio.
    - ``ciwae``: ``beta`` · ELBO + (1 − ``beta``) · IWAE over the same k samples (Rainforth et al., §5).
    - ``piwae``: the decoder (and prior) follow the IWAE bound over all m · k samples, the encoder the
      MIWAE bound over the same samples, m groups of k (Rainforth et al., §5): two losses, one step.
    """

    needs = ("samples",)
    bound = "iw"

    def __init__(self, k: int = 5, variant: str = "iwae", m: int = 1, beta: float = 0.5):
        if variant not in VARIANTS:
            raise VaetoolError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}.")
        for name, value in (("k", k), ("m", m)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise VaetoolError(f"{name} must be a whole number of at least 1, not {value!r}.")
        if variant in ("iwae", "ciwae") and m != 1:
            raise VaetoolError(f"m (groups of samples) applies to miwae and piwae, not {variant}; leave it at 1.")
        if not 0 <= beta <= 1:
            unused = "" if variant == "ciwae" else f"; the {variant} variant does not use it (there is no β-weighted KL)"
            raise VaetoolError(f"beta (CIWAE's weight of the ELBO) must lie in [0, 1], not {beta}{unused}.")
        self.k, self.variant, self.m, self.beta = k, variant, m, float(beta)
        self.samples = k * m
        if variant == "piwae":  # its encoder's gradient is rescaled at the Gaussian posterior's μ and log σ²
            self.needs = ("samples", "posterior")

    def loss(self, terms, epochs_done: float) -> Tensor:
        log_w = terms.log_weights  # (m·k, B)
        groups = log_w.reshape(self.m, self.k, -1)
        # Burda et al. 2016, eq. 8: L_k = E[log (1/k) Σ_i p(x, z_i) / q(z_i|x)], per group of k.
        group_bounds = torch.logsumexp(groups, 1) - math.log(self.k)  # (m, B)
        if self.variant == "ciwae":
            # Rainforth et al. 2018, §5: CIWAE_β = β · ELBO + (1 − β) · IWAE_k.
            return -(self.beta * log_w.mean(0) + (1 - self.beta) * group_bounds[0]).mean()
        if self.variant == "piwae":
            # Rainforth et al. 2018, §5: IWAE_{mk} for the generative network, MIWAE_{m,k} for the encoder.
            everything = torch.logsumexp(log_w, 0) - math.log(self.m * self.k)
            self._encoder_follows_miwae(terms, log_w, groups)
            return -everything.mean()
        # MIWAE (Rainforth et al. 2018, §5): the mean of m IWAE_k bounds; with m = 1, IWAE itself.
        return -group_bounds.mean()

    def _encoder_follows_miwae(self, terms, log_w: Tensor, groups: Tensor) -> None:
        """Rescale the gradient reaching the encoder from the IWAE weights to the MIWAE weights.

        Sample s of image b affects only log w_sb; its gradient weight is softmax over all m·k samples
        under IWAE and softmax within its group, over m, under MIWAE. Their ratio, exp(LSE_all −
        LSE_group) / m, is the same for every sample of a group, so scaling the gradient that reaches
        the encoder's outputs for each sample (the expanded μ and log σ², through which z and
        log q(z|x) depend on the encoder) turns the one backward pass into both updates.
        """
        posterior = terms.posterior
        if self.m * self.k == 1 or not posterior.mean.requires_grad:
            return
        with torch.no_grad():
            gap = torch.logsumexp(log_w, 0)[None] - torch.logsumexp(groups, 1)  # (m, B)
            ratio = (gap.exp() / self.m).repeat_interleave(self.k, 0)[..., None]  # (m·k, B, 1)
        for tensor in (posterior.mean, posterior.log_var):
            tensor.register_hook(lambda grad: grad * ratio)
