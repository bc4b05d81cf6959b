"""Controls generated from :class:`~workbench.models.ParameterSpec` metadata."""

from __future__ import annotations

import math
import re

import ipywidgets as widgets

from workbench.models.base import ParameterSpec

__all__ = ["control_for", "css_class", "parameter_units"]


def css_class(name: str) -> str:
    """Stable CSS class for a control (browser tests select on it): ``wb-<name>``."""
    return "wb-" + re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def parameter_units(name: str, time_units: str | None, value_units: str | None) -> str | None:
    """Units of a hyper-parameter from its dotted name and the data's units.

    Lengthscales and periods are in the units of the modelled coordinate, angular frequencies
    in radians per that unit, variances (``noise``, ``outputscale``) in the data's units
    squared and means in the data's units; ``None`` where the units are not known.
    """
    parts = name.split(".")
    if any("lengthscale" in p or "period" in p for p in parts):
        return time_units
    leaf = parts[-1]
    if leaf == "frequency":
        return f"rad/{time_units}" if time_units else None
    if leaf in {"noise", "outputscale", "variance"}:
        return f"({value_units})^2" if value_units else None
    if leaf in {"mean", "constant"}:
        return value_units
    return None


def control_for(spec: ParameterSpec, value: float, units: str | None = None) -> widgets.ValueWidget:
    """A slider for ``spec`` at ``value``: log-scale when ``spec.log``, committed on release,
    labelled ``label [units]``."""
    style = {"description_width": "initial"}
    description = f"{spec.label} [{units}]" if units else spec.label
    layout = widgets.Layout(width="340px")
    if spec.log:
        slider = widgets.FloatLogSlider(
            value=value,
            base=10,
            min=math.log10(spec.low),
            max=math.log10(spec.high),
            step=0.05,
            description=description,
            continuous_update=False,
            readout_format=".3g",
            style=style,
            layout=layout,
        )
    else:
        slider = widgets.FloatSlider(
            value=value,
            min=spec.low,
            max=spec.high,
            step=(spec.high - spec.low) / 100,
            description=description,
            continuous_update=False,
            readout_format=".3g",
            style=style,
            layout=layout,
        )
    slider.add_class(css_class(spec.name))
    slider.add_class("wb-hyper")  # every hyper-parameter control, for browser tests
    return slider
