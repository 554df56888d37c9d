"""What one QCore calibration step did: the C's ``edgeplus_qcore_step_result`` plus the
arrays the binding returns with it. Defined here, below both the C binding
(:meth:`tfmot_edgeplus.runtime.kernels.Kernels.qcore_step`) and the NumPy reference
(:func:`tfmot_edgeplus.calibration.step.qcore_step`), which return the same type."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["StepResult"]


@dataclass
class StepResult:
    """What one step did. ``weights`` are the head's weights after it (new if kept);
    ``level`` is the confidence level kept (or the last one tried); ``changed`` and the
    ``*_after`` fields describe that level's candidate. The scalar fields are those of
    ``edgeplus_qcore_step_result`` (edgeplus_types.h). ``n`` counts all samples, the
    first ``guard`` of them guarded: ``correct_*`` and ``margin_*`` are over the other
    ``n - guard``, ``guard_correct_*`` the guarded samples predicted right (``after`` ==
    ``before`` when no level was tried); the masks cover all n."""

    kept: bool
    changed: int
    level: int
    correct_before: int
    correct_after: int
    margin_before: int
    margin_after: int
    n: int
    weights: list[np.ndarray]
    correct_mask_before: np.ndarray
    correct_mask_after: np.ndarray
    guard: int = 0
    guard_correct_before: int = 0
    guard_correct_after: int = 0

    @property
    def accuracy_before(self) -> float:
        """Accuracy on the unguarded samples before the step."""
        return self.correct_before / (self.n - self.guard)

    @property
    def accuracy_after(self) -> float:
        """Accuracy on the unguarded samples of the weights the step leaves (the old ones
        when rolled back)."""
        return (self.correct_after if self.kept else self.correct_before) / (self.n - self.guard)
