"""The log store when flash fills up, and when the power fails mid-write (DESIGN §3 Log store)."""

from both import run_both

FILL = """
import logstore, protocol
log = logstore.LogStore("log", segment_bytes=256, max_bytes=1024, now_s=lambda: 1767600000)
def battery(i):
    return log.append(protocol.BATTERY, protocol.encode_event(protocol.BATTERY, 1000 + i, 3900, 80, 0))
"""


def test_a_full_log_drops_the_oldest_unacknowledged_records_and_says_how_many(tmp_path):
    out = run_both(
        FILL
        + """
seqs = [battery(i) for i in range(200)]
recs = list(log.records())
gaps = [protocol.decode_payload(r.rtype, r.payload) for r in recs if r.rtype == protocol.GAP]
kept = [r.seq for r in recs if r.rtype == protocol.BATTERY]
lost = sum(g["lost_count"] for g in gaps)
last = gaps[-1]
print(len(log.segments) <= 4, last["first_lost_seq"], len(gaps) > 0)
# The newest GAP record covers every seq before what is still stored: nothing vanishes unsaid.
print(last["first_lost_seq"] + last["lost_count"] == recs[0].seq, kept[-1] == seqs[-1], log.lost > 0)
""",
        tmp_path,
    )
    lines = out.splitlines()
    assert lines[0] == "True 1 True"
    assert lines[1] == "True True True"


def test_acknowledged_records_go_first_and_without_a_gap(tmp_path):
    out = run_both(
        FILL
        + """
for i in range(40):
    battery(i)
log.ack(40)
for i in range(40, 70):
    battery(i)
recs = list(log.records())
print(any(r.rtype == protocol.GAP for r in recs), recs[-1].seq, log.lost)
print(min(r.seq for r in recs) <= 41)  # nothing unacknowledged was dropped
""",
        tmp_path,
    )
    assert out.splitlines() == ["False 70 0", "True"]


POWER_CUTS = """
import os, random, logstore, protocol
random.seed(SEED)
def fresh(folder):
    if folder in os.listdir("."):
        for n in os.listdir(folder):
            os.remove(folder + "/" + n)
        os.rmdir(folder)
ok = 0
for trial in range(TRIALS):
    folder = "t%d" % (trial % 3)
    fresh(folder)
    log = logstore.LogStore(folder, segment_bytes=128 + random.randint(0, 256), max_bytes=0)
    written = []
    for i in range(random.randint(1, 40)):
        written.append(log.append(protocol.BATTERY, protocol.encode_event(protocol.BATTERY, i, 3900, 80, 0)))
        if random.random() < 0.1:
            log.ack(written[random.randint(0, len(written) - 1)])
    acked = log.acked
    # The power fails during the next append: its bytes reach the file only in part.
    seq = log.next_seq
    frame = protocol.encode_record(seq, protocol.BATTERY, protocol.encode_event(protocol.BATTERY, 99, 3900, 80, 0))
    cut = random.randint(0, len(frame) - 1)
    if log._file is None or log._size + len(frame) > log.segment_bytes:
        log._open_segment(seq, len(frame))  # the cut may land in a brand-new segment
    log._file.write(frame[:cut])
    log._file.close()
    if random.random() < 0.2:
        # ... or during an ack-file rewrite: a torn temporary file, the rename never happened
        with open(folder + "/ack.tmp", "w") as f:
            f.write(str(seq + 5)[: random.randint(0, 3)])
    log = logstore.LogStore(folder, segment_bytes=log.segment_bytes)
    stored = [r.seq for r in log.records()]
    # Nothing that append() returned is lost (except what an ACK allowed to delete), the torn
    # record is gone, the ack did not move, and the next seq is the torn record's.
    assert [s for s in written if s not in stored and s > log.acked] == [], (trial, written, stored)
    assert seq not in stored
    assert log.acked == acked
    assert log.next_seq == seq
    ok += 1
print("trials", ok)
"""


def test_a_power_cut_at_any_byte_loses_at_most_the_record_being_written(tmp_path):
    out = run_both(POWER_CUTS.replace("SEED", "7").replace("TRIALS", "600"), tmp_path)
    assert out.splitlines() == ["trials 600"]


def test_power_cuts_with_other_seeds(tmp_path):
    out = run_both(POWER_CUTS.replace("SEED", "11").replace("TRIALS", "600"), tmp_path)
    assert out.splitlines() == ["trials 600"]


HOLE_AFTER_DROP = """
import os, logstore, protocol
log = logstore.LogStore("log", segment_bytes=200, max_bytes=600)
for i in range(60):
    log.append(protocol.BATTERY, protocol.encode_event(protocol.BATTERY, i, 3900, 80, 0))
log.ack(5)
def gaps():
    return [protocol.decode_payload(r.rtype, r.payload) for r in log.records() if r.rtype == protocol.GAP]
# The power fails inside a drop: the oldest unacknowledged segment is deleted, the GAP record
# that would say so never reached the flash (a new, empty segment may or may not exist).
first = log.segments[0]
lost_to = log.segments[1] - 1
before = len([r for r in log.records(lost_to + 1) if r.rtype == protocol.GAP])  # what will remain
os.remove(log._path(first))
log.close()
if CREATE_EMPTY:
    open(log._path(log.next_seq), "wb").close()
log = logstore.LogStore("log", segment_bytes=200, max_bytes=600)
g = gaps()
print(len(g) - before, g[-1]["first_lost_seq"] == 6, g[-1]["lost_count"] == lost_to - 5, log.lost == lost_to - 5)
# A second boot does not report the same loss again.
log = logstore.LogStore("log", segment_bytes=200, max_bytes=600)
print(len(gaps()) - before)
"""


def test_a_power_cut_between_a_drop_and_its_gap_record_is_reported_at_boot(tmp_path):
    for create_empty in ("False", "True"):
        (tmp_path / create_empty).mkdir()
        out = run_both(HOLE_AFTER_DROP.replace("CREATE_EMPTY", create_empty), tmp_path / create_empty)
        assert out.splitlines() == ["1 True True True", "1"], create_empty
