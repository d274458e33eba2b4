"""The shared formulas against SciPy: softmax (any axis, huge logits), sigmoid, clipping,
log-odds and row normalisation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import expit
from scipy.special import logit as scipy_logit
from scipy.special import softmax as scipy_softmax

from stacking.numeric import EPS_LOGIT, clip_proba, logit, normalise_rows, sigmoid, softmax

Z = np.array([[1.0, -2.0, 0.5], [800.0, 799.0, -3.0], [-1.0, 4.0, 2.0]])


@pytest.mark.parametrize("axis", [0, 1])
def test_softmax_equals_scipy_on_either_axis_without_overflow(axis):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = softmax(Z, axis=axis)
    np.testing.assert_allclose(got, scipy_softmax(Z, axis=axis), rtol=1e-12)
    np.testing.assert_allclose(got.sum(axis=axis), 1.0, rtol=1e-12)
    assert softmax(Z).tolist() == softmax(Z, axis=1).tolist()


def test_sigmoid_equals_scipy_and_saturates_quietly():
    z = np.array([-1000.0, -3.0, 0.0, 2.5, 40.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = sigmoid(z)
    np.testing.assert_allclose(got, expit(z), rtol=1e-12)
    assert got[0] == 0.0


def test_clip_and_logit():
    p = np.array([0.0, 1e-9, 0.3, 1.0, 1.5])
    assert clip_proba(p, 0.01).tolist() == [0.01, 0.01, 0.3, 0.99, 0.99]
    assert clip_proba(p, 0.01, upper=False).tolist() == [0.01, 0.01, 0.3, 1.0, 1.0]
    clipped = np.clip(p, EPS_LOGIT, 1 - EPS_LOGIT)
    np.testing.assert_allclose(logit(p), scipy_logit(clipped), rtol=1e-12)
    np.testing.assert_allclose(logit(p, 0.1), scipy_logit(np.clip(p, 0.1, 0.9)), rtol=1e-12)


def test_normalise_rows():
    p = np.array([[1.0, 3.0], [2.0, 2.0]])
    assert normalise_rows(p).tolist() == [[0.25, 0.75], [0.5, 0.5]]
