"""Every size limit of the wire contract, in one place, for the topic, HTTP and the CLI.

The limits are enforced before the work they bound (a message's size before it
is parsed, a batch's length before its events are decoded) and are consistent
with each other and with Kafka's:

- a **message** (a Kafka record value, an HTTP body, a line of an input file)
  holds at most :data:`MAX_MESSAGE_BYTES`; Kafka's producers and brokers must
  allow a little more for the key and the record framing,
  :data:`KAFKA_MAX_MESSAGE_BYTES`, which the events topic's ``max.message.bytes``
  and tastestream's producers are configured with;
- a **batch** message holds at most :data:`MAX_BATCH_EVENTS` events;
- one **event** as sent (a single-event message, or one element of a batch) is
  at most :data:`MAX_EVENT_BYTES`; once validated, its canonical form is at most
  :data:`MAX_CANONICAL_EVENT_BYTES` as msgpack, whatever was sent, because
- every **string** of an event (ids, session, context and item strings) is at
  most :data:`MAX_ID_BYTES` bytes of UTF-8 (bytes, not characters: 512 ASCII
  characters, 128 emoji), every **number** is finite and within
  ±\\ :data:`MAX_NUMBER`, and ``ts`` within 0 .. :data:`MAX_TS`;
- **nesting**: a valid event is :data:`MAX_EVENT_DEPTH` levels deep (the event,
  then ``context`` or ``item``); the typed decoder stops at the first container
  the contract does not allow, so depth costs nothing more. Splitting a batch to
  isolate one bad event skips it in C; a message nested deeper than the
  decoders allow (about 1,000 levels) cannot be split and is rejected whole;
- a **dead-letter record** keeps at most :data:`DEAD_LETTER_ORIGINAL_BYTES` of
  the original (with its length and SHA-256), so it is at most
  :data:`MAX_DEAD_LETTER_BYTES` whatever the input: far below any producer's limit.

Why 1 MiB per message and not more: batching pays off by about 100 events per
message (Faust's cost is per message), so bigger messages buy no throughput,
while a message decodes into Python objects up to 25 times its size (16 MiB of
``[{},{},...]`` became 404 MiB with the stdlib's json). 1 MiB is about what
Kafka's defaults let through.

Why 512 bytes per string: the contract allowed 512 characters, so counting
bytes instead keeps every ASCII id valid that was, and bounds the others (128
emoji, where 512 emoji made 2 KB ids and, 300 events later, a user's state over
1 MB). A user's state is also capped in bytes where it is folded
(``models/user_state.py``): long ids shorten what it keeps, they cannot make it
outgrow a record. Recommendation services cap ids tighter still (Amazon
Personalize 256 characters, Google Retail 128).

Examples
--------
>>> MAX_MESSAGE_BYTES, KAFKA_MAX_MESSAGE_BYTES - MAX_MESSAGE_BYTES
(1048576, 65536)
>>> MAX_CANONICAL_EVENT_BYTES * MAX_BATCH_EVENTS > MAX_MESSAGE_BYTES  # so big batches are split
True
"""

from __future__ import annotations

#: Largest message value (Kafka record value, HTTP body, input line), bytes.
MAX_MESSAGE_BYTES = 1024 * 1024
#: What Kafka must allow per record batch: a message plus its key and framing.
#: The events topic's ``max.message.bytes``, confluent-kafka's ``message.max.bytes``
#: and aiokafka's (Faust's) ``max_request_size`` are set to this.
KAFKA_MAX_MESSAGE_BYTES = MAX_MESSAGE_BYTES + 64 * 1024
#: Most events in one batch message.
MAX_BATCH_EVENTS = 10_000
#: Largest event as sent: a single-event message, or one element of a batch (bytes).
MAX_EVENT_BYTES = 64 * 1024
#: Longest string of an event (ids, session, context and item strings), UTF-8 bytes.
MAX_ID_BYTES = 512
#: Largest magnitude of any number (2**53: every integer up to it is exact as a float,
#: and any JSON or msgpack reader in any language holds it).
MAX_NUMBER = 2**53
#: Latest accepted timestamp, epoch seconds (year 5138): larger values are almost
#: always epoch milliseconds.
MAX_TS = 1e11
#: Nesting of a valid event: the event's map, then ``context`` or ``item`` (a batch adds one).
MAX_EVENT_DEPTH = 2
#: Upper bound of one canonical event encoded as msgpack (every string at
#: MAX_ID_BYTES, every optional field present); ``tests/streams`` checks it is tight.
MAX_CANONICAL_EVENT_BYTES = 4_352
#: Bytes of a rejected input kept in its dead-letter record: any event, and any
#: message up to twice the event limit, is kept whole.
DEAD_LETTER_ORIGINAL_BYTES = 2 * MAX_EVENT_BYTES
#: Longest reason or field name kept in a dead-letter record, characters.
MAX_REASON_CHARS = 1_024
#: Largest encoded dead-letter record, bytes (base64 of the kept prefix plus the rest).
MAX_DEAD_LETTER_BYTES = 256 * 1024

__all__ = [
    "DEAD_LETTER_ORIGINAL_BYTES",
    "KAFKA_MAX_MESSAGE_BYTES",
    "MAX_BATCH_EVENTS",
    "MAX_CANONICAL_EVENT_BYTES",
    "MAX_DEAD_LETTER_BYTES",
    "MAX_EVENT_BYTES",
    "MAX_EVENT_DEPTH",
    "MAX_ID_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_NUMBER",
    "MAX_REASON_CHARS",
    "MAX_TS",
]
