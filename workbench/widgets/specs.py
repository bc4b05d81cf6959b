"""Controls generated from :class:`~workbench.models.ParameterSpec` metadata."""

from __future__ import annotations

import math
import re

import ipywidgets as widgets

from workbench.models.base import ParameterSpec

__all__ = ["control_for", "css_class"]


def css_class(name: str) -> str:
    """Stable CSS class for a control (browser tests select on it): ``wb-<name>``."""
    return "wb-" + re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def control_for(spec: ParameterSpec, value: float) -> widgets.ValueWidget:
    """A slider for ``spec`` at ``value``: log-scale when ``spec.log``, committed on release."""
    style = {"description_width": "initial"}
    layout = widgets.Layout(width="340px")
    if spec.log:
        slider = widgets.FloatLogSlider(
            value=value,
            base=10,
            min=math.log10(spec.low),
            max=math.log10(spec.high),
            step=0.05,
            description=spec.label,
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
            description=spec.label,
            continuous_update=False,
            readout_format=".3g",
            style=style,
            layout=layout,
        )
    slider.add_class(css_class(spec.name))
    slider.add_class("wb-hyper")  # every hyper-parameter control, for browser tests
    return slider
