"""The convolution engine: algorithms, their launch code, accounting, and the torch integration."""
from .accounting import LayerCost, layer_cost
from .api import ALGORITHMS, GEMMS, TILES, conv2d, validate
from .geometry import ConvGeometry
from .swap import ConvbenchConv2d, swap_conv2d

__all__ = ["ALGORITHMS", "GEMMS", "TILES", "ConvGeometry", "ConvbenchConv2d", "LayerCost",
           "conv2d", "layer_cost", "swap_conv2d", "validate"]
