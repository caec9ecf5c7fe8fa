"""mammokit: breast-cancer screening with deep neural networks.

An end-to-end implementation of Wu et al., "Deep Neural Networks Improve Radiologists'
Performance in Breast Cancer Screening" (IEEE TMI 2019): DICOM/PNG input, cropping and optimal
windows, patch-classifier heatmaps, four-view ResNet-22 models, training, evaluation and
reader-study analysis. For research use only; not a medical device.

Layers, from the ground up (each imports only from its own layer or below):
    config, views, errors, utils   presets, the View type, the error family, I/O, logs, seeds, devices
    transforms/   window sampling, flips, standardisation, patch augmentation
    data/         images (PNG/DICOM), manifests, labels, exam lists, heatmap files, ``scan``
    synth/        the synthetic screening-mammogram generator (the embedded data set)
    preprocess/   crop to the breast, optimal window centres, ``preprocess``
    heatmaps/     the dense sliding-window heatmap algorithm
    models/       ResNet-22 columns, breast-level variants, patch classifier, registry, checkpoints
    training/     the one training loop and the patch / breast-level trainers
    inference/    heatmaps of a work folder, prediction (TTA, ensembles), the one-command ``run``
    evaluation/   ROC/PR AUC, reader studies, embeddings
    report/       the HTML report
    workflows/    the demo
    cli/          the ``mammokit`` command, one module per subcommand group
"""

__version__ = "0.1.0"
