"""A connection-interval model of how long a BLE sync session takes, from what it sends.

BLE moves data only in connection events, one every connection interval; within an event the
peripheral sends a few link-layer PDUs, each acknowledged by the central.  So the time to move F
notifications is about ceil(F / PDUs per event) intervals, and every command the host writes with
response costs a round trip: the request in one event, the answer in the next.  The model
(docs/benchmarks.md, `sync`):

- LE 1M PHY, 8 µs per byte on air; a data PDU is 10 bytes of preamble, access address, header and
  CRC around its payload (4 bytes L2CAP + 3 bytes ATT + the notification value); T_IFS = 150 µs;
  the central's empty PDU is 10 bytes.
- MTU 247 with LE Data Length Extension (a 244-byte notification value is one 251-byte PDU); at
  the default MTU 23 without it, a value is at most 20 bytes, one 27-byte PDU.
- Connection interval 30 ms (what Android and Windows centrals commonly grant; iOS uses 15 ms,
  so this errs long), up to 4 data PDUs per connection event (the ESP32 controller's default
  buffers; more are possible), 2 intervals per write-with-response round trip.
- Fixed session cost: connect (1 interval), MTU exchange and data-length update (1 round trip
  each), GATT discovery (service, characteristics, descriptors: 4 round trips), subscribe,
  read `info`, HELLO, TIME_SET (1 round trip each), disconnect (1 interval).  Per batch: FETCH
  and ACK (a round trip each), its frames, and BATCH_END (a notification).
- Not modelled: scanning for the advertiser (0.25 s advertising interval: ~0.3 s expected) and
  retransmissions (a clean link).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

US_PER_BYTE = 8.0
PDU_OVERHEAD_BYTES = 10
ATT_L2CAP_BYTES = 7
T_IFS_US = 150.0
EMPTY_PDU_US = PDU_OVERHEAD_BYTES * US_PER_BYTE

SESSION_ROUND_TRIPS = 2 + 4 + 4  # MTU + DLE; discovery; subscribe, info, HELLO, TIME_SET


@dataclass(frozen=True)
class LinkModel:
    interval_ms: float = 30.0
    pdus_per_event: int = 4
    intervals_per_round_trip: int = 2


@dataclass(frozen=True)
class SessionTime:
    total_s: float  # connect to disconnect
    on_air_s: float  # the radio actually transmitting or receiving, both sides
    events: int  # connection events used


def notification_on_air_us(value_bytes: int) -> float:
    """One notification PDU and the central's empty acknowledgement, with the two T_IFS."""
    pdu = (PDU_OVERHEAD_BYTES + ATT_L2CAP_BYTES + value_bytes) * US_PER_BYTE
    return pdu + EMPTY_PDU_US + 2 * T_IFS_US


def session_time(frame_sizes: list[int], batches: int, model: LinkModel = LinkModel()) -> SessionTime:
    """Time for a session that sends notifications of these value sizes in ``batches`` batches."""
    notifications = len(frame_sizes) + batches  # + BATCH_END per batch
    data_events = math.ceil(notifications / model.pdus_per_event)
    round_trips = SESSION_ROUND_TRIPS + 2 * batches
    events = 2 + data_events + round_trips * model.intervals_per_round_trip
    on_air_us = sum(notification_on_air_us(n) for n in frame_sizes) + batches * notification_on_air_us(38)
    # each round trip: a request PDU (~20 bytes) and a response PDU (~20 bytes) with their acks
    on_air_us += round_trips * 2 * notification_on_air_us(20)
    return SessionTime(events * model.interval_ms / 1000.0, on_air_us / 1e6, events)
