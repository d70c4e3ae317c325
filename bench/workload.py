"""The benchmark's documents: deterministic English-like sentences of 8 to 21 words."""
from __future__ import annotations

import random

_WORDS = (
    "the a an of to and in is was for on that with as by at from it this be are have has had not but "
    "or which one all were we when there can more if no out so what up its about into than them only "
    "other new some could time these two may then do first any like now my such make over our even most "
    "me state after also made many did must before back see through way where get much go well your know "
    "should down work year because come people just say each those take day good how long little use "
    "here very great world still own public house against school never last while might same another "
    "market model search vector cluster node deploy query index server memory engine network language "
    "learning embedding document request answer question machine system data image city river music "
    "history science water energy health family company country summer winter morning evening bridge"
).split()


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 21))]
        out.append(" ".join(words).capitalize() + ".")
    return out
