"""How good is a trained VAE: the bound, an importance-weighted log-likelihood, latent usage, the
aggregate posterior, parameter counts, and the exact probabilistic-PCA reference line.

Every function takes a loaded :class:`vaetool.model.VAE` and images ``(N, C, H, W)`` as floats in
[0, 1] (uint8 is accepted and scaled by 1/255), plus int labels that only conditional models use.
Work is batched and runs without gradients; wherever there is randomness a ``seed`` makes it
repeatable. Log-likelihoods are in nats per image.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from vaetool.errors import VaetoolError

_LOG_2PI = math.log(2 * math.pi)
_PPCA_CHUNK = 10_000  # training images per step of the covariance sum, to bound memory
#: Images per decoder call in :func:`iw_log_likelihood` on a CPU: a conv decoder's activations for a
#: few hundred images stay in cache (5000 at once ran 2.7× slower, one thread, channels-last).
CPU_DECODE_BATCH = 500


# -- shared helpers -----------------------------------------------------------------------------

@contextmanager
def _evaluating(model):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _dtype(model) -> torch.dtype:
    return next(model.parameters()).dtype


def _wide(device: torch.device) -> torch.dtype:
    # float64 for sums and logsumexps, except on Apple's MPS, which has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def _as_float(images: Tensor, dtype: torch.dtype) -> Tensor:
    return images.to(dtype).div_(255) if images.dtype == torch.uint8 else images.to(dtype)


def mean_image(images: Tensor, chunk: int = _PPCA_CHUNK) -> Tensor:
    """The mean of images ``(N, ...)`` in float64, 8-bit levels read as [0, 1], summed ``chunk`` images at a
    time so that a large (or memory-mapped) set is never converted whole."""
    return sum(_as_float(images[i:i + chunk], torch.float64).sum(0) for i in range(0, len(images), chunk)) / len(images)


def _batches(model, images: Tensor, labels: Tensor | None, batch_size: int) -> Iterator[tuple[Tensor, Tensor | None]]:
    """(x, y) batches on the model's device and in its dtype; y only for a conditional model."""
    if images.dim() != 4 or tuple(images.shape[1:]) != model.input_shape:
        raise VaetoolError(f"This model takes images of shape {tuple(model.input_shape)}, "
                           f"not {tuple(images.shape[1:]) if images.dim() == 4 else tuple(images.shape)}.")
    if len(images) == 0:
        raise VaetoolError("There are no images to evaluate.")
    if batch_size < 1:
        raise VaetoolError(f"The batch size must be at least 1, not {batch_size}.")
    for start in range(0, len(images), batch_size):
        x = _as_float(images[start:start + batch_size].to(model.device), _dtype(model))
        y = labels[start:start + batch_size].to(model.device) if model.conditional and labels is not None else None
        yield x, y


