"""Sparsity schedules: how the fraction of zeros grows during training."""

from tfcompress.pruning.layers import tfmot_sparsity


def check_sparsity(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(
            f"{name} must be a number in [0, 1): the fraction of weights set to zero "
            f"(0.8 keeps one weight in five). Received: {name}={value!r}."
        )


def schedule(
    target_sparsity,
    kind="auto",
    begin_step=0,
    end_step=None,
    epochs=None,
    steps_per_epoch=None,
    frequency=None,
    initial_sparsity=0.0,
    power=3,
):
    """Builds a TFMOT pruning schedule.

    Args:
        target_sparsity: final fraction of zeros, in [0, 1).
        kind: `"constant"` (the target from `begin_step` on), `"polynomial"`
            (from `initial_sparsity` at `begin_step` up to the target at
            `end_step`, then held), or `"auto"`: polynomial when the end can be
            known (`end_step`, or `epochs` and `steps_per_epoch`), else constant.
        begin_step: optimizer step (0 = the first) where pruning starts; a
            constant schedule prunes to the target right there.
        end_step: step where the polynomial schedule reaches the target. If
            `None`, it is derived: 75% of `epochs * steps_per_epoch`, leaving
            the last quarter of training to recover at the final sparsity.
        epochs, steps_per_epoch: the length of the training you will run.
        frequency: steps between mask updates; default 100, or fewer for short
            training so that the ramp has at least ten updates.
        initial_sparsity: sparsity at `begin_step` (polynomial).
        power: the polynomial's exponent (3 prunes fast early, then slowly).

    Returns:
        A `tfmot.sparsity.keras.PruningSchedule`.
    """
    check_sparsity("target_sparsity", target_sparsity)
    check_sparsity("initial_sparsity", initial_sparsity)
    if kind not in ("auto", "constant", "polynomial"):
        raise ValueError(
            f"schedule must be 'auto', 'constant' or 'polynomial'. Received: schedule={kind!r}."
        )
    for name, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}.")
    if not isinstance(begin_step, int) or begin_step < 0:
        raise ValueError(f"begin_step must be an integer >= 0. Received: begin_step={begin_step!r}.")
    total = epochs * steps_per_epoch if epochs and steps_per_epoch else None
    if end_step is None and total is not None:
        end_step = begin_step + max(1, int(0.75 * (total - begin_step)))
    if kind == "auto":
        kind = "polynomial" if end_step is not None else "constant"
    if kind == "polynomial":
        if end_step is None:
            raise ValueError(
                "schedule='polynomial' needs to know when to reach the target: pass "
                "end_step=..., or epochs=... and steps_per_epoch=... (the length of "
                "your training)."
            )
        if end_step <= begin_step:
            raise ValueError(
                f"end_step ({end_step}) must be greater than begin_step ({begin_step})."
            )
        if initial_sparsity > target_sparsity:
            raise ValueError(
                f"initial_sparsity ({initial_sparsity}) is above target_sparsity "
                f"({target_sparsity}); pruning never removes zeros."
            )
    if frequency is None:
        span = (end_step - begin_step) if (kind == "polynomial") else 100
        frequency = max(1, min(100, span // 10))
    if not isinstance(frequency, int) or frequency < 1:
        raise ValueError(f"frequency must be a positive integer. Received: frequency={frequency!r}.")
    # TFMOT's step counter reads 1 during the first optimizer step; ours are
    # 0-based, so step s here is TFMOT's s + 1 (a constant schedule with
    # begin_step=0 prunes at the very first step, not `frequency` steps later).
    if kind == "constant":
        return tfmot_sparsity.ConstantSparsity(
            target_sparsity,
            begin_step + 1,
            end_step=-1 if end_step is None else end_step + 1,
            frequency=frequency,
        )
    # Align the end with a mask update, so the final sparsity is really reached.
    end_step = begin_step + max(1, (end_step - begin_step) // frequency) * frequency
    return tfmot_sparsity.PolynomialDecay(
        initial_sparsity, target_sparsity, begin_step + 1, end_step + 1, power=power, frequency=frequency
    )
