"""A wearer's day as a timeline of segments, rendered to IMU samples with exact ground truth.

Build a :class:`Scenario` by chaining segments (``sit``, ``slouch_drift``, ``slouch``, ``reach``,
``hip_hinge``, ``stand``, ``walk``, ``stairs``, ``lie``, ``off_body``), then ``render()`` it.

Model
-----
World frame: X forward (at heading 0), Y left, Z up. Each back segment carrying a sensor has a
*body frame* that coincides with the ideal sensor frame (x up the spine, y left, z out of the back)
when the wearer stands or sits in neutral upright posture. Its orientation is

    q_wb = q_Z(heading) ⊗ q_neutral ⊗ q_mode ⊗ q_z(−lateral) ⊗ q_y(flexion) ⊗ q_x(twist)

where q_mode lays the body down (lying) and the posture angles come from smooth channel
tracks plus sway, breathing and gait oscillation. The upper sensor's flexion is hip + spine
flexion, the lower sensor's is hip + a share of the spine flexion: a hip hinge tilts both, a
slouch bends the spine. Off the body, a sensor rests on a desk in a fixed orientation.
The sensor frame is the body frame turned by the fixed mounting rotation: q_ws = q_wb ⊗ q_mount.

Sensor positions follow a kinematic chain (hip joint → lower sensor → upper sensor, with tissue
depth behind the spine). Accelerometer = specific force in the sensor frame,
R_ws^T (up + a/g) in g, with a the second derivative of the sensor position; gyroscope = body
angular rate in the sensor frame. Both come from central differences of the continuous-time
trajectory (±1 ms around each sample), so they are consistent with the truth orientation to
well below any sensor noise. No sensor noise or bias is added here: the IMU model adds those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from .. import recording
from ..recording import Activity, Recording
from . import quat
from .signals import SmoothNoise, StepTrack, smooth_bump, smoothstep

Array = NDArray[np.float64]

GRAVITY_M_S2 = 9.80665
_UP = np.array([0.0, 0.0, 1.0])
_DIFF_STEP_S = 1e-3  # half-width of the central differences for gyro and acceleration
_CHUNK_SAMPLES = 1 << 14  # samples rendered at a time: bounds memory, stays cache-friendly

# Channels of the posture track (degrees, metres, unitless envelopes, Hz).
HIP, SPINE, LATERAL, TWIST, HEADING, FWD, LEFT, UP, SWAY, BREATH, GAIT, STAIRS, STEP_HZ = range(13)
_CHANNELS = {
    "hip": HIP,  # flexion at the hips (deg): tilts both sensors
    "spine": SPINE,  # flexion of the spine (deg): all at the upper sensor, a share at the lower
    "lateral": LATERAL,  # lateral bend (deg, to the right positive)
    "twist": TWIST,  # axial rotation of the trunk (deg)
    "heading": HEADING,  # walking direction (deg, counter-clockwise from above)
    "fwd": FWD,  # hip joint position in the heading frame (m)
    "left": LEFT,
    "up": UP,
    "sway": SWAY,  # scale of natural sway (1 = seated)
    "breath": BREATH,  # scale of breathing motion
    "gait": GAIT,  # envelope of the walking oscillation
    "stairs": STAIRS,  # envelope of the stair-climbing oscillation
    "step_hz": STEP_HZ,  # step frequency of gait and stairs
}

SIT_HIP_HEIGHT_M = 0.46
STAND_HIP_HEIGHT_M = 0.92
LIE_HIP_HEIGHT_M = 0.50
STAND_HIP_FORWARD_M = 0.12

# Body frame at neutral upright, heading 0: x = world up, y = world left, z = world backward.
Q_NEUTRAL = quat.about_axis(1, -np.pi / 2)

LYING_POSTURES = ("supine", "prone", "left", "right")
# q_mode per posture, a rotation in the body frame: supine = flexion −90° (back down),
# prone = +90°, lying on the left side = the left side (+y) down.
_MODE_ROTATIONS: dict[str, Array] = {
    "upright": quat.IDENTITY,
    "desk": quat.IDENTITY,
    "supine": quat.about_axis(1, -np.pi / 2),
    "prone": quat.about_axis(1, np.pi / 2),
    "left": quat.about_axis(2, np.pi / 2),
    "right": quat.about_axis(2, -np.pi / 2),
}
_MODES = tuple(_MODE_ROTATIONS)
_OPPOSITE = {"supine": "prone", "prone": "supine", "left": "right", "right": "left"}


@dataclass(frozen=True)
class GaitShape:
    """Periodic trunk motion of one gait (walking or stairs), per unit envelope.

    Displacements of the hip joint in the heading frame (m) and trunk angle oscillations (deg)
    as harmonics of the step phase φ (one step per 2π) and the stride phase φ/2.
    """

    up_m: float
    up_harmonics: tuple[float, float]  # relative amplitude of 2φ and 3φ (heel-strike sharpness)
    fwd_m: float
    left_m: float
    pitch_deg: float
    roll_deg: float
    yaw_deg: float
    phases: tuple[float, ...]  # 8 phase offsets (rad)

    @classmethod
    def draw(cls, rng: np.random.Generator, stairs: bool) -> GaitShape:
        if stairs:
            return cls(
                up_m=rng.uniform(0.020, 0.030),
                up_harmonics=(rng.uniform(0.12, 0.20), rng.uniform(0.03, 0.06)),
                fwd_m=rng.uniform(0.008, 0.014),
                left_m=rng.uniform(0.015, 0.025),
                pitch_deg=rng.uniform(1.5, 2.5),
                roll_deg=rng.uniform(2.0, 3.5),
                yaw_deg=rng.uniform(3.0, 5.0),
                phases=tuple(rng.uniform(0, 2 * np.pi, 8)),
            )
        return cls(
            up_m=rng.uniform(0.012, 0.018),
            up_harmonics=(rng.uniform(0.10, 0.20), rng.uniform(0.03, 0.08)),
            fwd_m=rng.uniform(0.006, 0.010),
            left_m=rng.uniform(0.012, 0.020),
            pitch_deg=rng.uniform(0.8, 1.8),
            roll_deg=rng.uniform(1.5, 3.0),
            yaw_deg=rng.uniform(2.5, 5.0),
            phases=tuple(rng.uniform(0, 2 * np.pi, 8)),
        )

    def displacement_m(self, phase: Array) -> Array:
        """(n, 3) hip displacement (forward, left, up) in the heading frame."""
        p = self.phases
        h2, h3 = self.up_harmonics
        up = self.up_m * (np.cos(phase) + h2 * np.cos(2 * phase + p[0]) + h3 * np.cos(3 * phase + p[1]))
        fwd = self.fwd_m * (np.sin(phase + p[2]) + 0.3 * np.sin(2 * phase + p[3]))
        left = self.left_m * np.sin(0.5 * phase + p[4])
        return np.column_stack((fwd, left, up))

    def angles_deg(self, phase: Array) -> tuple[Array, Array, Array]:
        """(pitch, roll, yaw) oscillations of the trunk."""
        p = self.phases
        pitch = self.pitch_deg * np.cos(phase + p[5])
        roll = self.roll_deg * np.sin(0.5 * phase + p[6])
        yaw = self.yaw_deg * np.sin(0.5 * phase + p[7])
        return pitch, roll, yaw


@dataclass(frozen=True)
class Wearer:
    """Person-specific constants, drawn once per scenario from its seed."""

    spine_share_lower: float  # share of spinal flexion seen at T10–T12
    lateral_share_lower: float
    twist_share_lower: float
    breath_hz: float
    breath_deg: float  # thoracic flexion amplitude of breathing at the upper sensor
    sway_hip_deg: float
    sway_spine_deg: float
    sway_lateral_deg: float
    sway_twist_deg: float
    sway_position_m: float
    lumbar_m: float  # hip joint to lower sensor
    thoracic_m: float  # lower sensor to upper sensor
    tissue_m: float  # sensor behind the spine
    walk: GaitShape
    stairs: GaitShape

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Wearer:
        return cls(
            spine_share_lower=rng.uniform(0.2, 0.4),
            lateral_share_lower=rng.uniform(0.4, 0.6),
            twist_share_lower=rng.uniform(0.2, 0.4),
            breath_hz=rng.uniform(0.2, 0.3),
            breath_deg=rng.uniform(0.3, 0.6),
            sway_hip_deg=rng.uniform(0.3, 0.6),
            sway_spine_deg=rng.uniform(0.5, 1.0),
            sway_lateral_deg=rng.uniform(0.4, 0.8),
            sway_twist_deg=rng.uniform(0.8, 1.5),
            sway_position_m=rng.uniform(0.002, 0.004),
            lumbar_m=rng.uniform(0.26, 0.32),
            thoracic_m=rng.uniform(0.18, 0.24),
            tissue_m=rng.uniform(0.05, 0.09),
            walk=GaitShape.draw(rng, stairs=False),
            stairs=GaitShape.draw(rng, stairs=True),
        )


@dataclass(frozen=True)
class Segment:
    """One entry of the timeline, for inspection and docs (times include its transition)."""

    kind: str
    start_s: float
    end_s: float
    detail: str = ""


@dataclass
class _Piece:
    """A stretch of constant *mode* (upright, a lying posture, or on the desk), entered by a
    smooth blend of `blend_s` seconds from the previous piece."""

    start_s: float
    blend_s: float
    mode: str
    handling_deg: float = 0.0  # hand-held wobble during the blend (taking off / putting on)
    handling_axis: Array = field(default_factory=lambda: np.array([1.0, 0.0, 0.0]))
    desk_q: tuple[Array, ...] = ()  # per sensor, body-frame orientation while on the desk
    desk_position_m: tuple[Array, ...] = ()
    # Per sensor, ±1: the sign of the desk quaternion for the blend into this piece, fixed
    # against the expected body pose so that the blend is continuous even half a turn away.
    desk_sign: tuple[float, ...] = ()


class Scenario:
    """A timeline of a wearer's postures and motions; chain segments, then :meth:`render`.

    `mounting_offset_deg` is the fixed rotation of the (upper) sensor on the body, as intrinsic
    x-y-z angles in degrees; `mounting_offset_deg_2` that of the lower sensor. Truth flexion
    refers to the body, so the mounting changes the raw readings but not the flexion truth.

    `natural_motion=False` removes sway, breathing, fidgets and random lateral/twist offsets:
    postures are then exactly what the segments ask for (a pure flexion stays in the sagittal
    plane), which suits unit tests of filters and posture rules.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        two_sensors: bool = False,
        mounting_offset_deg: Sequence[float] = (0.0, 0.0, 0.0),
        mounting_offset_deg_2: Sequence[float] = (0.0, 0.0, 0.0),
        name: str = "custom",
        held_out: bool = False,
        start: str = "sit",
        natural_motion: bool = True,
    ) -> None:
        if start not in ("sit", "stand"):
            raise ValueError(f"start must be 'sit' or 'stand', got {start!r}")
        self.seed = int(seed)
        self.name = name
        self.held_out = held_out
        self.two_sensors = two_sensors
        self.mounting_offset_deg = _angles(mounting_offset_deg, "mounting_offset_deg")
        self.mounting_offset_deg_2 = _angles(mounting_offset_deg_2, "mounting_offset_deg_2")
        self.rng = np.random.default_rng(self.seed)
        self.natural_motion = natural_motion
        self.wearer = Wearer.draw(self.rng)
        if not natural_motion:
            self.wearer = replace(
                self.wearer,
                breath_deg=0.0,
                sway_hip_deg=0.0,
                sway_spine_deg=0.0,
                sway_lateral_deg=0.0,
                sway_twist_deg=0.0,
                sway_position_m=0.0,
            )
        self.segments: list[Segment] = []
        initial = np.zeros(len(_CHANNELS))
        initial[HEADING] = self.rng.uniform(-180.0, 180.0)
        initial[UP] = SIT_HIP_HEIGHT_M if start == "sit" else STAND_HIP_HEIGHT_M
        initial[FWD] = 0.0 if start == "sit" else STAND_HIP_FORWARD_M
        initial[SWAY] = 1.0
        initial[BREATH] = 1.0
        initial[STEP_HZ] = 1.9
        self._track = StepTrack(initial)
        self._level = initial.copy()
        self._pieces: list[_Piece] = [_Piece(0.0, 0.0, "upright")]
        self._labels: list[tuple[float, int, int]] = []  # (start_s, activity, worn)
        self._t = 0.0
        self._stance = start  # "sit", "stand", "lie" or "off"
        self._posture = "upright"
        # Where render() stops by default (None: at the end of the last segment).
        self.stop_s: float | None = None

    # ----- timeline building blocks ----------------------------------------------------------

    @property
    def duration_s(self) -> float:
        return self._t

    def _set(self, start_s: float, duration_s: float, **targets: float) -> None:
        """Move channels to new baseline values with one smooth step."""
        delta = np.zeros(len(_CHANNELS))
        for name, value in targets.items():
            channel = _CHANNELS[name]
            delta[channel] = value - self._level[channel]
            self._level[channel] = value
        if np.any(delta != 0.0):
            self._track.add_step(start_s, duration_s, delta)

    def _bump(self, start_s: float, rise_s: float, hold_s: float, fall_s: float, **amplitudes: float) -> None:
        """Leave the baseline and come back (a fidget, a reach, a hinge)."""
        amplitude = np.zeros(len(_CHANNELS))
        for name, value in amplitudes.items():
            amplitude[_CHANNELS[name]] = value
        self._track.add_bump(start_s, rise_s, hold_s, fall_s, amplitude)

    def _label(self, start_s: float, activity: Activity, worn: bool = True) -> None:
        self._labels.append((start_s, int(activity), int(worn)))

    def _finish(self, kind: str, start_s: float, end_s: float, detail: str = "") -> Scenario:
        self._t = end_s
        self.segments.append(Segment(kind, start_s, end_s, detail))
        return self

    def _body_end(self, start_s: float, duration_s: float, minimum_s: float) -> float:
        """End of a segment asked to last `duration_s` from `start_s`, after its transitions."""
        if duration_s <= 0:
            raise ValueError(f"segment duration must be > 0 s, got {duration_s}")
        return max(start_s + duration_s, self._t + minimum_s)

    def _uniform(self, low: float, high: float) -> float:
        return float(self.rng.uniform(low, high))

    def _normal(self, sd: float, limit: float | None = None) -> float:
        value = float(self.rng.normal(0.0, sd))
        return value if limit is None else float(np.clip(value, -limit, limit))

    def _offset(self, sd: float) -> float:
        """A small random postural offset (lateral lean, twist); none without natural motion."""
        value = self._normal(sd)
        return value if self.natural_motion else 0.0

    # ----- transitions -----------------------------------------------------------------------

    def _put_on(self) -> None:
        start, blend = self._t, 6.0
        desk = self._pieces[-1]
        self._pieces.append(
            _Piece(
                start,
                blend,
                "upright",
                handling_deg=self._uniform(15, 30),
                handling_axis=self._random_axis(),
                desk_sign=tuple(
                    _sign_towards(q, self._expected_body(i, "upright")) for i, q in enumerate(desk.desk_q)
                ),
            )
        )
        self._label(start, Activity.NOT_WORN, worn=False)
        self._t = start + blend
        self._stance, self._posture = "stand", "upright"

    def _sit_down(self) -> None:
        start = self._t
        self._set(start, 1.5, gait=0.0, stairs=0.0)
        self._bump(start + 0.1, 1.0, 0.2, 1.1, hip=self._uniform(15, 30))
        self._set(start + 0.2, 2.0, up=SIT_HIP_HEIGHT_M, fwd=0.0)
        self._label(start, Activity.MOVING)
        self._t = start + 2.5
        self._stance = "sit"

    def _stand_up(self) -> None:
        start = self._t
        self._bump(start + 0.1, 1.0, 0.2, 1.1, hip=self._uniform(20, 35))
        self._set(start + 0.5, 1.8, up=STAND_HIP_HEIGHT_M, fwd=STAND_HIP_FORWARD_M)
        self._label(start, Activity.MOVING)
        self._t = start + 2.5
        self._stance = "stand"

    def _lie_down(self, posture: str) -> None:
        if self._stance == "stand":
            self._sit_down()
        start, blend = self._t, 4.0
        self._pieces.append(_Piece(start, blend, posture))
        curl = self._uniform(0, 8) if posture in ("left", "right") else self._uniform(-3, 3)
        self._set(start, blend, up=LIE_HIP_HEIGHT_M, fwd=0.0, hip=0.0, spine=curl, lateral=0.0, twist=0.0)
        self._set(start, 1.0, sway=0.3, breath=1.5, gait=0.0, stairs=0.0)
        self._label(start, Activity.MOVING)
        self._t = start + blend
        self._stance, self._posture = "lie", posture

    def _turn_over(self, posture: str) -> None:
        start, blend = self._t, 3.0
        self._pieces.append(_Piece(start, blend, posture))
        curl = self._uniform(0, 8) if posture in ("left", "right") else self._uniform(-3, 3)
        self._set(start, blend, spine=curl)
        self._label(start, Activity.MOVING)
        self._t = start + blend
        self._posture = posture

    def _get_up(self) -> None:
        start, blend = self._t, 4.0
        self._pieces.append(_Piece(start, blend, "upright"))
        self._set(start, blend, up=SIT_HIP_HEIGHT_M, spine=self._uniform(0, 5))
        self._set(start + blend - 1.0, 1.0, sway=1.0, breath=1.0)
        self._label(start, Activity.MOVING)
        self._t = start + blend
        self._stance, self._posture = "sit", "upright"

    def _ensure(self, stance: str) -> None:
        """Get the wearer into `stance` ("sit", "stand" or "any" upright), with transitions."""
        if self._stance == "off":
            self._put_on()
        if self._stance == "lie":
            self._get_up()
        if stance == "sit" and self._stance == "stand":
            self._sit_down()
        elif stance == "stand" and self._stance == "sit":
            self._stand_up()

    def _fidgets(
        self,
        start_s: float,
        end_s: float,
        every_s: float,
        spine_sd: float,
        lateral_sd: float,
        twist_sd: float,
        hip_sd: float = 0.0,
        long_hold_s: tuple[float, float] = (15.0, 90.0),
    ) -> None:
        """Brief fidgets and longer posture shifts (bumps), roughly every `every_s` seconds."""
        if not self.natural_motion:
            return
        t = start_s + float(self.rng.exponential(every_s))
        while True:
            rise = self._uniform(0.4, 1.0)
            fall = self._uniform(0.4, 1.0)
            long_hold = self.rng.random() < 0.2
            hold = self._uniform(*long_hold_s) if long_hold else self._uniform(0.0, 4.0)
            hold = min(hold, end_s - 0.5 - t - rise - fall)
            if hold < 0.0:
                break
            self._bump(
                t,
                rise,
                hold,
                fall,
                spine=self._normal(spine_sd, 2 * spine_sd),
                lateral=self._normal(lateral_sd, 2 * lateral_sd),
                twist=self._normal(twist_sd, 2 * twist_sd),
                hip=self._normal(hip_sd, 2 * hip_sd) if hip_sd else 0.0,
            )
            t += rise + hold + fall + float(self.rng.exponential(every_s))

    def _random_axis(self) -> Array:
        axis = self.rng.standard_normal(3)
        return np.asarray(axis / np.linalg.norm(axis), dtype=np.float64)

    def _expected_body(self, sensor: int, mode: str) -> Array:
        """Body-frame orientation of `sensor` at the current baseline posture (no sway)."""
        facing = quat.multiply(quat.about_axis(2, np.radians(self._level[HEADING])), Q_NEUTRAL)
        w = self.wearer
        if sensor == 0:
            posture = _posture_quat(
                np.array(self._level[HIP] + self._level[SPINE]),
                np.array(self._level[LATERAL]),
                np.array(self._level[TWIST]),
            )
        else:
            posture = _posture_quat(
                np.array(self._level[HIP] + w.spine_share_lower * self._level[SPINE]),
                np.array(w.lateral_share_lower * self._level[LATERAL]),
                np.array(w.twist_share_lower * self._level[TWIST]),
            )
        return quat.multiply(quat.multiply(facing, _MODE_ROTATIONS[mode]), posture)

    def _desk_orientation(self, sensor: int, desk_up: Sequence[float] | None) -> Array:
        """Body-frame orientation that puts the *sensor* on the desk with `desk_up` (sensor-frame
        up vector) or, when None, resting on a random face with a random yaw and a slight tilt.

        The yaw is drawn, when possible, so that the desk pose is less than 150° from the body
        pose when the device is taken off: the handling then turns it the short way.
        """
        if desk_up is None:
            faces = np.array([[0, 0, 1], [0, 0, -1], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]], float)
            face = faces[self.rng.choice(6, p=[0.35, 0.35, 0.075, 0.075, 0.075, 0.075])]
            tilt = quat.from_rotvec(self.rng.normal(0.0, np.radians(1.0), 3))
        else:
            face = np.asarray(desk_up, dtype=np.float64)
            tilt = quat.IDENTITY
        body = self._expected_body(sensor, self._posture)
        mount = self._mounting(sensor)
        align = quat.between(face, _UP)
        for _ in range(50):
            q_sensor = quat.multiply(
                tilt, quat.multiply(quat.about_axis(2, self._uniform(-np.pi, np.pi)), align)
            )
            q_body = quat.normalize(quat.multiply(q_sensor, quat.conjugate(mount)))
            if abs(float(np.dot(q_body, body))) > np.cos(np.radians(75.0)):
                break
        return q_body

    def _mounting(self, sensor: int) -> Array:
        return quat.from_euler_xyz_deg(
            self.mounting_offset_deg if sensor == 0 else self.mounting_offset_deg_2
        )

    # ----- segments --------------------------------------------------------------------------

    def sit(self, duration_s: float, flexion_deg: float | None = None) -> Scenario:
        """Upright sitting: small natural sway, breathing, fidgets and posture shifts."""
        start = self._t
        self._ensure("sit")
        body = self._t
        end = self._body_end(start, duration_s, 2.0)
        flexion = self._uniform(-3.0, 6.0) if flexion_deg is None else flexion_deg
        self._set(body, 1.5, spine=flexion, hip=0.0, lateral=self._offset(1.0), twist=self._offset(2.0))
        self._set(body, 1.5, sway=1.0, breath=1.0, gait=0.0, stairs=0.0)
        self._fidgets(body + 1.5, end, every_s=40.0, spine_sd=2.5, lateral_sd=1.5, twist_sd=4.0, hip_sd=1.0)
        self._label(body, Activity.STATIC)
        return self._finish("sit", start, end, f"flexion {flexion:.0f} deg")

    def slouch_drift(self, duration_s: float, to_deg: float | None = None) -> Scenario:
        """Seated flexion creeping up over the whole segment (minutes), with small fidgets."""
        start = self._t
        self._ensure("sit")
        body = self._t
        end = self._body_end(start, duration_s, 5.0)
        target = self._uniform(24.0, 38.0) if to_deg is None else to_deg
        self._set(body, end - body, spine=target, lateral=self._level[LATERAL] + self._offset(1.5))
        self._set(body, 1.0, sway=1.0, breath=1.0, gait=0.0, stairs=0.0)
        self._fidgets(body + 2.0, end, every_s=60.0, spine_sd=1.5, lateral_sd=1.5, twist_sd=3.0)
        self._label(body, Activity.STATIC)
        return self._finish("slouch_drift", start, end, f"to {target:.0f} deg")

    def slouch(self, duration_s: float, flexion_deg: float | None = None) -> Scenario:
        """Sustained seated slouch: flexion held (default 25–42°), sway and small fidgets."""
        start = self._t
        self._ensure("sit")
        body = self._t
        end = self._body_end(start, duration_s, 2.0)
        flexion = self._uniform(25.0, 42.0) if flexion_deg is None else flexion_deg
        onset = 3.0 if abs(flexion - self._level[SPINE]) > 5.0 else 1.0
        onset = min(onset, 0.3 * (end - body))
        self._set(body, onset, spine=flexion)
        self._set(body, 1.0, sway=1.0, breath=1.0, gait=0.0, stairs=0.0)
        self._fidgets(body + onset, end, every_s=50.0, spine_sd=1.0, lateral_sd=1.5, twist_sd=3.0)
        self._label(body, Activity.STATIC)
        return self._finish("slouch", start, end, f"flexion {flexion:.0f} deg")

    def reach(
        self, duration_s: float | None = None, depth_deg: float | None = None, side: bool | None = None
    ) -> Scenario:
        """A brief forward reach or bend (a few seconds) from sitting or standing, and back."""
        start = self._t
        self._ensure("any")
        body = self._t
        depth = self._uniform(25.0, 60.0) if depth_deg is None else depth_deg
        hip_share = self._uniform(0.4, 0.7) if self._stance == "sit" else self._uniform(0.6, 0.85)
        sideways = bool(self.rng.random() < 0.4) if side is None else side
        lateral = self._normal(6.0, 12.0) if sideways else self._offset(1.0)
        twist = self._normal(15.0, 30.0) if sideways else self._offset(3.0)
        rise, fall = self._uniform(0.7, 1.3), self._uniform(0.7, 1.4)
        hold = self._uniform(0.3, 2.0)
        if duration_s is not None:
            hold = max(start + duration_s - body - 0.4 - rise - fall, 0.1)
        self._bump(
            body + 0.2,
            rise,
            hold,
            fall,
            hip=hip_share * depth,
            spine=(1 - hip_share) * depth,
            lateral=lateral,
            twist=twist,
        )
        self._label(body, Activity.MOVING)
        return self._finish("reach", start, body + 0.4 + rise + hold + fall, f"depth {depth:.0f} deg")

    def hip_hinge(
        self, duration_s: float | None = None, depth_deg: float | None = None, hold_s: float | None = None
    ) -> Scenario:
        """Standing hip hinge with a straight spine: both sensors tilt together, curvature unchanged."""
        start = self._t
        self._ensure("stand")
        body = self._t
        depth = self._uniform(30.0, 70.0) if depth_deg is None else depth_deg
        rise, fall = self._uniform(1.2, 2.0), self._uniform(1.2, 2.0)
        hold = self._uniform(3.0, 20.0) if hold_s is None else hold_s
        down = body + 1.0
        end = max(start + (duration_s or 0.0), down + rise + hold + fall + 1.0)
        self._set(body, 1.0, hip=0.0, lateral=0.0, twist=0.0, sway=1.4, breath=1.0, gait=0.0, stairs=0.0)
        self._bump(down, rise, hold, fall, hip=depth)
        self._label(body, Activity.STATIC)
        self._label(down, Activity.MOVING)
        self._label(down + rise, Activity.STATIC)
        self._label(down + rise + hold, Activity.MOVING)
        self._label(down + rise + hold + fall, Activity.STATIC)
        return self._finish("hip_hinge", start, end, f"depth {depth:.0f} deg, hold {hold:.0f} s")

    def stand(self, duration_s: float, flexion_deg: float | None = None) -> Scenario:
        """Standing still: postural sway and weight shifts."""
        start = self._t
        self._ensure("stand")
        body = self._t
        end = self._body_end(start, duration_s, 2.0)
        flexion = self._uniform(-2.0, 4.0) if flexion_deg is None else flexion_deg
        self._set(body, 1.5, spine=flexion, hip=0.0, lateral=self._offset(1.0), twist=self._offset(2.0))
        self._set(body, 1.5, sway=1.4, breath=1.0, gait=0.0, stairs=0.0)
        self._fidgets(
            body + 1.5, end, every_s=25.0, spine_sd=1.0, lateral_sd=2.0, twist_sd=3.0, long_hold_s=(2.0, 15.0)
        )
        self._label(body, Activity.STATIC)
        return self._finish("stand", start, end, f"flexion {flexion:.0f} deg")

    def walk(self, duration_s: float, step_hz: float | None = None, turns: bool = True) -> Scenario:
        """Level walking at 1.8–2.0 steps/s: step impacts, trunk oscillation, turns."""
        return self._gait("walk", duration_s, step_hz, turns, stairs=None)

    def stairs(self, duration_s: float, direction: str = "up", step_hz: float | None = None) -> Scenario:
        """Stair climbing (up or down): slower cadence, stronger impacts, turns at landings."""
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        return self._gait("stairs", duration_s, step_hz, True, stairs=direction)

    def _gait(
        self, kind: str, duration_s: float, step_hz: float | None, turns: bool, stairs: str | None
    ) -> Scenario:
        start = self._t
        self._ensure("stand")
        body = self._t
        end = self._body_end(start, duration_s, 8.0)
        if stairs is None:
            cadence = self._uniform(1.8, 2.0) if step_hz is None else step_hz
            lean_hip, lean_spine = self._uniform(1.0, 4.0), self._uniform(0.0, 4.0)
            envelope = "gait"
            intensity = self._uniform(0.85, 1.15)
        else:
            cadence = self._uniform(1.45, 1.7) if step_hz is None else step_hz
            lean_hip = self._uniform(6.0, 10.0) if stairs == "up" else self._uniform(2.0, 5.0)
            lean_spine = self._uniform(2.0, 6.0)
            envelope = "stairs"
            intensity = self._uniform(0.9, 1.1) if stairs == "up" else self._uniform(1.1, 1.3)
        self._set(body, 0.3, step_hz=cadence)
        self._set(body, 1.5, hip=lean_hip, spine=lean_spine, lateral=0.0, twist=0.0, sway=0.5, breath=1.0)
        self._set(body + 0.3, 1.5, **{envelope: intensity})
        # Cadence wanders a little during a walk.
        t = body + 3.0 + self._uniform(5.0, 15.0)
        while t + 4.0 < end - 2.0:
            self._set(t, 4.0, step_hz=cadence + self._normal(0.03, 0.06))
            t += 4.0 + self._uniform(8.0, 30.0)
        if turns:
            turn_sign = 1.0 if self.rng.random() < 0.5 else -1.0
            t = body + (self._uniform(6.0, 9.0) if stairs else self._uniform(5.0, 25.0))
            while t + 2.0 < end - 2.5:
                if stairs:
                    angle, duration = 180.0 * turn_sign, 1.6  # landing: same way round each flight
                else:
                    angle = float(self.rng.choice([-180.0, -90.0, -45.0, 45.0, 90.0, 180.0]))
                    duration = 0.8 + abs(angle) / 180.0
                self._set(t, duration, heading=self._level[HEADING] + angle)
                t += duration + (self._uniform(6.0, 9.0) if stairs else self._uniform(8.0, 40.0))
        self._set(end - 1.7, 1.5, **{envelope: 0.0})
        self._label(body, Activity.WALKING)
        detail = f"{cadence:.2f} steps/s" + (f", {stairs}" if stairs else "")
        return self._finish(kind, start, end, detail)

    def lie(self, duration_s: float, posture: str = "supine") -> Scenario:
        """Lying supine, prone, or on the left or right side (lying down or turning over first)."""
        if posture not in LYING_POSTURES:
            raise ValueError(f"posture must be one of {LYING_POSTURES}, got {posture!r}")
        start = self._t
        if self._stance == "off":
            self._put_on()
        if self._stance == "lie":
            if posture == _OPPOSITE[self._posture]:
                # Roll over through an intermediate posture, as people do (and a 180° blend
                # would be ambiguous).
                via = "supine" if posture in ("left", "right") else str(self.rng.choice(["left", "right"]))
                self._turn_over(via)
            if posture != self._posture:
                self._turn_over(posture)
        else:
            self._lie_down(posture)
        body = self._t
        end = self._body_end(start, duration_s, 2.0)
        self._fidgets(body + 2.0, end, every_s=120.0, spine_sd=1.0, lateral_sd=1.0, twist_sd=2.0)
        self._label(body, Activity.LYING)
        return self._finish("lie", start, end, posture)

    def off_body(self, duration_s: float, desk_up: Sequence[float] | None = None) -> Scenario:
        """Device taken off (hand-held handling) and left perfectly still on a desk.

        `desk_up` is the up vector in the (upper) sensor frame while on the desk; default a
        random resting face. The next worn segment starts by putting the device back on.
        """
        start = self._t
        end = self._body_end(start, duration_s, 12.0)
        if self._stance != "off":
            handling = 5.0
            n_sensors = 2 if self.two_sensors else 1
            base = np.array([self._uniform(-1.0, 1.0), self._uniform(-1.0, 1.0), 0.75])
            desk_q = tuple(self._desk_orientation(i, desk_up if i == 0 else None) for i in range(n_sensors))
            self._pieces.append(
                _Piece(
                    start,
                    handling,
                    "desk",
                    handling_deg=self._uniform(20.0, 40.0),
                    handling_axis=self._random_axis(),
                    desk_q=desk_q,
                    desk_position_m=tuple(base + np.array([0.12 * i, 0.0, 0.0]) for i in range(n_sensors)),
                    desk_sign=tuple(
                        _sign_towards(q, self._expected_body(i, self._posture)) for i, q in enumerate(desk_q)
                    ),
                )
            )
            # Out of sight on the desk, the body gets ready for putting the device back on.
            self._set(start + handling + 1.0, 2.0, up=STAND_HIP_HEIGHT_M, fwd=STAND_HIP_FORWARD_M, hip=0.0)
            self._set(start + handling + 1.0, 2.0, spine=0.0, lateral=0.0, twist=0.0, gait=0.0, stairs=0.0)
            self._stance = "off"
            self._posture = "desk"
        self._label(start, Activity.NOT_WORN, worn=False)
        return self._finish("off_body", start, end)

    # ----- rendering -------------------------------------------------------------------------

    def render(self, rate_hz: float = 52.0, duration_s: float | None = None) -> Recording:
        """Sample the timeline at `rate_hz` from t = 0 for `duration_s` (default: up to
        `stop_s`, else to the end of the last segment)."""
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        if duration_s is not None:
            duration = duration_s
        else:
            duration = self._t if self.stop_s is None else self.stop_s
        n = int(np.floor(duration * rate_hz + 1e-9))
        if n < 2:
            raise ValueError(f"nothing to render: {duration} s at {rate_hz} Hz is fewer than 2 samples")
        t_s = np.arange(n) / rate_hz
        n_sensors = 2 if self.two_sensors else 1
        noise_rng = np.random.default_rng([self.seed, 1])
        noise_fast = SmoothNoise(noise_rng, duration + 1.0, 1.5, 8)
        noise_slow = SmoothNoise(noise_rng, duration + 1.0, 12.0, 8)

        accel = [np.empty((n, 3)) for _ in range(n_sensors)]
        gyro = [np.empty((n, 3)) for _ in range(n_sensors)]
        up_sensor = [np.empty((n, 3)) for _ in range(n_sensors)]
        up_body = [np.empty((n, 3)) for _ in range(n_sensors)]
        for first in range(0, n, _CHUNK_SAMPLES):
            t = t_s[first : first + _CHUNK_SAMPLES]
            m = t.shape[0]
            times = np.concatenate((t - _DIFF_STEP_S, t, t + _DIFF_STEP_S))
            noise = 0.6 * noise_fast.evaluate(times) + 0.8 * noise_slow.evaluate(times)
            for sensor, (q_ws, q_wb, position) in enumerate(self._evaluate(times, noise, n_sensors)):
                before, now, after = slice(0, m), slice(m, 2 * m), slice(2 * m, 3 * m)
                # q⁻ ⊗ q⁺ written as |q⁻|² + q⁻* ⊗ (q⁺ − q⁻): exactly no rotation when the sensor
                # is still, and no cancellation error for slow motion.
                turn = quat.multiply(quat.conjugate(q_ws[before]), q_ws[after] - q_ws[before])
                turn[:, 0] += np.sum(q_ws[before] ** 2, axis=1)
                rows = slice(first, first + m)
                gyro[sensor][rows] = np.degrees(quat.to_rotvec(turn) / (2.0 * _DIFF_STEP_S))
                accel_m_s2 = (position[after] - 2.0 * position[now] + position[before]) / _DIFF_STEP_S**2
                accel[sensor][rows] = quat.rotate_into(q_ws[now], _UP + accel_m_s2 / GRAVITY_M_S2)
                up_sensor[sensor][rows] = quat.rotate_into(q_ws[now], np.broadcast_to(_UP, (m, 3)))
                up_body[sensor][rows] = quat.rotate_into(q_wb[now], np.broadcast_to(_UP, (m, 3)))

        label_starts = np.array([start for start, _, _ in self._labels])
        index = np.clip(np.searchsorted(label_starts, t_s, side="right") - 1, 0, None)
        activity = np.array([a for _, a, _ in self._labels], dtype=np.int64)[index]
        worn = np.array([w for _, _, w in self._labels], dtype=np.int64)[index]
        truth = _truth_columns(up_sensor, up_body, activity, worn, rate_hz)
        meta = recording.meta_from(
            {
                "scenario": self.name,
                "seed": self.seed,
                "held_out": str(self.held_out).lower(),
                "two_sensors": str(self.two_sensors).lower(),
                "mounting_offset_deg": self.mounting_offset_deg,
                "mounting_offset_deg_2": self.mounting_offset_deg_2,
                "generator": "emulator.scenarios 1",
            }
        )
        return Recording(t_s=t_s, accel_g=accel, gyro_dps=gyro, truth=truth, meta=meta)

    def _evaluate(self, t: Array, noise: Array, n_sensors: int) -> list[tuple[Array, Array, Array]]:
        """(q_ws, q_wb, position) of each sensor at the times t (any times, not only samples)."""
        w = self.wearer
        level = self._track.evaluate(t)
        sway = level[:, SWAY]
        hip = level[:, HIP] + sway * w.sway_hip_deg * noise[:, 0]
        spine = level[:, SPINE] + sway * w.sway_spine_deg * noise[:, 1]
        lateral = level[:, LATERAL] + sway * w.sway_lateral_deg * noise[:, 2]
        twist = level[:, TWIST] + sway * w.sway_twist_deg * noise[:, 3]
        hip_local = level[:, [FWD, LEFT, UP]] + (sway * w.sway_position_m)[:, None] * noise[:, 4:7]
        breath = level[:, BREATH] * w.breath_deg * np.sin(2 * np.pi * w.breath_hz * t + 0.5 * noise[:, 7])

        step_phase = 2 * np.pi * self._track.integral(t, STEP_HZ)
        gait_twist = np.zeros_like(t)
        for channel, shape in ((GAIT, w.walk), (STAIRS, w.stairs)):
            envelope = level[:, channel]
            if not np.any(envelope):
                continue
            pitch, roll, yaw = shape.angles_deg(step_phase)
            hip = hip + envelope * pitch
            lateral = lateral + envelope * roll
            gait_twist = gait_twist + envelope * yaw
            hip_local = hip_local + envelope[:, None] * shape.displacement_m(step_phase)

        heading = np.radians(level[:, HEADING])
        q_heading = quat.about_axis(2, heading)
        facing = quat.multiply(q_heading, Q_NEUTRAL)
        cos_h, sin_h = np.cos(heading), np.sin(heading)
        hip_world = np.column_stack(
            (
                cos_h * hip_local[:, 0] - sin_h * hip_local[:, 1],
                sin_h * hip_local[:, 0] + cos_h * hip_local[:, 1],
                hip_local[:, 2],
            )
        )

        posture_upper = _posture_quat(hip + spine + breath, lateral, twist + gait_twist)
        posture_lower = _posture_quat(
            hip + w.spine_share_lower * spine + 0.3 * breath,
            w.lateral_share_lower * lateral,
            w.twist_share_lower * twist - 0.5 * gait_twist,
        )

        # Pieces: the mode (upright / lying / desk) and the blend into it.
        pieces = self._piece_table()
        current = np.clip(np.searchsorted(pieces.starts, t, side="right") - 1, 0, None)
        previous = np.maximum(current - 1, 0)
        blend = pieces.blends[current]
        progress = np.divide(t - pieces.starts[current], blend, out=np.full_like(t, 2.0), where=blend > 0)
        weight = smoothstep(progress)
        # q_wb = facing ⊗ blend(q_mode) ⊗ q_posture (nlerp commutes with a common factor).
        mode_q = pieces.mode_q[current]
        changing = (weight < 1.0) & (pieces.modes[previous] != pieces.modes[current])
        if np.any(changing):
            mode_q[changing] = quat.nlerp(
                pieces.mode_q[previous[changing]], pieces.mode_q[current[changing]], weight[changing]
            )
        frame = quat.multiply(facing, mode_q)
        upper_body = quat.multiply(frame, posture_upper)
        lower_body = quat.multiply(frame, posture_lower)
        body_q = (upper_body, lower_body)
        # Kinematic chain: hip joint -> (lumbar spine) -> lower sensor level -> (thoracic spine)
        # -> upper sensor level; each sensor sits `tissue_m` behind the spine (body z).
        lumbar_top = hip_world + w.lumbar_m * quat.axis_x(lower_body)
        upper_position = (
            lumbar_top + w.thoracic_m * quat.axis_x(upper_body) + w.tissue_m * quat.axis_z(upper_body)
        )
        body_positions = [upper_position]
        if n_sensors == 2:
            body_positions.append(lumbar_top + w.tissue_m * quat.axis_z(lower_body))

        # Desk: weight of the desk pose (exactly 1 inside an off-body stretch, 0 when worn).
        is_desk = pieces.is_desk
        desk_weight = np.where(is_desk[current], weight, 0.0) + np.where(is_desk[previous], 1.0 - weight, 0.0)
        near_desk = desk_weight > 0.0
        desk_piece = np.where(is_desk[current], current, previous)[near_desk]
        handled = (progress > 0.0) & (progress < 1.0) & (pieces.handling_rad[current] > 0.0)
        wobble_angle = (
            pieces.handling_rad[current[handled]]
            * smooth_bump(progress[handled])
            * np.sin(3 * np.pi * progress[handled])
        )
        wobble = quat.from_rotvec(pieces.handling_axis[current[handled]] * wobble_angle[:, None])

        out: list[tuple[Array, Array, Array]] = []
        for sensor in range(n_sensors):
            q_wb = body_q[sensor].copy()
            position = body_positions[sensor].copy()
            if np.any(near_desk):
                weight_desk = desk_weight[near_desk]
                # Linear blend without per-sample sign alignment: the sign is fixed per transition
                # (desk_sign), so the path stays continuous even for a half-turn.
                desk_q = (
                    pieces.desk_q[sensor][desk_piece] * pieces.desk_sign[sensor][current[near_desk]][:, None]
                )
                w_col = weight_desk[:, None]
                q_wb[near_desk] = quat.normalize((1.0 - w_col) * q_wb[near_desk] + w_col * desk_q)
                position[near_desk] = (1.0 - weight_desk)[:, None] * position[near_desk] + weight_desk[
                    :, None
                ] * pieces.desk_position_m[sensor][desk_piece]
            if np.any(handled):
                q_wb[handled] = quat.multiply(q_wb[handled], wobble)
            q_ws = quat.multiply(q_wb, self._mounting(sensor))
            out.append((q_ws, body_q[sensor], position))
        return out

    def _piece_table(self) -> _PieceTable:
        n_sensors = 2 if self.two_sensors else 1
        pieces = self._pieces
        return _PieceTable(
            starts=np.array([p.start_s for p in pieces]),
            blends=np.array([p.blend_s for p in pieces]),
            modes=np.array([_MODES.index(p.mode) for p in pieces]),
            mode_q=np.array([_MODE_ROTATIONS[p.mode] for p in pieces]),
            is_desk=np.array([p.mode == "desk" for p in pieces]),
            handling_rad=np.radians([p.handling_deg for p in pieces]),
            handling_axis=np.array([p.handling_axis for p in pieces]),
            desk_q=[
                np.array([p.desk_q[i] if p.desk_q else quat.IDENTITY for p in pieces])
                for i in range(n_sensors)
            ],
            desk_sign=[
                np.array([p.desk_sign[i] if p.desk_sign else 1.0 for p in pieces]) for i in range(n_sensors)
            ],
            desk_position_m=[
                np.array([p.desk_position_m[i] if p.desk_position_m else np.zeros(3) for p in pieces])
                for i in range(n_sensors)
            ],
        )


