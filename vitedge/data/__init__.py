"""Data sets on disk: IDX files (the MNIST family), Fashion-MNIST, ImageFolder trees. No TensorFlow."""
