"""Side-by-side benchmarks: esm and a baseline in the same run, printing JSON."""
