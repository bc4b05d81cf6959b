"""Regenerate ``jacksboro_dem.nc`` from matplotlib's bundled sample data (offline)."""

import numpy as np
import xarray as xr
from matplotlib import cbook

with np.load(cbook.get_sample_data("jacksboro_fault_dem.npz", asfileobj=False)) as dem:
    z = dem["elevation"].astype(np.float64)
    lon = np.linspace(float(dem["xmin"]), float(dem["xmax"]), z.shape[1])
    lat = np.linspace(float(dem["ymin"]), float(dem["ymax"]), z.shape[0])  # row 0 is north
STEP = 2  # every second cell: 6 arc-seconds, 172 x 202 cells
da = xr.DataArray(
    z[::STEP, ::STEP][::-1],
    dims=("lat", "lon"),
    coords={"lat": lat[::STEP][::-1], "lon": lon[::STEP]},
    name="elevation",
    attrs={"long_name": "surface elevation", "units": "m"},
)
da["lat"].attrs = {"long_name": "latitude", "units": "degrees_north"}
da["lon"].attrs = {"long_name": "longitude", "units": "degrees_east"}
ds = da.to_dataset()
ds.attrs = {
    "title": "Elevation around the Jacksboro Fault, Tennessee (SRTM)",
    "source": "Shuttle Radar Topography Mission (SRTM) elevation, 3 arc-second grid, as "
    "distributed in matplotlib's sample data (jacksboro_fault_dem.npz, added in matplotlib "
    "pull request 3291), subsampled to every second cell",
    "license": "public domain (SRTM, NASA / USGS)",
}
ds.to_netcdf(
    "data/jacksboro_dem.nc",
    encoding={"elevation": {"zlib": True, "complevel": 6, "dtype": "int16", "_FillValue": -32768}},
)
print(ds)
