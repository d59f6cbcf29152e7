"""DIP-VAE: Kumar, Sattigeri & Balakrishnan, "Variational Inference of Disentangled Latent Concepts
from Unlabeled Observations", ICLR 2018."""
from __future__ import annotations

from typing import Any

from torch import Tensor

from vaetool.contracts import Objective
from vaetool.errors import VaetoolError
from vaetool.objectives.elbo import non_negative

KINDS = ("i", "ii")


class DIPVAE(Objective):
    """The ELBO plus a penalty that drives the aggregate posterior's covariance towards the identity.

    λ_od Σ_{i≠j} Cov_ij² + λ_d Σ_i (Cov_ii − 1)² (Kumar et al. 2018, eq. 6 and 7), over the batch:

    - ``kind=i`` (DIP-VAE-I): Cov is the covariance of the encoder means, Cov_p(x)[μ(x)];
    - ``kind=ii`` (DIP-VAE-II): Cov is that of z under q(z), E[Σ(x)] + Cov[μ(x)].

    ``lambda_od`` weighs the off-diagonal terms, ``lambda_d`` the diagonal ones (unset: the paper's
    choice, 10 · λ_od for DIP-VAE-I and λ_od for DIP-VAE-II).
    """

    needs = ("posterior",)

    def __init__(self, kind: str = "i", lambda_od: float = 10.0, lambda_d: float | None = None):
        if kind not in KINDS:
            raise VaetoolError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}.")
        non_negative(lambda_od=lambda_od, lambda_d=lambda_d)
        self.kind, self.lambda_od = kind, float(lambda_od)
        self.lambda_d = float(lambda_d) if lambda_d is not None else (10.0 if kind == "i" else 1.0) * self.lambda_od

    def begin(self, model, context) -> dict[str, Any]:
        return {"lambda_d": self.lambda_d}  # the value used, recorded and shown, where "unset" said nothing

    def covariance(self, posterior) -> Tensor:
        """The batch estimate of Cov[μ(x)] (DIP-VAE-I), plus E[Σ(x)] for DIP-VAE-II: ``(L, L)``."""
        mean = posterior.mean
        centred = mean - mean.mean(0, keepdim=True)
        cov = centred.T @ centred / len(mean)
        if self.kind == "ii":
            cov = cov + posterior.log_var.exp().mean(0).diag()
        return cov

    def loss(self, terms, epochs_done: float) -> Tensor:
        elbo = terms.reconstruction.mean() - terms.kl.mean(0).sum()
        cov = self.covariance(terms.posterior)
        diagonal = cov.diagonal()
        # Kumar et al. 2018, eq. 6 (I) and 7 (II): λ_od Σ_{i≠j} [Cov]_ij² + λ_d Σ_i ([Cov]_ii − 1)².
        off_diagonal = cov.pow(2).sum() - diagonal.pow(2).sum()
        return -elbo + self.lambda_od * off_diagonal + self.lambda_d * (diagonal - 1).pow(2).sum()
