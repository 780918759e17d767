"""Fine detail reaches the texture features (pre-smoothing sigma 0.5 px).

On real covers the sharp, fine-grained texture (print grain, photo noise, lettering) carries genre
(docs/features.md). This checks the behaviour on generated covers: softening a cover slightly (a
Gaussian of 0.6 px at the working resolution) must move the fine-detail features by a clear margin
compared with how much they vary between covers (lbp_spot_share: at least 0.5 between-cover spreads,
1 in the median). Heavier pre-smoothing would swallow most of that detail.
"""
from __future__ import annotations

import cv2
import numpy as np

from genreclf.data import synthetic
from genreclf.features import cover25 as F


def test_slight_softening_moves_the_fine_detail_features():
    covers = [F.canonical(synthetic.make_cover(g, i)) for g in ("HipHop", "Rock", "Pop", "Electronic")
              for i in range(4)]
    soft = [cv2.GaussianBlur(c, (0, 0), 0.6) for c in covers]
    sharp_x, soft_x = F.extract_many(covers, progress=False, workers=1), F.extract_many(soft, progress=False, workers=1)
    spread = sharp_x.std(axis=0)
    shift = {n: (sharp_x[:, k] - soft_x[:, k]) / spread[k] for k, n in enumerate(F.FEATURE_NAMES)
             if n in ("lbp_spot_share", "fine_detail_share")}
    # sharper: more isolated bright pixels, more spectral power at high frequencies
    spots = shift["lbp_spot_share"]
    assert (spots >= 0.5).all() and np.median(spots) >= 1, spots.round(2)
    assert (shift["fine_detail_share"] > 0).all() and np.median(shift["fine_detail_share"]) >= 0.3, \
        shift["fine_detail_share"].round(2)
    # colour does not care: softening keeps the pixel distribution almost the same
    k = F.FEATURE_NAMES.index("lightness_mean")
    assert np.abs(sharp_x[:, k] - soft_x[:, k]).max() < 0.05 * spread[k] + 1e-3
