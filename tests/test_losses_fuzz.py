"""Hypothesis suite of fsl's losses: 16-bit inputs and policies against float64.

Each loss gets batches drawn by hypothesis: 1 to 4 classes (a batch may hold
no valid pair), class ids anywhere up to 2**31 - 1, rows at scales from 1e-3
to 5e4 (float16's range), zero rows, duplicate rows, every metric, in
float16, bfloat16 and float32. The value must be finite, >= 0 and equal to
the float64 reference (``references.py``) of the same (quantised) inputs
within ``1e-3 * (|reference| + S) + 1e-6``, where ``S`` is the loss's scale
(its largest distance, squared for the squared losses): the losses compute
in float32, and float32's rounding of a distance near a tie may pick the
other of two nearly equal candidates, which moves a hinge by at most the gap.
Gradients: the float32 gradient is always finite, and the gradient that
reaches a 16-bit input is finite wherever the float32 one fits that dtype
(a squared-distance loss at |x| ~ 1e2..1e4, or the angular metric at a zero
row, where TensorFlow's ``l2_normalize`` epsilon gives a slope of 1e6, have
gradients beyond float16's 65504: mixed precision's loss scaling skips
such steps). Batch-all averages over its active triplets only, so a hinge
within float32's resolution of 0 may count or not: its reference is the
range of both.

TensorFlow runs ``FSL_FUZZ_EXAMPLES`` (default 500) examples a loss; JAX,
which compiles each op for each new shape, 40 on a few fixed shapes. The
examples are derandomised: CI sees the same ones every run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import keras
import numpy as np
import pytest
import references as ref
from helpers import value_and_grad
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keras import ops

from fsl import losses
from fsl.runs import dtype_policy

pytestmark = pytest.mark.backend_agnostic

TF = keras.backend.backend() == "tensorflow"
EXAMPLES = int(os.environ.get("FSL_FUZZ_EXAMPLES", "500")) if TF else 40
DTYPES = ("float16", "bfloat16", "float32")
SCALES = (1e-3, 1.0, 30.0, 1e3, 1e4)
SPECIALS = ("none", "zero_row", "duplicate_rows", "all_same")
MARGIN = 0.5


@dataclasses.dataclass(frozen=True)
class Case:
    """A loss under test: its call on backend tensors, its float64 reference,
    the input it takes and the metrics it is fuzzed on."""

    call: Callable
    reference: Callable
    kind: str  # "batch", "pairs", "distances", "triplets" or "logits"
    metrics: tuple = ("L2", "squared-L2", "angular")


CASES = {
    "semihard": Case(lambda y, x, m: losses.triplet_semihard_loss(y, x, MARGIN, m),
                     lambda y, x, m: ref.semihard(y, x, MARGIN, m), "batch"),
    "hard": Case(lambda y, x, m: losses.triplet_hard_loss(y, x, MARGIN, False, m),
                 lambda y, x, m: ref.hard(y, x, MARGIN, m, False), "batch"),
    "hard-soft": Case(lambda y, x, m: losses.triplet_hard_loss(y, x, MARGIN, True, m),
                      lambda y, x, m: ref.hard(y, x, MARGIN, m, True), "batch"),
    "batch-all": Case(lambda y, x, m: losses.triplet_batch_all_loss(y, x, MARGIN, m),
                      lambda y, x, m: ref.batch_all(y, x, MARGIN, m), "batch"),
    "lifted": Case(lambda y, x, m: losses.lifted_struct_loss(y, x, MARGIN, m),
                   lambda y, x, m: ref.lifted(y, x, MARGIN, m), "batch"),
    "multi-similarity": Case(
        lambda y, x, m: losses.multi_similarity_loss(y, x, distance_metric=m),
        lambda y, x, m: ref.multi_similarity(y, x, 2.0, 40.0, 0.1, 0.5, 1.0, m),
        "batch", ("angular",)),
    "circle": Case(lambda y, x, m: losses.circle_loss(y, x, distance_metric=m),
                   lambda y, x, m: ref.circle(y, x, 80.0, 0.4, m), "batch", ("angular",)),
    "contrastive": Case(lambda y, d, m: ops.mean(losses.contrastive_loss(y, d, MARGIN)),
                        lambda y, d, m: ref.contrastive(y, d, MARGIN), "distances", ("-",)),
    "contrastive-embeddings": Case(
        lambda y, ab, m: ops.mean(losses.contrastive_loss_from_embeddings(
            y, ab[0], ab[1], MARGIN, m)),
        lambda y, ab, m: ref.contrastive(y, ref.paired(ab[0], ab[1], m), MARGIN), "pairs"),
    "triplet": Case(lambda y, apn, m: losses.triplet_loss(apn[0], apn[1], apn[2], MARGIN, m),
                    lambda y, apn, m: ref.triplet(apn[0], apn[1], apn[2], MARGIN, m),
                    "triplets"),
    "npairs": Case(lambda y, logits, m: losses.npairs_loss(y, logits),
                   lambda y, logits, m: ref.npairs(y, logits), "logits", ("-",)),
}
# Batch losses with a class: fuzzed again through MetricLoss.__call__ under
# the mixed-precision policies, with integer labels of any size.
CLASSES = {
    "semihard": lambda m: losses.TripletSemiHardLoss(MARGIN, distance_metric=m),
    "hard": lambda m: losses.TripletHardLoss(MARGIN, distance_metric=m),
    "batch-all": lambda m: losses.TripletBatchAllLoss(MARGIN, distance_metric=m),
    "lifted": lambda m: losses.LiftedStructLoss(MARGIN, distance_metric=m),
    "multi-similarity": lambda m: losses.MultiSimilarityLoss(distance_metric=m),
    "circle": lambda m: losses.CircleLoss(distance_metric=m),
}


@st.composite
def batches(draw, case: Case):
    """(labels, float32 data, dtype, metric, scale) for one example of ``case``."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if TF:
        b, d = draw(st.integers(2, 10)), draw(st.integers(1, 6))
    else:  # a few fixed shapes: eager JAX compiles each op for each new one
        b, d = draw(st.sampled_from([(6, 3), (8, 4)]))
    classes = draw(st.integers(1, 4))
    scale = draw(st.sampled_from(SCALES))
    special = draw(st.sampled_from(SPECIALS))
    metric = draw(st.sampled_from(case.metrics))
    dtype = draw(st.sampled_from(DTYPES))
    ids = np.sort(rng.choice(2**31 - 1, size=classes, replace=False)) if draw(st.booleans()) \
        else np.arange(classes)
    labels = ids[rng.integers(0, classes, size=b)].astype("int64")
    rows = {"batch": b, "pairs": 2 * b, "triplets": 3 * b, "distances": b, "logits": b}[case.kind]
    width = {"distances": 1, "logits": b}.get(case.kind, d)
    x = np.clip(rng.normal(size=(rows, width)), -5, 5) * scale
    if case.kind == "distances":
        x = np.abs(x[:, 0])
        labels = rng.integers(0, 2, size=b)
    elif case.kind == "pairs":
        labels = rng.integers(0, 2, size=b)
    if special == "zero_row":
        x[0] = 0.0
    elif special == "duplicate_rows" and len(x) > 1:
        x[1] = x[0]
    elif special == "all_same":
        x[:] = x[0]
    return labels, x.astype("float32"), dtype, metric


