"""The firmware's LSM6DS driver against the register-level model on the emulated I2C bus.

Snippets run in the real micropython (viper unpacking) and in CPython (the plain-Python
path) and must print the same thing.
"""

from __future__ import annotations

import ast

from both import run_both

VARIANTS = ("LSM6DS3", "LSM6DS3TR-C", "LSM6DSO", "LSM6DSOX", "ISM330DHCX")

PRELUDE = """
import struct, vclock, vboard, machine, stimulus, lsm6ds_model, lsm6ds
VARIANTS = ("LSM6DS3", "LSM6DS3TR-C", "LSM6DSO", "LSM6DSOX", "ISM330DHCX")
MOTION = (0.5, -0.25, 0.75, 0.4, -0.7, 0.1)  # accel in units of FS/2, gyro in units of FS

def board_with(devices, noise=False):
    # devices: {addr: model or (variant, values)}; returns the I2C bus the firmware opens
    vclock.reset()
    vboard.reset_all()
    models = {}
    for addr, dev in devices.items():
        if isinstance(dev, tuple):
            dev = lsm6ds_model.LSM6DSModel(dev[0], stimulus.ConstantSource(dev[1]), noise=noise)
        vboard.attach_i2c(0, addr, dev)
        models[addr] = dev
    return machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21), freq=400000), models

def motion(accel_fs_g, gyro_fs_dps):
    return tuple(MOTION[i] * accel_fs_g / 2 for i in range(3)) + tuple(MOTION[i] * gyro_fs_dps for i in range(3, 6))

def samples(buf, n):
    return [struct.unpack_from("<6h", buf, 12 * i) for i in range(n)]
"""


def both(code: str, tmp_path) -> str:
    return run_both(PRELUDE + code, tmp_path)


def _raw(value: float, micro_per_lsb: int) -> int:
    return max(-32768, min(32767, round(value * 1e6 / micro_per_lsb)))


UG = {2: 61, 4: 122, 8: 244, 16: 488}
UDPS = {125: 4375, 250: 8750, 500: 17500, 1000: 35000, 2000: 70000, 4000: 140000}
MOTION = (0.5, -0.25, 0.75, 0.4, -0.7, 0.1)


def _expected_sample(accel_fs_g: int, gyro_fs_dps: int) -> tuple[int, ...]:
    a = tuple(_raw(MOTION[i] * accel_fs_g / 2, UG[accel_fs_g]) for i in range(3))
    g = tuple(_raw(MOTION[i] * gyro_fs_dps, UDPS[gyro_fs_dps]) for i in range(3, 6))
    return a + g


def test_driver_detects_every_variant_by_who_am_i(tmp_path):
    out = both(
        """
for v in VARIANTS:
    i2c, _ = board_with({0x6A: (v, (0, 0, 1, 0, 0, 0))})
    imu = lsm6ds.LSM6DS(i2c)
    print(v, imu.variant, hex(imu.who_am_i))
""",
        tmp_path,
    )
    assert out.splitlines() == [
        "LSM6DS3 LSM6DS3 0x69",
        "LSM6DS3TR-C LSM6DS3TR-C 0x6a",
        # WHO_AM_I 0x6C is the LSM6DSO or the LSM6DSOX; the driver treats them alike.
        "LSM6DSO LSM6DSO 0x6c",
        "LSM6DSOX LSM6DSO 0x6c",
        "ISM330DHCX ISM330DHCX 0x6b",
    ]


def test_one_second_at_52_hz_yields_52_exact_samples_for_every_variant_and_full_scale(tmp_path):
    out = both(
        """
buf = bytearray(12 * 64)
for v in VARIANTS:
    for afs in (2, 4, 8, 16):
        for gfs in (125, 250, 500, 1000, 2000, 4000):
            if gfs == 4000 and v != "ISM330DHCX":
                continue
            i2c, _ = board_with({0x6A: (v, motion(afs, gfs))})
            imu = lsm6ds.LSM6DS(i2c)
            imu.start(odr_hz=52, accel_fs_g=afs, gyro_fs_dps=gfs)
            vclock.advance_us(1000000)
            n = imu.read_fifo(buf)
            got = set(samples(buf, n))
            print(v, afs, gfs, imu.odr_hz, imu.accel_ug_per_lsb, imu.gyro_udps_per_lsb, n, sorted(got), imu.overflows)
""",
        tmp_path,
    )
    lines = out.splitlines()
    assert len(lines) == 5 * 4 * 5 + 4
    for line in lines:
        v, afs, gfs, odr, ug, udps, rest = line.split(" ", 6)
        afs_i, gfs_i = int(afs), int(gfs)
        assert (odr, int(ug), int(udps)) == ("52", UG[afs_i], UDPS[gfs_i]), line
        n, got, overflows = (
            rest.split(" ", 1)[0],
            rest.split(" ", 1)[1].rsplit(" ", 1)[0],
            rest.rsplit(" ", 1)[1],
        )
        assert int(n) == 52, line
        assert ast.literal_eval(got) == [_expected_sample(afs_i, gfs_i)], line
        assert overflows == "0", line


