"""Float reference of the firmware's tilt filter (``device/lib/fusion.py``).

The same algorithm in plain floating point, written for clarity rather than speed; the tests
check the firmware's fixed-point filter against it. Steps per sample (all in the firmware too):

1. Rest detection: the gyro (deg/s) and accelerometer (g) pass a 2nd-order Butterworth low-pass
   (time constant ``rest_tau_s``); the sensor is at rest when every sample's deviation from the
   low-passed value stays below ``rest_gyro_dps`` / ``rest_accel_g`` (and the low-passed rate below
   ``bias_clip_dps``) for ``rest_min_s``.
2. Gyro bias: at rest a scalar Kalman filter pulls the bias towards the low-passed gyro rate; its
   variance grows slowly while moving (the bias "forgetting time"), as in VQF.
3. Strapdown integration of the bias-free rate into a quaternion (sensor -> an almost-inertial frame
   I), with a two-sample coning correction ``phi = theta + coning_gain * (theta_prev x theta)``.
4. The accelerometer is rotated into I and low-passed there (2nd-order Butterworth, ``tau_acc_s``;
   ``tau_acc_rest_s`` while at rest):
   linear accelerations average out in an inertial frame, gravity does not. During the first
   ``tau_acc_s`` the low-pass output is the running mean (fast start).
5. Output: the normalised low-passed acceleration rotated back into the sensor frame: "up".

The Butterworth low-pass is the semi-implicit (symplectic Euler) state-variable form
``w += c*(x - y - sqrt2*w); y += c*w`` with ``c = omega*Ts``, ``omega = sqrt(2)/tau``, which is what
the firmware computes in integers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SQRT2 = math.sqrt(2.0)


class ReferenceTiltFilter:
    """Gravity direction ("up") in the sensor frame from 6-axis IMU samples, in floats."""

    def __init__(
        self,
        rate_hz: float,
        tau_acc_s: float = 3.0,
        coning_gain: float = 0.125,
        tau_acc_rest_s: float = 0.5,
        rest_tau_s: float = 0.5,
        rest_gyro_dps: float = 2.0,
        rest_accel_g: float = 0.05,
        rest_min_s: float = 1.5,
        bias_clip_dps: float = 3.0,
        bias_sigma_init_dps: float = 0.5,
        bias_forget_s: float = 100.0,
        bias_sigma_rest_dps: float = 0.03,
    ) -> None:
        self.ts_s = 1.0 / rate_hz
        self.tau_acc_s = tau_acc_s
        self.coning_gain = coning_gain
        self.c_acc = SQRT2 / tau_acc_s * self.ts_s
        self.c_acc_rest = SQRT2 / tau_acc_rest_s * self.ts_s
        self.c_rest = SQRT2 / rest_tau_s * self.ts_s
        self.rest_gyro_dps = rest_gyro_dps
        self.rest_accel_g = rest_accel_g
        self.rest_min_samples = round(rest_min_s * rate_hz)
        self.bias_clip_dps = bias_clip_dps
        # Bias Kalman filter in units of (0.01 deg/s)^2, VQF's parametrisation.
        self.p0 = (bias_sigma_init_dps * 100.0) ** 2
        self.v = (0.1 * 100.0) ** 2 * self.ts_s / bias_forget_s
        p_rest = (bias_sigma_rest_dps * 100.0) ** 2
        self.w_rest = p_rest**2 / self.v + p_rest
        self.init_samples = round(tau_acc_s * rate_hz)
        self.reset()

    def reset(self) -> None:
        self.q = [1.0, 0.0, 0.0, 0.0]
        self.theta_prev = [0.0, 0.0, 0.0]
        self.acc_lp = [0.0, 0.0, 0.0]
        self.acc_lp_w = [0.0, 0.0, 0.0]
        self.n_init = 0
        self.rest_lp: list[float] | None = None
        self.rest_lp_w = [0.0] * 6
        self.rest_count = 0
        self.at_rest = False
        self.bias_dps = [0.0, 0.0, 0.0]
        self.bias_p = self.p0
        self.up = (0.0, 0.0, 1.0)

    def _rest_and_bias(self, gyro_dps: Sequence[float], accel_g: Sequence[float]) -> None:
        x = list(gyro_dps) + list(accel_g)
        if self.rest_lp is None:
            self.rest_lp = list(x)
        lp, lw = self.rest_lp, self.rest_lp_w
        for i in range(6):
            lw[i] += self.c_rest * (x[i] - lp[i] - SQRT2 * lw[i])
            lp[i] += self.c_rest * lw[i]
        dev_g = [x[i] - lp[i] for i in range(3)]
        dev_a = [x[i] - lp[i] for i in range(3, 6)]
        still = (
            sum(v * v for v in dev_g) < self.rest_gyro_dps**2
            and sum(v * v for v in dev_a) < self.rest_accel_g**2
            and max(abs(v) for v in lp[:3]) <= self.bias_clip_dps
        )
        self.rest_count = self.rest_count + 1 if still else 0
        self.at_rest = self.rest_count >= self.rest_min_samples
        if self.bias_p < self.p0:
            self.bias_p += self.v
        if self.at_rest:
            k = self.bias_p / (self.bias_p + self.w_rest)
            clip = self.bias_clip_dps
            for i in range(3):
                e = min(clip, max(-clip, lp[i] - self.bias_dps[i]))
                self.bias_dps[i] = min(clip, max(-clip, self.bias_dps[i] + k * e))
            self.bias_p -= k * self.bias_p

    def update(self, accel_g: Sequence[float], gyro_dps: Sequence[float]) -> tuple[float, float, float]:
        self._rest_and_bias(gyro_dps, accel_g)
        # Strapdown integration with a coning correction.
        k = math.radians(self.ts_s)
        th = [(gyro_dps[i] - self.bias_dps[i]) * k for i in range(3)]
        tp = self.theta_prev
        cg = self.coning_gain
        phi = [
            th[0] + cg * (tp[1] * th[2] - tp[2] * th[1]),
            th[1] + cg * (tp[2] * th[0] - tp[0] * th[2]),
            th[2] + cg * (tp[0] * th[1] - tp[1] * th[0]),
        ]
        self.theta_prev = th
        angle = math.sqrt(phi[0] ** 2 + phi[1] ** 2 + phi[2] ** 2)
        if angle > 0.0:
            c = math.cos(angle / 2)
            s = math.sin(angle / 2) / angle
            dw, dx, dy, dz = c, s * phi[0], s * phi[1], s * phi[2]
            q0, q1, q2, q3 = self.q
            q = [
                q0 * dw - q1 * dx - q2 * dy - q3 * dz,
                q0 * dx + q1 * dw + q2 * dz - q3 * dy,
                q0 * dy - q1 * dz + q2 * dw + q3 * dx,
                q0 * dz + q1 * dy - q2 * dx + q3 * dw,
            ]
            n = math.sqrt(sum(v * v for v in q))
            self.q = [v / n for v in q]
        q0, q1, q2, q3 = self.q
        r = [
            [1 - 2 * (q2 * q2 + q3 * q3), 2 * (q1 * q2 - q0 * q3), 2 * (q1 * q3 + q0 * q2)],
            [2 * (q1 * q2 + q0 * q3), 1 - 2 * (q1 * q1 + q3 * q3), 2 * (q2 * q3 - q0 * q1)],
            [2 * (q1 * q3 - q0 * q2), 2 * (q2 * q3 + q0 * q1), 1 - 2 * (q1 * q1 + q2 * q2)],
        ]
        # Accelerometer into the inertial frame, low-passed there.
        acc_i = [r[i][0] * accel_g[0] + r[i][1] * accel_g[1] + r[i][2] * accel_g[2] for i in range(3)]
        y, w = self.acc_lp, self.acc_lp_w
        if self.n_init < self.init_samples:
            self.n_init += 1
            for i in range(3):
                y[i] += (acc_i[i] - y[i]) / self.n_init
        else:
            c = self.c_acc_rest if self.at_rest else self.c_acc
            for i in range(3):
                w[i] += c * (acc_i[i] - y[i] - SQRT2 * w[i])
                y[i] += c * w[i]
        n = math.sqrt(y[0] ** 2 + y[1] ** 2 + y[2] ** 2)
        if n > 0.0:
            u = [v / n for v in y]
            self.up = (
                r[0][0] * u[0] + r[1][0] * u[1] + r[2][0] * u[2],
                r[0][1] * u[0] + r[1][1] * u[1] + r[2][1] * u[2],
                r[0][2] * u[0] + r[1][2] * u[1] + r[2][2] * u[2],
            )
        return self.up


def run_reference(accel_g: np.ndarray, gyro_dps: np.ndarray, rate_hz: float, **settings: float) -> np.ndarray:
    """Up vector per sample, shape (N, 3), for samples in g and deg/s."""
    filt = ReferenceTiltFilter(rate_hz, **settings)
    out = np.empty((len(accel_g), 3))
    for k, (a, g) in enumerate(zip(accel_g.tolist(), gyro_dps.tolist(), strict=True)):
        out[k] = filt.update(a, g)
    return out
