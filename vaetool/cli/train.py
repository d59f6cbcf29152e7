"""``vaetool train``: train a VAE and write a run directory."""
from __future__ import annotations

import contextlib
import dataclasses
import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from vaetool.cli.common import handle_errors, import_torch, key_values, literal
from vaetool.cli.options import SEED_MAX
from vaetool.errors import VaetoolError

MAX_THREADS = 1024
MODEL, OBJECTIVE, DATA, OPTIM, RUN, SPEED = "Model", "Objective", "Data", "Optimisation", "Run", "Speed"
SCHEDULE_NAMES = {"beta": "β", "capacity": "C"}


class Scale(str, Enum):
    exp = "exp"
    softplus = "softplus"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Binarize(str, Enum):
    none = "none"
    dynamic = "dynamic"
    static = "static"
    threshold = "threshold"


@handle_errors
def train(
    arch: Annotated[Optional[str], typer.Option("--arch", "-a", help="Architecture: linear, mlp, conv, cvae or a plugin's. \\[default: conv]", rich_help_panel=MODEL)] = None,
    likelihood: Annotated[Optional[str], typer.Option("--likelihood", "-l", help="Decoder distribution: bernoulli, continuous-bernoulli, gaussian, logistic or a plugin's. \\[default: bernoulli]", rich_help_panel=MODEL)] = None,
    latent_dim: Annotated[Optional[int], typer.Option("--latent-dim", "-z", help="Size of the latent code. \\[default: 16]", rich_help_panel=MODEL)] = None,
    encoder_scale: Annotated[Optional[Scale], typer.Option(help="How the encoder outputs σ: exp of a log-variance, or softplus. \\[default: exp]", rich_help_panel=MODEL)] = None,
    hidden: Annotated[Optional[str], typer.Option(help="Hidden widths for mlp/cvae, e.g. 512,256.", rich_help_panel=MODEL)] = None,
    channels: Annotated[Optional[str], typer.Option(help="Conv stage widths for conv/cvae, e.g. 32,64,128.", rich_help_panel=MODEL)] = None,
    sigma: Annotated[Optional[float], typer.Option(help="Fixed σ of the gaussian likelihood (unset: σ is learned).", rich_help_panel=MODEL)] = None,
    binarize: Annotated[Optional[Binarize], typer.Option(help="Bernoulli data: grey levels (none), a fresh binarization each batch (dynamic), one fixed stochastic binarization (static) or grey > 0.5 (threshold); the encoder sees the same binary images. \\[default: none]", rich_help_panel=MODEL)] = None,
    arch_opt: Annotated[Optional[list[str]], typer.Option(help="Any architecture option as KEY=VALUE (repeatable).", rich_help_panel=MODEL)] = None,
    likelihood_opt: Annotated[Optional[list[str]], typer.Option(help="Any likelihood option as KEY=VALUE (repeatable).", rich_help_panel=MODEL)] = None,
    prior: Annotated[Optional[str], typer.Option(help="Prior p(z): standard-normal, vamp (the VampPrior) or a plugin's. \\[default: standard-normal]", rich_help_panel=MODEL)] = None,
    prior_opt: Annotated[Optional[list[str]], typer.Option(help="Any prior option as KEY=VALUE (repeatable).", rich_help_panel=MODEL)] = None,
    latent: Annotated[Optional[str], typer.Option(help="What the latent code is: gaussian, vq (a vector-quantised codebook, VQ-VAE), hierarchical (stochastic layers, e.g. --latent-opt dims=50) or a plugin's. \\[default: gaussian]", rich_help_panel=MODEL)] = None,
    latent_opt: Annotated[Optional[list[str]], typer.Option(help="Any latent option as KEY=VALUE (repeatable), e.g. codebook=512.", rich_help_panel=MODEL)] = None,
    objective: Annotated[Optional[str], typer.Option(help="How the model is trained: elbo, tcvae, capacity, iwae, infovae, wae, factorvae, dipvae or a plugin's (see vaetool plugins). \\[default: elbo]", rich_help_panel=OBJECTIVE)] = None,
    objective_opt: Annotated[Optional[list[str]], typer.Option(help="Any objective option as KEY=VALUE (repeatable), e.g. k=5 for iwae.", rich_help_panel=OBJECTIVE)] = None,
    beta: Annotated[Optional[str], typer.Option("--beta", "-b", help="Weight of the KL term (β-VAE); 0 is the autoencoder limit. A list (0,0.1,1,4) trains one run per value: a β sweep. \\[default: 1]", rich_help_panel=OBJECTIVE)] = None,
    autoencoder: Annotated[bool, typer.Option("--autoencoder", help="Train a deterministic autoencoder: z is the encoder mean, no noise, no KL.", rich_help_panel=OBJECTIVE)] = False,
    warmup: Annotated[Optional[float], typer.Option(help="Epochs over which β rises linearly from 0 (KL warm-up). \\[default: 0]", rich_help_panel=OBJECTIVE)] = None,
    free_bits: Annotated[Optional[float], typer.Option(help="Free bits: nats of KL per latent dimension that are not penalised. \\[default: 0]", rich_help_panel=OBJECTIVE)] = None,
    tc_weight: Annotated[Optional[float], typer.Option(help="β-TCVAE: weight of the total correlation, the other KL terms keeping weight 1 (e.g. 6); short for --objective tcvae --objective-opt tc_weight=B. \\[default: off]", rich_help_panel=OBJECTIVE)] = None,
    capacity: Annotated[Optional[float], typer.Option(help="Controlled capacity increase: the KL target C in nats, reached by the end of --capacity-epochs; --beta is the weight γ of |KL − C| (e.g. 1000); short for --objective capacity --objective-opt capacity=C. \\[default: off]", rich_help_panel=OBJECTIVE)] = None,
    capacity_epochs: Annotated[Optional[float], typer.Option(help="Epochs over which the KL target rises linearly from 0 to --capacity. \\[default: all epochs]", rich_help_panel=OBJECTIVE)] = None,
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="Dataset: mnist, fashion-mnist, kmnist, cifar10, shapes, a plugin's, or a folder of images. \\[default: mnist]", rich_help_panel=DATA)] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Where datasets are stored. \\[default: $VAETOOL_DATA, else the user cache]", rich_help_panel=DATA)] = None,
    data_opt: Annotated[Optional[list[str]], typer.Option(help="Any dataset option as KEY=VALUE (repeatable), e.g. size=64.", rich_help_panel=DATA)] = None,
    train_limit: Annotated[Optional[int], typer.Option(help="Train on N training images drawn at random (seeded by --seed) — a quick look. \\[default: all]", rich_help_panel=DATA)] = None,
    test_limit: Annotated[Optional[int], typer.Option(help="Evaluate on N test images drawn at random (seeded by --seed). \\[default: all]", rich_help_panel=DATA)] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", "-e", help="Epochs to train (with --resume: the new total). \\[default: 10]", rich_help_panel=OPTIM)] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="\\[default: 128]", rich_help_panel=OPTIM)] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate (with a schedule: the rate it scales). \\[default: 0.001]", rich_help_panel=OPTIM)] = None,
    lr_schedule: Annotated[Optional[str], typer.Option(help="How the learning rate moves over the run: constant, step, cosine, burda (the IWAE paper's eight passes) or a plugin's (see vaetool plugins). \\[default: constant]", rich_help_panel=OPTIM)] = None,
    lr_schedule_opt: Annotated[Optional[list[str]], typer.Option(help="Any learning-rate schedule option as KEY=VALUE (repeatable), e.g. every=10 and gamma=0.5 for step, final=0.01 or warmup=2 for cosine, fit=true for burda.", rich_help_panel=OPTIM)] = None,
    seed: Annotated[Optional[int], typer.Option(min=0, max=SEED_MAX, help="Seed for initialisation, shuffling and noise. \\[default: 0]", rich_help_panel=OPTIM)] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:N or mps (auto: CUDA, then MPS, then CPU). \\[default: auto]", rich_help_panel=RUN)] = None,
    config_path: Annotated[Optional[Path], typer.Option("--config", "-c", help="Start from the settings in a config file (a run's config.toml, or its run directory); flags given beside it override them.", rich_help_panel=RUN)] = None,
    logger: Annotated[Optional[list[str]], typer.Option("--logger", help="Also record the run for a tracker: tensorboard (event files in the run directory), mlflow ($MLFLOW_TRACKING_URI, else runs/mlflow.db) or an installed plugin's; repeatable.", rich_help_panel=RUN, show_default=False)] = None,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the config (TOML) these flags make, plugin defaults filled in, and exit without training.", rich_help_panel=RUN)] = False,
    name: Annotated[Optional[str], typer.Option(help="Run name: the run goes to RUNS_DIR/NAME. \\[default: from the settings]", rich_help_panel=RUN)] = None,
    runs_dir: Annotated[Optional[Path], typer.Option(help="Where runs are written. \\[default: $VAETOOL_RUNS, else ./runs]", rich_help_panel=RUN)] = None,
    snapshot_every: Annotated[Optional[int], typer.Option(help="Every N epochs keep snapshots/epoch-NNN/ (model, samples, reconstructions) and a strip of samples across epochs; --model RUN:epoch-N selects one.", rich_help_panel=RUN)] = None,
    keep_best: Annotated[bool, typer.Option("--keep-best", help="Keep best.safetensors, the epoch with the highest test ELBO (or the objective's bound; the test log p(x|z) for the WAE family, which has none); --model RUN:best selects it.", rich_help_panel=RUN)] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run named by --name (else the latest run) from its checkpoint.", rich_help_panel=RUN)] = False,
    precision: Annotated[Optional[Precision], typer.Option(help="The networks' arithmetic: fp32, or bf16/fp16 mixed precision (autocast; the likelihood and KL stay fp32). \\[default: fp32]", rich_help_panel=SPEED)] = None,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the encoder and decoder: slower start, faster steps on a GPU.", rich_help_panel=SPEED)] = False,
    channels_last: Annotated[Optional[bool], typer.Option("--channels-last/--no-channels-last", help="Channels-last memory layout for convolutions. \\[default: on for convolutions on the CPU, off on GPUs]", rich_help_panel=SPEED, show_default=False)] = None,
    fused_step: Annotated[Optional[bool], typer.Option("--fused-step/--no-fused-step", help="The textbook MLP VAE's step written out without autograd on the CPU: the same gradient, faster (MLP, relu or tanh, Gaussian latent, standard normal prior, Bernoulli, ELBO, fp32). \\[default: wherever it applies]", rich_help_panel=SPEED, show_default=False)] = None,
    stream: Annotated[Optional[bool], typer.Option("--stream/--no-stream", help="Stream training batches from the dataset's disk cache through worker processes instead of holding it on the device. \\[default: when it exceeds a quarter of the device's memory]", rich_help_panel=SPEED)] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes reading streamed batches. \\[default: up to 4]", rich_help_panel=SPEED)] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch's arithmetic (1 is often fastest for small models on a busy machine). \\[default: torch's choice]", rich_help_panel=SPEED)] = None,
    nproc: Annotated[Optional[int], typer.Option(help="Train data-parallel in N processes on this machine (one per GPU, or CPU processes): runs torchrun --standalone --nproc-per-node N.", rich_help_panel=SPEED)] = None,
) -> None:
    """Train a VAE and write a run directory: model, metrics, reconstructions, samples and curves.

    [b]Examples[/b]

      vaetool train --data shapes                          [dim]# the embedded sprites, offline[/dim]
      vaetool train --arch conv --beta 4                   [dim]# β-VAE on MNIST[/dim]
      vaetool train --arch linear --likelihood gaussian --sigma 0.1 --latent-dim 16
      vaetool train --arch cvae                            [dim]# conditional on the digit[/dim]
      vaetool train --prior vamp --prior-opt components=500 [dim]# the VampPrior[/dim]
      vaetool train --latent vq --latent-opt codebook=512 --arch conv   [dim]# a VQ-VAE[/dim]
      vaetool train --arch mlp --beta 0,0.1,1,4,10         [dim]# a β sweep: one run per value[/dim]
      vaetool train --objective iwae --objective-opt k=5   [dim]# another family: see vaetool plugins[/dim]
      vaetool train --lr-schedule cosine --lr-schedule-opt warmup=1   [dim]# cosine decay after a warm-up[/dim]
      vaetool train --train-limit 5000                     [dim]# a quick look on a seeded subset[/dim]
      vaetool train --snapshot-every 1 --keep-best         [dim]# per-epoch pictures, best model[/dim]
      vaetool train --likelihood-opt reduction=mean        [dim]# the averaging bug, on purpose[/dim]
      vaetool train --arch conv --precision bf16 --compile [dim]# faster on a GPU[/dim]
      vaetool train --nproc 4                              [dim]# data-parallel on 4 GPUs[/dim]
    """
    if nproc is not None:
        _launch(nproc)
    for flag, value, low in (("--workers", workers, 0), ("--threads", threads, 1)):
        if value is not None and value < low:
            raise VaetoolError(f"{flag} must be at least {low}, not {value}.")
    if threads is not None and threads > MAX_THREADS:  # OpenMP fails to start, or crashes, long before 100,000
        raise VaetoolError(f"--threads must be at most {MAX_THREADS}, not {threads}.")
    torch = import_torch()

    from vaetool import config_file, distributed, lr_schedules, runs, training

    if threads is not None:
        torch.set_num_threads(threads)
    if config_path is not None and resume:
        raise VaetoolError("--config starts a new run from a config file; --resume continues a run with its own. "
                           "Give one or the other.")
    if config_path is not None:
        file_config, file_options, file_device = config_file.load(config_path)
    else:
        file_config, file_options, file_device = training.TrainConfig(), training.RunOptions(), None
    options = config_file.replace(file_options, _given(compile=compile_ or None, channels_last=channels_last,
                                                        fused_step=fused_step, stream=stream, workers=workers))
    if options.workers is not None and options.workers < 0:  # from the file: the flag was checked above
        raise VaetoolError(f"workers must be at least 0, not {options.workers}.")
    device = device or file_device or "auto"
    root = runs.runs_root(runs_dir)
    if name is not None:  # an empty --name is a mistake, not a request for the default name
        runs.named(root, name)
    if resume:
        changed = {"--arch": arch, "--likelihood": likelihood, "--latent-dim": latent_dim, "--encoder-scale": encoder_scale,
                   "--hidden": hidden, "--channels": channels, "--sigma": sigma, "--binarize": binarize,
                   "--arch-opt": arch_opt, "--likelihood-opt": likelihood_opt, "--prior": prior, "--prior-opt": prior_opt,
                   "--latent": latent, "--latent-opt": latent_opt,
                   "--objective": objective, "--objective-opt": objective_opt, "--beta": beta,
                   "--autoencoder": autoencoder or None, "--warmup": warmup, "--free-bits": free_bits,
                   "--tc-weight": tc_weight, "--capacity": capacity, "--capacity-epochs": capacity_epochs, "--data": data,
                   "--data-opt": data_opt, "--batch-size": batch_size, "--lr": lr, "--lr-schedule": lr_schedule,
                   "--lr-schedule-opt": lr_schedule_opt, "--seed": seed,
                   "--precision": precision, "--train-limit": train_limit, "--test-limit": test_limit,
                   "--snapshot-every": snapshot_every, "--keep-best": keep_best or None}
        given = [flag for flag, value in changed.items() if value is not None and value is not False and value != []]
        if given:
            raise VaetoolError(f"{', '.join(given)} cannot change when resuming; start a new run instead.")
        run_dir = runs.named(root, name) if name else runs.latest_run(root)
        if run_dir is None:
            raise VaetoolError(f"There is no run in {root}/ to resume.")
        if not name:
            from vaetool.cli import output

            output.note(f"Resuming the latest run, {run_dir} (--name picks another).")
        reporter, progress = _progress(run_dir, logger)
        with contextlib.closing(progress):  # however training ends, the loggers write out
            result = training.resume(run_dir, epochs=epochs, device=device, data_dir=data_dir, progress=progress,
                                     options=options)
        reporter.finish(result)
        return

    if autoencoder and beta is not None:
        raise VaetoolError("--beta has no effect with --autoencoder, which has no KL term; give one or the other.")
    betas = _betas(beta)
    base = config_file.replace(file_config, _given_settings(
        data, arch, likelihood, prior, arch_opt, likelihood_opt, prior_opt, data_opt, objective_opt=objective_opt,
        latent_opt=latent_opt, lr_schedule_opt=lr_schedule_opt, objective=objective, latent=latent,
        lr_schedule=lr_schedule, hidden=_list(hidden, "--hidden"),
        channels=_list(channels, "--channels"), sigma=sigma, binarize=binarize.value if binarize else None,
        autoencoder=autoencoder or None, latent_dim=latent_dim,
        encoder_scale=encoder_scale.value if encoder_scale else None, warmup=warmup, free_bits=free_bits,
        tc_weight=tc_weight, capacity=capacity, capacity_epochs=capacity_epochs, epochs=epochs,
        batch_size=batch_size, lr=lr, seed=seed, precision=precision.value if precision else None,
        train_limit=train_limit, test_limit=test_limit, snapshot_every=snapshot_every, keep_best=keep_best or None))
    data_name = Path(base.dataset_options["path"]).name if base.dataset == "folder" else base.dataset
    plans = []
    for value in betas:  # every run is planned and checked before the first one starts
        config = dataclasses.replace(base, **_given(beta=value))
        config.check()
        fresh = None  # the name a fresh folder is found for (name, name-2, …); None: --name exactly
        if name and len(betas) > 1:
            fresh = f"{name}-beta{value:g}"
        elif not name:
            # What makes the model another kind (its prior, its latent) leads, then how it was trained.
            suffix = "".join(f"-{chosen}" for chosen, default in ((config.prior, "standard-normal"),
                                                                  (config.latent, "gaussian")) if chosen != default)
            # A latent size other than the default is part of the model: -z2, where a bare -2 would read
            # as the second run of that name.
            suffix += f"-z{config.latent_dim}" if config.latent_dim != training.TrainConfig.latent_dim else ""
            suffix += "-ae" if config.autoencoder else (f"-beta{value:g}" if value is not None else "")
            suffix += (f"-tc{config.tc_weight:g}" if config.tc_weight is not None
                       else f"-cap{config.capacity:g}" if config.capacity is not None else "")
            suffix += f"-{config.objective}" if config.objective else ""
            suffix += f"-{config.lr_schedule}" if config.lr_schedule != lr_schedules.DEFAULT else ""
            fresh = f"{config.architecture}-{data_name}{suffix}"
        plans.append((config, runs.fresh_run_dir(root, fresh) if fresh else runs.named(root, name), fresh))
    if len({run_dir for _, run_dir, _ in plans}) < len(plans):
        raise VaetoolError("Each β of a sweep must be different.")
    if print_config:
        for i, (config, run_dir, _) in enumerate(plans):
            head = f"# run {i + 1} of {len(plans)}: {run_dir}\n" if len(plans) > 1 else ""
            typer.echo(head + config_file.dumps(config_file.settings(config, options, device)))
        return
    ran = []
    for config, run_dir, fresh in plans:
        with contextlib.ExitStack() as held:
            if fresh and not distributed.launched():
                # The folder is taken under its lock only now: a run started alongside under the same
                # name, which found the same folder free, moves on to the next one instead of failing.
                run_dir = held.enter_context(runs.claim_fresh(root, fresh))
            reporter, progress = _progress(run_dir, logger)
            if fresh and run_dir.name != fresh:  # said once the run starts, not before a refused setting
                reporter.note = (f"{root / fresh} holds another run; this one goes to {run_dir} "
                                 "(--name chooses the name).")
            with contextlib.closing(progress):  # however training ends, the loggers write out
                result = training.train(config, run_dir, device=device, data_dir=data_dir, progress=progress,
                                        options=options)
        ran.append(run_dir)
        reporter.finish(result)
    if len(plans) > 1 and distributed.is_main():
        typer.echo(f"Trained {len(plans)} runs. Compare them with:\n"
                   f"  vaetool compare {' '.join(str(run_dir) for run_dir in ran)}")


