"""Exam data and I/O: manifests, labels, exam lists, PNG/DICOM reading, folder scanning."""
