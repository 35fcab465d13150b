"""Float64 numpy references of fsl's losses: explicit loops over pairs and
triplets, written from the papers' formulas (shared by the loss tests and the
hypothesis suite), and the margin-softmax heads' logits."""

from __future__ import annotations

import math

import numpy as np
from helpers import ref_distance
from scipy.special import logsumexp

from fsl.heads import COS_EPSILON


def dist_matrix(x, metric):
    b = len(x)
    return np.array(
        [[0.0 if i == j else ref_distance(x[i], x[j], metric) for j in range(b)] for i in range(b)]
    )


def has_triplet(labels) -> bool:
    """Some pair of the batch is positive and some pair negative."""
    labels = np.asarray(labels)
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    return bool(same.any() and len(np.unique(labels)) > 1)


def semihard(labels, x, margin, metric):
    if not has_triplet(labels):
        return 0.0  # as TFA: no valid triplet, loss 0
    d, b = dist_matrix(x, metric), len(x)
    terms = []
    for a in range(b):
        for p in range(b):
            if p == a or labels[p] != labels[a]:
                continue
            negs = [d[a, n] for n in range(b) if labels[n] != labels[a]]
            farther = [v for v in negs if v > d[a, p]]
            sn = min(farther) if farther else max(negs)
            terms.append(max(d[a, p] - sn + margin, 0.0))
    return float(np.mean(terms))


def hard(labels, x, margin, metric, soft):
    if not has_triplet(labels):
        return 0.0
    d, b = dist_matrix(x, metric), len(x)
    terms = []
    for a in range(b):
        pos = [d[a, p] for p in range(b) if p != a and labels[p] == labels[a]]
        neg = [d[a, n] for n in range(b) if labels[n] != labels[a]]
        hp = max(pos) if pos else 0.0  # TFA: anchor without positive -> row min
        hn = min(neg)
        terms.append(np.logaddexp(0.0, hp - hn) if soft else max(hp - hn + margin, 0.0))
    return float(np.mean(terms))


def batch_all_hinges(labels, x, margin, metric) -> np.ndarray:
    """Every valid triplet's ``d(a, p) - d(a, n) + margin``, unclipped."""
    d, b = dist_matrix(x, metric), len(x)
    return np.array([d[a, p] - d[a, n] + margin
                     for a in range(b) for p in range(b) for n in range(b)
                     if p != a and labels[p] == labels[a] and labels[n] != labels[a]])


def batch_all(labels, x, margin, metric):
    d, b = dist_matrix(x, metric), len(x)
    active = []
    for a in range(b):
        for p in range(b):
            for n in range(b):
                if p != a and labels[p] == labels[a] and labels[n] != labels[a]:
                    h = d[a, p] - d[a, n] + margin
                    if h > 0:
                        active.append(h)
    return float(np.mean(active)) if active else 0.0


REFERENCES = {
    "semihard": semihard,
    "hard": lambda y, x, m, metric: hard(y, x, m, metric, False),
    "hardsoft": lambda y, x, m, metric: hard(y, x, m, metric, True),
    "batchall": batch_all,
}


def lifted(labels, x, margin, metric="L2"):
    """Song et al. 2016, eq. 4: 1 / (2|P|) sum over positive pairs i < j of max(J_ij, 0)^2."""
    b = len(x)
    terms = []
    for i in range(b):
        for j in range(i + 1, b):
            if labels[i] != labels[j]:
                continue
            exps = [margin - ref_distance(x[i], x[k], metric) for k in range(b) if labels[k] != labels[i]]
            exps += [margin - ref_distance(x[j], x[k], metric) for k in range(b) if labels[k] != labels[j]]
            if not exps:
                continue
            big_j = logsumexp(exps) + ref_distance(x[i], x[j], metric)
            terms.append(max(big_j, 0.0) ** 2)
    return float(np.sum(terms) / (2 * len(terms))) if terms else 0.0


def npairs(labels, logits):
    rows = []
    for i in range(len(labels)):
        targets = np.array([float(labels[j] == labels[i]) for j in range(len(labels))])
        log_p = logits[i] - logsumexp(logits[i].astype(np.float64))
        rows.append(-np.sum(targets / targets.sum() * log_p))
    return float(np.mean(rows))


def log1p_sum_exp(values):
    values = np.asarray(values, np.float64)
    top = max(0.0, values.max()) if len(values) else 0.0
    return top + np.log(np.exp(-top) + np.sum(np.exp(values - top)))


