// Benchmarks: see bench/README.md.
print("kiln-bench: no benchmarks yet")
