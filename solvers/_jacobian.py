"""Sparse Jacobians from a few JVPs: the `jac_sparsity=` pattern, its column colouring
(numpy, once, at construction) and the decompression of the coloured JVPs.

Columns j and k of J may share a JVP ("colour") when no row has a nonzero in both:
J S, with S[j, colour[j]] = 1, then holds every entry of J exactly, in
n_colours JVPs instead of d (3 for a tridiagonal J, whatever d is).
"""

from __future__ import annotations

import numpy as np


def greedy_colouring(rows: np.ndarray, cols: np.ndarray, d: int) -> np.ndarray:
    """Colours (d,) int of the columns for the nonzeros (rows[k], cols[k]): the greedy
    colouring of the column intersection graph (columns adjacent when they share a row),
    columns taken in their natural order (optimal for banded patterns)."""
    order = np.argsort(cols, kind="stable")
    col_rows = np.split(rows[order], np.searchsorted(cols[order], np.arange(1, d)))
    order = np.argsort(rows, kind="stable")
    row_cols = np.split(cols[order], np.searchsorted(rows[order], np.arange(1, d)))
    colour = np.full(d, -1, dtype=np.int64)
    for j in range(d):
        taken = {int(c) for r in col_rows[j] for c in colour[row_cols[r]] if c >= 0}
        k = 0
        while k in taken:
            k += 1
        colour[j] = k
    return colour


class JacobianPattern:
    """A checked, hashable Jacobian sparsity pattern (what `jac_sparsity=` becomes).

    pattern: (d, d) array-like or scipy.sparse matrix, nonzero where df_i/dy_j may be
    nonzero (as scipy's solve_ivp). Stored symmetrised and with the diagonal, P | P^T | I, so that one
    colouring serves J, the Newton matrix I - h gamma J and its transpose (the
    implicit-function-theorem gradient solves with the transpose). Hash and equality by
    content, so methods holding one stay static and compile once per pattern.

    Attributes: d; rows, cols (nnz,) of the stored pattern; colour (d,);
    n_colours; bandwidth (max |i - j| over the nonzeros).
    """

    def __init__(self, pattern):
        rows, cols, d = _nonzeros(pattern)
        # P | P^T | I, as index pairs (no dense d x d array: d may be 1e5)
        i = np.arange(d)
        rc = np.unique(np.stack([np.r_[rows, cols, i], np.r_[cols, rows, i]]), axis=1)
        self.d = d
        self.rows, self.cols = rc[0].astype(np.int32), rc[1].astype(np.int32)
        self.colour = greedy_colouring(self.rows, self.cols, self.d).astype(np.int32)
        self.n_colours = int(self.colour.max()) + 1
        self.bandwidth = int(np.max(np.abs(rc[0] - rc[1])))
        self._key = (self.d, self.rows.tobytes(), self.cols.tobytes())
        for a in (self.rows, self.cols, self.colour):
            a.setflags(write=False)

    @classmethod
    def tridiagonal(cls, d: int) -> "JacobianPattern":
        i = np.arange(d - 1)
        return cls(_Coo(np.r_[i, i + 1], np.r_[i + 1, i], d))

    def seeds(self, dtype) -> np.ndarray:
        """(n_colours, d): the tangent of each coloured JVP."""
        s = np.zeros((self.n_colours, self.d), dtype)
        s[self.colour, np.arange(self.d)] = 1
        return s

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, JacobianPattern) and self._key == other._key

    def __repr__(self):
        return f"JacobianPattern(d={self.d}, nnz={len(self.rows)}, n_colours={self.n_colours})"


class _Coo:
    """Nonzero positions (rows, cols) of a d x d pattern."""

    def __init__(self, rows, cols, d):
        self.rows, self.cols, self.d = np.asarray(rows), np.asarray(cols), d


def _nonzeros(pattern):
    """(rows, cols, d) of a (d, d) pattern: a dense array-like or a scipy.sparse matrix."""
    if isinstance(pattern, _Coo):
        return pattern.rows, pattern.cols, pattern.d
    try:
        import scipy.sparse as sp
    except ImportError:  # scipy is optional: dense patterns only
        sp = None
    if sp is not None and sp.issparse(pattern):
        coo = sp.coo_matrix(pattern)
        shape = coo.shape
        nz = coo.data != 0
        rows, cols = coo.row[nz], coo.col[nz]
    else:
        p = np.asarray(pattern)
        shape = p.shape
        if not (p.dtype == bool or np.issubdtype(p.dtype, np.number)):
            raise ValueError(f"jac_sparsity must be a boolean (d, d) array, got dtype {p.dtype}")
        if p.ndim == 2:
            rows, cols = np.nonzero(p)
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] == 0:
        raise ValueError(f"jac_sparsity must be a square (d, d) array or scipy.sparse matrix (d = the "
                         f"flattened state size), got shape {shape}")
    return rows, cols, shape[0]


def to_pattern(x):
    """The converter of `jac_sparsity=`: None, a JacobianPattern, or a (d, d) array."""
    if x is None or isinstance(x, JacobianPattern):
        return x
    return JacobianPattern(x)
