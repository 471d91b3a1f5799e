# The posture alert: a buzz when the wearer stays flexed forward, evaluated once a second.
#
# A *spell* is a run of seconds with flexion above threshold_deg throughout (every sample of
# the second) while the wearer is static (sitting or standing): walking, moving (reaching,
# getting up), lying and not wearing the device end it.  A spell that lasts hold_s fires an alert, once per spell:
#
#   - it buzzes (escalation level 0) unless it is suppressed: alerts disabled, quiet hours,
#     snoozed, within cooldown_s of the end of the last buzzed alert, or the day's cap reached;
#   - while open and buzzing, every escalate_s without correction buzzes the next, stronger
#     pattern, up to max_level;
#   - it closes as `corrected` when flexion falls below threshold_deg - release_deg (the
#     hysteresis: sitting up a little is not enough), or the wearer lies down; `snoozed` by the
#     button; `timed_out` after timeout_s, when the device is taken off, or when the next
#     spell fires; a suppressed alert is tracked the same way and closes as `suppressed`.
#
# Each alert becomes one ALERT event (start, duration, peak flexion, seconds to correct,
# escalation level, outcome), so the host sees every sustained slouch, buzzed or not.
from micropython import const

import protocol

_DAY_S = 86400


class AlertSettings:
    """Alert rules (config keys in brackets).

    enabled           buzz at all; False still logs every alert as suppressed [alert_enabled]
    threshold_deg     flexion beyond neutral that starts a spell, deg; 20 [alert_threshold_deg]
    hold_s            spell length that fires the alert, s; 30 [alert_hold_s]
    release_deg       hysteresis: corrected below threshold - release, deg; 5 [alert_release_deg]
    cooldown_s        no new buzz this long after a buzzed alert ended, s; 300 [alert_cooldown_s]
    snooze_s          the button silences alerts this long, s; 1800 [alert_snooze_s]
    escalate_s        an uncorrected alert escalates after this, s; 15 [alert_escalate_s]
    max_level         highest escalation level (patterns 0..2); 2 [alert_max_level]
    timeout_s         an alert still uncorrected after this is given up, s; 120 [alert_timeout_s]
    daily_cap         buzzed alerts per local day at most; 20 [alert_daily_cap]
    quiet_start_min, quiet_end_min   quiet hours, minutes of the local day; equal = none;
                      may wrap midnight (1320, 420 = 22:00-07:00) [quiet_start_min, quiet_end_min]
    tz_offset_min     local time minus UTC, minutes; 0 [tz_offset_min]
    """

    def __init__(
        self,
        enabled=True,
        threshold_deg=20,
        hold_s=30,
        release_deg=5,
        cooldown_s=300,
        snooze_s=1800,
        escalate_s=15,
        max_level=2,
        timeout_s=120,
        daily_cap=20,
        quiet_start_min=0,
        quiet_end_min=0,
        tz_offset_min=0,
    ):
        self.enabled = enabled
        self.threshold_deg = threshold_deg
        self.hold_s = hold_s
        self.release_deg = release_deg
        self.cooldown_s = cooldown_s
        self.snooze_s = snooze_s
        self.escalate_s = escalate_s
        self.max_level = max_level
        self.timeout_s = timeout_s
        self.daily_cap = daily_cap
        self.quiet_start_min = quiet_start_min
        self.quiet_end_min = quiet_end_min
        self.tz_offset_min = tz_offset_min

    @classmethod
    def from_config(cls, cfg):
        s = cls()
        for name in (
            "enabled",
            "threshold_deg",
            "hold_s",
            "release_deg",
            "cooldown_s",
            "snooze_s",
            "escalate_s",
            "max_level",
            "timeout_s",
            "daily_cap",
        ):
            key = "alert_" + name
            if key in cfg:
                setattr(s, name, cfg[key])
        for name in ("quiet_start_min", "quiet_end_min", "tz_offset_min"):
            if name in cfg:
                setattr(s, name, cfg[name])
        return s


_NONE = const(-1)


