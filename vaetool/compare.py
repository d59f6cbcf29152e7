"""Putting trained models side by side on the same held-out data.

``compare`` loads every model, checks that they were trained on the same data, evaluates them on
one shared test set — the bound, its terms, an importance-weighted likelihood estimate, latent
usage, how well the aggregate posterior matches the prior, sample quality — draws the same
pictures for each, and states what the numbers say about the classic questions (is deeper
better, what does β do, AE versus VAE, did the posterior collapse). A model with a discrete latent
(vq) reports codebook usage and perplexity instead of active units and the aggregate posterior,
and has no importance-weighted log p(x): its posterior is one code, so its bound is the ELBO.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from vaetool import io, metrics, objectives, runs
from vaetool.errors import VaetoolError
from vaetool.runs import METRICS_FILE

PICTURE_COUNT = 8


@dataclass
class Entry:
    """One model in a comparison: where it came from, its numbers and its training history."""

    name: str
    path: Path
    model: Any
    numbers: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def config(self) -> dict[str, Any]:
        return self.model.config

    @property
    def label(self) -> str:
        """A short description: architecture, likelihood, and the objective it was trained with (or AE)."""
        c = self.config
        kind = "AE" if c["autoencoder"] else objective_label(c)
        conditional = ", conditional: log p(x|y)" if getattr(self.model, "conditional", False) else ""
        latent = f"{c['latent_dim']}-D" if c.get("latent", "gaussian") == "gaussian" else \
            f"{c['latent']} {c['latent_dim']} positions, {self.model.latent.codebook_size} codes" \
            if getattr(self.model, "discrete", False) else \
            f"{c['latent']} {'-'.join(str(w) for w in self.model.latent.layers)}-D"  # 100-50-D: a width per layer
        prior = f", {c['prior']} prior" if c.get("prior", "standard-normal") != "standard-normal" else ""
        averaged = ", trained on the averaged log p(x|z)" if c.get("likelihood_options", {}).get("reduction") == "mean" else ""
        schedule = (c.get("training") or {}).get("lr_schedule")  # recorded only when not constant
        scheduled = f", {schedule} lr schedule" if schedule else ""
        return f"{c['architecture']}/{c['likelihood']}, {latent}{prior}, {kind}{conditional}{averaged}{scheduled}"


def load_entries(paths: list[Path], device, *, allow_nonfinite: bool = False) -> list[Entry]:
    """Models from files or run directories, named after their run (or file), comparable or refused."""
    entries, names = [], set()
    for path in paths:
        file = runs.existing_model(path)
        name = file.parent.name if file.name == io.MODEL_FILE else file.stem
        while name in names:
            name += "′"
        names.add(name)
        model = io.load(file, device, allow_nonfinite=allow_nonfinite)
        if model.device.type == "cpu":
            # Convolutions in channels-last layout run about twice as fast on a CPU (the decoder's
            # transposed ones most), to the same numbers; layers without 4-D weights are untouched.
            model = model.to(memory_format=torch.channels_last)
        entry = Entry(name, file, model)
        history_file = file.parent / METRICS_FILE
        if history_file.exists():
            entry.history = [json.loads(line) for line in history_file.read_text().splitlines() if line.strip()]
        entries.append(entry)
    if not entries:
        raise VaetoolError("Give at least one model (a model file or run directory) to compare.")
    _check_comparable(entries)
    return entries


def _check_comparable(entries: list[Entry]) -> None:
    first = entries[0]
    for entry in entries[1:]:
        for key, what in (("dataset", "dataset"), ("dataset_options", "dataset options"), ("input_shape", "image size")):
            if entry.config.get(key) != first.config.get(key):
                raise VaetoolError(f"{entry.name} was trained with {what} {entry.config.get(key)!r} but {first.name} with "
                                   f"{first.config.get(key)!r}; compare models trained on the same data.")


def evaluate(entries: list[Entry], test_images: torch.Tensor, test_labels: torch.Tensor | None, *,
             iw_samples: int = 100, seed: int = 0, train_images: torch.Tensor | None = None,
             classifier=None, sample_count: int = 1000, disentanglement_scale: float | None = None, data_dir=None,
             progress: Callable[[str, int, int], None] | None = None, iw_images: int | None = None) -> None:
    """Fill each entry's ``numbers`` (all in nats per image, on the same test images).

    ``iw_images``: the importance-weighted estimate uses only the first that many test images
    (None: all of them); it costs K decoder passes per image, far more than anything else.
    ``progress(stage, done, total)`` is told each stage as it runs, e.g. ``"conv: ELBO"``.
    """
    from vaetool import classifier as quality

    report = progress or (lambda stage, done, total: None)

    def stage(label: str, work: Callable[[], Any]) -> Any:
        report(label, 0, 1)
        result = work()
        report(label, 1, 1)
        return result

    for entry in entries:
        model, c = entry.model, entry.config
        n = entry.numbers
        n.update({f"params_{k}": v for k, v in metrics.parameter_counts(model).items()})
        # One seeded draw of the data as the likelihood scores it (a binarization, say) serves the
        # ELBO and the IW estimate alike, so their difference is the bound's gap and nothing else.
        scored = metrics.scored_data(model, test_images, seed=seed)
        n["protocol"], n["published_protocol"] = metrics.protocol(model)
        name, options = objectives.recorded(c)
        trained_with = _objective(c)
        n["trained_with"] = name
        n["bound"] = trained_with.bound if trained_with is not None else "elbo"
        # A model trained with z at the posterior mean (WAE) is scored there too.
        samples = min(trained_with.samples, 1) if trained_with is not None else 1
        terms = stage(f"{entry.name}: ELBO", lambda: metrics.elbo_terms(model, scored, test_labels, seed=seed,
                                                                       samples=samples))
        if not model.discrete:
            # How well the codes cover the prior, for every model: what the WAE family is judged by.
            n["mmd"] = stage(f"{entry.name}: MMD to the prior",
                             lambda: _mmd_to_prior(model, test_images, test_labels, seed))
        if n["bound"] == "none":
            # Trained without a likelihood bound (the WAE family): judged by reconstruction and MMD,
            # never by an ELBO it did not optimise.
            n["rec"] = terms["rec"]
        else:
            n.update({"elbo": terms["elbo"], "rec": terms["rec"], "kl": terms["kl"], "kl_per_dim": terms["kl_per_dim"]})
            if "bits_per_dim" in terms:
                n["bits_per_dim"] = terms["bits_per_dim"]
            beta = 0.0 if c["autoencoder"] else options.get("beta", 1.0)
            n["beta"] = None if c["autoencoder"] else beta
            n["objective"] = -terms["rec"] + beta * terms["kl"]
        # A discrete latent's posterior is one code: its bound is the ELBO, with no importance weights.
        if iw_samples > 0 and not c["autoencoder"] and n["bound"] != "none" and model.latent.gaussian_posterior:
            count = len(test_images) if iw_images is None else min(iw_images, len(test_images))
            label = f"{entry.name}: log p(x), K={iw_samples} on {count:,} images"
            iw = metrics.iw_log_likelihood(model, scored[:count],
                                           test_labels[:count] if test_labels is not None else None, k=iw_samples,
                                           seed=seed, progress=lambda done, total: report(label, done, total))
            n["iw_ll"] = float(iw.mean())
            n["iw_k"] = iw_samples
            n["iw_images"] = count
        n["latent_dim"] = sum(model.latent.layers)
        if model.discrete:
            n.update(stage(f"{entry.name}: codebook usage",
                           lambda: metrics.codebook_usage(model, test_images, test_labels)))
        else:
            units = stage(f"{entry.name}: latent usage", lambda: (
                metrics.active_units_per_layer(model, test_images, test_labels),
                # measured against N(0, I), so only for models with that prior
                metrics.aggregate_posterior_kl(model, test_images, test_labels)
                if c.get("prior", "standard-normal") == "standard-normal" else None))
            n["active_units"] = sum(units[0])
            if len(units[0]) > 1:  # several stochastic layers: Burda et al. 2016 count them layer by layer
                n["active_per_layer"] = units[0]
            if units[1] is not None:
                n["aggregate_kl"] = units[1]
        if classifier is not None:
            n.update(stage(f"{entry.name}: sample quality",
                           lambda: _sample_quality(model, classifier, test_images, sample_count, seed, quality)))
        if disentanglement_scale:
            n.update(_disentanglement(model, disentanglement_scale, seed, data_dir,
                                      lambda metric, done, total: report(f"{entry.name}: disentanglement, {metric}",
                                                                         done, total)))
        if (c["architecture"] == "linear" and c["likelihood"] == "gaussian" and train_images is not None
                and c["likelihood_options"].get("link") == "identity" and not c["likelihood_options"].get("per_pixel")):
            n["ppca_ll"] = stage(f"{entry.name}: pPCA", lambda: metrics.ppca_log_likelihood(
                train_images, test_images, c["latent_dim"]))


def _sample_quality(model, classifier, test_images, sample_count: int, seed: int, quality) -> dict[str, float]:
    generator = torch.Generator(device=model.device).manual_seed(seed)
    requested = None
    if model.conditional:
        requested = torch.arange(sample_count, device=model.device) % model.num_classes
    with torch.no_grad():
        samples = model.sample(sample_count, requested, generator=generator)
    q = quality.sample_quality(classifier, test_images[:sample_count], samples.cpu(),
                               requested.cpu() if requested is not None else None)
    out = {"fid": q["fid"], "confidence": q["confidence"], "entropy": q["entropy"]}
    if "label_accuracy" in q:
        out["label_accuracy"] = q["label_accuracy"]
    return out


def _objective(config: dict[str, Any]):
    """The objective a model was trained with, rebuilt from its config: its ``bound`` says what the bound
    means (``elbo``, ``iw`` or ``none`` for the WAE family, which has none), its ``samples`` how z was
    drawn. ``None`` when it is not installed here: the model still loads and compares as a VAE."""
    from vaetool import registry

    name, options = objectives.recorded(config)
    try:
        return registry.build("objective", name, options)[0]
    except VaetoolError:
        return None


def _mmd_to_prior(model, images: torch.Tensor, labels: torch.Tensor | None, seed: int, n: int = 1000) -> float:
    """MMD² (inverse multiquadric kernel) between the posterior means of up to ``n`` test images and as many
    prior draws: how well the codes cover the prior, for models trained without a KL."""
    from vaetool.objectives.mmd import mmd

    means, _ = metrics.posterior_moments(model, images[:n], labels[:n] if labels is not None else None)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    with torch.no_grad():
        prior = model.prior.sample(len(means), generator).to(means.device, means.dtype)
        return float(mmd(means, prior))


def _disentanglement(model, scale: float, seed: int, data_dir=None, progress=None) -> dict[str, float]:
    """The five disentanglement metrics, when the model's dataset has a ground-truth generator."""
    from vaetool import disentanglement

    ground_truth = disentanglement.ground_truth_for(model.config, data_dir)
    if ground_truth is None or model.conditional or model.discrete:  # the metrics score continuous codes
        return {}
    scores = disentanglement.all_metrics(ground_truth, disentanglement.representation(model), seed=seed, scale=scale,
                                         progress=progress)
    return {"beta_vae": scores["beta_vae"]["eval_accuracy"], "factor_vae": scores["factor_vae"]["eval_accuracy"],
            "mig": scores["mig"]["mig"], "dci_d": scores["dci"]["disentanglement"],
            "dci_c": scores["dci"]["completeness"], "dci_i": scores["dci"]["informativeness_test"],
            "sap": scores["sap"]["sap"]}


