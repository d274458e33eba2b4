"""The loader contract (stacking/base/_base.py), checked for EVERY registered loader.

:class:`LoaderContract` is the reusable suite, run by ``TestLoaderContract`` over every
registered format. A new format is one module plus ``register_loader``; it must also add
a sample here (``SAMPLES``: which file of the session's ``model_zoo`` it reads), or
``test_every_registered_loader_has_a_sample`` fails.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from stacking.base import KINDS, LOADERS, FrozenModel, _base, get_loader, load_base_model
from stacking.errors import BaseModelError

# loader format -> the model_zoo format key of its sample files
SAMPLES = {"keras": "keras", "savedmodel": "savedmodel", "tflite": "tflite", "onnx": "onnx"}
FORMATS = [loader.format for loader in LOADERS]
ATOL = {"tflite": 1e-3}


def _loader(fmt):
    return next(loader for loader in LOADERS if loader.format == fmt)


def _sample(model_zoo, name, fmt):
    return model_zoo[name].paths[SAMPLES[fmt]]


def formats_without_sample() -> set[str]:
    return {loader.format for loader in _base.LOADERS} - set(SAMPLES)


def test_every_registered_loader_has_a_sample():
    assert FORMATS, "no loader is registered"
    missing = formats_without_sample()
    assert not missing, f"add a sample to SAMPLES for {sorted(missing)}"


def test_a_loader_registered_without_a_sample_is_caught(monkeypatch):
    from stacking.base import register_loader

    monkeypatch.setattr(_base, "LOADERS", list(LOADERS))
    unsampled = type(LOADERS[0])()
    unsampled.format = "unsampled"
    register_loader(unsampled)
    assert formats_without_sample() == {"unsampled"}


class LoaderContract:
    """The contract every loader keeps, on the session's ``model_zoo`` samples; a subclass
    is parametrized with ``fmt`` (a registered loader's format)."""

    def test_matches_its_own_files_only(self, model_zoo, fmt):
        loader = _loader(fmt)
        for other in FORMATS:
            path = _sample(model_zoo, "functional-single", other)
            assert loader.matches(path) == (other == fmt)
            assert (get_loader(path) is loader) == (other == fmt)

    def test_describes_inputs_in_declared_order(self, model_zoo, fmt):
        frozen = _loader(fmt).load(_sample(model_zoo, "functional-multi_input", fmt))
        assert isinstance(frozen, FrozenModel) and frozen.kind in KINDS
        assert frozen.input_names == ["zeta", "alpha"] and frozen.declared_order
        assert frozen.input_shapes == [(3,), (3,)]
        assert frozen.input_dtypes == ["float32", "float32"]
        described = json.loads(json.dumps(frozen.describe()))
        assert [i["name"] for i in described["inputs"]] == ["zeta", "alpha"]

    def test_predicts_like_a_direct_call_in_any_batch_size(self, model_zoo, fmt):
        entry = model_zoo["functional-multi_input"]
        frozen = _loader(fmt).load(_sample(model_zoo, entry.name, fmt))
        expected = entry.expected()[0]
        for batch_size in (1, 7, 1000):  # one row, partial last batch, one batch
            got = frozen.predict(entry.inputs, batch_size=batch_size)
            np.testing.assert_allclose(got, expected, atol=ATOL.get(fmt, 1e-5))
        empty = frozen.predict([x[:0] for x in entry.inputs], batch_size=7)
        assert empty.shape == (0, *expected.shape[1:])

    def test_picks_an_output_by_name_and_by_index(self, model_zoo, fmt):
        entry = model_zoo["functional-multi_output"]
        path = _sample(model_zoo, entry.name, fmt)
        unselected = _loader(fmt).load(path)
        assert len(unselected.output_names) == 2
        assert unselected.output_shapes == [(2,), (1,)]
        with pytest.raises(BaseModelError, match=r"several outputs\. Received: output=None"):
            unselected.predict(entry.inputs, batch_size=8)
        with pytest.raises(BaseModelError, match=r"has no such output\. Received: output='nope'"):
            _loader(fmt).load(path, output="nope")
        for index, expected in enumerate(entry.expected()):
            name = unselected.output_names[index]
            by_name = _loader(fmt).load(path, output=name).predict(entry.inputs, batch_size=8)
            by_index = load_base_model(path, output=index).predict(entry.inputs, batch_size=8)
            np.testing.assert_allclose(by_name, expected, atol=ATOL.get(fmt, 1e-5))
            np.testing.assert_array_equal(by_name, by_index)

    def test_supports_or_refuses_layers_clearly(self, model_zoo, fmt):
        entry = model_zoo["functional-multi_output"]
        path = _sample(model_zoo, entry.name, fmt)
        frozen = _loader(fmt).load(path)
        if not frozen.layer_names:
            with pytest.raises(
                BaseModelError, match=r"`layer:` needs a Keras model.*layer='hidden'"
            ):
                _loader(fmt).load(path, layer="hidden")
            return
        import keras

        assert "hidden" in frozen.layer_names
        embed = _loader(fmt).load(path, layer="hidden").predict(entry.inputs, batch_size=8)
        hidden = keras.Model(entry.model.inputs, entry.model.get_layer("hidden").output)
        np.testing.assert_allclose(embed, hidden(entry.inputs[0]), atol=1e-5)
        with pytest.raises(BaseModelError, match=r"has no layer 'nope'.*its layers are \["):
            _loader(fmt).load(path, layer="nope")

    def test_is_stateless_and_thread_safe(self, model_zoo, fmt):
        """One loader instance serves several threads; each owns the model it loaded."""
        entry = model_zoo["functional-multi_input"]
        path = _sample(model_zoo, entry.name, fmt)

        def work(seed: int) -> tuple[np.ndarray, np.ndarray]:
            rows = np.random.default_rng(seed).permutation(len(entry.inputs[0]))
            frozen = _loader(fmt).load(path)
            return rows, frozen.predict([x[rows] for x in entry.inputs], batch_size=3)

        expected = entry.expected()[0]
        with ThreadPoolExecutor(max_workers=3) as pool:
            for rows, got in pool.map(work, range(3)):
                np.testing.assert_allclose(got, expected[rows], atol=ATOL.get(fmt, 1e-5))


@pytest.mark.parametrize("fmt", FORMATS)
class TestLoaderContract(LoaderContract):
    pass
