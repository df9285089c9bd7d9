import ctypes
import os
import subprocess

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


def _loopback_only() -> bool:
    """Moves this test process into a network namespace of its own holding only ``lo`` (where it
    may: root or CAP_NET_ADMIN): Ray 2.60's servers bind every interface, and Ray's processes, its
    children, inherit the namespace, so nothing listens beyond loopback."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
        return False
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    return True


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray (2 CPUs, no dashboard) for a test module; True when it listens on loopback only."""
    pytest.importorskip("ray", reason="hashindex[distributed] (Ray) is not installed")
    import ray

    from hashindex import distributed

    isolated = _loopback_only()
    distributed.start_local_ray(num_cpus=2, _node_ip_address="127.0.0.1", configure_logging=False)
    yield isolated
    ray.shutdown()