# Columns: key, heading, format, which direction is better (None: not ranked).
COLUMNS = [
    ("params_total", "params", "{:,}", None),
    ("elbo", "ELBO", "{:.2f}", "max"),
    ("rec", "log p(x|z)", "{:.2f}", "max"),
    ("kl", "KL", "{:.2f}", None),
    ("iw_ll", "log p(x) IW", "{:.2f}", "max"),
    ("mmd", "MMD² to prior", "{:.4f}", "min"),
    ("bits_per_dim", "bits/dim", "{:.3f}", "min"),
    ("active_units", "active", "{}", None),
    ("codes_used", "codes used", "{}", None),
    ("perplexity", "perplexity", "{:.1f}", None),
    ("aggregate_kl", "agg. KL", "{:.2f}", "min"),
    ("fid", "FD", "{:.2f}", "min"),
    ("confidence", "conf.", "{:.3f}", "max"),
    ("label_accuracy", "label acc.", "{:.3f}", "max"),
    ("ppca_ll", "pPCA log p(x)", "{:.2f}", None),
    ("beta_vae", "β-VAE", "{:.3f}", "max"),
    ("factor_vae", "FactorVAE", "{:.3f}", "max"),
    ("mig", "MIG", "{:.3f}", "max"),
    ("dci_d", "DCI D", "{:.3f}", "max"),
    ("dci_c", "DCI C", "{:.3f}", "max"),
    ("dci_i", "DCI I", "{:.3f}", "max"),
    ("sap", "SAP", "{:.3f}", "max"),
]


