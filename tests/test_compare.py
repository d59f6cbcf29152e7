"""``vaetool compare``: the table, the reports, the numbers behind them, the refusals, the verdicts.

Tiny models (one epoch on ``tiny-squares``) are trained once for the module; the verdict wording is
tested on hand-made entries, so it does not depend on what one epoch of training happens to give.
"""
from __future__ import annotations

import base64
import html
import io as bytes_io
import json
import math
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

import vaetool
from conftest import TINY_DATASET, TinySquares, assert_clean_error, invoke, ok
from vaetool import compare, images, metrics, registry
from vaetool.errors import VaetoolError
from vaetool.training import TrainConfig, train

LIMIT = 32  # test images every comparison here uses
K = 5  # importance samples
VAES = ["linear", "mlp-b0", "mlp-b1", "mlp-b4", "cvae"]
ALL = [*VAES, "mlp-ae"]
HEADINGS = ["params", "ELBO", "log p(x|z)", "KL", "log p(x) IW", "active", "agg. KL", "FD", "conf."]


# -- models, trained once ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def squares():
    """``tiny-squares`` registered for the whole module: compare looks the dataset up by name."""
    registry.register("dataset", TINY_DATASET, TinySquares)
    yield TINY_DATASET
    registry.unregister("dataset", TINY_DATASET)


@pytest.fixture(scope="module")
def runs(squares, tmp_path_factory) -> dict[str, Path]:
    """Name → run directory (or model file) of every model the tests compare."""
    root = tmp_path_factory.mktemp("runs")
    mlp = {"architecture": "mlp", "architecture_options": {"hidden": [32]}}
    plans = {
        "linear": {"architecture": "linear"},
        "mlp-b0": {**mlp, "beta": 0.0},
        "mlp-b1": {**mlp, "beta": 1.0},
        "mlp-b4": {**mlp, "beta": 4.0},
        "mlp-ae": {**mlp, "autoencoder": True},
        "cvae": {"architecture": "cvae", "architecture_options": {"backbone": "mlp", "hidden": [32]}},
        "shapes-mlp": {**mlp, "dataset": "shapes", "dataset_options": {"size": 16, "n_train": 64, "n_test": 32}},
        "squares-n128": {**mlp, "dataset_options": {"n_train": 128}},
    }
    paths = {}
    for name, plan in plans.items():
        config = TrainConfig(**{"dataset": squares, "latent_dim": 4, "epochs": 1, "batch_size": 64, **plan})
        paths[name] = train(config, root / name, device="cpu").run_dir
    # Same dataset and options as the others, but 8×8 images: built by hand, as no dataset here has them.
    reference = vaetool.load(paths["mlp-b1"]).config
    small = vaetool.create("mlp", "bernoulli", input_shape=(1, 8, 8), latent_dim=4, num_classes=2,
                           architecture_options={"hidden": [32]}, dataset=squares,
                           dataset_options=reference["dataset_options"], training=reference["training"])
    paths["small-8px"] = root / "small-8px.safetensors"
    vaetool.save(small, paths["small-8px"])
    return paths


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch, cache):
    # Nothing may land in the repository; the sample-quality classifier is trained once, into the cache.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAETOOL_RUNS", raising=False)
    monkeypatch.setenv("VAETOOL_CACHE", str(cache))











def compare_cli(runs, names, *extra):
    return ok(invoke("compare", *(runs[n] for n in names), "--iw-samples", K, "--limit", LIMIT,
                     "--device", "cpu", *extra))


