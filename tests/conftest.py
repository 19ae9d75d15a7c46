"""Shared test set-up.

- `../shared` (beside the repository) holds the real data and NLTK corpora;
  tests that need it use the `shared_dir`/`sst2_dir`/`charlm_dir` fixtures and
  skip with a reason when it is absent. `NLTK_DATA` points at
  `../shared/nltk_data` when the user has not set it.
- The CPU is split into two logical devices before TensorFlow starts, so that
  MirroredStrategy tests have two replicas on this GPU-less machine.
"""

import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if (SHARED / "nltk_data").is_dir():
    os.environ.setdefault("NLTK_DATA", str(SHARED / "nltk_data"))

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
)

import tfcompress  # noqa: E402,F401


def _need(path, what):
    if not path.exists():
        pytest.skip(f"{what} not found at {path}: these tests read ../shared beside the repository")
    return path


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Preprocessing caches go to a temporary folder, not ~/.cache."""
    old = os.environ.get("TFCOMPRESS_CACHE_DIR")
    os.environ["TFCOMPRESS_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("TFCOMPRESS_CACHE_DIR", None)
    else:
        os.environ["TFCOMPRESS_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def shared_dir():
    return _need(SHARED, "the shared data folder")


@pytest.fixture(scope="session")
def sst2_dir():
    return _need(SHARED / "data" / "sst2", "SST-2")


@pytest.fixture(scope="session")
def charlm_dir():
    return _need(SHARED / "data" / "charlm", "the character-LM corpora")


@pytest.fixture(scope="session")
def nltk_data_dir():
    return _need(SHARED / "nltk_data", "the NLTK data folder")


def need_nltk(*resources, language="english"):
    """Skips the calling test (or parameter case) unless NLTK finds each
    resource (`"punkt_tab"`, `"stopwords"`, `"wordnet"`) wherever NLTK_DATA
    and NLTK's own search path point: only the cases that read that data are
    skipped, and the reason names what is missing."""
    from tfcompress.text import nltk_data

    for resource in resources:
        try:
            nltk_data.require(resource, language=language)
        except nltk_data.MissingNLTKData:
            pytest.skip(f"NLTK data {resource!r} ({language}) not found; set NLTK_DATA or put ../shared/nltk_data beside the repository")


@pytest.fixture(scope="session")
def mirrored():
    """One MirroredStrategy over the two logical CPUs, shared by every test:
    separate strategies in one process reuse collective instance keys, and
    their all-reduces then collide ("Shape mismatch in the collective instance")."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def keras():
    """tf_keras, with the session cleared and the float32 policy restored."""
    k = tfcompress.keras
    k.backend.clear_session()
    yield k
    k.mixed_precision.set_global_policy("float32")