def _launch(nproc: int) -> None:
    """Run this same command under torchrun in ``nproc`` processes, and exit with its status."""
    import os
    import signal
    import subprocess
    import sys

    if nproc < 1:
        raise VaetoolError(f"--nproc must be at least 1, not {nproc}.")
    if os.environ.get("WORLD_SIZE"):
        raise VaetoolError("--nproc starts torchrun itself; under torchrun, leave it out.")
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    from vaetool.cli.torchrun import TorchrunOutput

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "vaetool", *args]
    # torchrun sets one OpenMP thread per process where none is set, and prints a banner saying so.
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    # Ctrl-C reaches torchrun and the training processes from the terminal; they stop and save,
    # and this process only waits for them, passing on what they print without torchrun's own
    # traceback and report of a failed process (TorchrunOutput).
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, errors="replace") as process:
            output = TorchrunOutput(sys.stderr)
            for line in process.stderr:
                output.line(line)
            output.close()
        code = output.exit_code if process.returncode and output.exit_code else process.returncode
    finally:
        signal.signal(signal.SIGINT, previous)
    raise typer.Exit(code)


def _progress(run_dir: Path, logger_names: list[str] | None):
    """The terminal display, and everything training reports to: it, steps.jsonl and each --logger."""
    from vaetool import loggers

    reporter = _RichProgress(run_dir)
    built = [loggers.build(name, run_dir) for name in dict.fromkeys(logger_names or [])]
    return reporter, loggers.Fanout([reporter, loggers.StepsFile(run_dir), *built])


