"""Side-by-side benchmarks of zeroimage against umoci, skopeo and buildah (run ``bench/run.py``)."""
