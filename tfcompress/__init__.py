"""tfcompress: make Keras text models (LSTMs first) smaller and faster.

tfcompress builds on **tf_keras** (Keras 2), the Keras that TensorFlow Model
Optimization accepts; `tfcompress.keras` is that Keras, and every function that
takes a model also accepts a Keras 3 Sequential or Functional model and
converts it (see `tfcompress.as_tf_keras`); `tfcompress.as_keras3` converts a
compressed model back for a Keras 3 workflow.

Each capability lives in its own module, used as `tfcompress.<module>.<name>`.
"""

import importlib.metadata as _metadata

from tfcompress._keras import ConversionError, as_keras3, as_tf_keras, keras
from tfcompress import clustering, devices, distillation, embeddings, export, models, precision, pruning, quantization, report, text, training  # noqa: E402
from tfcompress.saving import UnsafeModelError, load_model, register as _register

_register()

try:
    __version__ = _metadata.version("tfcompress")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "keras",
    "as_tf_keras",
    "as_keras3",
    "ConversionError",
    "load_model",
    "UnsafeModelError",
    "clustering",
    "devices",
    "distillation",
    "embeddings",
    "export",
    "models",
    "precision",
    "pruning",
    "quantization",
    "report",
    "text",
    "training",
    "__version__",
]
