"""Devices and strategies: GPU memory, one device to many workers, XLA.

- `configure_gpus(memory_growth=True, memory_limit_mb=None, visible=None)` is
  the modern form of TF1's `per_process_gpu_memory_fraction`: allocate GPU
  memory as needed, or cap it, and choose which GPUs this process sees. It must
  run before TensorFlow initialises the GPUs (before the first op or model);
  called later it raises a `RuntimeError` that says so. Calling it again with
  the same settings does nothing; on a machine without a GPU it does nothing
  and says why.
- `strategy()` picks the `tf.distribute` strategy: multi-worker mirrored when
  `TF_CONFIG` describes a cluster, mirrored over several local GPUs, the
  default (one device) otherwise. Build and compile models inside
  `strategy.scope()`; pruning, QAT, distillation and plain training all work
  there.
- `logical_cpus(n)` splits the CPU into `n` devices, to try a mirrored
  strategy on a machine without GPUs.
- XLA: pass `jit_compile=True` to `model.compile` (or `Distiller.compile`).

Multi-worker training on several machines: start the same script on each,
with `TF_CONFIG` naming every worker and this one's index, e.g.
`TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
"task": {"type": "worker", "index": 0}}'` on host1 and index 1 on host2.
`strategy()` then returns a `MultiWorkerMirroredStrategy`; each worker must
see the same data pipeline (it is sharded automatically).
"""

import json
import logging
import os

import tensorflow as tf

__all__ = ["configure_gpus", "strategy", "logical_cpus", "describe", "tf_config_cluster"]

log = logging.getLogger("tfcompress")

_APPLIED = {}

_TOO_LATE = (
    "TensorFlow has already initialised its {kind} devices in this process (some op, "
    "model or device query ran first), and device settings cannot change after that. "
    "Fix: call tfcompress.devices.{call} at the very start of the program, right after "
    "the imports and before building any model or running any TensorFlow op."
)


def configure_gpus(memory_growth=None, memory_limit_mb=None, visible=None):
    """Configures how this process uses its GPUs.

    Args:
        memory_growth: allocate GPU memory as it is needed instead of all at
            once. Default: True, unless `memory_limit_mb` is given.
        memory_limit_mb: cap each visible GPU at this many MiB (a logical
            device of that size); the replacement for TF1's memory fraction.
            Cannot be combined with `memory_growth=True`.
        visible: indices of the GPUs this process may use (default: all).

    Returns:
        A dict: `gpus` (names of the visible GPUs), `configured` (bool) and
        `message` (what was done, or why nothing was).

    Raises:
        ValueError: conflicting or invalid arguments.
        RuntimeError: TensorFlow initialised the GPUs already.
    """
    if memory_limit_mb is not None:
        if not isinstance(memory_limit_mb, int) or memory_limit_mb <= 0:
            raise ValueError(
                f"memory_limit_mb must be a positive integer (MiB). Received: memory_limit_mb={memory_limit_mb!r}."
            )
        if memory_growth:
            raise ValueError(
                "memory_growth=True and memory_limit_mb=... conflict: a capped GPU is a fixed-size "
                "logical device. Fix: pass one of them."
            )
    growth = memory_growth if memory_growth is not None else memory_limit_mb is None
    gpus = tf.config.list_physical_devices("GPU")
    settings = {"memory_growth": growth, "memory_limit_mb": memory_limit_mb, "visible": tuple(visible) if visible is not None else None}
    if not gpus:
        message = (
            "No GPU found (TensorFlow sees only CPUs here); configure_gpus() has nothing to do. "
            "Training runs on the CPU."
        )
        log.info(message)
        return {"gpus": [], "configured": False, "message": message}
    if visible is not None:
        bad = [i for i in visible if not isinstance(i, int) or not 0 <= i < len(gpus)]
        if bad:
            raise ValueError(f"visible={list(visible)}: this machine has GPUs 0..{len(gpus) - 1}.")
        chosen = [gpus[i] for i in visible]
    else:
        chosen = gpus
    if _APPLIED.get("GPU") == settings:
        return {"gpus": [g.name for g in chosen], "configured": True, "message": "already configured (no change)"}
    try:
        if visible is not None:
            tf.config.set_visible_devices(chosen, "GPU")
        for gpu in chosen:
            if memory_limit_mb is not None:
                tf.config.set_logical_device_configuration(
                    gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=memory_limit_mb)]
                )
            else:
                tf.config.experimental.set_memory_growth(gpu, growth)
    except RuntimeError as err:
        raise RuntimeError(_TOO_LATE.format(kind="GPU", call="configure_gpus()") + f" (TensorFlow: {err})") from None
    _APPLIED["GPU"] = settings
    what = f"memory limit {memory_limit_mb} MiB" if memory_limit_mb else f"memory growth {'on' if growth else 'off'}"
    message = f"{len(chosen)} GPU(s) configured: {what}"
    log.info(message)
    return {"gpus": [g.name for g in chosen], "configured": True, "message": message}


