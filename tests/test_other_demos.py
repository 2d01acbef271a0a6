"""The knee demo on fastMRI-like files and the starts ablation, on tiny configurations.

(The shapes, knee-without-data and slice-wise volume demos are tested in test_demos.py.)"""
