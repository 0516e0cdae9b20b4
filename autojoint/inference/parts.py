"""Which cases one part of a split prediction predicts (``autojoint_predict --num-parts N
--part-id K``), so that N processes or machines share an input folder without talking to
each other.

Every part lists the same folder, sorts the case names and takes every N-th one starting at
the K-th (as nnU-Net's ``nnUNetv2_predict -num_parts -part_id``): the parts are disjoint,
together they cover the folder, and no part needs to know what the others are doing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# A part removes only temp files left this long ago: younger ones may be another part's
# file being written (a mask or table takes seconds, not an hour).
PART_TEMP_FILE_AGE_SECONDS = 3600.0


def part_problem(num_parts: int, part_id: int) -> str | None:
    """What is wrong with ``--num-parts``/``--part-id`` (None if nothing), as one sentence
    with the fix."""
    if num_parts < 1:
        return f"--num-parts must be >= 1 (got {num_parts}); use 1 to predict the whole folder."
    if not 0 <= part_id < num_parts:
        return (
            f"--part-id must be in 0..{num_parts - 1} for --num-parts {num_parts} "
            f"(got {part_id}); parts are numbered from 0."
        )
    return None


@dataclass(frozen=True)
class Part:
    """Part ``part_id`` of ``num_parts`` (the default, part 0 of 1, is the whole folder).

    Raises:
        ValueError: ``num_parts < 1`` or ``part_id`` outside ``0..num_parts - 1``.
    """

    part_id: int = 0
    num_parts: int = 1

    def __post_init__(self) -> None:
        if problem := part_problem(self.num_parts, self.part_id):
            raise ValueError(problem)

    @property
    def is_whole(self) -> bool:
        return self.num_parts == 1

    def select(self, case_ids: Iterable[str]) -> list[str]:
        """This part's share: every ``num_parts``-th of the sorted ``case_ids``, from the
        ``part_id``-th on (sorted, so every part computes the same split)."""
        return sorted(case_ids)[self.part_id :: self.num_parts]

    def __str__(self) -> str:
        return f"part {self.part_id} of {self.num_parts}"
