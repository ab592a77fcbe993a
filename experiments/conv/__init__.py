"""The convolution engine: algorithms, their launch code, accounting, and the torch integration."""
from .accounting import LayerCost, layer_cost
from .api import conv2d, resolve, validate
from .geometry import ConvGeometry
from .swap import ConvbenchConv2d, swap_conv2d, swap_variant
from .variant import ALGORITHMS, DEFAULT_TILE, GEMMS, TILES, Variant

__all__ = ["ALGORITHMS", "DEFAULT_TILE", "GEMMS", "TILES", "ConvGeometry", "ConvbenchConv2d", "LayerCost", "Variant",
           "conv2d", "layer_cost", "resolve", "swap_conv2d", "swap_variant", "validate"]
