"""The accuracy-budget search: plans from a sensitivity table, rounds that go
smaller when a plan keeps the budget and back off when it does not, and the
`auto` step through recipes and the command line."""

import json
import re

import numpy as np
import pytest

from test_recipe import fit_shapes, write_dataset
from test_sensitivity import trained  # noqa: F401  (the fixture)
import tfcompress
from tfcompress import budget, cli, clustering, keras, metrics, quantization, recipe, sensitivity
from tfcompress.pruning.layers import prunable_weights
from tfcompress.recipe import Recipe, RecipeError
from tfcompress.sensitivity import prune_array


@pytest.fixture(scope="module")
def table(trained):  # noqa: F811
    model, x, y = trained
    return sensitivity.analyze(model, x, y, sparsities=[0.5, 0.8, 0.95], bits=[8], clusters=[8])


def test_the_front_runs_from_smallest_to_safest(trained, table):  # noqa: F811
    model, _, _ = trained
    front = budget.plan_front(model, table, clusters=(None, 8))
    sizes = [p.estimated_bytes for p in front]
    losses = [p.predicted_loss for p in front]
    assert sizes == sorted(sizes) and all(a > b for a, b in zip(losses, losses[1:]))  # each step up buys less loss
    assert len(front) >= 3
    safest = front[-1]
    assert not safest.prunes and safest.predicted_loss == min(losses)  # no pruning: the least lossy plan
    assert front[0].estimated_bytes < safest.estimated_bytes / 2  # tiny weights: gzip headers weigh in
    with pytest.raises(ValueError, match=r"clusters=16 was not measured by the sensitivity table"):
        budget.plan_front(model, table, clusters=(None, 16))


def test_plans_that_keep_fewer_embedding_rows_are_smaller_and_fine_tune_to_a_file_that_agrees(trained, tmp_path):  # noqa: F811
    from tfcompress import export
    from tfcompress.models import CapVocabulary

    model, x, y = trained
    counts = budget.token_counts(model, x)
    table = sensitivity.analyze(model, x, y, sparsities=[0.8], bits=[8], clusters=[8], rows=[0.5], counts=counts)
    front = budget.plan_front(model, table, clusters=(None, 8))
    with_rows = [p for p in front if p.rows]
    assert with_rows and all(p.rows == 0.5 and p.rows_layer == "embedding" for p in with_rows)
    plan = with_rows[0]
    assert plan.describe().startswith("embedding keeps 50% of its rows; ")
    same = budget._plan(budget._layer_arrays(model, list(plan.sparsity), "test"), table, plan.sparsity, plan.clusters)
    assert same.rows is None and plan.estimated_bytes < same.estimated_bytes  # the same plan with every row is larger
    assert plan.predicted_loss == pytest.approx(same.predicted_loss + max(0.0, table.loss("embedding", "rows", 0.5)))
    # A back-off from a plan whose one change is the rows keeps them all again.
    only_rows = budget._plan(budget._layer_arrays(model, list(plan.sparsity), "test"), table, dict.fromkeys(plan.sparsity, 0.0), None, 0.5)
    milder = budget.relax(only_rows, model, table, clusters=(None, 8))
    assert only_rows.rows == 0.5 and milder.rows is None and not milder.prunes and milder.estimated_bytes > only_rows.estimated_bytes
    # The fine-tune caps the ids and trains the 25-row table; the file answers as the Keras model does.
    def fit(m, epochs, learning_rate):
        m.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy")
        m.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
        return m

    tuned = budget.fine_tuner(model, fit, prune_epochs=1, counts=counts)(budget.Plan({"embedding": 0.8, "lstm": 0.0, "dense": 0.0}, None, rows=0.5, rows_layer="embedding"))
    stripped = quantization.strip(tuned)
    assert any(isinstance(layer, CapVocabulary) for layer in stripped.layers) and stripped.get_layer("embedding").input_dim == 25
    assert np.mean(stripped.get_layer("embedding").get_weights()[0] == 0) == pytest.approx(0.8, abs=0.01)
    result = export.to_tflite(tuned, tmp_path / "rows.tflite", mode="dynamic", verify=x)
    assert "MINIMUM" in result.ops and result.verification["agreement"] >= 0.99


def test_a_plan_over_budget_that_keeps_fewer_embedding_rows_backs_off_to_more_rows_first(trained):  # noqa: F811
    model, x, y = trained
    table = sensitivity.analyze(model, x, y, sparsities=[0.8], bits=[8], clusters=[], rows=[0.75, 0.5], counts=budget.token_counts(model, x))
    for r in table.rows:  # only the rows cost anything, half the rows more than three quarters
        r.loss = {0.75: 0.2, 0.5: 0.4}[r.setting] if r.kind == "rows" else 0.0
    broken = keras.models.clone_model(model)  # what half the rows "fine-tune" to here: every weight zero

    def fine_tune(plan):
        return broken if plan.rows == 0.5 else model

    accuracy = lambda m: metrics.accuracy(m.predict(x, verbose=0), y)  # noqa: E731
    for w in broken.weights:
        w.assign(np.zeros(w.shape, w.dtype.name))
    log = []
    result = budget.search(model, table, fine_tune, accuracy, 0.5, rounds=3, clusters=(None,), margin=0, log=log.append)
    plans = [c.plan for c in result.candidates]
    # Round 1, the front's plan as large as 80% everywhere, keeps half the rows and loses too much.
    assert [p.rows for p in plans] == [0.5, 0.75] and plans[0].prunes and not result.candidates[0].within_budget
    assert plans[1].sparsity == plans[0].sparsity and plans[1].clusters == plans[0].clusters  # only the rows were made milder
    assert any(line.startswith("[auto] round 2: local back-off: embedding keeps 75% of its rows") for line in log)
    assert result.within_budget and result.chosen.plan is plans[1]
    # The rows go back first even where pruning's one-shot loss is the larger: fine-tuning recovers that one.
    for r in table.rows:
        r.loss = 5.0 if r.kind == "prune" else r.loss
    three_quarters = budget.relax(plans[0], model, table, clusters=(None,))
    every_row = budget.relax(three_quarters, model, table, clusters=(None,))
    assert (three_quarters.rows, every_row.rows) == (0.75, None) and three_quarters.sparsity == every_row.sparsity == plans[0].sparsity
    assert budget.relax(every_row, model, table, clusters=(None,)).sparsity != plans[0].sparsity  # then the pruning


def _one_shot(model):
    """A fine-tune that only applies the plan (no training, no QAT): the search's logic on real models."""

    def apply(plan):
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        for layer in copy.layers:
            s = plan.sparsity.get(layer.name, 0)
            for v in prunable_weights(layer) if s else ():
                v.assign(prune_array(v.numpy(), s))
        return copy

    return apply


