"""Vectorised unit quaternions (w, x, y, z) as numpy arrays of shape (..., 4).

A quaternion q describes the orientation of a frame B in frame A: v_A = R(q) v_B.
Composition is Hamilton's product; `multiply(q_ab, q_bc) = q_ac`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]

IDENTITY: Array = np.array([1.0, 0.0, 0.0, 0.0])


def multiply(p: Array, q: Array) -> Array:
    """Hamilton product p ⊗ q, broadcasting over leading axes."""
    pw, px, py, pz = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    qw, qx, qy, qz = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack(
        (
            pw * qw - px * qx - py * qy - pz * qz,
            pw * qx + px * qw + py * qz - pz * qy,
            pw * qy - px * qz + py * qw + pz * qx,
            pw * qz + px * qy - py * qx + pz * qw,
        ),
        axis=-1,
    )


def conjugate(q: Array) -> Array:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def normalize(q: Array) -> Array:
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def about_axis(axis: int, angle_rad: ArrayLike) -> Array:
    """Rotation by `angle_rad` (scalar or array) about coordinate axis 0 (x), 1 (y) or 2 (z)."""
    half = 0.5 * np.asarray(angle_rad, dtype=np.float64)
    out = np.zeros(half.shape + (4,))
    out[..., 0] = np.cos(half)
    out[..., 1 + axis] = np.sin(half)
    return out


def from_rotvec(rotvec: Array) -> Array:
    """Quaternion of a rotation vector (axis × angle in rad)."""
    angle = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    # sin(a/2)/a -> 1/2 as a -> 0.
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(angle > 1e-12, np.sin(0.5 * angle) / angle, 0.5)
    return np.concatenate((np.cos(0.5 * angle), scale * rotvec), axis=-1)


def to_rotvec(q: Array) -> Array:
    """Rotation vector (rad) of the shortest rotation described by q (q need not be unit)."""
    q = np.where(q[..., :1] < 0.0, -q, q)
    vec = q[..., 1:]
    s = np.linalg.norm(vec, axis=-1, keepdims=True)
    w = q[..., :1]
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(s > 1e-12, 2.0 * np.arctan2(s, w) / s, 2.0 / w)
    return scale * vec


def _cross(a: Array, b: Array) -> Array:
    ax, ay, az = a[..., 0], a[..., 1], a[..., 2]
    bx, by, bz = b[..., 0], b[..., 1], b[..., 2]
    return np.stack((ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx), axis=-1)


def rotate(q: Array, v: Array) -> Array:
    """R(q) v: a vector given in the rotated frame, expressed in the reference frame."""
    w = q[..., :1]
    u = q[..., 1:]
    t = 2.0 * _cross(u, v)
    return v + w * t + _cross(u, t)


def axis_x(q: Array) -> Array:
    """R(q) (1, 0, 0): the rotated frame's x axis in the reference frame."""
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack((1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y + w * z), 2.0 * (x * z - w * y)), axis=-1)


def axis_z(q: Array) -> Array:
    """R(q) (0, 0, 1): the rotated frame's z axis in the reference frame."""
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack((2.0 * (x * z + w * y), 2.0 * (y * z - w * x), 1.0 - 2.0 * (x * x + y * y)), axis=-1)


def rotate_into(q: Array, v: Array) -> Array:
    """R(q)^T v: a vector given in the reference frame, expressed in the rotated frame."""
    return rotate(conjugate(q), v)


def nlerp(q0: Array, q1: Array, weight: Array) -> Array:
    """Normalised linear interpolation along the shorter arc; weight 0 -> q0, 1 -> q1 exactly."""
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q0 = np.where(dot < 0.0, -q0, q0)
    w = weight[..., None]
    return normalize((1.0 - w) * q0 + w * q1)


def from_euler_xyz_deg(angles_deg: tuple[float, float, float]) -> Array:
    """Rotation about x, then the new y, then the new z (intrinsic), angles in degrees."""
    rx, ry, rz = np.radians(np.asarray(angles_deg, dtype=np.float64))
    return multiply(multiply(about_axis(0, rx), about_axis(1, ry)), about_axis(2, rz))


def between(a: ArrayLike, b: ArrayLike) -> Array:
    """The shortest rotation q with R(q) a = b (a, b any non-zero vectors)."""
    a_unit = np.asarray(a, dtype=np.float64)
    b_unit = np.asarray(b, dtype=np.float64)
    a_unit = a_unit / np.linalg.norm(a_unit)
    b_unit = b_unit / np.linalg.norm(b_unit)
    dot = float(np.dot(a_unit, b_unit))
    if dot < -1.0 + 1e-12:
        # Opposite vectors: half a turn about any axis perpendicular to a.
        helper = np.array([1.0, 0.0, 0.0]) if abs(float(a_unit[0])) < 0.9 else np.array([0.0, 1.0, 0.0])
        axis = _cross(a_unit, helper)
        return np.concatenate((np.zeros(1), axis / np.linalg.norm(axis)))
    return normalize(np.concatenate((np.array([1.0 + dot]), _cross(a_unit, b_unit))))
