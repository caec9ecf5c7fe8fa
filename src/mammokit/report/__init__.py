"""Reports people look at: the self-contained HTML report of a work folder
(:func:`mammokit.report.html.write_report`, ``mammokit report``)."""
