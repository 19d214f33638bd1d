"""A small Django project that every server in the benchmark serves (see bench/README.md)."""