@pytest.mark.parametrize(
    "max_loss, backoff, start",
    [(m, b, "uniform") for m in (0.0, 2.0, 50.0) for b in ("local", "front")] + [(0.0, "local", "front"), (50.0, "local", "front")],
)
def test_rounds_go_smaller_within_budget_and_back_off_over_it(trained, table, max_loss, backoff, start):  # noqa: F811
    model, x, y = trained
    log = []
    result = budget.search(
        model, table, _one_shot(model), lambda m: metrics.accuracy(m.predict(x, verbose=0), y), max_loss,
        rounds=4, clusters=(None,), backoff=backoff, start=start, log=log.append,
    )
    cands = result.candidates
    assert 1 <= len(cands) <= 4 and len({c.plan.describe() for c in cands}) == len(cands)
    uniform = budget.uniform_bytes(model, table, 0.8)
    if start == "uniform":
        # Round 1 is where compress without a budget ends: every layer pruned 80%.
        first = cands[0].plan
        assert first.sparsity == {n: 0.8 for n in table.layers} and first.clusters is None
        assert first.estimated_bytes == uniform
        assert first.predicted_loss == pytest.approx(sum(max(0.0, table.loss(n, "prune", 0.8)) + max(0.0, table.loss(n, "quantize", 8)) for n in table.layers))
    else:
        # The front's smallest plan as large as 80% everywhere, or a smaller one when even that is
        # predicted within the budget one shot.
        anchor = next(p for p in result.front if p.estimated_bytes >= uniform)
        limit = max(anchor.predicted_loss, max_loss, 0.05)
        assert cands[0].plan is next(p for p in result.front if p.predicted_loss <= limit)
        assert (cands[0].plan is anchor) == (max_loss < anchor.predicted_loss)
    for c, after in zip(cands, cands[1:]):
        if c.within_budget:
            assert after.plan.estimated_bytes < c.plan.estimated_bytes  # kept it: try smaller
        else:
            assert after.plan.estimated_bytes > c.plan.estimated_bytes  # over: back off
            local = any(line.startswith(f"[auto] round {after.round}: local back-off") for line in log)
            assert local == (backoff == "local" and after.plan == budget.relax(c.plan, model, table, clusters=(None,)))
            if local:  # one layer pruned one step less, the rest kept
                changed = [n for n in c.plan.sparsity if after.plan.sparsity[n] != c.plan.sparsity[n]]
                assert len(changed) == 1 and after.plan.sparsity[changed[0]] < c.plan.sparsity[changed[0]]
    for c in cands:
        assert c.within_budget == (c.loss <= max_loss + 1e-9)
        assert c.loss == pytest.approx((result.baseline - c.value) * 100)
    passing = [c for c in cands if c.within_budget]
    if passing:
        assert result.within_budget and result.chosen is min(passing, key=lambda c: c.plan.estimated_bytes)
    else:
        assert not result.within_budget and result.chosen is min(cands, key=lambda c: c.loss)
    assert result.model is result.chosen.model and all(c.model is None for c in cands if c is not result.chosen)
    assert any("round 1:" in line for line in log)
    markdown = result.to_markdown()
    assert "| round | plan | estimated gzip KiB |" in markdown and "(chosen" in markdown
    if max_loss == 50.0:
        assert result.within_budget and cands[0].within_budget


@pytest.mark.parametrize("max_loss", [0.0, 100.0])
def test_shrinking_first_is_kept_only_within_its_share_of_the_budget(trained, max_loss):  # noqa: F811
    model, x, y = trained
    log, analyzed, tables = [], [], []

    def analyze(m):
        analyzed.append(m)
        tables.append(sensitivity.analyze(m, x, y, sparsities=[0.5, 0.8], bits=[8], clusters=[8]))
        return tables[-1]

    def evaluate(m):
        return sensitivity.per_example(m.predict(x, verbose=0), y, "accuracy")

    result = budget.search_shrunk(
        model, lambda small: small, analyze, _one_shot, evaluate, max_loss, rounds=3, clusters=(None,), log=log.append,
        start="uniform" if max_loss else "front",  # (the shrunk model is kept only with the large budget)
    )
    probe, cands = result.shrink, result.candidates
    assert probe.units == 0.5 and probe.widths == {"embedding": (8, 4), "lstm": (8, 4)} and probe.standard_error is not None
    assert probe.kept == (probe.loss <= 0.5 * max_loss + 1e-9)
    if max_loss == 100.0:
        assert probe.kept
    base = analyzed[0]
    assert len(analyzed) == 1 and (base is not model) == probe.kept  # the plans compress the shrunk model only when it was kept
    assert (base.get_layer("lstm").units == 4) == probe.kept
    assert 1 <= len(cands) <= 2 and [c.round for c in cands] == list(range(2, 2 + len(cands)))
    for c in cands:  # every loss is against the unchanged model, not the shrunk one
        assert c.loss == pytest.approx((result.baseline - c.value) * 100)
        assert c.plan.describe().startswith("shrink to 50% of the units; ") == probe.kept and c.plan.units is None
        assert c.model is None or c.model.get_layer("lstm").units == base.get_layer("lstm").units
    assert result.baseline == pytest.approx(float(np.mean(evaluate(model))))
    markdown = result.to_markdown()
    assert "Round 1 shrank first: 50% of the units kept (embedding 8→4, lstm 8→4)" in markdown
    assert ("so the plans below compress the shrunk model" in markdown) == probe.kept
    assert log[0].startswith("[auto] round 1: shrink to 50% of the units")
    # The plans start at the size 80% everywhere gives the model as it came: a shrunk model gets there pruned less.
    start = next(line for line in log if line.startswith("[auto] start:"))
    assert ("(the model before shrinking)" in start) == probe.kept
    target = budget.uniform_bytes(model, tables[0], 0.8)
    assert f"about {target / 1024:,.1f} KiB" in start
    if probe.kept:  # "uniform", round 2: the shrunk model pruned alike everywhere, as hard as keeps it at least that large
        first = cands[0].plan
        (at,) = set(first.sparsity.values())
        assert first.estimated_bytes >= target or at == 0.0
        harder = [t for t in (0.5, 0.8) if t > at]
        assert all(budget.uniform_bytes(base, tables[0], t) < target for t in harder)
    one = budget.search_shrunk(model, None, analyze, _one_shot, evaluate, max_loss, rounds=1, clusters=(None,), log=log.append)
    assert one.shrink is None and "[auto] one round: nothing is shrunk first" in log and one.candidates[0].round == 1
    with pytest.raises(ValueError, match=r"share must be a fraction in \(0, 1\] of the budget. Received: share=0"):
        budget.search_shrunk(model, None, analyze, _one_shot, evaluate, 1.0, share=0)


