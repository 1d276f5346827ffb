"""dynn_lib: the reference companion library for "Dynamic Neural Network is All You Need"
(anonymous submission; arXiv 2308.08709).

Modules (one job each):
    data          datasets, splits, corruptions, GPU batch loader
    models        VGG-16-BN, ResNet-56, MobileNet as SDNN (static CNN) or DyNN (early exits)
    train         the three training recipes of protocol section 4
    early_exit    thresholds, exit numbers, calibration, early-stopping inference
    attacks       FGSM, PGD, MI-FGSM, Early Attack (one file each)
    blackbox      query set, deployed-mode labels, surrogate training
    metrics       one function per reported quantity
    experiments   RQ1-RQ4 and appendix: config -> tidy DataFrames
    store         artefacts keyed by configuration, atomic writes, provenance
"""
__version__ = "0.1.0"
