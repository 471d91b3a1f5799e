"""The record log on flash: durable appends, torn tails cut at boot, seq across reboots."""

from both import run_both

APPEND_100 = """
import logstore, protocol
log = logstore.LogStore("log", segment_bytes=512)
for i in range(100):
    log.append(protocol.BATTERY, protocol.encode_event(protocol.BATTERY, 1000 + i, 3900, 80, 0))
log.close()
"""


def test_records_survive_a_reboot_and_seq_continues(tmp_path):
    out = run_both(
        APPEND_100
        + """
log = logstore.LogStore("log", segment_bytes=512)
seqs = [r.seq for r in log.records()]
print(seqs[0], seqs[-1], len(seqs), seqs == list(range(1, 101)))
print(log.append(protocol.BATTERY, protocol.encode_event(protocol.BATTERY, 5, 3900, 80, 0)))
print(len(log.segments) > 1)
""",
        tmp_path,
    )
    assert out.splitlines() == ["1 100 100 True", "101", "True"]


def test_torn_last_record_is_cut_at_boot(tmp_path):
    out = run_both(
        APPEND_100
        + """
import os
log = logstore.LogStore("log", segment_bytes=512)
names = sorted([n for n in os.listdir("log") if n.endswith(".seg")])
path = "log/" + names[-1]
data = open(path, "rb").read()
open(path, "wb").write(data[:-3])   # the power failed three bytes before the end
log = logstore.LogStore("log", segment_bytes=512)
seqs = [r.seq for r in log.records()]
framed = len(protocol.encode_record(1, protocol.BATTERY, protocol.encode_event(protocol.BATTERY, 7, 3900, 80, 0)))
print(seqs[-1], len(open(path, "rb").read()) == len(data) - framed)
print(log.append(protocol.BATTERY, protocol.encode_event(protocol.BATTERY, 7, 3900, 80, 0)))
print([r.seq for r in log.records()][-2:])
""",
        tmp_path,
    )
    # The torn record (seq 100) is gone whole; seq 100 is reused because no host can have
    # seen the torn one.
    assert out.splitlines() == ["99 True", "100", "[99, 100]"]


def test_ack_deletes_only_covered_segments_and_seq_survives_an_empty_log(tmp_path):
    out = run_both(
        APPEND_100
        + """
import os
log = logstore.LogStore("log", segment_bytes=512)
before = len(log.segments)
log.ack(50)
first = [r.seq for r in log.records()][0]
print(before > len(log.segments), first <= 51, first > 1)
log.ack(100)
print(len(log.segments), [r.seq for r in log.records()][0])
log.close()
log = logstore.LogStore("log", segment_bytes=512)
print(log.append(protocol.BATTERY, protocol.encode_event(protocol.BATTERY, 7, 3900, 80, 0)))
""",
        tmp_path,
    )
    lines = out.splitlines()
    assert lines[0] == "True True True"
    assert lines[1].startswith("1 ")  # the newest segment is kept for appending
    assert lines[2] == "101"
