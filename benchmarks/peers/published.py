"""Published COVID-SemiSeg figures (Inf-Net, Fan et al., IEEE TMI 39(8), 2020), as the
authors' own evaluation output files in github.com/DengPingFan/Inf-Net record them.

Source files (commit f5a99a56, unchanged at d4dd1e86): ``EvaluateResults/previous/
LungInfection-Test-1_result.txt`` (binary infection, the union of both classes) and
``EvaluateResults/previous/MultiClassInfection-Test-{1,2}_result.txt`` (ground-glass against
``GT-1``, consolidation against ``GT-2``). The repository's FAQ calls the binary table the
paper's Table II; we could not read the paper's tables themselves, so the citation is the
result files. Every figure is in the toolbox convention of ``infnet_metrics`` (mean over
256 thresholds), on the same 48 test slices as our rows. Attention-UNet, Gated-UNet and
Dense-UNet appear in the paper but not in those files, so they are not listed.
"""

from __future__ import annotations

INFNET_SOURCE = (
    "Inf-Net authors' result files, github.com/DengPingFan/Inf-Net "
    "EvaluateResults/previous/*_result.txt @ f5a99a56; the paper's Table II per its FAQ"
)

INFNET_BINARY: dict[str, tuple[float, float, float]] = {
    # model: (mean Dice, mean sensitivity, mean specificity), binary infection
    "U-Net (published)": (0.439, 0.534, 0.858),
    "U-Net++ (published)": (0.581, 0.672, 0.902),
    "Inf-Net (published)": (0.682, 0.692, 0.943),
    "Semi-Inf-Net (published)": (0.739, 0.725, 0.960),
}

INFNET_MULTICLASS: dict[str, tuple[float, float]] = {
    # model: (mean Dice ground-glass, mean Dice consolidation)
    "DeepLabV3+ stride 8 (published)": (0.375, 0.117),
    "DeepLabV3+ stride 16 (published)": (0.443, 0.188),
    "FCN8s (published)": (0.471, 0.221),
    "Semi-Inf-Net + FCN8s (published)": (0.646, 0.238),
    "Semi-Inf-Net + MC (published)": (0.624, 0.362),
}