@dataclass
class _PieceTable:
    """The pieces as arrays, for vectorised lookups."""

    starts: Array
    blends: Array
    modes: NDArray[np.int64]
    mode_q: Array
    is_desk: NDArray[np.bool_]
    handling_rad: Array
    handling_axis: Array
    desk_q: list[Array]
    desk_sign: list[Array]
    desk_position_m: list[Array]


def _posture_quat(flexion_deg: Array, lateral_deg: Array, twist_deg: Array) -> Array:
    """Body-frame posture rotation q_z(−lateral) ⊗ q_y(flexion) ⊗ q_x(twist), in closed form.

    With no twist the body-frame up vector is (cos f cos l, sin l, sin f cos l), so
    flexion_deg_from_up gives f and lateral_deg_from_up gives l exactly.
    """
    half = np.radians(0.5)
    cz, sz = np.cos(-half * lateral_deg), np.sin(-half * lateral_deg)
    cy, sy = np.cos(half * flexion_deg), np.sin(half * flexion_deg)
    cx, sx = np.cos(half * twist_deg), np.sin(half * twist_deg)
    return np.stack(
        (
            cz * cy * cx + sz * sy * sx,
            cz * cy * sx - sz * sy * cx,
            cz * sy * cx + sz * cy * sx,
            sz * cy * cx - cz * sy * sx,
        ),
        axis=-1,
    )