def _given_settings(data, arch, likelihood, prior, arch_opt, likelihood_opt, prior_opt, data_opt, *, objective_opt,
                    latent_opt, lr_schedule_opt, hidden, channels, sigma, binarize, **settings) -> dict:
    """The TrainConfig settings the flags give (only those given), plugin options as dicts."""
    given = _given(architecture=arch, likelihood=likelihood, prior=prior, **settings)
    if data is not None:
        from vaetool.picking import resolve_dataset

        given["dataset"], dataset_options = resolve_dataset(data)
    else:
        dataset_options = {}
    for key, value in (("architecture_options", {**key_values(arch_opt, "--arch-opt"),
                                                  **_given(hidden=hidden, channels=channels)}),
                       ("likelihood_options", {**key_values(likelihood_opt, "--likelihood-opt"),
                                               **_given(sigma=sigma, binarize=binarize)}),
                       ("prior_options", key_values(prior_opt, "--prior-opt")),
                       ("latent_options", key_values(latent_opt, "--latent-opt")),
                       ("objective_options", key_values(objective_opt, "--objective-opt")),
                       ("lr_schedule_options", key_values(lr_schedule_opt, "--lr-schedule-opt")),
                       ("dataset_options", {**dataset_options, **key_values(data_opt, "--data-opt")})):
        if value:
            given[key] = value
    return given