def table(output: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The rich table printed by compare: its headings, and model name → heading → cell."""
    lines = [line for line in output.splitlines() if "│" in line or "┃" in line]
    split = [[cell.strip() for cell in re.split("[│┃]", line)[1:-1]] for line in lines]
    headings, rows = split[0], split[1:]
    return headings, {cells[0]: dict(zip(headings, cells)) for cells in rows}


def verdict_lines(output: str) -> list[str]:
    return [line.strip()[2:] for line in output.splitlines() if line.strip().startswith("• ")]


def number(text: str) -> float:
    return float(text.replace(",", ""))


def held_out(n=LIMIT):
    split = TinySquares().load("test")
    return split.images[:n].float() / 255, split.labels[:n]


# -- the table and the reports ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def html_run(runs, cache, tmp_path_factory):
    """Every comparable model at once, with an HTML report: (result, report path)."""
    folder = tmp_path_factory.mktemp("html")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("VAETOOL_CACHE", str(cache))
        result = compare_cli(runs, ALL, "-o", folder / "report.html")
    return result, folder / "report.html"


def test_the_table_lists_every_model_and_column(html_run):
    result, _ = html_run
    headings, rows = table(result.stdout)
    assert f"6 models on {LIMIT} tiny-squares test images" in result.stdout
    for heading in HEADINGS + ["label acc."]:  # label accuracy: a cvae is among them
        assert heading in headings, headings
    assert sorted(rows) == sorted(ALL)
    for name in ALL:
        for heading in HEADINGS:
            if heading == "log p(x) IW" and name == "mlp-ae":
                continue
            number(rows[name][heading])  # a number, not "—"
    assert rows["mlp-ae"]["log p(x) IW"] == "—"  # an autoencoder has no density
    assert number(rows["cvae"]["label acc."]) >= 0
    assert all(rows[name]["label acc."] == "—" for name in ALL if name != "cvae")
    assert rows["mlp-b4"]["description"] == "mlp/bernoulli, 4-D, β=4"
    assert rows["mlp-ae"]["description"] == "mlp/bernoulli, 4-D, AE"
    assert verdict_lines(result.stdout)


def test_without_importance_samples_there_is_no_iw_column(runs):
    result = ok(invoke("compare", runs["mlp-b1"], runs["mlp-ae"], runs["mlp-b1"] / "model.safetensors",
                       "--iw-samples", 0, "--limit", LIMIT, "--device", "cpu"))
    headings, rows = table(result.stdout)
    assert "log p(x) IW" not in headings
    assert "label acc." not in headings  # no conditional model
    assert {"ELBO", "FD", "active"} <= set(headings)
    assert sorted(rows) == ["mlp-ae", "mlp-b1", "mlp-b1′"]  # the same run twice is told apart


def test_the_html_report_is_one_self_contained_file(html_run):
    result, path = html_run
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]
    page = path.read_text()
    sources = re.findall(r"<img src='([^']*)'", page)
    assert len(sources) == 5  # reconstructions, samples, interpolations, rate–distortion, training curves
    for source in sources:
        assert source.startswith("data:image/png;base64,"), source[:60]
        picture = Image.open(bytes_io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
        picture.load()
        assert picture.format == "PNG" and picture.width > 50 and picture.height > 50
    text = html.unescape(page)
    for name in ALL:
        assert f"<tr><th>{name}</th>" in text
    said = verdict_lines(result.stdout)
    assert any(v.startswith("Is deeper better?") for v in said)
    assert any(v.startswith("β from 0 to 4") for v in said)
    assert any(v.startswith("AE vs VAE: mlp-ae") for v in said)
    for verdict in said:
        assert f"<li>{verdict}</li>" in text, verdict


def markdown_cells(line: str) -> list[str]:
    assert line.startswith("|") and line.endswith("|"), line
    return re.split(r"(?<!\\)\|", line)[1:-1]


def test_the_markdown_report_has_a_table_and_its_pictures_beside_it(runs, tmp_path):
    names = ["linear", "mlp-b1", "mlp-ae", "cvae"]
    result = compare_cli(runs, names, "-o", tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    tables = re.findall(r"(?m)(?:^\|.*\n)+", text)
    assert len(tables) == 3  # the numbers, the glossary of columns, each model's settings
    rows = tables[0].splitlines()
    assert len(rows) == 2 + len(names)
    assert len(tables[2].splitlines()) == 2 + len(names)
    widths = {len(markdown_cells(row)) for row in rows}
    assert widths == {len(table(result.stdout)[0])}, rows  # model, description, one per column
    heading = [cell.strip().replace("\\|", "|") for cell in markdown_cells(rows[0])]
    assert heading[:2] == ["model", "description"] and {"log p(x|z)", "log p(x) IW", "label acc."} <= set(heading)
    assert {markdown_cells(row)[0].strip() for row in rows[2:]} == set(names)
    for verdict in verdict_lines(result.stdout):
        assert f"- {verdict}" in text, verdict
    links = re.findall(r"!\[\w+\]\(([^)]+)\)", text)
    assert len(links) == 5
    for link in links:
        assert link.startswith("report_files/") and link.endswith(".png"), link
        with Image.open(tmp_path / link) as picture:
            picture.load()
            assert picture.format == "PNG"


@pytest.fixture(scope="module")
def json_report(runs, cache, tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("json") / "report.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAETOOL_CACHE", str(cache))
        result = compare_cli(runs, ALL, "--seed", 3, "-o", path)
    report = json.loads(path.read_text())
    report["stdout"] = result.stdout
    return report


def test_the_json_report_has_every_model_with_its_numbers_and_config(runs, json_report):
    models = {m["name"]: m for m in json_report["models"]}
    assert [m["name"] for m in json_report["models"]] == ALL
    for name, m in models.items():
        for key in ("elbo", "rec", "kl", "params_total", "active_units", "aggregate_kl", "fid", "confidence"):
            assert isinstance(m[key], (int, float)) and math.isfinite(m[key]), (name, key)
        assert m["config"] == vaetool.load(runs[name]).config
        assert Path(m["path"]) == runs[name] / "model.safetensors"
        assert ("iw_ll" in m) == (name != "mlp-ae")
        assert ("label_accuracy" in m) == (name == "cvae")
    settings = json_report["settings"]
    assert settings | {"classifier_accuracy": None, "date": None, "command": None} == {
        "vaetool_version": vaetool.__version__, "date": None, "command": None,
        "dataset": "tiny-squares", "test_images": LIMIT, "iw_samples": K, "iw_images": LIMIT, "seed": 3,
        "classifier_accuracy": None, "disentanglement_scale": None}  # tiny-squares has no ground-truth factors
    assert 0 <= settings["classifier_accuracy"] <= 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", settings["date"]), settings["date"]
    assert settings["command"].startswith("vaetool compare ")
    glossary = {c["key"]: c for c in json_report["columns"]}
    assert glossary["elbo"]["unit"] == "nats/image" and glossary["elbo"]["better"] == "higher"
    assert glossary["params_total"]["unit"] == "count" and glossary["fid"]["better"] == "lower"
    assert all(c["meaning"] for c in json_report["columns"])
    assert json_report["verdicts"] == verdict_lines(json_report["stdout"])


def test_the_numbers_are_consistent(runs, json_report):
    x, y = held_out()
    for m in json_report["models"]:
        model = vaetool.load(runs[m["name"]])
        beta = 0.0 if model.autoencoder else model.config["objective_options"]["beta"]
        assert m["elbo"] == pytest.approx(m["rec"] - m["kl"], rel=1e-9, abs=1e-9)
        assert m["kl"] == pytest.approx(sum(m["kl_per_dim"]), rel=1e-9, abs=1e-9)
        assert m["objective"] == pytest.approx(-m["rec"] + beta * m["kl"], rel=1e-9, abs=1e-9)
        assert m["params_total"] == sum(p.numel() for p in model.parameters())
        assert 0 <= m["active_units"] <= m["latent_dim"] == 4
        # The same test images and seed as the command line's: the very same numbers.
        terms = metrics.elbo_terms(model, x, y, seed=3)
        assert (m["elbo"], m["rec"], m["kl"]) == pytest.approx((terms["elbo"], terms["rec"], terms["kl"]), rel=1e-9)
        if not model.autoencoder:
            iw = metrics.iw_log_likelihood(model, x, y, k=K, seed=3).mean().item()
            assert m["iw_ll"] == pytest.approx(iw, rel=1e-9)
    models = {m["name"]: m for m in json_report["models"]}
    assert models["mlp-ae"]["kl"] == 0  # an autoencoder has no KL term
    assert models["mlp-b0"]["objective"] == pytest.approx(-models["mlp-b0"]["rec"])
    assert models["mlp-b4"]["objective"] != pytest.approx(-models["mlp-b4"]["elbo"])  # β = 4 weighs KL four times


def test_the_json_report_is_strict_json_when_a_number_is_infinite(runs, tmp_path):
    # Two test images: an autoencoder's aggregate posterior is then singular and its KL infinite.
    # JSON has no Infinity or NaN (RFC 8259); jq, JavaScript and most parsers refuse them.
    ok(invoke("compare", runs["mlp-b1"], runs["mlp-ae"], "--limit", 2, "--iw-samples", K, "--no-sample-quality",
              "--device", "cpu", "-o", tmp_path / "report.json"))
    text = (tmp_path / "report.json").read_text()

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    report = json.loads(text, parse_constant=refuse)
    assert [m["name"] for m in report["models"]] == ["mlp-b1", "mlp-ae"]


def test_an_unknown_report_format_is_refused_before_any_evaluation(runs, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("compare evaluated models before checking the report format")

    monkeypatch.setattr(compare, "load_entries", never)
    monkeypatch.setattr(compare, "evaluate", never)
    assert_clean_error(invoke("compare", runs["mlp-b1"], runs["mlp-ae"], "-o", tmp_path / "report.pdf"),
                       "report.pdf", ".html", ".md", ".json")
    assert not (tmp_path / "report.pdf").exists()


def test_the_same_report_named_twice_is_refused_before_any_evaluation(runs, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("compare evaluated models before checking the reports")

    monkeypatch.setattr(compare, "load_entries", never)
    monkeypatch.setattr(compare, "evaluate", never)
    monkeypatch.chdir(tmp_path)
    assert_clean_error(invoke("compare", runs["mlp-b1"], runs["mlp-ae"], "-o", "r.html", "-o", tmp_path / "r.html"),
                       "r.html", "once")


def test_a_file_where_a_markdown_reports_pictures_go_is_refused_before_any_evaluation(runs, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("compare evaluated models before checking where the report's pictures go")

    monkeypatch.setattr(compare, "load_entries", never)
    monkeypatch.setattr(compare, "evaluate", never)
    (tmp_path / "report_files").write_text("my notes")
    assert_clean_error(invoke("compare", runs["mlp-b1"], runs["mlp-ae"], "-o", tmp_path / "report.md"),
                       f"{tmp_path / 'report_files'} is a file", "report.md")
    assert (tmp_path / "report_files").read_text() == "my notes" and not (tmp_path / "report.md").exists()


# -- refusals -------------------------------------------------------------------------------------

@pytest.mark.parametrize("other, what, mine, theirs", [
    ("shapes-mlp", "dataset", "'tiny-squares'", "'shapes'"),
    ("squares-n128", "dataset options", "'n_train': 256", "'n_train': 128"),
    ("small-8px", "image size", "[1, 16, 16]", "[1, 8, 8]"),
])
def test_models_trained_on_other_data_are_refused(runs, monkeypatch, other, what, mine, theirs):
    monkeypatch.setattr(compare, "evaluate", lambda *a, **k: pytest.fail("evaluated incomparable models"))
    assert_clean_error(invoke("compare", runs["mlp-b1"], runs["mlp-ae"], runs[other], "--device", "cpu"),
                       "mlp-b1", other, f"with {what} ", mine, theirs)


def test_a_path_that_is_not_a_model(runs, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    assert_clean_error(invoke("compare", runs["mlp-b1"], notes, "--device", "cpu"), "notes.txt")
    assert_clean_error(invoke("compare", runs["mlp-b1"], tmp_path / "missing", "--device", "cpu"), "missing")
    (tmp_path / "empty").mkdir()
    assert_clean_error(invoke("compare", tmp_path / "empty", runs["mlp-b1"], "--device", "cpu"), "empty")


def test_no_models_at_all():
    result = invoke("compare")
    assert result.exit_code not in (0, None)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


def test_load_entries_needs_at_least_one_model():
    with pytest.raises(VaetoolError, match="at least one model"):
        compare.load_entries([], "cpu")


def test_a_negative_iw_sample_count(runs):
    assert_clean_error(invoke("compare", runs["mlp-b1"], "--iw-samples", -1, "--device", "cpu"), "--iw-samples")


# -- verdicts, on hand-made numbers --------------------------------------------------------------------

class Stub:
    """All an Entry needs of a model for the verdicts: its config."""

    def __init__(self, config):
        self.config = config


def entry(name, architecture="mlp", *, beta=1.0, autoencoder=False, latent=4, likelihood="bernoulli",
          options=None, **numbers):
    config = {"architecture": architecture, "architecture_options": options or {"hidden": [32]},
              "likelihood": likelihood, "likelihood_options": {}, "latent_dim": latent,
              "autoencoder": autoencoder, "training": {"beta": beta}}
    values = {"elbo": -100.0, "rec": -90.0, "kl": 10.0, "params_total": 1000, "beta": None if autoencoder else beta,
              "active_units": latent, "latent_dim": latent, "aggregate_kl": 1.0}
    if not autoencoder:
        values["iw_ll"] = -95.0
    values.update(numbers)
    return compare.Entry(name, Path(name), Stub(config), values)


def said(entries, start):
    return [v for v in compare.verdicts(entries) if v.startswith(start)]


def test_deeper_is_better_names_the_winner():
    lin = entry("lin", "linear", iw_ll=-100.0, params_total=100)
    deep = entry("deep", iw_ll=-90.0, params_total=300)
    weak = entry("weak", "conv", iw_ll=-120.0, params_total=500)
    (sentence,) = said([lin, weak, deep], "Is deeper better?")
    assert sentence.startswith("Is deeper better? deep (log p(x) -90.0) beats the linear model lin (-100.0)")
    assert "by 10.0 nats, with 3.0× the parameters" in sentence


def test_deeper_is_not_always_better():
    lin = entry("lin", "linear", iw_ll=-100.0, params_total=100)
    deep = entry("deep", iw_ll=-112.5, params_total=250)
    (sentence,) = said([deep, lin], "Is deeper better?")
    assert "deep (log p(x) -112.5) does not beat the linear model lin (-100.0) by 12.5 nats" in sentence
    assert "2.5× the parameters" in sentence


def test_deeper_uses_the_elbo_when_a_vae_lacks_the_iw_estimate():
    lin = entry("lin", "linear", elbo=-100.0, params_total=100)
    deep = entry("deep", elbo=-80.0, params_total=100)
    del lin.numbers["iw_ll"], deep.numbers["iw_ll"]
    (sentence,) = said([lin, deep], "Is deeper better?")
    assert "deep (ELBO -80.0) beats the linear model lin (-100.0) by 20.0 nats" in sentence


@pytest.mark.parametrize("change", [{"latent": 8}, {"likelihood": "gaussian"}, {"autoencoder": True}])
def test_deeper_needs_the_same_latent_size_and_likelihood(change):
    assert not said([entry("lin", "linear"), entry("deep", **change)], "Is deeper better?")


def test_the_beta_sentence_reports_the_best_beta_for_samples_and_for_the_score():
    sweep = [entry("b4", beta=4.0, kl=2.0, rec=-120.0, iw_ll=-110.0, fid=30.0),
             entry("b0", beta=0.0, kl=40.0, rec=-60.0, iw_ll=-90.0, fid=50.0),
             entry("b1", beta=1.0, kl=12.0, rec=-80.0, iw_ll=-95.0, fid=10.0)]
    (sentence,) = said(sweep, "β from")
    assert sentence.startswith("β from 0 to 4: KL (rate) 40.0 → 2.0 nats, log p(x|z) (distortion) -60.0 → -120.0")
    assert "samples are best (lowest FD) at β = 1" in sentence
    assert sentence.endswith("the best log p(x) is at β = 0.")
    sweep[0].numbers.update(iw_ll=-50.0, fid=1.0)
    (sentence,) = said(sweep, "β from")
    assert "samples are best (lowest FD) at β = 4" in sentence and sentence.endswith("log p(x) is at β = 4.")


def test_no_beta_sentence_without_a_beta_sweep():
    assert not said([entry("one", beta=1.0)], "β from")
    assert not said([entry("a", beta=1.0), entry("b", beta=1.0)], "β from")
    assert not said([entry("a", beta=1.0), entry("b", beta=4.0, latent=8)], "β from")
    assert not said([entry("a", beta=1.0), entry("b", "conv", beta=4.0)], "β from")


def test_no_beta_sentence_for_models_that_differ_in_more_than_beta():
    # A narrow and a wide MLP: the difference in their numbers is not β's doing.
    narrow = entry("narrow", beta=1.0, options={"hidden": [32]})
    wide = entry("wide", beta=4.0, options={"hidden": [512, 256]})
    assert not said([narrow, wide], "β from")


@pytest.mark.parametrize("ae_numbers, words", [
    ({"rec": -50.0, "aggregate_kl": 20.0, "fid": 9.0}, ("reconstructs better", "farther from", "are worse")),
    ({"rec": -70.0, "aggregate_kl": 0.5, "fid": 2.0}, ("reconstructs worse", "closer to", "are better")),
])
def test_ae_versus_vae(ae_numbers, words):
    ae = entry("ae", autoencoder=True, kl=0.0, **ae_numbers)
    vae = entry("vae", rec=-60.0, aggregate_kl=1.0, fid=3.0)
    (sentence,) = said([ae, vae], "AE vs VAE:")
    assert sentence.startswith(f"AE vs VAE: ae {words[0]} than vae (log p(x|z) {ae_numbers['rec']:.1f} vs -60.0)")
    assert f"its codes are {words[1]} the prior" in sentence
    assert f"so its samples from N(0, I) {words[2]}" in sentence


def test_ae_versus_the_vae_with_the_best_elbo():
    ae = entry("ae", autoencoder=True, rec=-65.0)
    rivals = [entry("poor", elbo=-150.0, rec=-70.0), entry("good", elbo=-90.0, rec=-60.0)]
    (sentence,) = said([ae, *rivals], "AE vs VAE:")
    assert "ae reconstructs worse than good" in sentence


@pytest.mark.parametrize("change", [{"architecture": "conv"}, {"latent": 8}])
def test_no_ae_versus_vae_without_a_matching_vae(change):
    assert not said([entry("ae", autoencoder=True), entry("vae", **change)], "AE vs VAE:")


def test_collapsed_dimensions_are_named():
    verdicts = compare.verdicts([entry("one", active_units=3), entry("three", active_units=1),
                                 entry("none", active_units=0), entry("all", active_units=4)])
    assert "one: 3 of 4 latent dimensions are active; the other 1 has collapsed to the prior (unused)." in verdicts
    assert "three: 1 of 4 latent dimensions is active; the other 3 have collapsed to the prior (unused)." in verdicts
    assert [v for v in verdicts if v.startswith("none:")] == [
        "none: posterior collapse — no latent dimension is active; the decoder ignores z."]
    assert not [v for v in verdicts if v.startswith("all:")]


def test_regularization_names_the_closest_and_farthest_aggregate_posterior():
    (sentence,) = said([entry("a", aggregate_kl=3.0), entry("b", aggregate_kl=0.25), entry("c", aggregate_kl=9.5)],
                       "Regularization:")
    assert "closest to the prior for b (KL 0.25) and farthest for c (9.50)" in sentence
    assert not said([entry("a")], "Regularization:")


def test_best_picks_the_extreme_in_the_right_direction():
    entries = [entry("a", elbo=-90.0, fid=5.0), entry("b", elbo=-80.0, fid=7.0), entry("c", elbo=-80.0, fid=None)]
    assert compare.best(entries, "elbo", "max") == {"b", "c"}
    assert compare.best(entries, "elbo", "min") == {"a"}
    assert compare.best(entries, "fid", "min") == {"a"}  # None is no value
    assert compare.best(entries, "fid", "max") == {"b"}
    assert compare.best(entries, "kl", None) == set()
    assert compare.best(entries[:1], "elbo", "max") == set()
    assert compare.best(entries, "label_accuracy", "max") == set()


def test_columns_are_those_some_entry_has():
    entries = [entry("a"), entry("ae", autoencoder=True)]
    keys = [key for key, *_ in compare.columns(entries)]
    assert "iw_ll" in keys and "fid" not in keys and "label_accuracy" not in keys
    assert keys == [key for key, *_ in compare.COLUMNS if key in keys]  # in the table's order


# -- the pictures ---------------------------------------------------------------------------------

@pytest.mark.parametrize("names", [["mlp-b1"], ["mlp-b1", "mlp-ae", "cvae"]])
def test_pictures_have_one_row_per_model(runs, names):
    entries = compare.load_entries([runs[n] for n in names], "cpu")
    x, y = held_out(16)
    pictures = compare.pictures(entries, x, y)
    pitch, pad = 96 + 2, 2  # 16-px images at zoom 6, 2 px apart
    assert pictures["reconstructions"].shape[0] == (len(names) + 1) * pitch + pad
    assert pictures["samples"].shape[0] == len(names) * pitch + pad
    assert pictures["interpolations"].shape[0] == len(names) * pitch + pad
    # The top row is the data itself, the rows below each model's reconstructions, in order.
    with torch.no_grad():
        expected = images.grid(torch.cat([x[:8]] + [e.model.reconstruct(x[:8], y[:8] if e.model.conditional else None)
                                                    for e in entries]), nrow=8)
    drawn = pictures["reconstructions"][:, -expected.shape[1]:, 0]
    assert (drawn == expected).all()


def test_likelihood_columns_are_ranked_only_among_models_with_the_same_likelihood():
    # A Gaussian density and a Bernoulli mass in nats are not comparable: the Gaussian model, far
    # "better" in raw numbers, must not be highlighted, while each Bernoulli pair is ranked as usual.
    a = entry("a", elbo=-100.0)
    b = entry("b", elbo=-90.0)
    g = entry("g", likelihood="gaussian", elbo=250.0)
    assert compare.best([a, b, g], "elbo", "max") == {"b"}
    assert compare.best([a, g], "elbo", "max") == set()
    # Columns that are not likelihoods are ranked across every model.
    assert compare.best([a, b, g], "aggregate_kl", "min") == {"a", "b", "g"}


def test_deeper_vs_linear_compares_at_the_same_beta_when_there_is_one():
    lin = entry("lin", "linear", beta=1.0, iw_ll=-130.0)
    same = entry("mlp-b1", beta=1.0, iw_ll=-100.0)
    other = entry("mlp-b05", beta=0.5, iw_ll=-99.0)
    (sentence,) = said([lin, same, other], "Is deeper better?")
    assert "mlp-b1" in sentence and "mlp-b05" not in sentence


def test_compare_scores_disentanglement_for_a_dataset_with_ground_truth(tmp_path, monkeypatch):
    monkeypatch.setenv("VAETOOL_CACHE", str(tmp_path / "cache"))
    options = {"size": 16, "n_train": 32, "n_test": 64, "seed": 0, "grid": False}
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 16, 16), latent_dim=3,
                           architecture_options={"hidden": [8]}, dataset="shapes", dataset_options=options)
    vaetool.save(model, tmp_path / "m.safetensors")
    args = ("compare", tmp_path / "m.safetensors", "--iw-samples", "2", "--no-sample-quality", "--device", "cpu",
            "--disentanglement-scale", "0.002", "-o", tmp_path / "r.json")
    report = json.loads((ok(invoke(*args)) and (tmp_path / "r.json")).read_text())
    scores = report["models"][0]
    for key in ("beta_vae", "factor_vae", "mig", "dci_d", "dci_c", "dci_i", "sap"):
        assert 0.0 <= scores[key] <= 1.0, key
    assert report["settings"]["disentanglement_scale"] == 0.002
    ok(invoke(*args[:-2], "--no-disentanglement", "-o", tmp_path / "r2.json"))
    assert "mig" not in json.loads((tmp_path / "r2.json").read_text())["models"][0]


# -- outputs for scripts, logs and small terminals ----------------------------------------------------

def test_several_reports_come_from_one_run(runs, tmp_path, monkeypatch):
    calls = []
    evaluate = compare.evaluate
    monkeypatch.setattr(compare, "evaluate", lambda *a, **k: calls.append(1) or evaluate(*a, **k))
    compare_cli(runs, ["mlp-b1", "mlp-ae"], "-o", tmp_path / "r.html", "-o", tmp_path / "r.json",
                "-o", tmp_path / "r.md")
    assert calls == [1]  # evaluated once for all three
    report = json.loads((tmp_path / "r.json").read_text())
    assert [m["name"] for m in report["models"]] == ["mlp-b1", "mlp-ae"]
    page, markdown = html.unescape((tmp_path / "r.html").read_text()), (tmp_path / "r.md").read_text()
    for m in report["models"]:
        assert f"<tr><th>{m['name']}</th>" in page and f"| {m['name']} |" in markdown
        assert f"{m['elbo']:.2f}" in page and f"{m['elbo']:.2f}" in markdown
    assert (tmp_path / "r_files" / "samples.png").is_file()


def test_reports_have_a_header_a_glossary_and_each_models_settings(html_run):
    _, path = html_run
    page = html.unescape(path.read_text())
    header = re.search(r"<p class='header'>(.*?)</p>", page).group(1)
    assert header.startswith(f"vaetool {vaetool.__version__} · ") and "UTC · vaetool compare " in header
    glossary = page[page.index("<h2>Columns</h2>"):page.index("<h2>Models</h2>")]
    assert "<tr><th>log p(x) IW</th><td>nats/image</td><td>higher</td>" in glossary
    assert "<tr><th>params</th><td>count</td>" in glossary and "<tr><th>conf.</th><td>probability</td>" in glossary
    settings = page[page.index("<h2>Models</h2>"):]
    assert "<tr><th>mlp-b4</th><td>mlp (hidden=[32]" in settings
    assert "<td>elbo (beta=4" in settings and "epochs=1, batch_size=64" in settings


@pytest.fixture
def every_stage_told(monkeypatch):
    """Off a terminal, stages shorter than a second are not announced; here every one is."""
    from vaetool.cli import output

    monkeypatch.setattr(output.Stages, "QUIET_START", 0.0)


def test_json_goes_to_stdout_and_nothing_else_does(runs, every_stage_told):
    result = compare_cli(runs, ["mlp-b1", "mlp-ae"], "--json")
    report = json.loads(result.stdout)  # any other text on stdout would make this fail
    assert [m["name"] for m in report["models"]] == ["mlp-b1", "mlp-ae"]
    assert report["verdicts"] and report["columns"]
    assert "mlp-b1: ELBO: done" in result.stderr  # progress went to stderr


def test_progress_is_told_when_the_output_is_not_a_terminal(runs, every_stage_told):
    result = compare_cli(runs, ["mlp-b1", "cvae"])
    for model in ("mlp-b1", "cvae"):
        for stage in ("ELBO", f"log p(x), K={K} on {LIMIT} images", "latent usage", "sample quality"):
            assert re.search(rf"{re.escape(f'{model}: {stage}')}: done, \d+\.\d s", result.stderr), result.stderr
    assert "Training the tiny-squares classifier" in result.stderr or "Preparing the tiny-squares" in result.stderr


def rows_by_heading(output: str) -> dict[str, list[str]]:
    """Heading → every cell in rows that start with that heading, across all tables printed."""
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        if "│" in line:
            cells = [cell.strip() for cell in line.split("│")[1:-1]]
            found.setdefault(cells[0], []).extend(cells[1:])
    return found


def test_at_80_columns_every_number_is_shown_in_full(runs, tmp_path):
    from rich.cells import cell_len

    result = ok(invoke("compare", *(runs[n] for n in ALL), "--iw-samples", K, "--limit", LIMIT, "--device", "cpu",
                       "-o", tmp_path / "r.json", columns=80))
    drawn = [line for line in result.stdout.splitlines() if set(line) & set("│┌└├─")]
    assert drawn and max(cell_len(line) for line in drawn) <= 80  # verdicts are lines of text, never cut
    assert "…" not in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    cells = rows_by_heading(result.stdout)
    shown = 0
    for m in report["models"]:
        for key, heading, fmt, _ in compare.columns([compare.Entry(m["name"], Path(), None, m)]):
            if m.get(key) is not None:
                assert fmt.format(m[key]) in cells[heading], (m["name"], heading, cells.get(heading))
                shown += 1
        assert f"{m['name']}: {m['description']}" in result.stdout  # the descriptions are listed instead
    assert shown > 40


def test_a_wide_terminal_keeps_one_row_per_model(runs):
    result = compare_cli(runs, ["mlp-b1", "mlp-ae"])
    headings, rows = table(result.stdout)
    assert headings[:3] == ["model", "description", "params"] and sorted(rows) == ["mlp-ae", "mlp-b1"]
    assert "nats/image: ELBO, log p(x|z), KL" in result.stdout  # the units line under the table


def test_the_default_protocol_is_quick_and_full_is_the_published_one(runs, monkeypatch):
    seen = []

    def iw(model, images, labels=None, k=5000, **kwargs):
        seen.append(("iw", k, len(images)))
        return torch.zeros(len(images), dtype=torch.float64)

    monkeypatch.setattr(metrics, "iw_log_likelihood", iw)
    monkeypatch.setattr(compare, "_disentanglement", lambda model, scale, *a, **k: seen.append(("scale", scale)) or {})
    n = len(TinySquares().load("test"))
    base = ("compare", runs["mlp-b1"], "--no-sample-quality", "--device", "cpu")
    ok(invoke(*base))
    assert seen == [("iw", 100, n), ("scale", 0.01)]  # 64 test images: under the 500 the IW estimate uses
    seen.clear()
    ok(invoke(*base, "--full"))
    assert seen == [("iw", 5000, n), ("scale", 1.0)]
    seen.clear()
    ok(invoke(*base, "--full", "--iw-images", 10, "--disentanglement-scale", 0.5, "--iw-samples", 7))
    assert seen == [("iw", 7, 10), ("scale", 0.5)]


def test_a_cpu_model_is_evaluated_channels_last_to_the_same_numbers(tmp_path):
    model = vaetool.create("conv", "bernoulli", input_shape=(1, 16, 16), latent_dim=3,
                           architecture_options={"channels": [4, 8]})
    vaetool.save(model, tmp_path / "conv.safetensors")
    entry, = compare.load_entries([tmp_path / "conv.safetensors"], torch.device("cpu"))
    weights = [p for p in entry.model.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    x = torch.rand(12, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    plain = vaetool.load(tmp_path / "conv.safetensors")
    for function in (lambda m, x: [metrics.elbo_terms(m, x)[key] for key in ("elbo", "rec", "kl")],
                     lambda m, x: metrics.iw_log_likelihood(m, x, k=7).tolist()):
        got, expected = function(entry.model, x), function(plain, x)
        assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_compare_lets_waiting_threads_sleep_unless_told_otherwise(given, expected):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    script = ("import os; from vaetool.cli.compare import _wait_passively; _wait_passively(); "
              "print(os.environ.get('OMP_WAIT_POLICY'))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.stdout.strip() == expected, done.stderr