@pytest.mark.parametrize("start_clusters", ["fewest", None, 8])
def test_the_first_plan_is_as_large_as_80_percent_everywhere_and_the_fewest_clusters(trained, table, start_clusters):  # noqa: F811
    model, x, y = trained
    clustered = start_clusters is not None
    size = budget.uniform_bytes(model, table, 0.8, 8 if clustered else None)
    assert clustered == (size < budget.uniform_bytes(model, table, 0.8))  # clusters make that size smaller
    for start in ("uniform", "front"):
        log = []
        result = budget.search(
            model, table, _one_shot(model), lambda m: metrics.accuracy(m.predict(x, verbose=0), y), 0.0,
            rounds=1, clusters=(None, 8), start=start, start_clusters=start_clusters, log=log.append,
        )
        first = result.candidates[0].plan
        assert f"every layer pruned 80%{' and clustered to 8' if clustered else ''} is about {size / 1024:,.1f} KiB" in log[0]
        if start == "uniform":  # that plan itself
            assert first.sparsity == {n: 0.8 for n in table.layers} and first.clusters == (8 if clustered else None)
            assert first.estimated_bytes == size and "predicted to lose" in log[0]
        else:  # a zero budget: no plan is predicted within it, so round 1 is the front's plan of that size
            assert first is next(p for p in result.front if p.estimated_bytes >= size)


def test_a_local_back_off_makes_the_costliest_change_milder_and_keeps_the_rest(trained, table):  # noqa: F811
    model, _, _ = trained
    names = list(table.layers)
    plan = budget.plan_front(model, table, clusters=(None,))[0]  # the smallest: most layers pruned hard
    assert len(plan.prunes) >= 2

    def one_shot(n, s):  # as the plans count it: noise below zero is no loss
        return max(0.0, table.loss(n, "prune", s)) if s else 0.0

    costliest = max(plan.prunes, key=lambda n: one_shot(n, plan.prunes[n]))
    milder = budget.relax(plan, model, table, clusters=(None, 8))
    lower = max([0.0] + [s for s in table.settings("prune") if s < plan.sparsity[costliest]])
    assert milder.sparsity == {**plan.sparsity, costliest: lower} and milder.clusters is None
    assert milder.estimated_bytes > plan.estimated_bytes
    s = plan.sparsity[costliest]
    assert milder.predicted_loss == pytest.approx(plan.predicted_loss - one_shot(costliest, s) + one_shot(costliest, lower))
    # A plan whose only change beyond int8 is clustering relaxes its clusters: 8 -> the next larger number, or none.
    dense = budget.Plan({n: 0.0 for n in names}, 8)
    assert budget.relax(dense, model, table, clusters=(None, 8)).clusters is None
    assert budget.relax(dense, model, table, clusters=(None, 8)).sparsity == dense.sparsity
    assert budget.relax(budget.Plan({n: 0.0 for n in names}, None), model, table) is None  # nothing left to relax


def test_bad_budgets_are_refused(trained, table):  # noqa: F811
    model, x, y = trained
    with pytest.raises(ValueError, match=r"max_loss must be a number >= 0 .* Received: max_loss=-1"):
        budget.search(model, table, _one_shot(model), lambda m: 0.0, -1)
    for rounds in (0, True):  # a bool is an int to Python, not a count of rounds
        with pytest.raises(ValueError, match=r"rounds must be an integer >= 1"):
            budget.search(model, table, _one_shot(model), lambda m: 0.0, 1.0, rounds=rounds)
    with pytest.raises(ValueError, match=r"max_loss must be a number >= 0 .* Received: max_loss=True"):
        budget.search(model, table, _one_shot(model), lambda m: 0.0, True)
    with pytest.raises(ValueError, match=r"start_sparsity must be a number in \[0, 1\). Received: start_sparsity=1"):
        budget.search(model, table, _one_shot(model), lambda m: 0.0, 1.0, start_sparsity=1)
    with pytest.raises(ValueError, match=r"recovery must be a number > 0"):
        budget.search(model, table, _one_shot(model), lambda m: 0.0, 1.0, recovery=0)
    with pytest.raises(ValueError, match=r"start_clusters must be one of clusters=\[None, 8\], None or 'fewest'. Received: start_clusters=16"):
        budget.search(model, table, _one_shot(model), lambda m: 0.0, 1.0, clusters=(None, 8), start_clusters=16)
    with pytest.raises(ValueError, match=r'start must be "uniform" .* or "front" .* Received: start=\'smallest\''):
        budget.search(model, table, _one_shot(model), lambda m: 0.0, 1.0, start="smallest")
    with pytest.raises(ValueError, match=r'backoff must be "local" or "front". Received: backoff=\'near\''):
        budget.search(model, table, _one_shot(model), lambda m: 0.0, 1.0, backoff="near")
    with pytest.raises(ValueError, match=r"margin must be a number >= 0 of standard errors .* Received: margin=-0.5"):
        budget.search(model, table, _one_shot(model), lambda m: 0.0, 1.0, margin=-0.5)


def test_a_loss_keeps_the_budget_only_with_its_margin_of_standard_errors(trained):  # noqa: F811
    from tfcompress import pruning

    model, x, y = trained

    def run(max_loss, margin):
        lines = []
        result = budget.search_units(
            model, lambda plan: pruning.shrink(model, units=plan.units), lambda m: sensitivity.per_example(m.predict(x, verbose=0), y, "accuracy"),
            max_loss, rounds=1, margin=margin, log=lines.append,
        )
        return result, lines

    first, _ = run(100.0, 0)
    loss, se = first.chosen.loss, first.chosen.standard_error
    assert loss > 0 and se > 0, (loss, se)  # half the units, untrained: it loses, and not the same on every example
    between = loss + se / 2  # the loss alone keeps it; the loss plus one standard error does not
    plain, _ = run(between, 0)
    careful, lines = run(between, 1.0)
    assert plain.within_budget and plain.chosen.within_budget
    assert not careful.within_budget and not careful.chosen.within_budget and careful.chosen.loss == pytest.approx(loss)
    assert "over the budget (loss + 1 s.e.)" in lines[-1] and "(checked as loss + 1 s.e.)" in careful.summary()
    assert "when its loss + 1 × that error is at most" in careful.to_markdown()
    assert "× that error" not in plain.to_markdown()
    assert run(loss + 1.5 * se, 1.0)[0].within_budget


