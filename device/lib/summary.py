# The minute summary (the unit of exposure) and the posture bouts.
#
# Per sample (viper, allocation-free): each sample's flexion, inclination and lateral-bend
# bins (protocol.ANGLE_EDGES_DEG, LATERAL_EDGES_DEG) are counted into a per-second scratch
# histogram.  Per second: when the wearer wore the device and was not lying, the scratch
# counts join the minute's; activity, worn time, angular velocity, curvature and the posture
# bout are counted per second.  Lying seconds are left out of the posture histograms and bouts
# (trunk angles mean nothing lying down, and a prone minute would read as 90 deg of flexion),
# as ActiPASS leaves lying out of trunk inclination; the host still sees them as lying seconds.
#
# At the end of each wall-clock minute (clock.unix_s(), minute-aligned) the summary is
# encoded with protocol.encode_minute2 (MINUTE2) and appended to the log.  Minutes without a worn second
# are not written: no record means not worn (or not running), which the host treats the same,
# and a week of nights off-body then costs nothing (BOOT and BATTERY events still show the
# device was alive).  Every second weighs the same in the histograms, however many samples
# the sensor delivered in it; sample counts become whole seconds by the largest-remainder rule,
# so a histogram always adds up to the posture seconds it covers.
#
# A BOUT event is logged for every continuous spell of seconds with mean flexion above
# protocol.BOUT_THRESHOLD_DEG (worn, not lying) that lasted longer than BOUT_MIN_S.
import sys
from array import array

import protocol

if sys.implementation.name == "micropython":
    import micropython
    from micropython import const  # pyright: ignore[reportAssignmentType]
else:  # CPython (tests, host tools): the viper kernels run as plain Python
    from viper_cpython import const, micropython, ptr16, ptr32

_BINS = const(45)  # 20 flexion, 20 inclination, 5 lateral
_INCL = const(20)
_LAT = const(40)
_MINUTE_S = const(60)


@micropython.viper
def _bin_kernel(angles, hist, span):
    o = ptr16(angles)
    h = ptr16(hist)
    sp = ptr32(span)
    for i in range(int(sp[0]), int(sp[1])):
        for k in range(2):
            v = (o[3 * i + 2 * k] ^ 0x8000) - 0x8000  # k = 0: flexion, 1: inclination
            if v < 0:
                b = 0
            elif v >= 900:
                b = 19
            else:
                b = 1 + v // 50
            b += 20 * k
            h[b] = h[b] + 1
        v = (o[3 * i + 1] ^ 0x8000) - 0x8000
        if v < -200:
            b = _LAT
        elif v < -100:
            b = _LAT + 1
        elif v < 100:
            b = _LAT + 2
        elif v < 200:
            b = _LAT + 3
        else:
            b = _LAT + 4
        h[b] = h[b] + 1


@micropython.viper
def _merge_kernel(second, minute, keep: int, odr: int):
    # Add the second's counts to the minute's, scaled to odr samples: every second weighs the
    # same, however many samples the sensor delivered in it.  Clear the second.
    s = ptr16(second)
    m = ptr16(minute)
    n = 0
    for i in range(20):
        n += s[i]
    if keep and n:
        for i in range(_BINS):
            m[i] = m[i] + (s[i] * odr + (n >> 1)) // n
    for i in range(_BINS):
        s[i] = 0


