"""When a run has diverged: the rule the training loop applies, in fp32 as in mixed precision.

A run has diverged when a number it reports becomes non-finite, or is *far* worse than where it
started. "Far" is measured on a scale that healthy runs never approach:

    scale = max(|L₀|, D · max(1, β))

with L₀ the loss of the run's first step (the untrained model), D the number of values in one
image and β the final KL weight. D nats, one nat per pixel and channel, is the order of an
untrained model's reconstruction term; β·D allows for objectives that weigh the KL heavily (β = 1000
with a capacity target). The two tests, each by ``FACTOR`` scales:

- the loss of a stretch of steps (between two progress refreshes) rises above L₀ + 10·scale:
  the optimiser has thrown the model far beyond anything it started from;
- an epoch's train ELBO falls below the first epoch's ELBO − 10·scale, with β > 0 (with β = 0
  the KL is not trained, so the ELBO is not what the run optimises and may fall freely).

Healthy runs stay far inside both: their loss goes down from L₀ (warm-up, β sweeps and capacity
schedules move it by a few β·KL, not by ten times the image's size), and their ELBO rises, by
however much (a Gaussian likelihood with a learned σ gains thousands of nats). An absurd learning
rate crosses the first line within its first epoch.
"""
from __future__ import annotations

import math

from vaetool.errors import RuntimeFailure

FACTOR = 10.0


class Diverged(RuntimeFailure):
    """Training went non-finite or far off; the last good model and checkpoint are kept."""


def _kept(run_dir, metrics: list) -> str:
    return f"the model of epoch {len(metrics)} is kept in {run_dir}" if metrics else "no epoch had finished"


def _advice(lr: float) -> str:
    return (f"lower --lr (it is {lr:g}); with a gaussian likelihood, a larger --sigma or --encoder-scale softplus "
            "also steadies training.")


class Watch:
    """Applies the rule above to one run's losses (at each refresh) and ELBOs (at each epoch)."""

    def __init__(self, pixels: int, beta: float, lr: float, run_dir, metrics: list):
        self.pixels, self.beta, self.lr = pixels, beta, lr
        self.run_dir, self.metrics = run_dir, metrics
        self.start: float | None = None  # L₀
        self._epoch, self._sum, self._count = None, 0.0, 0
        first = metrics[0].get("train_elbo") if metrics else None
        self.first_elbo = first if isinstance(first, (int, float)) and math.isfinite(first) else None

    def _scale(self, reference: float) -> float:
        return FACTOR * max(abs(reference), self.pixels * max(1.0, self.beta))

    def begin(self, loss: float) -> None:
        """The loss of the run's first step (per example): where "far worse" is measured from."""
        if self.start is None:
            self.start = loss

    def refresh(self, epoch: int, step: int, loss_sum: float, count: int) -> None:
        """Check the running loss sum of ``epoch`` after ``count`` examples (a progress refresh)."""
        if epoch != self._epoch:
            self._epoch, self._sum, self._count = epoch, 0.0, 0
        if not math.isfinite(loss_sum):
            raise Diverged(f"Training went non-finite at epoch {epoch + 1}, step {step + 1}; "
                           f"{_kept(self.run_dir, self.metrics)}. Try: {_advice(self.lr)}")
        if count > self._count:
            window = (loss_sum - self._sum) / (count - self._count)
            self._sum, self._count = loss_sum, count
            if self.start is not None and math.isfinite(self.start) and window > self.start + self._scale(self.start):
                raise Diverged(f"Training diverged at epoch {epoch + 1}, step {step + 1}: the loss rose to "
                               f"{window:.4g} nats per example from {self.start:.4g} at the start; "
                               f"{_kept(self.run_dir, self.metrics)}. Try: {_advice(self.lr)}")

    def epoch_end(self, epoch: int, train_elbo: float, beta: float) -> None:
        """Check an epoch's train ELBO against the first epoch's (``epoch`` counts from 1)."""
        if not math.isfinite(train_elbo):
            raise Diverged(f"Training went non-finite in epoch {epoch}; {_kept(self.run_dir, self.metrics)}. "
                           f"Try: {_advice(self.lr)}")
        if self.first_elbo is None:
            self.first_elbo = train_elbo
            return
        if beta > 0 and train_elbo < self.first_elbo - self._scale(self.first_elbo):
            raise Diverged(f"Training diverged in epoch {epoch}: the train ELBO fell to {train_elbo:.4g} nats from "
                           f"{self.first_elbo:.4g} in epoch 1; {_kept(self.run_dir, self.metrics)}. "
                           f"Try: {_advice(self.lr)}")
