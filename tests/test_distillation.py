"""Distiller: honest training, losses, strategies, mixed precision, caching, errors."""

import numpy as np
import pytest
import tensorflow as tf

from tfcompress import distillation, export, keras, models, pruning, quantization
from tfcompress.distillation import Distiller

VOCAB, LEN = 100, 16


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, VOCAB, (n, LEN)).astype("int32")
    return x, (x[:, -1] > VOCAB // 2).astype("int32")


def _teacher(seed=0):
    keras.utils.set_random_seed(seed)
    model = models.lstm_classifier(VOCAB, max_len=LEN, embedding_dim=16, units=16, dropout=0.0)
    x, y = _data()
    model.fit(x, y, epochs=6, batch_size=32, verbose=0)
    return model


def _student(seed=1, dropout=0.0):
    keras.utils.set_random_seed(seed)
    return models.lstm_classifier(VOCAB, max_len=LEN, embedding_dim=4, units=4, dropout=dropout, compile=False)


@pytest.fixture(scope="module")
def teacher():
    keras.backend.clear_session()
    return _teacher()


def _compile(model, lr=1e-2):
    model.compile(keras.optimizers.SGD(lr), "sparse_categorical_crossentropy", ["accuracy"])
    return model


def test_teacher_is_frozen_bit_for_bit(teacher):
    before = [w.copy() for w in teacher.get_weights()]
    distiller = _compile(Distiller(teacher, _student(), alpha=0.3, temperature=2.0))
    x, y = _data()
    distiller.fit(x, y, epochs=2, batch_size=32, verbose=0, validation_data=_data(64, seed=4))
    after = teacher.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    # Frozen by the training step, not by a flag: the user's model is left trainable (a model
    # shrunk or fine-tuned after serving as a teacher used to be silently frozen).
    assert teacher.trainable and all(layer.trainable for layer in teacher.layers)
    assert len(teacher.trainable_weights) == len(teacher.weights)


def test_a_model_that_taught_can_be_shrunk_and_trained_afterwards(teacher):
    Distiller(teacher, _student())  # distilling from it must not freeze the user's model
    small = pruning.shrink(teacher, units=0.5)
    small.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    before = [w.copy() for w in small.get_weights()]
    small.fit(*_data(64), epochs=1, batch_size=64, verbose=0)
    assert all(not np.array_equal(a, b) for a, b in zip(before, small.get_weights())), "every weight of the shrunk model trains"


def test_alpha_one_updates_the_student_exactly_like_plain_training(teacher):
    x, y = _data(64)
    plain = _compile(_student(seed=7))
    plain.fit(x, y, epochs=1, batch_size=64, shuffle=False, verbose=0)
    student = _student(seed=7)
    distiller = _compile(Distiller(teacher, student, alpha=1.0, temperature=4.0))
    distiller.fit(x, y, epochs=1, batch_size=64, shuffle=False, verbose=0)
    for a, b in zip(plain.get_weights(), student.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_logs_report_each_loss_and_the_compiled_metrics(teacher):
    distiller = _compile(Distiller(teacher, _student()))
    x, y = _data()
    history = distiller.fit(x, y, epochs=1, batch_size=32, verbose=0, validation_data=_data(64, seed=4))
    keys = set(history.history)
    assert {"loss", "student_loss", "distillation_loss", "accuracy"} <= keys
    assert {"val_loss", "val_student_loss", "val_distillation_loss", "val_accuracy"} <= keys
    logs = distiller.evaluate(*_data(64, seed=5), verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(0.1 * logs["student_loss"] + 0.9 * logs["distillation_loss"], rel=1e-4)


def test_kl_loss_value_matches_a_hand_computation(teacher):
    student = _student()
    distiller = _compile(Distiller(teacher, student, alpha=0.0, temperature=2.0))
    x, y = _data(32, seed=8)
    logs = distiller.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    t = np.log(np.clip(teacher.predict(x, verbose=0), 1e-7, 1)) / 2.0
    s = np.log(np.clip(student.predict(x, verbose=0), 1e-7, 1)) / 2.0
    pt = np.exp(t) / np.exp(t).sum(-1, keepdims=True)
    kl = (pt * (np.log(pt) - (s - np.log(np.exp(s).sum(-1, keepdims=True))))).sum(-1) * 4.0
    assert logs["distillation_loss"] == pytest.approx(kl.mean(), rel=1e-4)
    assert logs["loss"] == pytest.approx(kl.mean(), rel=1e-4)


def test_distilled_student_learns_from_the_teacher(teacher):
    x, y = _data()
    keras.utils.set_random_seed(2)
    student = models.lstm_classifier(VOCAB, max_len=LEN, embedding_dim=8, units=8, dropout=0.0, compile=False)
    distiller = Distiller(teacher, student, alpha=0.1, temperature=2.0)
    distiller.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    distiller.fit(x, y, epochs=10, batch_size=32, verbose=0)
    agree = (distiller.predict(x, verbose=0).argmax(-1) == teacher.predict(x, verbose=0).argmax(-1)).mean()
    assert agree > 0.8


def test_logits_and_probabilities_mix(teacher):
    inp = keras.Input((LEN,), dtype="int32")
    h = keras.layers.LSTM(4)(keras.layers.Embedding(VOCAB, 4)(inp))
    logit_student = keras.Model(inp, keras.layers.Dense(2)(h))
    distiller = Distiller(teacher, logit_student, alpha=0.5)
    assert distiller._t_kind == "probabilities" and distiller._s_kind == "logits"
    distiller.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    distiller.fit(*_data(64), epochs=1, verbose=0)
    sigmoid = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(h))
    assert Distiller(teacher, sigmoid)._s_kind == "sigmoid"


def _head_models():
    """Small models ending in each kind of head, with the kind they output."""
    from tfcompress import precision

    inp = keras.Input((LEN,), dtype="int32")
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(VOCAB, 4)(inp))
    logits = keras.layers.Dense(2, name="logits")(h)
    softmax_model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
    with precision.policy_scope("mixed_float16"):
        mixed = keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="head")(h))
    return {
        "Softmax layer": (keras.Model(inp, keras.layers.Softmax()(logits)), "probabilities"),
        "float32 linear Activation after a softmax": (keras.Model(inp, keras.layers.Activation("linear", dtype="float32")(keras.layers.Activation("softmax")(logits))), "probabilities"),
        "float32_output of a mixed model": (precision.float32_output(mixed)[0], "probabilities"),
        "Dropout after the softmax": (keras.Model(inp, keras.layers.Dropout(0.1)(keras.layers.Softmax()(logits))), "probabilities"),
        "tf.nn.softmax": (keras.Model(inp, tf.nn.softmax(logits)), "probabilities"),
        "QAT-wrapped softmax Dense": (quantization.quantize(softmax_model), "probabilities"),
        "pruning-wrapped linear Dense": (pruning.prune(keras.Model(inp, keras.layers.Dense(2)(h))), "logits"),
        "QAT-wrapped sigmoid unit": (quantization.quantize(keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(h))), "sigmoid"),
    }


