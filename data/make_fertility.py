"""Regenerate ``fertility_worldbank.nc`` from the copy bundled with statsmodels (offline)."""

import numpy as np
import pandas as pd
import statsmodels.datasets.fertility as fertility
import xarray as xr

# World Bank aggregates (regions, income and lending groups), not countries
AGGREGATES = {"CAA", "CSS", "EAS", "ECS", "EUU", "LCN", "MEA", "OED", "OSS", "PSS", "SSF", "WLD"}
MIN_YEARS = 40  # keep countries observed in most years

frame = fertility.load_pandas().data.set_index("Country Code")
frame = frame[~frame.index.isin(AGGREGATES)]
values = frame.filter(regex=r"^\d{4}$").apply(pd.to_numeric, errors="coerce")
values = values[values.notna().sum(axis=1) >= MIN_YEARS]
values = values.loc[:, values.notna().any(axis=0)]
da = xr.DataArray(
    values.to_numpy(dtype="float64"),
    dims=("country", "time"),
    coords={
        "country": values.index.to_numpy(dtype=str),
        "time": values.columns.astype(float).to_numpy(),
        "country_name": ("country", frame.loc[values.index, "Country Name"].to_numpy(dtype=str)),
    },
    name="fertility",
    attrs={"long_name": "total fertility rate", "units": "births per woman"},
)
da["time"].attrs = {"long_name": "year", "units": "year"}
ds = da.to_dataset()
ds.attrs = {
    "title": "Total fertility rate by country, World Development Indicators",
    "source": "The World Bank, World Development Indicators, indicator SP.DYN.TFRT.IN "
    "(from UN Population Division World Population Prospects, national statistical offices, "
    "Eurostat and others); as distributed in statsmodels.datasets.fertility",
    "license": "CC BY 4.0 (World Bank open data terms of use)",
    "comment": f"Countries only (aggregates dropped), observed in at least {MIN_YEARS} years; "
    "NaN marks a year without a value.",
}
encoding = {"fertility": {"zlib": True, "complevel": 4, "_FillValue": np.nan}}
ds.to_netcdf("data/fertility_worldbank.nc", encoding=encoding)
print(ds)
