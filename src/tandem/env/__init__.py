"""The environment definition: settings + lock in, Dockerfile and Modal image out, parity between them."""
