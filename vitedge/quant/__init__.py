"""int8 recipes, accuracy control and per-op profiling (issue 7)."""
