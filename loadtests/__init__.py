"""Load tests and benchmarks: locustfiles, load shapes, the autoscaling and serving-overhead benchmarks."""
