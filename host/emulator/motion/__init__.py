"""Motion of a wearer's back over time, with ground truth: the physics behind emulator.scenarios.

- `quat`: vectorised quaternions.
- `signals`: smooth continuous-time signals (minimum-jerk steps, band-limited noise).
- `timeline`: the `Scenario` builder (segments) and its renderer (orientation → accel, gyro, truth).
"""

from .timeline import LYING_POSTURES, Scenario, Segment, Wearer

__all__ = ["LYING_POSTURES", "Scenario", "Segment", "Wearer"]