class Summary:
    """Minute summaries and posture bouts of one wearer.

    odr_hz      samples per second (the per-sample counts become seconds)
    sink        append(rtype, payload): the log store
    Per batch:  add_samples(angles, start, stop)  with a posture.Posture's `angles`
    Per second: add_second(now_s, activity, posture, velocity_ddps, alerts=0, curvature_ddeg=None)
    flush():    write the open minute now (before a reboot or power-off)
    """

    def __init__(self, odr_hz, sink):
        self.odr_hz = odr_hz
        self.sink = sink
        self._second = array("H", bytes(2 * _BINS))
        self._minute = array("H", bytes(2 * _BINS))
        self._span = array("i", (0, 0))
        self.minute_index = None  # unix minute being summed
        self.minutes_written = 0
        self.bouts_written = 0
        self._bout_s = 0
        self._bout_start = 0
        self._bout_sum = 0
        self._bout_peak = 0
        self._reset_minute()

    def _reset_minute(self):
        self.worn_s = 0
        self.posture_s = 0  # worn, not lying: the seconds the histograms cover
        self.activity_s = [0, 0, 0, 0, 0]
        self.alert_count = 0
        self.longest_bout_s = 0
        self._run_s = 0  # the current spell's seconds inside this minute
        self._velocity_sum = 0
        self._curvature_sum = 0
        self._curvature_n = 0
        m = self._minute
        for i in range(_BINS):
            m[i] = 0

    # ---- per sample ---------------------------------------------------------------------
    def add_samples(self, angles, start, stop):
        """Count samples start..stop-1 of `angles` (flexion, lateral, inclination per sample)."""
        span = self._span
        span[0] = start
        span[1] = stop
        _bin_kernel(angles, self._second, span)

    # ---- per second ---------------------------------------------------------------------
    def add_second(self, now_s, activity, posture, velocity_ddps, alerts=0, curvature_ddeg=None):
        """Close one second that ended at unix time now_s.

        activity: protocol.ACTIVITY_*; posture: the upper sensor's Posture after end_second
        (flexion_ddeg, flexion_peak_ddeg); velocity_ddps: mean trunk angular speed;
        alerts: alerts that buzzed this second; curvature_ddeg: upper minus lower flexion."""
        minute = (now_s - 1) // 60
        if self.minute_index is None:
            self.minute_index = minute
        elif minute != self.minute_index:
            self.flush()
            self.minute_index = minute
        worn = activity != protocol.ACTIVITY_NOT_WORN
        upright = worn and activity != protocol.ACTIVITY_LYING
        _merge_kernel(self._second, self._minute, 1 if upright else 0, self.odr_hz)
        self.activity_s[activity] += 1
        self.alert_count += alerts
        if worn:
            self.worn_s += 1
            self._velocity_sum += velocity_ddps
        if upright:
            self.posture_s += 1
            if curvature_ddeg is not None:
                self._curvature_sum += curvature_ddeg
                self._curvature_n += 1
        # posture bout
        flexion = posture.flexion_ddeg
        if upright and flexion > 10 * protocol.BOUT_THRESHOLD_DEG:
            if self._bout_s == 0:
                self._bout_start = now_s - 1
                self._bout_sum = 0
                self._bout_peak = posture.flexion_peak_ddeg
            elif posture.flexion_peak_ddeg > self._bout_peak:
                self._bout_peak = posture.flexion_peak_ddeg
            self._bout_s += 1
            self._bout_sum += flexion
            self._run_s += 1
            if self._run_s > self.longest_bout_s:
                self.longest_bout_s = self._run_s
        else:
            self._end_bout()

    def _end_bout(self):
        n = self._bout_s
        if n > protocol.BOUT_MIN_S:
            peak = self._bout_peak
            self.sink.append(
                protocol.BOUT,
                protocol.encode_event(
                    protocol.BOUT,
                    self._bout_start,
                    n if n < 0xFFFF else 0xFFFF,
                    (2 * self._bout_sum + n) // (2 * n),
                    peak if peak < 1800 else 1800,
                ),
            )
            self.bouts_written += 1
        self._bout_s = 0
        self._run_s = 0

    # ---- per minute ---------------------------------------------------------------------
    def flush(self):
        """Write the minute being summed (if it had a worn second) and start a new one."""
        if self.minute_index is None:
            return
        if self.worn_s:
            self._write()
        self._reset_minute()

    def _write(self):
        minute = self.minute_index
        if minute is None:
            return
        activity = _cap_list(self.activity_s)
        # worn and posture seconds from the (capped) activity seconds, so MINUTE2 can leave
        # them out: worn = all but not_worn, posture = worn but lying
        worn_s = 0
        for v in activity:
            worn_s += v
        worn_s -= activity[protocol.ACTIVITY_NOT_WORN]
        posture_s = worn_s - activity[protocol.ACTIVITY_LYING]
        m = self._minute
        flexion = _seconds(m, 0, 20, posture_s)
        inclination = _seconds(m, _INCL, 20, posture_s)
        lateral = _seconds(m, _LAT, 5, posture_s)
        worn = self.worn_s
        fields = (
            minute * 60,
            worn_s,
            activity,
            lateral,
            flexion,
            inclination,
            self.alert_count if self.alert_count < 255 else 255,
            _cap(self.longest_bout_s),
            (2 * self._velocity_sum + worn) // (2 * worn),
            None if not self._curvature_n else _mean_ddeg(self._curvature_sum, self._curvature_n),
        )
        try:
            rtype = protocol.MINUTE2
            payload = protocol.encode_minute2(*fields)
        except protocol.ProtocolError:
            # a histogram without samples behind its seconds: the layout that stores everything
            rtype = protocol.MINUTE
            payload = protocol.encode_minute(*fields)
        self.sink.append(rtype, payload)
        self.minutes_written += 1


def _cap(v):
    return v if v < _MINUTE_S else _MINUTE_S


def _cap_list(values):
    # Seconds are counted by the IMU's clock, minutes by the RTC: a minute can hold 61.
    out = list(values)
    while sum(out) > _MINUTE_S:
        out[out.index(max(out))] -= 1
    return out


def _seconds(counts, first, nbins, seconds):
    """Sample counts counts[first:first+nbins] as whole seconds adding up to `seconds`
    (largest remainder)."""
    total = 0
    for i in range(nbins):
        total += counts[first + i]
    out = [0] * nbins
    if total == 0 or seconds == 0:
        return out
    remainders = []
    given = 0
    for i in range(nbins):
        q, r = divmod(counts[first + i] * seconds, total)
        out[i] = q
        given += q
        remainders.append((r, i))
    remainders.sort(reverse=True)
    for k in range(seconds - given):
        out[remainders[k][1]] += 1
    return out


def _mean_ddeg(total, n):
    v = (2 * total + n) // (2 * n)
    return -1800 if v < -1800 else (1800 if v > 1800 else v)
