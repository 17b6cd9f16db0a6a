"""The one palette of label colours: the annotated video (:mod:`har.render`), its
plots, the HTML report (:mod:`har.report`) and the live overlay (:mod:`har.live`)
give a label the same colour.

RGB. The first seven are the Okabe-Ito colours for colour-blind viewers (Okabe and
Ito, "Color Universal Design (CUD): how to make figures and presentations that are
friendly to colorblind people", 2008, jfly.uni-koeln.de/color/; its black left out,
the text colour); then a few extra for videos with more labels.
"""

from __future__ import annotations

RGB = tuple[int, int, int]

OKABE_ITO: tuple[RGB, ...] = (
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
    (213, 94, 0), (204, 121, 167),
)
PALETTE: tuple[RGB, ...] = OKABE_ITO + ((170, 170, 170), (140, 86, 75), (188, 189, 34))
# Time with no segment, on the timeline strip.
NO_SEGMENT: RGB = (150, 150, 150)
