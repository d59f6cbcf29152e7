"""``vaetool explore``: the API through Starlette's test client, the command, and the page in a real
headless browser (Debian's chromium and chromedriver through Selenium).

The model is a tiny conv VAE trained for three epochs on ``tiny-squares`` once per session; every
answer is checked against what the library computes for the same input.
"""
from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

import vaetool
from conftest import TINY_DATASET, TinySquares, assert_clean_error, invoke
from vaetool import images, latents, metrics, plots, registry
from vaetool.training import TrainConfig, train

pytest.importorskip("starlette", reason="the explore extra (starlette, uvicorn) is part of the test extra")
from starlette.testclient import TestClient  # noqa: E402

from vaetool.explore import app as web  # noqa: E402
from vaetool.explore import explorer as explorer_module  # noqa: E402
from vaetool.explore import server  # noqa: E402
from vaetool.explore.explorer import Explorer  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module", autouse=True)
def tiny_squares():
    registry.register("dataset", TINY_DATASET, TinySquares)
    yield
    registry.unregister("dataset", TINY_DATASET)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """A conv VAE (4-D latent) trained three epochs on tiny-squares: a real run directory."""
    registry.register("dataset", TINY_DATASET, TinySquares)
    run = tmp_path_factory.mktemp("explore") / "conv-tiny"
    config = TrainConfig(architecture="conv", architecture_options={"channels": [8, 16]}, dataset=TINY_DATASET,
                         dataset_options={"n_train": 512, "n_test": 64}, latent_dim=4, epochs=3, batch_size=32,
                         lr=1e-2, seed=0)
    train(config, run, device="cpu")
    return run


@pytest.fixture(scope="module")
def model(run_dir):
    return vaetool.load(run_dir)


@pytest.fixture(scope="module")
def client(run_dir, model):
    # raise_server_exceptions: a request that crashes the server (a 500) fails the test outright.
    with TestClient(web.create_app(Explorer(model, run_dir / "model.safetensors"))) as client:
        yield client


def square_png(top=3, left=4, size=5, ink=255, paper=0, fmt="PNG", shape=(16, 16)) -> bytes:
    array = np.full(shape, paper, dtype=np.uint8)
    array[top:top + size, left:left + size] = ink
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format=fmt)
    return buffer.getvalue()


def decoded(model, z, y=None) -> np.ndarray:
    with torch.no_grad():
        return images.grid(model.decode(torch.tensor([z], dtype=torch.float32), y), nrow=1, zoom=1, pad=0)


