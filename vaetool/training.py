"""Training: one loop, read top to bottom, with checkpoints that resume exactly.

The whole dataset lives on the training device as one uint8 tensor; an epoch is a random
permutation sliced into batches, so no per-image Python runs inside it. A dataset too large for
that (an image folder decoded to a uint8 cache on disk) streams instead: worker processes read
each batch's rows from the memory-mapped cache while the device computes. Losses are summed on
the device and read back only when the progress display refreshes, so a GPU is never made to
wait for the host on every step.

Adam's learning rate follows a schedule plugin (:mod:`vaetool.lr_schedules`; constant by default),
set before every step from the step alone, so resuming needs nothing more in the checkpoint.

Speed options that do not change what is trained: ``precision`` (bf16 or fp16 autocast for the
networks; the likelihood and KL stay in fp32), ``compile`` (``torch.compile`` of the networks),
``channels_last`` (memory layout for convolutions; by default on for a network with convolutions
trained on the CPU, where oneDNN computes them in that layout without reordering each tensor
first). On the CPU the process also keeps the memory each step frees for the next one
(:mod:`vaetool.allocator`). Several processes under ``torchrun`` train one model data-parallel;
see :mod:`vaetool.distributed`.

A run directory holds ``model.safetensors`` (the latest weights and config), ``checkpoint.safetensors``
(model, optimizer, RNG states and position in the epoch: what ``--resume`` needs, without pickle),
``metrics.jsonl`` (one line per epoch) and pictures. Each is written atomically after each epoch.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import signal
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from vaetool import (allocator, config_file, distributed, fused, locks, lr_schedules, metrics, objectives, picking,
                     registry, snapshots)
from vaetool.contracts import NEEDS, Split, TrainingContext
from vaetool.divergence import Diverged, Watch
from vaetool.datasets import data_root
from vaetool.devices import memory_of
from vaetool.errors import VaetoolError
from vaetool.images import background as images_background
from vaetool.io import MODEL_FILE, atomic_write_text, read_tensors, save, save_tensors
from vaetool.metrics import mean_image
from vaetool.model import VAE, create, upgrade_config, with_latent_loss
from vaetool.runs import CHECKPOINT_FILE, METRICS_FILE, holds_run

EVAL_BATCH = 500
REFRESH_SECONDS = 0.25
CURVES_SECONDS = 30.0  # curves.png is redrawn at most this often, and after the last epoch
REFRESHES_PER_EPOCH = 20  # with several processes the refresh must fall on the same steps in all
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# A memory-mapped training split larger than this share of the device's memory is streamed.
RESIDENT_SHARE = 0.25
MAX_EPOCHS = 1_000_000  # eleven days of MNIST epochs on a CPU
MAX_BATCH = 1 << 20


@dataclass
class TrainConfig:
    """What to train and how. Plugin options left out take the plugin's defaults."""

    architecture: str = "conv"
    likelihood: str = "bernoulli"
    dataset: str = "mnist"
    architecture_options: dict[str, Any] = field(default_factory=dict)
    likelihood_options: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    prior: str = "standard-normal"
    prior_options: dict[str, Any] = field(default_factory=dict)
    latent: str = "gaussian"
    latent_options: dict[str, Any] = field(default_factory=dict)
    latent_dim: int = 16
    encoder_scale: str = "exp"
    autoencoder: bool = False
    # How the model is trained: an objective plugin and its options (None: elbo, or the one the
    # shorthands below choose). The shorthands are the historical flags; see vaetool.objectives.
    objective: str | None = None
    objective_options: dict[str, Any] = field(default_factory=dict)
    beta: float | None = None  # the KL weight (β-VAE), or capacity's γ
    warmup: float | None = None  # epochs over which β rises linearly from 0
    free_bits: float | None = None  # nats per latent dimension
    tc_weight: float | None = None  # β-TCVAE: the weight of the total correlation
    capacity: float | None = None  # controlled capacity increase: the final capacity in nats
    capacity_epochs: float | None = None  # epochs over which the capacity rises from 0 (None: all of them)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    # How the learning rate moves over the run: a schedule plugin and its options (see vaetool.lr_schedules).
    lr_schedule: str = lr_schedules.DEFAULT
    lr_schedule_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    precision: str = "fp32"  # the networks' arithmetic: fp32, or bf16/fp16 autocast
    train_limit: int | None = None  # train on a seeded random subset of this many images
    test_limit: int | None = None  # evaluate on a seeded random subset of this many test images
    snapshot_every: int | None = None  # keep snapshots/epoch-NNN/ every N epochs (vaetool.snapshots)
    keep_best: bool = False  # keep best.safetensors, the epoch with the highest test bound

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise VaetoolError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}.")
        from vaetool.validate import MAX_LATENT

        # The highs: a latent that no model file may have (vaetool.load would refuse the model trained), and
        # counts that only a typo gives (10²⁰ epochs).
        for name, low, high in (("latent_dim", 1, MAX_LATENT), ("epochs", 1, MAX_EPOCHS), ("batch_size", 1, MAX_BATCH),
                                ("train_limit", 1, None), ("test_limit", 1, None), ("snapshot_every", 1, MAX_EPOCHS)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise VaetoolError(f"{name.replace('_', '-')} must be at least {low}, not {value}.")
            if value is not None and high is not None and value > high:
                raise VaetoolError(f"{name.replace('_', '-')} must be at most {high:,}, not {value:,}.")
        if not 0 < self.lr < math.inf:  # an infinite rate was reported as the run diverging
            raise VaetoolError(f"The learning rate must be a positive finite number, not {self.lr}.")
        self.build_objective()  # its options are checked by its constructor
        self.build_lr_schedule()  # and the schedule's by its own

    def objective_choice(self) -> tuple[str, dict[str, Any]]:
        """The objective's name and the options given for it (shorthands folded in)."""
        return objectives.choose(self.objective, self.objective_options,
                                 {key: getattr(self, key) for key in objectives.SHORTHANDS})

    def build_objective(self):
        """The objective plugin, built; and its full options, as the model file records them."""
        name, options = self.objective_choice()
        return registry.build("objective", name, options)

    def build_lr_schedule(self):
        """The learning-rate schedule plugin, built; and its full options."""
        return registry.build("lr_schedule", self.lr_schedule, self.lr_schedule_options)

    def training_settings(self) -> dict[str, Any]:
        keys = ("epochs", "batch_size", "lr", "seed")
        settings = {k: getattr(self, k) for k in keys}
        # The default schedule is recorded as nothing, so constant runs compare with older ones as before.
        if self.lr_schedule != lr_schedules.DEFAULT:
            settings["lr_schedule"] = self.lr_schedule
            settings["lr_schedule_options"] = registry.resolve_options("lr_schedule", self.lr_schedule,
                                                                       self.lr_schedule_options)
        # Recorded only when set, so runs without them compare as before.
        for key in ("train_limit", "test_limit", "snapshot_every"):
            if getattr(self, key) is not None:
                settings[key] = getattr(self, key)
        if self.precision != "fp32":
            settings["precision"] = self.precision
        if self.keep_best:
            settings["keep_best"] = True
        return settings

    @classmethod
    def from_model_config(cls, config: dict[str, Any]) -> TrainConfig:
        """The settings a model was trained with; older files' objective flags are read as shorthands."""
        names = {f.name for f in fields(cls)}
        objective, options = objectives.recorded(config)
        settings = {k: v for k, v in {**config, **config["training"]}.items()
                    if k in names and k not in objectives.SHORTHANDS}
        return cls(**{**settings, "objective": objective, "objective_options": options})


@dataclass
class RunOptions:
    """How to run rather than what to train: free to differ between a run and its resumption.

    ``stream``: None streams the training data from its disk cache when it is larger than
    ``RESIDENT_SHARE`` of the device's memory; True always, False never. ``workers``: processes
    reading streamed batches (None: up to 4, one per spare CPU core).
    """

    compile: bool | str = False  # True: torch.compile with its default backend; a string names the backend
    channels_last: bool | None = None  # None: on for convolutions on the CPU (see channels_last_for)
    fused_step: bool | None = None  # None: the hand-written step where it applies (vaetool.fused); False: autograd
    stream: bool | None = None
    workers: int | None = None


class Progress:
    """What the trainer reports as it goes. The CLI draws it; the default shows nothing."""

    def begin(self, info: dict[str, Any]) -> None: ...

    def epoch_start(self, epoch: int, epochs: int, steps: int, first_step: int) -> None: ...

    def update(self, step: int, stats: dict[str, float]) -> None: ...

    def epoch_end(self, metrics: dict[str, Any]) -> None: ...


@dataclass
class RunResult:
    run_dir: Path
    status: str  # "finished" or "interrupted"
    metrics: list[dict[str, Any]]
    epoch: int  # epochs completed
    step: int  # steps into the next epoch (non-zero only when interrupted)


class _StopOnInterrupt:
    """The first Ctrl-C asks the loop to stop at the next step boundary; a second one aborts.

    Under torchrun a Ctrl-C reaches each process twice, from the terminal and forwarded by
    torchrun, so there a repeat only asks again (``abort_on_repeat=False``): the processes stop
    together at their next exchange, well within the time torchrun gives them.
    """

    def __init__(self, abort_on_repeat: bool = True):
        self.requested = False
        self.abort_on_repeat = abort_on_repeat
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested and self.abort_on_repeat:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C cannot reach us anyway
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def train(config: TrainConfig, run_dir: str | Path, *, device: str = "auto", data_dir: str | Path | None = None,
          progress: Progress | None = None, options: RunOptions | None = None) -> RunResult:
    """Train a new model into ``run_dir`` (which must not hold a run yet)."""
    config.check()
    run_dir = Path(run_dir)
    requested = device
    group, device = distributed.setup(device)
    with _claimed(run_dir, group):
        # Looked at under the lock, so that of two runs started together only one finds it free.
        if holds_run(run_dir):
            raise VaetoolError(f"{run_dir} already holds a run; resume it with --resume or choose another --name.")
        return _run(config, run_dir, None, device, data_dir, progress or Progress(), options or RunOptions(), group,
                    device_spec=requested)


def resume(run_dir: str | Path, *, epochs: int | None = None, device: str = "auto",
           data_dir: str | Path | None = None, progress: Progress | None = None,
           options: RunOptions | None = None) -> RunResult:
    """Continue the run in ``run_dir`` from its checkpoint, optionally to a new total of ``epochs``."""
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT_FILE).exists():
        raise VaetoolError(f"There is no checkpoint to resume in {run_dir}.")
    requested = device
    group, device = distributed.setup(device)
    tensors, header = read_tensors(run_dir / CHECKPOINT_FILE)
    _check_checkpoint_header(header, run_dir / CHECKPOINT_FILE)
    config = TrainConfig.from_model_config(upgrade_config(header["config"]))
    if epochs is not None:
        config.epochs = epochs
    config.check()
    if header["progress"]["epoch"] >= config.epochs:
        done = header["progress"]["epoch"]
        raise VaetoolError(f"The run in {run_dir} has already trained {done} epoch{'' if done == 1 else 's'}; "
                           "pass a larger --epochs to train further.")
    with _claimed(run_dir, group):
        return _run(config, run_dir, (tensors, header), device, data_dir, progress or Progress(),
                    options or RunOptions(), group, device_spec=requested)


