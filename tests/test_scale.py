"""Speed and scale options: each must train the same model as the plain path, or as nearly as its
arithmetic allows — mixed precision, compilation, channels-last, streaming from a disk cache,
and data-parallel training in several processes."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import vaetool
from conftest import TinySquares, assert_clean_error, invoke, state_dicts_equal
# The tiny-squares runs of the training tests (tiny_squares registers the dataset for this module too).
from test_cli import TINY_SHAPES
from test_training import config, metrics_of, tiny_squares, weights  # noqa: F401
from vaetool import training
from vaetool.datasets import cache
from vaetool.datasets.folder import ImageFolder
from vaetool.errors import VaetoolError
from vaetool.training import RunOptions, TrainConfig


def header(path):
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["vaetool"])


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("plain") / "run"
    training.train(config(), run_dir, device="cpu")
    return run_dir


# -- mixed precision --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_under_autocast_the_likelihood_and_kl_stay_in_fp32(dtype):
    model = vaetool.create("conv", "bernoulli", input_shape=(1, 16, 16), latent_dim=4,
                           architecture_options={"channels": [8, 16]})
    x = torch.rand(8, 1, 16, 16)
    with torch.autocast("cpu", dtype=dtype):
        assert model.architecture.decode(torch.zeros(2, 4), None).dtype == dtype  # the network does run low
        terms = model.elbo(x)
    assert terms.reconstruction.dtype == terms.kl.dtype == terms.z.dtype == torch.float32
    # The same sums as fp32 arithmetic, up to the networks' rounding: not an fp16 sum over 256 pixels.
    plain = model.elbo(x, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=dtype):
        low = model.elbo(x, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(low.reconstruction, plain.reconstruction, rtol=0.02)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_close_to_fp32_and_is_recorded(plain_run, tmp_path, precision):
    run_dir = tmp_path / "run"
    training.train(config(precision=precision), run_dir, device="cpu")
    plain, low = metrics_of(plain_run)[-1], metrics_of(run_dir)[-1]
    assert low["test_elbo"] > metrics_of(run_dir)[0]["test_elbo"] - 1  # it learns
    assert abs(low["test_elbo"] - plain["test_elbo"]) < 0.05 * abs(plain["test_elbo"])
    assert vaetool.load(run_dir).config["training"]["precision"] == precision
    assert "precision" not in vaetool.load(plain_run).config["training"]  # fp32 runs read as before
    assert all(v.dtype == torch.float32 for v in weights(run_dir / "model.safetensors").values())


def test_fp16_resume_restores_the_loss_scale(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    training.train(config(precision="fp16"), straight, device="cpu")
    training.train(config(precision="fp16", epochs=1), split, device="cpu")
    assert header(split / "checkpoint.safetensors")["grad_scaler"]["scale"] > 0
    training.resume(split, epochs=2, device="cpu")
    assert state_dicts_equal(weights(split / "model.safetensors"), weights(straight / "model.safetensors"))


def test_an_unknown_precision_is_a_clear_error(tmp_path):
    with pytest.raises(VaetoolError, match="precision must be one of fp32, bf16, fp16"):
        training.train(config(precision="fp8"), tmp_path / "run", device="cpu")


# -- compilation and memory layout ------------------------------------------------------------------

def test_compiled_networks_train_the_same_model(plain_run, tmp_path):
    # aot_eager traces the networks and their backward through dynamo and AOT autograd as the default
    # inductor backend does, without generating C++ (which takes half a minute on a CPU).
    run_dir = tmp_path / "run"
    training.train(config(), run_dir, device="cpu", options=RunOptions(compile="aot_eager"))
    assert max_difference(weights(run_dir / "model.safetensors"), weights(plain_run / "model.safetensors")) < 1e-5
    # What is saved is the plain module. Its measured KL per dimension agrees to float32 rounding: the plain
    # run's hand-written step (vaetool.fused) takes its products from oneDNN on x86-64, the compiled one from torch.
    compiled, plain = vaetool.load(run_dir).config, vaetool.load(plain_run).config
    torch.testing.assert_close(compiled.pop("test_kl_per_dim"), plain.pop("test_kl_per_dim"), rtol=1e-5, atol=1e-6)
    assert compiled == plain


def test_an_unknown_compile_backend_is_one_sentence_before_training(tmp_path):
    with pytest.raises(VaetoolError, match="names no torch.compile backend.*inductor"):
        training.train(config(), tmp_path / "run", device="cpu", options=RunOptions(compile="no"))
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_channels_last_trains_the_same_conv_model(tmp_path):
    conv = dict(architecture="conv", architecture_options={"channels": [8, 16]}, epochs=1)
    plain, last = tmp_path / "plain", tmp_path / "last"
    training.train(config(**conv), plain, device="cpu", options=RunOptions(channels_last=False))
    training.train(config(**conv), last, device="cpu", options=RunOptions(channels_last=True))
    assert max_difference(weights(last / "model.safetensors"), weights(plain / "model.safetensors")) < 1e-5
    # Saved contiguous, so it loads and runs like any model.
    assert vaetool.load(last).sample(2).shape == (2, 1, 16, 16)


def test_channels_last_is_the_default_for_convolutions_on_the_cpu_only():
    conv = vaetool.create("conv", input_shape=(1, 16, 16), architecture_options={"channels": [8]})
    mlp = vaetool.create("mlp", input_shape=(1, 16, 16), architecture_options={"hidden": [8]})
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert training.channels_last_for(conv, cpu, None) and not training.channels_last_for(mlp, cpu, None)
    assert not training.channels_last_for(conv, cuda, None)  # on GPUs only when asked
    assert not training.channels_last_for(conv, cpu, False) and training.channels_last_for(mlp, cuda, True)


# -- image folders: a decoded cache, and streaming from it ------------------------------------------

def make_folder(root, n=40, size=12):
    generator = np.random.default_rng(0)
    for i in range(n):
        kind = "a" if i % 2 else "b"
        (root / kind).mkdir(parents=True, exist_ok=True)
        pixels = (generator.random((size, size)) * 255).astype(np.uint8)
        Image.fromarray(pixels, "L").save(root / kind / f"{i:03d}.png")
    return root


def test_a_folder_is_decoded_once_into_a_cache_that_matches_the_images(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "images")
    dataset = ImageFolder(str(folder))
    train, test = dataset.load("train"), dataset.load("test")
    assert train.file.parent == test.file.parent and train.file.parent.parent == cache.cache_root()
    assert len(train) + len(test) == 40 and train.images.dtype == torch.uint8
    # Row by row the cached images are the files, in the split's order, with their labels.
    splits = dataset._splits()
    for row, index in enumerate(splits["test"]):
        path = dataset.files[index]
        assert torch.equal(test.images[row, 0], torch.from_numpy(np.array(Image.open(path))))
        assert dataset.class_names[test.labels[row]] == path.parent.name

    def no_decoding(*args):
        raise AssertionError("the cache was decoded again")

    monkeypatch.setattr(cache, "_decode", no_decoding)
    again = ImageFolder(str(folder)).load("train")
    assert torch.equal(again.images, train.images)


def test_a_changed_folder_gets_a_fresh_cache(tmp_path):
    folder = make_folder(tmp_path / "images")
    before = ImageFolder(str(folder), seed=1).load("test")
    changed = ImageFolder(str(folder), seed=1).files[0]
    Image.fromarray(np.zeros((12, 12), np.uint8), "L").save(changed)
    os.utime(changed, ns=(0, 10**9))  # a different time even on a coarse file system
    after = ImageFolder(str(folder), seed=1).load("test")
    assert after.file != before.file
    assert before.file.is_file()  # the old cache is left alone


def test_resuming_on_changed_images_says_so_and_on_the_same_images_does_not(tmp_path, capsys):
    folder = make_folder(tmp_path / "images", n=20)
    run = tmp_path / "run"
    training.train(config(dataset="folder", dataset_options={"path": str(folder)}, epochs=1), run, device="cpu")
    training.resume(run, epochs=2, device="cpu")
    assert "have changed" not in capsys.readouterr().err
    for i in range(20, 24):  # four more images in the folder between two sessions
        Image.fromarray(np.full((12, 12), 9 * i, np.uint8), "L").save(folder / "a" / f"{i:03d}.png")
    training.resume(run, epochs=3, device="cpu")
    err = capsys.readouterr().err
    assert "the training images have changed since this run's checkpoint" in err and "no longer an exact" in err
    training.resume(run, epochs=4, device="cpu")  # the checkpoint now records the images it went on with
    assert "have changed" not in capsys.readouterr().err


def test_a_large_splits_fingerprint_samples_rows_up_to_the_last(monkeypatch):
    from vaetool.contracts import Split

    monkeypatch.setattr(training, "DATA_PRINT_BYTES", 10 * 16)  # ten rows of 16 bytes, of 1,000
    images = torch.zeros(1000, 1, 4, 4, dtype=torch.uint8)
    before = training._data_print(Split(images.clone()))
    images[500, 0, 0, 0] = 1  # a row between the sampled ones
    assert training._data_print(Split(images.clone())) == before
    images[999, 0, 0, 0] = 1  # the last row, which is sampled
    after = training._data_print(Split(images.clone()))
    assert after["sha256"] != before["sha256"] and after["images"] == 1000


def test_an_unwritable_cache_is_a_clear_error(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "images", n=4)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("VAETOOL_CACHE", str(blocker))
    with pytest.raises(VaetoolError, match="set VAETOOL_CACHE to a writable folder"):
        ImageFolder(str(folder)).load("train")


def test_a_damaged_cache_is_decoded_again(tmp_path, capsys):
    folder = make_folder(tmp_path / "images")
    first = ImageFolder(str(folder)).load("train")
    expected = first.images.clone()
    with open(first.file, "r+b") as f:
        f.truncate(1000)  # what a full disk or a stray write leaves
    again = ImageFolder(str(folder)).load("train")
    assert "damaged" in capsys.readouterr().err
    assert torch.equal(again.images, expected)


def test_a_cache_that_does_not_fit_on_the_disk_is_a_clear_error(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "images", n=4)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    with pytest.raises(VaetoolError, match="No space left on device"):
        ImageFolder(str(folder)).load("train")
    assert not list(cache.cache_root().glob("images-*"))  # no half-written cache that looks complete


def test_the_cache_is_built_by_parallel_workers_identically(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "images", n=30)
    files = ImageFolder(str(folder)).files
    splits = {"all": list(range(len(files)))}
    monkeypatch.setattr(cache, "CHUNK", 4)
    cache.build(tmp_path / "serial", files, (1, 12, 12), splits, workers=1)
    monkeypatch.setattr(cache, "PARALLEL_FROM", 0)
    cache.build(tmp_path / "parallel", files, (1, 12, 12), splits, workers=2)
    assert np.array_equal(np.load(tmp_path / "serial" / "all.npy"), np.load(tmp_path / "parallel" / "all.npy"))
    assert not list(tmp_path.glob("*.partial-*"))


def test_streaming_through_workers_trains_the_same_model_as_resident_data(tmp_path):
    folder = make_folder(tmp_path / "images", n=60)
    folder_config = config(architecture="cvae", architecture_options={"channels": [8, 16]}, dataset="folder",
                           dataset_options={"path": str(folder)}, batch_size=16)
    resident, streamed = tmp_path / "resident", tmp_path / "streamed"
    training.train(folder_config, resident, device="cpu", options=RunOptions(stream=False))
    training.train(folder_config, streamed, device="cpu", options=RunOptions(stream=True, workers=2))
    assert state_dicts_equal(weights(streamed / "model.safetensors"), weights(resident / "model.safetensors"))


def test_a_large_cached_split_streams_by_default(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "images", n=20)
    seen = []
    monkeypatch.setattr(training.Progress, "begin", lambda self, info: seen.append(info["streamed"]))
    folder_config = config(dataset="folder", dataset_options={"path": str(folder)}, epochs=1)
    training.train(folder_config, tmp_path / "small", device="cpu")
    monkeypatch.setattr(training, "RESIDENT_SHARE", 0.0)  # any size counts as large
    training.train(folder_config, tmp_path / "large", device="cpu", options=RunOptions(workers=0))
    assert seen == [False, True]


def test_streaming_a_dataset_held_in_memory_is_a_clear_error(tmp_path):
    with pytest.raises(VaetoolError, match="nothing to stream"):
        training.train(config(), tmp_path / "run", device="cpu", options=RunOptions(stream=True))
    assert not (tmp_path / "run").exists()


# -- several processes ------------------------------------------------------------------------------

def vaetool_cli(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "vaetool", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


SHAPES = dict(architecture="mlp", architecture_options={"hidden": [32]}, dataset="shapes",
              dataset_options={"n_train": 300, "n_test": 50, "size": 16}, latent_dim=4, batch_size=64,
              lr=3e-3, seed=3)
SHAPES_FLAGS = ["--arch", "mlp", "--hidden", "32", "--data", "shapes", "--data-opt", "n_train=300",
                "--data-opt", "n_test=50", "--data-opt", "size=16", "--latent-dim", "4", "--batch-size", "64",
                "--lr", "3e-3", "--seed", "3", "--device", "cpu"]


def test_two_processes_train_the_model_one_process_trains_and_resume(tmp_path):
    """Two gloo processes under torchrun, each with half of every batch of 64, match one process
    with batches of 64 — through a resume in two processes as well. 300 examples make the last
    batch uneven (44, split 22/22), and 64 per batch split 32/32."""
    one = tmp_path / "one"
    training.train(TrainConfig(**SHAPES, epochs=2), one, device="cpu")

    runs = tmp_path / "runs"
    first = vaetool_cli("train", *SHAPES_FLAGS, "--epochs", "1", "--runs-dir", runs, "--name", "two", "--nproc", "2",
                        cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "2 processes" in first.stdout
    assert first.stdout.count("epoch   1") == 1  # rank 0 alone reports
    second = vaetool_cli("train", "--resume", "--epochs", "2", "--runs-dir", runs, "--name", "two", "--nproc", "2",
                         cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr

    two = runs / "two"
    assert max_difference(weights(two / "model.safetensors"), weights(one / "model.safetensors")) < 1e-5
    a, b = metrics_of(one), metrics_of(two)
    assert [m["epoch"] for m in b] == [1, 2]
    for key in ("train_elbo", "train_kl", "test_elbo"):
        assert [m[key] for m in b] == pytest.approx([m[key] for m in a], rel=1e-5)
    assert sorted(p.name for p in two.iterdir() if p.suffix == ".safetensors") == \
        ["checkpoint.safetensors", "model.safetensors"]


def test_nproc_is_refused_inside_torchrun(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert_clean_error(invoke("train", "--data", "shapes", "--nproc", "2", "--runs-dir", tmp_path),
                       "--nproc starts torchrun itself")


@pytest.mark.parametrize("flags, message", [
    (["--nproc", "0"], "--nproc must be at least 1"),
    (["--workers", "-1"], "--workers must be at least 0"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--precision", "fp8"], "fp8"),
])
def test_bad_speed_options_are_clear_errors(tmp_path, flags, message):
    result = invoke("train", "--data", "shapes", "--runs-dir", tmp_path, *flags)
    assert result.exit_code != 0 and message in result.output
    assert not list(tmp_path.iterdir())


def test_precision_cannot_change_on_resume(tmp_path):
    assert_clean_error(invoke("train", "--resume", "--precision", "bf16", "--runs-dir", tmp_path),
                       "--precision cannot change when resuming")


def test_train_streams_a_folder_from_the_command_line(tmp_path):
    folder = make_folder(tmp_path / "images", n=40)
    runs = tmp_path / "runs"
    result = invoke("train", "--data", folder, "--arch", "mlp", "--hidden", "16", "--latent-dim", "2", "--epochs", "1",
                    "--stream", "--workers", "1", "--threads", "1", "--runs-dir", runs, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "streamed from disk" in result.output
    assert (runs / "mlp-images-z2" / "model.safetensors").is_file()


# -- memory ----------------------------------------------------------------------------------------

def test_a_model_too_large_for_memory_is_refused_before_the_data_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "memory_of", lambda device: 100 << 20)  # 100 MiB; the model's state is 141

    def unreadable(self, split, root=None):
        raise AssertionError("the data was read")

    monkeypatch.setattr(TinySquares, "load", unreadable)
    wide = config(architecture_options={"hidden": [20000]})
    with pytest.raises(VaetoolError, match=r"needs at least 0\.1 GiB \(a model of 10,520,264 parameters, Adam's "
                                           r"moments\), but this machine has 0\.1 GiB"):
        training.train(wide, tmp_path / "run", device="cpu")
    assert not (tmp_path / "run").exists()


def test_a_batch_whose_activations_do_not_fit_is_refused_and_a_smaller_batch_trains(tmp_path, monkeypatch):
    # A conv net of 128 channels on 16×16 images: 6 MiB of weights and moments, 15 MiB of activations a batch
    # of 128, 3 a batch of 8.
    monkeypatch.setattr(training, "memory_of", lambda device: 16 << 20)
    conv = dict(architecture="conv", architecture_options={"channels": [128, 128]}, epochs=1)
    with pytest.raises(VaetoolError, match="the activations of a batch of 128"):
        training.train(config(**conv, batch_size=128), tmp_path / "large", device="cpu")
    assert not (tmp_path / "large").exists()
    small = config(**conv, batch_size=8, dataset_options={"n_train": 16, "n_test": 8})
    assert training.train(small, tmp_path / "small", device="cpu").status == "finished"


def test_a_run_too_large_for_memory_is_one_sentence_on_the_command_line(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "memory_of", lambda device: 1 << 30)
    started = time.perf_counter()
    result = invoke("train", *TINY_SHAPES, "--arch", "conv", "--channels", "99999", "--epochs", "1",
                    "--runs-dir", tmp_path / "runs")
    error = assert_clean_error(result, "GiB", "but this machine has 1.0 GiB", "--channels")
    assert result.exit_code == 2, error
    assert time.perf_counter() - started < 20  # nothing of its size was allocated
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("v2, v1, limited", [
    ("1073741824\n", None, True),            # cgroup v2 with a 1 GiB limit
    ("max\n", "1073741824\n", False),        # v2 without a limit: v1's file is not consulted
    (None, "1073741824\n", True),            # cgroup v1 only
    (None, "9223372036854771712\n", False),  # v1's "no limit"
    (None, None, False),                     # no cgroup files at all
])
def test_the_memory_is_the_containers_limit_when_it_has_one(tmp_path, monkeypatch, v2, v1, limited):
    from vaetool import devices

    paths = []
    for name, text in (("memory.max", v2), ("memory.limit_in_bytes", v1)):
        paths.append(str(tmp_path / name))
        if text is not None:
            (tmp_path / name).write_text(text)
    monkeypatch.setattr(devices, "_CGROUP_LIMITS", tuple(paths))
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert devices.memory_of(torch.device("cpu")) == (min(ram, 1 << 30) if limited else ram)


def test_the_meta_build_of_the_memory_check_leaves_the_runs_random_draws_alone():
    """The check builds the model once more, on the meta device, before the real build: whatever that
    build draws (a plugin may draw on the CPU explicitly) must not move the seeded generator, so the real
    model's initial weights are those of a run without the check."""
    def build():
        torch.rand(5, device="cpu")  # a draw that the meta device does not absorb
        return vaetool.create("mlp", "bernoulli", input_shape=(1, 8, 8), latent_dim=4,
                              architecture_options={"hidden": [16]})

    torch.manual_seed(0)
    direct = build()
    torch.manual_seed(0)
    meta = training._on_meta(build)
    assert meta is not None and all(p.is_meta for p in meta.parameters())
    assert state_dicts_equal(build().state_dict(), direct.state_dict())