@pytest.mark.parametrize("max_loss", [0.0, 100.0])
def test_a_refit_replays_the_chosen_plan_from_the_model_as_given(trained, max_loss):  # noqa: F811
    """`refit_plan` shrinks the original model as the plan was built on (only
    when round 1's shrink was kept), fine-tunes it with the refit's own
    tuners and hands that on, saying the verified model is not it."""
    model, x, y = trained
    calls = []

    def evaluate(m):
        return sensitivity.per_example(m.predict(x, verbose=0), y, "accuracy")

    def analyze(m):
        return sensitivity.analyze(m, x, y, sparsities=[0.5, 0.8], bits=[8], clusters=[8])

    result = budget.search_shrunk(model, lambda small: small, analyze, _one_shot, evaluate, max_loss, rounds=2, clusters=(None,))
    verified = result.model
    plan = result.chosen.plan

    def shrunk_again(small):
        calls.append(("shrink", small.get_layer("lstm").units))
        return small

    def refit_tuner(base):
        calls.append(("tuner", base.get_layer("lstm").units))
        return _one_shot(base)

    budget.refit_plan(model, result, refit_tuner, shrunk_again, "train + selection (1,200 examples)")
    kept = result.shrink.kept
    assert calls == ([("shrink", 4)] if kept else []) + [("tuner", 4 if kept else 8)]
    assert result.model is result.chosen.model and result.model is not verified and result.chosen.plan is plan
    assert result.model.get_layer("lstm").units == (4 if kept else 8)
    # The same plan on the same start (these tuners do not train): the verified model's zeros, layer by layer.
    for layer in plan.prunes:
        zeros = [[np.flatnonzero(w.numpy() == 0) for w in prunable_weights(m.get_layer(layer))] for m in (result.model, verified)]
        assert all(np.array_equal(a, b) for a, b in zip(*zeros)) and sum(map(len, zeros[0])), layer
    note = "the model handed on is that plan refit on train + selection (1,200 examples), not the verified model"
    assert note in result.summary() and f"**Refit:** {note}" in result.to_markdown()


def test_a_refit_from_the_verified_model_trains_it_on_and_keeps_its_zeros_and_clusters(trained):  # noqa: F811
    """`refit_verified` (`refit_from="verified"`) hands on the verified QAT
    model trained further on more data: its weights move from where they were
    verified, but no zero fills in and no layer gains distinct values."""
    model, x, y = trained
    rng = np.random.default_rng(2)
    xt = rng.integers(2, 50, size=(300, 10)).astype("int32")
    yt = (xt[:, -3:] < 20).any(1).astype("int32")
    fits = []

    def fitter(xs, ys):
        def fit(m, epochs, learning_rate):
            fits.append((len(xs), epochs, learning_rate))
            m.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy")
            m.fit(xs, ys, batch_size=64, epochs=epochs, verbose=0)
            return m

        return fit

    plan = budget.Plan({"embedding": 0.5, "lstm": 0.8, "dense": 0.0}, 8)
    verified = budget.fine_tuner(model, fitter(xt, yt), prune_epochs=1, steps_per_epoch=5)(plan)
    chosen = budget.Candidate(1, plan, 0.9, 0.0, True, verified, 0.5)
    result = budget.SearchResult(verified, chosen, [chosen], True, 0.9, [plan], None, 1.0, "points")
    before, weights = clustering.cluster_report(quantization.strip(verified)), [w.copy() for w in verified.get_weights()]
    assert {r["layer"] for r in before if r["zeros"]} >= {"embedding", "lstm"} and all(r["distinct"] <= 9 for r in before)
    fits.clear()
    budget.refit_verified(result, fitter(np.concatenate([xt, x]), np.concatenate([yt, y])), "train + selection (500 examples)", epochs=2)
    assert fits == [(500, 2, budget.QAT_RATE)]
    assert result.model is result.chosen.model is verified and result.refit == "train + selection (500 examples)" and result.refit_epochs == 2
    assert not all(np.array_equal(a, b) for a, b in zip(weights, verified.get_weights()))
    for old, new in zip(before, clustering.cluster_report(quantization.strip(verified))):
        assert new["distinct"] <= old["distinct"] and new["zeros"] >= old["zeros"], (old, new)
    note = "the model handed on is the verified model trained 2 more epoch(s) on train + selection (500 examples), which changes its weights"
    assert note in result.summary()  # (the recipe's report: test_the_command_line_exits_non_zero_...)
    with pytest.raises(ValueError, match=r"epochs must be an integer >= 1 \(the epochs the verified model trains further\). Received: epochs=0"):
        budget.refit_verified(result, fits.append, "x", epochs=0)
    with pytest.raises(ValueError, match=r"refit_from must be 'plan' \(replay the chosen plan\) or 'verified'.*Received: refit_from='dense'"):
        budget.compress(model, (xt, yt), (x, y), 1.0, refit_from="dense")
    with pytest.raises(ValueError, match=r"refit_epochs must be an integer >= 1 \(the epochs of a refit from the verified model\). Received: refit_epochs=0.5"):
        budget.compress(model, (xt, yt), (x, y), 1.0, refit_from="verified", refit_epochs=0.5)


def test_compress_from_arrays_verifies_on_group_means_and_refits(trained):  # noqa: F811
    model, x, y = trained
    rng = np.random.default_rng(0)
    xt = rng.integers(2, 50, size=(300, 10)).astype("int32")
    yt = (xt[:, -3:] < 20).any(1).astype("int32")
    group = np.arange(len(x)) // 4  # 50 groups of 4 held-out examples
    kwargs = {"rounds": 1, "shrink_first": None, "clusters": (None,), "prune_epochs": 1, "quantize_epochs": 1, "batch_size": 64}
    grouped = budget.compress(model, (xt, yt), (x, y), 100.0, groups=(x, y, group), **kwargs)  # refit: the default
    correct = sensitivity.per_example(model.predict(x, verbose=0), y, "accuracy")
    assert grouped.examples == 50 and grouped.baseline == pytest.approx(np.mean([correct[group == g].mean() for g in range(50)]))
    assert "over the 50 selection groups, each the mean over its examples (200 examples)" in grouped.to_markdown()
    assert grouped.refit == "train + selection (500 examples)" and grouped.chosen.plan.prunes
    assert grouped.model is grouped.chosen.model and quantization.is_quantized(grouped.model)
    with pytest.raises(ValueError, match=r"groups must be \(x, y, group\) of one length. Received lengths 200, 200 and 3"):
        budget.compress(model, (xt, yt), (x, y), 100.0, groups=(x, y, group[:3]), **kwargs)


def _auto_config(tmp_path, **auto):
    write_dataset(tmp_path / "train.tsv")
    write_dataset(tmp_path / "dev.tsv", n=120, seed=1)
    return {
        "data": {"train": str(tmp_path / "train.tsv"), "dev": str(tmp_path / "dev.tsv")},
        "text": {"max_len": 12},
        "model": {"build": {"embedding_dim": 8, "units": 8, "dropout": 0.0}},
        "steps": [
            {"train": {"epochs": 4, "batch_size": 32}},
            {"auto": {"max_loss": 100.0, "rounds": 1, "prune_epochs": 1, "batch_size": 32, "clusters": [None], **auto}},
            {"export": {"modes": ["dynamic"]}},
        ],
    }