def test_output_kind_is_read_from_the_graph_through_casts_and_wrappers():
    for what, (model, kind) in _head_models().items():
        assert distillation.output_kind(model) == kind, what


def test_output_kind_refuses_to_guess_and_checks_what_it_is_told(teacher):
    inp = keras.Input((LEN,), dtype="int32")
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(VOCAB, 4)(inp))
    tanh_head = keras.Model(inp, keras.layers.Dense(2, activation="tanh", name="head")(h))
    with pytest.raises(distillation.OutputKindError, match=r"cannot tell whether model .* outputs logits or probabilities \(from its output back: 'head' \(Dense\)\). Fix: say it with student_output='logits'"):
        Distiller(teacher, tanh_head)
    # Told "probabilities" for a model that outputs logits: its outputs do not sum to 1.
    logit_student = keras.Model(inp, keras.layers.Dense(2, bias_initializer="ones")(h))
    with pytest.raises(distillation.OutputKindError, match=r"taken to output probabilities, but .* do not sum to 1. Fix: pass student_output='logits'"):
        Distiller(teacher, logit_student, student_output="probabilities")
    with pytest.raises(ValueError, match=r"teacher_output must be 'auto', 'logits'"):
        Distiller(teacher, logit_student, teacher_output="probs")


def test_mse_on_logits_and_feature_distillation_with_projection(teacher):
    student = _student()
    distiller = Distiller(
        teacher, student, distillation_loss="mse", feature_pairs=[("lstm_0", "lstm_0")], feature_weight=10.0
    )
    assert distiller._projections[0] is not None  # 4 -> 16 units
    distiller.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    history = distiller.fit(*_data(), epochs=5, batch_size=32, verbose=0)
    assert "feature_loss" in history.history
    assert history.history["feature_loss"][-1] < 0.7 * history.history["feature_loss"][0]
    assert len(student.weights) == len(_student().weights)  # projection not in the student


