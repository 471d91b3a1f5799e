# The MicroPython half of the virtual serial board (host/emulator/virtual_board.py).
#
#   MICROPYPATH=host/emulator/mpy:.frozen POSTURE_BOARD=board.json \
#       POSTURE_VB_MARKER=... micropython rawrepl_board.py
#
# One persistent `micropython` process: it builds the emulated board from the board file
# (IMU models on the I2C bus, pins, ADC), mounts the board's flash folder at '/' and then
# executes what the CPython half hands it, the way MicroPython's raw REPL executes it:
# stdout, then b"\x04", then the traceback, then b"\x04".  Two markers of the session
# (MARKER + "s\x07" when code starts running, MARKER + "d\x07" when the command is over)
# tell the CPython half when a Ctrl-C may interrupt and when to show the prompt.  Ctrl-C from the serial port arrives here as SIGINT, which the unix
# port turns into KeyboardInterrupt in the running code, as a board does.
#
# Commands on stdin, one header line each:
#   "E <n>\n" + n bytes   execute (raw REPL)
#   "F <n>\n" + n bytes   execute one line of the friendly REPL (expressions are printed)
#   "R\n"                 soft reset: forget the firmware's modules and globals, run /boot.py
import asyncio  # noqa: F401  (frozen; resident before the flash is mounted over '/')
import gc
import json  # noqa: F401
import os
import select  # noqa: F401
import sys
import time  # noqa: F401

import bluetooth  # noqa: F401  (the board's radio, as launch.py has it)
import esp32  # noqa: F401  (the wake sources light sleep obeys)
import lsm6ds_model  # noqa: F401
import machine
import stimulus  # noqa: F401
import vboard
import vclock

_ENOSPC = 28  # errno.ENOSPC
_BLOCK = 512

# What the flash holds: {"limit": bytes or 0 (the host's disk), "used": bytes}.
_flash = {"limit": 0, "used": 0}


def _du(vfs, path):
    total = 0
    for entry in vfs.ilistdir(path):
        name = entry[0]
        full = path.rstrip("/") + "/" + name
        if entry[1] == 0x4000:
            total += _du(vfs, full)
        else:
            total += vfs.stat(full)[6]
    return total


class _CountingFile:
    """A file opened for writing on a flash of limited size: a write that does not fit
    raises OSError(ENOSPC) as LittleFS does, after writing what fitted."""

    def __init__(self, f, start_size):
        self._f = f
        self._size = start_size

    def write(self, data):
        n = len(data)
        room = _flash["limit"] - _flash["used"]
        if n > room:
            if room > 0:
                self._f.write(data[:room])
                _flash["used"] += room
            raise OSError(_ENOSPC)
        _flash["used"] += n
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self._f.close()

    def __iter__(self):
        return iter(self._f)


