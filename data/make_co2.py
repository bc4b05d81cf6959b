"""Regenerate ``co2_mauna_loa.nc`` from the copy bundled with statsmodels (offline)."""

import numpy as np
import statsmodels.datasets.co2 as co2
import xarray as xr

frame = co2.load_pandas().data
da = xr.DataArray(
    frame["co2"].to_numpy(dtype="float64"),
    dims="time",
    coords={"time": frame.index.to_numpy().astype("datetime64[ns]")},
    name="co2",
    attrs={
        "long_name": "atmospheric CO2 mole fraction",
        "units": "ppm",
        "standard_name": "mole_fraction_of_carbon_dioxide_in_air",
    },
)
da["time"].attrs = {"long_name": "time (week ending)"}
ds = da.to_dataset()
ds.attrs = {
    "title": "Mauna Loa atmospheric CO2, weekly",
    "source": "Keeling, C.D. and T.P. Whorf (2004), Atmospheric CO2 concentrations derived from "
    "flask air samples at sites in the SIO network, Trends: A Compendium of Data on Global "
    "Change, CDIAC, Oak Ridge National Laboratory; as distributed in statsmodels.datasets.co2",
    "license": "public domain",
    "comment": "Weekly averages 1958-03-29 to 2001-12-29; NaN marks weeks without a measurement.",
}
encoding = {
    "co2": {"zlib": True, "complevel": 4, "_FillValue": np.nan},
    "time": {"units": "days since 1958-01-01", "dtype": "int32"},
}
ds.to_netcdf("data/co2_mauna_loa.nc", engine="netcdf4", encoding=encoding)
