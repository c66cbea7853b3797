//! The rexec server engine.