def test_a_full_fifo_is_counted_as_an_overflow_and_the_stream_stays_aligned(tmp_path):
    out = both(
        """
buf = bytearray(12 * 1024)
for v in VARIANTS:
    i2c, models = board_with({0x6A: (v, motion(4, 500))})
    imu = lsm6ds.LSM6DS(i2c)
    imu.start()
    vclock.advance_us(1000000)
    first = imu.read_fifo(buf)
    vclock.advance_us(20000000)  # 1040 samples: more than any of the FIFOs holds
    n_over = imu.read_fifo(buf)
    ok_over = set(samples(buf, n_over))
    over_after = imu.overflows
    vclock.advance_us(1000000)
    n_next = imu.read_fifo(buf)
    ok_next = set(samples(buf, n_next))
    cap = models[0x6A].fifo_depth_words // (6 if models[0x6A].family == lsm6ds_model.FAMILY_DS3 else 2)
    print(v, first, cap - n_over, over_after, sorted(ok_over) == sorted(ok_next), len(ok_over), n_next, imu.overflows)
""",
        tmp_path,
    )
    for line in out.splitlines():
        v, first, missing, overflows, same, distinct, n_next, overflows_after = line.split()
        # All whole samples kept (the DS3 family also drops the set an overrun cut and one
        # more to make room), every one aligned (one distinct sample), one overflow
        # counted, then business as usual.
        assert first == "52", line
        assert 0 <= int(missing) <= (2 if v.startswith("LSM6DS3") else 0), line
        assert (overflows, same, distinct, overflows_after) == ("1", "True", "1", "1"), line
        # 52 new samples, plus those that arrived while the big drain was on the bus
        assert 52 <= int(n_next) <= 62, line


def test_lost_fifo_words_are_skipped_without_mixing_samples(tmp_path):
    out = both(
        """
buf = bytearray(12 * 128)
for v in VARIANTS:
    for lost in (1, 2, 3, 5):
        i2c, models = board_with({0x6A: (v, motion(8, 1000))})
        imu = lsm6ds.LSM6DS(i2c)
        imu.start(accel_fs_g=8, gyro_fs_dps=1000)
        vclock.advance_us(500000)
        models[0x6A].force_fifo_overflow(lost)
        vclock.advance_us(500000)
        n = imu.read_fifo(buf)
        print(v, lost, n, imu.overflows, sorted(set(samples(buf, n))))
""",
        tmp_path,
    )
    want = [_expected_sample(8, 1000)]
    for line in out.splitlines():
        v, lost, n, overflows, got = line.split(" ", 4)
        per = 6 if v.startswith("LSM6DS3") else 2
        # A word lost breaks one sample: 26 + 26 - 1 whole samples remain.
        assert int(n) == 52 - (int(lost) + per - 1) // per, line
        assert overflows == "1", line
        assert ast.literal_eval(got) == want, line


def test_samples_beyond_the_buffer_stay_in_the_fifo_for_the_next_call(tmp_path):
    out = both(
        """
def coded(t):
    k = int(t * 52 + 0.5)
    return (0.0, 0.0, 1.0, float(k % 1000), 0.0, 0.0)

buf = bytearray(12 * 10)
for v in VARIANTS:
    vclock.reset()
    vboard.reset_all()
    vboard.attach_i2c(0, 0x6A, lsm6ds_model.LSM6DSModel(v, stimulus.FunctionSource(coded), noise=False))
    imu = lsm6ds.LSM6DS(machine.I2C(0))
    imu.start(gyro_fs_dps=2000)
    vclock.advance_us(1000000)
    imu.stop()  # no new samples while the calls below take their bus time
    seen = []
    while True:
        n = imu.read_fifo(buf)
        if not n:
            break
        seen += [int(s[3] * 0.07 + 0.5) for s in samples(buf, n)]
    print(v, len(seen), seen == list(range(seen[0], seen[0] + len(seen))))
""",
        tmp_path,
    )
    for line in out.splitlines():
        # 52 samples in calls of 10, in order, none lost or repeated
        assert line.split()[1:] == ["52", "True"], line


