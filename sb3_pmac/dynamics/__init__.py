"""Learned dynamics model of PMAC: a probabilistic ensemble and its trainer."""

from sb3_pmac.dynamics.ensemble import ProbabilisticEnsemble
from sb3_pmac.dynamics.layers import EnsembleLinear, InputNormalizer
from sb3_pmac.dynamics.model_trainer import ModelTrainer, ModelTrainingInfo

__all__ = ["EnsembleLinear", "InputNormalizer", "ModelTrainer", "ModelTrainingInfo", "ProbabilisticEnsemble"]
