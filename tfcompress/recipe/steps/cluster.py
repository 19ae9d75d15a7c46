"""`cluster`: weight clustering while training (TFMOT), wrappers stripped after."""

from tfcompress.recipe import schema
from tfcompress.recipe.step import Flag, Step, StepResult, register_step, training_flags
from tfcompress.recipe.steps.prune import _layer_selection


def _clusters(v):
    return isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= 256


@register_step
class Cluster(Step):
    name = "cluster"
    summary = "cluster each weight to a few shared values while training (kept through quantize and export)"
    schema = {
        **schema.TRAINING,
        "clusters": (schema.expects("an integer in [2, 256]")(_clusters), 16),
        "init": (schema.choice("kmeans++", "linear", "density", "random"), "kmeans++"),
        "preserve_sparsity": (schema.choice("auto", True, False), "auto"),
        "per_channel": (schema.choice(True, False), False),
        "layers": (schema.optional(schema.str_list, "a list of layer names or class names, or null"), None),
    }
    flags = (
        *training_flags(1),
        Flag("--clusters", "clusters", int, 16, "values per weight for the cluster step (default: 16)"),
    )

    def validate(self, args, earlier, config, fail):
        if any(name == "quantize" for name, _ in earlier):
            fail([], "clustering cannot follow quantize (a QAT model cannot be re-wrapped for clustering)", "cluster first, then quantize: the clusters are kept through QAT")
        if args["preserve_sparsity"] is True and args["clusters"] < 3:
            fail(["clusters"], "with preserve_sparsity one cluster is the zeros, so at least 3 are needed", "clusters: 3 or more")
        return args

    def run(self, ctx, args):
        from tfcompress import clustering

        model = ctx.require_model()
        with ctx.float32_scope():
            clustered = clustering.cluster(
                model,
                clusters=args["clusters"],
                init=args["init"],
                preserve_sparsity=args["preserve_sparsity"],
                per_channel=args["per_channel"],
                layers=_layer_selection(args["layers"]),
            )
            report = clustered.tfcompress_clustering_report
            clustered = ctx.fit(clustered, {**args, "learning_rate": args["learning_rate"] or 1e-4}, default_lr=1e-4)
        model = clustering.strip(clustered)
        most = clustering.cluster_report(model).max_distinct(per_channel=args["per_channel"])
        where = "channel" if args["per_channel"] else "weight"
        notes = f"{len(report['clustered'])} layers, at most {most} values per {where}" + (", zeros kept" if report["preserve_sparsity"] else "")
        label = f"cluster {args['clusters']}" + (" per channel" if args["per_channel"] else "")
        return StepResult(model, [ctx.keras_record(label, model, notes)])