# What each column measures, in what unit, for the reports' glossary and the terminal's units line.
# A column without an entry is still shown, with no unit.
GLOSSARY = {
    "params_total": ("count", "Trainable parameters of the whole model (encoder, decoder, likelihood, prior)."),
    "elbo": ("nats/image", "Evidence lower bound with β = 1 whatever β the model was trained with: "
                           "log p(x|z) − KL, one posterior sample per test image."),
    "rec": ("nats/image", "Reconstruction term E_q[log p(x|z)] (the distortion, negated)."),
    "kl": ("nats/image", "KL(q(z|x) ‖ p(z)), summed over latent dimensions (the rate)."),
    "iw_ll": ("nats/image", "Importance-weighted estimate of log p(x) with K samples (Burda et al. 2016), a "
                            "tighter bound than the ELBO; on the first test images when the header says so."),
    "mmd": ("unitless", "MMD² with an inverse multiquadric kernel between the posterior means of up to 1,000 "
                        "test images and as many prior draws: how well the codes cover the prior."),
    "bits_per_dim": ("bits/dim", "−ELBO divided by the number of pixel values and ln 2."),
    "active_units": ("dims", "Latent dimensions whose posterior mean varies across test images "
                             "(Cov_x E_q[z] > 0.01, Burda et al. 2016); out of the latent size."),
    "aggregate_kl": ("nats", "KL(q(z) ‖ p(z)) of the aggregate posterior over the test images, moment-matched "
                             "to a Gaussian: far from 0, prior samples land where the decoder saw no code."),
    "fid": ("dist²", "Fréchet distance between classifier features of samples and test images, "
                     "FID's recipe with vaetool's own classifier; comparable only within one dataset."),
    "confidence": ("probability", "Mean top-class probability the classifier gives samples."),
    "label_accuracy": ("share", "Conditional models: share of samples classified as the label they were drawn for."),
    "ppca_ll": ("nats/image", "Exact log p(x) of probabilistic PCA with the same latent size: "
                              "the optimum a linear Gaussian VAE can reach."),
    "beta_vae": ("accuracy", "β-VAE score (Higgins et al. 2017): accuracy of predicting the fixed factor."),
    "factor_vae": ("accuracy", "FactorVAE score (Kim & Mnih 2018): majority-vote accuracy on the "
                               "least-varying dimension; 0 when every dimension is collapsed "
                               "(variance of its posterior mean below 0.05)."),
    "mig": ("0–1", "Mutual Information Gap (Chen et al. 2018)."),
    "dci_d": ("0–1", "DCI disentanglement (Eastwood & Williams 2018)."),
    "dci_c": ("0–1", "DCI completeness."),
    "dci_i": ("accuracy", "DCI informativeness: test accuracy of the factor classifiers."),
    "sap": ("0–1", "Separated Attribute Predictability (Kumar et al. 2018)."),
}


