"""DLQ floors stored with claims never lie above a letter `recall` found for a record not yet
committed (exactly one letter per record across resets and repeated crashes): a reference model."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st

from orion_etl.adapters.dlq import DeadLetterPublisher
from orion_etl.core.dead_letter_classes import LetterClass
from orion_etl.core.dead_letters import DlqMessage

ORIGIN, DLQ, GROUP = "trade.executed", "trade.executed.dlq", "loader"


class _Reader:
    """The DLQ as a list (DlqReader's two methods `recall` uses)."""

    def __init__(self, letters: list[DlqMessage]) -> None:
        self.letters = letters

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        return {0: (0, len(self.letters))}

    def read(self, ranges: dict[tuple[str, int], tuple[int, int]]) -> Iterator[list[DlqMessage]]:
        start, end = ranges[(DLQ, 0)]
        yield self.letters[start:end]


def _letter(dlq_offset: int, origin_offset: int) -> DlqMessage:
    return DlqMessage(
        DLQ, 0, dlq_offset, None, None, b"x", [], ORIGIN, 0, origin_offset, None,
        "bad", "RULE", "r", LetterClass.RULE, "f", "id", consumer_group=GROUP,
    )  # fmt: skip


@given(
    origins=st.lists(st.integers(0, 200), min_size=0, max_size=30, unique=True),
    stored_floor=st.integers(0, 30),
    position=st.integers(0, 200),
    committed=st.lists(st.integers(0, 250), max_size=5),
)
def test_floors_stay_below_recalled_letters_until_their_records_commit(
    origins: list[int], stored_floor: int, position: int, committed: list[int]
) -> None:
    letters = [_letter(i, o) for i, o in enumerate(origins)]
    publisher = DeadLetterPublisher(None, ".dlq", GROUP)  # type: ignore[arg-type]  # publishes nothing
    publisher.start_floors(DLQ, {0: len(letters)})
    floor = min(stored_floor, len(letters))
    publisher.recall(_Reader(letters), {(ORIGIN, 0): (position, {0: floor})})  # type: ignore[arg-type]
    at = position
    for step in [position, *sorted(committed)]:
        at = max(at, step)
        publisher.forget({(ORIGIN, 0): at})
        floors = publisher.floors([ORIGIN])[ORIGIN][0]
        # reference: the lowest DLQ offset of a recalled letter whose record is not committed
        pending = [i for i, o in enumerate(origins) if i >= floor and o >= at]
        assert floors == min([len(letters), *pending])
