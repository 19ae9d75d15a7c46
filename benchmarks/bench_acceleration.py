"""Training throughput of the SST-2 LSTM classifier: precision, XLA, workers.

Part 1 (one process): examples/second of `model.fit` on SST-2 token ids for
the default `lstm_classifier` in float32, mixed_float16, float32 + XLA
(`jit_compile=True`) and mixed_float16 + XLA, plus a distillation step with
and without XLA. Each configuration trains `--steps` steps after a warm-up;
the configurations are interleaved over rounds so drifts of the machine hit
all alike.

Part 2: one worker vs two workers (MultiWorkerMirroredStrategy from TF_CONFIG,
two processes on 127.0.0.1), same global batch and steps; global
examples/second from the chief.

This machine has 2 CPU cores and no GPU: mixed precision is emulated on CPUs
and two workers share the same two cores, so these figures say what the code
does here, not what a GPU or a second machine would give.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np

from common import emit, parser, sst2, table

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_throughput_worker.py")


class _StepTimer:
    def __init__(self, warmup):
        self.warmup, self.times, self.t0 = warmup, [], None

    def callback(self, keras):
        timer = self

        class C(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                timer.t0 = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                if batch >= timer.warmup:
                    timer.times.append(time.perf_counter() - timer.t0)

        return C()


def throughput(build, x, y, steps, batch, keras, warmup=10):
    """(examples/s over the timed steps, seconds of the first step)."""
    model = build()
    timer = _StepTimer(warmup)
    n = (steps + warmup) * batch
    first = _StepTimer(0)
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=[first.callback(keras)])
    model.fit(x[: n - batch], y[: n - batch], batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=[timer.callback(keras)])
    return batch / float(np.median(timer.times)), first.times[0]


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_workers(n, steps, batch):
    ports = free_ports(n)
    cluster = [f"127.0.0.1:{p}" for p in ports]
    procs = []
    for index in range(n):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        if n > 1:
            env["TF_CONFIG"] = json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}})
        else:
            env.pop("TF_CONFIG", None)
        procs.append(
            subprocess.Popen(
                [sys.executable, WORKER, str(steps), str(batch)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outs = [p.communicate(timeout=1800) for p in procs]
    for p, (out, err) in zip(procs, outs):
        if p.returncode != 0:
            raise RuntimeError(f"worker failed: {err[-2000:]}")
    return json.loads(outs[0][0].strip().splitlines()[-1])


def main():
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    from tfcompress import distillation, keras, models, precision, text

    train, _ = sst2(limit=20000 if args.quick else None)
    _, x = text.TextEncoder.fit_transform(train.texts, max_len=64)
    y = train.labels
    vocab = int(x.max()) + 1
    batch = 128
    steps = 15 if args.quick else args.steps

    def classifier(policy, xla):
        def build():
            keras.backend.clear_session()
            keras.utils.set_random_seed(0)
            with precision.policy_scope(policy):
                model = models.lstm_classifier(vocab, max_len=64, compile=False)
                model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", ["accuracy"], jit_compile=xla)
            return model

        return build

    def distiller(xla):
        def build():
            keras.backend.clear_session()
            teacher = models.lstm_classifier(vocab, max_len=64, embedding_dim=128, units=128)
            student = models.lstm_classifier(vocab, max_len=64, embedding_dim=16, units=16, compile=False)
            d = distillation.Distiller(teacher, student, cache_teacher=False)
            d.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", jit_compile=xla)
            return d

        return build

    # XLA trains LSTMs extremely slowly on this CPU (seconds per step), so its
    # configurations are timed on a few steps only.
    xla_steps = 3 if args.quick else 5
    configs = {
        "float32": (classifier("float32", False), steps, 10),
        "mixed_float16": (classifier("mixed_float16", False), steps, 10),
        "float32 + XLA": (classifier("float32", True), xla_steps, 2),
        "mixed_float16 + XLA": (classifier("mixed_float16", True), xla_steps, 2),
        "distillation step (teacher 128, student 16)": (distiller(False), steps, 10),
        "distillation step + XLA": (distiller(True), xla_steps, 2),
    }
    import warnings

    warnings.filterwarnings("ignore", message=".*will probably not speed this machine up.*")
    results = {name: [] for name in configs}
    first_step = {name: [] for name in configs}
    for r in range(args.rounds):
        for name, (build, n_steps, warm) in configs.items():
            rate, first = throughput(build, x, y, n_steps, batch, keras, warmup=warm)
            results[name].append(rate)
            first_step[name].append(first)
            print(f"round {r}: {name}: {rate:,.0f} examples/s (first step {first:.1f} s)", flush=True)
    base = np.median(results["float32"])
    dist_base = np.median(results["distillation step (teacher 128, student 16)"])
    rows = []
    for name, values in results.items():
        ref = dist_base if name.startswith("distillation") else base
        n_steps = configs[name][1]
        rows.append([name, f"{np.median(values):,.0f}", f"{np.median(values) / ref:.2f}×", f"{np.median(first_step[name]):.1f}", str(n_steps)])

    one = run_workers(1, steps, batch)
    two = run_workers(2, steps, batch)
    worker_rows = [
        ["1 worker (default strategy)", f"{one['examples_per_s']:,.0f}", "1.00×"],
        ["2 workers, MultiWorkerMirroredStrategy, 127.0.0.1", f"{two['examples_per_s']:,.0f}", f"{two['examples_per_s'] / one['examples_per_s']:.2f}×"],
    ]
    body = f"""
Default `lstm_classifier` (vocabulary {vocab:,}, length 64, Embedding 64 → LSTM 64), batch {batch}, median step
time over the timed steps after warm-up steps (10; XLA: 2), {args.rounds} interleaved rounds (median reported). Ratios are
against float32 (distillation rows: against the distillation step without XLA).

{table(["configuration", "examples/s", "vs baseline", "first step s (tracing/compiling)", "timed steps"], rows)}

Workers (global batch {batch}, {steps} steps, examples/s over the timed steps, from worker 0):

{table(["setup", "examples/s", "vs 1 worker"], worker_rows)}

**Which figures need a GPU (or a second machine) to mean anything.** mixed_float16 on this CPU runs
TensorFlow's CPU kernels, which gain nothing measurable from float16 for this LSTM: the ratio says nothing
about a GPU of compute capability ≥ 7.0, where float16 tensor cores are expected to help. XLA
(`jit_compile=True`) compiles the LSTM's time loop badly on this CPU (each step takes seconds); its effect on a
GPU differs and has to be measured there. Two workers on one 2-core machine share the same two cores and
synchronise over loopback: the figure shows the cost of synchronisation, not the scaling across machines.
"""
    emit(args, "Acceleration: precision, XLA and workers (issue 7)", body)


if __name__ == "__main__":
    main()