def _betas(text: str | None) -> list[float | None]:
    if text is None:
        return [None]
    value = literal(text, "--beta")
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise VaetoolError(f"--beta takes a number or a comma-separated list of numbers, not {text!r}.")
    if not all(math.isfinite(v) for v in values):
        raise VaetoolError(f"--beta must be finite, not {text!r}.")
    return [float(v) for v in values]


def _listed(options: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items())


def _given(**options):
    """Only the options the user actually gave: the rest must not override any default."""
    return {k: v for k, v in options.items() if v is not None}


def _list(text: str | None, flag: str):
    """``--hidden 512,256``: positive whole numbers, checked here rather than deep in a constructor."""
    if text is None:
        return None
    value = literal(text, flag)
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise VaetoolError(f"{flag} takes positive whole numbers separated by commas, e.g. 512,256; not {text!r}.")
    return values


class _RichProgress:
    """The trainer's progress as a rich bar with live loss, reconstruction and KL, a line per epoch
    and a summary table at the end."""

    def __init__(self, run_dir: Path):
        from vaetool import distributed
        from vaetool.cli import output

        self.run_dir = run_dir
        # Progress and epoch lines are talk (-q silences them); off a terminal they are never wrapped.
        self.console = output.console(talk=True)
        self.results = output.console()
        if not distributed.is_main():  # under torchrun, rank 0 speaks for all
            self.console.quiet = self.results.quiet = True
        self.bar = None
        self.task = None
        self.bound = "elbo"
        self.note: str | None = None  # said on stderr as the run begins

    def begin(self, info: dict) -> None:
        from vaetool import distributed
        from vaetool.cli import output

        if self.note and distributed.is_main():
            output.note(self.note)
        # Trained on no likelihood bound (the WAE family): its ELBO is reported by nobody as its score.
        self.bound = info.get("bound", "elbo")
        c = info["config"]
        t = c["training"]
        objective = "deterministic (no noise, no KL)" if c["autoencoder"] else \
            f"{c['objective']} objective ({_listed(c['objective_options'])})"
        shape = "×".join(map(str, c["input_shape"]))
        dims = c.get("latent_options", {}).get("dims")  # the layers above the first, of a hierarchical latent
        widths = "-".join(str(w) for w in [c["latent_dim"], *(dims if isinstance(dims, list) else [dims])])
        latent = (f"{c['latent_dim']}-D latent" if c.get("latent", "gaussian") == "gaussian"
                  else f"{c['latent']} latent of layers {widths}-D" if dims is not None
                  else f"{c['latent']} latent of {c['latent_dim']} code positions")
        if t.get("lr_schedule"):  # recorded only when not constant
            options = t.get("lr_schedule_options") or {}
            objective += f", lr {t['lr']:g} on the {t['lr_schedule']} schedule" + (f" ({_listed(options)})" if options else "")
        how = (f", {info['processes']} processes" if info["processes"] > 1 else "") \
            + (", streamed from disk" if info["streamed"] else "") \
            + (", fused step" if info.get("fused_step") else "") \
            + (", compiled (torch.compile)" if info.get("compiled") else "") \
            + (f", {t['precision']}" if t.get("precision") else "")
        resumed = f", resuming at epoch {info['start_epoch'] + 1}" if info["start_epoch"] or info["start_step"] else ""
        if c.get("prior", "standard-normal") != "standard-normal":
            options = c.get("prior_options") or {}
            latent += f", {c['prior']} prior" + (f" ({_listed(options)})" if options else "")
        kind = "autoencoder" if c["autoencoder"] else "VAE"
        self.console.print(
            f"[bold]{c['architecture']}[/bold] {kind}, [bold]{c['likelihood']}[/bold] likelihood, {latent}, "
            f"{objective}, {info['parameters']:,} parameters\n"
            f"data [bold]{c['dataset']}[/bold] ({info['train_size']:,} train / {info['test_size']:,} test, {shape}) "
            f"on {info['device']}{how} → {info['run_dir']}{resumed}", highlight=False)
        from vaetool.likelihoods import averaging_warning

        if averaging_warning(c) and not self.console.quiet:
            typer.echo(f"Warning: {averaging_warning(c)}", err=True)

    def epoch_start(self, epoch: int, epochs: int, steps: int, first_step: int) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        if self.bar is None:
            self.bar = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
                                console=self.console, transient=True)
            self.bar.start()
        label = f"{epoch + 1}/{epochs}"
        if self.task is None:
            self.task = self.bar.add_task("train", total=steps, completed=first_step, epoch=label, stats="")
        else:
            self.bar.reset(self.task, total=steps, completed=first_step, epoch=label, stats="")

    def update(self, step: int, stats: dict[str, float]) -> None:
        schedule = "".join(f"  {SCHEDULE_NAMES.get(k, k)} {v:.3g}" for k, v in stats.items()
                           if k not in ("loss", "rec", "kl"))
        text = f"loss {stats['loss']:.2f}  rec {stats['rec']:.2f}  KL {stats['kl']:.2f}{schedule}"
        self.bar.update(self.task, completed=step, stats=text)

    def epoch_end(self, m: dict) -> None:
        from vaetool.cli import output

        bpd = f"  {m['test_bits_per_dim']:.3f} bits/dim" if "test_bits_per_dim" in m else ""
        lr = f"  lr {m['lr']:.3g}" if "lr" in m else ""  # only under a schedule that moves it
        took = f"{m['seconds']:.1f} s"
        if output.verbosity == output.VERBOSE:  # -v: the epoch's two stages
            took += f" (steps {m['train_seconds']:.1f} s, test evaluation {m['seconds'] - m['train_seconds']:.1f} s)"
        if self.bound == "none":
            self.console.print(f"epoch {m['epoch']:>3}  train loss {m['train_loss']:9.2f}  "
                               f"test log p(x|z) {m['test_rec']:9.2f}{bpd}{lr}  {took}")
            return
        self.console.print(f"epoch {m['epoch']:>3}  train ELBO {m['train_elbo']:9.2f}  "
                           f"test ELBO {m['test_elbo']:9.2f}  (log p(x|z) {m['test_rec']:9.2f}, KL {m['test_kl']:7.2f})"
                           f"{bpd}{lr}  {took}")

    def finish(self, result) -> None:
        from rich.table import Table

        from vaetool.cli import output
        from vaetool.runs import CHECKPOINT_FILE

        if self.bar is not None:
            self.bar.stop()
        if self.results.quiet and result.status == "finished":  # not rank 0: nothing to tell
            return
        if result.status == "interrupted":
            self.results.print(f"Interrupted at epoch {result.epoch + 1}, step {result.step}; saved to {result.run_dir}. "
                               f"Continue with: vaetool train --resume --name {result.run_dir.name}"
                               + (f" --runs-dir {result.run_dir.parent}" if result.run_dir.parent != Path("runs") else ""))
            raise typer.Exit(130)
        last = result.metrics[-1]
        table = Table(title=f"Trained {output.counted(result.epoch, 'epoch')} → {result.run_dir}", title_justify="left", show_header=False)
        table.add_column(style="bold")
        table.add_column(justify="right")
        if self.bound == "none":
            table.add_row("test log p(x|z) (nats; no likelihood bound)", f"{last['test_rec']:.2f}")
        else:
            table.add_row("test ELBO (nats, β = 1)", f"{last['test_elbo']:.2f}")
            table.add_row("  log p(x|z)", f"{last['test_rec']:.2f}")
            table.add_row("  KL", f"{last['test_kl']:.2f}")
        if "test_bits_per_dim" in last:
            table.add_row("test bits/dim", f"{last['test_bits_per_dim']:.3f}")
        table.add_row("train loss" if self.bound == "none" else "train ELBO",
                      f"{last['train_loss' if self.bound == 'none' else 'train_elbo']:.2f}")
        table.add_row("time", f"{sum(m['seconds'] for m in result.metrics):.1f} s")
        files = ["model.safetensors", "metrics.jsonl", "reconstructions.png", "samples.png", "curves.png", CHECKPOINT_FILE,
                 "config.toml"]
        files += [extra for extra in ("steps.jsonl", "best.safetensors", "snapshots/") if (result.run_dir / extra).exists()]
        table.add_row("files", "\n".join(files))
        self.results.print(table)
