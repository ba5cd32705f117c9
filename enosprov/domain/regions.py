"""EnOS environment (region) ids, checked where a user types one: a typo such as ``eu9`` would
otherwise land in every burned file and every allocation.

[ENOSPROV] EnOS publishes no list of its environments. The default list holds the environment
ids its documentation names (the DPS and API gateway addresses ``iot-dps-eu2``, ``iot-dps-us2``,
``support-cn5``, ``apim-ppe1``); a tenant elsewhere, or a private deployment, adds its ids with
``ENOSPROV_REGIONS`` (comma-separated, e.g. ``cn6,az1``), or turns the check off with
``ENOSPROV_REGIONS=*``. docs/csv-format.md, "Allocation target columns".
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping

DOCUMENTED_REGIONS = ("cn5", "eu2", "us2", "ppe1")
REGIONS_ENV = "ENOSPROV_REGIONS"


def known_regions(env: Mapping[str, str] | None = None) -> tuple[list[str], bool]:
    """(the known environment ids, whether any id is accepted: ``ENOSPROV_REGIONS=*``)."""
    env = os.environ if env is None else env
    extra = [r.strip() for r in env.get(REGIONS_ENV, "").split(",") if r.strip()]
    known = list(dict.fromkeys([*DOCUMENTED_REGIONS, *(r for r in extra if r != "*")]))
    return known, "*" in extra


def region_problem(region: str, env: Mapping[str, str] | None = None) -> str | None:
    """Why ``region`` is not a known EnOS environment id (with the nearest one), or None."""
    known, anything = known_regions(env)
    if anything or region in known:
        return None
    near = difflib.get_close_matches(region, known, n=1, cutoff=0.5)
    guess = f" (did you mean {near[0]}?)" if near else ""
    return (
        f"region {region!r} is not a known EnOS environment{guess}; known: {', '.join(known)}. "
        f"Another environment or a private deployment: set {REGIONS_ENV}={region} (several: "
        f"comma-separated; * accepts any)"
    )