def glossary(key: str) -> tuple[str, str]:
    """``(unit, meaning)`` of a column."""
    return GLOSSARY.get(key, ("", ""))


def model_settings(config: dict[str, Any]) -> dict[str, str]:
    """What a model was built and trained with, as short ``name: value`` texts for a report header."""

    def named(kind: str) -> str:
        options = config.get(f"{kind}_options") or {}
        shown = ", ".join(f"{k}={v}" for k, v in options.items())
        return f"{config.get(kind)} ({shown})" if shown else str(config.get(kind))

    out = {kind: named(kind) for kind in ("architecture", "likelihood", "prior", "dataset") if config.get(kind)}
    out["latent"] = f"{config.get('latent_dim')}-D, encoder scale {config.get('encoder_scale', 'exp')}" \
        + (", autoencoder" if config.get("autoencoder") else "")
    name, options = objectives.recorded(config)
    out["objective"] = f"{name} ({listed(options)})" if options else name
    training = {k: v for k, v in (config.get("training") or {}).items() if k != "steps_per_epoch"}
    schedule_options = training.pop("lr_schedule_options", None)
    if schedule_options:  # the schedule with its options, as the objective is shown
        training["lr_schedule"] = f"{training.get('lr_schedule')} ({listed(schedule_options)})"
    out["training"] = listed(training)
    return out