class SizedVfs:
    """VfsPosix with the sizes a board reports: ilistdir gives (name, type, inode, size)
    (VfsPosix leaves the size out), and an optional flash size that writes respect."""

    def __init__(self, root, limit_bytes=0):
        self.root = root
        self.vfs = os.VfsPosix(root)
        _flash["limit"] = limit_bytes

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def ilistdir(self, path):
        base = path if path.endswith("/") else path + "/"
        for entry in self.vfs.ilistdir(path):
            size = 0
            if entry[1] != 0x4000:
                try:
                    size = self.vfs.stat(base + entry[0])[6]
                except OSError:
                    pass
            yield (entry[0], entry[1], entry[2], size)

    def open(self, path, mode):
        if _flash["limit"] and ("w" in mode or "a" in mode or "+" in mode):
            _flash["used"] = _du(self.vfs, "/")
            start = 0
            if "a" in mode or "+" in mode:
                try:
                    start = self.vfs.stat(path)[6]
                except OSError:
                    pass
            else:
                try:
                    _flash["used"] -= self.vfs.stat(path)[6]  # truncated on open
                except OSError:
                    pass
            return _CountingFile(self.vfs.open(path, mode), start)
        return self.vfs.open(path, mode)

    def rename(self, old, new):
        # VfsPosix.rename mishandles absolute paths (ENOENT): rename relative to the root.
        cwd = self.vfs.getcwd() or "/"
        old = self._absolute(old, cwd)
        new = self._absolute(new, cwd)
        self.vfs.chdir("/")
        try:
            self.vfs.rename(old[1:], new[1:])
        finally:
            self.vfs.chdir(cwd)

    def _absolute(self, path, cwd):
        if path.startswith("/"):
            return path
        return cwd.rstrip("/") + "/" + path

    def statvfs(self, path):
        if not _flash["limit"]:
            return self.vfs.statvfs(path)
        used = _du(self.vfs, "/")
        blocks = _flash["limit"] // _BLOCK
        free = max(0, (_flash["limit"] - used) // _BLOCK)
        return (_BLOCK, _BLOCK, blocks, free, free, 0, 0, 0, 0, 255)

    def __getattr__(self, name):
        return getattr(self.vfs, name)


def set_flash_bytes(limit_bytes):
    """Change the emulated flash size (0: as large as the host's disk)."""
    _flash["limit"] = int(limit_bytes)


def run_main(seconds):
    """Boot the firmware on this board as a power-on would: run /boot.py and /main.py for
    ``seconds`` of virtual time (rebooting after machine.reset() or a watchdog reset, as
    the board would), then power the board off and back to the REPL.  Returns the virtual
    time the firmware ran, in ms."""
    start_us = vclock.now_us()
    vclock.power_off_at_us(start_us + int(seconds * 1000000))
    try:
        while True:
            try:
                _boot_firmware()
                # main.py returned: the board idles at the REPL until the power goes.
                vclock.advance_us(int(seconds * 1000000) + 1)
            except vboard.Reset as r:
                vboard.state["reset_cause"] = r.cause
                machine._after_reset()
                _forget_firmware_modules()
    except vclock.PowerOff:
        pass
    finally:
        vclock.power_off_at_us(-1)
        machine._after_reset()
        _forget_firmware_modules()
    return (vclock.now_us() - start_us) // 1000


def _boot_firmware():
    g = {"__name__": "__main__"}
    for path in ("/boot.py", "/main.py"):
        try:
            with open(path) as f:
                code = f.read()
        except OSError:
            continue
        g["__file__"] = path
        exec(code, g)


_state = {"resident": None, "globals": None, "started": b"", "done": b""}


def _forget_firmware_modules():
    resident = _state["resident"]
    for name in list(sys.modules):
        if name not in resident:
            del sys.modules[name]


def _out(data):
    sys.stdout.buffer.write(data)


def _traceback(e):
    # sys.print_exception writes text; a board's traceback names the file "<stdin>".
    import io

    buf = io.StringIO()
    sys.print_exception(e, buf)
    return buf.getvalue().encode()


def _started():
    # From here on a Ctrl-C may interrupt (the CPython half sends SIGINT only after this).
    _out(_state["started"])


def _soft_reset():
    _forget_firmware_modules()
    machine._after_reset()
    _state["globals"] = {"__name__": "__main__"}
    try:
        os.chdir("/")
    except OSError:
        pass
    gc.collect()
    try:
        with open("/boot.py") as f:
            code = f.read()
    except OSError:
        return b""
    _started()
    try:
        exec(code, _state["globals"])
    except BaseException as e:  # noqa: B036  (boot.py failed: a board prints it and carries on)
        return _traceback(e)
    return b""


def _execute(code, friendly):
    """Run ``code``; returns the traceback (b"" when it ran to the end)."""
    g = _state["globals"]
    _started()
    try:
        if friendly:
            try:
                value = eval(code, g)
            except SyntaxError:
                exec(code, g)
            else:
                if value is not None:
                    print(repr(value))
        else:
            exec(code, g)
    except SystemExit:
        pass
    except vboard.Reset:
        return _soft_reset()
    except BaseException as e:  # noqa: B036  (KeyboardInterrupt too, as a board reports it)
        return _traceback(e)
    return b""


def _read(n):
    while True:
        try:
            return sys.stdin.buffer.read(n)
        except KeyboardInterrupt:
            # A late Ctrl-C (the code it was meant for has finished): read again.
            pass


def _read_line():
    line = b""
    while not line.endswith(b"\n"):
        c = _read(1)
        if not c:
            raise EOFError()
        line += c
    return line


def _read_exact(n):
    data = b""
    while len(data) < n:
        chunk = _read(n - len(data))
        if not chunk:
            raise EOFError()
        data += chunk
    return data


def _step():
    words = _read_line().split()
    if not words:
        return
    cmd = words[0]
    code = _read_exact(int(words[1])) if cmd in (b"E", b"F") else b""
    err = b""
    try:
        if cmd == b"R":
            err = _soft_reset()
        elif cmd == b"E":
            err = b"\x04" + _execute(code.decode(), False) + b"\x04"
        elif cmd == b"F":
            err = _execute(code.decode(), True)
    except KeyboardInterrupt as e:
        # Ctrl-C landed between the code's end and here: report it as the board would.
        err = b"\x04" + _traceback(e) + b"\x04" if cmd == b"E" else _traceback(e)
    _finish(err)


def _finish(tail):
    # The command's last output and the done marker, in one write (no Ctrl-C is sent
    # once the marker is out; one that arrives just before it is ignored).
    data = tail + _state["done"]
    while True:
        try:
            _out(data)
            return
        except KeyboardInterrupt:
            pass


def main():
    spec = vboard.load(os.getenv("POSTURE_BOARD"))
    marker = os.getenv("POSTURE_VB_MARKER").encode()
    _state["started"] = marker + b"s\x07"
    _state["done"] = marker + b"d\x07"
    _state["resident"] = set(sys.modules)
    _state["resident"].add("__main__")
    os.mount(SizedVfs(spec["flash_dir"], spec.get("flash_bytes", 0) or 0), "/")
    os.chdir("/")
    sys.path[:] = ["", "/lib", ".frozen"]
    _finish(_soft_reset())  # ready
    while True:
        try:
            _step()
        except KeyboardInterrupt:
            continue
        except EOFError:
            break


if __name__ == "__main__":
    # Run as the module, not as __main__, so that code on the board that imports
    # rawrepl_board (set_flash_bytes, run_main) reaches this very state.
    import rawrepl_board

    rawrepl_board.main()