def test_a_drain_takes_a_status_read_and_a_few_burst_reads(tmp_path):
    out = both(
        """
buf = bytearray(12 * 128)
for v in ("LSM6DS3", "LSM6DSO"):
    i2c, _ = board_with({0x6A: (v, motion(4, 500))})
    imu = lsm6ds.LSM6DS(i2c)
    imu.start()
    for seconds in (1, 2):
        vclock.advance_us(seconds * 1000000)
        before = vboard.stats["i2c_transactions"]
        n = imu.read_fifo(buf)
        print(v, n, vboard.stats["i2c_transactions"] - before)
""",
        tmp_path,
    )
    # Bursts of at most 32 samples (64 tagged words): 52 = 32 + 16 + 4 takes a status read
    # and 3 burst reads, 104 = 3 x 32 + 8 takes 1 + 4.
    assert out.splitlines() == ["LSM6DS3 52 4", "LSM6DS3 104 5", "LSM6DSO 52 4", "LSM6DSO 104 5"]


def test_two_sensors_at_0x6a_and_0x6b_each_read_their_own_motion(tmp_path):
    out = both(
        """
upper = (1.0, 0.0, 0.0, 0.0, 5.25, 0.0)
lower = (0.0, 0.0, 1.0, 0.0, 0.0, -5.25)
i2c, _ = board_with({0x6A: ("LSM6DSO", upper), 0x6B: ("LSM6DS3TR-C", lower)})
a = lsm6ds.LSM6DS(i2c, 0x6A)
b = lsm6ds.LSM6DS(i2c, 0x6B)
a.start()
b.start()
vclock.advance_us(1000000)
buf = bytearray(12 * 64)
for imu in (a, b):
    n = imu.read_fifo(buf)
    print(imu.variant, n, sorted(set(samples(buf, n))), [round(x, 2) for x in imu.read_now()])
""",
        tmp_path,
    )
    assert out.splitlines() == [
        "LSM6DSO 52 [(8197, 0, 0, 0, 300, 0)] [1.0, 0.0, 0.0, 0.0, 5.25, 0.0]",
        "LSM6DS3TR-C 52 [(0, 0, 8197, 0, 0, -300)] [0.0, 0.0, 1.0, 0.0, 0.0, -5.25]",
    ]


def test_absent_or_foreign_chips_raise_sensor_errors_a_user_can_act_on(tmp_path):
    out = both(
        """
def attempt(devices, addr=0x6A, start=False):
    i2c, _ = board_with(devices)
    try:
        imu = lsm6ds.LSM6DS(i2c, addr)
        if start:
            imu.start()
        print("ok", imu.variant)
    except lsm6ds.SensorError as e:
        print(isinstance(e, OSError), e.kind, e.detail, "|", e)

attempt({})
attempt({0x6A: ("LSM6DSO", (0, 0, 1, 0, 0, 0))}, addr=0x6B)
vclock.reset()
vboard.reset_all()
vboard.attach_i2c(0, 0x6A, lsm6ds_model.LSM6DSModel("LSM6DSO"))
vboard.add_i2c_fault(0, 0x6A, 0.0, 1.0)
try:
    lsm6ds.LSM6DS(machine.I2C(0))
except lsm6ds.SensorError as e:
    print(e.kind, e.detail)
attempt({0x6A: vboard.RegisterFile({0x0F: 0x33})})
attempt({0x6A: vboard.RegisterFile({0x0F: 0x6C})}, start=True)
try:
    i2c, _ = board_with({0x6A: ("LSM6DSO", (0, 0, 1, 0, 0, 0))})
    lsm6ds.LSM6DS(i2c).start(gyro_fs_dps=4000)
except ValueError as e:
    print("ValueError", e)
""",
        tmp_path,
    )
    lines = out.splitlines()
    assert lines[0].startswith("True missing 19 | no LSM6DS IMU answers at I2C address 0x6a")
    assert lines[1].startswith("True missing 19 | no LSM6DS IMU answers at I2C address 0x6b")
    assert lines[2] == "missing 116"
    assert lines[3].startswith("True whoami_mismatch 51 | the chip at I2C address 0x6a reports WHO_AM_I 0x33")
    # A chip that answers 0x6C but never finishes its reset.
    assert lines[4].startswith("True reset_timeout 1 | the LSM6DSO at 0x6a did not finish its software reset")
    assert lines[5].startswith(
        "ValueError gyro_fs_dps must be 125, 250, 500, 1000 or 2000 (4000 on the ISM330DHCX)"
    )


def test_read_now_and_temperature_come_from_the_output_registers(tmp_path):
    out = both(
        """
for v in VARIANTS:
    i2c, models = board_with({0x6A: (v, (0.25, -0.5, 1.0, 17.5, -26.25, 43.75))})
    imu = lsm6ds.LSM6DS(i2c)
    before = imu.read_now()
    imu.start(odr_hz=104, accel_fs_g=2, gyro_fs_dps=250)
    vclock.advance_us(20000)
    print(v, before, [round(x, 3) for x in imu.read_now()], imu.temperature_c())
""",
        tmp_path,
    )
    for line in out.splitlines():
        assert line.split(" ", 1)[1] == (
            "(0.0, 0.0, 0.0, 0.0, 0.0, 0.0) [0.25, -0.5, 1.0, 17.5, -26.25, 43.75] 30.0"
        ), line