def png_array(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return np.asarray(image)


def library_mean(model, path: Path, y=None) -> np.ndarray:
    """The posterior mean of an image file as ``vaetool encode`` computes it."""
    x, _ = images.load_images([path], model.input_shape, None, model.config.get("background"))
    with torch.no_grad():
        return model.encode(x, y).mean[0].numpy()


# -- the API ---------------------------------------------------------------------------------------

def test_the_page_and_its_assets_come_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("/static/explore.js", "/static/explore.css"):
        assert asset in page.text
        assert client.get(asset).status_code == 200
    # Offline: nothing the page loads names another host.
    static = Path(explorer_module.__file__).parent / "static"
    for file in static.iterdir():
        text = file.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, file.name


def test_model_info_orders_dimensions_by_kl_and_shows_the_card(client, model, run_dir):
    info = client.get("/api/model").json()
    kl = model.config["test_kl_per_dim"]
    assert [d["index"] for d in info["dims"]] == sorted(range(4), key=lambda d: -kl[d])
    assert [d["information"] for d in info["dims"]] == [round(kl[d["index"]], 4) for d in info["dims"]]
    assert info["information"] == "KL" and info["latent_dim"] == 4 and info["conditional"] is False
    assert info["classes"] == ["top", "bottom"] and info["class_means"] == [0, 1]
    card = dict(info["card"])
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert card["test ELBO"].startswith(f"{last['test_elbo']:.2f} nats")
    assert card["parameters"].startswith(f"{metrics.parameter_counts(model)['total']:,}")
    assert card["architecture"] == "conv (channels 8,16)" and card["objective"] == "elbo (beta 1, warmup 0, free bits 0)"
    assert card["dataset"].startswith(TINY_DATASET)


def test_decode_returns_the_models_image_for_z_and_it_changes_with_z(client, model):
    pictures = {}
    for z in ([0.0, 0.0, 0.0, 0.0], [2.5, -2.5, 2.5, -2.5]):
        answer = client.post("/api/decode", json={"z": z})
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        pictures[tuple(z)] = png_array(answer.content)
        assert np.abs(pictures[tuple(z)].astype(int) - decoded(model, z).astype(int)).max() <= 1
    first, second = pictures.values()
    assert first.shape == (16, 16) and np.abs(first.astype(int) - second.astype(int)).max() > 20


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_an_upload_sets_z_to_the_posterior_mean_the_library_computes(client, model, tmp_path, fmt):
    # Black ink on a large white page, as someone's drawing: resized and inverted like `vaetool encode`.
    data = square_png(top=10, left=30, size=20, ink=0, paper=255, fmt=fmt, shape=(64, 64))
    path = tmp_path / f"drawing.{fmt.lower()}"
    path.write_bytes(data)
    answer = client.post("/api/encode", content=data, headers={"Content-Type": f"image/{fmt.lower()}"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    np.testing.assert_allclose(body["z"], library_mean(model, path), atol=1e-5)
    seen = png_array(base64.b64decode(body["input"].split(",", 1)[1]))
    x, _ = images.load_images([path], model.input_shape, None, model.config.get("background"))
    np.testing.assert_array_equal(seen, images.grid(x, nrow=1, zoom=1, pad=0))
    assert seen[0, 0] == 0, "the white page was inverted to the model's dark background"


def test_non_image_uploads_get_a_4xx_with_a_message(client, monkeypatch):
    answer = client.post("/api/encode", content=b"these are not the pixels you are looking for")
    assert answer.status_code == 400 and "not an image file" in answer.json()["error"]
    assert "BytesIO" not in answer.json()["error"]
    truncated = square_png()[:40]
    assert client.post("/api/encode", content=truncated).status_code == 400
    empty = client.post("/api/encode", content=b"")
    assert empty.status_code == 400 and "No image" in empty.json()["error"]
    monkeypatch.setattr(web, "MAX_IMAGE_BYTES", 50)
    big = client.post("/api/encode", content=square_png(shape=(64, 64)) + b"\0" * 100)
    assert big.status_code == 413 and "bytes" in big.json()["error"]
    monkeypatch.setattr(web, "MAX_IMAGE_BYTES", 10_000_000)
    monkeypatch.setattr(explorer_module, "MAX_PIXELS", 100)
    wide = client.post("/api/encode", content=square_png())
    assert wide.status_code == 400 and "16×16 pixels" in wide.json()["error"]


BAD_REQUESTS = [
    ("post", "/api/decode", b"not json", "JSON"),
    ("post", "/api/decode", b"[1, 2, 3, 4]", "JSON object"),
    ("post", "/api/decode", b"{}", "'z'"),
    ("post", "/api/decode", b'{"z": [0, 0]}', "4 numbers"),
    ("post", "/api/decode", b'{"z": [0, 0, 0, "a"]}', "list of numbers"),
    ("post", "/api/decode", b'{"z": [0, 0, 0, true]}', "list of numbers"),
    ("post", "/api/decode", b'{"z": [0, 0, 0, NaN]}', "finite"),
    ("post", "/api/decode", b'{"z": [0, 0, 0, 1e300]}', "finite"),
    ("post", "/api/decode", b'{"z": [0, 0, 0, 0], "label": 1}', "not conditional"),
    ("post", "/api/decode", b'{"z": [0, 0, 0, 0], "size": 1}', "Unknown field"),
    ("post", "/api/interpolate", b'{"from": {"label": 0}}', "'to'"),
    ("post", "/api/interpolate", b'{"from": {"label": 0}, "to": {"label": 7}}', "no class 7"),
    ("post", "/api/interpolate", b'{"from": {"label": 0}, "to": {"label": [1]}}', "must be a class, an integer"),
    ("post", "/api/interpolate", b'{"from": {"label": "3"}, "to": {"label": 1}}', 'integer, not "3"'),
    ("post", "/api/interpolate", b'{"from": {"label": 3.0}, "to": {"label": 1}}', "integer, not 3.0"),
    ("post", "/api/interpolate", b'{"from": {"label": true}, "to": {"label": 1}}', "integer, not true"),
    ("post", "/api/interpolate", b'{"from": {"label": 1e400}, "to": {"label": 1}}', "too large for a float"),
    ("post", "/api/interpolate", b'{"from": {"label": 0}, "to": {"label": 1}, "fps": NaN}', "NaN, which is not"),
    # Integers too large for a float, and too long for Python to read: no OverflowError, no echo of them.
    ("post", "/api/decode", b'{"z": [1' + b"0" * 310 + b', 0, 0, 0]}', "integer of 311 digits"),
    ("post", "/api/interpolate", b'{"from": {"z": [1' + b"0" * 25 + b', 0, 0, 0]}, "to": {"label": 1}}', "at most 100"),
    ("post", "/api/decode", b'{"z": [1' + b"0" * 5000 + b', 0, 0, 0]}', "integer of 5,001 digits"),
    ("post", "/api/interpolate", b'{"from": {"label": 0}, "to": {"label": 1}, "steps": 1' + b"0" * 28 + b"}",
     "steps must lie in"),
    ("post", "/api/interpolate", b'{"from": [0, 0, 0, 0], "to": {"label": 1}}', '"from"'),
    ("post", "/api/interpolate", b'{"from": {"label": 0}, "to": {"label": 1}, "steps": 1}', "steps"),
    ("post", "/api/interpolate", b'{"from": {"label": 0}, "to": {"label": 1}, "steps": 10000}', "steps"),
    ("post", "/api/interpolate", b'{"from": {"label": 0}, "to": {"label": 1}, "steps": 2.5}', "integer"),
    ("post", "/api/interpolate", b'{"from": {"label": 0}, "to": {"label": 1}, "method": "warp"}', "slerp"),
    ("post", "/api/interpolate", b'{"from": {"label": 0}, "to": {"label": 1}, "fps": 0}', "fps"),
    ("get", "/api/map?method=umap", None, "pca"),
    ("post", "/api/encode?label=one", b"x", "integer"),
    ("post", "/api/encode?label=1" + "0" * 40, b"x", "at most 30 digits"),
    ("get", "/api/map?foo=1", None, "Unknown query parameter \"foo\"; it takes method"),
    ("get", "/api/model?method=pca", None, "it takes none"),
    ("get", "/api/map?method=pca&method=tsne", None, "gives method 2 times"),
    ("post", "/api/encode?invert=maybe", square_png(), "invert"),
]


@pytest.mark.parametrize("method, url, body, fragment", BAD_REQUESTS, ids=[f"{u} {b!r:.40}" for _, u, b, _ in BAD_REQUESTS])
def test_bad_requests_get_a_4xx_with_one_sentence(client, method, url, body, fragment):
    answer = client.request(method.upper(), url, content=body)
    assert 400 <= answer.status_code < 500, answer.text
    assert fragment in answer.json()["error"]
    assert client.post("/api/decode", json={"z": [0, 0, 0, 0]}).status_code == 200  # still serving


def test_no_refusal_echoes_a_long_value_in_full(client):
    answer = client.post("/api/interpolate", json={"from": {"label": 0}, "to": {"label": 1}, "method": "x" * 5000})
    assert answer.status_code == 400 and len(answer.json()["error"]) < 200


def test_a_request_for_another_host_is_refused_in_json(run_dir, model):
    app = web.create_app(Explorer(model, run_dir / "model.safetensors"), allowed_hosts=["localhost", "127.0.0.1"])
    with TestClient(app, base_url="http://attacker.example") as client:
        answer = client.get("/api/model")
        assert answer.status_code == 400 and "not for the host \"attacker.example\"" in answer.json()["error"]
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        assert client.get("/api/model").status_code == 200


def test_unknown_paths_and_methods_are_4xx(client):
    assert client.get("/api/nothing").status_code == 404
    assert client.get("/api/decode").status_code == 405
    assert client.get("/static/../explorer.py").status_code == 404


def test_interpolation_gif_decodes_the_libraries_path_between_class_means(client, model):
    answer = client.post("/api/interpolate", json={"from": {"label": 0}, "to": {"label": 1}, "steps": 5,
                                                   "method": "lerp", "bounce": False})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
    gif = Image.open(io.BytesIO(answer.content))
    frames = [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(gif)]
    assert len(frames) == 5 and gif.info.get("loop") == 0
    split = TinySquares(n_train=512, n_test=64).load("test")
    means, _ = metrics.posterior_moments(model, split.images, None)
    ends = torch.stack([means[split.labels == k].mean(0) for k in (0, 1)]).float()
    with torch.no_grad():
        expected = model.decode(latents.path(ends, 5, "lerp"))
    for frame, picture in zip(frames, expected):
        assert np.abs(frame.astype(int) - images.grid(picture[None], nrow=1, pad=0).astype(int)).max() <= 2
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).max() > 20  # top and bottom squares differ
    bounced = client.post("/api/interpolate", json={"from": {"z": [0, 0, 0, 0]}, "to": {"z": [2, 2, 2, 2]}, "steps": 4})
    assert sum(1 for _ in ImageSequence.Iterator(Image.open(io.BytesIO(bounced.content)))) == 4 + 2


def test_latent_map_projects_the_test_codes_with_their_labels(client, model):
    split = TinySquares(n_train=512, n_test=64).load("test")
    means, _ = metrics.posterior_moments(model, split.images, None)
    pca = client.get("/api/map?method=pca").json()
    assert pca["method"] == "PCA" and pca["labels"] == split.labels.tolist()
    np.testing.assert_allclose(pca["codes"], means.numpy(), atol=1e-4)
    points, _, _ = plots.projection(np.asarray(pca["codes"]), "pca")
    np.testing.assert_allclose(pca["points"], points, atol=1e-3)
    tsne = client.get("/api/map?method=tsne").json()
    assert tsne["method"] == "t-SNE" and len(tsne["points"]) == len(split)


def test_a_conditional_model_takes_a_class(tmp_path):
    torch.manual_seed(0)
    cvae = vaetool.create("cvae", "bernoulli", input_shape=(1, 16, 16), latent_dim=3, num_classes=2,
                          architecture_options={"channels": [8, 16]}, dataset=TINY_DATASET,
                          dataset_options={"n_train": 256, "n_test": 64}, class_names=["top", "bottom"])
    with torch.no_grad():
        for p in cvae.parameters():
            p.mul_(3)  # an untrained decoder's outputs are all near 0.5; this makes classes tell apart
    vaetool.save(cvae, tmp_path / "cvae.safetensors")
    cvae = vaetool.load(tmp_path / "cvae.safetensors")
    with TestClient(web.create_app(Explorer(cvae, tmp_path / "cvae.safetensors"))) as client:
        info = client.get("/api/model").json()
        assert info["conditional"] is True and info["classes"] == ["top", "bottom"]
        assert "class from 0 to 1" in client.post("/api/decode", json={"z": [0, 0, 0]}).json()["error"]
        assert client.post("/api/decode", json={"z": [0, 0, 0], "label": 2}).status_code == 400
        for k in (0, 1):
            answer = client.post("/api/decode", json={"z": [0.5, 0, 0], "label": k})
            expected = decoded(cvae, [0.5, 0, 0], torch.tensor([k]))
            assert np.abs(png_array(answer.content).astype(int) - expected.astype(int)).max() <= 1
        path = tmp_path / "square.png"
        path.write_bytes(square_png())
        z = client.post("/api/encode?label=1", content=path.read_bytes()).json()["z"]
        np.testing.assert_allclose(z, library_mean(cvae, path, torch.tensor([1])), atol=1e-5)
        assert client.post("/api/encode", content=path.read_bytes()).status_code == 400


def test_a_model_without_readable_test_data_still_serves_sliders(tmp_path, model):
    config = dict(model.config, dataset="no-such-dataset")
    lost = vaetool.model.VAE.from_config({**config, "dataset": TINY_DATASET})
    lost.load_state_dict(model.state_dict())
    lost.config["dataset"] = "no-such-dataset"
    with TestClient(web.create_app(Explorer(lost, tmp_path / "m.safetensors"))) as client:
        info = client.get("/api/model").json()
        assert "cannot be read here" in info["map"] and info["class_means"] == []
        assert "test ELBO" in dict(info["card"])
        assert client.post("/api/decode", json={"z": [0, 0, 0, 0]}).status_code == 200
        answer = client.get("/api/map")
        assert answer.status_code == 400 and "cannot be read here" in answer.json()["error"]
        # A class's mean code needs the test images too: the refusal says so, not "no class 3".
        answer = client.post("/api/interpolate", json={"from": {"label": 3}, "to": {"label": 4}})
        assert answer.status_code == 400 and "no class means" in answer.json()["error"]
        assert "cannot be read here" in answer.json()["error"]


def test_a_discrete_latent_gets_a_sentence_instead_of_sliders(tmp_path, model):
    if "latent" in registry.GROUPS:  # latents are plugins: a real VQ model
        odd = vaetool.create("conv", "bernoulli", input_shape=(1, 16, 16), latent_dim=4, latent="vq",
                             architecture_options={"channels": [8, 16]})
        assert odd.discrete
    else:  # a file from a vaetool with a vq latent, read where the kind is unknown
        odd = vaetool.model.VAE.from_config(model.config)
        odd.config["latent"] = "vq"
    with TestClient(web.create_app(Explorer(odd, tmp_path / "m.safetensors"))) as client:
        info = client.get("/api/model").json()
        # The page sends no z to such a model; a client that does gets the same sentence, not a 500.
        answers = [client.post("/api/decode", json={"z": [0.0] * 4}),
                   client.post("/api/interpolate", json={"from": {"z": [0.0] * 4}, "to": {"z": [1.0] * 4}}),
                   client.post("/api/encode", content=square_png())]
    assert "discrete codes" in info["discrete"] and dict(info["card"])["latent"].startswith("4-D, vq")
    for answer in answers:
        assert answer.status_code == 400 and "discrete codes" in answer.json()["error"], answer.text


# -- the command -----------------------------------------------------------------------------------

def test_the_command_without_the_extra_says_how_to_install_it(run_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now raises ImportError
    error = assert_clean_error(invoke("explore", "-m", run_dir, "--no-browser"), 'pip install "vaetool[explore]"', '.[explore]')
    assert error.count(".") >= 1


def test_a_port_in_use_is_one_sentence_with_the_port_hint(run_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert_clean_error(invoke("explore", "-m", run_dir, "--port", port, "--no-browser", "--device", "cpu"),
                           f"Port {port}", "in use", "--port")


@pytest.mark.parametrize("flag, value", [("--port", 70000), ("--port", -1), ("--threads", 0)])
def test_bad_numbers_are_refused_before_serving(run_dir, flag, value):
    assert_clean_error(invoke("explore", "-m", run_dir, "--no-browser", flag, value), flag)


def test_a_model_whose_plugin_is_missing_is_reported_before_serving(tmp_path, monkeypatch):
    from vaetool.architectures.mlp import MLP

    registry.register("architecture", "ghost", MLP)
    ghost = vaetool.create("ghost", "bernoulli", input_shape=(1, 16, 16), latent_dim=2, architecture_options={"hidden": [8]})
    vaetool.save(ghost, tmp_path / "ghost.safetensors")
    registry.unregister("architecture", "ghost")
    monkeypatch.setattr(server, "bind", lambda *a: pytest.fail("the server must not start"))
    assert_clean_error(invoke("explore", "-m", tmp_path / "ghost.safetensors", "--no-browser"), "ghost")


def test_a_non_loopback_host_is_warned_about_and_the_browser_opens_only_when_asked(model, run_dir, monkeypatch):
    import uvicorn
    import webbrowser

    opened, said = [], []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)  # serve nothing, return at once
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    server.serve(model, run_dir, host="0.0.0.0", port=0, open_browser=False, say=said.append, warn=said.append)
    assert any(line.startswith("Warning: serving on 0.0.0.0") for line in said) and opened == []
    said.clear()
    server.serve(model, run_dir, host="127.0.0.1", port=0, open_browser=True, say=said.append, warn=said.append)
    deadline = time.monotonic() + 5
    while not opened and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(opened) == 1 and opened[0].startswith("http://127.0.0.1:")
    assert not any("Warning" in line for line in said) and said[-1] == "Stopped."
    assert server.is_loopback("127.0.0.5") and server.is_loopback("::1") and server.is_loopback("localhost")
    assert not server.is_loopback("192.168.1.2") and not server.is_loopback("example.org")


def test_the_command_serves_over_http_and_ctrl_c_stops_it_cleanly(run_dir, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")
    process = subprocess.Popen([sys.executable, "-m", "vaetool", "explore", "-m", str(run_dir), "--port", "0",
                                "--no-browser", "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, cwd=tmp_path)
    try:
        line = process.stdout.readline()
        assert line.startswith("Exploring") and "Ctrl-C" in line, line + process.stderr.read()
        url = line.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/model", timeout=30) as answer:
            info = json.load(answer)
        # This process knows no tiny-squares dataset: the sliders work, the map says why it is missing.
        assert info["latent_dim"] == 4 and "cannot be read here" in info["map"]
        # A page elsewhere that points a name of its own at 127.0.0.1 (DNS rebinding) is not served.
        host, port = url.split("//")[1].rstrip("/").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", "/api/model", headers={"Host": f"attacker.example:{port}"})
        answer = connection.getresponse()
        assert answer.status == 400
        error = json.loads(answer.read())["error"]
        assert "attacker.example" in error and error.count("127.0.0.1") == 1  # each name it serves, once
        connection.close()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Stopped." in out and "Traceback" not in err + out


# -- the page in a real browser --------------------------------------------------------------------

@pytest.fixture(scope="module")
def live_server(run_dir, model):
    """The explorer on a free loopback port, served by uvicorn in a thread."""
    with server.running(web.create_app(Explorer(model, run_dir / "model.safetensors"))) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.skip(f"no headless browser here ({', '.join(missing)} missing): "
                    "apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is part of the test extra")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1100", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(driver, condition, what, timeout=30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d), message=f"waited for {what}")


def slider_values(driver) -> dict[int, float]:
    from selenium.webdriver.common.by import By

    return {int(s.get_attribute("data-dim")): float(s.get_attribute("value"))
            for s in driver.find_elements(By.CSS_SELECTOR, "#sliders input[type=range]")}


def test_in_a_browser_sliders_drive_the_image_and_an_image_moves_the_sliders(browser, live_server, model, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser
    driver.get(live_server)
    wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true", "the page")
    decoded_src = lambda d: d.find_element(By.ID, "decoded").get_attribute("src") or ""  # noqa: E731
    wait_for(driver, lambda d: decoded_src(d).startswith("data:image/png"), "the first decoded image")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#sliders input[type=range]")) == 4
    assert "KL" in driver.find_element(By.ID, "sliders").text
    assert "test ELBO" in driver.find_element(By.ID, "card").text

    # Moving the most informative slider to its end changes the picture.
    before = decoded_src(driver)
    first = driver.find_element(By.CSS_SELECTOR, "#sliders input[type=range]")
    first.send_keys(Keys.END)
    wait_for(driver, lambda d: decoded_src(d) != before, "the image to follow the slider")
    assert slider_values(driver)[int(first.get_attribute("data-dim"))] > 2

    # Choosing an image sets every slider to its posterior mean.
    path = tmp_path / "mine.png"
    path.write_bytes(square_png(top=9, left=2))
    expected = library_mean(model, path)
    driver.find_element(By.ID, "file").send_keys(str(path))
    wait_for(driver, lambda d: all(abs(v - expected[k]) <= 0.011 for k, v in slider_values(d).items()),
             "the sliders to move to the image's posterior mean")
    assert driver.find_element(By.ID, "seen").get_attribute("src").startswith("data:image/png")

    # A file that is not an image: the server's sentence is on the page.
    junk = tmp_path / "notes.png"
    junk.write_text("shopping list")
    driver.find_element(By.ID, "file").send_keys(str(junk))
    wait_for(driver, lambda d: "not an image file" in d.find_element(By.ID, "message").text, "the error message")

    # A stroke on the canvas is encoded as soon as the pen lifts.
    settled = slider_values(driver)
    canvas = driver.find_element(By.ID, "draw")
    ActionChains(driver).move_to_element_with_offset(canvas, -60, -60).click_and_hold() \
        .move_by_offset(40, 30).move_by_offset(40, 30).release().perform()
    wait_for(driver, lambda d: "your drawing" in d.find_element(By.ID, "message").text, "the drawing to be encoded")
    assert slider_values(driver) != settled

    # The default interpolation (class 0 to class 1) plays as a GIF with a download link.
    driver.find_element(By.ID, "interpolate").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "gif").is_displayed(), "the interpolation GIF")
    assert driver.find_element(By.ID, "download").get_attribute("href").startswith("blob:")
    wait_for(driver, lambda d: "PCA" in d.find_element(By.ID, "map-status").text, "the latent map")

    # Clicking a point of the map decodes that test image's code.
    driver.execute_script("""
        const canvas = document.getElementById('map');
        const box = canvas.getBoundingClientRect();
        const frame = mapFrame(), [x, y] = frame(state.map.points[0]);
        canvas.dispatchEvent(new MouseEvent('click', {clientX: box.left + x * box.width / canvas.width,
                                                      clientY: box.top + y * box.height / canvas.height}));""")
    wait_for(driver, lambda d: "test image 0" in d.find_element(By.ID, "message").text, "the map click")
    codes = driver.execute_script("return state.map.codes[0];")
    wait_for(driver, lambda d: all(abs(v - codes[k]) <= 0.011 for k, v in slider_values(d).items()), "the sliders")

    shot = os.environ.get("VAETOOL_EXPLORE_SCREENSHOT")
    if shot:
        driver.save_screenshot(shot)


# -- packaging -------------------------------------------------------------------------------------

def test_a_regular_install_ships_the_pages_files(tmp_path):
    """``pip install .`` (not editable) must carry the static files, or the page is a 404."""
    repository = Path(__file__).resolve().parents[1]
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repository / name, source / name)
    shutil.copytree(repository / "vaetool", source / "vaetool", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--disable-pip-version-check",
                           "--target", str(tmp_path / "site"), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    shipped = tmp_path / "site" / "vaetool" / "explore" / "static"
    for name in ("index.html", "explore.js", "explore.css"):
        assert (shipped / name).read_bytes() == (repository / "vaetool" / "explore" / "static" / name).read_bytes()
