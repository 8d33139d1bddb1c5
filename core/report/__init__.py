"""The generalization comparison report: which regularizer generalizes best, and how sure.

``build_report`` reads a study from Optuna and MLflow, re-evaluates the best configuration
of each regularizer kind on fresh seeds, compares the kinds with paired tests, and writes
``report.html``, ``report.md``, CSV tables and PNG figures.

The names below load their modules on first use, so importing this package (as the
command line does to register ``regstudy report``) pulls in neither MLflow nor
matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ReportError": "core.report.collect",
    "ReportResult": "core.report.build",
    "build_report": "core.report.build",
    "classification_metrics": "core.report.metrics",
    "holm": "core.report.stats",
    "imbalance_caveat": "core.report.metrics",
    "majority_class_baseline": "core.report.metrics",
    "mean_predictor_r2": "core.report.metrics",
    "paired_test": "core.report.stats",
    "reevaluation_seeds": "core.report.reevaluate",
    "t_interval": "core.report.stats",
    "wilcoxon_signed_rank": "core.report.stats",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'core.report' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
