"""The NumPy engine: layers, losses, penalties, optimizers, the MLP and its trainer.

Imports NumPy and nothing else of the project (nor Optuna, nor MLflow).
"""

from core.nn.losses import MeanSquaredError, SoftmaxCrossEntropy, accuracy, r2_score
from core.nn.model import MLP
from core.nn.optimizers import OPTIMIZERS, make_optimizer
from core.nn.penalties import PENALTY_KINDS, Penalty
from core.nn.trainer import DivergenceError, TrainConfig, TrainResult, evaluate, train

__all__ = [
    "MLP",
    "OPTIMIZERS",
    "PENALTY_KINDS",
    "DivergenceError",
    "MeanSquaredError",
    "Penalty",
    "SoftmaxCrossEntropy",
    "TrainConfig",
    "TrainResult",
    "accuracy",
    "evaluate",
    "make_optimizer",
    "r2_score",
    "train",
]
