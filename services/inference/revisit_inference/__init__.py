"""The inference service: observations in, predictions from Triton out."""
