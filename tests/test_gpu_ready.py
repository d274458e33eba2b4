"""Nothing in the engine pins work to the CPU: where a GPU is offered, it is used.

This machine has no GPU, so the path is checked on the CPU: the provider choice as a
function of what onnxruntime offers, the session a real ONNX model gets here, and the
package's source for device pins."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import stacking
from stacking.base import load_base_model
from stacking.base._onnx import PREFERRED_PROVIDERS, session_providers


def test_onnx_sessions_ask_for_the_gpu_first_when_onnxruntime_offers_it():
    gpu_build = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert session_providers(gpu_build) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    rocm = ["ROCMExecutionProvider", "CPUExecutionProvider"]
    assert session_providers(rocm) == rocm
    assert session_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert session_providers([]) == ["CPUExecutionProvider"]  # never an empty list


def test_an_onnx_member_runs_on_what_this_onnxruntime_offers(tmp_path):
    import onnxruntime as ort
    from sklearn.linear_model import LogisticRegression

    from stacking.training import to_onnx_bytes

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype("float32")
    estimator = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    path = tmp_path / "lr.onnx"
    path.write_bytes(to_onnx_bytes(estimator, 3, input_name="x"))
    model = load_base_model(path)
    expected = session_providers(ort.get_available_providers())
    assert model._session.get_providers() == expected
    np.testing.assert_allclose(
        model.predict([x], batch_size=16), estimator.predict_proba(x), atol=1e-5
    )


def test_no_module_pins_a_device():
    """A ``tf.device`` block, a ``CUDA_VISIBLE_DEVICES`` setting or a CPU-only provider list
    in the package would keep a GPU user's work on the CPU; placement is left to
    TensorFlow (the first GPU when there is one) and to Ray (``num_gpus`` per task)."""
    pins = re.compile(r"tf\.device\(|CUDA_VISIBLE_DEVICES|providers=\[\"CPUExecutionProvider\"\]")
    root = Path(stacking.__file__).parent
    found = [
        f"{path.relative_to(root)}:{number}"
        for path in sorted(root.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pins.search(line)
    ]
    assert found == []
    assert PREFERRED_PROVIDERS[-1] == "CPUExecutionProvider"  # the fallback comes last
