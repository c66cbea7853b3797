//! rexec benchmarks (placeholder).
