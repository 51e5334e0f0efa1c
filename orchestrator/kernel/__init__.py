"""Real Linux kernels built from Debian's linux-source-6.1, a config and a patch series."""