def test_a_forward_pass_without_meta_kernels_is_checked_by_its_weights_alone(tmp_path, monkeypatch):
    """A plugin whose forward pass cannot run on the meta device still trains: the check counts its
    weights and moments only (the activations of this run alone would be refused, as above)."""
    from vaetool.model import VAE

    monkeypatch.setattr(training, "memory_of", lambda device: 16 << 20)
    forward = VAE.forward

    def no_meta_kernel(self, x, *args, **kwargs):
        if x.is_meta:  # the encoder runs (and saves its activations), then the decoder fails
            self.encode(x)
            raise NotImplementedError("no meta kernel")
        return forward(self, x, *args, **kwargs)

    # 2 MiB of weights and moments; 16 MiB of the encoder's activations for this batch of 2,048.
    wide = dict(architecture_options={"hidden": [2000]}, epochs=1, batch_size=2048,
                dataset_options={"n_train": 2048, "n_test": 8})
    with pytest.raises(VaetoolError, match="the activations of a batch of 2048"):
        training.train(config(**wide), tmp_path / "checked", device="cpu")
    monkeypatch.setattr(VAE, "forward", no_meta_kernel)
    assert training.train(config(**wide), tmp_path / "run", device="cpu").status == "finished"


def test_the_memory_check_counts_half_precision_activations_at_two_bytes(tmp_path, monkeypatch):
    # 20.9 MiB for this conv net and batch in fp32 (6.4 of them weights and moments); under bf16 autocast
    # the activations take half as much.
    monkeypatch.setattr(training, "memory_of", lambda device: 16 << 20)
    conv = dict(architecture="conv", architecture_options={"channels": [128, 128]}, epochs=1, batch_size=128,
                dataset_options={"n_train": 128, "n_test": 8})
    with pytest.raises(VaetoolError, match="activations"):
        training.train(config(**conv), tmp_path / "fp32", device="cpu")
    assert training.train(config(**conv, precision="bf16"), tmp_path / "bf16", device="cpu").status == "finished"


