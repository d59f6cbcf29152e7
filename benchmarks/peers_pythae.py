#!/usr/bin/env python3
"""One Pythae training run of vaetool's MLP or conv VAE, timed per epoch: run by peers.py in Pythae's
own virtual environment (Pythae 0.1.2 needs its own pydantic and friends; torch is shared).

Pythae trains with its ``BaseTrainer`` as its documentation shows: the MNIST images as float tensors
in a ``BaseDataset``, Adam at 1e-3, batch 128, its ``VAE`` with ``reconstruction_loss="bce"`` (binary
cross-entropy on the decoder's sigmoid output, summed over pixels, plus the closed-form KL,
averaged over the batch) and its evaluation pass over the test set after every epoch. The encoder
and decoder are the layers of vaetool's architecture of the same name, written here with Pythae's
``BaseEncoder``/``BaseDecoder`` interface (one linear layer to mean and log-variance, split).

    python peers_pythae.py DATA_ROOT --arch mlp --epochs 2

Prints one JSON line: seconds of each epoch's training pass (``train_step``) and of its evaluation
(``eval_step``), the test ELBO (minus the last evaluation loss) and the whole run's seconds.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
from pythae.data.datasets import BaseDataset
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.trainers import BaseTrainer, BaseTrainerConfig
from torch import nn
from torchvision.datasets import MNIST


def mlp(latent: int):
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 2 * latent))
    decoder = nn.Sequential(nn.Linear(latent, 400), nn.ReLU(), nn.Linear(400, 784), nn.Unflatten(1, (1, 28, 28)))
    return encoder, decoder


def conv(latent: int):
    """vaetool's default conv net at 28×28: 4×4 stride-2 convolutions 32-64-128 (28 → 14 → 7 → 3) and back."""
    encoder = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
                            nn.Conv2d(64, 128, 4, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(128 * 9, 2 * latent))
    decoder = nn.Sequential(nn.Linear(latent, 128 * 9), nn.ReLU(), nn.Unflatten(1, (128, 3, 3)),
                            nn.ConvTranspose2d(128, 64, 4, 2, 1, output_padding=1), nn.ReLU(),
                            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1))
    return encoder, decoder


ARCHITECTURES = {"mlp": (mlp, 20), "conv": (conv, 16)}


class Encoder(BaseEncoder):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        mean, log_var = self.net(x).chunk(2, dim=-1)
        return ModelOutput(embedding=mean, log_covariance=log_var)


class Decoder(BaseDecoder):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, z):
        return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))  # Pythae's BCE takes probabilities


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root")
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="mlp")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    torch.manual_seed(0)
    make, latent = ARCHITECTURES[args.arch]
    encoder, decoder = make(latent)
    images = {split: MNIST(args.root, train=split == "train", download=False).data.unsqueeze(1).float() / 255
              for split in ("train", "test")}
    datasets = {split: BaseDataset(x, torch.zeros(len(x))) for split, x in images.items()}
    model = VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=latent, reconstruction_loss="bce"),
                encoder=Encoder(encoder), decoder=Decoder(decoder))
    with tempfile.TemporaryDirectory() as output:
        config = BaseTrainerConfig(output_dir=output, num_epochs=args.epochs, learning_rate=1e-3,
                                   per_device_train_batch_size=128, per_device_eval_batch_size=128,
                                   optimizer_cls="Adam", steps_saving=None, no_cuda=True)
        trainer = BaseTrainer(model, train_dataset=datasets["train"], eval_dataset=datasets["test"],
                              training_config=config)
        timings = {"train_step": [], "eval_step": []}
        losses = []

        def timed(name, method):
            def run(*a, **k):
                begun = time.perf_counter()
                result = method(*a, **k)
                timings[name].append(time.perf_counter() - begun)
                if name == "eval_step":
                    losses.append(float(result))
                return result
            return run

        trainer.train_step = timed("train_step", trainer.train_step)
        trainer.eval_step = timed("eval_step", trainer.eval_step)
        trainer.train()
    print(json.dumps({"peer": "pythae", "arch": args.arch, "epochs": args.epochs,
                      "sec_per_epoch": statistics.median(timings["train_step"]),
                      "sec_per_epoch_with_eval": statistics.median(t + e for t, e in zip(*timings.values())),
                      "test_elbo": -losses[-1], "run_seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
