"""Side-by-side benchmarks (``make bench``): every figure is printed as a ratio against a peer
measured in the same run, on the same broker and database, never as an absolute target."""
