"""The 2D Gaussian fit of an ERF map with lmfit, every parameter with its standard error, and R²."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from explorer.erf.common import MIN_R2, ErfFitError
from explorer.erf.estimate import ErfEstimate

PARAMS = ("amplitude", "centre_x", "centre_y", "sigma_x", "sigma_y", "offset", "rotation")
_LMFIT_NAMES = {"amplitude": "amplitude", "centre_x": "centerx", "centre_y": "centery",
                "sigma_x": "sigmax", "sigma_y": "sigmay", "offset": "c", "rotation": "rotation"}


@dataclass
class ErfFit:
    """A converged 2D Gaussian fit of an ERF map, in input pixels (x = column, y = row).

    amplitude is lmfit's: the Gaussian's volume; `height` = amplitude / (2 pi sx sy) is its peak.
    With rotation, sigma_x/sigma_y are along the Gaussian's own axes, turned by `rotation`
    radians in [-pi/4, pi/4] (so sigma_x stays the axis nearest the horizontal).
    stderr: lmfit's standard error per parameter, None where lmfit could not estimate it
    (`stderr_note` then says so). They are *formal* errors assuming independent pixel residuals;
    neighbouring ERF pixels are strongly correlated, so they understate the real uncertainty:
    the spread across image counts (`convergence`) is the honest one.
    """

    sigma_x: float
    sigma_y: float
    centre_x: float
    centre_y: float
    amplitude: float
    offset: float | None
    rotation: float | None
    stderr: dict[str, float | None]
    r2: float
    surface: np.ndarray = field(repr=False)
    residual: np.ndarray = field(repr=False)
    success: bool
    message: str
    nfev: int
    options: dict[str, bool]
    seconds: float
    stderr_note: str = ""

    @property
    def height(self) -> float:
        return self.amplitude / (2 * math.pi * self.sigma_x * self.sigma_y)


def rotated_gaussian2d(x, y, amplitude=1.0, centerx=0.0, centery=0.0, sigmax=1.0, sigmay=1.0, rotation=0.0):
    """lmfit's gaussian2d with its axes turned by `rotation` radians (counter-clockwise in x, y):

        u = cos t (x - cx) + sin t (y - cy),  v = -sin t (x - cx) + cos t (y - cy)
        G = A / (2 pi sx sy) exp(-u^2 / (2 sx^2) - v^2 / (2 sy^2))

    lmfit 1.3.4's Gaussian2dModel has no rotation, hence this model."""
    dx, dy = x - centerx, y - centery
    c, s = np.cos(rotation), np.sin(rotation)
    u, v = c * dx + s * dy, -s * dx + c * dy
    sx, sy = max(sigmax, 1e-12), max(sigmay, 1e-12)
    return amplitude / (2 * np.pi * sx * sy) * np.exp(-(u * u) / (2 * sx * sx) - (v * v) / (2 * sy * sy))


def _moments(data: np.ndarray, x: np.ndarray, y: np.ndarray, base: float) -> dict[str, float]:
    """Initial guesses from the map's first and second moments, above `base`."""
    weight = np.clip(data - base, 0.0, None)
    mass = float(weight.sum())
    if not (mass > 0 and math.isfinite(mass)):
        raise ErfFitError("Cannot fit a 2D Gaussian: the map has no positive peak (all values at or below "
                          "its baseline).")
    cx, cy = float((weight * x).sum() / mass), float((weight * y).sum() / mass)
    vxx = float((weight * (x - cx) ** 2).sum() / mass)
    vyy = float((weight * (y - cy) ** 2).sum() / mass)
    vxy = float((weight * (x - cx) * (y - cy)).sum() / mass)
    return {"mass": mass, "cx": cx, "cy": cy, "vxx": max(vxx, 0.25), "vyy": max(vyy, 0.25), "vxy": vxy}


MAX_FIT_PIXELS = 2048 * 2048  # the largest input a model card may declare; lmfit's time grows with the pixels