def test_teacher_cache_gives_the_same_training_with_fewer_teacher_calls(teacher):
    x, y = _data()
    results = {}
    for cache in (False, True):
        student = _student(seed=3)
        distiller = _compile(Distiller(teacher, student, cache_teacher=cache))
        distiller.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
        results[cache] = student.get_weights()
    for a, b in zip(results[False], results[True]):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_attach_teacher_outputs_to_a_dataset_before_shuffling(teacher):
    x, y = _data()
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    with_teacher = distillation.attach_teacher_outputs(ds, teacher).cache().shuffle(256, seed=1).batch(32)
    distiller = _compile(Distiller(teacher, _student()))
    history = distiller.fit(with_teacher, epochs=2, verbose=0).history
    direct = _compile(Distiller(teacher, _student())).fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0).history
    # The attached outputs are the teacher's: the same distillation loss as when the Distiller runs
    # the teacher itself (batch order differs; here 0.0378/0.0362 against 0.0377/0.0363), falling.
    assert history["distillation_loss"][1] < history["distillation_loss"][0]
    np.testing.assert_allclose(history["distillation_loss"], direct["distillation_loss"], rtol=0.02)
    xa, ya = distillation.attach_teacher_outputs((x, y), teacher)
    assert ya["teacher_logits"].shape == (256, 2)
    with pytest.raises(ValueError, match=r"looks batched"):
        distillation.attach_teacher_outputs(ds.batch(8), teacher)


def test_checkpoints_save_the_student_ready_for_compression(teacher, tmp_path):
    distiller = _compile(Distiller(teacher, _student()))
    best = str(tmp_path / "student.keras")
    x, y = _data()
    distiller.fit(
        x, y, epochs=2, batch_size=32, verbose=0, validation_data=_data(64, seed=4),
        callbacks=[keras.callbacks.ModelCheckpoint(best, monitor="val_accuracy", save_best_only=True)],
    )
    loaded = keras.models.load_model(best)
    assert loaded.count_params() == distiller.student.count_params()
    pruned = pruning.prune(distiller.student, target_sparsity=0.5, schedule="constant")
    assert pruning.is_pruned(pruned)
    assert quantization.is_quantized(quantization.quantize(distiller.student))
    result = export.to_tflite(distiller.student, tmp_path / "s.tflite", isolate=False)
    np.testing.assert_allclose(
        export.TFLiteModel(result.path).predict(x[:8]), distiller.predict(x[:8], verbose=0), atol=2e-2
    )


