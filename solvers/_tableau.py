"""Butcher tableaus of the explicit Runge-Kutta methods, checked on construction."""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
from numpy.polynomial import polynomial as P

from . import _coefficients as C


@dataclasses.dataclass(frozen=True, eq=False)
class ButcherTableau:
    """An explicit Runge-Kutta method as data.

    a: (s, s) strictly lower triangular stage matrix; c: (s,) nodes; b: (s,) weights of
    the propagated solution; b_err: (s,) weights of the local error estimate
    (b - b_embedded), or None for fixed-step-only methods. b_err3: optional second
    estimate, combined as in DOP853. dense: (s, p) with b_i(theta) = sum_k dense[i, k]
    theta^(k+1), or None for cubic Hermite dense output. fsal: index of the stage that
    evaluates f(t + h, y1); its value is reused as the next step's first stage.

    Stages past the ones b uses (b_i = 0) are allowed: they serve dense output.
    """

    name: str
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    order: int
    fsal: int
    b_err: Optional[np.ndarray] = None
    error_order: Optional[int] = None
    b_err3: Optional[np.ndarray] = None
    dense: Optional[np.ndarray] = None

    def __post_init__(self):
        s = len(self.c)
        a = np.asarray(self.a, float)
        if a.shape != (s, s) or np.any(np.triu(a) != 0):
            raise ValueError(f"{self.name}: a must be ({s}, {s}) strictly lower triangular")
        if np.max(np.abs(a.sum(1) - self.c)) > 1e-13:
            raise ValueError(f"{self.name}: rows of a must sum to c")
        if abs(np.sum(self.b) - 1) > 1e-13:
            raise ValueError(f"{self.name}: weights b must sum to 1")
        fsal_row = np.pad(self.b, (0, s - len(self.b)))
        if self.c[self.fsal] != 1 or np.max(np.abs(a[self.fsal] - fsal_row)) > 1e-13:
            raise ValueError(f"{self.name}: stage {self.fsal} must evaluate f(t + h, y1)")
        for name, e in (("b_err", self.b_err), ("b_err3", self.b_err3)):
            if e is not None and abs(np.sum(e)) > 1e-13:
                raise ValueError(f"{self.name}: {name} must sum to 0 (a difference of weights)")
        if (self.b_err is None) != (self.error_order is None):
            raise ValueError(f"{self.name}: give b_err and error_order together")
        if self.dense is not None:
            if self.dense.shape[0] != s:
                raise ValueError(f"{self.name}: dense must have one row per stage")
            if np.max(np.abs(self.dense.sum(1) - fsal_row)) > 1e-12:
                raise ValueError(f"{self.name}: dense output at theta=1 must equal b")
        for f in ("a", "b", "c", "b_err", "b_err3", "dense"):
            v = getattr(self, f)
            if v is not None:
                v = np.asarray(v, float)
                v.setflags(write=False)
                object.__setattr__(self, f, v)

    @property
    def stages(self) -> int:
        return len(self.c)


def _with_end_stage(a, b, c):
    """Append the stage f(t + h, y1) so every method has it for FSAL and Hermite output."""
    s = len(c)
    a2 = np.zeros((s + 1, s + 1))
    a2[:s, :s] = a
    a2[s, :s] = b
    return a2, np.append(b, 0.0), np.append(c, 1.0)


def _simple(name, a, b, c, order):
    a, b, c = _with_end_stage(np.array(a, float), np.array(b, float), np.array(c, float))
    return ButcherTableau(name, a, b, c, order=order, fsal=len(c) - 1)


EULER = _simple("Euler", [[0.0]], [1.0], [0.0], 1)
HEUN = _simple("Heun", [[0, 0], [1, 0]], [0.5, 0.5], [0, 1], 2)
MIDPOINT = _simple("Midpoint", [[0, 0], [0.5, 0]], [0, 1], [0, 0.5], 2)
# Ralston (1962): the 2-stage 2nd order method with the smallest error bound, c_2 = 2/3.
# Its embedded estimate is against Euler (b_err = b - (1, 0, 0)), O(h^2): error order 1.
RALSTON = ButcherTableau(
    "Ralston",
    a=np.array([[0, 0, 0], [2 / 3, 0, 0], [1 / 4, 3 / 4, 0]]),
    b=np.array([1 / 4, 3 / 4, 0]),
    c=np.array([0, 2 / 3, 1]),
    order=2,
    fsal=2,
    b_err=np.array([1 / 4 - 1, 3 / 4, 0]),
    error_order=1,
)
RK4 = _simple(
    "RK4",
    [[0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1, 0]],
    [1 / 6, 1 / 3, 1 / 3, 1 / 6],
    [0, 0.5, 0.5, 1],
    4,
)