def test_steady_state_read_fifo_allocates_nothing_in_micropython(micropython, tmp_path):
    out = micropython(
        PRELUDE
        + """
import gc

class DirectBus:
    # The emulated board's I2C allocates for its own bookkeeping; this bus hands the
    # driver's buffers straight to the model's allocation-free read path, so what is
    # measured below is the driver alone.
    def __init__(self, model):
        self.model = model
    def readfrom_mem_into(self, addr, reg, buf):
        self.model.i2c_read_into(reg, buf)
    def writeto_mem(self, addr, reg, buf):
        self.model.i2c_write(reg, buf)

def measure(imu, buf, calls):
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    n = 0
    for _ in range(calls):
        n += imu.read_fifo(buf)
    used = gc.mem_alloc() - before
    gc.enable()
    return n, used

for v in VARIANTS:
    model = lsm6ds_model.LSM6DSModel(v, stimulus.ConstantSource(motion(4, 500)), noise=True)
    vclock.reset()
    imu = lsm6ds.LSM6DS(DirectBus(model))
    imu.start()
    buf = bytearray(12 * 7)  # odd sizes: partial bursts, pending half-pairs
    vclock.advance_us(6000000)
    model.fifo_unread_words()  # let the model produce its samples outside the measurement
    imu.read_fifo(buf)
    n_full, full = measure(imu, buf, 30)
    while imu.read_fifo(buf):
        pass
    n_empty, empty = measure(imu, buf, 30)
    # The same with the emulated board's machine.I2C, for the record.
    i2c, models = board_with({0x6A: (v, motion(4, 500))})
    imu2 = lsm6ds.LSM6DS(i2c)
    imu2.start()
    vclock.advance_us(2000000)
    models[0x6A].fifo_unread_words()
    imu2.read_fifo(buf)
    t0 = vboard.stats["i2c_transactions"]
    n_board, board = measure(imu2, buf, 10)
    print(v, n_full, full, n_empty, empty, n_board, board, vboard.stats["i2c_transactions"] - t0)
""",
        cwd=tmp_path,
    )
    for line in out.splitlines():
        v, n_full, full, n_empty, empty, n_board, board, transactions = line.split()
        print(
            f"{v}: driver {full} B over 30 calls ({n_full} samples), {empty} B over 30 empty calls; "
            f"with the emulated machine.I2C {board} B over 10 calls / {transactions} transactions"
        )
        assert int(n_full) > 150 and n_empty == "0", line
        assert (full, empty) == ("0", "0"), line


def test_viper_unpacking_matches_the_plain_reference_in_micropython(micropython):
    out = micropython(
        """
import random, lsm6ds
random.seed(7)
print(lsm6ds._VIPER, lsm6ds._pattern_to_samples is lsm6ds._pattern_to_samples_viper)
raw = bytearray(random.getrandbits(8) for _ in range(12 * 40))
a = bytearray(12 * 50)
b = bytearray(12 * 50)
lsm6ds._pattern_to_samples_viper(raw, 40, a, 3)
lsm6ds._pattern_to_samples_py(raw, 40, b, 3)
print("pattern", a == b)
# tagged words: gyro/accel pairs, some lost, some foreign tags, random counters
words = bytearray()
slot = 0
for i in range(300):
    kind = random.getrandbits(4)
    if kind == 0:
        slot += 1  # a lost word
        continue
    tag = 3 if kind == 1 else (1 if slot % 2 == 0 else 2)  # 3: temperature, skipped
    cnt = (slot // 2) & 3
    words.append((tag << 3) | (cnt << 1))
    for _ in range(6):
        words.append(random.getrandbits(8))
    slot += 1
n = len(words) // 7
oa = bytearray(12 * 200)
ob = bytearray(12 * 200)
sa = bytearray(10)
sb = bytearray(10)
made_a = made_b = 0
pos = 0
for chunk in (1, 2, 5, 16, 64, 1000):
    k = min(chunk, n - pos)
    if k <= 0:
        break
    part = words[7 * pos : 7 * (pos + k)]
    made_a += lsm6ds._tagged_to_samples_viper(part, k, oa, sa)
    made_b += lsm6ds._tagged_to_samples_py(part, k, ob, sb)
    pos += k
print("tagged", made_a == made_b, made_a > 50, oa == ob, sa == sb)
"""
    )
    assert out.split() == ["True", "True", "pattern", "True", "tagged", "True", "True", "True", "True"]
