"""Packaging, command line, README and CI wiring."""

import configparser
import importlib.metadata
import re
import subprocess
import sys

import tf_keras

import tfcompress
from conftest import REPO


def _setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg


def test_version_comes_from_package_metadata():
    assert tfcompress.__version__ == importlib.metadata.version("tfcompress")
    assert tfcompress.__version__ == _setup_cfg()["metadata"]["version"]


def test_the_one_keras_is_tf_keras():
    assert tfcompress.keras is tf_keras


def test_dependencies_are_pinned_to_ranges_that_work_together():
    cfg = _setup_cfg()
    requires = cfg["options"]["install_requires"]
    for pin in (
        "tensorflow>=2.21,<2.22",
        "tf-keras>=2.21,<2.22",
        "keras>=3.15,<3.16",  # its keras.src internals are read
        "tensorflow-model-optimization>=0.8.1",
        "ai-edge-litert>=2.0",
        "nltk>=3.9",
        "numpy",
    ):
        assert pin in requires
    extras = cfg["options.extras_require"]
    assert set(extras) >= {"test", "notebooks", "tensorboard", "gpu"}
    assert "tensorboard>=2.21,<2.22" in extras["tensorboard"] and "tensorboard" in extras["test"]
    assert "tensorflow[and-cuda]" in extras["gpu"]
    assert "tfcompress = tfcompress.cli:main" in cfg["options.entry_points"]["console_scripts"]


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "tfcompress", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_version_and_help():
    version = _cli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith(f"tfcompress {tfcompress.__version__} (tensorflow 2.21")
    help_ = _cli("--help")
    assert help_.returncode == 0
    assert "usage: tfcompress" in help_.stdout and "demo" in help_.stdout


def test_console_script_is_installed():
    scripts = [ep for ep in importlib.metadata.entry_points(group="console_scripts") if ep.name == "tfcompress"]
    assert scripts and scripts[0].value == "tfcompress.cli:main"


def _fenced_after(marker):
    text = (REPO / "README.md").read_text()
    match = re.search(re.escape(marker) + r"\s*```sh\n(.*?)\n```", text, re.S)
    assert match, f"README has no fenced command after {marker}"
    return match.group(1).strip()


def test_readme_has_exactly_two_setup_commands():
    text = (REPO / "README.md").read_text()
    assert text.count("<!-- test-command -->") == 1
    assert text.count("<!-- demo-command -->") == 1
    test_cmd = _fenced_after("<!-- test-command -->")
    demo_cmd = _fenced_after("<!-- demo-command -->")
    for cmd in (test_cmd, demo_cmd):
        assert "\n" not in cmd
        assert cmd.startswith("python3 -m venv .venv && .venv/bin/pip install")
    assert "'.[test]'" in test_cmd and "pytest" in test_cmd
    assert demo_cmd.endswith("tfcompress demo")


def test_ci_runs_the_readme_test_command():
    out = subprocess.run(
        [str(REPO / ".ci" / "run"), "--print-command"], capture_output=True, text=True
    )
    assert out.stdout.strip() == _fenced_after("<!-- test-command -->")


def test_top_level_layout():
    for path in ("setup.cfg", "pyproject.toml", "README.md", ".ci/run", "tfcompress", "tests", "notebooks"):
        assert (REPO / path).exists(), path
