# Append-only record log on the board's flash.
#
# Records are framed by shared/protocol.py (seq, type, len, payload, crc32) and appended to
# segment files "<first seq, 8 hex digits>.seg" in one folder.  Every append is flushed, so
# a power cut loses at most the record being written; at boot the newest segment is scanned
# and a torn tail is cut off.  Sequence numbers continue across reboots: the next seq is
# one past the last valid record, or past the last acknowledged seq (kept in "ack") once
# every segment has been deleted.
#
# Capacity: at most max_bytes // segment_bytes segments.  When a new segment would exceed it,
# the oldest segment goes: silently if the host acknowledged all of it, else with a GAP record
# (first lost seq, how many) written first into the new segment, so the host knows exactly
# what the device could not keep.  The newest segment is never deleted.
import os

from micropython import const

import protocol

_SEGMENT_BYTES = const(4096)
_ACK_FILE = "ack"


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class LogStore:
    def __init__(self, folder="log", segment_bytes=_SEGMENT_BYTES, max_bytes=0, now_s=None):
        self.folder = folder
        self.segment_bytes = segment_bytes
        # 0: no limit but the file system's (tests of other parts use that)
        self.max_segments = max(2, max_bytes // segment_bytes) if max_bytes else 0
        self.now_s = now_s
        self.lost = 0  # records dropped unacknowledged since boot (each one in a GAP record)
        if not _exists(folder):
            os.mkdir(folder)
        self.acked = self._read_ack()
        self.segments = self._list_segments()
        self.next_seq = self.acked + 1
        self._file = None
        self._size = 0
        if self.segments:
            self._recover_tail()
            self._account_for_hole()

    # ---- boot -----------------------------------------------------------------------
    def _path(self, first_seq):
        return "%s/%08x.seg" % (self.folder, first_seq)

    def _list_segments(self):
        firsts = []
        for name in os.listdir(self.folder):
            if name.endswith(".seg") and len(name) == 12:
                try:
                    firsts.append(int(name[:8], 16))
                except ValueError:
                    pass
        firsts.sort()
        return firsts

    def _read_ack(self):
        try:
            with open(self.folder + "/" + _ACK_FILE) as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    def _recover_tail(self):
        path = self._path(self.segments[-1])
        with open(path, "rb") as f:
            data = f.read()
        records, valid = protocol.scan_valid_prefix(data)
        if valid < len(data):
            # A power cut tore the last record: keep the valid prefix only.
            with open(path + ".tmp", "wb") as f:
                f.write(data[:valid])
            os.rename(path + ".tmp", path)
        if records:
            self.next_seq = max(self.next_seq, records[-1].seq + 1)
        elif valid == 0 and len(self.segments) > 1:
            # An empty newest segment: the previous one holds the last seq.
            os.remove(path)
            self.segments.pop()
            self._recover_tail()
            return
        self._size = valid

    def _account_for_hole(self):
        # Records after the last ACK that no segment holds: a power cut came between dropping
        # unacknowledged segments and writing the GAP record that says so (the GAP is the
        # first record of the segment after a drop).  Write that GAP now.
        first = self.segments[0]
        if first <= self.acked + 1:
            return
        for r in self.records():
            if r.rtype == protocol.GAP:
                gap = protocol.decode_payload(r.rtype, r.payload)
                if gap["first_lost_seq"] <= self.acked + 1 and gap["first_lost_seq"] + gap["lost_count"] >= first:
                    return  # already said
        lost = first - 1 - self.acked
        self.lost += lost
        now = self.now_s() if self.now_s is not None else 0
        self.append(protocol.GAP, protocol.encode_event(protocol.GAP, now if now > 0 else 0, self.acked + 1, lost))

    # ---- writing --------------------------------------------------------------------
    def append(self, rtype, payload):
        """Store one record durably; returns its seq."""
        seq = self.next_seq
        frame = protocol.encode_record(seq, rtype, payload)
        f = self._file
        if f is None or self._size + len(frame) > self.segment_bytes:
            gap = self._make_room(len(frame))
            f = self._open_segment(seq, len(frame))
            if gap is not None:
                # The GAP record goes first in the new segment, with the next seq.
                gap_frame = protocol.encode_record(seq, protocol.GAP, gap)
                f.write(gap_frame)
                f.flush()
                self._size += len(gap_frame)
                seq += 1
                self.next_seq = seq
                frame = protocol.encode_record(seq, rtype, payload)
        f.write(frame)
        f.flush()
        self._size += len(frame)
        self.next_seq = seq + 1
        return seq

    def _make_room(self, frame_len):
        """Before a new segment: drop the oldest while over capacity.  Returns the GAP payload
        when unacknowledged records went, else None."""
        if not self.max_segments:
            return None
        if self._file is None and self.segments and self._size + frame_len <= self.segment_bytes:
            return None  # the newest segment still has room: no new segment
        end = 0
        lost = 0
        while len(self.segments) >= self.max_segments and len(self.segments) > 1:
            first = self.segments.pop(0)
            end = self.segments[0] - 1  # the dropped segment held first..end
            if end > self.acked:
                lost += end - (first if first > self.acked else self.acked + 1) + 1
            os.remove(self._path(first))
        if not lost:
            return None
        self.lost += lost
        now = self.now_s() if self.now_s is not None else 0
        # Drops go oldest first, so everything after the last ACK up to `end` is gone: the new
        # GAP record says so, which also covers the losses of earlier GAP records (themselves
        # maybe dropped by now).
        return protocol.encode_event(protocol.GAP, now if now > 0 else 0, self.acked + 1, end - self.acked)

    def _open_segment(self, seq, frame_len):
        if self._file is None and self.segments and self._size + frame_len <= self.segment_bytes:
            # First write after boot: the newest segment still has room.
            self._file = open(self._path(self.segments[-1]), "ab")
            return self._file
        if self._file is not None:
            self._file.close()
            self._file = None
        self.segments.append(seq)
        self._file = open(self._path(seq), "wb")
        self._size = 0
        return self._file

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    # ---- reading and acknowledging ----------------------------------------------------
    def records(self, from_seq=0):
        """Yield stored records with seq >= from_seq, oldest first."""
        for first in self.segments:
            with open(self._path(first), "rb") as f:
                data = f.read()
            records, _valid = protocol.scan_valid_prefix(data)
            for r in records:
                if r.seq >= from_seq:
                    yield r

    def first_seq(self):
        """The oldest stored seq (next_seq when nothing is stored)."""
        for r in self.records(0):
            return r.seq
        return self.next_seq

    def last_seq(self):
        """The newest seq written (0 before the first record)."""
        return self.next_seq - 1

    def framed(self, from_seq, max_bytes):
        """Stored records with seq >= from_seq as framed bytes, oldest first, at most max_bytes
        in all (for a sync batch)."""
        out = []
        total = 0
        for r in self.records(from_seq):
            frame = protocol.encode_record(r.seq, r.rtype, r.payload)
            if total + len(frame) > max_bytes:
                break
            out.append(frame)
            total += len(frame)
        return out

    def ack(self, seq):
        """The host stored everything up to ``seq``: delete the segments it covers."""
        if seq <= self.acked:
            return
        self.acked = seq
        with open(self.folder + "/" + _ACK_FILE + ".tmp", "w") as f:
            f.write(str(seq))
        os.rename(self.folder + "/" + _ACK_FILE + ".tmp", self.folder + "/" + _ACK_FILE)
        while len(self.segments) > 1 and self.segments[1] - 1 <= seq:
            os.remove(self._path(self.segments.pop(0)))
