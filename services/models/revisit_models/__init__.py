"""Model architectures of revisit, their weight conversion and export to Triton."""
