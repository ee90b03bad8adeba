"""Developer tooling: the local stack (demo, make run, e2e/fault tests, benchmarks). Not shipped in the image."""
