"""vitedge: build, export, quantize and benchmark Vision Transformers for edge devices."""

__version__ = "0.1.0"