@torch.no_grad()
def posterior_moments(model, images: Tensor, labels: Tensor | None = None,
                      batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """Mean and log-variance of q(z|x) for every image (uint8, or float in [0, 1]), batched in eval
    mode: float64 ``(N, L)`` each, on the CPU. An autoencoder's log-variance is −inf. A discrete
    latent has codes instead (see :func:`codes`), and is refused."""
    _need_gaussian(model, "posterior means and variances")
    means, log_vars, wide = [], [], _wide(model.device)
    with _evaluating(model):
        for x, y in _batches(model, images, labels, batch_size):
            posterior = model.encode(x, y)
            means.append(posterior.mean.to(wide))
            log_vars.append(posterior.log_var.to(wide))
    return torch.cat(means).cpu().double(), torch.cat(log_vars).cpu().double()


@torch.no_grad()
def codes(model, images: Tensor, labels: Tensor | None = None, batch_size: int = 500) -> Tensor:
    """A discrete latent's code of every image, int64 ``(N, latent_dim)`` on the CPU, batched in eval mode."""
    if not model.discrete:
        raise VaetoolError(f"The {model.config['latent']} latent is continuous: it has posterior means, not codes.")
    found = []
    with _evaluating(model):
        for x, y in _batches(model, images, labels, batch_size):
            found.append(model.latent.codes(model.encode(x, y)).cpu())
    return torch.cat(found)


def codebook_usage(model, images: Tensor, labels: Tensor | None = None, batch_size: int = 500) -> dict:
    """How much of a discrete latent's codebook ``images`` use: ``codes_used`` (distinct codes over every
    position), ``codebook_size``, and ``perplexity``, exp of the entropy of the codes' empirical
    distribution (van den Oord et al. 2017's usage measure): K when all K codes are used equally, 1 when one is."""
    used, perplexity = model.latent.usage(codes(model, images, labels, batch_size))
    return {"codes_used": used, "codebook_size": model.latent.codebook_size, "perplexity": perplexity}


def _need_gaussian(model, what: str) -> None:
    if not model.latent.gaussian_posterior:
        raise VaetoolError(f"{what[0].upper()}{what[1:]} need a Gaussian posterior q(z|x); the "
                           f"{model.config['latent']} latent's code is discrete.")


# -- size -----------------------------------------------------------------------------------------

def parameter_counts(model) -> dict[str, int]:
    """How many numbers the encoder, the decoder and the whole model hold: ``{encoder, decoder, total}``.

    Works for any architecture plugin without knowing its layout: on a dummy batch, the encoder's
    parameters are those that receive a gradient from ``architecture.encode``'s outputs, the
    decoder's those that receive one from ``architecture.decode``; the likelihood's own parameters
    (a learned σ) count as decoder. A parameter both use counts in both; ``total`` counts every
    distinct parameter of the model once.
    """
    params = list(model.parameters())
    device, dtype = model.device, _dtype(model)
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(2, *model.input_shape, generator=generator, device=device, dtype=dtype)
    z = torch.randn(2, model.latent.features, generator=generator, device=device, dtype=dtype)
    y = torch.arange(2, device=device) % model.num_classes if model.conditional else None
    requires = [p.requires_grad for p in params]
    try:
        for p in params:  # frozen parameters are parameters too
            p.requires_grad_(True)
        # eval(): a forward pass in training mode would update batch-norm statistics.
        with _evaluating(model), torch.enable_grad():
            encoder = _reached(model.architecture.encode(x, y), params)
            decoder = _reached(model.architecture.decode(z, y), params)
    finally:
        for p, flag in zip(params, requires):
            p.requires_grad_(flag)
    decoder |= {id(p) for p in model.likelihood.parameters()}

    def count(ids: set[int]) -> int:
        return sum(p.numel() for p in params if id(p) in ids)

    return {"encoder": count(encoder), "decoder": count(decoder), "total": sum(p.numel() for p in params)}


def _reached(outputs, params: list[Tensor]) -> set[int]:
    outputs = [outputs] if torch.is_tensor(outputs) else list(outputs)
    connected = [o.sum() for o in outputs if torch.is_tensor(o) and o.requires_grad]
    if not connected or not params:
        return set()
    grads = torch.autograd.grad(sum(connected), params, allow_unused=True)
    return {id(p) for p, g in zip(params, grads) if g is not None}


# -- the bound and the likelihood -----------------------------------------------------------------

@torch.no_grad()
def scored_data(model, images: Tensor, seed: int = 0, batch_size: int = 500) -> Tensor:
    """``images`` as the model's likelihood scores them, drawn once: float ``(N, C, H, W)`` on the CPU.

    For a random ``target`` (dynamic binarization) this is one seeded binarization of the whole set.
    Giving the result to :func:`elbo_terms` and :func:`iw_log_likelihood` makes both score exactly the
    same binary images (a binary image is its own binarization), so the gap between the bound and
    the likelihood estimate carries no binarization noise.
    """
    generator = torch.Generator(device=model.device).manual_seed(seed)
    parts = []
    for start in range(0, len(images), batch_size):
        x = _as_float(images[start:start + batch_size].to(model.device), torch.float32)
        parts.append(model.likelihood.target(x, generator).cpu())
    return torch.cat(parts)


def protocol(model) -> tuple[str, bool]:
    """What a model's log-likelihoods measure, in words, and whether they compare with published tables.

    Only a normalised likelihood of the data itself gives numbers comparable with papers: a
    Bernoulli over binarized images, a discrete likelihood over 8-bit levels, or a density over
    the data's own values. Each likelihood says which it is (:meth:`Likelihood.protocol`); one that
    does not is reported as unchecked.
    """
    dataset = model.config.get("dataset", "?")
    said = model.likelihood.protocol(dataset)
    if said is None:
        return f"{model.config.get('likelihood')} likelihood on {dataset}, not checked against a published protocol", False
    return said


@torch.no_grad()
def elbo_terms(model, images: Tensor, labels: Tensor | None = None, seed: int = 0,
               batch_size: int = 500, samples: int = 1) -> dict:
    """The test ELBO with β = 1 and its parts, means over ``images``, in nats per image.

    ELBO = E_q[log p(x|z)] − KL(q(z|x) ‖ N(0, I)) (Kingma & Welling, ICLR 2014, eq. 10), each image
    with one reparameterised sample z ~ q(z|x) and the analytic KL. Returns ``elbo``, ``rec``
    (the reconstruction term), ``kl``, ``kl_per_dim`` (a list, one value per latent dimension, or a
    single value when the prior's KL is a Monte Carlo estimate, not per dimension) and,
    for a discrete likelihood, ``bits_per_dim`` = −ELBO / (D · ln 2). With uint8 images and the same
    seed and batch size it gives exactly the numbers of :func:`vaetool.training.evaluate`.
    ``samples=0`` takes z as the posterior mean instead, for a model trained with a deterministic
    encoder (the WAE's): its reconstruction is then the one it was trained for.
    """
    device = model.device
    generator = torch.Generator(device=device).manual_seed(seed)
    rec_total = torch.zeros((), device=device, dtype=_wide(device))
    kl_total = 0.0  # as wide as the KL terms: (latent_dim,), or (1,) for a Monte Carlo KL
    with _evaluating(model):
        for x, y in _batches(model, images, labels, batch_size):
            terms = model.elbo(x, y, generator=generator, samples=samples)
            rec_total += terms.reconstruction.sum().to(rec_total.dtype)
            kl_total = kl_total + terms.kl.sum(0).to(rec_total.dtype)
    n = len(images)
    rec, kl_per_dim = rec_total.item() / n, (kl_total / n).tolist()
    kl = sum(kl_per_dim)
    result = {"elbo": rec - kl, "rec": rec, "kl": kl, "kl_per_dim": kl_per_dim}
    if model.likelihood.discrete:
        result["bits_per_dim"] = -(rec - kl) / (math.prod(model.input_shape) * math.log(2))
    return result


@torch.no_grad()
def iw_log_likelihood(model, images: Tensor, labels: Tensor | None = None, k: int = 5000, seed: int = 0,
                      batch_size: int = 100, k_batch: int = 50, decode_batch: int | None = None,
                      progress: Callable[[int, int], None] | None = None) -> Tensor:
    """The importance-weighted estimate of log p(x) for each image, float64 ``(N,)`` on the CPU, in nats.

    log p(x) ≈ log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x)  (Burda, Grosse &
    Salakhutdinov, ICLR 2016), with the model's prior p(z); for a latent of several stochastic layers, z is
    every layer and p(z), q(z|x) are products over them. It is a lower bound in expectation that
    tightens as K grows and equals log p(x) as K → ∞; K = 1 is the ELBO's expectation. For a
    likelihood with a random ``target`` (dynamic binarization) it scores one binarization per image.

    Memory is bounded by ``batch_size × k_batch`` decoded images whatever K is: images go
    ``batch_size`` at a time, and their K samples ``k_batch`` at a time into a running logsumexp.
    Every image gets its own K independent draws: one generator on the model's device, seeded with
    ``seed``, draws the batch's target, then ε of shape ``(k_batch, batch, L)`` chunk after chunk,
    and z = μ + σ ε. Same seed, sizes and device: same numbers; other sizes give another, equally
    valid draw. ``progress(done, total)`` is called after each chunk, counting (image, sample) pairs.
    ``decode_batch`` splits each chunk's decoder pass into calls of at most that many images, which
    changes no number: on a CPU a few hundred at a time stay in cache and run over twice as fast as
    5000 at once (the default there is :data:`CPU_DECODE_BATCH`; elsewhere, the whole chunk).

    An autoencoder has no posterior variance and so no density: it is refused.
    """
    if model.autoencoder:
        raise VaetoolError("An autoencoder has no posterior variance and so no density p(x); "
                           "the importance-weighted log-likelihood needs a VAE.")
    _need_gaussian(model, "the importance-weighted log-likelihood's samples")
    for name, value in (("k", k), ("k_batch", k_batch), ("decode_batch", decode_batch or 1)):
        if value < 1:
            raise VaetoolError(f"{name} must be at least 1, not {value}.")
    device = model.device
    if decode_batch is None:
        decode_batch = CPU_DECODE_BATCH if device.type == "cpu" else batch_size * k_batch
    generator = torch.Generator(device=device).manual_seed(seed)
    results, done, total = [], 0, len(images) * k
    with _evaluating(model):
        for x, y in _batches(model, images, labels, batch_size):
            target = model.likelihood.target(x, generator)
            posterior = model.encode(target, y)  # as in training: the encoder sees what is scored
            running = torch.full((len(x),), -math.inf, device=device, dtype=_wide(device))
            for start in range(0, k, k_batch):
                n_samples = min(k_batch, k - start)
                # The latent kind draws z (sample-major: z = μ + σ ε with ε (k_batch, B, L) from the generator for
                # a Gaussian, every layer for a hierarchy) and gives log p(z) and log q(z|x) at it.
                drawn = model.latent.terms(posterior, model.prior, generator, samples=n_samples)
                z = drawn.z.reshape(n_samples, len(x), -1)
                flat_y = y.repeat(n_samples) if y is not None else None
                flat_target = target.expand(n_samples, *target.shape).reshape(-1, *target.shape[1:])
                log_px = _log_px(model, flat_target, z.reshape(n_samples * len(x), -1), flat_y,
                                 decode_batch).view(n_samples, len(x))
                log_w = log_px + drawn.log_prior.view(n_samples, -1) - drawn.log_posterior.view(n_samples, -1)
                running = torch.logaddexp(running, torch.logsumexp(log_w.to(running.dtype), 0))
                done += n_samples * len(x)
                if progress is not None:
                    progress(done, total)
            results.append(running - math.log(k))
    return torch.cat(results).cpu().double()


def _log_px(model, target: Tensor, z: Tensor, y: Tensor | None, decode_batch: int) -> Tensor:
    """log p(target | z) per row, decoding at most ``decode_batch`` rows at a time."""
    parts = []
    for s in range(0, len(z), decode_batch):
        params = model.decode_params(z[s:s + decode_batch], y[s:s + decode_batch] if y is not None else None)
        parts.append(model.likelihood.log_prob(target[s:s + decode_batch], params))
    return torch.cat(parts)


# -- the latent space -------------------------------------------------------------------------------

@torch.no_grad()
def active_units(model, images: Tensor, labels: Tensor | None = None, threshold: float = 0.01,
                 batch_size: int = 500) -> tuple[int, Tensor]:
    """How many latent dimensions the model uses, and the activity of each, float64 ``(L,)``.

    Dimension u is active when A_u = Cov_x(E_q(z|x)[z_u]) > ``threshold`` (Burda, Grosse &
    Salakhutdinov, ICLR 2016, section 5.2, with 0.01): a dimension whose posterior mean does not
    move with x tells the decoder nothing. Variances are over ``images``, normalised by N.
    """
    means, _ = posterior_moments(model, images, labels, batch_size)
    activity = means.var(0, unbiased=False).cpu()
    return int((activity > threshold).sum()), activity


def active_units_per_layer(model, images: Tensor, labels: Tensor | None = None, threshold: float = 0.01,
                           batch_size: int = 500) -> list[int]:
    """:func:`active_units` at every stochastic layer, bottom first (one number for a latent of one layer);
    each layer's posterior mean with the layers it depends on at their means. The model's chosen layer is kept."""
    chosen, counts = model.latent.layer, []
    try:
        for layer in range(1, len(model.latent.layers) + 1):
            model.select_layer(layer)
            counts.append(active_units(model, images, labels, threshold, batch_size)[0])
    finally:
        model.select_layer(chosen)
    return counts


@torch.no_grad()
def aggregate_posterior_kl(model, images: Tensor, labels: Tensor | None = None, batch_size: int = 500) -> float:
    """KL between the aggregate posterior q(z) = E_x q(z|x), moment-matched, and the prior N(0, I), in nats.

    q(z) over ``images`` is replaced by the Gaussian with its mean μ̄ = E[μ(x)] and full covariance
    Σ = Cov(μ(x)) + E[diag σ²(x)]; then KL = ½ (tr Σ + μ̄ᵀμ̄ − L − log det Σ). The prior is Gaussian,
    so this is a lower bound on KL(q(z) ‖ p(z)) itself, the term of the ELBO's average KL that is not
    mutual information (Hoffman & Johnson, "ELBO surgery", NeurIPS AABI workshop 2016). It is 0 when
    the codes match the prior and large when the regularisation failed (β = 0, an autoencoder):
    then samples from N(0, I) land where the decoder never saw a code. Infinite when Σ is singular.
    """
    means, log_vars = posterior_moments(model, images, labels, batch_size)
    variances = torch.exp(log_vars)
    centre = means.mean(0)
    deviations = means - centre
    sigma = deviations.T @ deviations / len(means) + torch.diag(variances.mean(0))
    cholesky, info = torch.linalg.cholesky_ex(sigma)
    if info.item() != 0:
        return math.inf
    log_det = 2 * torch.log(torch.diagonal(cholesky)).sum()
    kl = 0.5 * (torch.trace(sigma) + centre @ centre - len(centre) - log_det)
    return kl.item()


# -- probabilistic PCA: the exact optimum of the linear-Gaussian model ------------------------------

def ppca_fit(train_images: Tensor, latent_dim: int) -> tuple[Tensor, Tensor, float]:
    """The maximum-likelihood probabilistic PCA of ``train_images``: ``(mean (D,), W (D, L), σ²)``, float64.

    x = W z + μ + ε with z ~ N(0, I_L), ε ~ N(0, σ² I_D) (Tipping & Bishop, JRSS B 1999, eqs. 7–8):
    μ is the sample mean; with the sample covariance's eigenvalues λ₁ ≥ … ≥ λ_D and eigenvectors U,
    σ² = the mean of the D − L discarded eigenvalues and W = U_L (Λ_L − σ² I)^{1/2}, whose columns
    are orthogonal. Images are flattened to D = C·H·W.
    """
    X = train_images.flatten(1)
    if X.device.type == "mps":  # no float64 there
        X = X.cpu()
    n, d = X.shape
    if not 1 <= latent_dim < d:
        raise VaetoolError(f"Probabilistic PCA needs 1 to {d - 1} components for {d} pixels, not {latent_dim}.")
    if n < 2:
        raise VaetoolError("Probabilistic PCA needs at least two training images.")
    mean = mean_image(X)
    scatter = torch.zeros(d, d, dtype=torch.float64, device=X.device)
    for i in range(0, n, _PPCA_CHUNK):
        centred = _as_float(X[i:i + _PPCA_CHUNK], torch.float64) - mean
        scatter += centred.T @ centred
    eigenvalues, eigenvectors = torch.linalg.eigh(scatter / n)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0).clamp(min=0), eigenvectors.flip(1)
    sigma2 = eigenvalues[latent_dim:].mean().item()
    if not sigma2 > 0:
        raise VaetoolError(f"The training images span at most {latent_dim} dimensions, so the pPCA noise "
                           "variance is zero and its density is degenerate; use fewer components.")
    W = eigenvectors[:, :latent_dim] * (eigenvalues[:latent_dim] - sigma2).clamp(min=0).sqrt()
    return mean, W, sigma2


