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
    model = build()
    timer = _StepTimer(warmup)
    n = (steps + warmup) * batch
    model.fit(x[:n], y[:n], batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=[timer.callback(keras)])
    return batch / float(np.median(timer.times))


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

    configs = {
        "float32": classifier("float32", False),
        "mixed_float16": classifier("mixed_float16", False),
        "float32 + XLA": classifier("float32", True),
        "mixed_float16 + XLA": classifier("mixed_float16", True),
        "distillation step (teacher 128, student 16)": distiller(False),
        "distillation step + XLA": distiller(True),
    }
    import warnings

    warnings.filterwarnings("ignore", message=".*will probably not speed this machine up.*")
    results = {name: [] for name in configs}
    for r in range(args.rounds):
        for name, build in configs.items():
            results[name].append(throughput(build, x, y, steps, batch, keras))
            print(f"round {r}: {name}: {results[name][-1]:,.0f} examples/s", flush=True)
    base = np.median(results["float32"])
    dist_base = np.median(results["distillation step (teacher 128, student 16)"])
    rows = []
    for name, values in results.items():
        ref = dist_base if name.startswith("distillation") else base
        rows.append([name, f"{np.median(values):,.0f}", f"{np.median(values) / ref:.2f}×"])

    one = run_workers(1, steps, batch)
    two = run_workers(2, steps, batch)
    worker_rows = [
        ["1 worker (default strategy)", f"{one['examples_per_s']:,.0f}", "1.00×"],
        ["2 workers, MultiWorkerMirroredStrategy, 127.0.0.1", f"{two['examples_per_s']:,.0f}", f"{two['examples_per_s'] / one['examples_per_s']:.2f}×"],
    ]
    body = f"""
Default `lstm_classifier` (vocabulary {vocab:,}, length 64, Embedding 64 → LSTM 64), batch {batch}, median step
time over {steps} steps after 10 warm-up steps, {args.rounds} interleaved rounds (median reported). Ratios are
against float32 (distillation rows: against the distillation step without XLA).

{table(["configuration", "examples/s", "vs baseline"], rows)}

Workers (global batch {batch}, {steps} steps, examples/s over the timed steps, from worker 0):

{table(["setup", "examples/s", "vs 1 worker"], worker_rows)}

**Which figures need a GPU (or a second machine) to mean anything.** mixed_float16 here runs float16
arithmetic emulated on a CPU with no float16 units: its slowdown says nothing about a GPU of compute
capability ≥ 7.0, where it is expected to help. XLA on CPU fuses the LSTM step differently; its GPU effect
differs. Two workers on one 2-core machine share the same cores and talk over loopback: the figure shows the
synchronisation cost, not the scaling across machines.
"""
    emit(args, "Acceleration: precision, XLA and workers (issue 7)", body)


if __name__ == "__main__":
    main()
