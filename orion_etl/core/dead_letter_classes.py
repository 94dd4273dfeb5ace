"""The dead-letter vocabulary: why a record was dead-lettered, and the class the DLQ tools show.

One type system with two levels of detail, both persisted and so spelled exactly as they are:

- `ErrorClass` is the precise reason the loader writes in the `dlq.error_class` header, in DQ issue
  rows (`origin->>'error_class'`) and in the `error_class` label of
  `orion_etl_stream_dead_letters_total` (docs/stream.md, docs/operations.md).
- `LetterClass` is the coarse class that `dlq list/show/replay --class` filter on and report
  (docs/dlq.md "Classes"). Every `ErrorClass` belongs to exactly one (`ErrorClass.letter_class`);
  letters written by something else (a Kafka Connect dead-letter queue, a payload without headers)
  carry no error class of ours and are classified into a `LetterClass` directly
  (core/dead_letters.py).

   ===================  ==================================================
   LetterClass          ErrorClass (`dlq.error_class`)
   ===================  ==================================================
   undecodable          DECODE
   schema               MISSING_PAYLOAD, UNKNOWN_OP, UNKNOWN_TOPIC, INVALID_VALUE
   rule                 RULE
   missing_dimension    MISSING_DIMENSION
   rejected             LOAD_REJECTED
   transient            TRANSIENT (written by other producers, never by the loader)
   unknown              (none: no headers and nothing to tell from the payload)
   ===================  ==================================================

`DecodeError` is how decoding reports a record it cannot turn into a change, with its error class.
Pure, no I/O.
"""

from __future__ import annotations

from enum import StrEnum


class LetterClass(StrEnum):
    """What kind of failure dead-lettered a record (docs/dlq.md)."""

    UNDECODABLE = "undecodable"  # not UTF-8 / not JSON / wrong envelope types
    SCHEMA = "schema"  # decodes, but does not fit: missing payload, unknown op/topic, bad value
    RULE = "rule"  # an error-severity data-quality rule failed
    MISSING_DIMENSION = "missing_dimension"  # a natural id with no dimension member (opt-in)
    REJECTED = "rejected"  # the warehouse refused the row (constraint, value PostgreSQL cannot store)
    TRANSIENT = "transient"  # an infrastructure failure was dead-lettered (other producers)
    UNKNOWN = "unknown"  # no headers and nothing to tell from the payload


class ErrorClass(StrEnum):
    """Why a record was dead-lettered (the DLQ `dlq.error_class` header); see the module table."""

    DECODE = "DECODE"  # not UTF-8 / not JSON / wrong JSON types in the envelope
    MISSING_PAYLOAD = "MISSING_PAYLOAD"
    UNKNOWN_OP = "UNKNOWN_OP"
    UNKNOWN_TOPIC = "UNKNOWN_TOPIC"  # no handler for the topic or the CDC source table
    INVALID_VALUE = "INVALID_VALUE"  # a field that does not convert to its column type
    RULE = "RULE"  # an error-severity data-quality rule failed
    MISSING_DIMENSION = "MISSING_DIMENSION"  # no dimension row (only with stream.missing_dimension="dlq")
    LOAD_REJECTED = "LOAD_REJECTED"  # PostgreSQL refused the row (dlq.sqlstate says why)
    TRANSIENT = "TRANSIENT"  # an infrastructure failure, dead-lettered by another producer (never the loader)

    @property
    def letter_class(self) -> LetterClass:
        """The coarse class this error class belongs to."""
        return _LETTER_CLASSES[self]

    @classmethod
    def of_header(cls, text: str) -> ErrorClass | None:
        """The error class a `dlq.error_class` header names; None for any other text."""
        try:
            return cls(text)
        except ValueError:
            return None


_LETTER_CLASSES: dict[ErrorClass, LetterClass] = {
    ErrorClass.DECODE: LetterClass.UNDECODABLE,
    ErrorClass.MISSING_PAYLOAD: LetterClass.SCHEMA,
    ErrorClass.UNKNOWN_OP: LetterClass.SCHEMA,
    ErrorClass.UNKNOWN_TOPIC: LetterClass.SCHEMA,
    ErrorClass.INVALID_VALUE: LetterClass.SCHEMA,
    ErrorClass.RULE: LetterClass.RULE,
    ErrorClass.MISSING_DIMENSION: LetterClass.MISSING_DIMENSION,
    ErrorClass.LOAD_REJECTED: LetterClass.REJECTED,
    ErrorClass.TRANSIENT: LetterClass.TRANSIENT,
}


class DecodeError(Exception):
    """A record that cannot be decoded; carries its DLQ error class."""

    def __init__(self, error_class: ErrorClass, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message
