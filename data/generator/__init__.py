"""Deterministic generator of realistic CRM, invoicing and planning extracts.

    from data.generator import GeneratorConfig, generate
    manifest = generate(GeneratorConfig(scale=0.02, seed=7), Path("out"))

or `python -m data.generator --scale 0.02 --seed 7 --out DIR`. See `params.py` for the planted
ground truth and `manifest.json` for what a run produced. Large scales: `shards=K` (`--shards K`)
generates K independent worlds of scale / K one at a time with disjoint keys, in the memory of one
(see `shards.py`).
"""

from data.generator.config import Defect, GeneratorConfig, Manifest
from data.generator.core import generate
from data.generator.params import Params

__all__ = ["Defect", "GeneratorConfig", "Manifest", "Params", "generate"]