class Alert:
    """Posture alert state machine (per second).

    haptic   a haptic.Haptic (or None: silent); sink: append(rtype, payload) for ALERT events

    update(now_s, activity, flexion_ddeg, min_ddeg, peak_ddeg) -> 1 when an alert buzzed for
    the first time this second (the minute summary's alert count), else 0.  The flexion of the
    second: mean, lowest and highest sample (posture.Posture after end_second).
    snooze(now_s): the button.  close(now_s): before a reboot, log the open alert.
    """

    def __init__(self, settings=None, haptic=None, sink=None, patterns=None):
        self.settings = settings if settings is not None else AlertSettings()
        self.haptic = haptic
        self.sink = sink
        if patterns is None:
            from haptic import PATTERNS as patterns
        self.patterns = patterns
        self.spell_s = 0  # seconds of the current spell
        self._spell_peak = 0
        self._spell_fired = False
        self.open = False
        self._start = 0
        self._peak = 0
        self._level = 0
        self._buzzing = False
        self._next_escalation = 0
        self._cooldown_until = 0
        self._snooze_until = 0
        self._day = _NONE
        self.buzzes_today = 0
        self.fired = 0  # alerts fired since boot (buzzed or suppressed)

    def update(self, now_s, activity, flexion_ddeg, min_ddeg, peak_ddeg):
        s = self.settings
        threshold = 10 * s.threshold_deg
        buzzed = 0
        # ---- the open alert
        if self.open:
            if peak_ddeg > self._peak:
                self._peak = peak_ddeg
            elapsed = now_s - self._start
            if activity == protocol.ACTIVITY_NOT_WORN:
                self._close(now_s, protocol.OUTCOME_TIMED_OUT, None)
            elif activity == protocol.ACTIVITY_LYING or flexion_ddeg < threshold - 10 * s.release_deg:
                self._close(now_s, protocol.OUTCOME_CORRECTED, elapsed)
            elif elapsed >= s.timeout_s:
                self._close(now_s, protocol.OUTCOME_TIMED_OUT, None)
            elif self._buzzing and self._level < s.max_level and elapsed >= self._next_escalation:
                self._level += 1
                self._next_escalation += s.escalate_s
                self._buzz()
        # ---- the spell
        if activity == protocol.ACTIVITY_STATIC and min_ddeg > threshold:
            if self.spell_s == 0:
                self._spell_peak = peak_ddeg
                self._spell_fired = False
            elif peak_ddeg > self._spell_peak:
                self._spell_peak = peak_ddeg
            self.spell_s += 1
            if self.spell_s >= s.hold_s and not self._spell_fired:
                self._spell_fired = True
                if self.open:
                    self._close(now_s, protocol.OUTCOME_TIMED_OUT, None)
                buzzed = self._fire(now_s)
        else:
            self.spell_s = 0
        return buzzed

    def close(self, now_s):
        """Log an open alert now (before a reboot or power-off) as timed out."""
        if self.open:
            self._close(now_s, protocol.OUTCOME_TIMED_OUT, None)

    def snooze(self, now_s):
        """Silence alerts for snooze_s; closes a buzzing alert as snoozed."""
        self._snooze_until = now_s + self.settings.snooze_s
        if self.open and self._buzzing:
            self._close(now_s, protocol.OUTCOME_SNOOZED, None)

    def suppressed(self, now_s):
        """Why no buzz now: None, or 'disabled', 'quiet', 'snoozed', 'cooldown', 'cap'."""
        s = self.settings
        if not s.enabled:
            return "disabled"
        local_s = now_s + 60 * s.tz_offset_min
        minute = (local_s // 60) % 1440
        a, b = s.quiet_start_min, s.quiet_end_min
        if a != b and ((a < b and a <= minute < b) or (a > b and (minute >= a or minute < b))):
            return "quiet"
        if now_s < self._snooze_until:
            return "snoozed"
        if now_s < self._cooldown_until:
            return "cooldown"
        day = local_s // _DAY_S
        if day != self._day:
            self._day = day
            self.buzzes_today = 0
        if self.buzzes_today >= s.daily_cap:
            return "cap"
        return None

    def _fire(self, now_s):
        self.open = True
        self.fired += 1
        self._start = now_s
        self._peak = self._spell_peak
        self._level = 0
        self._next_escalation = self.settings.escalate_s
        self._buzzing = self.suppressed(now_s) is None
        if self._buzzing:
            self.buzzes_today += 1
            self._buzz()
            return 1
        return 0

    def _buzz(self):
        if self.haptic is not None:
            level = self._level if self._level < len(self.patterns) else len(self.patterns) - 1
            self.haptic.play(self.patterns[level])

    def _close(self, now_s, outcome, time_to_correct_s):
        self.open = False
        if self._buzzing:
            self._cooldown_until = now_s + self.settings.cooldown_s
            if self.haptic is not None:
                self.haptic.stop()
        else:
            outcome = protocol.OUTCOME_SUPPRESSED
        self._buzzing = False
        if self.sink is not None:
            duration = now_s - self._start
            self.sink.append(
                protocol.ALERT,
                protocol.encode_event(
                    protocol.ALERT,
                    self._start,
                    duration if duration < 0xFFFF else 0xFFFF,
                    _clamp_ddeg(self._peak),
                    None if time_to_correct_s is None else min(time_to_correct_s, 0xFFFE),
                    self._level,
                    outcome,
                ),
            )


def _clamp_ddeg(v):
    return -1800 if v < -1800 else (1800 if v > 1800 else v)
