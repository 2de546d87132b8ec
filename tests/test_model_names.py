"""Model version names shortened for people: the panel's status lines and compare's sources."""

from __future__ import annotations

from lnq_napari.model.names import short_model_name


def test_short_model_names_keep_short_versions_and_shorten_long_ones():
    tunes = [f"ft-20261127-15{i}0-356336d7" for i in range(4)]
    version = "+".join(["lnq-unet-20261127-1053-356336d7", *tunes])
    alias = short_model_name(version)
    assert alias == "lnq-unet 2026-11-27 10:53 +4 ft" and len(alias) <= 32
    assert short_model_name("v003") == "v003" and short_model_name(None) == "no model"
    odd = "x" * 100
    assert short_model_name(odd).endswith("...") and len(short_model_name(odd)) == 32