def multi_similarity(labels, x, alpha, beta, epsilon, lmda, center, metric="angular"):
    """Wang et al. 2019, eq. 10-12, over every anchor (0 where nothing is left)."""
    b, terms = len(x), []
    for i in range(b):
        d = {j: ref_distance(x[i], x[j], metric) for j in range(b) if j != i}
        pos = [j for j in d if labels[j] == labels[i]]
        neg = [j for j in d if labels[j] != labels[i]]
        if not pos or not neg:
            terms.append(0.0)
            continue
        kept_pos = [d[j] for j in pos if d[j] > min(d[n] for n in neg) - epsilon]
        kept_neg = [d[j] for j in neg if d[j] < max(d[p] for p in pos) + epsilon]
        if not kept_pos or not kept_neg:
            terms.append(0.0)
            continue
        terms.append(
            log1p_sum_exp([alpha * (v + lmda - center) for v in kept_pos]) / alpha
            + log1p_sum_exp([-beta * (v + lmda - center) for v in kept_neg]) / beta
        )
    return float(np.mean(terms))


def circle(labels, x, gamma, margin, metric="angular"):
    """Sun et al. 2020 in TF Similarity's form, per anchor, mean over the batch."""
    b, terms = len(x), []
    for i in range(b):
        pos = [ref_distance(x[i], x[j], metric) for j in range(b) if j != i and labels[j] == labels[i]]
        neg = [ref_distance(x[i], x[j], metric) for j in range(b) if labels[j] != labels[i]]
        if not pos or not neg:
            terms.append(0.0)
            continue
        terms.append(
            log1p_sum_exp([-gamma * max(margin + v, 0.0) * (margin - v) for v in pos])
            + log1p_sum_exp([gamma * max(1 + margin - v, 0.0) * (1 - margin - v) for v in neg])
        )
    return float(np.mean(terms))


def paired(a, b, metric):
    """Distances of the rows of ``a`` and ``b``, one per pair."""
    return np.array([ref_distance(u, v, metric) for u, v in zip(a, b, strict=True)])


def contrastive(y, distances, margin):
    """Hadsell et al. 2006, mean over the pairs: y d^2 + (1 - y) max(m - d, 0)^2."""
    terms = [t * d**2 + (1 - t) * max(margin - d, 0.0) ** 2
             for t, d in zip(np.asarray(y, np.float64), np.asarray(distances, np.float64),
                             strict=True)]
    return float(np.mean(terms))


def triplet(anchor, positive, negative, margin, metric):
    """Schroff et al. 2015, mean over explicit triplets of max(d(a, p) - d(a, n) + m, 0)."""
    return float(np.mean([max(ref_distance(a, p, metric) - ref_distance(a, n, metric) + margin,
                              0.0) for a, p, n in zip(anchor, positive, negative, strict=True)]))


# --- margin-softmax heads (fsl.heads): the papers' formulas ---

def head_cosines(x, w, eps):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    wn = w / np.linalg.norm(w, axis=0, keepdims=True)
    return np.clip(xn @ wn, -1 + eps, 1 - eps)


def _arc_target(c, m, easy):
    phi = c * math.cos(m) - np.sqrt(np.maximum(1 - c * c, 0)) * math.sin(m)
    if easy:
        return np.where(c > 0, phi, c)
    return np.where(c > math.cos(math.pi - m), phi, c - math.sin(math.pi - m) * m)


def ref_arcface(x, w, labels, s, m, easy=False, k=1):
    c = head_cosines(x, w, COS_EPSILON)
    c = c.reshape(len(x), -1, k).max(axis=-1)
    onehot = np.eye(c.shape[1])[labels]
    return s * (onehot * _arc_target(c, m, easy) + (1 - onehot) * c)


def ref_cosface(x, w, labels, s, m):
    c = head_cosines(x, w, COS_EPSILON)
    return s * (c - m * np.eye(c.shape[1])[labels])


def ref_adaface(x, w, labels, s, m, h, t_alpha, mean0=20.0, std0=100.0, norms_of=None):
    """``norms_of``: the embeddings whose norms set the margins (the paper's
    code detaches them: a gradient check holds them fixed)."""
    eps = 1e-3
    c = head_cosines(x, w, eps)
    norms = np.clip(np.linalg.norm(x if norms_of is None else norms_of, axis=1), 0.001, 100)
    mean = t_alpha * norms.mean() + (1 - t_alpha) * mean0
    std = t_alpha * norms.std(ddof=1) + (1 - t_alpha) * std0
    z = np.clip((norms - mean) / (std + eps) * h, -1, 1)[:, None]
    onehot = np.eye(c.shape[1])[labels]
    theta = np.clip(np.arccos(c) - m * z * onehot, eps, math.pi - eps)
    return s * (np.cos(theta) - onehot * (m + m * z)), mean, std