def listed(options: dict[str, Any]) -> str:
    """``beta=4, warmup=0, k=5``: options as short ``key=value`` texts, floats without trailing zeros."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items())


def columns(entries: list[Entry]) -> list[tuple[str, str, str, str | None]]:
    """The columns that at least one entry has a value for."""
    return [col for col in COLUMNS if any(col[0] in e.numbers for e in entries)]


# Nats of different likelihoods (a Bernoulli mass, a Gaussian density) are not comparable, and a
# conditional model bounds log p(x|y), not log p(x): these columns are ranked within such groups.
LIKELIHOOD_KEYS = {"elbo", "rec", "iw_ll", "bits_per_dim"}


def likelihood_group(entry: Entry) -> str:
    c = entry.config
    return json.dumps([c.get("likelihood"), c.get("likelihood_options"), getattr(entry.model, "conditional", False)],
                      sort_keys=True)


def best(entries: list[Entry], key: str, direction: str | None) -> set[str]:
    """Names of the entries with the best value in a column (none in a group of fewer than two).

    Likelihood columns are ranked among models with the same likelihood (and conditioning) only.
    """
    groups: dict[str, dict[str, float]] = {}
    for e in entries:
        if e.numbers.get(key) is not None:
            group = likelihood_group(e) if key in LIKELIHOOD_KEYS else ""
            groups.setdefault(group, {})[e.name] = e.numbers[key]
    winners = set()
    for values in groups.values():
        if direction is None or len(values) < 2:
            continue
        target = (max if direction == "max" else min)(values.values())
        winners |= {name for name, v in values.items() if math.isclose(v, target, rel_tol=1e-9, abs_tol=1e-12)}
    return winners


def objective_label(config: dict[str, Any]) -> str:
    """The objective a model was trained with, in a few words: ``β=4``, ``tcvae tc_weight=6``, ``iwae k=5``."""
    name, options = objectives.recorded(config)
    if name == objectives.DEFAULT:
        return f"β={options.get('beta', 1):g}"
    shown = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items()
                     if v is not None and k not in ("warmup", "capacity_epochs"))
    return f"{name} {shown}".strip()


def same_but_beta(config: dict[str, Any]) -> str:
    keys = ("architecture", "architecture_options", "likelihood", "likelihood_options", "prior", "prior_options",
            "latent_dim", "encoder_scale")
    training = {k: v for k, v in config.get("training", {}).items()
                if k != "steps_per_epoch" and k not in objectives.SHORTHANDS}  # older files kept those there
    name, options = objectives.recorded(config)
    options.pop("beta", None)
    return json.dumps([[config.get(k) for k in keys], training, name, options], sort_keys=True)


def verdicts(entries: list[Entry]) -> list[str]:
    """One sentence per classic question that these models and their numbers can answer."""
    said = []
    protocols: dict[tuple[str, bool], list[str]] = {}
    for e in entries:
        if "protocol" in e.numbers:
            protocols.setdefault((e.numbers["protocol"], e.numbers["published_protocol"]), []).append(e.name)
    for (text, published), names in protocols.items():
        said.append(f"What the log-likelihoods measure ({', '.join(names)}): {text}"
                    + ("; comparable with published tables of the same protocol." if published else "."))
    # Models with a likelihood bound; the WAE family has none, and no verdict ranks its ELBO. A
    # discrete latent has its own sentences below: the questions here are about Gaussian codes.
    discrete = [e for e in entries if getattr(e.model, "discrete", False)]
    entries = [e for e in entries if e not in discrete]
    vaes = [e for e in entries if not e.config["autoencoder"] and e.numbers.get("bound") != "none"]
    score_key = "iw_ll" if all("iw_ll" in e.numbers for e in vaes) else "elbo"
    score_name = "log p(x)" if score_key == "iw_ll" else "ELBO"

    linear = [e for e in vaes if e.config["architecture"] == "linear"]
    deep = [e for e in vaes if e.config["architecture"] != "linear"
            and not getattr(e.model, "conditional", False)]
    for lin in linear:
        rivals = [d for d in deep if d.config["latent_dim"] == lin.config["latent_dim"]
                  and d.config["likelihood"] == lin.config["likelihood"]]
        same_beta = [d for d in rivals if d.numbers.get("beta") == lin.numbers.get("beta")]
        rivals = same_beta or rivals  # at the same β when there is one: β changes the score too
        if rivals:
            top = max(rivals, key=lambda e: e.numbers[score_key])
            gap = top.numbers[score_key] - lin.numbers[score_key]
            ratio = top.numbers["params_total"] / lin.numbers["params_total"]
            said.append(f"Is deeper better? {top.name} ({score_name} {top.numbers[score_key]:.1f}) "
                        f"{'beats' if gap > 0 else 'does not beat'} the linear model {lin.name} "
                        f"({lin.numbers[score_key]:.1f}) by {abs(gap):.1f} nats, with {ratio:.1f}× the parameters.")
        if "ppca_ll" in lin.numbers and "iw_ll" in lin.numbers:
            said.append(f"Linear VAE vs exact pPCA: {lin.name} reaches log p(x) {lin.numbers['iw_ll']:.1f}, "
                        f"{lin.numbers['ppca_ll'] - lin.numbers['iw_ll']:.1f} nats below the pPCA optimum "
                        f"{lin.numbers['ppca_ll']:.1f} for this latent size.")

    groups: dict[str, list[Entry]] = {}
    for e in vaes:  # models that differ in β and nothing else
        groups.setdefault(same_but_beta(e.config), []).append(e)
    for group in groups.values():
        betas = sorted({e.numbers["beta"] for e in group})
        if len(betas) < 2:
            continue
        group = sorted(group, key=lambda e: e.numbers["beta"])
        low, high = group[0], group[-1]
        sentence = (f"β from {low.numbers['beta']:g} to {high.numbers['beta']:g}: KL (rate) "
                    f"{low.numbers['kl']:.1f} → {high.numbers['kl']:.1f} nats, log p(x|z) (distortion) "
                    f"{low.numbers['rec']:.1f} → {high.numbers['rec']:.1f}")
        if all("fid" in e.numbers for e in group):
            top = min(group, key=lambda e: e.numbers["fid"])
            sentence += f"; samples are best (lowest FD) at β = {top.numbers['beta']:g}"
        top_elbo = max(group, key=lambda e: e.numbers[score_key])
        said.append(sentence + f"; the best {score_name} is at β = {top_elbo.numbers['beta']:g}.")

    autoencoders = [e for e in entries if e.config["autoencoder"]]
    for ae in autoencoders:
        rivals = [v for v in vaes if v.config["architecture"] == ae.config["architecture"]
                  and v.config["latent_dim"] == ae.config["latent_dim"]]
        if not rivals:
            continue
        vae = max(rivals, key=lambda e: e.numbers["elbo"])
        parts = [f"AE vs VAE: {ae.name} reconstructs {'better' if ae.numbers['rec'] > vae.numbers['rec'] else 'worse'} "
                 f"than {vae.name} (log p(x|z) {ae.numbers['rec']:.1f} vs {vae.numbers['rec']:.1f})"]
        if "aggregate_kl" in ae.numbers and "aggregate_kl" in vae.numbers:
            parts.append(f"its codes are {'farther from' if ae.numbers['aggregate_kl'] > vae.numbers['aggregate_kl'] else 'closer to'} "
                         f"the prior (aggregate KL {ae.numbers['aggregate_kl']:.1f} vs {vae.numbers['aggregate_kl']:.1f})")
        if "fid" in ae.numbers and "fid" in vae.numbers:
            parts.append(f"so its samples from N(0, I) are {'worse' if ae.numbers['fid'] > vae.numbers['fid'] else 'better'} "
                         f"(FD {ae.numbers['fid']:.1f} vs {vae.numbers['fid']:.1f})")
        said.append("; ".join(parts) + ".")

    for wae in (e for e in entries if e.numbers.get("bound") == "none"):
        sentence = (f"{wae.name} is a {wae.numbers['trained_with']} model, trained without a likelihood bound: "
                    f"judge it by reconstruction (log p(x|z) {wae.numbers['rec']:.1f}) and by how its codes cover "
                    f"the prior (MMD² {wae.numbers['mmd']:.4f}), not by an ELBO")
        rivals = [v for v in vaes if v.config["architecture"] == wae.config["architecture"]
                  and v.config["latent_dim"] == wae.config["latent_dim"] and likelihood_group(v) == likelihood_group(wae)]
        if rivals:
            vae = max(rivals, key=lambda e: e.numbers["rec"])
            sentence += (f"; it reconstructs {'better' if wae.numbers['rec'] > vae.numbers['rec'] else 'worse'} than "
                         f"{vae.name} ({vae.numbers['rec']:.1f}) and its codes are "
                         f"{'closer to' if wae.numbers['mmd'] < vae.numbers['mmd'] else 'farther from'} the prior "
                         f"(MMD² {vae.numbers['mmd']:.4f})")
        said.append(sentence + ".")

    for e in vaes:
        active, total = e.numbers["active_units"], e.numbers["latent_dim"]
        if active == 0:
            said.append(f"{e.name}: posterior collapse — no latent dimension is active; the decoder ignores z.")
        elif active < total:
            rest = total - active
            said.append(f"{e.name}: {active} of {total} latent dimensions {'is' if active == 1 else 'are'} active; the other {rest} "
                        f"{'has' if rest == 1 else 'have'} collapsed to the prior (unused).")
    against_normal = [e for e in vaes if "aggregate_kl" in e.numbers]  # models with the N(0, I) prior
    if len(against_normal) >= 2:
        closest = min(against_normal, key=lambda e: e.numbers["aggregate_kl"])
        farthest = max(against_normal, key=lambda e: e.numbers["aggregate_kl"])
        said.append(f"Regularization: the aggregate posterior is closest to the prior for {closest.name} "
                    f"(KL {closest.numbers['aggregate_kl']:.2f}) and farthest for {farthest.name} "
                    f"({farthest.numbers['aggregate_kl']:.2f}); far means prior samples land where the decoder was never trained.")
    for e in discrete:
        used, size, perplexity = e.numbers["codes_used"], e.numbers["codebook_size"], e.numbers["perplexity"]
        sentence = (f"{e.name}: the {e.config['latent']} latent uses {used} of its {size} codes on the test images "
                    f"(perplexity {perplexity:.1f})")
        if used < size / 2:
            sentence += "; most of the codebook is dead"
        said.append(sentence + f"; its KL, {e.numbers['kl']:.1f} nats, is −log p(codes) under its learned code prior, "
                               "and with a single code as its posterior its ELBO is its only bound (no importance-weighted log p(x)).")
    return said


@torch.no_grad()
def pictures(entries: list[Entry], test_images: torch.Tensor, test_labels: torch.Tensor | None, seed: int = 0,
             pairs: list[tuple[torch.Tensor, torch.Tensor | None, str]] | None = None) -> dict:
    """The same pictures for every model, one row each: reconstructions, samples, interpolations.

    ``pairs`` are the interpolations' endpoints, ``(images (2, C, H, W), labels (2,) or None,
    caption)`` each, one row per model and pair; by default the first two test images.
    """
    from vaetool import images, latents

    k = PICTURE_COUNT
    x = test_images[:k]
    y = test_labels[:k] if test_labels is not None else None
    if pairs is None:
        pairs = [(test_images[:2], test_labels[:2] if test_labels is not None else None, "")]
    rows = {"reconstructions": [x], "samples": [], "interpolations": []}
    interpolation_names = []
    for entry in entries:
        model = entry.model
        cond = y.to(model.device) if model.conditional and y is not None else None
        rows["reconstructions"].append(model.reconstruct(x.to(model.device), cond).cpu())
        generator = torch.Generator(device=model.device).manual_seed(seed)
        label = torch.arange(k, device=model.device) % model.num_classes if model.conditional else None
        rows["samples"].append(model.sample(k, label, generator=generator).cpu())
        for ends, end_labels, caption in pairs:
            end_cond = end_labels.to(model.device) if model.conditional and end_labels is not None else None
            encoded = model.encode(ends.to(model.device), end_cond)
            if model.discrete:  # no continuous path: swap the first image's codes for the second's, position by position
                route = model.latent.embed(latents.code_path(model.latent.codes(encoded), k))
            else:
                route = latents.path(encoded.mean, k, "slerp")
            rows["interpolations"].append(
                model.decode(route, end_cond[:1].expand(k) if end_cond is not None else None).cpu())
            interpolation_names.append(f"{entry.name} {caption}".strip())
    names = [e.name for e in entries]
    out = {}
    for key, stack in rows.items():
        labels = (["data"] + names) if key == "reconstructions" else interpolation_names if key == "interpolations" else names
        array = images.grid(torch.cat(stack), nrow=k)
        out[key] = images.with_row_labels(array, labels, rows=len(stack))
    return out
