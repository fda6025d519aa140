"""Fuzz targets (atheris): ``python tests/fuzz/fuzz_paths.py -max_total_time=60`` and ``fuzz_images.py``."""