def ppca_log_density(images: Tensor, mean: Tensor, W: Tensor, sigma2: float) -> Tensor:
    """log N(x; mean, W Wᵀ + σ² I) of each image (flattened), float64 ``(N,)``, in nats.

    Uses the matrix determinant lemma and the Woodbury identity with M = WᵀW + σ² I_L, so nothing
    D×D is formed or inverted: log det C = (D − L) log σ² + log det M and
    (x − μ)ᵀ C⁻¹ (x − μ) = (‖r‖² − rᵀW M⁻¹ Wᵀr) / σ² with r = x − μ.
    """
    W = W.to(torch.float64)
    d, latent_dim = W.shape
    r = _as_float(images.flatten(1).to(W.device), torch.float64) - mean.to(W.device, torch.float64)
    cholesky = torch.linalg.cholesky(W.T @ W + sigma2 * torch.eye(latent_dim, dtype=torch.float64, device=W.device))
    v = torch.linalg.solve_triangular(cholesky, (r @ W).T, upper=False)  # (L, N): ‖v‖² = rᵀW M⁻¹ Wᵀr
    quadratic = (r.pow(2).sum(-1) - v.pow(2).sum(0)) / sigma2
    log_det = (d - latent_dim) * math.log(sigma2) + 2 * torch.log(torch.diagonal(cholesky)).sum()
    return -0.5 * (quadratic + log_det + d * _LOG_2PI)


def ppca_log_likelihood(train_images: Tensor, test_images: Tensor, latent_dim: int) -> float:
    """Mean log-density of ``test_images`` under the exact pPCA fit of ``train_images``, in nats per image.

    The reference line for a ``linear`` VAE with a ``gaussian`` likelihood (``link="identity"``, one
    shared σ): that model family *is* probabilistic PCA (Tipping & Bishop 1999), whose maximum of
    the likelihood :func:`ppca_fit` finds in closed form. On the training images no such model can
    exceed it; on test images it is the number a well-trained linear VAE's
    :func:`iw_log_likelihood` should approach.
    """
    return ppca_log_density(test_images, *ppca_fit(train_images, latent_dim)).mean().item()