def _split(case: Case, x):
    if case.kind == "pairs":
        return (x[: len(x) // 2], x[len(x) // 2:])
    if case.kind == "triplets":
        n = len(x) // 3
        return (x[:n], x[n:2 * n], x[2 * n:])
    return x


def _quantised(x, dtype):
    """``x`` as ``dtype`` holds it, back in float64 (the reference's input)."""
    return ops.convert_to_numpy(ops.cast(ops.cast(x, dtype), "float32")).astype(np.float64)


def _scale(name: str, case: Case, reference_input, metric) -> float:
    """``S`` of the tolerance: the loss's largest distance (or logit)."""
    if case.kind == "distances":
        return float(np.max(reference_input) ** 2 + 1.0)
    if case.kind == "logits":
        return float(np.max(np.abs(reference_input)) + 1.0)
    rows = np.concatenate(reference_input) if isinstance(reference_input, tuple) \
        else reference_input
    largest = float(np.max(ref.dist_matrix(rows, metric))) if len(rows) > 1 else 0.0
    if name == "lifted":
        return (largest + MARGIN + np.log(2 * len(rows))) ** 2
    if name == "contrastive-embeddings":
        return largest ** 2 + 1.0
    if name in ("multi-similarity", "circle"):
        return 80.0 * largest + 1.0
    return largest + 1.0


def _batch_all_range(labels, x, metric, scale) -> tuple[float, float]:
    """The reference of batch-all when hinges within float32's resolution of 0
    (``1e-5 * S``) may count as active or not: batch-all averages over the
    active triplets only, so one such triplet more or less changes the mean
    by a factor (at distances ~1e8 a margin of 0.5 is below float32's step)."""
    hinges = ref.batch_all_hinges(labels, x, MARGIN, metric)
    resolution = 1e-5 * scale
    sure, maybe = hinges[hinges > resolution], hinges[(hinges > 0) | (hinges > -resolution)]
    means = [float(np.mean(np.maximum(h, 0.0))) if len(h) else 0.0 for h in (sure, maybe)]
    return min(means), max(means)


def _check(name, labels, x, dtype, metric):
    case = CASES[name]
    quantised = _quantised(x, dtype)
    inputs = _split(case, quantised)
    scale = _scale(name, case, inputs, metric)
    tolerance = 1e-3 * scale + 1e-6
    if name == "batch-all":
        low, high = _batch_all_range(labels, quantised, metric, scale)
    else:
        low = high = case.reference(labels, inputs, metric)
    tensor = ops.cast(x, dtype)
    got = case.call(labels, _split(case, tensor), metric)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"  # computed in float32
    got = float(ops.convert_to_numpy(got))
    assert np.isfinite(got) and got >= 0.0, (got, low)
    assert low - tolerance - 1e-3 * abs(low) <= got <= high + tolerance + 1e-3 * abs(high), \
        (got, low, high, tolerance)

    def loss_of(data, dtype=dtype):
        return case.call(labels, _split(case, ops.cast(data, dtype)), metric)

    _, (grad,) = value_and_grad(loss_of, quantised.astype("float32"))
    exact = grad if dtype == "float32" else value_and_grad(
        lambda data: loss_of(data, "float32"), quantised.astype("float32"))[1][0]
    assert np.all(np.isfinite(exact)), exact  # the float32 gradient: always finite
    # The gradient reaches a 16-bit input in its dtype: finite wherever it fits.
    fits = np.abs(exact) < (30_000.0 if dtype == "float16" else 1e37)
    assert np.all(np.isfinite(grad[fits])), (grad, exact)


@pytest.mark.parametrize("name", list(CASES))
def test_loss_is_its_float64_reference_in_every_dtype(name):
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(batches(CASES[name]))
    def check(batch):
        _check(name, *batch)

    check()


@pytest.mark.parametrize("name", list(CLASSES))
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_loss_class_under_a_mixed_policy_keeps_labels_and_float32(name, policy):
    case = CASES[name]

    @settings(max_examples=max(EXAMPLES // 10, 10), deadline=None, derandomize=True,
              database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(batches(case))
    def check(batch):
        labels, x, _, metric = batch
        dtype = policy.split("_")[1]
        with dtype_policy(policy):
            loss = CLASSES[name](metric)
            got = loss(labels, ops.cast(x, dtype))
        # Class ids up to 2**31 - 1 stay apart (a float cast would merge them).
        small = np.unique(labels, return_inverse=True)[1]
        want = case.reference(small, _quantised(x, dtype), metric)
        tolerance = 1e-3 * (abs(want) + _scale(name, case, _quantised(x, dtype), metric)) + 1e-6
        got = float(ops.convert_to_numpy(got))
        assert np.isfinite(got) and abs(got - want) <= tolerance, (got, want, tolerance)

    check()