@pytest.mark.slow
def test_the_auto_step_hands_on_a_verified_plan_and_reports_every_candidate(tmp_path):
    # Round 1 shrinks, round 2 prunes what is left: the front's smallest plan, as the budget allows anything
    # (on weights this small, every layer pruned alike cannot reach the unshrunk start's size, so "uniform" would not prune).
    config = _auto_config(tmp_path, rounds=2, shrink_epochs=1, shrink_first=0.5, start="front")
    lines, fits = [], []
    report = recipe.run(config, tmp_path / "out", log=lines.append, callbacks=[fit_shapes(fits)])
    assert report.meta["selection examples"] == 150 and "step 2 auto chose on a split" in report.meta["selection"]  # 25% with auto
    section = report.sections["Accuracy budget (step 2)"]
    assert "Round 1 shrank first: 50% of the units kept (embedding 8→4, lstm_0 8→4)" in section
    rounds = [line for line in section.splitlines() if line.startswith("| 2 ")]
    assert len(rounds) == 1 and "within (chosen)" in rounds[0] and "![candidates against the budget](auto-2.png)" in section
    assert (tmp_path / "out" / "auto-2.png").stat().st_size > 1000
    # rows: auto and teacher_weight left out (the defaults): the table measures the embedding's rows, and every
    # fine-tune and the refit train towards half the label and half the dense model's output.
    assert "| 75% of rows | 50% of rows |" in section
    assert "[auto] fine-tunes train towards 0.5 x label + 0.5 x the dense model's output (teacher_weight 0.5)" in lines
    said = "Every fine-tune and the refit trained towards 0.5 x the label + 0.5 x the dense model's own output (`teacher_weight: 0.5`, self-distillation)"
    assert said in section
    row = next(r for r in report.records if r.step == "auto (max loss 100)")
    assert report.meta["budget met"] and not row.notes.startswith("BUDGET NOT MET")  # (the rounds' logic is tested above)
    # Refit (the default): the chosen plan trained again with the selection split's 60 sentences back in training.
    # (rows: auto, the default: the plans may also keep 75% or 50% of the embedding's 20 rows)
    assert report.meta["refit"] and re.search(r"\[auto\] refit: shrink to 50% of the units; (embedding keeps (75|50)% of its rows; )?prune ", "\n".join(lines))
    refit = "train + selection (600 examples), from a dense model trained on them too"
    assert row.notes.endswith(f"; then refit on {refit} (the dev figures are the refit model's, which nothing verified)")
    assert re.search(r"; \d+ candidates, each fine-tuned towards 0\.5 x label \+ 0\.5 x the dense model's output \(teacher_weight\); then refit on ", row.notes)
    assert f"**Refit:** the model handed on is that plan refit on {refit}, not the verified model" in section
    # The plan starts from the train step made again: its 4 epochs, in batches of 32 of 450 examples, then of 600.
    assert "[auto] refit: the train step again on train + selection (600 examples), for the dense model the plan starts from" in lines
    assert fits[0] == (4, 15) and fits.count((4, 19)) == 1 and fits.index((4, 19)) > 2
    state = json.loads((tmp_path / "out" / ".run" / "02-auto" / "done.json").read_text())
    assert state["meta"]["budget met"] == report.meta["budget met"]
    parts = row.notes.split("; ")  # "shrink to 50% ...; [embedding keeps 50% of its rows; ]prune embedding 80%, lstm_0 95%, ..."
    chosen = next(p for p in parts if p.startswith("prune "))
    assert parts[0] == "shrink to 50% of the units"
    model = tfcompress.load_model(tmp_path / "out" / ".run" / "02-auto" / "model.keras")
    assert quantization.is_quantized(model)
    model = quantization.strip(model)
    assert model.get_layer("lstm_0").units == 4 and model.get_layer("embedding").output_dim == 4
    kept = re.fullmatch(r"embedding keeps (\d+)% of its rows", parts[1])
    assert model.get_layer("embedding").input_dim == (round(20 * int(kept[1]) / 100) if kept else 20)
    for name, share in (p.rsplit(" ", 1) for p in chosen.strip().removeprefix("prune ").split(", ")):
        weights = [w.numpy() for w in prunable_weights(model.get_layer(name))]
        zeros = np.mean([np.mean(w == 0) for w in weights])
        step = 1 / min(w.size for w in weights)  # a layer of 8 weights reaches 95% as 7 zeros of 8
        assert zeros == pytest.approx(float(share.rstrip("%")) / 100, abs=max(0.03, step)), name  # each layer at its own target
    exported = next(r for r in report.records if r.kind == "tflite")
    assert "agreement" in exported.notes
    again = recipe.run(config, tmp_path / "out", log=lines.append)  # resumed: the same choice and report
    assert again.records == report.records and again.sections == report.sections and again.meta["budget met"] == report.meta["budget met"]


@pytest.mark.slow
def test_the_command_line_exits_non_zero_when_the_budget_is_not_met_unless_best_effort(tmp_path, capsys):
    write_dataset(tmp_path / "train.tsv")
    write_dataset(tmp_path / "dev.tsv", n=120, seed=1)
    # One round at the smallest plan (95% of every weight) with no loss allowed: over budget. The refit trains
    # the verified model on (refit_from: verified), which is cheap, and hands on the least-loss plan all the same.
    recipe_file = tmp_path / "r.json"
    config = _auto_config(tmp_path, max_loss=0, recovery=1e9, sparsities=[0.95], refit_from="verified")
    recipe_file.write_text(json.dumps(config))
    assert cli.main(["compress", "--recipe", str(recipe_file), "--out", str(tmp_path / "out"), "--quiet"]) == 3
    assert "the accuracy budget was NOT met" in capsys.readouterr().err
    assert (tmp_path / "out" / "model.tflite").exists()  # the least-loss candidate is still written
    refit = "then trained 1 more epoch(s) on train + selection (600 examples) (the dev figures are after that, which nothing verified)"
    written = (tmp_path / "out" / "report.md").read_text()
    assert refit in written and "**Refit:** the model handed on is the verified model trained 1 more epoch(s) on train + selection (600 examples)" in written
    assert cli.main(["compress", "--recipe", str(recipe_file), "--out", str(tmp_path / "out"), "--quiet", "--best-effort"]) == 0
    with pytest.raises(SystemExit) as exit:
        cli.main(["compress", str(tmp_path / "train.tsv"), "--max-loss", "1", "--steps", "train,prune,export", "--out", str(tmp_path / "o2")])
    assert exit.value.code == 2 and "--max-loss is the budget of the auto step" in capsys.readouterr().err


def test_max_loss_is_required_and_auto_comes_first(tmp_path):
    with pytest.raises(recipe.RecipeError, match=r"key 'steps\[1\].auto.start': 'smallest' is not valid here"):
        recipe.Recipe.from_dict(_auto_config(tmp_path, start="smallest"))
    with pytest.raises(recipe.RecipeError, match=r"key 'steps\[1\].auto.refit_from': 'dense' is not valid here"):
        recipe.Recipe.from_dict(_auto_config(tmp_path, refit_from="dense"))
    config = _auto_config(tmp_path, max_loss=None)
    with pytest.raises(recipe.RecipeError, match=r"key 'steps\[1\].auto.max_loss': the auto step needs a budget"):
        recipe.Recipe.from_dict(config)
    with pytest.raises(recipe.RecipeError, match=r"key 'steps\[1\].auto.margin': -1 is not valid here. Fix: give a number >= 0 \(standard errors\)"):
        recipe.Recipe.from_dict(_auto_config(tmp_path, margin=-1))
    with pytest.raises(recipe.RecipeError, match=r"key 'steps\[1\].auto.shrink_first': 1.0 is not valid here. Fix: give a fraction in \(0, 1\) of the units, or null"):
        recipe.Recipe.from_dict(_auto_config(tmp_path, shrink_first=1.0))
    with pytest.raises(recipe.RecipeError, match=r"key 'steps\[1\].auto.start_clusters': start_clusters 8 is not one of clusters \[None\]. Fix: add 8 to clusters"):
        recipe.Recipe.from_dict(_auto_config(tmp_path, start_clusters=8))
    config = _auto_config(tmp_path)
    config["steps"].insert(1, {"prune": {}})
    with pytest.raises(recipe.RecipeError, match="auto compresses a trained float model, so it cannot follow prune"):
        recipe.Recipe.from_dict(config)