def logical_cpus(n):
    """Splits the first CPU into `n` logical devices (for mirrored training
    without GPUs). Must run before TensorFlow initialises its devices; calling
    it again with the same `n` does nothing.

    Returns:
        The logical CPU device names.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer. Received: n={n!r}.")
    cpus = tf.config.list_physical_devices("CPU")
    if _APPLIED.get("CPU") == n:
        return [d.name for d in tf.config.list_logical_devices("CPU")]
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError as err:
        current = tf.config.list_logical_devices("CPU")
        if len(current) == n:  # configured before, by someone else
            _APPLIED["CPU"] = n
            return [d.name for d in current]
        raise RuntimeError(
            _TOO_LATE.format(kind="CPU", call=f"logical_cpus({n})")
            + f" It has {len(current)} logical CPU(s) now. (TensorFlow: {err})"
        ) from None
    _APPLIED["CPU"] = n
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def tf_config_cluster():
    """The cluster in `TF_CONFIG` as {"workers": [...], "index": i}, or None."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON ({err.msg} at character {err.pos}): {raw[:200]!r}") from None
    cluster = config.get("cluster", {})
    workers = cluster.get("worker", []) + cluster.get("chief", [])
    task = config.get("task", {})
    if not workers or "index" not in task or "type" not in task:
        raise ValueError(
            "TF_CONFIG must name the cluster's workers and this task, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}. '
            f"Received: {raw[:200]!r}"
        )
    return {"workers": workers, "index": task["index"], "type": task["type"]}


def strategy(kind="auto", devices=None):
    """Chooses a `tf.distribute` strategy.

    Args:
        kind: `"auto"` (multi-worker if `TF_CONFIG` has a cluster of more than
            one worker, mirrored if several GPUs are visible, else the default
            strategy), or one of `"default"`, `"one_device"`, `"mirrored"`,
            `"multi_worker"`.
        devices: for `"mirrored"`, the devices to mirror over (e.g.
            `logical_cpus(2)`); for `"one_device"`, the device.

    Returns:
        The strategy. Build and compile models inside `strategy.scope()`.
    """
    kinds = ("auto", "default", "one_device", "mirrored", "multi_worker")
    if kind not in kinds:
        raise ValueError(f"kind must be one of {kinds}. Received: kind={kind!r}.")
    if kind == "auto":
        cluster = tf_config_cluster()
        if cluster and len(cluster["workers"]) > 1:
            kind = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "multi_worker":
        chosen = tf.distribute.MultiWorkerMirroredStrategy()
    elif kind == "mirrored":
        chosen = tf.distribute.MirroredStrategy(devices)
    elif kind == "one_device":
        device = devices or ("/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0")
        chosen = tf.distribute.OneDeviceStrategy(device)
    else:
        chosen = tf.distribute.get_strategy()
    log.info("strategy: %s with %d replica(s)", type(chosen).__name__, chosen.num_replicas_in_sync)
    return chosen


def describe():
    """A short description of the devices TensorFlow sees (a dict)."""
    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(gpu)
        except (ValueError, RuntimeError):  # pragma: no cover
            details = {}
        gpus.append({"name": gpu.name, "model": details.get("device_name"), "compute_capability": details.get("compute_capability")})
    return {
        "cpus": len(tf.config.list_physical_devices("CPU")),
        "logical_cpus": len(tf.config.list_logical_devices("CPU")),
        "gpus": gpus,
        "tf_config": tf_config_cluster(),
        "built_with_cuda": tf.test.is_built_with_cuda(),
    }
