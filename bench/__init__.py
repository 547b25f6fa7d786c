"""coord's benchmarks. Run them with ``python -m bench [NAME ...]`` (see ``__main__``)."""