def _claimed(run_dir: Path, group: distributed.Group):
    """The run directory's lock, held by the one process that writes it (see :mod:`vaetool.locks`)."""
    return locks.claim(run_dir) if group.main else contextlib.nullcontext()


def _run(config: TrainConfig, run_dir: Path, checkpoint, device, data_dir, progress: Progress,
         options: RunOptions, group: distributed.Group, device_spec: str | None = None) -> RunResult:
    if not group.main:
        progress = Progress()  # rank 0 reports for all
    for name in (MODEL_FILE, CHECKPOINT_FILE, METRICS_FILE, config_file.CONFIG_FILE):
        if (run_dir / name).is_dir():  # found now, not when the first epoch's files are written
            raise VaetoolError(f"{run_dir / name} is a folder, where the run writes its {name}; move it away.")
    torch.manual_seed(config.seed)
    dataset, dataset_options = registry.build("dataset", config.dataset, config.dataset_options)
    objective_name, _ = config.objective_choice()
    objective, objective_options = config.build_objective()
    # The model is built before the data is read, so a mistake in its options is reported at once.
    build = functools.partial(
        create, config.architecture, config.likelihood, input_shape=dataset.image_shape, latent_dim=config.latent_dim,
        num_classes=dataset.num_classes, encoder_scale=config.encoder_scale, autoencoder=config.autoencoder,
        architecture_options=config.architecture_options, likelihood_options=config.likelihood_options,
        prior=config.prior, prior_options=config.prior_options, latent=config.latent,
        latent_options=config.latent_options, dataset=config.dataset, dataset_options=dataset_options,
        class_names=list(dataset.class_names), objective=objective_name, objective_options=objective_options,
        training=config.training_settings())
    for kind, name in (("architecture", config.architecture), ("likelihood", config.likelihood),
                       ("prior", config.prior), ("latent", config.latent)):
        # Imported here, not first inside the meta device's context, where a plugin's module-level
        # tensors would be made on the meta device for good.
        if name is not None:
            registry.get(kind, name)
    meta_model = _on_meta(build)
    _check_fits(meta_model, device)  # the weights alone, before the data is read
    model = build().to(device)
    for need in objective.needs:  # refused before any data is read
        reason = model.lacks(need)
        if reason is not None:
            raise VaetoolError(f"The {objective_name} objective needs {NEEDS[need]}, but {reason}.")
    if group.active and model.discrete:
        raise VaetoolError(f"The {config.latent} latent updates its codebook from each batch within one process; "
                           "train it without --nproc.")
    root = data_root(data_dir)
    train_split, test_split = dataset.load("train", root), dataset.load("test", root)
    # --train-limit / --test-limit: seeded subsets, recorded in the training settings.
    for limit, split, part, flag in ((config.train_limit, train_split, "training", "--train-limit"),
                                     (config.test_limit, test_split, "test", "--test-limit")):
        if limit is not None and limit > len(split) and group.main:
            print(f"vaetool: {flag} {limit:,} is more than the {len(split):,} {part} images of {config.dataset}; "
                  "the run uses all of them.", file=sys.stderr)
    train_split = picking.subset(train_split, config.train_limit, config.seed)
    test_split = picking.subset(test_split, config.test_limit, config.seed)
    for split, part in ((train_split, "training"), (test_split, "test")):
        if len(split) == 0:
            raise VaetoolError(f"The {part} split of {config.dataset} is empty.")
    batch = 0 if options.compile else min(math.ceil(config.batch_size / group.world), len(train_split))
    _check_fits(meta_model, device, batch, objective.samples, half=config.precision != "fp32")
    del meta_model
    data_print = _data_print(train_split) if group.main else None  # only the process that writes checkpoints
    # Recorded so that images given to a trained model can be matched to its data (dark ink or light).
    model.config["background"] = images_background(train_split.images[:1000])
    if model.architecture.output_bias == "data-mean" and checkpoint is None:  # a resumed run restores its own
        model.architecture.start_output_at(model.likelihood.params_at(mean_image(train_split.images)))
    if model.conditional:
        _check_labels(train_split, test_split, dataset.num_classes)
    channels_last = channels_last_for(model, device, options.channels_last)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if device.type == "cpu":
        allocator.reuse_freed_memory()
    optimizer = adam(model, config.lr)
    schedule, _ = config.build_lr_schedule()

    def lr_at(epochs_done: float) -> float:
        # A pure function of the step, so a resumed run sets the same rates with nothing checkpointed.
        return config.lr * schedule.factor(epochs_done, config.epochs)

    autocast_dtype = PRECISIONS[config.precision]
    # fp16's narrow range needs the loss scaled so small gradients do not flush to zero; bf16 does not.
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    shuffle = torch.Generator().manual_seed(config.seed)
    n = len(train_split)
    steps = math.ceil(n / config.batch_size)
    model.config["training"]["epochs"] = config.epochs
    model.config["training"]["steps_per_epoch"] = steps
    # Before the restore, which then overwrites whatever state the objective builds and the RNG it draws.
    # Options settled only now (a schedule's length) are recorded, so a longer resume keeps them.
    context = TrainingContext(n, config.epochs, steps, config.lr, device, group.world)
    model.config["objective_options"].update(objective.begin(model, context))
    epoch, first_step, sums, metrics = 0, 0, None, []
    if checkpoint is not None:
        try:
            epoch, first_step, sums, metrics = _restore(checkpoint, model, optimizer, scaler, shuffle, device, run_dir,
                                                        objective, say=group.main)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:  # a file edited or damaged by hand
            raise VaetoolError(f"The checkpoint in {run_dir} does not fit the model it describes, so the run cannot "
                               f"resume ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}).") from exc
        if first_step >= steps:
            raise VaetoolError(f"The checkpoint in {run_dir} is {first_step} steps into an epoch of {steps}; "
                               "it is damaged, so the run cannot resume.")
        _note_changed_data(checkpoint[1].get("data"), data_print, group)
    if not group.main:
        sums = None  # the saved sums are global: one process carries them on
    data = _data_source(train_split, model, device, options, group)
    network = _network(model, device, options, group)
    fused_step = fused.for_run(model, objective, device, config.precision, group.active, bool(options.compile),
                               options.fused_step, optimizer)
    if group.main:  # every setting, once all are known good: what `vaetool train --config` replays
        config_file.save(run_dir, config, options, device_spec)

    progress.begin({"config": model.config, "device": str(device), "run_dir": run_dir, "train_size": n,
                    "test_size": len(test_split), "parameters": sum(p.numel() for p in model.parameters()),
                    "start_epoch": epoch, "start_step": first_step, "processes": group.world,
                    "streamed": data.streamed, "fused_step": fused_step is not None, "compiled": bool(options.compile),
                    # An autoencoder's ELBO is its reconstruction, a deterministic one: no likelihood bound.
                    "bound": "none" if model.autoencoder else objective.bound})
    refresh_every = max(1, steps // REFRESHES_PER_EPOCH)
    watch = Watch(math.prod(model.input_shape), objective.schedule(config.epochs).get("beta", 1.0), config.lr, run_dir,
                  metrics)
    curves = _Curves(run_dir / "curves.png")
    with _StopOnInterrupt(abort_on_repeat=not group.active) as interrupt:
        while epoch < config.epochs:
            started = time.perf_counter()
            epoch_shuffle_state = shuffle.get_state()  # replaying it rebuilds this epoch's order on resume
            order = torch.randperm(n, generator=shuffle)
            # Running sums of (loss, reconstruction, KL), kept on the device; the number of examples
            # they cover follows from the step, so nothing else crosses from the host each step.
            totals = torch.tensor(sums, device=device) if sums is not None else torch.zeros(3, device=device)
            sums, stop = None, False
            progress.epoch_start(epoch, config.epochs, steps, first_step)
            model.train()
            last_refresh = time.monotonic()
            batches = data.epoch(order, config.batch_size, first_step, steps)
            for step in range(first_step, steps):
                if stop or (interrupt.requested and not group.active):
                    totals = group.sum(totals)  # every process is here: under torchrun they stop together
                    if group.main:
                        _save_checkpoint(run_dir, model, optimizer, scaler, shuffle, epoch_shuffle_state, epoch, step,
                                         totals, metrics, objective, data_print)
                        save(model, run_dir / MODEL_FILE)
                        curves.draw(metrics, final=True)
                    return RunResult(run_dir, "interrupted", metrics, epoch, step)
                x, y, global_batch = next(batches)
                x = x.to(device, non_blocking=True).float().div_(255)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = y.to(device, non_blocking=True) if y is not None else None
                noise = None
                if group.active:
                    # The ε one process would draw for the global batch; this process's rows of it.
                    noise = model.draw_noise(global_batch, objective.samples, device)
                    noise = group.shard(noise) if noise is not None else None
                at = epoch + step / steps
                lr = lr_at(at)
                for param_group in optimizer.param_groups:  # a Python float: no device sync, fused Adam takes it
                    param_group["lr"] = lr
                if fused_step is not None:  # the same terms, their loss's gradient written into .grad by hand
                    terms = fused_step(x, at)
                else:
                    with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                        terms = network(x, y, noise, objective.samples)
                # What the latent kind adds to every objective (VQ's codebook and commitment terms) comes on top.
                loss = with_latent_loss(objective.loss(terms.weighted(model.likelihood.training_weight(x)), at), terms)
                if watch.start is None:  # the run's one extra host sync: the loss divergence is measured from
                    first = group.sum(torch.stack([loss.detach() * len(x), loss.new_tensor(float(len(x)))])).tolist()
                    watch.begin(first[0] / first[1])
                if fused_step is None:
                    optimizer.zero_grad(set_to_none=True)
                    # Each process's mean is weighted by its share of the global batch, so the gradient
                    # DistributedDataParallel averages is that of the global batch's mean loss.
                    share = len(x) * group.world / global_batch
                    scaler.scale(loss * share if group.active else loss).backward()
                if fused_step is None or not fused_step.stepped:  # it took Adam's step layer by layer
                    scaler.step(optimizer)
                scaler.update()
                objective.after_step(terms)
                with torch.no_grad():
                    totals += torch.stack([loss.detach() * len(x), *(t.detach() for t in terms.sums())])
                last = step == steps - 1
                if group.active:
                    refresh = last or (step + 1) % refresh_every == 0
                else:
                    refresh = last or time.monotonic() - last_refresh > REFRESH_SECONDS
                if refresh:
                    last_refresh = time.monotonic()
                    # The one host sync per refresh; with several processes also the one exchange,
                    # carrying whether any of them was asked to stop.
                    flag = torch.tensor([float(interrupt.requested)], device=device)
                    *reduced, stops = group.sum(torch.cat([totals, flag])).tolist()
                    loss_sum, rec_sum, kl_sum = reduced
                    stop = stops > 0
                    count = min((step + 1) * config.batch_size, n)
                    watch.refresh(epoch, step, loss_sum, count)
                    progress.update(step + 1, {"loss": loss_sum / count, "rec": rec_sum / count,
                                               "kl": kl_sum / count, **objective.schedule(at),
                                               **({} if schedule.constant else {"lr": lr})})
            train_seconds = time.perf_counter() - started
            if not all(bool(p.isfinite().all()) for p in model.parameters()):
                _diverged(run_dir, epoch, steps - 1, metrics)
            loss_sum, rec_sum, kl_sum = group.sum(totals).tolist()
            line = {"epoch": epoch + 1, "train_loss": loss_sum / n, "train_elbo": (rec_sum - kl_sum) / n,
                    "train_rec": rec_sum / n, "train_kl": kl_sum / n, **objective.schedule(epoch + 1)}
            if not schedule.constant:  # the rate of the epoch's last step, what the optimiser holds now;
                # a constant one is --lr, shown and recorded only as that
                line["lr"] = lr_at(epoch + (steps - 1) / steps)
            # Before anything of this epoch is saved; the ELBO is watched only where the KL is trained with a β.
            watch.epoch_end(epoch + 1, line["train_elbo"], line.get("beta", 0.0))
            epoch, first_step = epoch + 1, 0
            if group.main:  # the others wait at the barrier below
                # One sample of z, or none where the objective trains with z at the posterior mean.
                test = evaluate(model, test_split, seed=config.seed, samples=min(objective.samples, 1))
                line.update({f"test_{k}": v for k, v in test.items()})
                # When the epoch ended, as a Unix time: wall-clock keys end in "seconds" and are left out
                # wherever runs are compared.
                line.update({"train_seconds": train_seconds, "seconds": time.perf_counter() - started,
                             "unix_seconds": round(time.time(), 3)})
                metrics.append(line)
                # Which dimensions carry information: traverse shows the informative ones first.
                if not model.autoencoder:  # an autoencoder's KL is zero by construction, which ranks nothing
                    model.config["test_kl_per_dim"] = test["kl_per_dim"]
                _save_checkpoint(run_dir, model, optimizer, scaler, shuffle, shuffle.get_state(), epoch, 0, None,
                                 metrics, objective, data_print)
                save(model, run_dir / MODEL_FILE)
                _write_pictures(run_dir, model, test_split, config.seed)
                curves.draw(metrics, final=epoch == config.epochs)
                snapshots.after_epoch(run_dir, model, metrics, config.snapshot_every, config.keep_best, config.seed,
                                      objective.bound)
                progress.epoch_end(line)
            else:
                metrics.append(line)
            group.barrier()
    return RunResult(run_dir, "finished", metrics, epoch, 0)


class _Resident:
    """The training split as one uint8 tensor on the device; a batch is one gather."""

    streamed = False

    def __init__(self, split: Split, labelled: bool, device, group: distributed.Group):
        self.images = split.images.to(device)
        self.labels = split.labels.to(device) if labelled else None
        self.group = group

    def epoch(self, order: torch.Tensor, batch_size: int, first_step: int, steps: int):
        order = order.to(self.images.device)
        for step in range(first_step, steps):
            mine, size = self.group.batch(order, step, batch_size)
            # index_select rather than indexing: one row copy per image, where indexing's general kernel
            # took 46 against 3.5 µs for 128 MNIST images.
            yield (torch.index_select(self.images, 0, mine),
                   torch.index_select(self.labels, 0, mine) if self.labels is not None else None, size)


def _data_source(split: Split, model: VAE, device, options: RunOptions, group: distributed.Group):
    from vaetool import streaming

    stream = options.stream
    if stream is None:
        stream = split.file is not None and split.images.nbytes > RESIDENT_SHARE * memory_of(device)
    if not stream:
        return _Resident(split, model.conditional, device, group)
    if split.file is None:
        raise VaetoolError("This dataset is held in memory, so there is nothing to stream; --stream applies to "
                           "datasets decoded to a cache on disk, such as a folder of images.")
    return streaming.Batches(split, model.conditional, device, group, options.workers)


def _network(model: VAE, device, options: RunOptions, group: distributed.Group):
    """What each step calls for the ELBO terms: the model, compiled and/or wrapped for several processes."""
    if options.compile:
        # The networks only: tensors in, tensors out, the part worth fusing. The model's own
        # methods (and its state_dict) are untouched, so what is saved is the plain module.
        backend = options.compile if isinstance(options.compile, str) else "inductor"
        if backend not in _compile_backends(everything=True):  # torch's InvalidBackend comes from deep inside it
            raise VaetoolError(f"compile = {backend!r} names no torch.compile backend; use true, or one of "
                               f"{', '.join(_compile_backends())}.")
        if device.type != "cuda":  # inductor's C++ toolchain looks for CUDA too, and warns when there is none
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        model.architecture.encode = torch.compile(model.architecture.encode, backend=backend)
        model.architecture.decode = torch.compile(model.architecture.decode, backend=backend)
    if not group.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _compile_backends(everything: bool = False) -> list[str]:
    """torch.compile's backends: those it lists for users, or with its debugging ones too."""
    from torch._dynamo import list_backends

    return sorted({"inductor", *(list_backends(exclude_tags=()) if everything else list_backends())})


def _on_meta(build):
    """The model ``build`` makes, on the meta device (which allocates nothing), or None for a plugin that cannot
    be built there."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):  # the real build draws the same weights
        try:
            return build()
        except Exception:  # noqa: BLE001 — one that needs real tensors to build; the real build reports errors
            return None


def _check_fits(meta_model, device: torch.device, batch_size: int = 0, samples: int = 1, half: bool = False) -> None:
    """Refuse a run whose model state and one step's saved activations are more than the device's memory.

    Such a run is killed by the operating system without a word (or dies in the CUDA allocator), often
    after the data is read. ``meta_model`` is the run's model on the meta device (:func:`_on_meta`); one
    batch of ``batch_size`` goes through it there, which allocates nothing either. Its weights, Adam's two
    moments and the tensors the forward pass saves for the backward pass are all held at once in every
    step. That is less than a step needs (the gradients, the data and the backward pass's own tensors are
    left out), so this refuses only runs that cannot fit. With ``half`` (bf16 or fp16 autocast, which the
    meta device does not apply) every float32 activation counts at 2 bytes. With ``batch_size`` 0 (the
    networks compiled, whose saved tensors the compiler chooses), or for a plugin without meta kernels for
    its forward pass, the weights and moments alone are counted.
    """
    if meta_model is None:
        return
    state = sum(p.numel() * p.element_size() * (3 if p.requires_grad else 1) for p in meta_model.parameters()) + \
        sum(b.numel() * b.element_size() for b in meta_model.buffers())
    saved: dict[int, int] = {}

    def pack(tensor):
        size = 2 if half and tensor.dtype == torch.float32 else tensor.element_size()
        saved[id(tensor)] = tensor.numel() * size
        return tensor

    if batch_size:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            x = torch.zeros(batch_size, *meta_model.input_shape)
            y = torch.zeros(batch_size, dtype=torch.long) if meta_model.conditional else None
            try:
                with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
                    meta_model.train()(x, y, None, samples)
            except Exception:  # noqa: BLE001 — an operation without a meta kernel: the weights alone, then
                saved.clear()
    need, have = state + sum(saved.values()), memory_of(device)
    if need > have:
        where = f"the {device.type.upper()} device" if device.type != "cpu" else "this machine"
        trained = sum(p.numel() for p in meta_model.parameters() if p.requires_grad)
        what = f" and the activations of a batch of {batch_size}" if saved else ""
        raise VaetoolError(f"This run needs at least {need / 2**30:.1f} GiB (a model of {trained:,} parameters, "
                           f"Adam's moments{what}), but {where} has {have / 2**30:.1f} GiB; choose smaller "
                           "layers (--channels, --hidden), a smaller --batch-size or smaller images.")


def channels_last_for(model: torch.nn.Module, device: torch.device, asked: bool | None) -> bool:
    """Whether to train in the channels-last layout: as asked, else on for a network with 2-D
    convolutions on the CPU. There oneDNN computes convolutions in channels-last directly, while
    the default layout is reordered to its blocked one and back at every layer (a fifth of the conv
    VAE's convolution time, docs/benchmarks.md). On GPUs the choice is left to ``--channels-last``."""
    if asked is not None:
        return asked
    convolutions = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    return device.type == "cpu" and any(isinstance(m, convolutions) for m in model.modules())


def adam(model: torch.nn.Module, lr: float) -> torch.optim.Adam:
    """Adam over a module's parameters, with the fused kernel where the device has one."""
    # The fused kernel updates every parameter in one pass: about 25% faster per step on CPU.
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, ValueError):  # devices (or torch builds) without a fused Adam
        return torch.optim.Adam(model.parameters(), lr=lr)


def _check_labels(train_split: Split, test_split: Split, num_classes: int) -> None:
    for split in (train_split, test_split):
        if split.labels is None or split.labels.min() < 0 or split.labels.max() >= num_classes:
            raise VaetoolError(f"The dataset's labels must lie in 0 to {num_classes - 1} to train a conditional model.")


def _diverged(run_dir: Path, epoch: int, step: int, metrics: list) -> None:
    kept = f"the model of epoch {len(metrics)} is kept in {run_dir}" if metrics else "no epoch had finished"
    raise Diverged(f"Training went non-finite at epoch {epoch + 1}, step {step + 1}; {kept}. "
                   "Try a lower --lr, a larger --sigma, or --encoder-scale softplus.")


def evaluate(model: VAE, split: Split, seed: int = 0, batch_size: int = EVAL_BATCH, samples: int = 1) -> dict[str, Any]:
    """Mean ELBO (β = 1), reconstruction and KL (also per dimension) over a split, in nats per example.

    A dedicated generator makes the single-sample estimate repeatable and leaves the training RNG
    untouched; see :func:`vaetool.metrics.elbo_terms`. ``samples=0``: z is the posterior mean, for
    an objective that trains the encoder deterministically.
    """
    return metrics.elbo_terms(model, split.images, split.labels, seed=seed, batch_size=batch_size, samples=samples)


# -- checkpoints: safetensors, never pickle ----------------------------------------------------

def _save_checkpoint(run_dir: Path, model: VAE, optimizer, scaler, shuffle, shuffle_state, epoch: int, step: int,
                     totals, metrics: list, objective, data_print: dict[str, Any]) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    header = {"schema": 1, "config": model.config,
              "progress": {"epoch": epoch, "step": step, "sums": totals.tolist() if totals is not None else None},
              "optimizer": _optimizer_state(optimizer, "optimizer", tensors), "data": data_print}
    metrics_text = "".join(json.dumps(m) + "\n" for m in metrics)
    if len(metrics_text) <= METRICS_IN_CHECKPOINT:
        # The completed epochs' lines of metrics.jsonl: a resumption checks the file against them and
        # restores it from here when it was lost, cut short or damaged.
        header["metrics"] = metrics
    # An objective's own trainable state (FactorVAE's discriminator) and optimiser, when it has them.
    if objective.module is not None:
        tensors.update({f"objective.{k}": v for k, v in objective.module.state_dict().items()})
    if objective.optimizer is not None:
        header["objective_optimizer"] = _optimizer_state(objective.optimizer, "objective_optimizer", tensors)
    tensors["rng.cpu"] = torch.get_rng_state()
    tensors["rng.shuffle"] = shuffle_state
    if model.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(model.device)
    if scaler.is_enabled():
        header["grad_scaler"] = scaler.state_dict()
    save_tensors(run_dir / CHECKPOINT_FILE, tensors, header)
    atomic_write_text(run_dir / METRICS_FILE, metrics_text)


# The metrics a checkpoint keeps, in characters of JSON: 6,000 epochs of a 16-D model, a quarter of the
# header size a load accepts (validate.MAX_HEADER_CHARS). A longer history is kept in metrics.jsonl only,
# and a resumption reads that file as it is.
METRICS_IN_CHECKPOINT = 4 << 20

DATA_PRINT_BYTES = 1 << 30  # hashed whole up to this size (0.6 s in memory); a larger split by sampled rows


def _data_print(split: Split) -> dict[str, Any]:
    """What identifies a run's training images, kept in its checkpoint so a resumption can tell when they have
    changed (a folder of images edited between the two): their count, shape and a SHA-256 of the images and
    labels — of all of them, or of evenly spaced rows making up :data:`DATA_PRINT_BYTES` of a larger split."""
    n, per_image = len(split), max(1, split.images[0].numel() if len(split) else 1)
    count = DATA_PRINT_BYTES // per_image
    # Integer steps: float32 indices (linspace's) round past the last row beyond 2²⁴ images.
    rows = None if n * per_image <= DATA_PRINT_BYTES else torch.arange(count) * (n - 1) // max(1, count - 1)
    digest = hashlib.sha256()
    for tensor in (split.images, split.labels):
        if tensor is not None:
            picked = tensor if rows is None else tensor[rows]
            digest.update(picked.contiguous().numpy().data)
    return {"images": n, "shape": list(split.images.shape[1:]), "sha256": digest.hexdigest()}


def _note_changed_data(saved, now: dict[str, Any], group: distributed.Group) -> None:
    """Say so when a resumed run's training images are not those its checkpoint was trained on: it goes on, on
    the images as they are now, but it is no longer the run it would have been. (Checkpoints from before
    vaetool recorded them say nothing.)"""
    if not isinstance(saved, dict) or saved == now or not group.main:
        return
    count = (f" ({saved.get('images'):,} images then, {now['images']:,} now)"
             if isinstance(saved.get("images"), int) and saved.get("images") != now["images"] else "")
    print(f"vaetool: the training images have changed since this run's checkpoint was written{count}; it goes on "
          "with the images as they are now, so it is no longer an exact continuation.", file=sys.stderr)


def _optimizer_state(optimizer, prefix: str, tensors: dict) -> dict[str, Any]:
    """An optimiser's tensors put into ``tensors`` under ``prefix``; the rest, JSON, returned for the header."""
    state = optimizer.state_dict()
    scalars = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return {"param_groups": state["param_groups"], "scalars": scalars}


def _load_optimizer(optimizer, prefix: str, tensors: dict, saved: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = defaultdict(dict)
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            _, index, name = key.split(".", 2)
            state[int(index)][name] = value
    for key, value in saved["scalars"].items():
        index, name = key.split(".", 1)
        state[int(index)][name] = value
    optimizer.load_state_dict({"state": dict(state), "param_groups": saved["param_groups"]})


def _check_checkpoint_header(header, path: Path) -> None:
    """The checkpoint's own record of where the run stands, before anything is built from it: the file
    is safetensors, but its JSON header could say anything (an epoch of −1 rewrote the metrics)."""
    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    progress = header.get("progress") if isinstance(header, dict) else None
    sums = progress.get("sums") if isinstance(progress, dict) else None
    fine = (isinstance(header, dict) and isinstance(header.get("config"), dict) and isinstance(progress, dict)
            and whole(progress.get("epoch")) and whole(progress.get("step"))
            and (sums is None or (isinstance(sums, list) and len(sums) == 3
                                  and all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in sums)))
            and isinstance(header.get("optimizer"), dict)
            and (header.get("metrics") is None
                 or (isinstance(header["metrics"], list) and len(header["metrics"]) == progress.get("epoch")
                     and all(isinstance(m, dict) for m in header["metrics"]))))
    if not fine:
        raise VaetoolError(f"{path} is damaged: its record of the run's progress, optimiser, config or metrics is "
                           "missing or malformed, so the run cannot resume.")


def _restore(checkpoint, model: VAE, optimizer, scaler, shuffle, device, run_dir: Path, objective, say: bool = True):
    tensors, header = checkpoint
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    _load_optimizer(optimizer, "optimizer", tensors, header["optimizer"])
    if objective.module is not None:
        objective.module.load_state_dict({k[len("objective."):]: v for k, v in tensors.items()
                                          if k.startswith("objective.")})
    if objective.optimizer is not None:
        _load_optimizer(objective.optimizer, "objective_optimizer", tensors, header["objective_optimizer"])
    if scaler.is_enabled() and "grad_scaler" in header:
        scaler.load_state_dict(header["grad_scaler"])
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    shuffle.set_state(tensors["rng.shuffle"])
    progress = header["progress"]
    metrics = _restored_metrics(run_dir, header, progress["epoch"], say)
    return progress["epoch"], progress["step"], progress["sums"], metrics


def _restored_metrics(run_dir: Path, header: dict[str, Any], epochs: int, say: bool) -> list[dict[str, Any]]:
    """The metrics of the ``epochs`` epochs a checkpoint was saved after. Checkpoints keep them (up to
    :data:`METRICS_IN_CHECKPOINT`; beyond that, and for checkpoints of earlier vaetool versions,
    metrics.jsonl is read as it is), so a metrics.jsonl that is missing, damaged or a line short (the
    process stopped between writing the two files) is restored from the checkpoint, and one that records
    other epochs (a checkpoint or metrics file of another run copied in) is refused before anything is
    written."""
    metrics_file, saved = run_dir / METRICS_FILE, header.get("metrics")
    damaged = None
    try:
        on_disk = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()] \
            if metrics_file.is_file() else None
    except ValueError as exc:
        on_disk, damaged = None, exc
    if saved is None:
        if damaged is not None:
            raise VaetoolError(f"{metrics_file} has a damaged line ({damaged}); remove that line to resume.")
        return (on_disk or [])[:epochs]
    lines = [json.dumps(m, sort_keys=True) for m in saved]
    if on_disk is not None:
        lines_on_disk = [json.dumps(m, sort_keys=True) for m in on_disk]
        shorter = min(len(lines), len(lines_on_disk))
        if lines_on_disk[:shorter] != lines[:shorter]:
            raise VaetoolError(f"{metrics_file} records other epochs than the checkpoint beside it, so one of the two "
                               "comes from another run; put back this run's own file, or train under another --name.")
        if len(lines_on_disk) >= len(lines):
            return saved
    short = len(lines) - len(on_disk or [])
    why = (f"had a damaged line ({damaged})" if damaged is not None else "was missing" if on_disk is None
           else f"lacked the last {'epoch' if short == 1 else f'{short} epochs'}")
    if saved and say:
        epochs_saved = "its epoch" if len(saved) == 1 else f"its {len(saved)} epochs"
        print(f"vaetool: {metrics_file} {why}; the run's metrics of {epochs_saved} are restored from its checkpoint.",
              file=sys.stderr)
    return saved