def test_each_verified_loss_carries_its_paired_standard_error(trained, table):  # noqa: F811
    model, x, y = trained
    probs = model.predict(x, verbose=0)
    per = sensitivity.per_example(probs, y, "accuracy")
    assert per.shape == (len(y),) and per.mean() == pytest.approx(sensitivity.score(probs, y, "accuracy"))
    lm = np.array([[0.5, 0.25, 0.25], [0.125, 0.75, 0.125]])
    assert sensitivity.per_example(lm, [1, 1], "bits/char") == pytest.approx([2.0, -np.log2(0.75)])
    assert sensitivity.paired_standard_error([1, 1, 0, 0], [1, 0, 1, 0], "accuracy") == pytest.approx(100 * np.std([0, -1, 1, 0], ddof=1) / 2)

    result = budget.search(
        model, table, _one_shot(model), lambda m: sensitivity.per_example(m.predict(x, verbose=0), y, "accuracy"), 2.0,
        rounds=2, clusters=(None,),
    )
    for c in result.candidates:
        diff = sensitivity.per_example(c.model.predict(x, verbose=0), y, "accuracy") - per if c.model is not None else None
        if diff is not None:
            assert c.standard_error == pytest.approx(100 * diff.std(ddof=1) / np.sqrt(len(y)))
        assert c.standard_error is not None and c.loss_text("points").startswith(sensitivity.format_loss(c.loss, "points") + " ± ")
    assert result.examples == len(y) and f"over the {len(y):,} selection examples" in result.to_markdown()
    assert result.unresolved() == (abs(result.chosen.loss - 2.0) < 2 * result.chosen.standard_error)


@pytest.mark.parametrize("max_loss", [0.0, 100.0])
def test_the_latency_objective_halves_towards_the_fewest_multiply_adds_within_budget(trained, max_loss):  # noqa: F811
    from tfcompress import pruning

    model, x, y = trained
    log = []
    result = budget.search_units(
        model, lambda plan: pruning.shrink(model, units=plan.units), lambda m: sensitivity.per_example(m.predict(x, verbose=0), y, "accuracy"),
        max_loss, rounds=3, log=log.append,
    )
    cands = result.candidates
    assert cands[0].plan.units == 0.5 and result.objective == "latency" and result.front == [] and result.table is None
    within_at, over_at = 1.0, 0.0
    for c, after in zip(cands, cands[1:]):  # halfway between the closest fractions known within and over
        within_at, over_at = (c.plan.units, over_at) if c.within_budget else (within_at, c.plan.units)
        assert after.plan.units == (within_at + over_at) / 2
    for c in cands:
        small = pruning.shrink(model, units=c.plan.units)
        assert c.plan.multiply_adds == pruning.multiply_adds(small) < pruning.multiply_adds(model)
        assert c.within_budget == (c.loss + c.standard_error <= max_loss + 1e-9)  # the default margin: one standard error
    if max_loss == 100.0:
        assert [c.plan.units for c in cands] == [0.5, 0.25, 0.125] and result.chosen is cands[-1]
    passing = [c for c in cands if c.within_budget]
    expected = min(passing, key=lambda c: c.plan.multiply_adds) if passing else min(cands, key=lambda c: c.loss)
    assert result.chosen is expected and result.within_budget == bool(passing)
    markdown = result.to_markdown()
    assert "| round | plan | M multiply-adds | estimated gzip KiB |" in markdown and "| 1 | shrink to 50% of the units; int8 |" in markdown
    assert "fewest multiply-adds" in log[0]
    result.figure()  # draws without a front
    with pytest.raises(ValueError, match=r"start_units must be a fraction in \(0, 1\)"):
        budget.search_units(model, None, None, 1.0, start_units=1.0)


@pytest.mark.slow
def test_the_auto_step_with_the_latency_objective_hands_on_fewer_units(tmp_path):
    config = _auto_config(tmp_path, objective="latency", shrink_epochs=1)
    report = recipe.run(config, tmp_path / "out")
    section = report.sections["Accuracy budget (step 2)"]
    assert "| 1 | shrink to 50% of the units; int8 |" in section and "Sensitivity behind the plans" not in section
    row = next(r for r in report.records if r.step == "auto (max loss 100)")
    assert row.notes.startswith("shrink to 50% of the units; int8; selection loss")
    model = quantization.strip(tfcompress.load_model(tmp_path / "out" / ".run" / "02-auto" / "model.keras"))
    assert model.get_layer("lstm_0").units == 4 and model.get_layer("embedding").output_dim == 4
    assert (tmp_path / "out" / "model.tflite").exists()
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["compress"].format_help()
    assert "--objective" in help_text


def test_the_latency_objective_exports_the_unrolled_form_unless_told_otherwise():
    parser = cli.build_parser()

    def recurrent(*flags):
        config = cli._command_config(parser.parse_args(["compress", "train.tsv", "--max-loss", "1", *flags]), parser)
        return next(s["export"] for s in config["steps"] if "export" in s)["recurrent"]

    assert recurrent("--objective", "latency") == "unrolled"  # the loop's fixed cost per step would hide the fewer units
    assert recurrent("--objective", "latency", "--recurrent", "fused") == "fused"  # an explicit choice stands
    assert recurrent() == recurrent("--objective", "size") == "auto"


