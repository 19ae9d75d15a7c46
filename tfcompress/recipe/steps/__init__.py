"""The built-in recipe steps, one module each, registered on import in the
order a recipe usually uses them."""

from tfcompress.recipe.steps import train, sensitivity, auto, factorize, shrink, prune, cluster, quantize, distill, export  # noqa: F401
