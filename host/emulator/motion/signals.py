"""Smooth signals of continuous time, evaluated on numpy arrays of times.

Everything here can be evaluated at any time, not just on the sample grid: the renderer
differentiates orientations and positions by central differences around each sample.

- `smoothstep` is the quintic minimum-jerk profile: zero velocity and acceleration at both ends.
- `StepTrack` holds many channels (angles, positions, envelopes) as sums of smooth steps.
- `SmoothNoise` is unit-variance band-limited noise (a cubic B-spline through random points).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


def smoothstep(x: Array) -> Array:
    """Minimum-jerk step: 0 for x <= 0, 1 for x >= 1, 10x³ − 15x⁴ + 6x⁵ between (C² smooth)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (10.0 + x * (-15.0 + 6.0 * x))


def smoothstep_integral(x: Array) -> Array:
    """∫₀ˣ smoothstep for 0 <= x <= 1 (clipped): 2.5x⁴ − 3x⁵ + x⁶; equals 0.5 at x = 1."""
    x = np.clip(x, 0.0, 1.0)
    return x**4 * (2.5 + x * (-3.0 + x))


def smooth_bump(x: Array) -> Array:
    """A C²-smooth bump: 0 outside (0, 1), 1 at x = 0.5: 64 x³ (1 − x)³."""
    x = np.clip(x, 0.0, 1.0)
    return 64.0 * (x * (1.0 - x)) ** 3


@dataclass
class _Lane:
    """Non-overlapping steps, sorted by start."""

    starts: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    deltas: list[NDArray[np.float64]] = field(default_factory=list)

    @property
    def end(self) -> float:
        return self.starts[-1] + self.durations[-1] if self.starts else -np.inf


@dataclass(frozen=True)
class _LaneArrays:
    starts: Array
    durations: Array
    deltas: Array  # (m, channels)
    before: Array  # (m, channels): sum of the deltas of the earlier steps
    offsets: Array  # (m, channels): sum of Δ·(start + duration/2) of the earlier steps


class StepTrack:
    """Channels that change only through smooth steps: value(t) = initial + Σ Δ·smoothstep.

    Steps may overlap; they are spread over non-overlapping lanes so that evaluating n times
    costs O(n log m) per lane, whatever the number m of steps (8 h of fidgets is thousands).
    """

    def __init__(self, initial: ArrayLike) -> None:
        self.initial = np.asarray(initial, dtype=np.float64).copy()
        self._pending: list[tuple[float, float, NDArray[np.float64]]] = []
        self._lanes: list[_LaneArrays] | None = None

    @property
    def n_channels(self) -> int:
        return int(self.initial.shape[0])

    def add_step(self, start_s: float, duration_s: float, delta: ArrayLike) -> None:
        if duration_s <= 0.0:
            raise ValueError(f"step duration must be > 0, got {duration_s}")
        values = np.asarray(delta, dtype=np.float64)
        if values.shape != self.initial.shape:
            raise ValueError(f"step delta has shape {values.shape}, expected {self.initial.shape}")
        self._pending.append((float(start_s), float(duration_s), values))
        self._lanes = None

    def add_bump(
        self, start_s: float, rise_s: float, hold_s: float, fall_s: float, amplitude: ArrayLike
    ) -> None:
        """Rise by `amplitude`, hold, and come back: two steps."""
        values = np.asarray(amplitude, dtype=np.float64)
        self.add_step(start_s, rise_s, values)
        self.add_step(start_s + rise_s + hold_s, fall_s, -values)

    def _build(self) -> list[_LaneArrays]:
        if self._lanes is None:
            lanes: list[_Lane] = []
            for start, duration, delta in sorted(self._pending, key=lambda step: step[0]):
                lane = next((lane for lane in lanes if lane.end <= start), None)
                if lane is None:
                    lane = _Lane()
                    lanes.append(lane)
                lane.starts.append(start)
                lane.durations.append(duration)
                lane.deltas.append(delta)
            self._lanes = []
            for lane in lanes:
                # A leading zero step long before anything else stands for "no step yet".
                starts = np.concatenate(([-1e12], lane.starts))
                durations = np.concatenate(([1.0], lane.durations))
                deltas = np.vstack((np.zeros((1, self.n_channels)), np.asarray(lane.deltas)))
                before = np.vstack((np.zeros((1, self.n_channels)), np.cumsum(deltas, axis=0)[:-1]))
                weighted = deltas * (starts + 0.5 * durations)[:, None]
                offsets = np.vstack((np.zeros((1, self.n_channels)), np.cumsum(weighted, axis=0)[:-1]))
                self._lanes.append(_LaneArrays(starts, durations, deltas, before, offsets))
        return self._lanes

    def evaluate(self, t_s: Array) -> Array:
        """(n, channels) values at the times `t_s`."""
        out = np.broadcast_to(self.initial, (t_s.shape[0], self.n_channels)).copy()
        for lane in self._build():
            i = np.searchsorted(lane.starts, t_s, side="right") - 1
            progress = smoothstep((t_s - lane.starts.take(i)) / lane.durations.take(i))
            out += lane.before.take(i, axis=0)
            out += lane.deltas.take(i, axis=0) * progress[:, None]
        return out

    def integral(self, t_s: Array, channel: int) -> Array:
        """∫₀ᵗ of one channel (used for phases: ∫ step frequency dt)."""
        out = self.initial[channel] * t_s
        for lane in self._build():
            i = np.searchsorted(lane.starts, t_s, side="right") - 1
            durations = lane.durations.take(i)
            elapsed = t_s - lane.starts.take(i)
            delta = lane.deltas[:, channel].take(i)
            # Finished steps j contribute Δ_j · (t − start_j − duration_j / 2); the current one
            # its partial integral.
            current = delta * (
                durations * smoothstep_integral(elapsed / durations) + np.maximum(elapsed - durations, 0.0)
            )
            out += lane.before[:, channel].take(i) * t_s - lane.offsets[:, channel].take(i) + current
        return out


# Standard deviation of a uniform cubic B-spline through unit-variance points, averaged over a knot.
_BSPLINE_STD = 0.6924


class SmoothNoise:
    """Band-limited noise with unit standard deviation: a C² cubic B-spline through
    independent normal control points spaced `knot_s` apart. Deterministic from `rng`."""

    def __init__(self, rng: np.random.Generator, duration_s: float, knot_s: float, channels: int) -> None:
        self.knot_s = knot_s
        count = int(np.ceil(max(duration_s, 0.0) / knot_s)) + 6
        self._points = rng.standard_normal((count, channels)) / _BSPLINE_STD

    def evaluate(self, t_s: Array) -> Array:
        x = t_s / self.knot_s + 1.0  # +1: times slightly before 0 stay inside the control points
        i = np.clip(np.floor(x).astype(np.int64), 0, self._points.shape[0] - 4)
        u = (x - i)[:, None]
        u2 = u * u
        u3 = u2 * u
        p = self._points
        out = p.take(i, axis=0) * ((1.0 - u) ** 3 / 6.0)
        out += p.take(i + 1, axis=0) * ((3.0 * u3 - 6.0 * u2 + 4.0) / 6.0)
        out += p.take(i + 2, axis=0) * ((-3.0 * u3 + 3.0 * u2 + 3.0 * u + 1.0) / 6.0)
        out += p.take(i + 3, axis=0) * (u3 / 6.0)
        return out
