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


# Phantoms at 4 mm (60 x 60 x 39 voxels) keep the MRI tests fast; every case has a tumour.
SMALL_PHANTOMS = dict(spacing=4.0, healthy_fraction=0.0)


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory):
    from hashindex.encoder.data import PhantomConfig, generate_phantoms

    root = tmp_path_factory.mktemp("phantoms")
    generate_phantoms(root, 3, seed=5, config=PhantomConfig(**SMALL_PHANTOMS), workers=1)
    return root
