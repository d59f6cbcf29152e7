"""The Wasserstein autoencoder with an MMD penalty: Tolstikhin, Bousquet, Gelly & Schölkopf,
"Wasserstein Auto-Encoders", ICLR 2018 (WAE-MMD, Algorithm 2)."""
from __future__ import annotations

from torch import Tensor

from vaetool.errors import VaetoolError
from vaetool.objectives.elbo import non_negative
from vaetool.objectives.mmd import PriorMatching, check_kernel

ENCODERS = ("deterministic", "random")


class WAE(PriorMatching):
    """E c(x, G(z)) + ``mmd_weight`` · MMD(q(z), p(z)): no KL term, and no likelihood bound.

    Tolstikhin et al. 2018, eq. 4 and Algorithm 2. The cost c is the likelihood's −log p(x|z)
    (for a fixed-σ Gaussian, the paper's squared error up to scale). ``encoder``: ``deterministic``
    (the paper's experiments) takes z as the encoder's mean; ``random`` takes the posterior sample.
    The MMD uses the paper's inverse multiquadric kernel by default (``kernel``, ``scales``: see
    :mod:`vaetool.objectives.mmd`), over each batch against as many draws from the prior; the paper
    uses ``mmd_weight`` 10 on MNIST. The encoder's variance gets no gradient with a deterministic
    encoder, so the KL and ELBO such a model reports are not what it was trained for.
    """

    bound = "none"
    needs = ("single-code",)

    def __init__(self, mmd_weight: float = 10.0, encoder: str = "deterministic", kernel: str = "imq",
                 scales: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)):
        non_negative(mmd_weight=mmd_weight)
        check_kernel(kernel, scales)
        if encoder not in ENCODERS:
            raise VaetoolError(f"encoder must be one of {', '.join(ENCODERS)}, not {encoder!r}.")
        self.mmd_weight, self.encoder, self.kernel, self.scales = float(mmd_weight), encoder, kernel, tuple(scales)
        self.samples = 0 if encoder == "deterministic" else 1

    def loss(self, terms, epochs_done: float) -> Tensor:
        z = terms.z
        # Tolstikhin et al. 2018, Algorithm 2: (1/n) Σ c(x_i, G(z_i)) + λ · MMD_k({z_i}, {z̃_i}), z̃ ~ p(z).
        divergence = self.mmd_to_prior(z)
        return -terms.reconstruction.mean() + self.mmd_weight * divergence
