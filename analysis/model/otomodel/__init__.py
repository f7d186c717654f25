"""otomodel: training and export of otonode's inner-ear model.

A bi-headed 3D U-Net after Stebani et al. 2023: one encoder, a segmentation
decoder (one logit channel, inner-ear fluid space) and a heatmap decoder
(three channels: helicotrema, oval window, round window).
"""

LANDMARKS = ("helicotrema", "oval_window", "round_window")

__all__ = ["LANDMARKS"]
