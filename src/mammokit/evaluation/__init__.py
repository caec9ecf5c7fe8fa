"""Evaluation: breast-level metrics with exam-bootstrap CIs, reader studies, representation plots
(UMAP) and the self-contained HTML report.

Import the submodules directly (they share names with their main functions); entry points:

* :func:`mammokit.evaluation.evaluate.evaluate`
* :func:`mammokit.evaluation.reader_study.reader_study`
* :func:`mammokit.evaluation.embed.embed`, :func:`mammokit.evaluation.embed.project_umap`
* :func:`mammokit.report.html.write_report`
"""