def test_mixed_precision_uses_a_loss_scaled_optimizer(keras):
    teacher = _teacher()
    keras.mixed_precision.set_global_policy("mixed_float16")
    student = models.lstm_classifier(VOCAB, max_len=LEN, embedding_dim=4, units=4, compile=False)
    distiller = Distiller(teacher, student)
    distiller.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    assert isinstance(distiller.optimizer, keras.mixed_precision.LossScaleOptimizer)
    before = [w.numpy().copy() for w in student.trainable_weights]
    history = distiller.fit(*_data(), epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"][-1]) and history.history["distillation_loss"][-1] > 0
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(before, student.trainable_weights)), "every weight trained"
    assert student.get_layer("lstm_0").compute_dtype == "float16"
    assert distiller.predict(_data(4)[0], verbose=0).dtype == np.float32


def test_mirrored_strategy_matches_one_device(teacher, mirrored):
    x, y = _data(128)
    weights = {}
    for name in ("one", "mirrored"):
        strategy = mirrored if name == "mirrored" else tf.distribute.get_strategy()
        with strategy.scope():
            student = _student(seed=5)
            distiller = _compile(Distiller(teacher, student, alpha=0.3, temperature=2.0), lr=0.1)
        distiller.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
        weights[name] = student.get_weights()
    for a, b in zip(weights["one"], weights["mirrored"]):
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"alpha": 1.5}, r"alpha is the weight of the student's label loss and must be in \[0, 1\].*alpha=1.5"),
        ({"alpha": -0.1}, r"alpha=-0.1"),
        ({"temperature": 0}, r"temperature must be > 0.*temperature=0"),
        ({"distillation_loss": "js"}, r"distillation_loss='js'"),
        ({"feature_pairs": [("lstm_0", "nope")]}, r"the student 'lstm_classifier' has no layer 'nope'"),
    ],
)
def test_bad_arguments(teacher, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        Distiller(teacher, _student(), **kwargs)


def test_shape_mismatch_and_unbuilt_teacher(teacher):
    three = models.lstm_classifier(VOCAB, num_classes=3, max_len=LEN, units=4, compile=False)
    with pytest.raises(ValueError, match=r"outputs shape \(None, 2\).*outputs \(None, 3\).*Fix: give the student"):
        Distiller(teacher, three)
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"Distiller\(teacher=...\): model .* is not built.*Fix"):
        Distiller(unbuilt, _student())


# ------------------------------------------------------------ unlabelled inputs (a transfer set)


def test_unlabeled_examples_add_nothing_to_the_student_loss(teacher):
    x, y = _data(32, seed=11)
    u, _ = _data(96, seed=12)
    plain = _compile(_student(seed=5), lr=0.05)
    plain.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    student = _student(seed=5)
    # alpha=1: the student loss alone; a batch of 32 labelled + 96 unlabelled averages over 128,
    # so 4x the rate gives exactly the labelled-only update.
    distiller = _compile(Distiller(teacher, student, alpha=1.0), lr=0.2)
    distiller.fit(x, y, unlabeled=u, epochs=1, batch_size=128, shuffle=False, verbose=0)
    for a, b in zip(plain.get_weights(), student.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_unlabeled_examples_train_on_the_teacher_which_runs_once_over_them(teacher):
    x, y = _data(24, seed=21)
    u, _ = _data(480, seed=22)
    probe, _ = _data(400, seed=23)
    agreement = {}
    for extra in (None, u):
        student = models.lstm_classifier(VOCAB, max_len=LEN, embedding_dim=8, units=8, dropout=0.0, compile=False)
        student.set_weights(_fresh_student_weights())
        distiller = Distiller(teacher, student, alpha=0.1, temperature=2.0)
        distiller.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
        calls = []
        original = distiller.teacher_logits
        distiller.teacher_logits = lambda inputs, **kw: calls.append(len(inputs)) or original(inputs, **kw)
        # The same 128 updates either way: 8 epochs of 16 batches, or 128 epochs of the one batch of 24.
        distiller.fit(x, y, unlabeled=extra, epochs=8 if extra is not None else 128, batch_size=32, verbose=0)
        assert calls == [24 + (0 if extra is None else 480)]  # one teacher pass, over both sets
        agreement[extra is not None] = (student.predict(probe, verbose=0).argmax(-1) == teacher.predict(probe, verbose=0).argmax(-1)).mean()
    assert agreement[True] > agreement[False] + 0.1, agreement


_FRESH = {}


def _fresh_student_weights():
    if "w" not in _FRESH:
        keras.utils.set_random_seed(9)
        _FRESH["w"] = models.lstm_classifier(VOCAB, max_len=LEN, embedding_dim=8, units=8, dropout=0.0, compile=False).get_weights()
    return _FRESH["w"]


def test_unlabeled_inputs_are_checked(teacher):
    distiller = _compile(Distiller(teacher, _student()))
    x, y = _data(32)
    with pytest.raises(ValueError, match=r"unlabeled must be shaped like x: x has shapes \[\(32, 16\)\], unlabeled \[\(8, 12\)\]"):
        distiller.fit(x, y, unlabeled=np.zeros((8, 12), "int32"), verbose=0)
    with pytest.raises(ValueError, match=r"validation_split would take its examples from the unlabelled end"):
        distiller.fit(x, y, unlabeled=x, validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match=r"takes arrays"):
        distiller.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), unlabeled=x, verbose=0)


