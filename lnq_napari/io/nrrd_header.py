"""NRRD header fields: the standard ones, and the custom ``key:=value`` fields kept in ``Volume.meta``."""

from __future__ import annotations

# Standard NRRD fields: everything else in a header is a custom key/value field kept in Volume.meta.
NRRD_STANDARD_FIELDS = {
    "type", "dimension", "space dimension", "space", "sizes", "space directions", "kinds", "endian",
    "encoding", "min", "max", "oldmin", "old min", "oldmax", "old max", "content", "sample units",
    "spacings", "thicknesses", "axis mins", "axismins", "axis maxs", "axismaxs", "centerings", "centers",
    "labels", "units", "space units", "space origin", "measurement frame", "data file", "datafile",
    "line skip", "lineskip", "byte skip", "byteskip", "number", "block size", "blocksize",
}


def custom_fields(header: dict) -> dict[str, str]:
    """The header's custom fields (everything not a standard NRRD field), as strings."""
    return {str(k): str(v) for k, v in header.items() if str(k).lower() not in NRRD_STANDARD_FIELDS}
