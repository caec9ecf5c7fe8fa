"""Early stopping on a validation score (higher is better), resumable."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class EarlyStopping:
    """Stop when the score has not improved for ``patience`` epochs (paper: 20 epochs on the mean
    validation AUC). ``nan`` scores never count as improvements.

    Attributes:
        patience: epochs without improvement tolerated.
        best: best score so far (``-inf`` before the first).
        best_epoch: epoch of the best score (-1 before the first).
        bad_epochs: epochs since the last improvement.
    """

    patience: int
    best: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0

    def step(self, score: float, epoch: int) -> bool:
        """Record an epoch's score; returns True if it is the new best."""
        if score == score and score > self.best:  # score == score: not nan
            self.best, self.best_epoch, self.bad_epochs = float(score), int(epoch), 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
