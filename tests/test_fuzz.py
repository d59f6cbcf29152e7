"""Property-based fuzz of the two readers of untrusted files: model files and latent files.

Whatever the bytes, reading either loads something consistent or raises one ``VaetoolError``
whose message is one line: never another exception, never a hang. The example counts are kept
small so that the whole file takes seconds; ``benchmarks/fuzz.py`` runs a thousand mutations
with time and memory watched.
"""
from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")  # the `test` extra installs it
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import vaetool  # noqa: E402
from vaetool import latentfile  # noqa: E402
from vaetool.errors import VaetoolError  # noqa: E402

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# JSON values as a hostile header holds them: huge, negative, non-finite numbers, wrong types, nesting.
NUMBERS = st.one_of(st.integers(min_value=-2**70, max_value=2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, -1, 1, 10**9, 2**63, 1e308]))
JSON = st.recursive(st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=8)),
                    lambda inner: st.one_of(st.lists(inner, max_size=4),
                                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                    max_leaves=12)


def _valid_model_bytes() -> bytes:
    torch.manual_seed(0)
    model = vaetool.create("mlp", "gaussian", input_shape=(1, 6, 6), latent_dim=2,
                           architecture_options={"hidden": [8]})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.safetensors"
        vaetool.save(model, path)
        return path.read_bytes()


VALID = _valid_model_bytes()
(_LENGTH,) = struct.unpack("<Q", VALID[:8])
HEADER = json.loads(VALID[8:8 + _LENGTH])
CONFIG = json.loads(HEADER["__metadata__"]["vaetool"])["config"]


def _load(data: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.safetensors"
        path.write_bytes(data)
        try:
            return vaetool.load(path)
        except VaetoolError as exc:
            assert "\n" not in str(exc) and str(exc), repr(str(exc))
            return None


def _with_header(header: dict) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + VALID[8 + _LENGTH:]


def _with_config(config) -> bytes:
    header = json.loads(json.dumps(HEADER))
    vaetool_header = json.loads(header["__metadata__"]["vaetool"])
    vaetool_header["config"] = config
    header["__metadata__"]["vaetool"] = json.dumps(vaetool_header)
    return _with_header(header)


def test_the_valid_file_loads():
    assert _load(VALID) is not None


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_flipped_bytes(flips):
    data = bytearray(VALID)
    for position, value in flips:
        data[position] = value
    _load(bytes(data))


@FUZZ
@given(st.integers(0, len(VALID) - 1))
def test_truncations(length):
    assert _load(VALID[:length]) is None


@FUZZ
@given(st.integers(0, 2**64 - 1))
def test_the_length_field(length):
    _load(struct.pack("<Q", length) + VALID[8:])


@FUZZ
@given(st.sampled_from(sorted(CONFIG)), JSON)
def test_a_config_entry_replaced_by_any_json(key, value):
    _load(_with_config({**CONFIG, key: value}))


@FUZZ
@given(st.sampled_from(["latent_dim", "num_classes", "input_shape.0", "input_shape.1", "input_shape.2",
                        "architecture_options.hidden.0"]), NUMBERS)
def test_sizes_of_any_number(where, value):
    config = json.loads(json.dumps(CONFIG))
    *path, last = where.split(".")
    target = config
    for part in path:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[int(last) if isinstance(target, list) else last] = value
    _load(_with_config(config))


@FUZZ
@given(st.sets(st.sampled_from(sorted(CONFIG)), min_size=1))
def test_missing_config_keys(missing):
    _load(_with_config({k: v for k, v in CONFIG.items() if k not in missing}))


@FUZZ
@given(st.integers(1, 50_000), st.sampled_from(["[", "{\"a\":"]))
def test_deep_nesting_in_the_header(depth, opener):
    closer = "]" if opener == "[" else "}"
    nested = json.loads(json.dumps(CONFIG))
    text = json.dumps({"schema": 1, "config": nested})[:-1] + f', "deep": {opener * depth}1{closer * depth}}}'
    header = json.loads(json.dumps(HEADER))
    header["__metadata__"]["vaetool"] = text
    _load(_with_header(header))


@FUZZ
@given(st.sampled_from(sorted(k for k in HEADER if k != "__metadata__")),
       st.sampled_from([float("nan"), float("inf"), -float("inf")]))
def test_non_finite_weights_are_refused(key, value):
    tensors = {k: v for k, v in HEADER.items() if k != "__metadata__"}
    start, _ = tensors[key]["data_offsets"]
    data = bytearray(VALID)
    data[8 + _LENGTH + start: 8 + _LENGTH + start + 4] = struct.pack("<f", value)
    assert _load(bytes(data)) is None


# -- latent files -------------------------------------------------------------------------------------

def _read_latents(suffix: str, data: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"z{suffix}"
        path.write_bytes(data)
        try:
            latents = latentfile.read(path)
        except VaetoolError as exc:
            assert "\n" not in str(exc) and str(exc)
            return None
    n, dim = latents.rows.shape  # posterior means, or the codes of a discrete latent (integer arrays)
    assert latents.discrete or latents.log_var.shape == (n, dim)
    assert latents.labels.shape == (n,) and len(latents.names) == n
    return latents


def _valid_latents(suffix: str) -> bytes:
    rng = np.random.default_rng(0)
    latents = latentfile.Latents(rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(3, 4)).astype(np.float32),
                                 np.array([0, 1, -1]), ["a", "b", "c"])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"z{suffix}"
        latentfile.write(path, latents)
        return path.read_bytes()


VALID_LATENTS = {suffix: _valid_latents(suffix) for suffix in latentfile.SUFFIXES}


@pytest.mark.parametrize("suffix", latentfile.SUFFIXES)
def test_valid_latent_files_read(suffix):
    assert _read_latents(suffix, VALID_LATENTS[suffix]) is not None


@FUZZ
@given(st.sampled_from(latentfile.SUFFIXES), st.data())
def test_latent_files_with_flipped_bytes_or_cut_short(suffix, data):
    valid = bytearray(VALID_LATENTS[suffix])
    for _ in range(data.draw(st.integers(1, 6))):
        valid[data.draw(st.integers(0, len(valid) - 1))] = data.draw(st.integers(0, 255))
    _read_latents(suffix, bytes(valid[:data.draw(st.integers(0, len(valid)))]))


@FUZZ
@given(JSON)
def test_json_latent_files_of_any_shape(document):
    _read_latents(".json", json.dumps(document).encode())


@FUZZ
@given(st.lists(st.fixed_dictionaries({}, optional={"name": JSON, "label": JSON, "mean": JSON, "log_var": JSON}),
                max_size=4))
def test_json_latent_items_of_any_type(items):
    _read_latents(".json", json.dumps({"latent_dim": 4, "items": items}).encode())


@FUZZ
@given(st.lists(st.lists(st.text(max_size=6), max_size=6), max_size=5))
def test_csv_latent_files_of_any_cells(rows):
    import csv
    import io

    out = io.StringIO()
    csv.writer(out).writerows(rows)
    _read_latents(".csv", out.getvalue().encode())


@FUZZ
@given(st.integers(0, 5), st.integers(0, 5), st.integers(0, 3), st.sampled_from(["<f4", "<i8", "<U3", "?"]))
def test_npy_latent_arrays_of_any_shape(a, b, extra, dtype):
    import io

    shape = (a, b, *([2] * extra))
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(shape, dtype=dtype), allow_pickle=False)
    _read_latents(".npy", buffer.getvalue())
