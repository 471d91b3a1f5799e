# MicroPython's `esp32` module for the emulated board: the wake sources light sleep obeys.
#
# On the chip a light sleep ends at its timer or at a configured wake source; a GPIO that is
# not one does not wake the CPU.  Only EXT0 (one RTC GPIO at a level) is emulated: it is what
# the firmware uses for its button.
import vboard

WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True

# The ESP32's RTC GPIOs: only these can be EXT0 wake sources.
_RTC_GPIOS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)


def wake_on_ext0(pin, level):
    if pin is None:
        vboard.state["ext0"] = None
        return
    pin_id = pin.id if hasattr(pin, "id") else int(pin)
    if pin_id not in _RTC_GPIOS:
        raise ValueError("invalid pin")
    vboard.state["ext0"] = (pin_id, 1 if level else 0)