# -- what --nproc shows of torchrun ---------------------------------------------------------------------

def _shown_of_torchrun(text: str):
    import io

    from vaetool.cli.torchrun import TorchrunOutput

    shown = io.StringIO()
    output = TorchrunOutput(shown)
    for line in text.splitlines(keepends=True):
        output.line(line)
    output.close()
    return shown.getvalue(), output.exit_code


def test_torchruns_traceback_and_report_are_dropped_and_the_processs_status_kept():
    # What torchrun 2.14 printed when both processes refused a setting (tests/data/torchrun_failure.txt).
    from pathlib import Path

    captured = (Path(__file__).parent / "data" / "torchrun_failure.txt").read_text()
    shown, code = _shown_of_torchrun(captured)
    assert shown == ("Error: The vq latent updates its codebook from each batch within one process; "
                     "train it without --nproc.\n")
    assert code == 2  # the first failure's status; torchrun itself exits with 1


def test_a_processs_own_traceback_and_a_different_error_are_shown():
    bug = "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nZeroDivisionError: division by zero\n"
    shown, code = _shown_of_torchrun("epoch 1\n" + bug + "Error: one thing\nError (process 1): another thing\n"
                                     "Error (process 2): one thing\n")
    assert shown == "epoch 1\n" + bug + "Error: one thing\nError (process 1): another thing\n" and code is None


def test_a_setting_refused_under_nproc_is_one_sentence_with_status_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # torchrun's banner would say it sets it
    done = subprocess.run([sys.executable, "-m", "vaetool", "train", *SHAPES_FLAGS, "--latent", "vq", "--epochs", "1",
                           "--runs-dir", str(tmp_path / "runs"), "--nproc", "2"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "Error: The vq latent updates its codebook from each batch within one process; train it without --nproc."]
