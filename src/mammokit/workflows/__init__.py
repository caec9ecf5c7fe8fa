"""End-to-end workflows built from every stage: the demo on the embedded synthetic data
(:func:`mammokit.workflows.demo.run_demo`, ``mammokit demo``)."""
