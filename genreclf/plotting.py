"""Matplotlib set-up and helpers shared by the figures of every package (no tracking here)."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # figures are artifacts and demo images, never windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render a matplotlib figure to an RGB array (for galleries and the demo), then close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return np.asarray(Image.open(buf).convert("RGB"))