def test_the_refit_is_on_unless_the_command_line_says_no(capsys):
    from tfcompress.recipe.steps import auto as auto_step

    parser = cli.build_parser()

    def refit(*flags):
        config = cli._command_config(parser.parse_args(["compress", "train.tsv", "--max-loss", "1", *flags]), parser)
        return next(s["auto"] for s in config["steps"] if "auto" in s)["refit"]

    assert refit() is True and refit("--refit", "yes") is True and refit("--refit", "no") is False and refit("--refit", "No") is False
    with pytest.raises(SystemExit):
        refit("--refit", "maybe")
    assert "argument --refit: expected yes or no, got 'maybe'" in capsys.readouterr().err
    config = cli._command_config(parser.parse_args(["compress", "train.tsv", "--max-loss", "1", "--refit-from", "verified"]), parser)
    assert next(s["auto"] for s in config["steps"] if "auto" in s)["refit_from"] == "verified"
    assert next(s["auto"] for s in config["steps"] if "auto" in s)["teacher_weight"] is None  # the step's default
    config = cli._command_config(parser.parse_args(["compress", "train.tsv", "--max-loss", "1", "--teacher-weight", "0"]), parser)
    assert next(s["auto"] for s in config["steps"] if "auto" in s)["teacher_weight"] == 0  # the labels alone
    for given, rows in ((None, auto_step.ROWS_DEFAULT), ("auto", "auto"), ("all", []), ("0.5,0.35", [0.5, 0.35])):
        config = cli._command_config(parser.parse_args(["compress", "train.tsv", "--max-loss", "1", *(["--embedding-rows", given] if given else [])]), parser)
        assert next(s["auto"] for s in config["steps"] if "auto" in s)["rows"] == rows, given
    with pytest.raises(SystemExit):
        refit("--embedding-rows", "0.5,2")
    assert "argument --embedding-rows: expected auto, all, or comma-separated fractions in (0, 1) such as 0.5,0.35; got '0.5,2'" in capsys.readouterr().err
    # The same flag turns off the refit after `--epochs auto` in every training step.
    steps = cli._command_config(parser.parse_args(["compress", "train.tsv", "--epochs", "auto", "--refit", "no"]), parser)["steps"]
    assert [(name, a["epochs"], a["refit"]) for s in steps for name, a in s.items() if name != "export"] == [
        ("train", "auto", False), ("prune", "auto", False), ("quantize", "auto", False)
    ]


@pytest.mark.slow
def test_the_refit_trains_the_dense_model_again_for_the_count_train_chose_or_starts_from_it_as_given(tmp_path, monkeypatch):
    import random
    import shutil

    import tensorflow as tf

    config = _auto_config(tmp_path, shrink_first=None, start="uniform")
    config["steps"][0]["train"] = {"epochs": "auto", "max_epochs": 3, "patience": 1, "batch_size": 32}
    del config["steps"][2]  # no export: the auto step's model is what is compared
    lines, fits = [], []
    report = recipe.run(config, tmp_path / "out", log=lines.append, callbacks=[fit_shapes(fits)])
    chosen = report.meta["epochs chosen (step 1 train)"]  # train keeps its best epoch, unrefit: auto chooses after it
    # train (at most 3 epochs, 450 examples), round 1 (prune, QAT), then the dense model again (that count, all 600) and the plan
    assert fits == [(3, 15), (1, 15), (1, 15), (chosen, 19), (1, 19), (1, 19)]
    assert "no refit: step 2 auto still chooses" in report.records[0].notes
    assert report.records[1].notes.endswith("from a dense model trained on them too (the dev figures are the refit model's, which nothing verified)")

    # Two budgets can choose the same plan by different searches: the refit must then give the same model.
    # The auto step again, its search now leaving the random state elsewhere, as a longer search does
    # (Keras draws each new layer's initializer seed from it): the refit models must be equal.
    def refit_weights():
        return quantization.strip(tfcompress.load_model(tmp_path / "out" / ".run" / "02-auto" / "model.keras")).get_weights()

    first, search = refit_weights(), budget.search

    def longer_search(*args, **kwargs):
        result = search(*args, **kwargs)
        for units in (3, 5, 7):  # more models built: each layer's initializer draws a seed
            keras.layers.Dense(units)(np.ones((1, 4), np.float32))
        random.random(), np.random.rand(), tf.random.uniform((2,))
        return result

    with monkeypatch.context() as patch:
        patch.setattr(budget, "search", longer_search)
        shutil.rmtree(tmp_path / "out" / ".run" / "02-auto")
        recipe.run(config, tmp_path / "out", log=lines.append)  # the train step resumed, the auto step run again
    second = refit_weights()
    assert len(first) == len(second) and all(np.array_equal(a, b) for a, b in zip(first, second))

    # refit_dense: false replays the plan from the dense model the search started from.
    config["steps"][1]["auto"]["refit_dense"] = False
    lines.clear(), fits.clear()
    report = recipe.run(config, tmp_path / "again", log=lines.append, callbacks=[fit_shapes(fits)])
    assert not any("the train step again" in line for line in lines) and fits == [(3, 15), (1, 15), (1, 15), (1, 19), (1, 19)]
    assert report.records[1].notes.endswith("; then refit on train + selection (600 examples) (the dev figures are the refit model's, which nothing verified)")


def test_a_refit_after_steps_that_are_not_one_train_step_starts_from_the_dense_model_as_it_came(tmp_path):
    config = _auto_config(tmp_path, shrink_first=None, start="uniform")
    config["steps"][0]["train"]["epochs"] = 2
    config["steps"][1:] = [{"shrink": {"units": 0.5, "epochs": 1, "batch_size": 32}}, config["steps"][1]]  # no export
    lines, fits = [], []
    recipe.run(config, tmp_path / "shrunk", log=lines.append, callbacks=[fit_shapes(fits)])
    assert "[auto] refit: the steps before auto are not one train step, so the plan starts from the dense model as it came" in lines
    assert not any("the train step again" in line for line in lines) and (2, 19) not in fits


def test_a_budget_verifies_on_a_quarter_of_the_training_data_unless_told(tmp_path):
    from tfcompress.recipe.data import selection_fraction

    write_dataset(tmp_path / "train.tsv", n=20)

    def fraction(steps, task="classification", **data):
        return selection_fraction(Recipe.from_dict({"data": {"train": str(tmp_path / "train.tsv"), **data}, "steps": steps}), task)

    assert fraction(["train", {"auto": {"max_loss": 0.5}}]) == 0.25  # a 0.5-point budget needs the finer check
    assert fraction([{"train": {"epochs": "auto"}}, "prune"]) == 0.1
    assert fraction(["train", {"auto": {"max_loss": 0.5}}], task="language_model") == 0.1  # its split never returns to training
    assert fraction(["train", {"auto": {"max_loss": 0.5}}], selection_fraction=0.1) == 0.1
    with pytest.raises(RecipeError, match=r"data.selection_fraction.*a fraction in \(0, 1\), or null"):
        fraction(["train"], selection_fraction=1.5)


