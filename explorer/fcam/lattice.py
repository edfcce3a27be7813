"""The permutohedral-lattice Gaussian filter (Adams, Baek and Davis 2010, in the form of
Kraehenbuehl and Koltun's dense CRF), written here in NumPy to measure what the F-CAM authors'
CRF loss computes.

F-CAM's CRF term (its supplementary B) is Tang et al.'s dense CRF loss, whose compiled filter is
this lattice: each point's features f (here x / sigma_xy, y / sigma_xy, rgb / sigma_rgb) are lifted
onto the hyperplane of a (d+1)-dimensional lattice, splatted onto the d+1 vertices of their simplex
with barycentric weights, blurred with the kernel [1/2, 1, 1/2] along each of the d+1 lattice
directions, sliced back with the same weights and scaled by 1 / (1 + 2^-d). The result
approximates sum_j exp(-|f_i - f_j|^2 / 2) v_j, the exact dense product that
`explorer.fcam.losses.affinity_times` computes, up to a scale and a blur of its own.

Only that scale matters for the CRF weight: the paper's lambda multiplies the lattice's R, the
weight here multiplies the exact R. `lattice_to_exact_ratio` measures
R_lattice / R_exact on real images, which converts one into the other
(docs/crf_lattice_ratio.py, README "Evidence").
"""

from __future__ import annotations

import numpy as np

_BITS = 12  # bits per lattice coordinate in the packed hash key (5 coordinates: 60 bits)


def _elevate(features: np.ndarray) -> np.ndarray:
    """N x d features -> N x (d+1) points on the hyperplane sum = 0 of the lattice, scaled so the
    lattice's blur matches a Gaussian of unit standard deviation in feature space."""
    n, d = features.shape
    inv_std = np.sqrt(2.0 / 3.0) * (d + 1)
    scale = inv_std / np.sqrt((np.arange(d) + 1.0) * (np.arange(d) + 2.0))
    cf = features * scale
    # elevated[i] = sum_{k >= i} cf[k] - i cf[i-1] for i >= 1; elevated[0] = sum_k cf[k]
    tail = np.concatenate([np.cumsum(cf[:, ::-1], 1)[:, ::-1], np.zeros((n, 1))], 1)
    elevated = tail.copy()
    elevated[:, 1:] -= np.arange(1, d + 1) * cf
    return elevated