def fit_erf(erf_map: np.ndarray, offset: bool = False, rotation: bool = False,
            min_r2: float = MIN_R2) -> ErfFit:
    """Fit a 2D Gaussian (lmfit.models.Gaussian2dModel; a rotated variant when `rotation`; plus
    lmfit.models.ConstantModel when `offset`) to an H x W map by least squares on every pixel.

    Coordinates are input pixels: x = column index, y = row index. Initial values come from the
    map's moments (above the median of its border when an offset is fitted). R^2 = 1 -
    SS_res / SS_tot over the map. Negative pixels (the "microscopic holes" of the signed mode,
    Extended-CAM 4.1) are fitted as they are.

    Raises ErfFitError, never returns silently, when the map is not finite or flat, when lmfit
    reports no success, when a value is not finite, when the peak is not positive or lies outside
    the map, or when R^2 < min_r2 (no Gaussian found, e.g. pure noise).
    """
    import lmfit
    from lmfit.models import ConstantModel, Gaussian2dModel

    data = np.asarray(erf_map, dtype=np.float64)
    if data.ndim != 2 or min(data.shape) < 2:
        raise ErfFitError(f"Cannot fit a 2D Gaussian to a map of shape {data.shape}; it needs an H x W map.")
    if data.size > MAX_FIT_PIXELS:
        raise ErfFitError(f"Cannot fit a map of {data.shape[0]} x {data.shape[1]} pixels: at most {MAX_FIT_PIXELS:,} "
                          "(2048 x 2048) are fitted; downscale the map first.")
    if not np.isfinite(data).all():
        raise ErfFitError("Cannot fit a 2D Gaussian: the map holds NaN or infinite values.")
    H, W = data.shape
    ss_tot = float(((data - data.mean()) ** 2).sum())
    if not ss_tot > 0:
        raise ErfFitError("Cannot fit a 2D Gaussian: the map is constant (for example all zero), "
                          "so there is no peak to fit.")
    start = time.perf_counter()
    # Fit in units where the map's largest |value| is 1: ERF gradients can be ~1e-6, and
    # leastsq's finite-difference steps and tolerances behave best near unit scale.
    scale = float(np.abs(data).max())
    z = (data / scale).ravel()
    yy, xx = np.mgrid[0:H, 0:W]
    x, y = xx.ravel().astype(np.float64), yy.ravel().astype(np.float64)

    border = np.concatenate([data[0], data[-1], data[1:-1, 0], data[1:-1, -1]]) / scale
    base = float(np.median(border)) if offset else 0.0
    m = _moments(z, x, y, base)

    if rotation:
        model = lmfit.Model(rotated_gaussian2d, independent_vars=["x", "y"])
        theta = 0.5 * math.atan2(2 * m["vxy"], m["vxx"] - m["vyy"])
        eig = np.linalg.eigvalsh(np.array([[m["vxx"], m["vxy"]], [m["vxy"], m["vyy"]]]))
        cos, sin = math.cos(theta), math.sin(theta)
        var_u = m["vxx"] * cos ** 2 + 2 * m["vxy"] * sin * cos + m["vyy"] * sin ** 2
        var_v = max(float(eig.sum()) - var_u, 0.25)
        guess = {"sigmax": math.sqrt(max(var_u, 0.25)), "sigmay": math.sqrt(var_v), "rotation": theta}
    else:
        model = Gaussian2dModel()
        guess = {"sigmax": math.sqrt(m["vxx"]), "sigmay": math.sqrt(m["vyy"])}
    params = model.make_params(amplitude=m["mass"], centerx=m["cx"], centery=m["cy"], **guess)
    params["sigmax"].set(min=0.0)
    params["sigmay"].set(min=0.0)
    if offset:
        constant = ConstantModel()
        params.update(constant.make_params(c=base))
        model = model + constant

    try:
        result = model.fit(z, params, x=x, y=y)
    except (ValueError, TypeError, np.linalg.LinAlgError) as exc:
        raise ErfFitError(f"The 2D Gaussian fit did not converge: lmfit stopped with {exc}.") from exc
    message = str(result.message)
    if not result.success:
        raise ErfFitError(f"The 2D Gaussian fit did not converge: {message} (after {result.nfev} evaluations).")

    values: dict[str, float] = {}
    stderr: dict[str, float | None] = {}
    for name in PARAMS:
        if name == "offset" and not offset or name == "rotation" and not rotation:
            continue
        par = result.params[_LMFIT_NAMES[name]]
        unit = scale if name in ("amplitude", "offset") else 1.0
        values[name] = float(par.value) * unit
        err = par.stderr
        stderr[name] = float(err) * unit if err is not None and math.isfinite(err) else None
    if not all(math.isfinite(v) for v in values.values()):
        raise ErfFitError(f"The 2D Gaussian fit did not converge: it ended on non-finite values {values}.")
    if rotation:  # canonical form: rotation in [-pi/4, pi/4], sigma_x the axis nearest horizontal
        t = (values["rotation"] + math.pi / 2) % math.pi - math.pi / 2
        if abs(t) > math.pi / 4:
            t -= math.copysign(math.pi / 2, t)
            values["sigma_x"], values["sigma_y"] = values["sigma_y"], values["sigma_x"]
            stderr["sigma_x"], stderr["sigma_y"] = stderr["sigma_y"], stderr["sigma_x"]
        values["rotation"] = t
    values["sigma_x"], values["sigma_y"] = abs(values["sigma_x"]), abs(values["sigma_y"])

    surface = result.eval(x=x, y=y).reshape(H, W) * scale
    residual = data - surface
    r2 = 1.0 - float((residual ** 2).sum()) / ss_tot
    if values["amplitude"] <= 0:
        raise ErfFitError("The 2D Gaussian fit did not converge to a peak: it found a dip (negative amplitude).")
    if not (-0.5 <= values["centre_x"] <= W - 0.5 and -0.5 <= values["centre_y"] <= H - 0.5):
        raise ErfFitError(f"The 2D Gaussian fit did not converge inside the map: its centre "
                          f"({values['centre_x']:.1f}, {values['centre_y']:.1f}) lies outside {W} x {H}.")
    if min(values["sigma_x"], values["sigma_y"]) < 0.1 or max(values["sigma_x"], values["sigma_y"]) > 20 * max(H, W):
        raise ErfFitError(f"The 2D Gaussian fit did not converge to a sensible width: sigma "
                          f"({values['sigma_x']:.3g}, {values['sigma_y']:.3g}) px on a {W} x {H} map.")
    if not r2 >= min_r2:
        raise ErfFitError(f"The 2D Gaussian fit found no Gaussian in this map: R² = {r2:.3f} < {min_r2} "
                          f"(the map looks like noise; average more images).")
    missing = [k for k, v in stderr.items() if v is None]
    note = ""
    if missing:
        note = (f"lmfit could not estimate the standard error of {', '.join(missing)} "
                f"(singular or unavailable covariance)")
    return ErfFit(
        sigma_x=values["sigma_x"], sigma_y=values["sigma_y"], centre_x=values["centre_x"],
        centre_y=values["centre_y"], amplitude=values["amplitude"], offset=values.get("offset"),
        rotation=values.get("rotation"), stderr=stderr, r2=r2, surface=surface, residual=residual,
        success=bool(result.success), message=message, nfev=int(result.nfev),
        options={"offset": offset, "rotation": rotation}, seconds=time.perf_counter() - start,
        stderr_note=note,
    )


def convergence(estimate: ErfEstimate, offset: bool = False, rotation: bool = False) -> list[dict[str, Any]]:
    """Fit each snapshot (1, 2, 4, ... images): how R² and the sigmas settle as more images are
    averaged. A snapshot whose fit fails gets None values and its `error` message (small n is
    often too noisy to fit); it is reported, not hidden."""
    rows: list[dict[str, Any]] = []
    for n, snapshot in estimate.snapshots:
        row: dict[str, Any] = {"n": n, "r2": None, "sigma_x": None, "sigma_y": None,
                               "sigma_x_stderr": None, "sigma_y_stderr": None, "error": None}
        try:
            fit = fit_erf(snapshot, offset=offset, rotation=rotation)
        except ErfFitError as exc:
            row["error"] = str(exc)
        else:
            row.update(r2=fit.r2, sigma_x=fit.sigma_x, sigma_y=fit.sigma_y,
                       sigma_x_stderr=fit.stderr.get("sigma_x"), sigma_y_stderr=fit.stderr.get("sigma_y"))
        rows.append(row)
    return rows