# -- pictures -----------------------------------------------------------------------------------

class _Curves:
    """``curves.png``, redrawn after an epoch once the last drawing is ``CURVES_SECONDS`` old, and
    always after the run's last epoch or an interruption. matplotlib takes about half a second to
    draw it, a tenth of an MLP's epoch on a CPU, so short epochs share one drawing."""

    def __init__(self, path: Path):
        self.path, self.drawn_at, self.epochs_drawn = path, None, None

    def draw(self, metrics: list, final: bool) -> None:
        from vaetool import plots

        due = self.drawn_at is None or time.monotonic() - self.drawn_at >= CURVES_SECONDS
        if metrics and len(metrics) != self.epochs_drawn and (final or due):
            plots.training_curves(metrics, self.path)
            self.drawn_at, self.epochs_drawn = time.monotonic(), len(metrics)


def _write_pictures(run_dir: Path, model: VAE, test_split: Split, seed: int) -> None:
    from vaetool import images

    model.eval()
    with torch.no_grad():
        x = test_split.images[:16].to(model.device).float().div_(255)
        y = test_split.labels[:16].to(model.device) if model.conditional else None
        rec = model.reconstruct(x, y)
        pairs = torch.cat([x[:8], rec[:8], x[8:], rec[8:]])  # a row of originals above their reconstructions
        generator = torch.Generator(device=model.device).manual_seed(seed)
        classes = min(model.num_classes, 10) if model.conditional else 0
        if classes:  # one row per class
            y = torch.arange(classes, device=model.device).repeat_interleave(8)
            samples = model.sample(len(y), y, generator=generator)
        else:
            samples = model.sample(64, generator=generator)
    model.train()
    images.save_png(images.grid(pairs, nrow=8), run_dir / "reconstructions.png")
    sample_grid = images.grid(samples, nrow=8)
    if classes:
        sample_grid = images.with_row_labels(sample_grid, images.class_labels(model.config, range(classes)), rows=classes)
    images.save_png(sample_grid, run_dir / "samples.png")