def _simplex(elevated: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The enclosing simplex of each point: the nearest remainder-0 lattice point (N x (d+1)),
    the rank of each coordinate (N x (d+1)) and the barycentric weights (N x (d+1))."""
    n, d1 = elevated.shape
    d = d1 - 1
    v = elevated / d1
    up, down = np.ceil(v) * d1, np.floor(v) * d1
    rem0 = np.where(up - elevated < elevated - down, up, down)
    total = np.rint(rem0.sum(1) / d1).astype(np.int64)
    delta = elevated - rem0
    # rank[i] = #{j > i: delta_j > delta_i} + #{j < i: delta_j >= delta_i} (ties go to the earlier index)
    greater = delta[:, None, :] > delta[:, :, None]
    greater_equal = delta[:, None, :] >= delta[:, :, None]
    later = np.triu(np.ones((d1, d1), bool), 1)
    rank = (greater & later).sum(2) + (greater_equal & later.T).sum(2)
    # Bring the point onto the hyperplane's remainder-0 vertex when the rounding left it off.
    t = total[:, None]
    wrap_down = (t > 0) & (rank >= d1 - t)
    wrap_up = (t < 0) & (rank < -t)
    rem0 = rem0 - d1 * wrap_down + d1 * wrap_up
    rank = rank + t - d1 * wrap_down + d1 * wrap_up
    delta = (elevated - rem0) / d1
    bary = np.zeros((n, d + 2))
    rows = np.repeat(np.arange(n), d1)
    np.add.at(bary, (rows, (d - rank).ravel()), delta.ravel())
    np.add.at(bary, (rows, (d + 1 - rank).ravel()), -delta.ravel())
    bary[:, 0] += 1.0 + bary[:, d + 1]
    return rem0.astype(np.int64), rank, bary[:, :d1]


def _pack(keys: np.ndarray) -> np.ndarray:
    """Lattice coordinates (M x d, small integers) -> one int64 each."""
    offset = 1 << (_BITS - 1)
    if keys.size and (keys.min() < -offset or keys.max() >= offset):
        raise ValueError("features span too wide a range for the lattice's hash key; scale them down")
    packed = np.zeros(keys.shape[0], np.int64)
    for column in range(keys.shape[1]):
        packed = (packed << _BITS) | (keys[:, column] + offset)
    return packed


def permutohedral_filter(features: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The lattice's approximation of sum_j exp(-|f_i - f_j|^2 / 2) values_j for every point i.

    features: N x d (already divided by the Gaussian's standard deviations); values: N x c.
    """
    features = np.asarray(features, np.float64)
    values = np.asarray(values, np.float64)
    n, d = features.shape
    d1 = d + 1
    rem0, rank, bary = _simplex(_elevate(features))
    # Vertex r of a point's simplex: rem0 + canonical[r][rank], canonical[r][j] = r, or r - (d+1) when j > d - r.
    r = np.arange(d1)[:, None, None]
    canonical = np.where(rank[None] > d - r, r - d1, r)               # (d+1) x N x (d+1)
    vertices = (rem0[None] + canonical)[..., :d].reshape(-1, d)        # the last coordinate is implied
    codes, first, vertex_of = np.unique(_pack(vertices), return_index=True, return_inverse=True)
    vertex_of = vertex_of.reshape(d1, n)
    m = codes.size
    lattice = np.zeros((m, values.shape[1]))
    for vertex in range(d1):
        np.add.at(lattice, vertex_of[vertex], values * bary[:, vertex:vertex + 1])
    # Each lattice point's neighbours along direction j: every coordinate - 1, coordinate j + d (and
    # the opposite one); for j = d (the implied coordinate) only the d explicit ones move.
    unique_keys = vertices[first]
    for j in range(d1):
        step = np.full(d, -1, np.int64)
        if j < d:
            step[j] = d
        blurred = lattice.copy()
        for neighbour in (unique_keys + step, unique_keys - step):
            wanted = _pack(neighbour)
            found = np.minimum(np.searchsorted(codes, wanted), m - 1)
            present = codes[found] == wanted
            blurred[present] += 0.5 * lattice[found[present]]
        lattice = blurred
    alpha = 1.0 / (1.0 + 2.0 ** -d)
    out = np.zeros_like(values)
    for vertex in range(d1):
        out += bary[:, vertex:vertex + 1] * lattice[vertex_of[vertex]]
    return alpha * out


def crf_features(image255: np.ndarray, sigma_rgb: float, sigma_xy: float) -> np.ndarray:
    """H x W x 3 raw RGB -> (H W) x 5 features (x / sigma_xy, y / sigma_xy, rgb / sigma_rgb), the
    CRF loss's, row-major like `explorer.fcam.losses`."""
    h, w, _ = image255.shape
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    position = np.stack([xs.ravel(), ys.ravel()], 1) / sigma_xy
    colour = image255.reshape(-1, 3).astype(np.float64) / sigma_rgb
    return np.concatenate([position, colour], 1)


def lattice_to_exact_ratio(image255: np.ndarray, probs: np.ndarray, sigma_rgb: float, sigma_xy: float) -> float:
    """R_lattice / R_exact for one image: sum_k S_k^T (lattice W) S_k over sum_k S_k^T W S_k,
    probs (H W) x K. The exact product comes from `explorer.fcam.losses.affinity_times`."""
    import torch

    from explorer.fcam.losses import affinity_times

    features = crf_features(image255, sigma_rgb, sigma_xy)
    lattice = float((probs * permutohedral_filter(features, probs)).sum())
    exact_wp = affinity_times(torch.from_numpy(features).float()[None], torch.from_numpy(probs).float()[None])[0]
    exact = float((torch.from_numpy(probs).float() * exact_wp).sum())
    return lattice / exact
