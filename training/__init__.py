"""Offline training: load customer tables, fit K-Means, name segments, save the model."""

from training.data import CustomerTable, load_customers
from training.fit import TrainedModel, fit_model, save_model
from training.generate import generate_customers, generate_signups
from training.naming import load_catalogue, name_segments

__all__ = [
    "CustomerTable",
    "TrainedModel",
    "fit_model",
    "generate_customers",
    "generate_signups",
    "load_catalogue",
    "load_customers",
    "name_segments",
    "save_model",
]
