"""`export`: TFLite files in the asked modes, each measured against dev."""

import os

from tfcompress.recipe import schema
from tfcompress.recipe.step import Flag, Step, StepResult, register_step

MODES = ("float32", "float16", "dynamic", "int8")


@register_step
class Export(Step):
    name = "export"
    summary = "write .tflite files (+ deployment files) and measure each on dev: accuracy, agreement, size, latency"
    schema = {
        "name": (
            schema.expects("a file stem of letters, digits, '-' and '_', or null")(
                lambda v: v is None or (isinstance(v, str) and v.replace("-", "").replace("_", "").isalnum())
            ),
            None,
        ),
        "modes": (
            schema.expects("a non-empty list of " + ", ".join(repr(m) for m in MODES))(
                lambda v: isinstance(v, list) and bool(v) and all(m in MODES for m in v)
            ),
            ["dynamic"],
        ),
        "representative_samples": (schema.positive_int, 300),
        "sparse": (schema.choice("auto", True, False), "auto"),
        "latency_runs": (schema.nonneg_int, 200),
        "recurrent": (schema.choice("auto", "unrolled", "loop", "fused"), "auto"),
        "verify_threshold": (
            schema.optional(
                schema.expects("a number in (0, 1]")(lambda v: schema.unit(v) and v > 0),
                "a share of dev examples in (0, 1], or null (0.99; 0.98 for int8)",
            ),
            None,
        ),
    }
    flags = (
        Flag("--modes", "modes", lambda s: s.split(","), ["dynamic"], "export modes, comma-separated (default: dynamic)"),
        Flag(
            "--recurrent",
            "recurrent",
            str,
            "auto",
            "how LSTM/GRU layers go into the .tflite: auto (stateless: a loop, unrolled for int8), unrolled, loop, or "
            "fused (keeps state between invokes, for streaming; the app must reset it)",
        ),
    )
    saves_model = False

    def validate(self, args, earlier, config, fail):
        exports = [a for name, a in earlier if name == "export"]
        stem = args["name"] or ("model" if not exports else f"model-{len(earlier) + 1}")
        if stem in [a["name"] for a in exports]:
            fail(["name"], f"another export step already writes {stem!r}", "give each export step its own name")
        return {**args, "name": stem}

    def run(self, ctx, args):
        from tfcompress import export, quantization
        from tfcompress.report import Record

        model = ctx.require_model()
        records = []
        lm = ctx.task == "language_model"
        for i, mode in enumerate(args["modes"]):
            filename = f"{args['name']}.tflite" if i == 0 else f"{args['name']}-{mode}.tflite"
            path = os.path.join(ctx.out, filename)
            result = export.to_tflite(
                model,
                path,
                mode=mode,
                representative_data=ctx.calibration_inputs(args["representative_samples"]),
                calibration_samples=args["representative_samples"],
                sparse=args["sparse"],
                seq_len=ctx.meta["max_len"],
                encoder=ctx.encoder,
                labels=ctx.meta["labels"],
                vocabulary=ctx.vocab if lm else None,
                recurrent=args["recurrent"],
                verify=ctx.data["x_dev"],
                verify_threshold=args["verify_threshold"],
            )
            # Agreement with the Keras model the file computes: the QAT model simulates int8
            # activations, which only an int8 file has; float32/float16/dynamic files compute
            # the stripped model (QAT weights baked, float activations).
            reference = model if mode == "int8" else quantization.strip(model)
            r = export.evaluate(path, (ctx.data["x_dev"], ctx.data["y_dev"]), reference=reference, latency_runs=args["latency_runs"], verbose=False, return_outputs=lm)
            name, value, higher, accuracy = ctx.metric(r["outputs"]) if lm else ("accuracy", r["accuracy"], True, r["accuracy"])
            notes = f"agreement {r['agreement']:.1%}" + ("; sparse encoding" if result.sparse_encoding else "")
            if result.recurrent_form:
                notes += f"; recurrent {result.recurrent_form}" + ("; keeps state: reset per input" if result.stateful else "")
            if lm:
                notes += f"; accuracy {accuracy:.4f}"
            records.append(
                Record(f"export {args['name']} {mode}", "tflite", None, r["bytes"], r["gzip_bytes"], name, value, higher, r.get("latency_ms_median"), None, f"{filename}; {notes}")
            )
        return StepResult(None, records)
