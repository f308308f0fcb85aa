"""The preprocess service: scenes in, model-ready arrays (by reference) out."""
