"""Within-class covariance normalisation (WCCN) of embeddings.

A linear map learned on labelled embeddings that whitens their WITHIN-class
scatter: directions in which faces of one person vary (pose, light,
expression) are shrunk, directions that separate people keep their scale.
Applied to unit-norm embeddings and followed by L2 normalisation, it is the
classical cosine-scoring back-end of speaker verification (Hatch, Kajarekar
and Stolcke, "Within-class covariance normalization for SVM-based speaker
recognition", Interspeech 2006; Dehak et al., "Front-end factor analysis for
speaker verification", IEEE TASLP 2011). ``fsl.models.whitened_embedding``
bakes it into an embedding model (``fsl.layers.Whitening``).

Plain numpy, float64.
"""

from __future__ import annotations

import numpy as np

from fsl.evaluation._validation import as_embeddings, as_labels, class_means


def within_class_whitening(
    embeddings, labels, shrinkage: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """The centring vector and whitening matrix of WCCN.

    With ``S_w`` the within-class covariance of ``embeddings`` (the scatter
    of each embedding around its class mean, averaged over all embeddings)
    and ``s`` the mean of its eigenvalues, the matrix is the symmetric
    inverse square root ``W = (S_w + shrinkage * s * I) ** -1/2``. The
    shrinkage towards a multiple of the identity keeps ``W`` finite when
    ``S_w`` is singular (fewer embeddings than dimensions) and limits how
    much a direction that barely varies among the training people is
    amplified for new people. An embedding ``x`` maps to ``(x - mean) @ W``
    (then, as a cosine back-end, to unit norm).

    Args:
        embeddings: ``[N, D]`` embeddings of labelled training data.
        labels: ``[N]`` class labels; at least one class with 2 or more
            embeddings (classes of one add no within-class scatter).
        shrinkage: ``> 0``; the weight of ``s * I`` added to ``S_w``
            (1: as much isotropic variance as ``S_w`` has on average).

    Returns:
        ``(mean [D], matrix [D, D])``, float64: the mean of all embeddings
        and the symmetric ``W``.

    Raises:
        ValueError: bad embeddings or labels, a non-positive ``shrinkage``,
            no class with two embeddings, or no within-class variation.

    Examples:

    >>> x = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 5.0], [2.0, 5.0]])
    >>> mean, w = within_class_whitening(x, [0, 0, 1, 1], shrinkage=1.0)
    >>> mean.tolist(), np.round(np.diag(w), 4).tolist()
    ([1.0, 2.5], [0.8165, 1.4142])
    """
    x = as_embeddings(embeddings, "embeddings")
    y = as_labels(labels, len(x), "labels", "embeddings")
    if isinstance(shrinkage, bool) or not isinstance(shrinkage, (int, float, np.floating)) \
            or not np.isfinite(shrinkage) or not shrinkage > 0:
        raise ValueError(f"shrinkage must be a finite number > 0. Received: "
                         f"shrinkage={shrinkage!r}")
    classes, index, counts = np.unique(y, return_inverse=True, return_counts=True)
    if counts.max() < 2:
        raise ValueError("within_class_whitening needs a class with at least 2 embeddings. "
                         f"Received: {len(classes)} classes of 1 embedding each")
    within = x - class_means(x, index, len(classes))[index]
    scatter = within.T @ within / len(x)
    eigenvalues, vectors = np.linalg.eigh(scatter)
    average = float(np.mean(eigenvalues))
    if not average > 0:
        raise ValueError("embeddings have no within-class variation (every class's "
                         "embeddings are identical): nothing to whiten")
    eigenvalues = np.maximum(eigenvalues, 0.0) + float(shrinkage) * average
    matrix = (vectors / np.sqrt(eigenvalues)) @ vectors.T
    return x.mean(axis=0), matrix
