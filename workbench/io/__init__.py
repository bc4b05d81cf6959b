"""The output edge: tensors back to labelled xarray objects and ArviZ groups."""

from __future__ import annotations

from workbench.io.arviz import samples_to_inference_data as samples_to_inference_data
from workbench.io.attrs import cf_attrs as cf_attrs
from workbench.io.attrs import make_attrs as make_attrs
from workbench.io.to_xarray import predictive_to_dataset as predictive_to_dataset

__all__ = ["cf_attrs", "make_attrs", "predictive_to_dataset", "samples_to_inference_data"]
