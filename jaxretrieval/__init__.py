"""jaxretrieval: learning to hash and listwise image retrieval in JAX."""