def test_the_auto_step_can_verify_on_each_sentence_with_its_phrases(tmp_path):
    """`phrases: true`: each held-out sentence is scored as the mean over
    itself and its phrases, and the report says what the ± is over."""
    from test_text_groups import phrase_data

    texts, sentence_of = phrase_data(n_sentences=100, seed=5)
    rows = [f"{t}\t{'pos' if sentence_of[i] % 2 else 'neg'}" for i, t in enumerate(texts)]
    (tmp_path / "train.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    config = {
        "data": {"train": str(tmp_path / "train.tsv"), "dev": str(tmp_path / "train.tsv"), "selection_fraction": 0.2},
        "text": {"max_len": 10},
        "model": {"build": {"embedding_dim": 4, "units": 4, "dropout": 0.0}},
        "steps": [
            {"train": {"epochs": 1, "batch_size": 64}},
            {"auto": {"max_loss": 100.0, "rounds": 1, "prune_epochs": 1, "batch_size": 64, "clusters": [None], "shrink_first": None, "phrases": True, "refit": False, "start": "uniform", "teacher_weight": 0}},
        ],
    }
    lines = []
    report = recipe.run(config, tmp_path / "out", log=lines.append)
    # start: uniform reaches the search: round 1 is every layer pruned 80%.
    assert any(line.startswith("[auto] round 1: prune embedding 80%, lstm_0 80%, logits 80%; int8") for line in lines), lines
    assert not any("fine-tunes train towards" in line for line in lines)  # teacher_weight 0: the labels alone
    assert report.meta["selection examples"] == 20  # 20 sentences held out with their 60 phrases
    assert not report.meta["refit"] and "**Refit:**" not in report.sections["Accuracy budget (step 2)"]  # refit: false hands on the verified model
    assert "± is the paired standard error of each loss over the 20 selection sentences, each the mean over itself and its phrases (80 examples)." in report.sections["Accuracy budget (step 2)"]


def test_teacher_targets_mix_each_label_with_the_models_own_output(trained):  # noqa: F811
    model, x, y = trained
    probs = model.predict(x, verbose=0)
    assert budget.teacher_targets(model, x, y, 0) is y  # the labels alone: class ids, as before
    half = budget.teacher_targets(model, x, y, 0.5)
    assert half.shape == (200, 2) and np.allclose(half, 0.5 * np.eye(2)[y] + 0.5 * probs, atol=1e-6) and np.allclose(half.sum(1), 1.0)
    assert np.allclose(budget.teacher_targets(model, x, y, 1), probs, atol=1e-6)
    assert budget.target_loss(model, half) == "categorical_crossentropy" and budget.target_loss(model, y) == "sparse_categorical_crossentropy"
    assert budget.default_teacher_weight("accuracy") == budget.TEACHER_WEIGHT == 0.5 and budget.default_teacher_weight("bits/char") == 0
    unit = keras.Sequential([keras.Input((10,), dtype="int32"), keras.layers.Embedding(50, 4), keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1, activation="sigmoid")])
    mixed = budget.teacher_targets(unit, x, y, 0.25)
    assert mixed.shape == (200, 1) and np.allclose(mixed, 0.75 * y[:, None] + 0.25 * unit.predict(x, verbose=0), atol=1e-6)
    assert budget.target_loss(unit, mixed) == "binary_crossentropy"
    for bad in (1.5, -0.1, True, "half"):
        with pytest.raises(ValueError, match=rf"weight must be a number in \[0, 1\] \(the teacher's share of each target; 0: the labels alone\). Received: weight={bad!r}"):
            budget.teacher_targets(model, x, y, bad)
    with pytest.raises(ValueError, match=r"teacher targets need a classifier with one label per example; received labels of shape \(200, 10\).*Fix: teacher_weight 0"):
        budget.teacher_targets(model, x, x, 0.5)


def test_a_fine_tune_with_teacher_weight_1_follows_the_dense_model_not_the_labels(trained):  # noqa: F811
    """Every training label is wrong: on the labels alone the fine-tune
    moves away from the dense model; on its outputs alone it stays with it."""
    model, x, y = trained
    rng = np.random.default_rng(3)
    xt = rng.integers(2, 50, size=(2000, 10)).astype("int32")
    wrong = 1 - (xt[:, -3:] < 20).any(1).astype("int32")
    kwargs = {"rounds": 1, "shrink_first": None, "start": "uniform", "start_sparsity": 0.5, "clusters": (None,), "prune_epochs": 3, "quantize_epochs": 1, "batch_size": 32, "refit": False}
    dense = model.predict(x, verbose=0).argmax(1)
    agree = {}
    for weight in (0.0, 1.0):
        keras.utils.set_random_seed(0)
        result = budget.compress(model, (xt, wrong), (x, y), 100.0, teacher_weight=weight, **kwargs)
        agree[weight] = float(np.mean(result.model.predict(x, verbose=0).argmax(1) == dense))
        assert result.model.loss == ("categorical_crossentropy" if weight else "sparse_categorical_crossentropy")
    assert agree[1.0] >= 0.9 and agree[0.0] <= agree[1.0] - 0.3, agree
    with pytest.raises(ValueError, match=r"teacher_weight must be a number in \[0, 1\].*Received: teacher_weight=2"):
        budget.compress(model, (xt, wrong), (x, y), 1.0, teacher_weight=2)


def test_a_language_models_auto_step_trains_on_its_labels_alone_by_default(tmp_path):
    (tmp_path / "c.txt").write_text("the cat sat on the mat. " * 200, encoding="utf-8")
    config = {
        "data": {"task": "language_model", "corpus": str(tmp_path / "c.txt"), "window": 10, "stride": 5},
        "model": {"build": {"embedding_dim": 4, "units": 4, "num_layers": 1}},
        "steps": [{"train": {"epochs": 1}}, {"auto": {"max_loss": 100.0, "rounds": 1, "prune_epochs": 1, "clusters": [None], "shrink_first": None, "start": "uniform"}}],
    }
    lines = []
    recipe.run(config, tmp_path / "out", log=lines.append)
    assert any(line.startswith("[auto] round 1: ") for line in lines), lines
    assert not any("fine-tunes train towards" in line for line in lines)  # next characters alone: no teacher


def test_rows_auto_tries_fewer_embedding_rows_only_where_the_ids_and_their_counts_are_known(trained):  # noqa: F811
    from tfcompress import models
    from tfcompress.recipe.steps.auto import ROW_FRACTIONS, _row_fractions

    model, x, _ = trained
    assert _row_fractions("auto", model, x, "accuracy", False) == (ROW_FRACTIONS, None)
    assert _row_fractions([0.5], model, x, "accuracy", False) == ([0.5], None)  # as given
    assert _row_fractions("auto", model, x, "accuracy", True) == ([], None)  # the latency objective keeps the table
    assert _row_fractions("auto", model, x, "bits/char", False) == ([], "a language model's table is a few dozen characters")
    assert _row_fractions("auto", model, x.astype(str), "accuracy", False) == ([], "the model reads text, not token ids, so the token counts are not known here")
    one_hot = keras.Sequential([keras.Input((10, 5)), keras.layers.LSTM(4), keras.layers.Dense(5, activation="softmax")])
    assert _row_fractions("auto", one_hot, np.zeros((2, 10, 5), "float32"), "accuracy", False) == ([], "the model has no Embedding")
    capped = models.lstm_classifier(50, max_len=10, units=4, embedding_dim=4, embedding_vocab_size=20)
    assert _row_fractions("auto", capped, x, "accuracy", False) == ([], "the model already caps its vocabulary (CapVocabulary)")