BOSH3 = ButcherTableau(
    "Bosh3",
    a=np.array([[0, 0, 0, 0], [1 / 2, 0, 0, 0], [0, 3 / 4, 0, 0], [2 / 9, 1 / 3, 4 / 9, 0]]),
    b=np.array([2 / 9, 1 / 3, 4 / 9, 0]),
    c=np.array([0, 1 / 2, 3 / 4, 1]),
    order=3,
    fsal=3,
    b_err=np.array([2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8]),
    error_order=2,
)

DOPRI5 = ButcherTableau(
    "Dopri5",
    a=np.array(C.DOPRI5_A),
    b=np.array(C.DOPRI5_B),
    c=np.array(C.DOPRI5_C),
    order=5,
    fsal=6,
    b_err=np.array(C.DOPRI5_E),
    error_order=4,
    dense=np.array(C.DOPRI5_P),
)


def _tsit5_dense():
    # Tsitouras' interpolant, b_i(theta) in factored form (roots and leading factors).
    def poly(k, *factors):
        out = np.array([k])
        for f in factors:
            out = P.polymul(out, f)
        return out

    t, t2 = [0, 1], [0, 0, 1]
    rows = [
        poly(-1.0530884977290216, t, [-1.3299890189751412, 1],
             [0.7139816917074209, -1.4364028541716351, 1]),
        poly(0.1017, t2, [1.2949852507374631, -2.1966568338249754, 1]),
        poly(2.490627285651252793, t2, [1.57803468208092486, -2.38535645472061657, 1]),
        poly(-16.54810288924490272, t2, [-1.21712927295533244, 1], [-0.61620406037800089, 1]),
        poly(47.37952196281928122, t2, [-1.203071208372362603, 1], [-0.658047292653547382, 1]),
        poly(-34.87065786149660974, t2, [-1.2, 1], [-0.666666666666666667, 1]),
        poly(2.5, t2, [-1, 1], [-0.6, 1]),
    ]
    dense = np.array([np.pad(r, (0, 5 - len(r)))[1:] for r in rows])
    # The published factors carry 16-19 digits; make b(1) = b exactly so dense output
    # at the end of a step is the step's own solution.
    dense[:, -1] += np.append(C.TSIT5_B, 0.0)[: len(dense)] - dense.sum(1)
    return dense


TSIT5 = ButcherTableau(
    "Tsit5",
    a=np.array(C.TSIT5_A),
    b=np.array(C.TSIT5_B),
    c=np.array(C.TSIT5_C),
    order=5,
    fsal=6,
    b_err=np.array(C.TSIT5_E),
    error_order=4,
    dense=_tsit5_dense(),
)


def _dop853_dense():
    # Hairer's DOP853 dense output is y_old + sum_m F_m q_m(theta) with F_m linear in
    # h * K (below) and q_m built by alternately multiplying by theta and (1 - theta).
    s = 16
    b = np.pad(C.DOP853_B, (0, s - 12))
    e0, e12 = np.eye(s)[0], np.eye(s)[12]
    w = [b, e0 - b, 2 * b - (e0 + e12)] + [np.array(r) for r in C.DOP853_D]
    coeffs = np.zeros((s, 9))
    for m in range(len(w)):
        # F_m is multiplied by every factor applied from the moment it is added on.
        poly = np.array([1.0])
        for i in range(len(w) - 1 - m, len(w)):
            poly = P.polymul(poly, [0, 1] if i % 2 == 0 else [1, -1])
        coeffs[:, : len(poly)] += np.outer(w[m], poly)
    dense = coeffs[:, 1:8]
    # Hairer's coefficients (17 digits, combined above) left b(1) - b at 2.5e-14, so dense
    # output at a step's end missed the step's state by that much (scipy's DOP853 meets
    # 1e-15): put the difference on the last column, as for Tsit5.
    dense[:, -1] += b - dense.sum(1)
    return dense


DOPRI8 = ButcherTableau(
    "Dopri8",
    a=np.array(C.DOP853_A),
    b=np.pad(C.DOP853_B, (0, 4)),
    c=np.array(C.DOP853_C),
    order=8,
    fsal=12,
    b_err=np.pad(C.DOP853_E5, (0, 3)),
    error_order=7,  # the blended 5th/3rd order estimate behaves like O(h^8)
    b_err3=np.pad(C.DOP853_E3, (0, 3)),
    dense=_dop853_dense(),
)
