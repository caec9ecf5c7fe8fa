"""mammokit: breast-cancer screening with deep neural networks.

An end-to-end implementation of Wu et al., "Deep Neural Networks Improve Radiologists'
Performance in Breast Cancer Screening" (IEEE TMI 2019): DICOM/PNG input, cropping and optimal
windows, patch-classifier heatmaps, four-view ResNet-22 models, training, evaluation and
reader-study analysis. For research use only; not a medical device.

Layout (one folder per pipeline stage):
    data/         manifests, labels, exam lists (``exams.json``), PNG/DICOM reading, ``scan``
    preprocess/   crop to the breast, optimal window centres, window sampling (augmentation)
    synth/        the synthetic screening-mammogram generator (the embedded data set)
    models/       ResNet-22 columns, breast-level variants, patch classifier, registry, checkpoints
    heatmaps/     dense patch-classifier heatmaps
    inference/    prediction with test-time augmentation and ensembles, the one-command ``run``
    training/     trainers for the patch classifier and the breast-level models
    evaluation/   ROC/PR AUC, reader studies, embeddings, HTML reports
    cli/          the ``mammokit`` command, one module per subcommand group
"""

__version__ = "0.1.0"
