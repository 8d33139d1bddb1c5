"""Hyperparameter importance of each study, from Optuna's fANOVA evaluator."""

from __future__ import annotations

import logging
import warnings

import optuna
import pandas as pd
from optuna.trial import TrialState

from .collect import LoadedStudy

logger = logging.getLogger(__name__)

MIN_TRIALS = 2


def parameter_importances(studies: list[LoadedStudy], seed: int) -> pd.DataFrame:
    """Importance of every parameter present in all completed trials, per study.

    fANOVA fits a random forest of the objective on the parameters and attributes the
    variance of its prediction to each one; ``seed`` fixes the forest, so the numbers are
    the same on every build. A study with fewer than two completed trials, or one the
    evaluator cannot fit, is left out (and logged).

    Returns:
        Columns ``study``, ``param``, ``importance`` (summing to 1 within a study).
    """
    rows = []
    for loaded in studies:
        study = loaded.study
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) < MIN_TRIALS:
            logger.info(
                "importance of %s skipped: %d completed trial(s)", study.study_name, len(complete)
            )
            continue
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = optuna.importance.get_param_importances(study, evaluator=evaluator)
        except (RuntimeError, ValueError) as error:
            logger.info("importance of %s skipped: %s", study.study_name, error)
            continue
        rows += [
            {"study": study.study_name, "param": name, "importance": float(value)}
            for name, value in values.items()
        ]
    return pd.DataFrame(rows, columns=["study", "param", "importance"])