def _truth_columns(
    up_sensor: list[Array],
    up_body: list[Array],
    activity: NDArray[np.int64],
    worn: NDArray[np.int64],
    rate_hz: float,
) -> dict[str, NDArray[np.float64] | NDArray[np.int64]]:
    off = worn == 0
    truth: dict[str, NDArray[np.float64] | NDArray[np.int64]] = {}
    for sensor, up in enumerate(up_sensor):
        suffix = recording.sensor_suffix(sensor)
        for axis, name in enumerate("xyz"):
            truth[f"truth_up_{name}{suffix}"] = up[:, axis].copy()
    flexion = [np.where(off, np.nan, recording.flexion_deg_from_up(up)) for up in up_body]
    truth["truth_flexion_deg"] = flexion[0]
    if len(flexion) == 2:
        truth["truth_flexion_deg_2"] = flexion[1]
        # Wrapped to (-180, 180]: only matters lying on the side, where flexion is ill-defined.
        truth["truth_curvature_deg"] = 180.0 - np.mod(180.0 - (flexion[0] - flexion[1]), 360.0)
    truth["truth_lateral_deg"] = np.where(off, np.nan, recording.lateral_deg_from_up(up_body[0]))
    inclination = np.degrees(np.arccos(np.clip(up_body[0][:, 0], -1.0, 1.0)))
    truth["truth_inclination_deg"] = np.where(off, np.nan, inclination)
    truth["truth_activity"] = activity
    truth["truth_worn"] = worn
    truth["truth_slouch"] = recording.label_slouch_episodes(flexion[0], activity, worn, rate_hz)
    return truth


def _sign_towards(q: Array, reference: Array) -> float:
    """+1 or −1: the sign that puts q in the same hemisphere as `reference`."""
    return 1.0 if float(np.dot(q, reference)) >= 0.0 else -1.0


def _angles(values: Sequence[float], what: str) -> tuple[float, float, float]:
    angles = tuple(float(v) for v in values)
    if len(angles) != 3:
        raise ValueError(f"{what} needs 3 angles (x, y, z in degrees), got {values!r}")
    return angles[0], angles[1], angles[2]