# ------------------------------------------------------------ an ensemble of teachers


def test_an_ensemble_teaches_the_mean_of_its_softened_distributions(teacher):
    other = _teacher(seed=3)
    x, y = _data(64, seed=31)
    distiller = Distiller([teacher, other], _student(), alpha=0.2, temperature=3.0)
    z = distiller.teacher_logits(x)
    soft = [tf.nn.softmax(np.log(np.clip(t.predict(x, verbose=0), 1e-7, 1)) / 3.0).numpy() for t in (teacher, other)]
    np.testing.assert_allclose(tf.nn.softmax(z / 3.0).numpy(), (soft[0] + soft[1]) / 2, atol=1e-5)
    mse = Distiller([teacher, other], _student(), distillation_loss="mse")
    logits = [np.log(np.clip(t.predict(x, verbose=0), 1e-7, 1)) for t in (teacher, other)]
    np.testing.assert_allclose(mse.teacher_logits(x), (logits[0] + logits[1]) / 2, atol=1e-5)
    # Two copies of one teacher teach exactly what it teaches alone, cached or not.
    weights = []
    for teachers, cache in ((teacher, True), ([teacher, teacher], True), ([teacher, teacher], False)):
        student = _student(seed=4)
        _compile(Distiller(teachers, student, alpha=0.2, temperature=3.0, cache_teacher=cache)).fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
        weights.append(student.get_weights())
    for w in weights[1:]:
        for a, b in zip(weights[0], w):
            np.testing.assert_allclose(a, b, atol=1e-5)
    config = distiller.get_config()
    again = Distiller.from_config(config)
    assert isinstance(again.teacher, list) and len(again.teacher) == 2
    with pytest.raises(ValueError, match=r"teacher is a list: give at least one model, and no feature_pairs"):
        Distiller([teacher, other], _student(), feature_pairs=[("lstm", "lstm")])


def test_outputs_attached_to_arrays_are_not_computed_again(teacher):
    x, y = _data(64)
    xa, ya = distillation.attach_teacher_outputs((x, y), teacher)
    distiller = _compile(Distiller(teacher, _student()))
    calls = []
    original = distiller.teacher_logits
    distiller.teacher_logits = lambda inputs, **kw: calls.append(len(inputs)) or original(inputs, **kw)
    distiller.fit(xa, ya, epochs=1, batch_size=32, verbose=0)
    assert calls == []
    distiller.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert calls == [64]
