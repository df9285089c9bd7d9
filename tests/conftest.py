import os

import pytest
from hypothesis import HealthCheck, settings

import hashindex

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], derandomize=True
)
settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

LEVELS = hashindex.supported_simd_levels()


@pytest.fixture(params=LEVELS)
def simd(request):
    """Runs the test once per SIMD level this CPU supports, restoring the best level after."""
    hashindex.set_simd_level(request.param)
    yield request.param
    hashindex.set_simd_level(LEVELS[-1])
