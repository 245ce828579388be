"""Experiment scripts over architectures, datasets and optimizers (``python -m experiments``).

Models (:mod:`.models`), offline datasets (:mod:`.data`), SAM / StableSAM (:mod:`.optim`),
Hessian sharpness (:mod:`.sharpness`), TOML sweeps (:mod:`.config`, :mod:`.runner`,
:mod:`.tables`), the escape-time study (:mod:`.escape`), the claim-by-claim numbers
(:mod:`.findings`) and the sampling model (:mod:`.epoch_model`).  What the grids measured:
``experiments/FINDINGS.md``.
"""
